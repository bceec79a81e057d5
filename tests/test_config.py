from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from scratchpack.errors import ImageError
from scratchpack.oci.config import (
    EPOCH,
    ConfigFile,
    History,
    ImageConfig,
    canonical_json,
    format_created,
    normalise_port,
)
from scratchpack.oci.digest import Digest

D1 = Digest("sha256", "a" * 64)


def test_canonical_json_is_sorted_compact_and_ascii():
    assert canonical_json({"b": 1, "a": [1, {"d": "é", "c": None}]}) == (
        b'{"a":[1,{"c":null,"d":"\\u00e9"}],"b":1}'
    )


def test_image_config_json_uses_docker_keys_and_omits_empty_fields():
    assert ImageConfig().to_json() == {}
    cfg = ImageConfig(
        user="1000:1000",
        entrypoint=("/app",),
        cmd=("--port", "8080"),
        env=("PATH=/", "A=b=c"),
        working_dir="/tmp",
        exposed_ports=("8080", "53/udp"),
        labels=(("org.opencontainers.image.title", "x"),),
        stop_signal="SIGINT",
    )
    assert cfg.to_json() == {
        "User": "1000:1000",
        "Entrypoint": ["/app"],
        "Cmd": ["--port", "8080"],
        "Env": ["PATH=/", "A=b=c"],
        "WorkingDir": "/tmp",
        "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
        "Labels": {"org.opencontainers.image.title": "x"},
        "StopSignal": "SIGINT",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"env": ("NOVALUE",)}, "NAME=VALUE"),
        ({"env": ("=x",)}, "NAME=VALUE"),
        ({"exposed_ports": ("http",)}, "invalid exposed port"),
        ({"exposed_ports": ("70000",)}, "invalid exposed port"),
        ({"exposed_ports": ("80/icmp",)}, "invalid exposed port"),
        ({"working_dir": "rel"}, "absolute"),
        ({"user": "app user"}, "whitespace"),
        ({"labels": (("a", "1"), ("a", "2"))}, "unique"),
        ({"cmd": ["x"]}, "tuple"),
    ],
)
def test_invalid_config_values_are_rejected(kwargs, message):
    with pytest.raises(ImageError, match=message):
        ImageConfig(**kwargs)


def test_normalise_port():
    assert normalise_port("080") == "80/tcp"
    assert normalise_port("9000/sctp") == "9000/sctp"


def test_config_file_bytes_are_canonical_and_complete():
    cf = ConfigFile(
        architecture="arm64",
        os="linux",
        created=EPOCH,
        config=ImageConfig(user="app"),
        diff_ids=(D1,),
        history=(History(created=EPOCH, created_by="scratchpack"),),
        variant="v8",
    )
    raw = cf.to_bytes()
    assert raw == canonical_json(json.loads(raw))
    doc = json.loads(raw)
    assert doc == {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
        "created": "1970-01-01T00:00:00Z",
        "config": {"User": "app"},
        "rootfs": {"type": "layers", "diff_ids": [str(D1)]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "scratchpack"}],
    }


def test_history_flags():
    h = History(created=EPOCH, comment="c", empty_layer=True)
    assert h.to_json() == {"created": EPOCH, "comment": "c", "empty_layer": True}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1_700_000_000, "2023-11-14T22:13:20Z"),
        ("2024-01-31T12:00:00Z", "2024-01-31T12:00:00Z"),
        ("2024-01-31T13:30:00+01:30", "2024-01-31T12:00:00Z"),
        ("2024-01-31T12:00:00.250Z", "2024-01-31T12:00:00.25Z"),
        (datetime(2024, 1, 31, 14, 0, tzinfo=timezone(timedelta(hours=2))), "2024-01-31T12:00:00Z"),
        (datetime(2024, 1, 31, 12, 0, tzinfo=UTC), "2024-01-31T12:00:00Z"),
    ],
)
def test_created_is_normalised_to_utc_rfc3339(value, expected):
    assert format_created(value) == expected


@pytest.mark.parametrize("value", ["yesterday", "2024-01-31 12:00:00", -5, datetime(2024, 1, 1)])
def test_bad_created_values_are_rejected(value):
    with pytest.raises(ImageError):
        format_created(value)


def test_config_file_rejects_a_bad_created_and_lists():
    with pytest.raises(ImageError):
        ConfigFile("amd64", "linux", "now", ImageConfig())
    with pytest.raises(ImageError):
        ConfigFile("amd64", "linux", EPOCH, ImageConfig(), diff_ids=[D1])  # type: ignore[arg-type]
