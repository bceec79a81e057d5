"""Layer values and the deterministic tar+gzip builder.

A ``Layer`` never holds its bytes: it holds an *opener* that returns a fresh stream of the
compressed blob, so a layer can be read by several sinks (or a retried push) without keeping
20 MB in memory. The builder writes the blob once to a content-addressed file and hashes the
uncompressed tar (diff_id) and the compressed blob (digest) in the same pass.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import stat
import tarfile
import tempfile
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, cast

from scratchpack._fs import os_error_message
from scratchpack.errors import ImageError, SinkError
from scratchpack.oci.descriptor import Descriptor
from scratchpack.oci.digest import CHUNK, Digest
from scratchpack.oci.mediatypes import OCI_LAYER_GZIP, OCI_LAYER_TAR

GZIP_LEVEL = 6
"""Fixed compression level: part of the layer's identity (another level gives other bytes)."""

EntryKind = Literal["file", "dir", "symlink"]
_DIR_MODE = 0o755
_MAX_ID = 0o7777777  # largest uid/gid a ustar header holds; beyond it tarfile needs PAX records


@dataclass(frozen=True, slots=True)
class Layer:
    """One filesystem layer: where to read its compressed blob and what it hashes to."""

    opener: Callable[[], BinaryIO]
    digest: Digest
    diff_id: Digest
    size: int
    media_type: str = OCI_LAYER_GZIP

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size)


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One entry of a layer; ``path`` is relative (``etc/passwd``), ``mode`` the permission bits."""

    path: str
    mode: int
    kind: EntryKind = "file"
    data: bytes | None = None
    source: Path | None = None
    uid: int = 0
    gid: int = 0
    linkname: str = ""


class _BlobFile:
    """Opener for a blob on disk; when it owns a temporary file, the file goes with the opener."""

    __slots__ = ("__weakref__", "path")

    def __init__(self, path: Path, *, owned_dir: Path | None = None) -> None:
        self.path = path
        if owned_dir is not None:
            weakref.finalize(self, _remove_tree, path, owned_dir)

    def __call__(self) -> BinaryIO:
        return open(self.path, "rb")

    def __repr__(self) -> str:
        return f"<blob {self.path}>"


class _BytesOpener:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __call__(self) -> BinaryIO:
        return io.BytesIO(self.data)

    def __repr__(self) -> str:
        return f"<{len(self.data)} bytes in memory>"


def _remove_tree(path: Path, directory: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, sink: BinaryIO | gzip.GzipFile) -> None:
        self._sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self._sink.write(data)
        return len(data)

    def flush(self) -> None:
        self._sink.flush()

    def digest(self) -> Digest:
        return Digest("sha256", self.hash.hexdigest())


def normalise_path(path: str) -> str:
    """``/etc//passwd/`` -> ``etc/passwd``; rejects paths that would escape the root."""
    parts = [p for p in path.strip("/").split("/") if p not in {"", "."}]
    if not parts or ".." in parts:
        raise ImageError(f"invalid layer path {path!r}: must name something below /")
    return "/".join(parts)


def _complete(entries: Iterable[FileEntry]) -> list[FileEntry]:
    """Normalise paths, reject duplicates, add missing parent directories, sort parents first."""
    by_path: dict[str, FileEntry] = {}
    for entry in entries:
        path = normalise_path(entry.path)
        if path in by_path:
            raise ImageError(f"duplicate layer path {path!r}")
        if entry.mode & ~0o7777:
            raise ImageError(f"mode {entry.mode:#o} of {path!r} has bits beyond 0o7777")
        if not (0 <= entry.uid <= _MAX_ID and 0 <= entry.gid <= _MAX_ID):
            raise ImageError(f"uid/gid of {path!r} out of range 0..{_MAX_ID}")
        if entry.kind == "file" and (entry.data is None) == (entry.source is None):
            raise ImageError(f"file {path!r} needs exactly one of data= or source=")
        if entry.kind == "symlink" and not entry.linkname:
            raise ImageError(f"symlink {path!r} needs a linkname")
        by_path[path] = FileEntry(
            path,
            entry.mode,
            entry.kind,
            entry.data,
            entry.source,
            entry.uid,
            entry.gid,
            entry.linkname,
        )
    for path in list(by_path):
        parent = path.rpartition("/")[0]
        while parent and parent not in by_path:
            by_path[parent] = FileEntry(parent, _DIR_MODE, "dir")
            parent = parent.rpartition("/")[0]
    for path in by_path:
        parent = path.rpartition("/")[0]
        if parent and by_path[parent].kind != "dir":
            raise ImageError(f"{path!r} lies below {parent!r}, which is not a directory")
    # Sorting by components (not by string) keeps every parent directly before its subtree.
    return sorted(by_path.values(), key=lambda e: e.path.split("/"))


