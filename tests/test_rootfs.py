from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scratchpack.errors import ImageError
from scratchpack.oci.layer import layer_from_entries
from scratchpack.oci.rootfs import elf_info, scratch_rootfs
from testsupport.engines import build_static_server
from testsupport.registry_server import make_tls


@pytest.fixture(scope="module")
def static_exe(tmp_path_factory) -> Path:
    return build_static_server(tmp_path_factory.mktemp("static"))


@pytest.fixture(scope="module")
def dynamic_exe(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dynamic")
    (d / "hello.c").write_text("int main(void) { return 0; }\n")
    subprocess.run(["gcc", "-o", str(d / "hello"), str(d / "hello.c")], check=True)
    return d / "hello"


def test_scratch_rootfs_has_exactly_the_expected_entries(static_exe):
    entries = scratch_rootfs(static_exe)
    summary = {(e.path, e.kind, e.mode, e.uid, e.gid) for e in entries}
    assert summary == {
        ("app", "file", 0o555, 0, 0),
        ("etc", "dir", 0o755, 0, 0),
        ("etc/passwd", "file", 0o644, 0, 0),
        ("etc/group", "file", 0o644, 0, 0),
        ("tmp", "dir", 0o1777, 0, 0),
    }
    by_path = {e.path: e for e in entries}
    assert by_path["app"].source == static_exe
    assert by_path["etc/passwd"].data == (
        b"root:x:0:0:root:/root:/sbin/nologin\nappuser:x:1000:1000::/home/appuser:/sbin/nologin\n"
    )
    assert by_path["etc/group"].data == b"root:x:0:\nappuser:x:1000:\n"


def test_custom_user_and_ca_bundle(static_exe, tmp_path):
    ca = make_tls(tmp_path / "tls").cert
    entries = scratch_rootfs(static_exe, user="svc", uid=4242, gid=4343, ca_bundle=ca)
    by_path = {e.path: e for e in entries}
    assert b"svc:x:4242:4343::/home/svc:/sbin/nologin\n" in by_path["etc/passwd"].data
    assert b"svc:x:4343:\n" in by_path["etc/group"].data
    cert = by_path["etc/ssl/certs/ca-certificates.crt"]
    assert (cert.mode, cert.data) == (0o444, ca.read_bytes())
    layer = layer_from_entries(entries, mtime=0, workdir=tmp_path / "w")
    assert layer.size > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user": "root"}, "invalid run user"),
        ({"user": "App"}, "invalid run user"),
        ({"user": "a b"}, "invalid run user"),
        ({"user": "x" * 33}, "invalid run user"),
        ({"uid": 0}, "invalid uid"),
        ({"gid": 0}, "invalid gid"),
        ({"uid": 70000}, "invalid uid"),
        ({"uid": True}, "invalid uid"),
    ],
)
def test_bad_users_are_rejected_with_a_hint(static_exe, kwargs, message):
    with pytest.raises(ImageError, match=message) as info:
        scratch_rootfs(static_exe, **kwargs)
    assert info.value.hint


def test_dynamic_executables_are_refused_with_a_hint(dynamic_exe):
    arch, interp = elf_info(dynamic_exe)
    assert arch == "amd64" and interp is not None and "ld-linux" in interp
    with pytest.raises(ImageError, match="dynamically linked") as info:
        scratch_rootfs(dynamic_exe)
    assert "static" in (info.value.hint or "")
    assert scratch_rootfs(dynamic_exe, allow_dynamic=True)


def test_static_executable_has_no_interpreter(static_exe):
    assert elf_info(static_exe) == ("amd64", None)


def test_non_elf_missing_and_bad_ca_are_rejected(tmp_path, static_exe):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(ImageError, match="not an ELF"):
        scratch_rootfs(script)
    with pytest.raises(ImageError, match="cannot be read"):
        scratch_rootfs(tmp_path / "missing")
    with pytest.raises(ImageError, match="not a regular file"):
        scratch_rootfs(tmp_path)
    with pytest.raises(ImageError, match="CA bundle"):
        scratch_rootfs(static_exe, ca_bundle=tmp_path / "none.crt")


def test_debian_python_is_recognised_as_dynamic():
    assert elf_info(Path("/usr/bin/python3").resolve())[1] is not None
