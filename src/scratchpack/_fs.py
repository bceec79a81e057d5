"""Atomic file outputs shared by every part of scratchpack that writes a user-visible file.

A leaf (it imports only ``errors``), so the freezer, the image sinks and the publishers all use
the same rule: write a temp file beside the target, fsync it, rename it over the target; on any
failure remove the temp file, so the target is the old file or the new one, never a torn one.
``Undo`` extends that to several outputs: a failed multi-output build puts them all back.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from scratchpack.errors import SinkError

_SPACE_HINT = "the disk is full or over quota; free some space or choose another location"


def os_error_message(
    err: OSError, path: Path, action: str, *, remedy: str | None = None
) -> SinkError:
    """Turn an OSError into a SinkError that says what to do about it."""
    reason = err.strerror or str(err)
    hints = {
        errno.EACCES: f"check the permissions of {path.parent} or choose another path",
        errno.EPERM: f"check the permissions of {path.parent} or choose another path",
        errno.EROFS: "the file system is read-only; choose a writable path",
        errno.ENOENT: f"create the directory {path.parent} first, or choose another path",
        errno.ENOTDIR: f"a component of {path.parent} is a file, not a directory",
        errno.EISDIR: f"{path} is a directory; name a file instead",
        errno.EEXIST: f"{path} exists and is not a directory; choose another path",
        errno.ENOSPC: _SPACE_HINT,
        errno.EDQUOT: _SPACE_HINT,
    }
    return SinkError(
        f"cannot {action} {path}: {reason}", hint=hints.get(err.errno or 0), remedy=remedy
    )


@contextlib.contextmanager
def atomic_output(
    path: Path, *, what: str = "write", mode: int | None = None, remedy: str | None = None
) -> Iterator[BinaryIO]:
    """Yield a temp file next to ``path``; on success fsync and rename it over ``path``.

    On any failure the temp file is removed, so ``path`` is either the old file or the new
    one, never a half-written one. The file gets ``mode`` exactly when given, else the usual
    0666 & ~umask permissions. ``remedy`` goes on the errors (see ``ScratchpackError``).
    """
    if path.is_dir():
        raise SinkError(f"cannot {what} {path}: it is a directory", hint="name a file instead")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise os_error_message(err, path, what, remedy=remedy) from err
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            try:
                yield f
            except OSError as err:
                # Raised while producing the content: the source may be at fault, not path.
                raise SinkError(
                    f"cannot {what} {path}: {err}",
                    hint=_SPACE_HINT if err.errno in (errno.ENOSPC, errno.EDQUOT) else None,
                    remedy=remedy,
                ) from err
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise os_error_message(err, path, what, remedy=remedy) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    with atomic_output(path, mode=mode) as f:
        f.write(data)


class Undo:
    """Puts outputs back as they were when it was made, for all-or-nothing multi-output builds.

    A file that existed keeps its old bytes through a hard link (every writer here replaces by
    rename, so the old inode is untouched); one that did not is removed. A directory that did
    not exist is removed with any parents made for it; one that existed loses the files added
    since and gets its top-level files (an OCI layout's ``index.json``) back.
    """

    def __init__(self, *, files: Sequence[Path] = (), directories: Sequence[Path] = ()) -> None:
        self._files: list[tuple[Path, Path | None]] = [(p, _keep(p)) for p in files]
        self._dirs: list[tuple[Path, set[Path] | None, list[tuple[Path, Path | None]]]] = []
        for d in directories:
            if not d.is_dir():
                self._dirs.append((_first_missing(d), None, []))
                continue
            tops = [(p, _keep(p)) for p in sorted(d.iterdir()) if p.is_file()]
            present = {p for p in d.rglob("*") if not p.is_dir()}  # the backups too
            self._dirs.append((d, present, tops))

    def restore(self) -> None:
        """Back to the state at creation; best effort, never raising."""
        for path, backup in self._files:
            _put_back(path, backup)
        for d, present, tops in self._dirs:
            if present is None:
                shutil.rmtree(d, ignore_errors=True)
                continue
            with contextlib.suppress(OSError):
                for p in sorted(d.rglob("*"), reverse=True):
                    if not p.is_dir() and p not in present:
                        p.unlink(missing_ok=True)
            for path, backup in tops:
                _put_back(path, backup)

    def discard(self) -> None:
        """Keep what was written: drop the backups."""
        for _, backup in [*self._files, *(t for _, _, tops in self._dirs for t in tops)]:
            if backup is not None:
                backup.unlink(missing_ok=True)


def _keep(path: Path) -> Path | None:
    """A hard link (else a copy) of an existing regular file, beside it; None when absent."""
    if not path.is_file():
        return None
    backup = path.with_name(f".{path.name}.{secrets.token_hex(6)}.undo")
    try:
        os.link(path, backup)
    except OSError:
        shutil.copy2(path, backup)
    return backup


def _put_back(path: Path, backup: Path | None) -> None:
    with contextlib.suppress(OSError):
        if backup is None:
            path.unlink(missing_ok=True)
        elif path.exists() and os.path.samefile(backup, path):
            backup.unlink()  # never replaced (rename(2) between two links of one file is a no-op)
        else:
            os.replace(backup, path)


def _first_missing(path: Path) -> Path:
    """The outermost directory that creating ``path`` (with its parents) would make."""
    path = path.absolute()
    while not path.parent.exists() and path.parent != path:
        path = path.parent
    return path
