"""Descriptor, Platform and Published: the small values that point at blobs and outputs.

Platform is defined in ``scratchpack._types``: the freezer targets one and never imports oci/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scratchpack._types import Platform
from scratchpack.oci.digest import Digest

__all__ = ["Descriptor", "Platform", "Published"]


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
