"""Spec D (root page, its log lines) and deviations 1 (escaping) and 5 (bounded body)."""
# ruff: noqa: N802  (tests are named after spec items)

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path

import pytest

from tests.webhello._server import (
    GO_TIME,
    Rx,
    Server,
    http,
    is_same_or_descendant,
    open_conn,
    page_field,
    parse_go_duration,
    requests_count,
    root_page_re,
    serve,
)
from tests.webhello.conftest import Ident

ROOT_HEADERS = ["Content-Length", "Content-Type", "Date"]


@pytest.mark.parametrize("target", ["/", "/nope", "/a/b/c?x=1", "/www.txt", "/wwwx/"])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "OPTIONS", "BREW"])
def test_D1_status_200_for_any_path_and_method(srv: Server, target: str, method: str) -> None:
    resp = http(srv, method, target)
    assert (resp.version, resp.status, resp.reason) == ("HTTP/1.1", 200, "OK")
    assert sorted(resp.names()) == ROOT_HEADERS
    assert resp.header("Content-Type") == "text/html; charset=utf-8"
    assert resp.header("Content-Length") == str(len(resp.body))
    assert resp.body.startswith(b"<!DOCTYPE html>\n")


def test_D1_large_page_is_chunked(srv: Server) -> None:
    resp = http(srv, "POST", "/", body=b"b" * 3000)
    assert resp.status == 200
    assert resp.chunked
    assert resp.header("Transfer-Encoding") == "chunked"
    assert resp.header("Content-Length") is None
    assert b"<p>request body size: 3000</p>\n<pre>\n" + b"b" * 3000 + b"\n</pre>\n" in resp.body


