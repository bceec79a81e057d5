from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from scratchpack.errors import DigestMismatchError, ImageError
from scratchpack.oci import image as im
from scratchpack.oci.config import ConfigFile, ImageConfig
from scratchpack.oci.digest import Digest
from scratchpack.oci.layer import FileEntry, Layer, layer_from_bytes, layer_from_entries
from scratchpack.oci.layout import write_layout
from scratchpack.oci.mediatypes import OCI_LAYER_TAR
from scratchpack.oci.reference import Reference
from scratchpack.oci.tarball import write_tarball
from scratchpack.oci.validate import validate_image, validate_layout, validate_tarball


@pytest.fixture
def image(tmp_path):
    entries = [
        FileEntry("app", 0o555, data=b"\x7fELF" + b"x" * 5000),
        FileEntry("tmp", 0o1777, "dir"),
    ]
    layer = layer_from_entries(entries, mtime=0, workdir=tmp_path / "w")
    img = im.append_layers(im.empty(), layer)
    return im.with_config(img, ImageConfig(entrypoint=("/app",)))


def _blob(layer: Layer) -> bytes:
    with layer.opener() as f:
        return f.read()


def test_a_good_image_passes_and_reports_its_content(image):
    checked = validate_image(image)
    assert checked.digest == image.digest
    assert [(e.path, e.mode) for e in checked.layers[0]] == [("app", 0o555), ("tmp", 0o1777)]
    assert checked.config == json.loads(image.raw_config)


def test_uncompressed_layers_validate_too(image):
    plain = gzip.decompress(_blob(image.layers[0]))
    img = im.append_layers(im.empty(), layer_from_bytes(plain, media_type=OCI_LAYER_TAR))
    assert validate_image(img).layers[0][0].path == "app"


def test_a_changed_blob_is_a_digest_mismatch(image):
    layer = image.layers[0]
    data = bytearray(_blob(layer))
    data[100] ^= 0xFF
    bad = Layer(lambda: io.BytesIO(bytes(data)), layer.digest, layer.diff_id, layer.size)
    with pytest.raises(DigestMismatchError, match=str(layer.digest)):
        validate_image(im.Image((bad,), image.config_file))


def test_a_wrong_diff_id_is_a_digest_mismatch(image):
    layer = image.layers[0]
    wrong = Digest("sha256", "f" * 64)
    lying = Layer(layer.opener, layer.digest, wrong, layer.size)
    cf = ConfigFile("amd64", "linux", image.config_file.created, ImageConfig(), (wrong,))
    with pytest.raises(DigestMismatchError, match="diff_id"):
        validate_image(im.Image((lying,), cf))


def test_a_blob_that_is_not_gzip_is_reported(image):
    junk = b"not a gzip stream at all"
    layer = Layer(lambda: io.BytesIO(junk), Digest.of_bytes(junk), Digest.of_bytes(junk), len(junk))
    with pytest.raises(ImageError, match="not a valid"):
        validate_image(im.append_layers(im.empty(), layer))


def _rewrite(src: Path, dst: Path, replace: dict[str, bytes]) -> None:
    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tout:
        for m in tin.getmembers():
            f = tin.extractfile(m)
            data = f.read() if f else b""
            if m.name in replace:
                data = replace[m.name]
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data) if m.isfile() else None)


def _read(path: Path, name: str) -> bytes:
    with tarfile.open(path) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


def test_tarball_parts_must_agree(image, tmp_path):
    good = tmp_path / "good.tar"
    write_tarball(image, good, tags=[Reference.parse("app:1")])
    assert validate_tarball(good).image.digest == image.digest

    manifest = json.loads(_read(good, "manifest.json"))
    manifest[0]["RepoTags"] = ["other:2"]
    renamed = tmp_path / "renamed.tar"
    _rewrite(good, renamed, {"manifest.json": json.dumps(manifest).encode()})
    with pytest.raises(ImageError, match="disagree"):
        validate_tarball(renamed)

    manifest = json.loads(_read(good, "manifest.json"))
    manifest[0]["Layers"] = []
    no_layers = tmp_path / "nolayers.tar"
    _rewrite(good, no_layers, {"manifest.json": json.dumps(manifest).encode()})
    with pytest.raises(ImageError, match="Layers differ"):
        validate_tarball(no_layers)

    layer_name = f"blobs/sha256/{image.layers[0].digest.hex}"
    damaged = tmp_path / "damaged.tar"
    blob = bytearray(_read(good, layer_name))
    blob[-20] ^= 1
    _rewrite(good, damaged, {layer_name: bytes(blob)})
    with pytest.raises(DigestMismatchError):
        validate_tarball(damaged)

    no_marker = tmp_path / "nomarker.tar"
    _rewrite(good, no_marker, {"oci-layout": b'{"imageLayoutVersion":"9"}'})
    with pytest.raises(ImageError, match="imageLayoutVersion"):
        validate_tarball(no_marker)

    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\0garbage" * 10)
    with pytest.raises(ImageError, match="tar archive"):
        validate_tarball(garbage)


def test_layout_index_must_point_at_manifests(image, tmp_path):
    out = tmp_path / "layout"
    write_layout(image, out)
    index = json.loads((out / "index.json").read_bytes())
    index["manifests"][0]["size"] += 1
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(DigestMismatchError):
        validate_layout(out)
    index["manifests"][0]["size"] -= 1
    index["manifests"][0]["mediaType"] = "application/vnd.oci.image.index.v1+json"
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(ImageError, match="mediaType"):
        validate_layout(out)
    with pytest.raises(ImageError, match="not an OCI image layout"):
        validate_layout(tmp_path / "nothing")
