"""Publishes a release to a registry: the image (or the index, after its images) under its
reference, each image's SBOM as a referrer of that image.

Registries without the referrers API still find the SBOM through the tag-schema fallback
``sha256-<hex>.sbom`` (what cosign and oras look up).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from scratchpack._fs import Undo
from scratchpack.oci import registry
from scratchpack.oci.artifact import fallback_tag
from scratchpack.oci.descriptor import Published
from scratchpack.oci.index import ImageIndex
from scratchpack.oci.reference import Reference
from scratchpack.publish.base import Outcome, Release

SBOM_TAG_SUFFIX = "sbom"


@dataclass(frozen=True, slots=True)
class RegistryPublisher:
    ref: Reference
    options: registry.PushOptions = field(default_factory=registry.PushOptions)
    progress: Callable[[str], None] | None = None

    def describe(self) -> str:
        return f"pushing {self.ref}"

    def undo_point(self) -> Undo:
        """Nothing to keep: a push cannot be taken back, so the pipeline pushes last."""
        return Undo()

    def publish(self, release: Release) -> Outcome:
        # One deadline for the images, the index and the SBOMs: together they are the push.
        deadline = registry.Deadline.after(self.options.push_timeout)
        if isinstance(release.image, ImageIndex):
            pushed = registry.push_index(
                release.image,
                self.ref,
                options=self.options,
                progress=self.progress,
                deadline=deadline,
            )
        else:
            pushed = registry.push(
                release.image,
                self.ref,
                options=self.options,
                progress=self.progress,
                deadline=deadline,
            )
        out = [pushed]
        for image, sbom in release.attested:
            tag = fallback_tag(image.digest, SBOM_TAG_SUFFIX)
            digest = registry.push_artifact(
                sbom, self.ref, tag=tag, options=self.options, deadline=deadline
            )
            out.append(Published("registry-sbom", f"{self.ref.name}:{tag}@{digest}", digest))
        return Outcome(tuple(out))
