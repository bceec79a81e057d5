from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from scratchpack.errors import DigestMismatchError, ImageError, SinkError
from scratchpack.oci import image as im
from scratchpack.oci.artifact import make_artifact
from scratchpack.oci.config import ImageConfig
from scratchpack.oci.layer import FileEntry, Layer, layer_from_entries
from scratchpack.oci.layout import write_layout
from scratchpack.oci.mediatypes import OCI_INDEX, OCI_MANIFEST, SPDX_JSON
from scratchpack.oci.validate import validate_layout
from testsupport.engines import build_static_server, scratch_image

REF = "org.opencontainers.image.ref.name"


@pytest.fixture(scope="module")
def exe(tmp_path_factory) -> Path:
    return build_static_server(tmp_path_factory.mktemp("exe"))


@pytest.fixture
def image(exe, tmp_path):
    return scratch_image(exe, tmp_path / "layers", cmd=("8080",))


def _index(layout: Path) -> list[dict]:
    doc = json.loads((layout / "index.json").read_bytes())
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == OCI_INDEX
    return doc["manifests"]


def _blob_names(layout: Path) -> set[str]:
    return {p.name for p in (layout / "blobs" / "sha256").iterdir()}


def test_layout_round_trip(image, tmp_path):
    out = tmp_path / "new" / "layout"
    published = write_layout(image, out, ref_name="1.0")
    assert (published.kind, published.location, published.digest) == (
        "oci-layout",
        str(out),
        image.digest,
    )
    assert json.loads((out / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    assert _index(out) == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": str(image.digest),
            "size": len(image.raw_manifest),
            "annotations": {REF: "1.0"},
        }
    ]
    blobs = out / "blobs" / "sha256"
    assert (blobs / image.digest.hex).read_bytes() == image.raw_manifest
    assert (blobs / image.config_digest.hex).read_bytes() == image.raw_config
    assert _blob_names(out) == {
        image.digest.hex,
        image.config_digest.hex,
        image.layers[0].digest.hex,
    }
    [checked] = validate_layout(out)
    assert (checked.digest, checked.ref_name) == (image.digest, "1.0")
    assert checked.config is not None and checked.config["config"]["User"] == "1000:1000"
    modes = {(e.path, e.kind, e.mode, e.uid, e.gid) for e in checked.layers[0]}
    assert modes == {
        ("app", "file", 0o555, 0, 0),
        ("etc", "dir", 0o755, 0, 0),
        ("etc/group", "file", 0o644, 0, 0),
        ("etc/passwd", "file", 0o644, 0, 0),
        ("tmp", "dir", 0o1777, 0, 0),
    }
    assert not list(out.rglob("*.tmp"))


def test_rewriting_skips_good_blobs_and_repairs_bad_ones(image, tmp_path):
    out = tmp_path / "layout"
    write_layout(image, out, ref_name="latest")
    layer_blob = out / "blobs" / "sha256" / image.layers[0].digest.hex
    config_blob = out / "blobs" / "sha256" / image.config_digest.hex
    before = layer_blob.stat().st_ino
    config_blob.write_bytes(b"x" * len(image.raw_config))  # same size, wrong content
    write_layout(image, out, ref_name="latest")
    assert layer_blob.stat().st_ino == before  # intact blob skipped, not rewritten
    assert config_blob.read_bytes() == image.raw_config  # damaged blob replaced
    assert len(_index(out)) == 1
    validate_layout(out)


def test_other_images_are_kept_and_the_same_ref_name_is_replaced_in_place(image, tmp_path, exe):
    out = tmp_path / "layout"
    write_layout(image, out, ref_name="a")
    second = im.with_config(image, ImageConfig(user="2000"))
    write_layout(second, out, ref_name="b")
    third = im.with_config(image, ImageConfig(user="3000"))
    write_layout(third, out, ref_name="a")
    write_layout(third, out)  # unnamed entry
    write_layout(third, out)  # idempotent: still one unnamed entry for this digest
    entries = _index(out)
    assert [(e["digest"], (e.get("annotations") or {}).get(REF)) for e in entries] == [
        (str(third.digest), "a"),
        (str(second.digest), "b"),
        (str(third.digest), None),
    ]
    checked = validate_layout(out)
    assert [c.ref_name for c in checked] == ["a", "b", ""]


def test_sbom_artifact_refers_to_the_image(image, tmp_path):
    out = tmp_path / "layout"
    sbom = b'{"spdxVersion":"SPDX-2.3"}'
    artifact = make_artifact(image.manifest_descriptor(), sbom, artifact_type=SPDX_JSON)
    write_layout(image, out, ref_name="latest", artifacts=[artifact])
    entries = _index(out)
    assert [e["digest"] for e in entries] == [str(image.digest), str(artifact.digest)]
    assert entries[1]["artifactType"] == SPDX_JSON
    checked = validate_layout(out)
    art = checked[1]
    assert art.config is None and art.artifact_type == SPDX_JSON
    assert art.manifest["subject"]["digest"] == str(image.digest)
    # Writing the same image and artifact again does not duplicate either.
    write_layout(image, out, ref_name="latest", artifacts=[artifact])
    assert len(_index(out)) == 2
    other = make_artifact(image.manifest_descriptor(), b"{}", artifact_type="application/x-test")
    write_layout(image, out, ref_name="latest", artifacts=[other])
    assert len(validate_layout(out)) == 3


