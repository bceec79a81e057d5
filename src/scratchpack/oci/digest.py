"""Digest: a validated (algorithm, hex) value, and hashing of bytes and streams."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import BinaryIO

_HEX = {"sha256": re.compile(r"[0-9a-f]{64}"), "sha512": re.compile(r"[0-9a-f]{128}")}
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """``sha256:<hex>``; compared and hashed as a value, printed in its canonical form."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        pattern = _HEX.get(self.algorithm)
        if pattern is None or not pattern.fullmatch(self.hex):
            raise ValueError(f"invalid digest {self.algorithm}:{self.hex!r}")

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        algorithm, sep, hexpart = text.partition(":")
        if not sep:
            raise ValueError(f"invalid digest {text!r}: expected ALGORITHM:HEX")
        return cls(algorithm, hexpart)

    @classmethod
    def of_bytes(cls, data: bytes) -> Digest:
        return cls("sha256", hashlib.sha256(data).hexdigest())

    @classmethod
    def of_stream(cls, stream: BinaryIO) -> tuple[Digest, int]:
        """Hash a stream to its end; returns the digest and the number of bytes read."""
        h = hashlib.sha256()
        size = 0
        while chunk := stream.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
        return cls("sha256", h.hexdigest()), size
