"""Spec E (static files under /www/): mapping, headers, conditional/range, errors, listing."""
# ruff: noqa: N802  (tests are named after spec items)

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.webhello._server import (
    HTTP_DATE,
    Server,
    http,
    open_conn,
    requests_count,
    serve,
)
from tests.webhello.conftest import GO_MIME, MTIME_HTTP, NON_ROOT_UID, PASSWD

PLAIN = "text/plain; charset=utf-8"
FILE_HEADERS = ["Accept-Ranges", "Content-Length", "Content-Type", "Date", "Last-Modified"]
ERROR_HEADERS = ["Content-Length", "Content-Type", "Date", "X-Content-Type-Options"]
LISTING_HEAD = b'<!doctype html>\n<meta name="viewport" content="width=device-width">\n<pre>\n'


def test_E1_www_maps_to_cwd(srv: Server, webroot: Path) -> None:
    resp = http(srv, "GET", "/www/etc/t/x.txt")
    assert (resp.status, resp.body) == (200, (webroot / "etc/t/x.txt").read_bytes())
    app = http(srv, "GET", "/www/app")
    assert app.body == (webroot / "app").read_bytes()


def test_E1_cannot_escape_cwd(srv: Server) -> None:
    for target in ("/www/%2e%2e/etc/passwd", "/www/etc/%2e%2e/%2e%2e/%2e%2e/etc/passwd"):
        resp = http(srv, "GET", target)
        assert (resp.status, resp.body) == (200, PASSWD), target
    resp = http(srv, "GET", "/www/%2e%2e/%2e%2e/")
    assert resp.status == 200
    assert resp.body == LISTING_HEAD + b'<a href="app">app</a>\n<a href="etc/">etc/</a>\n</pre>\n'


def test_E2_every_static_hit_is_counted_and_logged(srv: Server) -> None:
    before = requests_count(http(srv, "GET", "/").body)
    start = srv.settle_root(before)
    with open_conn(srv) as conn:
        me = conn.local_addr
        assert conn.request("GET", "/www/no-such-file").status == 404
        assert conn.request("GET", "/www/etc/passwd").status == 200
        assert conn.request("GET", "/www/etc").status == 301
    srv.wait_for_log(r"url=/www/etc from=", start=start)
    assert srv.messages()[start:] == [
        f"staticHandler.ServeHTTP req={before + 1} url=/www/no-such-file from={me}",
        f"staticHandler.ServeHTTP req={before + 2} url=/www/etc/passwd from={me}",
        f"staticHandler.ServeHTTP req={before + 3} url=/www/etc from={me}",
    ]
    assert requests_count(http(srv, "GET", "/").body) == before + 4


@pytest.mark.parametrize(
    ("path", "ctype"),
    [
        ("/www/etc/t/x.html", "text/html; charset=utf-8"),
        ("/www/etc/t/x.json", "application/json"),
        ("/www/etc/t/x.png", "image/png"),
        ("/www/etc/t/x.txt", PLAIN),
        ("/www/etc/passwd", PLAIN),
        ("/www/app", "application/octet-stream"),
    ],
)
def test_E3_file_headers_and_content_type(
    srv: Server, webroot: Path, path: str, ctype: str
) -> None:
    resp = http(srv, "GET", path)
    data = (webroot / path.removeprefix("/www/")).read_bytes()
    assert (resp.status, resp.body) == (200, data)
    assert sorted(resp.names()) == FILE_HEADERS  # no ETag
    assert resp.header("Content-Type") == ctype
    assert resp.header("Accept-Ranges") == "bytes"
    assert resp.header("Content-Length") == str(len(data))
    assert resp.header("Last-Modified") == MTIME_HTTP


@pytest.mark.parametrize(
    ("name", "ctype"),
    [
        *((f"t{ext}", ctype) for ext, ctype in GO_MIME.items()),
        ("UPPER.HTML", "text/html; charset=utf-8"),  # Go retries the lower-cased extension
        ("page.txt", "text/html; charset=utf-8"),  # sniffed
        ("noext", PLAIN),  # empty: sniffed as text
    ],
)
def test_E3_go_builtin_types_then_sniffing(srv: Server, name: str, ctype: str) -> None:
    resp = http(srv, "GET", f"/www/etc/t/{name}")
    assert (resp.status, resp.header("Content-Type")) == (200, ctype)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "BREW"])