def test_an_artifact_whose_subject_is_missing_is_reported(image, tmp_path):
    out = tmp_path / "layout"
    stranger = im.with_config(image, ImageConfig(user="9"))
    artifact = make_artifact(stranger.manifest_descriptor(), b"{}", artifact_type=SPDX_JSON)
    write_layout(image, out, artifacts=[artifact])
    with pytest.raises(ImageError, match="subject"):
        validate_layout(out)


def test_refuses_non_layout_directories_and_bad_ref_names(image, tmp_path):
    (tmp_path / "stuff.txt").write_text("mine")
    with pytest.raises(SinkError, match="not empty and is not an OCI image layout"):
        write_layout(image, tmp_path)
    with pytest.raises(ImageError, match="ref name"):
        write_layout(image, tmp_path / "l", ref_name="bad name")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (broken / "index.json").write_text("{not json")
    with pytest.raises(SinkError, match="cannot read the existing"):
        write_layout(image, broken)
    future = tmp_path / "future"
    future.mkdir()
    (future / "oci-layout").write_text('{"imageLayoutVersion":"2.0.0"}')
    with pytest.raises(SinkError, match="unsupported image layout version"):
        write_layout(image, future)


def test_a_corrupt_layer_leaves_no_blob_and_no_index_entry(image, tmp_path):
    import io

    layer = image.layers[0]
    bad_layer = Layer(
        lambda: io.BytesIO(b"\0" * layer.size), layer.digest, layer.diff_id, layer.size
    )
    bad = im.Image((bad_layer,), image.config_file)
    out = tmp_path / "layout"
    with pytest.raises(DigestMismatchError):
        write_layout(bad, out, ref_name="x")
    assert not (out / "index.json").exists()
    assert list((out / "blobs" / "sha256").iterdir()) == []


def test_unwritable_destination(image, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SinkError, match="cannot create layout directory") as info:
        write_layout(image, blocker / "layout")
    assert info.value.hint


def test_validate_layout_catches_a_tampered_layer(image, tmp_path):
    out = tmp_path / "layout"
    write_layout(image, out)
    blob = out / "blobs" / "sha256" / image.layers[0].digest.hex
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError):
        validate_layout(out)
    blob.unlink()
    with pytest.raises(ImageError, match="missing"):
        validate_layout(out)


def test_layers_shared_between_images_are_stored_once(tmp_path):
    shared = layer_from_entries([FileEntry("a", 0o644, data=b"a")], mtime=0, workdir=tmp_path)
    one = im.append_layers(im.empty(), shared)
    two = im.with_config(one, ImageConfig(cmd=("x",)))
    out = tmp_path / "layout"
    write_layout(one, out, ref_name="one")
    write_layout(two, out, ref_name="two")
    assert len(_blob_names(out)) == 5  # 1 layer + 2 configs + 2 manifests


def test_concurrent_writers_to_one_layout_keep_every_entry(image, tmp_path):
    """The flock serialises index.json updates: no writer's entry is lost."""
    out = tmp_path / "layout"
    variants = [im.with_config(image, ImageConfig(user=str(1000 + i))) for i in range(6)]
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            write_layout(variants[i], out, ref_name=f"v{i}")
        except BaseException as err:  # surfaced by the assert below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(variants))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    checked = validate_layout(out)
    assert sorted(c.ref_name for c in checked) == [f"v{i}" for i in range(6)]
    assert {c.digest for c in checked} == {v.digest for v in variants}


@pytest.mark.e2e
def test_umoci_unpacks_exactly_the_scratch_rootfs(image, tmp_path):
    out = tmp_path / "layout"
    write_layout(image, out, ref_name="latest")
    bundle = tmp_path / "bundle"
    proc = subprocess.run(
        ["umoci", "unpack", "--image", f"{out}:latest", str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rootfs = bundle / "rootfs"
    found = {}
    for path in sorted(rootfs.rglob("*")):
        st = path.lstat()
        found["/" + str(path.relative_to(rootfs))] = (
            oct(st.st_mode & 0o7777),
            st.st_uid,
            st.st_gid,
        )
    assert found == {
        "/app": ("0o555", 0, 0),
        "/etc": ("0o755", 0, 0),
        "/etc/group": ("0o644", 0, 0),
        "/etc/passwd": ("0o644", 0, 0),
        "/tmp": ("0o1777", 0, 0),
    }
    assert "appuser:x:1000:1000::/home/appuser:/sbin/nologin" in (rootfs / "etc/passwd").read_text()
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["/app", "8080"]
    assert (config["process"]["user"]["uid"], config["process"]["user"]["gid"]) == (1000, 1000)


@pytest.mark.e2e
def test_skopeo_reads_the_layout_by_ref_name(image, tmp_path):
    out = tmp_path / "layout"
    write_layout(image, out, ref_name="latest")
    proc = subprocess.run(
        ["skopeo", "inspect", f"oci:{out}:latest"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["Digest"] == str(image.digest)
