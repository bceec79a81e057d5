"""Atomic file outputs shared by every part of scratchpack that writes a user-visible file.

A leaf (it imports only ``errors``), so the freezer, the image sinks and the publishers all use
the same rule: write a temp file beside the target, fsync it, rename it over the target; on any
failure remove the temp file, so the target is the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from scratchpack.errors import SinkError

_SPACE_HINT = "the disk is full or over quota; free some space or choose another location"
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_no_space(err: OSError) -> bool:
    """The file system is full or the user over quota: the place, not the path, is at fault."""
    return err.errno in _NO_SPACE


def os_error_message(
    err: OSError,
    path: Path,
    action: str,
    *,
    remedy: str | None = None,
    space_remedy: str | None = None,
) -> SinkError:
    """Turn an OSError into a SinkError that says what to do about it.

    ``remedy`` words the usual "choose another path" advice; a full disk gets ``space_remedy``
    instead (or the neutral space hint), since no other path name on the same disk helps.
    """
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
        f"cannot {action} {path}: {reason}",
        hint=hints.get(err.errno or 0),
        remedy=space_remedy if is_no_space(err) else remedy,
    )


@contextlib.contextmanager
def atomic_output(
    path: Path,
    *,
    what: str = "write",
    mode: int | None = None,
    remedy: str | None = None,
    space_remedy: str | None = None,
) -> Iterator[BinaryIO]:
    """Yield a temp file next to ``path``; on success fsync and rename it over ``path``.

    On any failure the temp file is removed, so ``path`` is either the old file or the new
    one, never a half-written one. The file gets ``mode`` exactly when given, else the usual
    0666 & ~umask permissions. ``remedy`` and ``space_remedy`` go on the errors (see
    ``os_error_message``).
    """
    if path.is_dir():
        raise SinkError(f"cannot {what} {path}: it is a directory", hint="name a file instead")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise os_error_message(err, path, what, remedy=remedy, space_remedy=space_remedy) from err
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            try:
                yield f
            except OSError as err:
                # Raised while producing the content: the source may be at fault, not path.
                if is_no_space(err):
                    raise os_error_message(err, path, what, space_remedy=space_remedy) from err
                raise SinkError(f"cannot {what} {path}: {err}", remedy=remedy) from err
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise os_error_message(err, path, what, remedy=remedy, space_remedy=space_remedy) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    with atomic_output(path, mode=mode) as f:
        f.write(data)
