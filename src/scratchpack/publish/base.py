"""What every publisher shares: the release it is handed and the interface it implements.

ko's ``publish.Interface``: a publisher takes a finished image (with its SBOM), or an image
index of one image per platform (with one SBOM each), and puts it somewhere. Publishers never
import one another; they import this module and their ``oci`` sink.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from scratchpack._fs import Undo, write_bytes_atomic
from scratchpack.errors import ImageError
from scratchpack.oci.artifact import Artifact
from scratchpack.oci.descriptor import Platform, Published
from scratchpack.oci.image import Image
from scratchpack.oci.index import ImageIndex
from scratchpack.oci.reference import Reference

SBOM_FILE_SUFFIX = ".spdx.json"


@dataclass(frozen=True, slots=True)
class Release:
    """What a build made, for a publisher to write in one go: one image, or an image index of one
    image per platform, with one SBOM per image (in the same order) or none."""

    image: Image | ImageIndex
    tags: tuple[Reference, ...]  # local names (tarball RepoTags, layout ref name)
    sboms: tuple[Artifact, ...] = ()  # artifact manifests whose subject is each image

    def __post_init__(self) -> None:
        if self.sboms and len(self.sboms) != len(self.images):
            raise ImageError(
                f"{len(self.sboms)} SBOMs for {len(self.images)} images: one per image, or none"
            )

    @property
    def images(self) -> tuple[Image, ...]:
        return self.image.images if isinstance(self.image, ImageIndex) else (self.image,)

    @property
    def attested(self) -> tuple[tuple[Image, Artifact], ...]:
        """Each image with its SBOM; empty when the build made none (checked in __post_init__)."""
        return tuple(zip(self.images, self.sboms, strict=True)) if self.sboms else ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one publisher wrote: the published references and any SBOM file beside them."""

    published: tuple[Published, ...] = ()
    sbom_files: tuple[Path, ...] = ()

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(self.published + other.published, self.sbom_files + other.sbom_files)


class Publisher(Protocol):
    """Puts a release somewhere; ``describe`` names the destination for progress lines."""

    def describe(self) -> str: ...

    def publish(self, release: Release) -> Outcome: ...

    def undo_point(self) -> Undo:
        """What restores this destination to its state now, should a later output fail."""
        ...


def sbom_path_beside(output: Path, platform: Platform | None = None) -> Path:
    """``OUTPUT.spdx.json``; ``OUTPUT.linux-arm64.spdx.json`` for one platform of several."""
    infix = "" if platform is None else "." + str(platform).replace("/", "-")
    return output.with_name(output.name + infix + SBOM_FILE_SUFFIX)


def sbom_paths_beside(output: Path, platforms: Sequence[Platform]) -> tuple[Path, ...]:
    """Where the SBOM files of a release go: one file for one image (named as it always was),
    else one per platform."""
    if len(platforms) <= 1:
        return (sbom_path_beside(output),)
    return tuple(sbom_path_beside(output, p) for p in platforms)


def write_sboms_beside(output: Path, release: Release) -> tuple[Path, ...]:
    """The SBOMs next to a tarball or layout as plain files, for tools that read files."""
    if not release.sboms:
        return ()
    paths = sbom_paths_beside(output, [image.platform for image in release.images])
    for path, sbom in zip(paths, release.sboms, strict=True):
        write_bytes_atomic(path, sbom.payload)
    return paths
