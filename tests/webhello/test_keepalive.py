"""Spec H (keep-alive on by default; -disableKeepalive closes after every response)."""
# ruff: noqa: N802  (tests are named after spec items)

from __future__ import annotations

import subprocess
from http.client import HTTPConnection
from pathlib import Path

from tests.webhello._server import Server, open_conn, page_field, serve


def test_H1_persistent_connection_http_client(srv: Server) -> None:
    conn = HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        pages = []
        for path in ("/", "/www/etc/passwd", "/again"):
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200
            assert resp.getheader("Connection") is None
            assert not resp.will_close
            pages.append(body)
        sock_name = "{}:{}".format(*conn.sock.getsockname())
    finally:
        conn.close()
    # Both root pages were served to the same client address: one connection.
    assert page_field(pages[0], "Your address") == sock_name
    assert page_field(pages[2], "Your address") == sock_name


def test_H1_curl_reuses_the_connection(srv: Server) -> None:
    url = f"http://127.0.0.1:{srv.port}"
    res = subprocess.run(
        ["curl", "-sS", "-v", "-o", "/dev/null", "-o", "/dev/null", f"{url}/", f"{url}/x"],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    assert "Re-using existing connection" in res.stderr, res.stderr
    assert res.stderr.count("Connected to") == 1, res.stderr


def test_H2_disable_keepalive_closes_every_response(webroot: Path) -> None:
    with serve(["-disableKeepalive"], cwd=webroot, https=False) as srv:
        assert "keepalive: false" in srv.messages()
        cases = [
            ("/", 200),
            ("/www/etc/passwd", 200),
            ("/www/nope", 404),
            ("/www", 301),
            ("/www/etc", 301),
            ("/a/../b", 301),
        ]
        for target, status in cases:
            with open_conn(srv) as conn:
                resp = conn.request("GET", target)
                assert resp.status == status, target
                assert resp.header_all("Connection") == ["close"], (target, resp.head)
                assert conn.closed_by_peer(), target
            if target == "/":
                assert page_field(resp.body, "Keepalive") == "false"
        # Even a client asking for keep-alive gets one response per connection.
        with open_conn(srv) as conn:
            resp = conn.request("GET", "/", headers=[("Connection", "keep-alive")])
            assert (resp.status, resp.header("Connection")) == (200, "close")
            assert conn.closed_by_peer()
