"""Publishes a release into an OCI image layout: image and SBOM in one locked index update."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scratchpack._fs import Undo
from scratchpack.oci.layout import write_layout
from scratchpack.publish.base import Outcome, Release, sbom_path_beside, write_sbom_beside


@dataclass(frozen=True, slots=True)
class LayoutPublisher:
    directory: Path

    def describe(self) -> str:
        return f"writing OCI layout {self.directory}"

    def undo_point(self) -> Undo:
        return Undo(files=(sbom_path_beside(self.directory),), directories=(self.directory,))

    def publish(self, release: Release) -> Outcome:
        ref_name = release.tags[0].tag if release.tags and release.tags[0].tag else "latest"
        artifacts = () if release.sbom is None else (release.sbom,)
        published = write_layout(
            release.image, self.directory, ref_name=ref_name, artifacts=artifacts
        )
        if release.sbom is None:
            return Outcome((published,))
        return Outcome((published,), (write_sbom_beside(self.directory, release.sbom),))
