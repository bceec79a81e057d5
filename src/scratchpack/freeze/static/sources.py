"""Debian source packages of the static runtime: fetched with apt-get, unpacked with dpkg-source.

Why Debian's archive: its CPython 3.11.2, OpenSSL 3.0, zlib and the other libraries carry
Debian's security patches, apt verifies every file against the archive's signed index, and the
exact versions are pinned (and part of the runtime's cache key), so two machines build the
same runtime. apt runs with a
private state directory: the host's own apt configuration and lists are never touched.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from scratchpack._ctx import step
from scratchpack._types import Runner
from scratchpack.errors import FreezeError


@dataclass(frozen=True, slots=True)
class SourcePackage:
    """A pinned Debian source package and the directory ``dpkg-source -x`` unpacks it to."""

    name: str
    version: str  # Debian version, epoch included
    unpacked: str

    @property
    def pin(self) -> str:
        return f"{self.name}={self.version}"


#: The runtime's sources (bookworm). Bump together with the recipe; they are in the cache key.
PACKAGES: tuple[SourcePackage, ...] = (
    SourcePackage("zlib", "1:1.2.13.dfsg-1", "zlib-1.2.13.dfsg"),
    SourcePackage("openssl", "3.0.20-1~deb12u2", "openssl-3.0.20"),
    SourcePackage("python3.11", "3.11.2-6+deb12u8", "python3.11-3.11.2"),
    # the libraries of _bz2, _lzma, _sqlite3, _ctypes and _curses/_curses_panel
    SourcePackage("bzip2", "1.0.8-5", "bzip2-1.0.8"),
    SourcePackage("xz-utils", "5.4.1-1+deb12u1", "xz-utils-5.4.1"),
    SourcePackage("sqlite3", "3.40.1-2+deb12u2", "sqlite3-3.40.1"),
    SourcePackage("libffi", "3.4.4-1", "libffi-3.4.4"),
    SourcePackage("ncurses", "6.4-4", "ncurses-6.4"),
)

#: The archive to fetch from; $SCRATCHPACK_DEBIAN_MIRROR overrides it (e.g. a local mirror).
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def _apt_options(state: Path) -> list[str]:
    return [
        "-o",
        f"Dir::Etc::SourceList={state / 'sources.list'}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State::Lists={state / 'lists'}",
        "-o",
        f"Dir::Cache={state / 'cache'}",
        "-o",
        "Debug::NoLocking=1",
        "-o",
        "APT::Sandbox::User=root",
        "-q",
    ]


def _require(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        raise FreezeError(
            f"{tool} is not installed; the static runtime is built from Debian source packages",
            hint=f"apt-get install {package} (scripts/install-system-deps does), "
            "or use the pyinstaller runtime",
        )


def fetch_sources(root: Path, workdir: Path, *, runner: Runner) -> dict[str, Path]:
    """Download (once, cached under ``root``) and unpack every package into ``workdir``."""
    _require("apt-get", "apt")
    _require("dpkg-source", "dpkg-dev")
    mirror = os.environ.get("SCRATCHPACK_DEBIAN_MIRROR", DEFAULT_MIRROR).rstrip("/")
    downloads = root / "debian-sources"
    state = root / "apt-state"
    for d in (downloads, state / "lists" / "partial", state / "cache" / "archives" / "partial"):
        d.mkdir(parents=True, exist_ok=True)
    signed = f"[signed-by={_KEYRING}] " if Path(_KEYRING).is_file() else ""
    (state / "sources.list").write_text(f"deb-src {signed}{mirror} {SUITE} main\n")
    opts = _apt_options(state)
    with open(root / "debian-sources.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [p for p in PACKAGES if not (downloads / f"{p.name}.ok").is_file()]
        if missing:
            with step(f"downloading Debian sources ({', '.join(p.pin for p in missing)})"):
                proc = runner(["apt-get", *opts, "update"])
                if proc.returncode != 0:
                    raise FreezeError(
                        f"apt-get update against {mirror} failed",
                        tool="apt-get",
                        output=proc.stdout,
                        hint="check network access to the Debian archive or set "
                        "SCRATCHPACK_DEBIAN_MIRROR; or use the pyinstaller runtime",
                    )
                for pkg in missing:
                    dest = downloads / pkg.name
                    shutil.rmtree(dest, ignore_errors=True)
                    dest.mkdir()
                    proc = runner(
                        ["apt-get", *opts, "source", "--download-only", pkg.pin], cwd=dest
                    )
                    if proc.returncode != 0:
                        raise FreezeError(
                            f"cannot download Debian source package {pkg.pin} from {mirror}",
                            tool="apt-get",
                            output=proc.stdout,
                            hint="the pinned version may have left the archive; "
                            "upgrade scratchpack, or use the pyinstaller runtime",
                        )
                    (downloads / f"{pkg.name}.ok").write_text(pkg.version + "\n")
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        dscs = sorted((downloads / pkg.name).glob("*.dsc"))
        if len(dscs) != 1:
            raise FreezeError(f"expected one .dsc for {pkg.pin} in {downloads / pkg.name}")
        target = workdir / pkg.unpacked
        with step(f"unpacking {pkg.pin}"):
            proc = runner(["dpkg-source", "-x", str(dscs[0]), str(target)], cwd=workdir)
        if proc.returncode != 0 or not target.is_dir():
            raise FreezeError(
                f"dpkg-source could not unpack {dscs[0].name}",
                tool="dpkg-source",
                output=proc.stdout,
                hint=f"delete {downloads} to download the sources again",
            )
        out[pkg.name] = target
    return out
