"""goformat.duration against Go's time.Duration.String() (outputs of go1.23, recorded here)."""

from __future__ import annotations

import pytest

from webhello.goformat import duration

MU = "\xc2\xb5"  # UTF-8 µ as latin-1 text, as webhello writes it (log.py)

GO = [
    (0, "0s"),
    (1, "1ns"),
    (999, "999ns"),
    (1000, f"1{MU}s"),
    (1100, f"1.1{MU}s"),
    (2_200_000, "2.2ms"),
    (999_999_999, "999.999999ms"),
    (1_000_000_000, "1s"),
    (3_300_000_000, "3.3s"),
    (60_000_000_000, "1m0s"),
    (245_000_000_000, "4m5s"),
    (18_367_001_000_000, "5h6m7.001s"),
    (3_600_000_000_000, "1h0m0s"),
    (3_600_000_000_017, "1h0m0.000000017s"),
    (-1_000_000_000, "-1s"),
    (-1, "-1ns"),
    (2**63 - 1, "2562047h47m16.854775807s"),
    (-(2**63), "-2562047h47m16.854775808s"),
]


@pytest.mark.parametrize(("ns", "text"), GO)
def test_duration_is_gos_text(ns: int, text: str) -> None:
    """The page's Uptime and the quota lines print durations as Go does, every unit."""
    assert duration(ns) == text
