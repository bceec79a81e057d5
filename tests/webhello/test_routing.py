"""Spec C (routing, mux redirects, server-level responses)."""
# ruff: noqa: N802  (tests are named after spec items)

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.webhello._server import (
    HTTP_DATE,
    RawConn,
    Response,
    Server,
    http,
    open_conn,
    requests_count,
)
from tests.webhello.conftest import PASSWD


def counted_and_logged(srv: Server, action: Callable[[], object]) -> tuple[int, list[str]]:
    """How many counted requests action made, and the log lines it produced.

    A root request before and after brackets the action; the lines between the two are the
    action's own (requests are sequential).
    """
    before = requests_count(http(srv, "GET", "/").body)
    start = srv.settle_root(before)
    action()
    after = requests_count(http(srv, "GET", "/").body)
    marker = re.compile(rf"^rootHandler: req={after} from=")
    srv.wait_for_log(marker, start=start)
    msgs = srv.messages()[start:]
    idx = next(i for i, text in enumerate(msgs) if marker.search(text))
    return after - before - 1, msgs[:idx]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "BREW"])
def test_C1_every_route_accepts_any_method(srv: Server, method: str) -> None:
    root = http(srv, method, "/", body=b"x" if method in {"POST", "PUT"} else b"")
    assert root.status == 200
    assert f"Request method={method} " in root.text
    static = http(srv, method, "/www/etc/passwd")
    assert (static.status, static.body) == (200, PASSWD)


def test_C2_exact_www_redirects_to_slash(srv: Server) -> None:
    box: list[Response] = []
    n, logged = counted_and_logged(srv, lambda: box.append(http(srv, "GET", "/www")))
    resp = box[0]
    assert (resp.version, resp.status, resp.reason) == ("HTTP/1.1", 301, "Moved Permanently")
    assert sorted(resp.names()) == ["Content-Length", "Content-Type", "Date", "Location"]
    assert resp.header("Location") == "/www/"
    assert resp.header("Content-Type") == "text/html; charset=utf-8"
    assert resp.header("Content-Length") == "40"
    assert resp.body == b'<a href="/www/">Moved Permanently</a>.\n\n'
    # Produced by the mux before any handler: not counted, not logged.
    assert (n, logged) == (0, [])


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/a/../b?x=1", "/b?x=1"),
        ("/www/./etc/passwd", "/www/etc/passwd"),
        ("/www/../etc/passwd", "/etc/passwd"),
        ("//www/", "/www/"),
        ("/x/./y", "/x/y"),
    ],
)
def test_C2_unclean_paths_are_cleaned_and_redirected(
    srv: Server, target: str, location: str
) -> None:
    box: list[Response] = []
    n, logged = counted_and_logged(srv, lambda: box.append(http(srv, "GET", target)))
    assert (box[0].status, box[0].header("Location")) == (301, location)
    assert (n, logged) == (0, [])


def test_C2_encoded_dotdot_reaches_file_server_which_stays_in_root(srv: Server) -> None:
    # Not cleaned by the mux; the file server resolves it inside the web root (the fixture's
    # etc/passwd, never the host's).
    for target in ("/www/%2e%2e/etc/passwd", "/www/%2e%2e/%2e%2e/%2E%2E/etc/passwd"):
        resp = http(srv, "GET", target)
        assert (resp.status, resp.body) == (200, PASSWD), target


def test_C3_options_star(srv: Server) -> None:
    box: list[Response] = []
    n, logged = counted_and_logged(srv, lambda: box.append(http(srv, "OPTIONS", "*")))
    resp = box[0]
    assert (resp.version, resp.status, resp.reason) == ("HTTP/1.1", 200, "OK")
    assert resp.header("Content-Length") == "0"
    assert resp.body == b""
    assert (n, logged) == (0, [])


def test_C3_garbage_request_line_400(srv: Server) -> None:
    with open_conn(srv) as conn:
        conn.send(b"BOGUS\r\n\r\n")
        raw = conn.read_all()
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *headers = head.decode("latin-1").split("\r\n")
    assert status == "HTTP/1.1 400 Bad Request"
    assert "Content-Type: text/plain; charset=utf-8" in headers
    assert "Connection: close" in headers
    assert body == b"400 Bad Request"


def test_C3_http11_without_host_400(srv: Server) -> None:
    with open_conn(srv) as conn:
        conn.send(b"GET / HTTP/1.1\r\n\r\n")
        raw = conn.read_all()
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *headers = head.decode("latin-1").split("\r\n")
    assert status == "HTTP/1.1 400 Bad Request: missing required Host header"
    assert "Content-Type: text/plain; charset=utf-8" in headers
    assert "Connection: close" in headers
    assert body == b"400 Bad Request: missing required Host header"


def test_C3_http10_without_host_is_accepted(srv: Server) -> None:
    start = len(srv.lines())
    with open_conn(srv) as conn:
        conn.send(b"GET /q HTTP/1.0\r\n\r\n")
        resp = conn.read_response()
        assert conn.closed_by_peer()
    assert (resp.version, resp.status, resp.reason) == ("HTTP/1.0", 200, "OK")
    assert resp.header("Connection") is None
    assert "\tRequest method=GET host= path=[/q] query=[]<br>\n" in resp.text
    assert "\nHost: <br>\nPath not found: [/q]<br>\n" in resp.text
    srv.wait_for_log(r"^rootHandler: req=\d+ method=GET host= path=/q$", start=start)


def test_C3_no_server_header_and_always_date(srv: Server) -> None:
    responses = [
        http(srv, "GET", "/"),
        http(srv, "HEAD", "/"),
        http(srv, "GET", "/www/etc/passwd"),
        http(srv, "GET", "/www/nope"),
        http(srv, "GET", "/www"),
        http(srv, "OPTIONS", "*"),
        http(srv, "GET", "/www/", headers=[("Range", "bytes=0-1")]),
    ]
    for resp in responses:
        assert resp.header("Server") is None, resp.head
        assert len(resp.header_all("Date")) == 1, resp.head
        assert re.fullmatch(HTTP_DATE, resp.header("Date") or ""), resp.head


def test_C3_client_connection_close(srv: Server) -> None:
    with open_conn(srv) as conn:
        resp = conn.request("GET", "/", headers=[("Connection", "close")])
        assert resp.status == 200
        assert resp.header("Connection") == "close"
        assert conn.closed_by_peer()


def test_C3_http10_closes_unless_keep_alive(srv: Server) -> None:
    with open_conn(srv) as conn:
        resp = conn.request("GET", "/", version="HTTP/1.0")
        assert (resp.version, resp.status) == ("HTTP/1.0", 200)
        assert resp.header("Connection") is None
        assert conn.closed_by_peer()
    with open_conn(srv) as conn:
        hdr = [("Connection", "keep-alive")]
        first = conn.request("GET", "/", version="HTTP/1.0", headers=hdr)
        assert (first.version, first.status) == ("HTTP/1.0", 200)
        assert first.header("Connection") == "keep-alive"
        second = conn.request("GET", "/www/etc/passwd", version="HTTP/1.0", headers=hdr)
        assert (second.status, second.body) == (200, PASSWD)


def test_C3_pipelined_requests_answered_in_order(srv: Server) -> None:
    with RawConn(srv.connect(srv.port)) as conn:
        conn.send(
            b"GET /www/etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /www/nope HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert conn.read_response().body == PASSWD
        assert conn.read_response().status == 404
