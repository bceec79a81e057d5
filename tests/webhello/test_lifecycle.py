"""Spec J (lifecycle, exit codes, listen errors, listen addresses) and deviation 6 (graceful
SIGTERM/SIGINT: exit 0 with one log line)."""
# ruff: noqa: N802  (tests are named after spec items)

from __future__ import annotations

import contextlib
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.webhello._server import (
    LOG_LINE,
    RawConn,
    Server,
    http,
    open_conn,
    page_field,
    run,
    serve,
    two_ports,
)
from tests.webhello.conftest import NON_ROOT_UID


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_J1_dev6_signal_exits_0_with_one_log_line(webroot: Path, sig: signal.Signals) -> None:
    with serve(cwd=webroot, https=False) as srv:
        assert http(srv, "GET", "/").status == 200
        time.sleep(0.1)  # the request's own log lines are out
        before = len(srv.lines())
        assert srv.stop(sig) == 0
        new = srv.lines()[before:]
        assert len(new) == 1, new
        assert LOG_LINE.match(new[0]), new


def test_dev6_sigterm_finishes_in_flight_request(webroot: Path) -> None:
    with serve(cwd=webroot, https=False) as srv:
        conn = open_conn(srv)
        with conn:
            conn.send(b"POST /inflight HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n12345")
            time.sleep(0.2)
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            # Stops accepting: a new client is refused or closed without an answer.
            try:
                late = srv.connect(srv.port, timeout=2)
            except ConnectionRefusedError:
                pass
            else:
                with RawConn(late) as lc:
                    lc.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                    with contextlib.suppress(ConnectionResetError, TimeoutError):
                        assert lc.read_all() == b""
            assert srv.alive(), "exited before the in-flight request finished"
            conn.send(b"67890")
            resp = conn.read_response()
        assert resp.status == 200
        assert b"<p>request body size: 10</p>\n<pre>\n1234567890\n</pre>\n" in resp.body
        assert srv.wait() == 0


def test_J2_exit_codes(tmp_path: Path) -> None:
    assert run(["-h"], cwd=tmp_path).returncode == 0
    assert run(["-version"], cwd=tmp_path).returncode == 0
    assert run(["-nosuchflag"], cwd=tmp_path).returncode == 2
    assert run(["-quota", "x"], cwd=tmp_path).returncode == 2
    assert run(["-addr", "8080"], cwd=tmp_path).returncode == 1


def _fails(args: list[str], cwd: Path, **kw: object) -> list[str]:
    with Server(args, cwd=cwd, **kw).start(ready=False) as srv:  # type: ignore[arg-type]
        assert srv.wait() == 1, srv.lines()
        return srv.messages()


def test_J3_address_in_use(webroot: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        addr = f"127.0.0.1:{blocker.getsockname()[1]}"
        msgs = _fails(["-addr", addr], webroot)
    assert msgs[-1] == f"listenAndServe: {addr}: listen tcp {addr}: bind: address already in use"


def test_J3_missing_port(webroot: Path) -> None:
    msgs = _fails(["-addr", "8080"], webroot)
    assert msgs[-2:] == [
        "serving HTTP on TCP 8080",
        "listenAndServe: 8080: listen tcp: address 8080: missing port in address",
    ]


def test_J3_unresolvable_host_name(webroot: Path) -> None:
    """An empty DNS label is refused before any lookup: Go reports it as an unknown host."""
    msgs = _fails(["-addr", "a..b:80"], webroot)
    assert msgs[-1] == "listenAndServe: a..b:80: listen tcp: lookup a..b: no such host"


def test_J3_unknown_port_name(webroot: Path) -> None:
    msgs = _fails([], webroot, env={"PORT": "abc"})
    assert msgs[-2:] == [
        "serving HTTP on TCP :abc",
        "listenAndServe: :abc: listen tcp: lookup tcp/abc: unknown port",
    ]


def test_J3_privileged_port_as_non_root(open_dir: Path) -> None:
    # In a private netns (unprivileged ports start at 1024 there; nothing is exposed).
    msgs = _fails(["-addr", ":80"], open_dir, uid=NON_ROOT_UID, netns=True)
    assert msgs[-1] == "listenAndServe: :80: listen tcp :80: bind: permission denied"


def test_J3_redirect_listener_failure(tls_dir: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        addr = f"127.0.0.1:{blocker.getsockname()[1]}"
        https_addr = f"127.0.0.1:{two_ports()[0]}"
        msgs = _fails(["-addr", addr, "-httpsAddr", https_addr], tls_dir)
    assert msgs[-1] == (
        f"redirect: listenAndServe: {addr}: listen tcp {addr}: bind: address already in use"
    )


def test_J4_host_port_listens_on_that_address_only(webroot: Path) -> None:
    with serve(cwd=webroot, https=False) as srv:
        assert http(srv, "GET", "/").status == 200
        with pytest.raises(ConnectionRefusedError):
            srv.connect(srv.port, "::1", timeout=2).close()


def test_J4_colon_port_listens_on_ipv4_and_ipv6(webroot: Path) -> None:
    p, _ = two_ports()
    with Server(["-addr", f":{p}"], cwd=webroot, netns=True).start() as srv:
        for host in ("127.0.0.1", "::1"):
            with RawConn(srv.connect(p, host)) as conn:
                me = conn.local_addr
                resp = conn.request("GET", "/", host=f"localhost:{p}")
            assert resp.status == 200
            assert page_field(resp.body, "Your address") == me
        assert me.startswith("[::1]:")
