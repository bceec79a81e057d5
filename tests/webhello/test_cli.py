"""Spec A (command line): flags, usage text, flag syntax, env defaults, -version, -touch."""
# ruff: noqa: N802  (tests are named after spec items: test_A3_..., test_dev1_...)

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.webhello._server import (
    RawConn,
    Server,
    match_lines,
    page_field,
    run,
    serve,
    usage_text,
)
from tests.webhello.conftest import NON_ROOT_UID, Ident

VERSION_TAIL = [
    "banner: banner default",
    "keepalive: true",
    "burnCpu=false",
    "quotaTime=0s",
    "requests quota=0 (0=unlimited) exitOnQuota=false quotaStatus=500",
    "TLS key file not found: key.pem - disabling TLS",
    "TLS cert file not found: cert.pem - disabling TLS",
]


@pytest.mark.parametrize("flag", ["-h", "-help", "--help"])
def test_A1_A2_help_prints_exact_usage_exit_0(
    flag: str, tmp_path: Path, argv0: str, ident: Ident, ncpus: int
) -> None:
    res = run([flag], cwd=tmp_path)
    assert res.returncode == 0
    assert res.stdout == b""
    lines = res.lines()
    # The three first log lines come before flag parsing, so before the usage text.
    match_lines(res.messages()[:3], ident.head(ncpus))
    assert "\n".join(lines[3:]) + "\n" == usage_text(argv0)


def test_A2_usage_defaults_follow_env(tmp_path: Path, argv0: str, ident: Ident, ncpus: int) -> None:
    res = run(["-h"], cwd=tmp_path, env={"PORT": "9999", "GWH_BANNER": "from env"})
    assert res.returncode == 0
    match_lines(res.messages()[:3], ident.head(ncpus, gwh="from env", port="9999"))
    expected = usage_text(argv0, addr=":9999", banner="from env")
    assert "\n".join(res.lines()[3:]) + "\n" == expected


def test_A3_unknown_flag_exit_2(tmp_path: Path, argv0: str, ident: Ident, ncpus: int) -> None:
    res = run(["-nosuchflag"], cwd=tmp_path)
    assert res.returncode == 2
    assert res.stdout == b""
    match_lines(res.messages()[:3], ident.head(ncpus))
    assert res.lines()[3] == "flag provided but not defined: -nosuchflag"
    assert "\n".join(res.lines()[4:]) + "\n" == usage_text(argv0)


def test_A3_bad_value_exit_2(tmp_path: Path, argv0: str, ident: Ident, ncpus: int) -> None:
    res = run(["-quota", "abc"], cwd=tmp_path)
    assert res.returncode == 2
    match_lines(res.messages()[:3], ident.head(ncpus))
    assert res.lines()[3] == 'invalid value "abc" for flag -quota: parse error'
    assert "\n".join(res.lines()[4:]) + "\n" == usage_text(argv0)


def _quota_line(messages: list[str]) -> str:
    return next(m for m in messages if m.startswith("requests quota="))


@pytest.mark.parametrize(
    "args", [["-quota", "7"], ["-quota=7"], ["--quota", "7"], ["--quota=7"]], ids=" ".join
)
def test_A4_value_flag_syntax(args: list[str], tmp_path: Path) -> None:
    res = run(["-version", *args], cwd=tmp_path)
    assert res.returncode == 0
    assert _quota_line(res.messages()) == (
        "requests quota=7 (0=unlimited) exitOnQuota=false quotaStatus=500"
    )