def test_D2_head_has_get_headers_and_no_body(srv: Server) -> None:
    with open_conn(srv) as conn:
        conn.send(b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\nGET /h HTTP/1.1\r\nHost: h\r\n\r\n")
        head = conn.read_response("HEAD")
        get = conn.read_response("GET")  # parses only if HEAD sent no body bytes
    assert (head.status, get.status) == (200, 200)
    assert sorted(head.names()) == ROOT_HEADERS
    assert head.header("Content-Type") == "text/html; charset=utf-8"
    assert "Request method=GET host=h path=[/h]" in get.text
    # The length the page would have: only counters and clock digits differ from the GET.
    length = int(head.header("Content-Length") or "0")
    assert abs(length - len(get.body)) <= 16, (length, len(get.body))


def test_D3_root_page_exact(
    srv: Server, webroot: Path, ident: Ident, argv0: str, hostname: str
) -> None:
    start = len(srv.lines())
    with open_conn(srv) as conn:
        me = conn.local_addr
        conn.send(
            b"GET /?x=%41&y HTTP/1.1\r\nHost: 127.0.0.1:" + str(srv.port).encode() + b"\r\n"
            b"User-Agent: t/1\r\nAccept: */*\r\nx-lower: b\r\nX-Multi: 2\r\nX-MULTI: 1\r\n\r\n"
        )
        before = time.time()
        resp = conn.read_response()
    pid = srv.wait_for_log(r"^version=.* pid=(\d+) ").group(1)
    req = srv.wait_for_log(rf"^rootHandler: req=(\d+) from={re.escape(me)}$", start=start)
    pattern = root_page_re(
        version=ident.version,
        runtime=Rx(ident.runtime),
        arch=ident.arch,
        args=f"[{argv0} {' '.join(srv.args)}]",
        cwd=str(webroot),
        pid=pid,
        user="root (uid: 0)",
        hostname=hostname,
        listen=f"HTTP={srv.addr} HTTPS=:8443",
        remote=me,
        host=f"127.0.0.1:{srv.port}",
        query="x=%41&amp;y",  # deviation 1
        requests=req.group(1),
        headers=["User-Agent: t/1", "Accept: */*", "X-Lower: b", "X-Multi: 2", "X-Multi: 1"],
    )
    m = pattern.fullmatch(resp.body)
    assert m, resp.text
    assert is_same_or_descendant(int(pid), srv.pid)
    assert parse_go_duration(m.group("uptime").decode()) > 0
    # Current time: Go's time.Time.String() of (about) now.
    stamp = m.group("time").decode()
    t = time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S"))
    assert before - 5 <= t <= time.time() + 5, stamp


def test_D3_argv_and_banner_from_flags(webroot: Path, argv0: str) -> None:
    with serve(["-banner", "from flag", "-quota", "3"], cwd=webroot, https=False) as srv:
        page = http(srv, "GET", "/").body
        assert page_field(page, "Application banner") == "from flag"
        # Go %v of argv: space-joined in brackets, no quoting.
        expected = f"[{argv0} -addr {srv.addr} -banner from flag -quota 3]"
        assert page_field(page, "Application arguments") == expected
        assert root_page_re(quota="3", banner="from flag", requests="1").fullmatch(page)


def test_D3_path_not_found_block_and_decoded_path(srv: Server) -> None:
    resp = http(srv, "PUT", "/a%20b%3Fc?x=%41", host="h.example:81")
    assert resp.status == 200
    m = root_page_re(method="PUT", host="h.example:81", path="/a b?c", query="x=%41").fullmatch(
        resp.body
    )
    assert m, resp.text
    assert (
        b"\tBurnCPU: false<br>\n    \n<h2>Path not found!</h2>\nMethod: PUT<br>\n"
        b"Host: h.example:81<br>\nPath not found: [/a b?c]<br>\nQuery: [x=%41]<br>\n\n"
        b"    <h2>All known paths:</h2>\n" in resp.body
    )


def test_D3_application_dir_error(tmp_path: Path) -> None:
    cwd = tmp_path / "gone"
    cwd.mkdir()
    with serve(cwd=cwd, https=False) as srv:
        assert page_field(http(srv, "GET", "/").body, "Application dir") == str(cwd)
        cwd.rmdir()
        resp = http(srv, "GET", "/")
        assert resp.status == 200
        # `<cwd> (error: <err>)`: os.Getwd fails, so <cwd> is empty.
        assert re.fullmatch(
            r" \(error: .*no such file or directory\)", page_field(resp.body, "Application dir")
        )


def test_D3_root_path_has_empty_block(srv: Server) -> None:
    body = http(srv, "GET", "/").body
    assert b"\tBurnCPU: false<br>\n    \n    <h2>All known paths:</h2>\n" in body


def test_D3_headers_sorted_canonical_one_line_per_value(srv: Server) -> None:
    resp = http(
        srv,
        "GET",
        "/",
        headers=[
            ("zz-last", "1"),
            ("content-TYPE", "text/x"),
            ("a", "z"),
            ("A", "a"),
            ("x-y-z", "v"),
        ],
    )
    section = resp.text.split("<h2>Headers</h2>\n", 1)[1].split("<h2>Request Body</h2>", 1)[0]
    assert section == (
        "A: a<br>\nA: z<br>\nContent-Type: text/x<br>\nX-Y-Z: v<br>\nZz-Last: 1<br>\n"
    )


def test_D3_body_is_echoed(srv: Server) -> None:
    body = b"hello\x00world\nline2"
    resp = http(srv, "POST", "/", body=body)
    assert resp.body.endswith(
        b"<h2>Request Body</h2>\n<p>request body size: 17</p>\n<pre>\n"
        + body
        + b"\n</pre>\n</body>\n</html>\n"
    )


def test_D3_chunked_request_body_is_read(srv: Server) -> None:
    resp = http(
        srv,
        "POST",
        "/",
        headers=[("Transfer-Encoding", "chunked")],
        body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    assert b"<p>request body size: 11</p>\n<pre>\nhello world\n</pre>\n" in resp.body


def test_D3_counter_and_uptime(webroot: Path) -> None:
    with serve(["-quotaTime", "1h"], cwd=webroot, https=False) as srv:
        first = http(srv, "GET", "/").body
        assert requests_count(first) == 1
        assert http(srv, "GET", "/www/etc/passwd").status == 200
        second = http(srv, "GET", "/").body
        # Read after this request's own increment; static hits count too.
        fields = page_field(second, "Requests")
        assert re.fullmatch(
            r"3 \(Quota=0 ExitOnQuota=false QuotaStaus=500 QuotaTime=1h0m0s TimeLeft=(\S+)\)",
            fields,
        )
        left = parse_go_duration(fields.rsplit("TimeLeft=", 1)[1][:-1])
        up1 = parse_go_duration(page_field(first, "Uptime"))
        up2 = parse_go_duration(page_field(second, "Uptime"))
        assert 0 < up1 < up2
        assert 3600 - up2 - 1 < left < 3600 - up2 + 1e-3
        assert re.fullmatch(GO_TIME, page_field(second, "Current time"))


def test_D4_four_log_lines_per_request(srv: Server) -> None:
    start = len(srv.lines())
    with open_conn(srv) as conn:
        me = conn.local_addr
        resp = conn.request("POST", "/d4/x%20y?q=%41&r", host="h4:9", body=b"abc")
    n = requests_count(resp.body)
    srv.wait_for_log(r"^body size: 3$", start=start)
    msgs = srv.messages()[start:]
    assert msgs == [
        f"rootHandler: req={n} from={me}",
        f"rootHandler: req={n} method=POST host=h4:9 path=/d4/x y",
        f"rootHandler: req={n} query=q=%41&r",
        "body size: 3",
    ]


# --- deviation 1: reflected text is HTML-escaped ------------------------------------------


def test_dev1_root_page_escapes_reflected_text(webroot: Path, argv0: str) -> None:
    banner = "<script>alert(1)</script>&"
    with serve(["-banner", banner], cwd=webroot, https=False) as srv, open_conn(srv) as conn:
        conn.send(
            b"POST /p%3Ci%3E&?q=<u>&r=1 HTTP/1.1\r\nHost: a&b\r\n"
            b"X-Evil: <svg onload=alert(2)>\r\nX-A&B: v&1\r\nContent-Length: 28\r\n\r\n"
            b"<img src=x onerror=alert(3)>"
        )
        resp = conn.read_response()
        # Logs are not HTML: they keep the raw text.
        srv.wait_for_log(
            "^" + re.escape("rootHandler: req=1 method=POST host=a&b path=/p<i>&") + "$"
        )
        srv.wait_for_log("^" + re.escape("rootHandler: req=1 query=q=<u>&r=1") + "$")
    assert resp.status == 200
    page = resp.text
    for raw in ("<script>", "<i>", "<u>", "<svg", "<img", "a&b", "&1", "X-A&b"):
        assert raw not in page, raw
    esc_banner = "&lt;script&gt;alert(1)&lt;/script&gt;&amp;"
    m = root_page_re(
        banner=esc_banner,
        args=f"[{argv0} -addr {srv.addr} -banner {esc_banner}]",
        method="POST",
        host="a&amp;b",
        path="/p&lt;i&gt;&amp;",
        query="q=&lt;u&gt;&amp;r=1",
        headers=[
            "Content-Length: 28",
            "X-A&amp;b: v&amp;1",
            "X-Evil: &lt;svg onload=alert(2)&gt;",
        ],
        body=b"&lt;img src=x onerror=alert(3)&gt;",
        body_size=28,
    ).fullmatch(resp.body)
    assert m, page


# --- deviation 5: the echoed request body is bounded ----------------------------------------


@pytest.fixture(scope="module")
def small_cap(webroot: Path) -> Iterator[Server]:
    with serve(cwd=webroot, env={"WEBHELLO_MAX_BODY": "100"}, https=False) as s:
        yield s


def test_dev5_default_cap_is_1_mib(srv: Server) -> None:
    cap = 1024 * 1024
    ok = http(srv, "POST", "/", body=b"a" * cap)
    assert ok.status == 200
    assert f"<p>request body size: {cap}</p>".encode() in ok.body
    over = http(srv, "POST", "/", body=b"a" * (cap + 1))
    assert over.status == 413
    assert http(srv, "GET", "/").status == 200


def test_dev5_configured_cap(small_cap: Server) -> None:
    assert http(small_cap, "POST", "/", body=b"a" * 100).status == 200
    assert http(small_cap, "POST", "/", body=b"a" * 101).status == 413
    assert http(small_cap, "GET", "/").status == 200


def test_dev5_cap_applies_to_chunked_bodies(small_cap: Server) -> None:
    chunks = b"".join(b"%x\r\n%s\r\n" % (40, b"c" * 40) for _ in range(3)) + b"0\r\n\r\n"
    resp = http(small_cap, "POST", "/", headers=[("Transfer-Encoding", "chunked")], body=chunks)
    assert resp.status == 413
    ok = b"".join(b"%x\r\n%s\r\n" % (50, b"c" * 50) for _ in range(2)) + b"0\r\n\r\n"
    resp = http(small_cap, "POST", "/", headers=[("Transfer-Encoding", "chunked")], body=ok)
    assert resp.status == 200
    assert b"<p>request body size: 100</p>" in resp.body


def test_dev5_http_client_sees_413(small_cap: Server) -> None:
    conn = HTTPConnection("127.0.0.1", small_cap.port, timeout=10)
    try:
        conn.request("POST", "/", body=b"z" * 5000)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 413
    finally:
        conn.close()
