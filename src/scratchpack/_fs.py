"""Atomic file outputs shared by every part of scratchpack that writes a user-visible file.

A leaf (it imports only ``errors``), so the freezer, the image sinks and the publishers all use
the same rule: write a temp file beside the target, fsync it, rename it over the target; on any
failure remove the temp file, so the target is the old file or the new one, never a torn one.
``Undo`` extends that to several outputs: a failed multi-output build puts them all back.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Sequence
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
    ``os_error_message``). The temp file is flock'ed while in use, so temp files that a killed
    run left beside ``path`` are told apart from a live run's and removed (``_sweep_siblings``).
    """
    if path.is_dir():
        raise SinkError(f"cannot {what} {path}: it is a directory", hint="name a file instead")
    _sweep_siblings(path)
    try:
        tmp, fd = _locked_temp_file(path)
    except OSError as err:
        raise os_error_message(err, path, what, remedy=remedy, space_remedy=space_remedy) from err
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        # A duplicate descriptor for the file object: the lock (held by the open file) must
        # outlive the file object until the rename.
        with os.fdopen(os.dup(fd), "wb") as f:
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
    finally:
        os.close(fd)


def _locked_temp_file(path: Path) -> tuple[Path, int]:
    """A new ``.<name>.<hex>.tmp`` beside ``path``, created and flock'ed by this process."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _is_at(fd, tmp):
            return tmp, fd
        os.close(fd)  # a sweeper took it between create and lock: take another name


def _is_at(fd: int, path: Path) -> bool:
    """``fd`` is still the file at ``path`` (a sweeper did not unlink it)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _sweep_siblings(path: Path) -> None:
    """Remove temp files beside ``path`` whose writer is gone (killed mid-write)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{12}}\.tmp")
    with contextlib.suppress(OSError):
        for name in os.listdir(path.parent or "."):
            if pattern.fullmatch(name):
                _remove_if_abandoned(path.with_name(name), path.with_name(name))


#: What tempfile.mkdtemp adds to the prefix (its ``_RandomNameSequence``: 8 of these).
_MKDTEMP_SUFFIX = "[a-z0-9_]{8}"
#: The lock file inside each owned temporary directory.
OWNER_FILE = ".scratchpack-owner"
#: A directory without its lock file is younger than this, or was abandoned (killed between
#: its creation and its lock's: empty) and removed when it is empty.
_UNLOCKED_GRACE_SECONDS = 60


@contextlib.contextmanager
def owned_tempdir(
    prefix: str, parent: Path | None = None, *, space_remedy: str | None = None
) -> Iterator[Path]:
    """A temporary directory that no later run mistakes for debris while this one lives.

    It holds a lock file (``OWNER_FILE``, with the PID for people) flock'ed for as long as the
    directory is in use. The kernel drops the lock when the process dies, however it dies
    (SIGKILL included), so ``sweep_stale`` (run here first) removes what killed runs left and
    never another live run's directory, without trusting PIDs that may have been reused.
    """
    base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    sweep_stale(base, prefix)
    try:
        path, fd = _locked_tempdir(base, prefix)
    except OSError as err:
        raise os_error_message(
            err, base / f"{prefix}*", "create a temporary directory", space_remedy=space_remedy
        ) from err
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def _locked_tempdir(base: Path, prefix: str) -> tuple[Path, int]:
    while True:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        owner = path / OWNER_FILE
        try:
            fd = os.open(owner, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            continue  # swept while still empty
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _is_at(fd, owner):
            os.write(fd, f"{os.getpid()}\n".encode())
            return path, fd
        os.close(fd)


def sweep_stale(parent: Path, prefix: str) -> None:
    """Remove ``parent/<prefix>*`` directories of ours whose owning process is gone.

    Only names ``owned_tempdir`` makes (the prefix and mkdtemp's 8 characters: a user's
    ``scratchpack-output`` is not ours), only directories owned by this user, only with their
    lock file free (its process died); a directory without a lock file only when it is empty
    and older than a minute.
    """
    ours = re.compile(re.escape(prefix) + _MKDTEMP_SUFFIX)
    try:
        names = [n for n in os.listdir(parent) if ours.fullmatch(n)]
    except OSError:
        return
    for name in names:
        path = parent / name
        try:
            st = path.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            continue
        if not (path / OWNER_FILE).exists():
            if time.time() - st.st_mtime > _UNLOCKED_GRACE_SECONDS:
                with contextlib.suppress(OSError):
                    path.rmdir()  # only if empty
            continue
        _remove_if_abandoned(path / OWNER_FILE, path)


def _remove_if_abandoned(lock: Path, target: Path) -> None:
    """Remove ``target`` (a file or a tree) if ``lock`` can be flock'ed: its owner is gone."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_uid != os.geteuid():
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # held: a live run
        if not _is_at(fd, lock):
            return  # removed by another sweeper meanwhile
        if target == lock:
            target.unlink(missing_ok=True)
        else:
            shutil.rmtree(target, ignore_errors=True)
    finally:
        os.close(fd)


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
