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
    """A serialised artifact manifest plus the one payload it carries, held in memory (small).

    ``payload`` is the document itself (e.g. the SPDX JSON), so a sink that also writes it as a
    plain file takes it from here; ``blobs`` is what a registry or layout stores.
    """

    artifact_type: str
    raw_manifest: bytes
    payload: bytes
    media_type: str = mediatypes.OCI_MANIFEST

    @property
    def blobs(self) -> tuple[tuple[Descriptor, bytes], ...]:
        """The empty config and the payload, each with the descriptor the manifest lists."""
        config = Descriptor(mediatypes.OCI_EMPTY, Digest.of_bytes(EMPTY_JSON), len(EMPTY_JSON))
        layer = Descriptor(self.artifact_type, Digest.of_bytes(self.payload), len(self.payload))
        return ((config, EMPTY_JSON), (layer, self.payload))

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
    return Artifact(artifact_type, raw, data)
