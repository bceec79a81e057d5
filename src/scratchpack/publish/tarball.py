"""Publishes a release as one tarball that docker, podman and skopeo load, SBOM beside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scratchpack._fs import Undo
from scratchpack.oci.descriptor import Platform
from scratchpack.oci.tarball import write_tarball
from scratchpack.publish.base import Outcome, Release, sbom_paths_beside, write_sboms_beside


@dataclass(frozen=True, slots=True)
class TarballPublisher:
    """``docker_platform``: whose image of an index ``docker load`` gets (the build host's);
    ``platforms``: the release's, so the undo point knows its SBOM files before they exist."""

    path: Path
    docker_platform: Platform | None = None
    platforms: tuple[Platform, ...] = ()

    def describe(self) -> str:
        return f"writing tarball {self.path}"

    def undo_point(self) -> Undo:
        return Undo(files=(self.path, *sbom_paths_beside(self.path, self.platforms)))

    def publish(self, release: Release) -> Outcome:
        published = write_tarball(
            release.image, self.path, tags=release.tags, docker_platform=self.docker_platform
        )
        return Outcome((published,), write_sboms_beside(self.path, release))