@pytest.mark.parametrize(
    ("args", "value"),
    [
        (["-exitOnQuota"], "true"),
        (["--exitOnQuota"], "true"),
        (["-exitOnQuota=true"], "true"),
        (["-exitOnQuota=false"], "false"),
        (["--exitOnQuota=false"], "false"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_A4_bool_flag_syntax(args: list[str], value: str, tmp_path: Path) -> None:
    res = run(["-version", *args], cwd=tmp_path)
    assert res.returncode == 0
    assert _quota_line(res.messages()) == (
        f"requests quota=0 (0=unlimited) exitOnQuota={value} quotaStatus=500"
    )


def test_A4_bool_takes_no_separate_value(tmp_path: Path) -> None:
    # `false` is the first positional argument: parsing stops there, -quota 5 is ignored.
    res = run(["-version", "-burnCpu", "false", "-quota", "5"], cwd=tmp_path)
    assert res.returncode == 0
    msgs = res.messages()
    assert "burnCpu=true" in msgs
    assert _quota_line(msgs) == "requests quota=0 (0=unlimited) exitOnQuota=false quotaStatus=500"


def test_A4_parsing_stops_at_first_positional(tmp_path: Path) -> None:
    res = run(["-version", "extra", "-quota", "9"], cwd=tmp_path)
    assert res.returncode == 0
    assert _quota_line(res.messages()).startswith("requests quota=0 ")


def test_A1_A5_defaults_listen_on_8080(webroot: Path) -> None:
    # A private network namespace: ":8080" (all addresses) exposes nothing and is surely free.
    with Server(cwd=webroot, netns=True).start() as srv:
        assert "using TCP ports HTTP=:8080 HTTPS=:8443 TLS=false" in srv.messages()
        assert srv.messages()[-1] == "serving HTTP on TCP :8080"
        with RawConn(srv.connect(8080)) as conn:
            page = conn.request("GET", "/", host="127.0.0.1:8080").body
        assert page_field(page, "Listen") == "HTTP=:8080 HTTPS=:8443"
        assert page_field(page, "Application banner") == "banner default"


def test_A5_env_port_sets_default_addr(webroot: Path, ident: Ident, ncpus: int) -> None:
    with Server(cwd=webroot, env={"PORT": "9191"}, netns=True).start() as srv:
        msgs = srv.messages()
        match_lines(msgs[:3], ident.head(ncpus, port="9191"))
        assert "using TCP ports HTTP=:9191 HTTPS=:8443 TLS=false" in msgs
        assert msgs[-1] == "serving HTTP on TCP :9191"
        with RawConn(srv.connect(9191)) as conn:
            resp = conn.request("GET", "/", host="127.0.0.1:9191")
        assert resp.status == 200
        assert page_field(resp.body, "Listen") == "HTTP=:9191 HTTPS=:8443"


def test_A5_addr_flag_overrides_port_env(webroot: Path) -> None:
    with serve(cwd=webroot, env={"PORT": "1"}, https=False) as srv:
        assert f"using TCP ports HTTP={srv.addr} HTTPS=:8443 TLS=false" in srv.messages()
        assert srv.messages()[1] == "GWH_BANNER='' PORT='1'"


def test_A5_banner_env_and_flag(tmp_path: Path) -> None:
    res = run(["-version"], cwd=tmp_path, env={"GWH_BANNER": "from env"})
    assert res.messages()[1] == "GWH_BANNER='from env' PORT=''"
    assert "banner: from env" in res.messages()
    res = run(["-version", "-banner", "from flag"], cwd=tmp_path, env={"GWH_BANNER": "from env"})
    assert "banner: from flag" in res.messages()
    assert "banner: from env" not in res.messages()


def test_A5_empty_env_values_are_ignored(
    tmp_path: Path, argv0: str, ident: Ident, ncpus: int
) -> None:
    res = run(["-h"], cwd=tmp_path, env={"PORT": "", "GWH_BANNER": ""})
    assert res.returncode == 0
    match_lines(res.messages()[:3], ident.head(ncpus))
    assert "\n".join(res.lines()[3:]) + "\n" == usage_text(argv0)


def test_A6_version_prints_startup_lines_then_exits_0(
    tmp_path: Path, ident: Ident, ncpus: int
) -> None:
    res = run(["-version"], cwd=tmp_path)
    assert res.returncode == 0
    assert res.stdout == b""
    match_lines(res.messages(), [*ident.head(ncpus), *map(re.escape, VERSION_TAIL)])


def test_A6_version_with_touch_and_bad_quota_time(tmp_path: Path, ident: Ident, ncpus: int) -> None:
    res = run(["-version", "-touch", "v.txt", "-quotaTime", "abc"], cwd=tmp_path)
    assert res.returncode == 0
    expected = [
        *ident.head(ncpus),
        re.escape("dumpVersion: writing to touch=v.txt"),
        re.escape('quotaTime: time: invalid duration "abc"'),
        *map(re.escape, VERSION_TAIL),
    ]
    match_lines(res.messages(), expected)


def test_A7_touch_writes_version_string(tmp_path: Path, ident: Ident, ncpus: int) -> None:
    res = run(["-version", "-touch", "v.txt"], cwd=tmp_path)
    assert res.returncode == 0
    msgs = res.messages()
    assert msgs[3] == "dumpVersion: writing to touch=v.txt"
    target = tmp_path / "v.txt"  # relative to cwd
    data = target.read_bytes()
    # The same text as B1 line 1 after the timestamp, no trailing newline.
    assert data.decode() == msgs[0]
    assert re.fullmatch(ident.version_line(ncpus), data.decode())
    st = target.stat()
    assert st.st_mode & 0o777 == 0o640
    assert st.st_uid == os.getuid()


def test_A7_touch_truncates_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "v.txt"
    target.write_bytes(b"x" * 4096)
    res = run(["-version", f"-touch={target}"], cwd=tmp_path)
    assert res.returncode == 0
    assert target.read_bytes().decode() == res.messages()[0]


def test_A7_touch_failure_is_logged_and_startup_continues(tmp_path: Path) -> None:
    bad = str(tmp_path / "missing-dir" / "v.txt")
    res = run(["-version", "-touch", bad], cwd=tmp_path)
    assert res.returncode == 0
    msgs = res.messages()
    assert msgs[3:5] == [
        f"dumpVersion: writing to touch={bad}",
        f"dumpVersion: touch={bad}: open {bad}: no such file or directory",
    ]
    assert msgs[5:] == VERSION_TAIL


def test_A7_touch_permission_denied_as_non_root(open_dir: Path, non_root_name: str) -> None:
    # open_dir is owned by root (0755): uid 1000 cannot create files in it.
    res = run(["-version", "-touch", "denied.txt"], cwd=open_dir, uid=NON_ROOT_UID)
    assert res.returncode == 0
    msgs = res.messages()
    assert msgs[2] == f"user: {non_root_name} (uid: {NON_ROOT_UID})"
    assert msgs[3:5] == [
        "dumpVersion: writing to touch=denied.txt",
        "dumpVersion: touch=denied.txt: open denied.txt: permission denied",
    ]
    assert msgs[5:] == VERSION_TAIL
    assert not (open_dir / "denied.txt").exists()


def test_A7_touch_file_owned_by_running_uid(non_root_owned_dir: Path) -> None:
    res = run(["-version", "-touch", "v.txt"], cwd=non_root_owned_dir, uid=NON_ROOT_UID)
    assert res.returncode == 0
    st = (non_root_owned_dir / "v.txt").stat()
    assert (st.st_uid, st.st_mode & 0o777) == (NON_ROOT_UID, 0o640)
