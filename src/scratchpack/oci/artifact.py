"""Artifact manifests (OCI 1.1): a blob such as an SBOM that refers to an image via ``subject``.

Registries without the referrers API still store them; the caller also tags them with the
``sha256-<hex>.<suffix>`` fallback so tools like cosign/oras can find them either way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from scratchpack.oci import mediatypes
from scratchpack.oci.descriptor import Descriptor
from scratchpack.oci.digest import Digest

EMPTY_JSON = b"{}"


@dataclass(frozen=True, slots=True)
class Artifact:
    """A serialised artifact manifest plus every blob it references, held in memory (small)."""

    artifact_type: str
    raw_manifest: bytes
    blobs: tuple[tuple[Descriptor, bytes], ...]
    media_type: str = mediatypes.OCI_MANIFEST

    @property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.raw_manifest)

    def descriptor(self) -> Descriptor:
        return Descriptor(
            self.media_type,
            self.digest,
            len(self.raw_manifest),
            artifact_type=self.artifact_type,
        )


def fallback_tag(subject: Digest, suffix: str) -> str:
    """The tag-schema name for an artifact of ``subject``: ``sha256-<hex>.<suffix>``."""
    return f"{subject.algorithm}-{subject.hex}.{suffix}"


def make_artifact(
    subject: Descriptor,
    data: bytes,
    *,
    artifact_type: str,
    annotations: tuple[tuple[str, str], ...] = (),
) -> Artifact:
    config = Descriptor(mediatypes.OCI_EMPTY, Digest.of_bytes(EMPTY_JSON), len(EMPTY_JSON))
    layer = Descriptor(artifact_type, Digest.of_bytes(data), len(data))
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config.to_json(),
        "layers": [layer.to_json()],
        "subject": Descriptor(subject.media_type, subject.digest, subject.size).to_json(),
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    raw = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return Artifact(artifact_type, raw, ((config, EMPTY_JSON), (layer, data)))
