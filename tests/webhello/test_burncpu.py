"""Spec G (/burncpu, only with -burnCpu)."""
# ruff: noqa: N802  (tests are named after spec items)

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.webhello._server import Server, http, open_conn, root_page_re, serve

BURN_TIMEOUT = 60.0  # the reference burns ~0.5 s; a slow port still has to answer


@pytest.fixture(scope="module")
def burn_srv(webroot: Path) -> Iterator[Server]:
    with serve(["-burnCpu", "-quota", "4"], cwd=webroot, https=False) as s:
        yield s


def test_G1_G2_burn_handler(burn_srv: Server) -> None:
    srv = burn_srv
    assert "burnCpu=true" in srv.messages()
    assert "burnCpu: enabling path /burncpu" in srv.messages()
    start = len(srv.lines())
    with open_conn(srv) as conn:
        conn.sock.settimeout(BURN_TIMEOUT)
        me = conn.local_addr
        first = conn.request("POST", "/burncpu", body=b"ignored")
        second = conn.request("GET", "/burncpu/any/thing?x=1")
    for resp in (first, second):
        assert (resp.status, resp.body) == (200, b"done\n")
        assert sorted(resp.names()) == ["Content-Length", "Content-Type", "Date"]
        assert resp.header("Content-Type") == "text/plain; charset=utf-8"
        assert resp.header("Content-Length") == "5"
    assert srv.messages()[start:] == [
        f"burncpuHandler: req=1 from={me}",
        f"burncpuHandler: req=2 from={me}",
    ]
    # Counted like every other handler; never listed among the known paths.
    page = http(srv, "GET", "/").body
    assert root_page_re(requests="3", quota="4", burn="true").fullmatch(page), page


def test_G2_burn_handler_applies_the_quota(webroot: Path) -> None:
    with serve(["-burnCpu", "-quota", "1"], cwd=webroot, https=False) as srv:
        assert http(srv, "GET", "/").status == 200
        start = srv.settle_root(1)
        with open_conn(srv) as conn:
            conn.sock.settimeout(BURN_TIMEOUT)
            me = conn.local_addr
            resp = conn.request("POST", "/burncpu/x")
        assert (resp.status, resp.body) == (500, b"Quota forced malfunction\n")
        assert srv.window("^burncpuHandler", 2, start) == [
            f"burncpuHandler: req=2 from={me}",
            "burncpuHandler req=2 quota=1 exitOnQuota=false quotaStatus=500 reached",
        ]


def test_G1_without_flag_burncpu_is_an_unknown_path(srv: Server) -> None:
    resp = http(srv, "GET", "/burncpu")
    assert resp.status == 200
    assert b"\nPath not found: [/burncpu]<br>\n" in resp.body
    assert root_page_re(path="/burncpu", host=f"127.0.0.1:{srv.port}").fullmatch(resp.body)
