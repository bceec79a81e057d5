"""Descriptor, Platform and Published: the small values that point at blobs and outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scratchpack.oci.digest import Digest


@dataclass(frozen=True, slots=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def __str__(self) -> str:
        """``os/architecture[/variant]``, as ``--platform`` and docker spell it."""
        name = f"{self.os}/{self.architecture}"
        return f"{name}/{self.variant}" if self.variant else name

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/architecture[/variant]`` -> Platform (ValueError when it is not that shape)."""
        parts = text.split("/")
        if not 2 <= len(parts) <= 3 or not all(parts):
            raise ValueError(f"invalid platform {text!r}: expected OS/ARCH[/VARIANT]")
        return cls(*parts)

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor: what a manifest or index says about one blob."""

    media_type: str
    digest: Digest
    size: int
    annotations: tuple[tuple[str, str], ...] = ()
    platform: Platform | None = None
    artifact_type: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out


@dataclass(frozen=True, slots=True)
class Published:
    """What a sink produced: ``kind`` (tarball, oci-layout, registry), where, and the digest."""

    kind: str
    location: str
    digest: Digest
    extra: tuple[tuple[str, str], ...] = field(default=())
