"""Tarball sink: one archive that ``docker load``, ``podman load`` and skopeo all read.

The archive is a docker-archive and an OCI image layout at once, sharing one set of blobs
(the layout docker >= 25 itself writes with ``docker save``)::

    blobs/sha256/<hex>   config, compressed layers, OCI manifest
    index.json           OCI index -> manifest, named by io.containerd.image.name + ref.name
    manifest.json        docker-archive: [{"Config": ..., "RepoTags": [...], "Layers": [...]}]
    oci-layout           {"imageLayoutVersion": "1.0.0"}

Docker 20.10 reads only manifest.json (and decompresses gzip layers itself); podman tries
oci-archive first and takes the name from ``io.containerd.image.name``; skopeo reads either
``oci-archive:`` or ``docker-archive:``. Member order, times and owners are fixed, so the same
image and tags give the same bytes.

A multi-platform image (an :class:`~scratchpack.oci.index.ImageIndex`) puts every image's blobs
and the index itself in ``blobs/``, and ``index.json`` names the index, so an OCI reader (podman,
skopeo) sees all platforms and picks its own. docker-archive's manifest.json can only list
images, each loaded and tagged in turn, so it lists one: the image for ``docker_platform`` (the
pipeline passes the build host's), else the index's first. ``docker load`` therefore loads
that image under the tags and never the others.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from scratchpack._fs import atomic_output
from scratchpack.errors import DigestMismatchError, ImageError
from scratchpack.oci._io import VerifyingReader
from scratchpack.oci.config import canonical_json
from scratchpack.oci.descriptor import Descriptor, Platform, Published
from scratchpack.oci.image import CONTAINERD_NAME, REF_NAME, Image
from scratchpack.oci.index import ImageIndex
from scratchpack.oci.layer import Layer
from scratchpack.oci.mediatypes import OCI_INDEX
from scratchpack.oci.reference import Reference

OCI_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})
_FILE_MODE = 0o644
_DIR_MODE = 0o755


def _blob_name(hexdigest: str) -> str:
    return f"blobs/sha256/{hexdigest}"


def _check_tags(tags: Sequence[Reference]) -> list[Reference]:
    out: list[Reference] = []
    for ref in tags:
        if not ref.tag:
            raise ImageError(
                f"cannot name a tarball image by {ref}: it has no tag",
                hint="docker load needs NAME:TAG, e.g. webhello:1.0",
            )
        bare = Reference(ref.registry, ref.repository, ref.tag)  # a digest is not a name here
        if bare not in out:
            out.append(bare)
    return out


def _top_descriptor(image: Image | ImageIndex, annotations: dict[str, str]) -> Descriptor:
    if isinstance(image, ImageIndex):
        return image.descriptor(annotations=annotations)
    return image.manifest_descriptor(annotations=annotations)


def index_json(image: Image | ImageIndex, tags: Sequence[Reference]) -> bytes:
    """The OCI index: one entry per tag (names podman and containerd understand), or one bare.

    For an image index the entries point at the index, not at one of its images.
    """
    entries = [
        _top_descriptor(image, {CONTAINERD_NAME: str(ref), REF_NAME: ref.tag}) for ref in tags
    ] or [_top_descriptor(image, {})]
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [d.to_json() for d in entries],
    }
    return canonical_json(index)


def docker_image(image: Image | ImageIndex, docker_platform: Platform | None = None) -> Image:
    """The one image manifest.json lists: the index's image for ``docker_platform``, else its
    first (a single image is itself)."""
    if isinstance(image, Image):
        return image
    chosen = image.image_for(docker_platform) if docker_platform is not None else None
    return chosen or image.images[0]


def manifest_json(image: Image, tags: Sequence[Reference]) -> bytes:
    """docker-archive's manifest.json: what ``docker load`` (any engine version) reads."""
    entry = {
        "Config": _blob_name(image.config_digest.hex),
        "RepoTags": [str(ref) for ref in tags],
        "Layers": [_blob_name(layer.digest.hex) for layer in image.layers],
    }
    return canonical_json([entry])


def _info(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = _DIR_MODE
    else:
        info.mode = _FILE_MODE
        info.size = size
    return info


def write_archive(
    image: Image | ImageIndex,
    out: BinaryIO,
    *,
    tags: Sequence[Reference] = (),
    docker_platform: Platform | None = None,
) -> None:
    """Stream the archive to ``out`` (any writable binary stream); layers are verified."""
    refs = _check_tags(tags)
    images = image.images if isinstance(image, ImageIndex) else (image,)
    small: dict[str, bytes] = {}
    layers: dict[str, Layer] = {}
    for one in images:
        small[one.config_digest.hex] = one.raw_config
        small[one.digest.hex] = one.raw_manifest
        layers.update((layer.digest.hex, layer) for layer in one.layers)
    if isinstance(image, ImageIndex):
        small[image.digest.hex] = image.raw_manifest
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_info("blobs", directory=True))
        tar.addfile(_info("blobs/sha256", directory=True))
        for hexdigest in sorted(small.keys() | layers.keys()):
            name = _blob_name(hexdigest)
            if hexdigest in small:
                data = small[hexdigest]
                tar.addfile(_info(name, len(data)), io.BytesIO(data))
                continue
            layer = layers[hexdigest]
            with layer.opener() as stream:
                reader = VerifyingReader(
                    stream, layer.digest, layer.size, what=f"layer {layer.digest}"
                )
                try:
                    tar.addfile(_info(name, layer.size), reader)
                except OSError as err:
                    if reader.count < layer.size:  # tarfile: "unexpected end of data"
                        raise DigestMismatchError(
                            f"layer {layer.digest}: the blob has {reader.count} bytes, "
                            f"{layer.size} were recorded",
                            hint="the layer file changed after it was built; rebuild the image",
                        ) from err
                    raise
                reader.verify()
        for name, data in (
            ("index.json", index_json(image, refs)),
            ("manifest.json", manifest_json(docker_image(image, docker_platform), refs)),
            ("oci-layout", OCI_LAYOUT),
        ):
            tar.addfile(_info(name, len(data)), io.BytesIO(data))


def write_tarball(
    image: Image | ImageIndex,
    path: Path,
    *,
    tags: Sequence[Reference] = (),
    docker_platform: Platform | None = None,
) -> Published:
    """Write the combined docker-archive + OCI-layout tarball atomically to ``path``."""
    refs = _check_tags(tags)
    with atomic_output(path, what="write tarball") as f:
        write_archive(image, f, tags=refs, docker_platform=docker_platform)
    return Published(
        "tarball",
        str(path),
        image.digest,
        extra=(("tags", ",".join(ref.familiar for ref in refs)),),
    )


__all__ = [
    "OCI_LAYOUT",
    "docker_image",
    "index_json",
    "manifest_json",
    "write_archive",
    "write_tarball",
]
