"""staticx with a reproducible archive: runs staticx's CLI with ``tarfile`` patched.

staticx copies libraries into temp files and stores their times, owners and umask-dependent
modes, which breaks byte-for-byte builds; every member gets mtime = $SOURCE_DATE_EPOCH, uid/gid
0, no user names and, for regular files, mode 0755. Runs in the build venv (staticx installed).
"""

from __future__ import annotations

import importlib
import os
import sys
import tarfile
from typing import IO

EPOCH = int(os.environ["SOURCE_DATE_EPOCH"])
_addfile = tarfile.TarFile.addfile


def addfile(
    self: tarfile.TarFile, tarinfo: tarfile.TarInfo, fileobj: IO[bytes] | None = None
) -> None:
    tarinfo.mtime = EPOCH
    tarinfo.uid = tarinfo.gid = 0
    tarinfo.uname = tarinfo.gname = ""
    if tarinfo.isreg():
        tarinfo.mode = 0o755
    _addfile(self, tarinfo, fileobj)


def main() -> int:
    setattr(tarfile.TarFile, "addfile", addfile)  # noqa: B010 - mypy refuses method assignment
    staticx_main = importlib.import_module("staticx.__main__").main
    return int(staticx_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
