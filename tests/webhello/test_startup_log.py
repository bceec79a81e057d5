"""Spec B (start-up logging on stderr, Go log format) and K1 (runs with a minimal env)."""
# ruff: noqa: N802  (tests are named after spec items)

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

from tests.webhello._server import (
    LOG_LINE,
    Server,
    http,
    is_same_or_descendant,
    match_lines,
    page_field,
    root_page_re,
    run,
    serve,
)
from tests.webhello.conftest import NO_PASSWD_UID, NON_ROOT_UID, RUNTIME_ANY, Ident

NO_USER = "current user error: user: Current requires cgo or $USER, $HOME set in environment"


def test_B1_default_run_lines_exact(webroot: Path, ident: Ident, ncpus: int) -> None:
    started = time.time()
    with serve(cwd=webroot, https=False) as srv:
        lines = srv.lines()
        expected = [
            *ident.head(ncpus),
            "banner: banner default",
            "keepalive: true",
            "burnCpu=false",
            "quotaTime=0s",
            "requests quota=0 (0=unlimited) exitOnQuota=false quotaStatus=500",
            "TLS key file not found: key.pem - disabling TLS",
            "TLS cert file not found: cert.pem - disabling TLS",
            f"mapping www path /www/ to directory {webroot}",
            f"using TCP ports HTTP={srv.addr} HTTPS=:8443 TLS=false",
            f"serving HTTP on TCP {srv.addr}",
        ]
        m = match_lines(srv.messages(), [*expected[:3], *map(re.escape, expected[3:])])
        assert is_same_or_descendant(int(m[0].group("pid")), srv.pid)
        # Go log prefix: local time `YYYY/MM/DD HH:MM:SS`, taken while we watched.
        for line in lines:
            stamp = LOG_LINE.match(line)
            assert stamp, line
            t = time.mktime(time.strptime(stamp.group(1), "%Y/%m/%d %H:%M:%S"))
            assert started - 2 <= t <= time.time() + 1, line
        assert srv.stdout == b""


def test_B1_optional_lines_in_order(
    webroot: Path, tmp_path: Path, ident: Ident, ncpus: int
) -> None:
    touch = tmp_path / "v.txt"
    args = ["-touch", str(touch), "-quotaTime", "9x9", "-burnCpu", "-disableKeepalive"]
    with serve(args, cwd=webroot, https=False) as srv:
        expected = [
            f"dumpVersion: writing to touch={touch}",
            # `s` appended (it ended in a digit), then Go's time.ParseDuration error text.
            'quotaTime: time: unknown unit "x" in duration "9x9s"',
            "banner: banner default",
            "keepalive: false",
            "burnCpu=true",
            "quotaTime=0s",
            "requests quota=0 (0=unlimited) exitOnQuota=false quotaStatus=500",
            "TLS key file not found: key.pem - disabling TLS",
            "TLS cert file not found: cert.pem - disabling TLS",
            "burnCpu: enabling path /burncpu",
            f"mapping www path /www/ to directory {webroot}",
            f"using TCP ports HTTP={srv.addr} HTTPS=:8443 TLS=false",
            f"serving HTTP on TCP {srv.addr}",
        ]
        match_lines(srv.messages(), [*ident.head(ncpus), *map(re.escape, expected)])


def test_B1_tls_lines(tls_dir: Path, ident: Ident, ncpus: int) -> None:
    with serve(cwd=tls_dir) as srv:
        expected = [
            "banner: banner default",
            "keepalive: true",
            "burnCpu=false",
            "quotaTime=0s",
            "requests quota=0 (0=unlimited) exitOnQuota=false quotaStatus=500",
            f"mapping www path /www/ to directory {tls_dir}",
            f"using TCP ports HTTP={srv.addr} HTTPS={srv.https_addr} TLS=true",
            # The HTTPS part is the bare port.
            f"installing redirect from HTTP={srv.addr} to HTTPS={srv.https_port}",
            f"serving HTTPS on TCP {srv.https_addr}",
        ]
        match_lines(srv.messages(), [*ident.head(ncpus), *map(re.escape, expected)])


def test_B1_gomaxprocs_follows_cpu_affinity(tmp_path: Path, ident: Ident, ncpus: int) -> None:
    res = run(["-version"], cwd=tmp_path, cpus="0")
    assert res.returncode == 0
    assert re.fullmatch(ident.version_line(1), res.messages()[0])
    res = run(["-version"], cwd=tmp_path)
    assert re.fullmatch(ident.version_line(ncpus), res.messages()[0])


def test_B1_user_line_from_passwd(open_dir: Path, non_root_name: str) -> None:
    res = run(["-version"], cwd=open_dir, uid=NON_ROOT_UID)
    assert res.returncode == 0
    assert res.messages()[2] == f"user: {non_root_name} (uid: {NON_ROOT_UID})"


def test_B1_uid_without_passwd_entry(open_dir: Path, ident: Ident, ncpus: int) -> None:
    """No passwd entry and no USER/HOME: an error line, no user line; page shows `? (uid: ?)`."""
    with serve(cwd=open_dir, env={}, uid=NO_PASSWD_UID, https=False) as srv:
        msgs = srv.messages()
        assert re.fullmatch(ident.version_line(ncpus, runtime=RUNTIME_ANY), msgs[0])
        assert msgs[1:4] == ["GWH_BANNER='' PORT=''", NO_USER, "banner: banner default"]
        assert not any(m.startswith("user:") for m in msgs)
        page = http(srv, "GET", "/").body
        assert page_field(page, "User") == "? (uid: ?)"


def test_B1_uid_without_passwd_entry_uses_user_and_home(open_dir: Path) -> None:
    env = {"USER": "bob", "HOME": "/home/bob"}
    res = run(["-version"], cwd=open_dir, env=env, uid=NO_PASSWD_UID)
    assert res.returncode == 0
    assert res.messages()[2] == f"user: bob (uid: {NO_PASSWD_UID})"
    assert NO_USER not in res.messages()


def test_B2_serving_line_printed_before_listen_fails(webroot: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        addr = f"127.0.0.1:{blocker.getsockname()[1]}"
        with Server(["-addr", addr], cwd=webroot).start(ready=False) as srv:
            assert srv.wait() == 1
            assert srv.messages()[-2:] == [
                f"serving HTTP on TCP {addr}",
                f"listenAndServe: {addr}: listen tcp {addr}: bind: address already in use",
            ]


def test_K1_runs_with_empty_environment_as_unknown_uid(open_dir: Path) -> None:
    """Like a FROM-scratch container: no env, a uid without passwd entry, an empty cwd."""
    with serve(cwd=open_dir, env={}, uid=NO_PASSWD_UID, https=False) as srv:
        root = http(srv, "GET", "/")
        assert root.status == 200
        assert root_page_re(user="? (uid: ?)", cwd=str(open_dir)).fullmatch(root.body)
        listing = http(srv, "GET", "/www/")
        assert listing.status == 200
        assert listing.body == (
            b'<!doctype html>\n<meta name="viewport" content="width=device-width">\n<pre>\n</pre>\n'
        )
        assert srv.stdout == b""
