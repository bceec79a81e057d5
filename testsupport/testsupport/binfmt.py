"""qemu-user-static registered with the kernel's binfmt_misc, for as long as a test needs it.

A container runtime execs the image's /app itself, so running a linux/arm64 image on an x86-64
machine needs the kernel to hand aarch64 ELF files to qemu. The ``F`` flag makes the kernel open
the emulator once, at registration, so it works inside a container's root where no qemu exists.
What this module mounts or registers it removes again; what was there before it leaves alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["AARCH64_ENTRY", "aarch64_binfmt"]

BINFMT = Path("/proc/sys/fs/binfmt_misc")
AARCH64_ENTRY = "scratchpack-test-aarch64"
# ELF64, little-endian, version 1, e_type EXEC or DYN (the mask ignores the low bit), EM_AARCH64
_MAGIC = r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
_MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"


def _registered_aarch64() -> str | None:
    """The name of an enabled entry that already runs aarch64 executables, if any."""
    for entry in BINFMT.iterdir():
        if entry.name in ("register", "status"):
            continue
        try:
            text = entry.read_text()
        except OSError:
            continue
        if text.startswith("enabled") and "magic 7f454c460201010000000000000000000200b700" in text:
            return entry.name
    return None


@contextmanager
def aarch64_binfmt(emulator: str = "qemu-aarch64-static") -> Iterator[str]:
    """Make aarch64 executables run here; yields the binfmt entry's name. Needs root."""
    qemu = shutil.which(emulator)
    if qemu is None:
        raise RuntimeError(f"{emulator} not found: install Debian's qemu-user-static")
    mounted = False
    if not (BINFMT / "register").exists():
        subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
            check=True,
            capture_output=True,
        )
        mounted = True
    registered = False
    try:
        name = _registered_aarch64()
        if name is None:
            line = f":{AARCH64_ENTRY}:M::{_MAGIC}:{_MASK}:{os.path.realpath(qemu)}:F"
            (BINFMT / "register").write_text(line)
            registered = True
            name = AARCH64_ENTRY
        yield name
    finally:
        if registered:
            (BINFMT / AARCH64_ENTRY).write_text("-1")
        if mounted:
            subprocess.run(["umount", str(BINFMT)], check=False, capture_output=True)
