"""The Image value, its FROM-scratch start, and the functions that derive new images.

An ``Image`` is immutable: ``append_layers``/``with_config``/... return a new value (ggcr
``mutate``). The config and manifest are serialised once, on first use, and every digest is
the sha256 of those exact bytes, so all sinks write the same bytes and agree on identity.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from scratchpack.errors import ImageError
from scratchpack.oci.config import (
    EPOCH,
    ConfigFile,
    History,
    ImageConfig,
    canonical_json,
    format_created,
)
from scratchpack.oci.descriptor import Descriptor, Platform
from scratchpack.oci.digest import Digest
from scratchpack.oci.layer import Layer
from scratchpack.oci.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
)

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
CREATED = "org.opencontainers.image.created"
_MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
_DOCKER_LAYER = {OCI_LAYER_GZIP: DOCKER_LAYER_GZIP}


Annotations = Mapping[str, str] | Iterable[tuple[str, str]]


def annotation_pairs(annotations: Annotations) -> tuple[tuple[str, str], ...]:
    """Annotations as sorted, checked (key, value) pairs: the form every value stores."""
    items = annotations.items() if isinstance(annotations, Mapping) else annotations
    out = dict(items)
    for key, value in out.items():
        if not key or not isinstance(key, str) or not isinstance(value, str):
            raise ImageError(f"annotation {key!r}={value!r}: keys and values must be strings")
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class Image:
    """An OCI image: layers (outermost last), config file and manifest annotations."""

    layers: tuple[Layer, ...]
    config_file: ConfigFile
    annotations: tuple[tuple[str, str], ...] = ()
    manifest_media_type: str = OCI_MANIFEST

    def __post_init__(self) -> None:
        if not isinstance(self.layers, tuple) or not isinstance(self.annotations, tuple):
            raise ImageError("Image.layers and Image.annotations must be tuples")
        if tuple(layer.diff_id for layer in self.layers) != self.config_file.diff_ids:
            raise ImageError(
                "the config's rootfs diff_ids do not match the layers",
                hint="add layers with append_layers(), which keeps both in step",
            )
        if self.manifest_media_type not in _MANIFEST_TYPES:
            raise ImageError(f"unsupported manifest media type {self.manifest_media_type!r}")
        if self.manifest_media_type == DOCKER_MANIFEST and self.annotations:
            raise ImageError("Docker v2 manifests carry no annotations; use the OCI media type")

    @property
    def platform(self) -> Platform:
        cf = self.config_file
        return Platform(cf.os, cf.architecture, cf.variant)

    @cached_property
    def raw_config(self) -> bytes:
        return self.config_file.to_bytes()

    @cached_property
    def config_digest(self) -> Digest:
        return Digest.of_bytes(self.raw_config)

    @property
    def config_media_type(self) -> str:
        return DOCKER_CONFIG if self.manifest_media_type == DOCKER_MANIFEST else OCI_CONFIG

    @property
    def config_descriptor(self) -> Descriptor:
        return Descriptor(self.config_media_type, self.config_digest, len(self.raw_config))

    def layer_descriptors(self) -> tuple[Descriptor, ...]:
        """The layer descriptors as the manifest lists them (Docker media types if Docker)."""
        out = []
        for layer in self.layers:
            desc = layer.descriptor()
            if self.manifest_media_type == DOCKER_MANIFEST:
                desc = dataclasses.replace(
                    desc, media_type=_DOCKER_LAYER.get(desc.media_type, desc.media_type)
                )
            out.append(desc)
        return tuple(out)

    @cached_property
    def raw_manifest(self) -> bytes:
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.manifest_media_type,
            "config": self.config_descriptor.to_json(),
            "layers": [d.to_json() for d in self.layer_descriptors()],
        }
        if self.annotations:
            manifest["annotations"] = dict(self.annotations)
        return canonical_json(manifest)

    @cached_property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.raw_manifest)

    def manifest_descriptor(
        self,
        *,
        annotations: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        platform: bool = False,
    ) -> Descriptor:
        """The descriptor an index (or a ``subject``) uses to point at this manifest."""
        return Descriptor(
            self.manifest_media_type,
            self.digest,
            len(self.raw_manifest),
            annotations=annotation_pairs(annotations),
            platform=self.platform if platform else None,
        )


_LINUX_AMD64 = Platform()


def empty(platform: Platform = _LINUX_AMD64) -> Image:
    """``FROM scratch``: no layers, an empty runtime config, created at the epoch."""
    config = ConfigFile(
        architecture=platform.architecture,
        os=platform.os,
        created=EPOCH,
        config=ImageConfig(),
        variant=platform.variant,
    )
    return Image((), config)


def append_layers(image: Image, *layers: Layer, created_by: str = "scratchpack") -> Image:
    """Add layers on top, with matching diff_ids and one history entry per layer."""
    cf = image.config_file
    history = tuple(History(created=cf.created, created_by=created_by) for _ in layers)
    new_cf = dataclasses.replace(
        cf,
        diff_ids=cf.diff_ids + tuple(layer.diff_id for layer in layers),
        history=cf.history + history,
    )
    return dataclasses.replace(image, layers=image.layers + layers, config_file=new_cf)


def with_config(image: Image, config: ImageConfig) -> Image:
    return dataclasses.replace(
        image, config_file=dataclasses.replace(image.config_file, config=config)
    )


def with_created(image: Image, created: datetime | str | int) -> Image:
    """Pin the creation time of the config and of every history entry (ggcr ``mutate.Time``)."""
    stamp = format_created(created)
    cf = image.config_file
    history = tuple(dataclasses.replace(h, created=stamp) for h in cf.history)
    return dataclasses.replace(
        image, config_file=dataclasses.replace(cf, created=stamp, history=history)
    )


def with_annotations(
    image: Image, annotations: Mapping[str, str] | Iterable[tuple[str, str]]
) -> Image:
    """Merge manifest annotations (new values win)."""
    merged = dict(image.annotations)
    merged.update(annotation_pairs(annotations))
    return dataclasses.replace(image, annotations=annotation_pairs(merged))


def with_media_type(image: Image, media_type: str) -> Image:
    """Switch between the OCI manifest (default) and Docker v2 schema 2 for old registries."""
    return dataclasses.replace(image, manifest_media_type=media_type)


__all__ = [
    "CONTAINERD_NAME",
    "CREATED",
    "REF_NAME",
    "Image",
    "annotation_pairs",
    "append_layers",
    "empty",
    "with_annotations",
    "with_config",
    "with_created",
    "with_media_type",
]
