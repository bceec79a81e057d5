"""OCI image layout sink: ``oci-layout``, ``index.json`` and ``blobs/sha256/<hex>``.

Safe to run again and to share between images (ggcr ``layout.Write``): each blob is written to
a temp file and renamed into place, a blob already present with the right size and digest is
skipped, and index.json is replaced atomically under an flock on the layout directory, keeping
the other images' entries (an entry with the same ref name is replaced in place).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from scratchpack._fs import atomic_output, os_error_message, write_bytes_atomic
from scratchpack.errors import DigestMismatchError, ImageError, SinkError
from scratchpack.oci._io import copy_verified, existing_blob_ok
from scratchpack.oci.artifact import Artifact
from scratchpack.oci.config import canonical_json
from scratchpack.oci.descriptor import Descriptor, Published
from scratchpack.oci.digest import Digest
from scratchpack.oci.image import REF_NAME, Image
from scratchpack.oci.index import ImageIndex
from scratchpack.oci.mediatypes import OCI_INDEX

LAYOUT_VERSION = "1.0.0"
_REF_NAME = re.compile(r"[A-Za-z0-9]+(?:(?:[-._:@/+]|--)[A-Za-z0-9]+)*")
_MAX_INDEX = 16 << 20


def check_ref_name(ref_name: str) -> None:
    """The OCI image-layout grammar for ``org.opencontainers.image.ref.name``."""
    if ref_name and not _REF_NAME.fullmatch(ref_name):
        raise ImageError(
            f"invalid layout ref name {ref_name!r}",
            hint="use letters and digits joined by - . _ : @ / +, e.g. 'latest' or 'app:1.0'",
        )


class _Layout:
    """An open, locked layout directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"

    def blob_path(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.hex

    def put_bytes(self, digest: Digest, data: bytes) -> None:
        path = self.blob_path(digest)
        if not existing_blob_ok(path, digest, len(data)):
            write_bytes_atomic(path, data)

    def put_stream(self, desc: Descriptor, opener: Callable[[], BinaryIO]) -> None:
        path = self.blob_path(desc.digest)
        if existing_blob_ok(path, desc.digest, desc.size):
            return
        with atomic_output(path, what="write blob") as out, opener() as src:
            copy_verified(src, out, desc.digest, desc.size, what=f"layer {desc.digest}")

    def read_index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        if not path.exists():
            return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        try:
            with open(path, "rb") as f:
                raw = f.read(_MAX_INDEX + 1)
            index = json.loads(raw)
        except (OSError, ValueError) as err:
            raise SinkError(
                f"cannot read the existing {path}: {err}",
                hint="repair or remove the layout directory, or choose another one",
            ) from err
        if (
            len(raw) > _MAX_INDEX
            or not isinstance(index, dict)
            or not isinstance(index.get("manifests", []), list)
        ):
            raise SinkError(
                f"{path} is not an OCI image index",
                hint="repair or remove the layout directory, or choose another one",
            )
        index.setdefault("manifests", [])
        return index

    def update_index(self, entries: Sequence[Descriptor]) -> None:
        """Add entries: same ref name -> replace in place; same digest, no name -> keep one."""
        index = self.read_index()
        manifests: list[object] = index["manifests"]  # JSON from disk: entries may be anything
        for desc in entries:
            new = desc.to_json()
            name = dict(desc.annotations).get(REF_NAME, "")
            slot = None
            for i, old in enumerate(manifests):
                if not isinstance(old, dict):
                    continue
                old_name = (old.get("annotations") or {}).get(REF_NAME, "")
                if (name and old_name == name) or (
                    not name and not old_name and old.get("digest") == new["digest"]
                ):
                    slot = i
                    break
            if slot is None:
                manifests.append(new)
            else:
                manifests[slot] = new
        index["schemaVersion"] = 2
        index["mediaType"] = OCI_INDEX
        write_bytes_atomic(self.root / "index.json", canonical_json(index))


@contextlib.contextmanager
def _open_layout(directory: Path) -> Iterator[_Layout]:
    """Create (or check) the layout directory and hold an exclusive flock on it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise os_error_message(err, directory, "create layout directory") from err
    marker = directory / "oci-layout"
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise os_error_message(err, directory, "open layout directory") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # before looking: another writer may be creating it
        layout = _Layout(directory)
        if not marker.exists() and any(
            p.name not in {"blobs", "index.json"} for p in directory.iterdir()
        ):
            raise SinkError(
                f"{directory} is not empty and is not an OCI image layout",
                hint="choose a new or empty directory, or an existing layout",
            )
        if marker.exists():
            try:
                version = json.loads(marker.read_bytes()).get("imageLayoutVersion", "")
            except (OSError, ValueError, AttributeError) as err:
                raise SinkError(f"{marker} is unreadable or not JSON: {err}") from err
            if not str(version).startswith("1."):
                raise SinkError(f"{directory} has unsupported image layout version {version!r}")
        else:
            write_bytes_atomic(marker, canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))
        try:
            layout.blobs.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise os_error_message(err, layout.blobs, "create blob directory") from err
        yield layout
    finally:
        os.close(fd)  # releases the lock


def _put_image(layout: _Layout, image: Image) -> None:
    for layer in image.layers:
        layout.put_stream(layer.descriptor(), layer.opener)
    layout.put_bytes(image.config_digest, image.raw_config)
    layout.put_bytes(image.digest, image.raw_manifest)


def _put_artifact(layout: _Layout, artifact: Artifact) -> None:
    for desc, data in artifact.blobs:
        if Digest.of_bytes(data) != desc.digest or len(data) != desc.size:
            raise DigestMismatchError(f"artifact blob {desc.digest} does not match its bytes")
        layout.put_bytes(desc.digest, data)
    layout.put_bytes(artifact.digest, artifact.raw_manifest)


def _artifact_descriptor(artifact: Artifact, ref_name: str) -> Descriptor:
    desc = artifact.descriptor()
    if ref_name:
        desc = dataclasses.replace(desc, annotations=((REF_NAME, ref_name),))
    return desc


def write_layout(
    image: Image | ImageIndex,
    directory: Path,
    *,
    ref_name: str = "",
    artifacts: Sequence[Artifact] = (),
) -> Published:
    """Add ``image`` (and artifacts that refer to it, e.g. an SBOM) to an OCI image layout.

    An image index goes in with all of its images, and index.json names the index itself: a
    reader picks the platform it wants from there. Blobs go in before index.json names them, so
    a reader never sees a dangling entry.
    """
    check_ref_name(ref_name)
    annotations = {REF_NAME: ref_name} if ref_name else {}
    with _open_layout(directory) as layout:
        if isinstance(image, ImageIndex):
            for one in image.images:
                _put_image(layout, one)
            layout.put_bytes(image.digest, image.raw_manifest)
            top = image.descriptor(annotations=annotations)
        else:
            _put_image(layout, image)
            top = image.manifest_descriptor(annotations=annotations)
        for artifact in artifacts:
            _put_artifact(layout, artifact)
        layout.update_index([top] + [_artifact_descriptor(a, "") for a in artifacts])
    extra = (("ref_name", ref_name),) if ref_name else ()
    return Published("oci-layout", str(directory), image.digest, extra=extra)


__all__ = ["LAYOUT_VERSION", "check_ref_name", "write_layout"]
