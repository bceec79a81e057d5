"""Publishes a release into an OCI image layout: image (or index) and SBOMs in one locked index
update."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scratchpack._fs import Undo
from scratchpack.oci.descriptor import Platform
from scratchpack.oci.layout import write_layout
from scratchpack.publish.base import Outcome, Release, sbom_paths_beside, write_sboms_beside


@dataclass(frozen=True, slots=True)
class LayoutPublisher:
    """``platforms``: the release's, so the undo point knows its SBOM files before they exist."""

    directory: Path
    platforms: tuple[Platform, ...] = ()

    def describe(self) -> str:
        return f"writing OCI layout {self.directory}"

    def undo_point(self) -> Undo:
        sboms = sbom_paths_beside(self.directory, self.platforms)
        return Undo(files=sboms, directories=(self.directory,))

    def publish(self, release: Release) -> Outcome:
        ref_name = release.tags[0].tag if release.tags and release.tags[0].tag else "latest"
        published = write_layout(
            release.image, self.directory, ref_name=ref_name, artifacts=release.sboms
        )
        return Outcome((published,), write_sboms_beside(self.directory, release))
