"""Image invariants, checked on an Image value or on an output read back (ggcr ``validate``).

Every blob is re-hashed while streamed, every layer is decompressed to recompute its diff_id,
and the manifest, config, index (and, in a tarball, manifest.json) must agree with each other.
The readers return what they found so round-trip tests can compare it with what was written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from scratchpack.errors import DigestMismatchError, ImageError
from scratchpack.oci._io import VerifyingReader
from scratchpack.oci.descriptor import Platform
from scratchpack.oci.digest import CHUNK, Digest
from scratchpack.oci.image import CONTAINERD_NAME, REF_NAME, Image
from scratchpack.oci.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
)
from scratchpack.oci.reference import Reference

_GZIP_TYPES = {OCI_LAYER_GZIP, DOCKER_LAYER_GZIP}
_LAYER_TYPES = _GZIP_TYPES | {OCI_LAYER_TAR}
_IMAGE_CONFIGS = {OCI_CONFIG, DOCKER_CONFIG}
_MAX_JSON = 4 << 20
_KINDS = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
}

Opener = Callable[[], BinaryIO]


@dataclass(frozen=True, slots=True)
class TarEntry:
    """One member of a layer tar, as a runtime would unpack it."""

    path: str
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    linkname: str = ""
    uname: str = ""
    gname: str = ""


@dataclass(frozen=True, slots=True)
class CheckedManifest:
    """A manifest that passed every check, with what it contains."""

    digest: Digest
    media_type: str
    annotations: tuple[tuple[str, str], ...]
    manifest: dict[str, Any]
    config: dict[str, Any] | None  # None for artifacts (their config is not an image config)
    layers: tuple[tuple[TarEntry, ...], ...]  # empty for artifacts
    artifact_type: str = ""
    #: an image index: its images, each checked, in its order (empty for a manifest)
    children: tuple[CheckedManifest, ...] = ()
    platform: Platform | None = None  # what the index that lists this image says it is for

    @property
    def ref_name(self) -> str:
        return dict(self.annotations).get(REF_NAME, "")


@dataclass(frozen=True, slots=True)
class CheckedTarball:
    image: CheckedManifest  # what index.json names: an image, or an image index
    repo_tags: tuple[str, ...]
    names: tuple[str, ...]  # io.containerd.image.name of each index entry
    members: tuple[str, ...]
    docker_image: CheckedManifest | None = None  # the image manifest.json lists (docker load)


def _fail(message: str) -> ImageError:
    return ImageError(message)


def _tar_entries(stream: BinaryIO) -> tuple[TarEntry, ...]:
    out = []
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for m in tar:
            out.append(
                TarEntry(
                    m.name.rstrip("/"),
                    _KINDS.get(m.type, f"type-{m.type!r}"),
                    m.mode,
                    m.uid,
                    m.gid,
                    m.size,
                    int(m.mtime),
                    m.linkname,
                    m.uname,
                    m.gname,
                )
            )
    return tuple(out)


class _HashingReader:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.hash.update(data)
        return data


def check_layer(
    opener: Opener, digest: Digest, size: int, media_type: str, diff_id: Digest
) -> tuple[TarEntry, ...]:
    """Stream a layer once: blob digest and size, diff_id of the tar, and its member list."""
    if media_type not in _LAYER_TYPES:
        raise _fail(f"layer {digest}: unsupported media type {media_type!r}")
    with opener() as raw:
        blob = VerifyingReader(raw, digest, size, what=f"layer {digest}")
        if media_type in _GZIP_TYPES:
            plain: Any = gzip.GzipFile(fileobj=cast(Any, blob), mode="rb")
        else:
            plain = blob
        hashed = _HashingReader(plain)
        try:
            entries = _tar_entries(hashed)  # type: ignore[arg-type]
            while hashed.read(CHUNK):  # the end-of-archive padding counts too
                pass
        except (OSError, EOFError, tarfile.TarError) as err:
            blob.verify()  # a damaged blob is a digest mismatch first, a bad tar second
            raise _fail(f"layer {digest} is not a valid {media_type}: {err}") from err
        blob.verify()
    got = Digest("sha256", hashed.hash.hexdigest())
    if got != diff_id:
        raise DigestMismatchError(f"layer {digest}: diff_id is {got}, the config says {diff_id}")
    return entries


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as err:
        raise _fail(f"{what} is not valid JSON: {err}") from err


def _read_blob(opener: Opener, digest: Digest, size: int, what: str) -> bytes:
    if size > _MAX_JSON:
        raise _fail(f"{what} {digest} is implausibly large ({size} bytes)")
    with opener() as raw:
        reader = VerifyingReader(raw, digest, size, what=f"{what} {digest}")
        chunks = []
        while (chunk := reader.read(CHUNK)) and reader.count <= size:
            chunks.append(chunk)
        reader.verify()
    return b"".join(chunks)


def _descriptor(obj: Any, what: str) -> tuple[str, Digest, int]:
    if not isinstance(obj, dict):
        raise _fail(f"{what} is not a descriptor object")
    try:
        digest = Digest.parse(obj["digest"])
        size = obj["size"]
        media_type = obj["mediaType"]
    except (KeyError, ValueError, TypeError) as err:
        raise _fail(f"{what} is not a valid descriptor: {err}") from err
    if not isinstance(size, int) or size < 0 or not isinstance(media_type, str):
        raise _fail(f"{what}: bad size or mediaType")
    return media_type, digest, size


def check_manifest(
    get: Callable[[Digest], Opener],
    digest: Digest,
    size: int,
    *,
    media_type: str = OCI_MANIFEST,
    annotations: tuple[tuple[str, str], ...] = (),
    exists: Callable[[Digest], bool] | None = None,
) -> CheckedManifest:
    """Check one manifest (or image index) and everything it refers to, fetching blobs through
    ``get``."""
    if media_type == OCI_INDEX:
        return _check_image_index(get, digest, size, annotations=annotations, exists=exists)
    raw = _read_blob(get(digest), digest, size, "manifest")
    manifest = _json(raw, f"manifest {digest}")
    if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
        raise _fail(f"manifest {digest}: schemaVersion must be 2")
    if manifest.get("mediaType", media_type) != media_type:
        raise _fail(
            f"manifest {digest}: mediaType {manifest.get('mediaType')!r} differs from the "
            f"descriptor's {media_type!r}"
        )
    if media_type not in {OCI_MANIFEST, DOCKER_MANIFEST}:
        raise _fail(f"manifest {digest}: unsupported media type {media_type!r}")
    cfg_type, cfg_digest, cfg_size = _descriptor(manifest.get("config"), f"{digest} config")
    cfg_raw = _read_blob(get(cfg_digest), cfg_digest, cfg_size, "config")
    layer_descs = manifest.get("layers")
    if not isinstance(layer_descs, list):
        raise _fail(f"manifest {digest}: layers must be a list")
    artifact_type = manifest.get("artifactType", "")
    subject = manifest.get("subject")
    if subject is not None:
        _, subj_digest, _ = _descriptor(subject, f"{digest} subject")
        if exists is not None and not exists(subj_digest):
            raise _fail(f"artifact {digest}: its subject {subj_digest} is not in the output")
    if cfg_type not in _IMAGE_CONFIGS:
        # An artifact: check that each blob is there and intact, nothing more.
        for i, obj in enumerate(layer_descs):
            _, d, s = _descriptor(obj, f"{digest} layer {i}")
            with get(d)() as raw_blob:
                VerifyingReader(raw_blob, d, s, what=f"blob {d}").verify()
        return CheckedManifest(digest, media_type, annotations, manifest, None, (), artifact_type)
    config = _json(cfg_raw, f"config {cfg_digest}")
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise _fail(f"config {cfg_digest}: rootfs.type must be 'layers'")
    diff_ids = [Digest.parse(d) for d in rootfs.get("diff_ids", [])]
    if len(diff_ids) != len(layer_descs):
        raise _fail(
            f"manifest {digest} lists {len(layer_descs)} layers, "
            f"its config {len(diff_ids)} diff_ids"
        )
    for key in ("architecture", "os"):
        if not isinstance(config.get(key), str) or not config[key]:
            raise _fail(f"config {cfg_digest}: {key} is missing")
    history = [h for h in config.get("history", []) if not h.get("empty_layer")]
    if config.get("history") and len(history) != len(layer_descs):
        raise _fail(f"config {cfg_digest}: history does not match the {len(layer_descs)} layers")
    layers = []
    for i, (obj, diff_id) in enumerate(zip(layer_descs, diff_ids, strict=True)):
        l_type, l_digest, l_size = _descriptor(obj, f"{digest} layer {i}")
        layers.append(check_layer(get(l_digest), l_digest, l_size, l_type, diff_id))
    return CheckedManifest(
        digest, media_type, annotations, manifest, config, tuple(layers), artifact_type
    )


def _platform(obj: Any, what: str) -> Platform:
    if not isinstance(obj, dict) or not all(
        isinstance(obj.get(k), str) and obj[k] for k in ("os", "architecture")
    ):
        raise _fail(f"{what}: an image index entry needs a platform with os and architecture")
    return Platform(obj["os"], obj["architecture"], str(obj.get("variant", "")))


def _check_image_index(
    get: Callable[[Digest], Opener],
    digest: Digest,
    size: int,
    *,
    annotations: tuple[tuple[str, str], ...],
    exists: Callable[[Digest], bool] | None,
) -> CheckedManifest:
    """An image index: one image manifest per platform, each checked, whose config agrees."""
    raw = _read_blob(get(digest), digest, size, "index")
    entries = _check_index(raw, f"index {digest}")
    if not entries:
        raise _fail(f"index {digest} lists no image")
    children: list[CheckedManifest] = []
    for i, obj in enumerate(entries):
        what = f"index {digest} entry {i}"
        media_type, child, child_size = _descriptor(obj, what)
        platform = _platform(obj.get("platform"), what)
        if any(c.platform == platform for c in children):
            raise _fail(f"index {digest} lists platform {platform} twice")
        checked = check_manifest(get, child, child_size, media_type=media_type, exists=exists)
        config = checked.config or {}
        found = Platform(
            config.get("os", ""), config.get("architecture", ""), config.get("variant", "")
        )
        if checked.config is None or found != platform:
            raise _fail(f"{what} says {platform}, its image's config {found}")
        children.append(dataclasses.replace(checked, platform=platform))
    return CheckedManifest(
        digest, OCI_INDEX, annotations, _json(raw, "index"), None, (), children=tuple(children)
    )


def validate_image(image: Image) -> CheckedManifest:
    """Recompute every digest, size and diff_id of an in-memory Image; ImageError if off."""
    if Digest.of_bytes(image.raw_manifest) != image.digest:
        raise DigestMismatchError("the manifest digest does not match its bytes")
    manifest = _json(image.raw_manifest, "manifest")
    if manifest["config"] != image.config_descriptor.to_json():
        raise _fail("the manifest's config descriptor does not match the config bytes")
    if manifest["layers"] != [d.to_json() for d in image.layer_descriptors()]:
        raise _fail("the manifest's layer descriptors do not match the layers")
    blobs: dict[Digest, Opener] = {layer.digest: layer.opener for layer in image.layers}

    def get(d: Digest) -> Opener:
        if d == image.digest:
            return _bytes_opener(image.raw_manifest)
        if d == image.config_digest:
            return _bytes_opener(image.raw_config)
        return blobs[d]

    return check_manifest(
        get, image.digest, len(image.raw_manifest), media_type=image.manifest_media_type
    )


def _bytes_opener(data: bytes) -> Opener:
    return lambda: io.BytesIO(data)


def _check_index(raw: bytes, where: str) -> list[dict[str, Any]]:
    index = _json(raw, where)
    if not isinstance(index, dict) or index.get("schemaVersion") != 2:
        raise _fail(f"{where}: schemaVersion must be 2")
    if index.get("mediaType", OCI_INDEX) != OCI_INDEX:
        raise _fail(f"{where}: mediaType must be {OCI_INDEX}")
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise _fail(f"{where}: manifests must be a list")
    return manifests


def _check_layout_marker(raw: bytes, where: str) -> None:
    marker = _json(raw, where)
    if not isinstance(marker, dict) or not str(marker.get("imageLayoutVersion", "")).startswith(
        "1."
    ):
        raise _fail(f"{where}: imageLayoutVersion must be 1.x")


def _check_entries(
    manifests: list[dict[str, Any]],
    get: Callable[[Digest], Opener],
    exists: Callable[[Digest], bool],
) -> tuple[CheckedManifest, ...]:
    out = []
    for i, obj in enumerate(manifests):
        media_type, digest, size = _descriptor(obj, f"index entry {i}")
        annotations = tuple(sorted((obj.get("annotations") or {}).items()))
        out.append(
            check_manifest(
                get, digest, size, media_type=media_type, annotations=annotations, exists=exists
            )
        )
    return tuple(out)


def validate_layout(path: Path) -> tuple[CheckedManifest, ...]:
    """Check an OCI image layout directory; returns each index entry, checked."""
    try:
        _check_layout_marker((path / "oci-layout").read_bytes(), f"{path}/oci-layout")
        raw_index = (path / "index.json").read_bytes()
    except OSError as err:
        raise _fail(f"{path} is not an OCI image layout: {err}") from err
    manifests = _check_index(raw_index, f"{path}/index.json")

    def blob(d: Digest) -> Path:
        return path / "blobs" / d.algorithm / d.hex

    def get(d: Digest) -> Opener:
        p = blob(d)
        if not p.is_file():
            raise _fail(f"blob {d} is missing from {path}/blobs")
        return lambda: open(p, "rb")

    return _check_entries(manifests, get, lambda d: blob(d).is_file())


@contextlib.contextmanager
def _open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    try:
        tar = tarfile.open(path, mode="r:")  # noqa: SIM115 - closed by the with below
    except (OSError, tarfile.TarError) as err:
        raise _fail(f"{path} is not a readable (uncompressed) tar archive: {err}") from err
    with tar:
        yield tar


def validate_tarball(path: Path) -> CheckedTarball:
    """Check a tarball from ``write_tarball`` as both docker-archive and OCI archive."""
    with _open_tar(path) as tar:
        listed = tar.getmembers()
        members = {m.name.rstrip("/"): m for m in listed}
        names = tuple(m.name.rstrip("/") for m in listed)
        if len(names) != len(members):
            raise _fail(f"{path} has duplicate members")

        def read(name: str) -> bytes:
            m = members.get(name)
            f = tar.extractfile(m) if m is not None else None
            if f is None:
                raise _fail(f"{path} has no file {name}")
            with f:
                return f.read(_MAX_JSON)

        def get(d: Digest) -> Opener:
            m = members.get(f"blobs/{d.algorithm}/{d.hex}")
            if m is None or not m.isfile():
                raise _fail(f"blob {d} is missing from {path}")

            def opener() -> BinaryIO:
                f = tar.extractfile(m)
                assert f is not None
                return cast(BinaryIO, f)

            return opener

        _check_layout_marker(read("oci-layout"), f"{path}!oci-layout")
        entries = _check_index(read("index.json"), f"{path}!index.json")
        checked = _check_entries(entries, get, lambda d: f"blobs/{d.algorithm}/{d.hex}" in members)
        if not checked:
            raise _fail(f"{path}!index.json lists no image")
        if len({c.digest for c in checked}) != 1:
            raise _fail(f"{path}!index.json names more than one image")
        image = checked[0]
        docker = _json(read("manifest.json"), f"{path}!manifest.json")
        if not isinstance(docker, list) or len(docker) != 1 or not isinstance(docker[0], dict):
            raise _fail(f"{path}!manifest.json must list exactly one image")
        entry = docker[0]
        loaded = next(
            (c for c in image.children or (image,) if entry.get("Config") == _config_path(c)),
            None,
        )
        if loaded is None:
            raise _fail(
                f"{path}!manifest.json Config is not the config of an image index.json names"
            )
        layer_paths = [
            f"blobs/sha256/{Digest.parse(d['digest']).hex}" for d in loaded.manifest["layers"]
        ]
        if entry.get("Layers") != layer_paths:
            raise _fail(f"{path}!manifest.json Layers differ from the OCI manifest's layers")
        repo_tags = tuple(entry.get("RepoTags") or ())
        containerd_names = tuple(dict(c.annotations).get(CONTAINERD_NAME, "") for c in checked)
        if {Reference.parse(t) for t in repo_tags} != {
            Reference.parse(n) for n in containerd_names if n
        }:
            raise _fail(
                f"{path}: manifest.json RepoTags {list(repo_tags)} and index.json names "
                f"{list(containerd_names)} disagree"
            )
        return CheckedTarball(image, repo_tags, containerd_names, names, loaded)


def _config_path(manifest: CheckedManifest) -> str:
    return f"blobs/sha256/{Digest.parse(manifest.manifest['config']['digest']).hex}"


__all__ = [
    "CheckedManifest",
    "CheckedTarball",
    "TarEntry",
    "check_layer",
    "check_manifest",
    "validate_image",
    "validate_layout",
    "validate_tarball",
]
