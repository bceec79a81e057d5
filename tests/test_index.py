"""The ImageIndex value and what each sink makes of it (fast tier: in-process, no tools).

Per-platform images are built from different bytes (one "executable" per platform), so an
index that mixed them up, or a sink that wrote one platform's blobs for the other, fails here.
The real tools read the same outputs in test_multiplatform_e2e.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import tarfile
from pathlib import Path

import pytest

from scratchpack.errors import DigestMismatchError, ImageError
from scratchpack.oci import image as im
from scratchpack.oci.artifact import make_artifact
from scratchpack.oci.config import ImageConfig
from scratchpack.oci.descriptor import Platform
from scratchpack.oci.digest import Digest
from scratchpack.oci.index import ImageIndex, index_of, with_index_annotations
from scratchpack.oci.layer import FileEntry, layer_from_entries
from scratchpack.oci.layout import write_layout
from scratchpack.oci.mediatypes import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, SPDX_JSON
from scratchpack.oci.reference import Reference
from scratchpack.oci.registry import PushOptions, push_index
from scratchpack.oci.tarball import write_tarball
from scratchpack.oci.validate import validate_layout, validate_tarball
from tests.fake_registry import REGISTRY, FakeRegistry
from testsupport.registry_server import StaticKeychain

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")


def platform_image(platform: Platform, workdir: Path) -> im.Image:
    """A one-layer image whose /app differs per platform, as two real builds' would."""
    app = f"executable for {platform}\n".encode()
    layer = layer_from_entries([FileEntry("app", 0o755, data=app)], mtime=0, workdir=workdir)
    image = im.append_layers(im.empty(platform), layer)
    image = im.with_config(image, ImageConfig(user="1000:1000", entrypoint=("/app",)))
    return im.with_annotations(image, {"org.opencontainers.image.title": "demo"})


@pytest.fixture
def images(tmp_path: Path) -> tuple[im.Image, im.Image]:
    return platform_image(AMD64, tmp_path), platform_image(ARM64, tmp_path)


@pytest.fixture
def index(images: tuple[im.Image, im.Image]) -> ImageIndex:
    return index_of(*images)


# --- the value -----------------------------------------------------------------------------------


def test_index_lists_each_manifest_with_its_platform(index, images):
    doc = json.loads(index.raw_manifest)
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == OCI_INDEX
    assert doc["manifests"] == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": str(image.digest),
            "size": len(image.raw_manifest),
            "platform": {"architecture": arch, "os": "linux"},
        }
        for image, arch in zip(images, ("amd64", "arm64"), strict=True)
    ]
    assert index.digest == Digest.of_bytes(index.raw_manifest)
    assert index.platforms == (AMD64, ARM64)
    assert index.image_for(ARM64) is images[1]
    assert index.image_for(Platform("linux", "riscv64")) is None
    desc = index.descriptor(annotations={"org.opencontainers.image.ref.name": "1.0"})
    assert (desc.media_type, desc.digest, desc.size) == (
        OCI_INDEX,
        index.digest,
        len(index.raw_manifest),
    )


def test_index_bytes_are_a_pure_function_of_the_images(images, tmp_path):
    again = index_of(platform_image(AMD64, tmp_path), platform_image(ARM64, tmp_path))
    assert again.raw_manifest == index_of(*images).raw_manifest
    swapped = index_of(images[1], images[0])
    assert swapped.digest != index_of(*images).digest  # order is part of the value


def test_index_annotations_are_a_new_value(index):
    annotated = with_index_annotations(index, {"org.opencontainers.image.version": "1.0"})
    assert index.annotations == () and "annotations" not in json.loads(index.raw_manifest)
    assert json.loads(annotated.raw_manifest)["annotations"] == {
        "org.opencontainers.image.version": "1.0"
    }
    assert annotated.digest != index.digest


def test_index_refuses_what_it_cannot_describe(images):
    with pytest.raises(ImageError, match="at least one image"):
        ImageIndex(())
    with pytest.raises(ImageError, match="two images for platform linux/amd64"):
        index_of(images[0], images[0])
    docker = im.with_media_type(dataclasses.replace(images[1], annotations=()), DOCKER_MANIFEST)
    with pytest.raises(ImageError, match="OCI manifests"):
        index_of(images[0], docker)
    with pytest.raises(ImageError, match="tuples"):
        ImageIndex(list(images))  # type: ignore[arg-type]


