"""Verified reads and copies shared by the sinks (atomic writes are in ``scratchpack._fs``).

Private and leaf-level (it imports only ``digest`` and ``errors``) so that sinks can share it
without importing one another.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

from scratchpack.errors import DigestMismatchError
from scratchpack.oci.digest import CHUNK, Digest

_CHANGED_HINT = "the blob changed after the layer was built; rebuild the image"
_SPACE_HINT = "the disk is full or over quota; free some space or choose another location"


class VerifyingReader:
    """Read-through wrapper that hashes and counts; ``verify()`` checks digest and size.

    The one verifying reader of the package: the sinks copy through it, ``validate`` reads
    through it, and a registry upload streams through it. ``bounded=True`` is for request
    bodies, where the reader itself must end the stream: it never hands out more than
    ``size`` bytes (a longer stream would break the request's Content-Length), a stream that
    ends early fails at once, and the digest is checked when the last byte has been handed
    out, before the request can complete, so a corrupt local blob is never committed.
    """

    def __init__(
        self, stream: BinaryIO, expected: Digest, size: int, *, what: str, bounded: bool = False
    ) -> None:
        if expected.algorithm != "sha256":
            raise DigestMismatchError(f"{what}: unsupported digest algorithm {expected.algorithm}")
        self._stream = stream
        self._hash = hashlib.sha256()
        self._bounded = bounded
        self.expected = expected
        self.expected_size = size
        self.count = 0
        self.what = what

    def read(self, n: int | None = -1, /) -> bytes:
        if not self._bounded:
            data = self._stream.read(-1 if n is None else n)
        else:
            remaining = self.expected_size - self.count
            if remaining <= 0:
                self.verify()
                return b""
            data = self._stream.read(remaining if n is None or n < 0 else min(n, remaining))
            if not data:
                raise DigestMismatchError(
                    f"{self.what}: the stream ended after {self.count} of its "
                    f"{self.expected_size} bytes",
                    hint=_CHANGED_HINT,
                )
        self._hash.update(data)
        self.count += len(data)
        return data

    def verify(self) -> None:
        """Drain what is left (a longer stream is a mismatch too) and compare."""
        if self._bounded:
            if self.count == self.expected_size and self._stream.read(1):
                self.count += 1  # longer than recorded: reported below
        else:
            while self.read(CHUNK):
                if self.count > self.expected_size:
                    break
        got = Digest("sha256", self._hash.hexdigest())
        if self.count != self.expected_size or got != self.expected:
            more = "+" if self._bounded and self.count > self.expected_size else ""
            raise DigestMismatchError(
                f"{self.what}: expected {self.expected} ({self.expected_size} bytes), "
                f"read {got} ({self.count}{more} bytes)",
                hint=_CHANGED_HINT,
            )


def copy_verified(src: BinaryIO, dst: BinaryIO, expected: Digest, size: int, *, what: str) -> None:
    """Copy in chunks, hashing as we go; DigestMismatchError if the bytes are not ``expected``."""
    reader = VerifyingReader(src, expected, size, what=what)
    while chunk := reader.read(CHUNK):
        dst.write(chunk)
        if reader.count > size:
            break
    reader.verify()


def existing_blob_ok(path: Path, digest: Digest, size: int) -> bool:
    """True if ``path`` already holds exactly this blob (right size, and it hashes right)."""
    try:
        if path.stat().st_size != size:
            return False
        with open(path, "rb") as f:
            got, _ = Digest.of_stream(f)
    except OSError:
        return False
    return got == digest


__all__ = [
    "VerifyingReader",
    "copy_verified",
    "existing_blob_ok",
]