def test_E3_any_method_returns_the_file(srv: Server, method: str) -> None:
    resp = http(srv, method, "/www/etc/passwd", body=b"ignored")
    assert (resp.status, resp.body) == (200, PASSWD)


def test_E4_benchmarked_request_exact_bytes(srv: Server) -> None:
    with open_conn(srv) as conn:
        conn.send(b"GET /www/etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: t\r\n\r\n")
        resp = conn.read_response()
    assert re.fullmatch(
        rb"HTTP/1\.1 200 OK\r\nAccept-Ranges: bytes\r\nContent-Length: 79\r\n"
        rb"Content-Type: text/plain; charset=utf-8\r\n"
        rb"Last-Modified: Sat, 01 Jan 2000 00:00:00 GMT\r\nDate: "
        + HTTP_DATE.encode()
        + rb"\r\n\r\n",
        resp.head,
    ), resp.head
    assert resp.body == PASSWD


@pytest.mark.parametrize(
    ("ims", "status"),
    [
        (MTIME_HTTP, 304),
        ("Sun, 02 Jan 2000 00:00:00 GMT", 304),
        ("Fri, 31 Dec 1999 23:59:59 GMT", 200),
    ],
)
def test_E5_if_modified_since(srv: Server, ims: str, status: int) -> None:
    resp = http(srv, "GET", "/www/etc/passwd", headers=[("If-Modified-Since", ims)])
    assert resp.status == status
    if status == 304:
        assert (resp.reason, sorted(resp.names())) == ("Not Modified", ["Date", "Last-Modified"])
        assert resp.header("Last-Modified") == MTIME_HTTP
    else:
        assert resp.body == PASSWD


def test_E5_single_range(srv: Server) -> None:
    resp = http(srv, "GET", "/www/etc/passwd", headers=[("Range", "bytes=0-3")])
    assert (resp.status, resp.reason) == (206, "Partial Content")
    assert resp.header("Content-Range") == "bytes 0-3/79"
    assert resp.header("Content-Length") == "4"
    assert resp.body == b"root"
    assert resp.header("ETag") is None


def test_E5_multi_range(srv: Server) -> None:
    resp = http(srv, "GET", "/www/etc/passwd", headers=[("Range", "bytes=0-3,10-12")])
    assert resp.status == 206
    m = re.fullmatch(
        r"multipart/byteranges; boundary=([0-9a-f]+)", resp.header("Content-Type") or ""
    )
    assert m, resp.header("Content-Type")
    delim = b"--" + m.group(1).encode()
    parts = resp.body.split(delim)
    assert parts[0] == b"" and parts[-1] == b"--\r\n", resp.body
    got = []
    for part in parts[1:-1]:
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        assert headers["Content-Type"] == PLAIN
        got.append((headers["Content-Range"], data.removesuffix(b"\r\n")))
    assert got == [("bytes 0-3/79", PASSWD[0:4]), ("bytes 10-12/79", PASSWD[10:13])]
    assert resp.header("Content-Length") == str(len(resp.body))


def test_E5_unsatisfiable_range_416(srv: Server) -> None:
    resp = http(srv, "GET", "/www/etc/passwd", headers=[("Range", "bytes=500-600")])
    assert (resp.status, resp.reason) == (416, "Requested Range Not Satisfiable")
    assert resp.header("Content-Range") == "bytes */79"
    assert resp.header("Content-Type") == PLAIN
    assert resp.body == b"invalid range: failed to overlap\n"


