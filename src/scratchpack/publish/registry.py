"""Publishes a release to a registry: the image under its reference, the SBOM as a referrer.

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
        image = release.image
        # One deadline for the image and its SBOM: together they are the push.
        deadline = registry.Deadline.after(self.options.push_timeout)
        out = [
            registry.push(
                image, self.ref, options=self.options, progress=self.progress, deadline=deadline
            )
        ]
        if release.sbom is not None:
            tag = fallback_tag(image.digest, SBOM_TAG_SUFFIX)
            digest = registry.push_artifact(
                release.sbom, self.ref, tag=tag, options=self.options, deadline=deadline
            )
            out.append(Published("registry-sbom", f"{self.ref.name}:{tag}@{digest}", digest))
        return Outcome(tuple(out))