def _tarinfo(entry: FileEntry, mtime: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mtime = mtime
    info.devmajor = info.devminor = 0
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.linkname
    else:
        info.type = tarfile.REGTYPE
        info.size = size
    return info


def write_tar(entries: Iterable[FileEntry], out: BinaryIO | _HashingWriter, *, mtime: int) -> None:
    """Write the deterministic, uncompressed layer tar to ``out``.

    PAX format: plain ustar headers unless a name is too long or not ASCII, and then PAX
    records whose content depends only on the entry (never on the clock or the host).
    """
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for entry in _complete(entries):
            if entry.kind != "file":
                tar.addfile(_tarinfo(entry, mtime, 0))
            elif entry.data is not None:
                tar.addfile(_tarinfo(entry, mtime, len(entry.data)), io.BytesIO(entry.data))
            else:
                assert entry.source is not None
                try:
                    src = open(entry.source, "rb")  # noqa: SIM115 - closed by the with below
                except OSError as err:
                    raise ImageError(
                        f"cannot read {entry.source} for /{entry.path}: {err.strerror}"
                    ) from err
                with src:
                    st = os.fstat(src.fileno())
                    if not stat.S_ISREG(st.st_mode):
                        raise ImageError(f"{entry.source} is not a regular file")
                    tar.addfile(_tarinfo(entry, mtime, st.st_size), src)


def layer_from_entries(
    entries: Iterable[FileEntry],
    *,
    mtime: int,
    workdir: Path | None = None,
    compresslevel: int = GZIP_LEVEL,
) -> Layer:
    """Build a gzip layer from entries; same entries + mtime + level -> same bytes.

    The blob is written once to ``workdir/sha256-<hex>.tar.gz`` (the caller owns and removes
    ``workdir``) or, without ``workdir``, to a private temp directory removed with the Layer.
    """
    if mtime < 0:
        raise ImageError("mtime must be >= 0 (seconds since the epoch)")
    entry_list = list(entries)
    owned = workdir is None
    directory = Path(tempfile.mkdtemp(prefix="scratchpack-layer-")) if owned else workdir
    assert directory is not None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".layer-", suffix=".tmp", dir=directory)
    except OSError as err:
        raise _write_error(err, directory) from err
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            compressed = _HashingWriter(raw)
            # filename="" and mtime=0 keep the gzip header free of host details.
            with gzip.GzipFile(
                filename="", mode="wb", compresslevel=compresslevel, fileobj=compressed, mtime=0
            ) as gz:
                uncompressed = _HashingWriter(gz)
                write_tar(entry_list, uncompressed, mtime=mtime)
        digest = compressed.digest()
        final = directory / f"sha256-{digest.hex}.tar.gz"
        os.replace(tmp, final)
    except OSError as err:
        # Sources that cannot be read are ImageErrors already: this is the blob's directory.
        tmp.unlink(missing_ok=True)
        if owned:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise _write_error(err, tmp) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        if owned:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    opener = _BlobFile(final, owned_dir=directory if owned else None)
    return Layer(opener, digest, uncompressed.digest(), compressed.size)


def _write_error(err: OSError, path: Path) -> SinkError:
    """The layer blob could not be written; under the temp directory, say it is $TMPDIR."""
    in_tmpdir = path.is_relative_to(tempfile.gettempdir())
    return os_error_message(
        err, path, "write the image layer", space_remedy="tmpdir-space" if in_tmpdir else None
    )


def layer_from_bytes(blob: bytes, *, media_type: str = OCI_LAYER_GZIP) -> Layer:
    """A layer from an in-memory blob (gzip or plain tar per ``media_type``); for small layers."""
    digest = Digest.of_bytes(blob)
    if media_type == OCI_LAYER_TAR:
        return Layer(_BytesOpener(blob), digest, digest, len(blob), media_type)
    diff_id, _ = Digest.of_stream(cast(BinaryIO, gzip.GzipFile(fileobj=io.BytesIO(blob))))
    return Layer(_BytesOpener(blob), digest, diff_id, len(blob), media_type)


def layer_from_file(path: Path, *, media_type: str = OCI_LAYER_GZIP) -> Layer:
    """A layer from an existing blob file; reads it once to compute digest and diff_id."""
    with open(path, "rb") as f:
        digest, size = Digest.of_stream(f)
    if media_type == OCI_LAYER_TAR:
        diff_id = digest
    else:
        with gzip.open(path, "rb") as gz:
            diff_id, _ = Digest.of_stream(cast(BinaryIO, gz))
    return Layer(_BlobFile(path), digest, diff_id, size, media_type)


__all__ = [
    "CHUNK",
    "GZIP_LEVEL",
    "FileEntry",
    "Layer",
    "layer_from_bytes",
    "layer_from_entries",
    "layer_from_file",
    "normalise_path",
    "write_tar",
]
