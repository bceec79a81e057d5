"""The ImageIndex value: one image per platform under one digest (a multi-platform image).

An index is a value like an image (ggcr ``v1.ImageIndex``): immutable, serialised once, and its
digest is the sha256 of those bytes, so every sink writes the same index and agrees on it. It
holds the images themselves, not only their descriptors, because every sink needs their blobs.
Each manifest descriptor carries its image's ``platform``; that is what docker, podman and
containerd choose by when they pull or load it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from scratchpack.errors import ImageError
from scratchpack.oci.config import canonical_json
from scratchpack.oci.descriptor import Descriptor, Platform
from scratchpack.oci.digest import Digest
from scratchpack.oci.image import Image, annotation_pairs
from scratchpack.oci.mediatypes import OCI_INDEX, OCI_MANIFEST

__all__ = ["ImageIndex", "index_of", "with_index_annotations"]


@dataclass(frozen=True)
class ImageIndex:
    """An OCI image index of images, at most one per platform, in a fixed order."""

    images: tuple[Image, ...]
    annotations: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.images, tuple) or not isinstance(self.annotations, tuple):
            raise ImageError("ImageIndex.images and ImageIndex.annotations must be tuples")
        if not self.images:
            raise ImageError("an image index needs at least one image")
        seen: set[Platform] = set()
        for image in self.images:
            if image.manifest_media_type != OCI_MANIFEST:
                # A Docker manifest list would be needed for Docker v2 manifests; nothing here
                # writes one, so a mixed index is refused rather than written half-valid.
                raise ImageError(
                    f"an OCI image index holds OCI manifests, not {image.manifest_media_type}"
                )
            if image.platform in seen:
                raise ImageError(f"two images for platform {image.platform} in one index")
            seen.add(image.platform)

    @property
    def media_type(self) -> str:
        return OCI_INDEX

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return tuple(image.platform for image in self.images)

    def manifest_descriptors(self) -> tuple[Descriptor, ...]:
        """What the index lists: each image's manifest with its platform."""
        return tuple(image.manifest_descriptor(platform=True) for image in self.images)

    @cached_property
    def raw_manifest(self) -> bytes:
        index: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [d.to_json() for d in self.manifest_descriptors()],
        }
        if self.annotations:
            index["annotations"] = dict(self.annotations)
        return canonical_json(index)

    @cached_property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.raw_manifest)

    def descriptor(
        self, *, annotations: Mapping[str, str] | Iterable[tuple[str, str]] = ()
    ) -> Descriptor:
        """The descriptor that points at this index (from a layout's index.json, say)."""
        return Descriptor(
            OCI_INDEX,
            self.digest,
            len(self.raw_manifest),
            annotations=annotation_pairs(annotations),
        )

    def image_for(self, platform: Platform) -> Image | None:
        """The image built for ``platform``, or None when the index has none."""
        return next((image for image in self.images if image.platform == platform), None)


def index_of(*images: Image) -> ImageIndex:
    """An index of ``images`` in the order given (ggcr ``mutate.AppendManifests`` on empty)."""
    return ImageIndex(tuple(images))


def with_index_annotations(
    index: ImageIndex, annotations: Mapping[str, str] | Iterable[tuple[str, str]]
) -> ImageIndex:
    """Merge index annotations (new values win)."""
    merged = dict(index.annotations)
    merged.update(annotation_pairs(annotations))
    return dataclasses.replace(index, annotations=annotation_pairs(merged))
