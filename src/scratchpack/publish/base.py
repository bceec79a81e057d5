"""What every publisher shares: the release it is handed and the interface it implements.

ko's ``publish.Interface``: a publisher takes a finished image (with its SBOM) and puts it
somewhere. Publishers never import one another; they import this module and their ``oci`` sink.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from scratchpack._fs import Undo, write_bytes_atomic
from scratchpack.oci.artifact import Artifact
from scratchpack.oci.descriptor import Published
from scratchpack.oci.image import Image
from scratchpack.oci.reference import Reference

SBOM_FILE_SUFFIX = ".spdx.json"


@dataclass(frozen=True, slots=True)
class Release:
    """One built image and everything a publisher may need to write it in one go."""

    image: Image
    tags: tuple[Reference, ...]  # local names (tarball RepoTags, layout ref name)
    sbom: Artifact | None = None  # an artifact manifest whose subject is ``image``


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


def sbom_path_beside(output: Path) -> Path:
    return output.with_name(output.name + SBOM_FILE_SUFFIX)


def write_sbom_beside(output: Path, sbom: Artifact) -> Path:
    """``OUTPUT.spdx.json`` next to a tarball or layout, for tools that read plain files."""
    path = sbom_path_beside(output)
    write_bytes_atomic(path, sbom.payload)
    return path
