"""Shared fixtures for the webhello behaviour suite: a fixed web root, a TLS cert, identity."""

from __future__ import annotations

import os
import platform
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.webhello._server import (
    REPO,
    SANDBOX_EMULATOR_ENV,
    Server,
    custom_command,
    frozen_executable,
    run,
    serve,
)

# Sat, 01 Jan 2000 00:00:00 GMT: every fixture file gets this mtime, so Last-Modified is exact.
MTIME = 946684800
MTIME_HTTP = "Sat, 01 Jan 2000 00:00:00 GMT"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nappuser:x:1000:1000::/home/appuser:/sbin/nologin\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
# Go 1.23 mime builtinTypesLower.
GO_MIME = {
    ".avif": "image/avif",
    ".css": "text/css; charset=utf-8",
    ".gif": "image/gif",
    ".htm": "text/html; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".jpeg": "image/jpeg",
    ".jpg": "image/jpeg",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".mjs": "text/javascript; charset=utf-8",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".webp": "image/webp",
    ".xml": "text/xml; charset=utf-8",
}
NON_ROOT_UID = 1000
NO_PASSWD_UID = 54321


def _touch_tree(root: Path) -> None:
    """Pin mtimes bottom-up (a directory's mtime changes when entries are added)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            p = Path(dirpath, name)
            os.utime(p, (MTIME, MTIME), follow_symlinks=False)
    os.utime(root, (MTIME, MTIME))


def make_webroot(root: Path) -> Path:
    """The spec's rootfs (`/app` ELF + `/etc/passwd`) plus fixture files below etc/."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile("/usr/bin/true", root / "app")
    etc = root / "etc"
    etc.mkdir()
    (etc / "passwd").write_bytes(PASSWD)
    types = etc / "t"
    types.mkdir()
    (types / "x.html").write_bytes(b"<p>hi</p>\n")
    (types / "x.json").write_bytes(b'{"a": 1}\n')
    (types / "x.png").write_bytes(PNG)
    (types / "x.txt").write_bytes(b"just text\n")
    # Go's built-in extension table (the rootfs has no /etc/mime.types) ...
    for ext in GO_MIME:
        (types / f"t{ext}").write_bytes(b"\x00\x01 not sniffed\n")
    (types / "UPPER.HTML").write_bytes(b"\x00\x01\n")
    # ... and sniffing for everything else (.txt is not in Go's table).
    (types / "page.txt").write_bytes(b"<html><body>sniffed as html\n")
    (types / "noext").write_bytes(b"")
    idx = etc / "idx"
    idx.mkdir()
    (idx / "index.html").write_bytes(b"<h1>index</h1>\n")
    (idx / "other.txt").write_bytes(b"other\n")
    listing = etc / "list"
    listing.mkdir()
    for name in (".hidden", "A.txt", "a&b <c>.html", "b.txt"):
        (listing / name).write_bytes(b"x\n")
    (listing / "Zdir").mkdir()
    (listing / "lnk").symlink_to("b.txt")
    _touch_tree(root)
    return root


@pytest.fixture(scope="session")
def webroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_webroot(tmp_path_factory.mktemp("webroot") / "root")


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert.pem, key.pem): self-signed RSA-2048 for localhost, made once per session."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-nodes", "-days", "365", "-newkey", "rsa:2048",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_dir(tmp_path: Path, tls_files: tuple[Path, Path]) -> Path:
    """A cwd holding cert.pem and key.pem under their default names."""
    for f in tls_files:
        shutil.copyfile(f, tmp_path / f.name)
    return tmp_path


@pytest.fixture(scope="session")
def argv0(tmp_path_factory: pytest.TempPathFactory) -> str:
    """argv[0] as webhello reports it (`Usage of <argv0>:`); for a single-path WEBHELLO_CMD it
    must be that path."""
    res = run(["-h"], cwd=tmp_path_factory.mktemp("argv0"))
    m = re.search(r"^Usage of (.+):$", res.stderr, re.M)
    assert m, res.stderr
    exe = frozen_executable()
    if exe is not None:
        assert m.group(1) == exe
    return m.group(1)


@pytest.fixture(scope="session")
def version() -> str:
    """webhello's own version (port rule: identity fields tell the truth)."""
    with (REPO / "examples" / "webhello" / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


@pytest.fixture(scope="session")
def hostname() -> str:
    return socket.gethostname()


@pytest.fixture(scope="session")
def goarch() -> str:
    """The machine webhello reports: this one, or the one the sandbox's emulator runs it as
    (WEBHELLO_SANDBOX_EMULATOR=qemu-aarch64-static: aarch64)."""
    emulator = Path(os.environ.get(SANDBOX_EMULATOR_ENV, "").strip()).name
    emulated = re.fullmatch(r"qemu-(\w+?)(-static)?", emulator)
    machine = emulated.group(1) if emulated else platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


@pytest.fixture(scope="session")
def non_root_name() -> str:
    return pwd.getpwuid(NON_ROOT_UID).pw_name


def shared_dir(prefix: str) -> Path:
    """A world-readable temp dir another uid can use as cwd (pytest's tmp is mode 0700)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    d.chmod(0o755)
    return d


@pytest.fixture
def open_dir() -> Iterator[Path]:
    d = shared_dir("webhello-test-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def non_root_owned_dir(open_dir: Path) -> Path:
    """A cwd owned by the non-root test uid."""
    os.chown(open_dir, NON_ROOT_UID, NON_ROOT_UID)
    return open_dir


@pytest.fixture(scope="module")
def srv(webroot: Path) -> Iterator[Server]:
    """One default server per module for read-only checks (web root = the fixture rootfs)."""
    with serve(cwd=webroot, https=False) as s:
        yield s


RUNTIME_ANY = r"cpython3\.\d+\.\d+"


@dataclass(frozen=True)
class Ident:
    """What B1 line 1 and the root page must say about this build and machine."""

    version: str
    runtime: str  # regex
    hostname: str
    arch: str

    def version_line(self, cpus: int, *, runtime: str | None = None) -> str:
        """Regex for B1 line 1 (the -touch text); group `pid`."""
        rt = self.runtime if runtime is None else runtime
        return (
            rf"version={re.escape(self.version)} runtime={rt} pid=(?P<pid>\d+) "
            rf"host={re.escape(self.hostname)} GOMAXPROCS={cpus} OS=linux ARCH={self.arch}"
        )

    def head(
        self, cpus: int, *, gwh: str = "", port: str = "", user: str = "user: root (uid: 0)"
    ) -> list[str]:
        """Regexes for B1 lines 1-3 (printed before flag parsing)."""
        return [
            self.version_line(cpus),
            re.escape(f"GWH_BANNER='{gwh}' PORT='{port}'"),
            re.escape(user),
        ]


@pytest.fixture(scope="session")
def ident(version: str, hostname: str, goarch: str) -> Ident:
    # Port rule: runtime= names the Python implementation and version; for the source tree it
    # is the interpreter running this suite, for a frozen executable whatever it bundles.
    runtime = RUNTIME_ANY
    if custom_command() is None:
        runtime = re.escape(f"cpython{platform.python_version()}")
    return Ident(version, runtime, hostname, goarch)


@pytest.fixture(scope="session")
def ncpus() -> int:
    """CPUs this process may use; the server inherits the affinity (GOMAXPROCS=)."""
    return len(os.sched_getaffinity(0))