def test_E6_missing_file_404(srv: Server) -> None:
    resp = http(srv, "GET", "/www/etc/nope.txt")
    assert (resp.version, resp.status, resp.reason) == ("HTTP/1.1", 404, "Not Found")
    assert sorted(resp.names()) == ERROR_HEADERS
    assert resp.header("Content-Type") == PLAIN
    assert resp.header("X-Content-Type-Options") == "nosniff"
    assert resp.header("Content-Length") == "19"
    assert resp.body == b"404 page not found\n"


def test_E7_unreadable_file_or_dir_403(open_dir: Path) -> None:
    """Mode 000 as a non-root uid (root reads anything)."""
    (open_dir / "secret.txt").write_bytes(b"secret\n")
    (open_dir / "secret.txt").chmod(0)
    (open_dir / "locked").mkdir()
    (open_dir / "locked" / "f").write_bytes(b"f\n")
    (open_dir / "locked").chmod(0)
    with serve(cwd=open_dir, uid=NON_ROOT_UID, https=False) as srv:
        for target in ("/www/secret.txt", "/www/locked/", "/www/locked/f"):
            resp = http(srv, "GET", target)
            assert (resp.status, resp.reason) == (403, "Forbidden"), target
            assert sorted(resp.names()) == ERROR_HEADERS
            assert resp.header("Content-Type") == PLAIN
            assert resp.header("X-Content-Type-Options") == "nosniff"
            assert resp.body == b"403 Forbidden\n"


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/www/etc", "etc/"),
        ("/www/etc/t", "t/"),
        ("/www/etc/passwd/", "../passwd"),
        ("/www/etc/idx/index.html", "./"),
        ("/www/nope/index.html", "./"),
        ("/www/index.html", "./"),
    ],
)
def test_E8_file_server_redirects(srv: Server, target: str, location: str) -> None:
    start = len(srv.lines())
    resp = http(srv, "GET", target)
    assert (resp.status, resp.reason) == (301, "Moved Permanently")
    assert resp.header("Location") == location
    assert resp.header("Content-Length") == "0"
    assert resp.header("Content-Type") is None
    assert resp.body == b""
    # The handler ran: counted and logged.
    srv.wait_for_log(
        rf"^staticHandler\.ServeHTTP req=\d+ url={re.escape(target)} from=", start=start
    )


def test_E9_directory_index(srv: Server, webroot: Path) -> None:
    resp = http(srv, "GET", "/www/etc/idx/")
    assert resp.status == 200
    assert resp.body == (webroot / "etc/idx/index.html").read_bytes()
    assert resp.header("Content-Type") == "text/html; charset=utf-8"
    assert resp.header("Accept-Ranges") == "bytes"
    assert resp.header("Last-Modified") == MTIME_HTTP


def test_E10_listing_of_root_exact(srv: Server) -> None:
    resp = http(srv, "GET", "/www/")
    assert resp.status == 200
    assert resp.body == LISTING_HEAD + b'<a href="app">app</a>\n<a href="etc/">etc/</a>\n</pre>\n'
    assert len(resp.body) == 127
    assert sorted(resp.names()) == ["Content-Length", "Content-Type", "Date", "Last-Modified"]
    assert resp.header("Content-Type") == "text/html; charset=utf-8"
    assert resp.header("Content-Length") == "127"
    assert resp.header("Last-Modified") == MTIME_HTTP


def test_E10_listing_rules(srv: Server) -> None:
    resp = http(srv, "GET", "/www/etc/list/")
    assert resp.status == 200
    # Byte order, dirs with `/`, dotfiles listed, a symlink under its own name, href
    # URL-escaped, text HTML-escaped, no parent entry, no sizes or dates.
    assert resp.body == LISTING_HEAD + (
        b'<a href=".hidden">.hidden</a>\n'
        b'<a href="A.txt">A.txt</a>\n'
        b'<a href="Zdir/">Zdir/</a>\n'
        b'<a href="a&b%20%3Cc%3E.html">a&amp;b &lt;c&gt;.html</a>\n'
        b'<a href="b.txt">b.txt</a>\n'
        b'<a href="lnk">lnk</a>\n'
        b"</pre>\n"
    )
    assert http(srv, "GET", "/www/etc/list/lnk").body == b"x\n"