def test_platform_parses_and_prints_as_docker_spells_it():
    assert str(Platform.parse("linux/arm64")) == "linux/arm64"
    assert Platform.parse("linux/arm/v7") == Platform("linux", "arm", "v7")
    for bad in ("linux", "linux/", "a/b/c/d"):
        with pytest.raises(ValueError, match="OS/ARCH"):
            Platform.parse(bad)


# --- the tarball ----------------------------------------------------------------------------------


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: (f.read() if (f := tar.extractfile(m)) else b"") for m in tar.getmembers()}


@pytest.mark.parametrize("host", [AMD64, ARM64])
def test_tarball_carries_the_index_and_docker_loads_the_hosts_image(index, images, tmp_path, host):
    out = tmp_path / "multi.tar"
    published = write_tarball(index, out, tags=[Reference.parse("demo:1.0")], docker_platform=host)
    assert published.digest == index.digest
    checked = validate_tarball(out)
    assert checked.image.media_type == OCI_INDEX and checked.image.digest == index.digest
    assert [c.platform for c in checked.image.children] == [AMD64, ARM64]
    assert [c.digest for c in checked.image.children] == [i.digest for i in images]
    assert checked.docker_image is not None and checked.docker_image.platform == host
    assert checked.repo_tags == ("docker.io/library/demo:1.0",)
    members = _members(out)
    for image in images:  # both images' blobs, and the index itself
        for digest in (image.digest, image.config_digest, image.layers[0].digest):
            assert f"blobs/sha256/{digest.hex}" in members
    assert members[f"blobs/sha256/{index.digest.hex}"] == index.raw_manifest
    top = json.loads(members["index.json"])["manifests"]
    assert [(e["mediaType"], e["digest"]) for e in top] == [(OCI_INDEX, str(index.digest))]
    docker = json.loads(members["manifest.json"])
    assert docker[0]["Config"] == f"blobs/sha256/{index.image_for(host).config_digest.hex}"


def test_tarball_without_a_docker_platform_lists_the_first_image(index, tmp_path):
    write_tarball(index, tmp_path / "t.tar", tags=[Reference.parse("demo:1.0")])
    assert validate_tarball(tmp_path / "t.tar").docker_image.platform == AMD64
    riscv = Platform("linux", "riscv64")  # a host the index has no image for
    write_tarball(
        index, tmp_path / "r.tar", tags=[Reference.parse("demo:1.0")], docker_platform=riscv
    )
    assert validate_tarball(tmp_path / "r.tar").docker_image.platform == AMD64


def test_multi_platform_tarball_is_byte_reproducible(tmp_path):
    def build(n: int) -> bytes:
        work = tmp_path / f"w{n}"
        work.mkdir()
        idx = index_of(platform_image(AMD64, work), platform_image(ARM64, work))
        out = tmp_path / f"{n}.tar"
        write_tarball(idx, out, tags=[Reference.parse("demo:1.0")], docker_platform=AMD64)
        return out.read_bytes()

    assert build(1) == build(2)


def test_validate_tarball_catches_an_index_that_lies_about_a_platform(index, images, tmp_path):
    out = tmp_path / "bad.tar"
    write_tarball(index, out, tags=[Reference.parse("demo:1.0")])
    doc = json.loads(index.raw_manifest)
    doc["manifests"][1]["platform"]["architecture"] = "s390x"
    bad_index = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    bad_digest = Digest.of_bytes(bad_index)
    members = _members(out)
    members[f"blobs/sha256/{bad_digest.hex}"] = bad_index
    members["index.json"] = (
        members["index.json"]
        .replace(str(index.digest).encode(), str(bad_digest).encode())
        .replace(b'"size":%d' % len(index.raw_manifest), b'"size":%d' % len(bad_index))
    )
    rewritten = tmp_path / "rewritten.tar"
    with tarfile.open(rewritten, "w") as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ImageError, match="says linux/s390x, its image's config linux/arm64"):
        validate_tarball(rewritten)


# --- the layout -----------------------------------------------------------------------------------


def _sboms(images: tuple[im.Image, ...]) -> list:
    return [
        make_artifact(
            image.manifest_descriptor(),
            f'{{"spdxVersion":"SPDX-2.3","name":"{image.platform}"}}'.encode(),
            artifact_type=SPDX_JSON,
        )
        for image in images
    ]


