"""Spec F (request counter, count and time quotas) and deviation 3 (-quotaStatus range)."""
# ruff: noqa: N802  (tests are named after spec items)

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.webhello._server import (
    GO_DURATION,
    HTTP_DATE,
    Server,
    http,
    open_conn,
    page_field,
    parse_go_duration,
    requests_count,
    run,
    serve,
    usage_text,
)

QUOTA_BODY = b"Quota forced malfunction\n"


def unanswered(srv: Server, target: str) -> tuple[bool, str]:
    """(True when the server closed the connection without answering, our address)."""
    with open_conn(srv) as conn:
        conn.send(f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        try:
            return conn.read_all() == b"", conn.local_addr
        except ConnectionResetError:
            return True, conn.local_addr


def test_F1_counter_sources(webroot: Path) -> None:
    with serve(cwd=webroot, https=False) as srv:
        assert requests_count(http(srv, "GET", "/").body) == 1
        # Not counted: mux redirects, server-level responses.
        assert http(srv, "GET", "/www").status == 301
        assert http(srv, "GET", "/a/../b").status == 301
        assert http(srv, "OPTIONS", "*").status == 200
        with open_conn(srv) as conn:
            conn.send(b"BOGUS\r\n\r\n")
            assert conn.read_all().startswith(b"HTTP/1.1 400 ")
        # Counted: static hits of any status, root pages.
        assert http(srv, "GET", "/www/etc/passwd").status == 200
        assert http(srv, "GET", "/www/nope").status == 404
        assert requests_count(http(srv, "GET", "/x").body) == 4


def test_F2_count_quota_shared_by_root_and_static(webroot: Path) -> None:
    with serve(["-quota", "3"], cwd=webroot, https=False) as srv:
        assert http(srv, "GET", "/").status == 200
        assert http(srv, "GET", "/www/").status == 200
        third = http(srv, "GET", "/x")
        assert third.status == 200
        assert page_field(third.body, "Requests") == (
            "3 (Quota=3 ExitOnQuota=false QuotaStaus=500 QuotaTime=0s TimeLeft=0s)"
        )
        assert http(srv, "GET", "/").status == 500
        assert http(srv, "GET", "/www/etc/passwd").status == 500
        assert http(srv, "GET", "/www/").status == 500
        assert srv.alive()


def test_F3_quota_response_exact(webroot: Path) -> None:
    with serve(["-quota", "1"], cwd=webroot, https=False) as srv:
        assert http(srv, "GET", "/").status == 200
        with open_conn(srv) as conn:
            for _ in range(2):  # keeps failing, on a kept-alive connection too
                resp = conn.request("GET", "/")
                assert re.fullmatch(
                    rb"HTTP/1\.1 500 Internal Server Error\r\n"
                    rb"Content-Type: text/plain; charset=utf-8\r\n"
                    rb"X-Content-Type-Options: nosniff\r\nDate: " + HTTP_DATE.encode() + rb"\r\n"
                    rb"Content-Length: 25\r\n\r\n",
                    resp.head,
                ), resp.head
                assert resp.body == QUOTA_BODY
        assert srv.alive()


@pytest.mark.parametrize(
    ("code", "reason"), [(503, "Service Unavailable"), (200, "OK"), (302, "Found")]
)
def test_F3_quota_status_sets_only_the_status(webroot: Path, code: int, reason: str) -> None:
    with serve(["-quota", "1", "-quotaStatus", str(code)], cwd=webroot, https=False) as srv:
        assert http(srv, "GET", "/").status == 200
        for target in ("/", "/www/etc/passwd"):
            resp = http(srv, "GET", target)
            assert (resp.status, resp.reason) == (code, reason)
            assert resp.body == QUOTA_BODY
            assert resp.header("Location") is None
            assert resp.header("Content-Type") == "text/plain; charset=utf-8"


@pytest.mark.parametrize("value", ["99", "1000", "0", "-1"])
def test_dev3_quota_status_out_of_range_is_a_flag_error(
    tmp_path: Path, argv0: str, value: str
) -> None:
    res = run(["-quotaStatus", value], cwd=tmp_path)
    assert res.returncode == 2
    text = res.stderr
    assert text.endswith(usage_text(argv0)), text
    before_usage = text[: -len(usage_text(argv0))]
    last = before_usage.rstrip("\n").rsplit("\n", 1)[-1]
    assert "-quotaStatus" in last and value in last, last
    assert not any(m.startswith("serving ") for m in res.messages())


@pytest.mark.parametrize("value", ["100", "999"])
def test_dev3_quota_status_range_bounds_accepted(tmp_path: Path, value: str) -> None:
    res = run(["-version", "-quotaStatus", value], cwd=tmp_path)
    assert res.returncode == 0
    assert f"requests quota=0 (0=unlimited) exitOnQuota=false quotaStatus={value}" in (
        res.messages()
    )


def test_dev3_quota_status_999_is_sent(webroot: Path) -> None:
    with serve(["-quota", "1", "-quotaStatus", "999"], cwd=webroot, https=False) as srv:
        assert http(srv, "GET", "/").status == 200
        resp = http(srv, "GET", "/")
        assert (resp.status, resp.body) == (999, QUOTA_BODY)


def test_F4_count_quota_log_lines(webroot: Path) -> None:
    with serve(["-quota", "1"], cwd=webroot, https=False) as srv:
        assert http(srv, "GET", "/").status == 200
        start = srv.settle_root(1)
        with open_conn(srv) as conn:
            me = conn.local_addr
            conn.request("GET", "/r?q=1")
            conn.request("GET", "/www/etc/passwd")
        assert srv.window("^rootHandler: req=2 from=", 6, start) == [
            f"rootHandler: req=2 from={me}",
            "rootHandler: req=2 method=GET host=127.0.0.1 path=/r",
            "rootHandler: req=2 query=q=1",
            "rootHandler req=2 quota=1 exitOnQuota=false quotaStatus=500 reached",
            f"staticHandler.ServeHTTP req=3 url=/www/etc/passwd from={me}",
            "staticHandler.ServeHTTP req=3 quota=1 exitOnQuota=false quotaStatus=500 reached",
        ]


def test_F5_exit_on_quota(webroot: Path) -> None:
    with serve(["-quota", "1", "-exitOnQuota"], cwd=webroot, https=False) as srv:
        assert http(srv, "GET", "/").status == 200
        assert unanswered(srv, "/")[0]
        assert srv.wait() == 0
        assert srv.messages()[-1] == (
            "rootHandler req=2 quota=1 exitOnQuota=true quotaStatus=500 reached EXITING"
        )


def test_F5_exit_on_quota_from_static(webroot: Path) -> None:
    with serve(["-quota", "1", "-exitOnQuota"], cwd=webroot, https=False) as srv:
        assert http(srv, "GET", "/www/etc/passwd").status == 200
        closed, me = unanswered(srv, "/www/etc/passwd")
        assert closed
        assert srv.wait() == 0
        assert srv.messages()[-2:] == [
            f"staticHandler.ServeHTTP req=2 url=/www/etc/passwd from={me}",
            "staticHandler.ServeHTTP req=2 quota=1 exitOnQuota=true quotaStatus=500"
            " reached EXITING",
        ]


@pytest.mark.parametrize(
    ("value", "shown", "error"),
    [
        ("2", "2s", None),
        ("1.5", "1.5s", None),
        ("1m", "1m0s", None),
        ("90", "1m30s", None),
        ("500ms", "500ms", None),
        ("1h", "1h0m0s", None),
        ("-5", "-5s", None),
        ("0", "0s", None),
        ("abc", "0s", 'quotaTime: time: invalid duration "abc"'),
        ("9x9", "0s", 'quotaTime: time: unknown unit "x" in duration "9x9s"'),
        ("1.5x", "0s", 'quotaTime: time: unknown unit "x" in duration "1.5x"'),
        ("", "0s", None),
    ],
)
def test_F6_quota_time_parsing(tmp_path: Path, value: str, shown: str, error: str | None) -> None:
    res = run(["-version", f"-quotaTime={value}"], cwd=tmp_path)
    assert res.returncode == 0
    msgs = res.messages()
    assert f"quotaTime={shown}" in msgs
    errors = [m for m in msgs if m.startswith("quotaTime: ")]
    assert errors == ([] if error is None else [error])


def test_F6_non_positive_quota_time_is_no_quota(webroot: Path) -> None:
    with serve(["-quotaTime", "-5"], cwd=webroot, https=False) as srv:
        resp = http(srv, "GET", "/")
        assert resp.status == 200
        assert page_field(resp.body, "Requests") == (
            "1 (Quota=0 ExitOnQuota=false QuotaStaus=500 QuotaTime=-5s TimeLeft=0s)"
        )


def test_F7_time_quota_fails_requests_after_expiry(webroot: Path) -> None:
    with serve(["-quotaTime", "1"], cwd=webroot, https=False) as srv:
        first = http(srv, "GET", "/")
        assert first.status == 200
        m = re.fullmatch(
            r"1 \(Quota=0 ExitOnQuota=false QuotaStaus=500 QuotaTime=1s "
            rf"TimeLeft=({GO_DURATION})\)",
            page_field(first.body, "Requests"),
        )
        assert m, page_field(first.body, "Requests")
        left = parse_go_duration(m.group(1))
        assert 0 < left < 1
        time.sleep(left + 0.1)
        start = len(srv.lines())
        assert http(srv, "GET", "/").status == 500
        assert http(srv, "GET", "/www/etc/passwd").status == 500
        srv.wait_for_log(r"^staticHandler\.ServeHTTP req=3 exitOnQuota=", start=start)
        reached = [m for m in srv.messages()[start:] if m.endswith(" reached")]
        assert len(reached) == 2
        for label, n, line in zip(
            ("rootHandler", "staticHandler.ServeHTTP"), (2, 3), reached, strict=True
        ):
            m2 = re.fullmatch(
                rf"{re.escape(label)} req={n} exitOnQuota=false uptime=({GO_DURATION}) "
                rf"quotaTime=1s timeLeft=(-{GO_DURATION}) reached",
                line,
            )
            assert m2, line
            uptime, time_left = (parse_go_duration(g) for g in m2.groups())
            assert uptime >= 1
            assert abs((1 - uptime) - time_left) < 1e-3
        assert srv.alive()


def test_F7_time_quota_checked_only_on_request(webroot: Path) -> None:
    with serve(["-quotaTime", "1", "-exitOnQuota"], cwd=webroot, https=False) as srv:
        time.sleep(1.5)
        assert srv.alive()
        assert unanswered(srv, "/")[0]
        assert srv.wait() == 0
        assert re.fullmatch(
            rf"rootHandler req=1 exitOnQuota=true uptime={GO_DURATION} quotaTime=1s "
            rf"timeLeft=-{GO_DURATION} reached EXITING",
            srv.messages()[-1],
        ), srv.messages()[-1]
