"""The C toolchain of the static runtime: ``zig cc`` from PyPI's pinned ``ziglang`` wheel.

Why zig and not Debian's musl-gcc: zig ships musl *and* Linux kernel headers (CPython's socket
module needs <linux/netlink.h>, which musl-tools lacks), needs no root, and targets aarch64 too
(docs/design/static-runtime.md has the measurements). The wheel is installed once with pip into
the cache; wrapper scripts give configure scripts a plain ``CC=zcc`` so no cache path ends up in
the binaries (OpenSSL records its compiler command line in the library).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from scratchpack._ctx import step
from scratchpack._fs import write_bytes_atomic
from scratchpack._types import Platform, Runner, host_platform
from scratchpack.errors import FreezeError

#: The pinned toolchain; part of the runtime's cache key.
ZIG_PIN = "ziglang==0.17.1"
#: The x86-64 target's triple (the one every kit was built for before cross builds).
TARGET = "x86_64-linux-musl"
#: The musl that ziglang 0.17.1 bundles and links statically (recorded in the SBOM).
MUSL_VERSION = "1.2.5"


@dataclass(frozen=True, slots=True)
class Target:
    """One machine the static route builds for: its names in each tool that needs one."""

    platform: Platform  # as OCI and ``--platform`` spell it
    triple: str  # zig's -target, configure's --host
    openssl: str  # OpenSSL's Configure target
    machine: str  # uname -m, in wheel tags and the run-time triple
    elf_machine: int  # e_machine of its ELF objects
    qemu: str  # the user-mode emulator that runs its programs on another machine

    @property
    def musllinux(self) -> tuple[str, ...]:
        """pip's platform tags of the musllinux wheels that run on this target."""
        return (f"musllinux_1_1_{self.machine}", f"musllinux_1_2_{self.machine}")

    @property
    def multiarch(self) -> str:
        """CPython's ``sys.implementation._multiarch`` in the kit: zig's clang prints no
        multiarch, so configure falls back to the GNU one (it names the sysconfig data)."""
        return f"{self.machine}-linux-gnu"

    @property
    def gnu_triple(self) -> str:
        """The triple configure's ``--build`` takes for this machine."""
        return f"{self.machine}-pc-linux-gnu"


#: The targets the static route builds for, by platform.
TARGETS: dict[Platform, Target] = {
    t.platform: t
    for t in (
        Target(Platform("linux", "amd64"), TARGET, "linux-x86_64", "x86_64", 62, "qemu-x86_64"),
        Target(
            Platform("linux", "arm64"),
            "aarch64-linux-musl",
            "linux-aarch64",
            "aarch64",
            183,
            "qemu-aarch64",
        ),
    )
}
#: Variants that name the same target (``linux/arm64/v8`` is what docker says for arm64).
_ALIASES = {Platform("linux", "arm64", "v8"): Platform("linux", "arm64")}


def target_for(platform: Platform) -> Target:
    """The target of ``platform``; raises FreezeError for one the static route cannot build."""
    target = TARGETS.get(_ALIASES.get(platform, platform))
    if target is None:
        known = ", ".join(str(p) for p in TARGETS)
        raise FreezeError(
            f"the static runtime cannot build for {platform}: it builds for {known}",
            hint=f"choose one of {known}",
            remedy="platform",
        )
    return target


def host_target() -> Target:
    """The target of the machine scratchpack runs on (the one whose programs run here)."""
    return target_for(host_platform())


_WRAPPER = """#!/bin/sh
# scratchpack: {what} for {target}; maps the build directory away so no path leaks into objects
export ZIG_GLOBAL_CACHE_DIR="{cache}" ZIG_LOCAL_CACHE_DIR="{cache}"
exec "{zig}" {sub} "$@"
"""


@dataclass(frozen=True, slots=True)
class Toolchain:
    """A ready zig install plus ``zcc``/``zar``/``zranlib`` wrappers in ``bindir`` (``zcc``
    compiles for ``target``)."""

    zig: Path
    bindir: Path
    cache: Path
    target: Target = TARGETS[Platform("linux", "amd64")]

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment whose PATH finds the wrappers first, with CC/AR/RANLIB set to them."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self.bindir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env.update(CC="zcc", AR="zar", RANLIB="zranlib")
        env["ZIG_GLOBAL_CACHE_DIR"] = env["ZIG_LOCAL_CACHE_DIR"] = str(self.cache)
        return env


def _write_wrapper(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode(), mode=0o755)


def ensure_toolchain(root: Path, *, runner: Runner, target: Target | None = None) -> Toolchain:
    """Install the pinned ziglang wheel under ``root`` once (locked), and write the wrappers
    for ``target`` (default: x86-64, whose wrappers keep their directory, ``bin``)."""
    target = target or TARGETS[Platform("linux", "amd64")]
    version = ZIG_PIN.split("==", 1)[1]
    home = root / f"zig-{version}"
    zig = home / "pkgs" / "ziglang" / "zig"
    cache = root / "zig-cache"
    bindir = home / ("bin" if target.triple == TARGET else f"bin-{target.triple}")
    home.mkdir(parents=True, exist_ok=True)
    with open(root / f"{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / ".ready").is_file():
            shutil.rmtree(home / "pkgs", ignore_errors=True)
            with step(f"installing the zig C toolchain ({ZIG_PIN}, ~60 MB download, once)"):
                proc = runner(
                    [
                        sys.executable,
                        "-m",
                        "pip",
                        "install",
                        "-q",
                        "--disable-pip-version-check",
                        "--no-deps",
                        "--target",
                        str(home / "pkgs"),
                        ZIG_PIN,
                    ]
                )
            if proc.returncode != 0 or not zig.is_file():
                raise FreezeError(
                    f"cannot install the zig toolchain ({ZIG_PIN}) with pip",
                    tool="pip",
                    output=proc.stdout,
                    hint="check that PyPI is reachable, or use the pyinstaller runtime",
                )
            (home / ".ready").write_text("ok\n")
        bindir.mkdir(exist_ok=True)
        cache.mkdir(parents=True, exist_ok=True)
        for name, sub, what in (
            (
                "zcc",
                f"cc -target {target.triple} "
                '${SCRATCHPACK_PREFIX_MAP:+"-ffile-prefix-map=$SCRATCHPACK_PREFIX_MAP"}',
                "C compiler",
            ),
            ("zar", "ar", "archiver"),
            ("zranlib", "ranlib", "archive indexer"),
        ):
            text = _WRAPPER.format(what=what, target=target.triple, cache=cache, zig=zig, sub=sub)
            if not (bindir / name).is_file() or (bindir / name).read_text() != text:
                _write_wrapper(bindir / name, text)
    return Toolchain(zig=zig, bindir=bindir, cache=cache, target=target)