def test_layout_index_json_names_the_index_and_holds_both_images(index, images, tmp_path):
    layout = tmp_path / "layout"
    sboms = _sboms(images)
    published = write_layout(index, layout, ref_name="1.0", artifacts=sboms)
    assert published.digest == index.digest
    entries = validate_layout(layout)
    top, *artifacts = entries
    assert (top.media_type, top.digest, top.ref_name) == (OCI_INDEX, index.digest, "1.0")
    assert [(c.platform, c.digest) for c in top.children] == [
        (AMD64, images[0].digest),
        (ARM64, images[1].digest),
    ]
    # one SBOM per platform, each a referrer of its own image
    assert [a.manifest["subject"]["digest"] for a in artifacts] == [str(i.digest) for i in images]
    assert (layout / "blobs" / "sha256" / index.digest.hex).read_bytes() == index.raw_manifest


def test_layout_of_a_single_image_is_unchanged_by_the_index_code(images, tmp_path):
    """One platform: index.json points straight at the image manifest, as before."""
    write_layout(images[0], tmp_path / "l", ref_name="1.0")
    doc = json.loads((tmp_path / "l" / "index.json").read_bytes())
    assert [(e["mediaType"], e["digest"]) for e in doc["manifests"]] == [
        (OCI_MANIFEST, str(images[0].digest))
    ]


def test_layout_rewrite_replaces_the_named_index(index, images, tmp_path):
    layout = tmp_path / "layout"
    write_layout(images[0], layout, ref_name="1.0")
    write_layout(index, layout, ref_name="1.0")
    doc = json.loads((layout / "index.json").read_bytes())
    assert [(e["mediaType"], e["digest"]) for e in doc["manifests"]] == [
        (OCI_INDEX, str(index.digest))
    ]


# --- the registry ---------------------------------------------------------------------------------

REF = Reference.parse(f"{REGISTRY}/team/app:v1")
FAST = PushOptions(retries=3, backoff=0.01)


def _push_index(fake: FakeRegistry, index: ImageIndex, ref: Reference = REF):
    return push_index(
        index, ref, keychain=StaticKeychain(), options=FAST, transport=fake, sleep=lambda _s: None
    )


def test_push_index_uploads_both_images_by_digest_then_puts_the_index(index, images):
    fake = FakeRegistry()
    published = _push_index(fake, index)
    manifest_puts = [
        c.removeprefix("PUT /v2/team/app/manifests/")
        for c in fake.registry_calls()
        if "/manifests/" in c
    ]
    assert manifest_puts == [str(images[0].digest), str(images[1].digest), "v1"]
    assert fake.manifests["v1"] == index.raw_manifest
    index_put = next(c for c in fake.calls if c.path.endswith("/manifests/v1"))
    assert index_put.headers["Content-Type"] == OCI_INDEX
    for image in images:
        assert fake.manifests[str(image.digest)] == image.raw_manifest
        assert str(image.layers[0].digest) in fake.blobs
        assert str(image.config_digest) in fake.blobs
    # every image blob is in before its manifest, every manifest before the index
    calls = fake.registry_calls()
    last_blob = max(i for i, c in enumerate(calls) if "/blobs/uploads/u" in c)
    assert last_blob < calls.index(f"PUT /v2/team/app/manifests/{images[1].digest}")
    assert published.digest == index.digest
    assert published.location == f"{REGISTRY}/team/app@{index.digest}"
    assert dict(published.extra)["blobs_uploaded"] == "4"


def test_push_index_by_digest_and_refusing_a_wrong_pin(index, images):
    fake = FakeRegistry()
    by_digest = Reference.parse(f"{REGISTRY}/team/app@{index.digest}")
    assert _push_index(fake, index, by_digest).digest == index.digest
    assert fake.manifests[str(index.digest)] == index.raw_manifest
    wrong = Reference.parse(f"{REGISTRY}/team/app@{images[0].digest}")
    with pytest.raises(ImageError, match="pins digest"):
        _push_index(FakeRegistry(), index, wrong)


def test_push_index_checks_its_bytes_before_sending(index):
    broken = dataclasses.replace(index)
    broken.__dict__["digest"] = index.digest  # the cached values, out of step
    broken.__dict__["raw_manifest"] = index.raw_manifest + b" "
    fake = FakeRegistry()
    with pytest.raises(DigestMismatchError, match="index's bytes"):
        _push_index(fake, broken)
    assert not [c for c in fake.registry_calls() if re.search(r"PUT|POST", c)]
