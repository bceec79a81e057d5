"""Publishes a release as one tarball that docker, podman and skopeo load, SBOM beside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scratchpack._fs import Undo
from scratchpack.oci.tarball import write_tarball
from scratchpack.publish.base import Outcome, Release, sbom_path_beside, write_sbom_beside


@dataclass(frozen=True, slots=True)
class TarballPublisher:
    path: Path

    def describe(self) -> str:
        return f"writing tarball {self.path}"

    def undo_point(self) -> Undo:
        return Undo(files=(self.path, sbom_path_beside(self.path)))

    def publish(self, release: Release) -> Outcome:
        published = write_tarball(release.image, self.path, tags=release.tags)
        if release.sbom is None:
            return Outcome((published,))
        return Outcome((published,), (write_sbom_beside(self.path, release.sbom),))
