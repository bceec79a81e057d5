from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scratchpack.errors import ImageError
from scratchpack.oci import image as im
from scratchpack.oci.config import ImageConfig
from scratchpack.oci.descriptor import Platform
from scratchpack.oci.digest import Digest
from scratchpack.oci.layer import FileEntry, layer_from_bytes, layer_from_entries
from scratchpack.oci.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
)

SRC = Path(__file__).resolve().parents[1] / "src"

# Build script shared by the in-process and the subprocess build: same inputs, same digest.
BUILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from scratchpack.oci import image as im
    from scratchpack.oci.config import ImageConfig
    from scratchpack.oci.layer import FileEntry, layer_from_entries

    def build(exe: Path) -> im.Image:
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
        layer = layer_from_entries(
            [FileEntry("app", 0o555, source=exe), FileEntry("tmp", 0o1777, "dir"),
             FileEntry("etc/passwd", 0o644, data=b"app:x:1000:1000::/:/sbin/nologin\\n")],
            mtime=epoch,
        )
        img = im.append_layers(im.empty(), layer)
        img = im.with_config(img, ImageConfig(user="1000:1000", entrypoint=("/app",)))
        img = im.with_annotations(img, {"org.opencontainers.image.title": "t"})
        return im.with_created(img, epoch)

    if __name__ == "__main__":
        print(build(Path(sys.argv[1])).digest)
    """
)


def _build(exe: Path) -> im.Image:
    namespace: dict[str, object] = {"__name__": "build"}
    exec(BUILD, namespace)
    return namespace["build"](exe)  # type: ignore[operator]


@pytest.fixture
def layer(tmp_path):
    return layer_from_entries([FileEntry("a", 0o644, data=b"a")], mtime=0, workdir=tmp_path)


def test_empty_image_is_a_valid_scratch_manifest():
    img = im.empty()
    assert img.layers == ()
    assert img.platform == Platform("linux", "amd64")
    manifest = json.loads(img.raw_manifest)
    assert manifest == {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": str(Digest.of_bytes(img.raw_config)),
            "size": len(img.raw_config),
        },
        "layers": [],
    }
    assert img.digest == Digest.of_bytes(img.raw_manifest)
    assert json.loads(img.raw_config)["created"] == "1970-01-01T00:00:00Z"
    arm = im.empty(Platform("linux", "arm64", "v8"))
    assert json.loads(arm.raw_config)["variant"] == "v8"
    assert arm.platform == Platform("linux", "arm64", "v8")


def test_bytes_are_serialised_once(layer):
    img = im.append_layers(im.empty(), layer)
    assert img.raw_manifest is img.raw_manifest
    assert img.raw_config is img.raw_config
    assert img.digest is img.digest


def test_append_layers_keeps_diff_ids_and_history_in_step(layer, tmp_path):
    other = layer_from_entries([FileEntry("b", 0o644, data=b"b")], mtime=0, workdir=tmp_path)
    base = im.with_created(im.empty(), 1_700_000_000)
    one = im.append_layers(base, layer)
    two = im.append_layers(one, other, created_by="test step")
    assert base.layers == () and one.layers == (layer,)  # the inputs did not change
    assert two.layers == (layer, other)
    assert two.config_file.diff_ids == (layer.diff_id, other.diff_id)
    cfg = json.loads(two.raw_config)
    assert cfg["rootfs"]["diff_ids"] == [str(layer.diff_id), str(other.diff_id)]
    assert [h["created_by"] for h in cfg["history"]] == ["scratchpack", "test step"]
    assert {h["created"] for h in cfg["history"]} == {"2023-11-14T22:13:20Z"}
    manifest = json.loads(two.raw_manifest)
    assert [entry["digest"] for entry in manifest["layers"]] == [
        str(layer.digest),
        str(other.digest),
    ]
    assert {entry["mediaType"] for entry in manifest["layers"]} == {OCI_LAYER_GZIP}


def test_with_created_rewrites_config_and_history(layer):
    img = im.append_layers(im.empty(), layer)
    later = im.with_created(img, "2024-01-31T12:00:00+00:00")
    cfg = json.loads(later.raw_config)
    assert cfg["created"] == "2024-01-31T12:00:00Z"
    assert cfg["history"][0]["created"] == "2024-01-31T12:00:00Z"
    assert later.digest != img.digest


def test_with_config_and_annotations(layer):
    img = im.append_layers(im.empty(), layer)
    cfg = ImageConfig(user="1000", cmd=("x",))
    configured = im.with_config(img, cfg)
    assert configured.config_file.config == cfg
    assert json.loads(configured.raw_config)["config"] == {"User": "1000", "Cmd": ["x"]}
    annotated = im.with_annotations(configured, {"b": "2", "a": "1"})
    annotated = im.with_annotations(annotated, [("b", "3")])
    assert annotated.annotations == (("a", "1"), ("b", "3"))
    assert json.loads(annotated.raw_manifest)["annotations"] == {"a": "1", "b": "3"}
    with pytest.raises(ImageError):
        im.with_annotations(img, {"": "x"})


def test_images_are_immutable(layer):
    img = im.append_layers(im.empty(), layer)
    with pytest.raises(dataclasses.FrozenInstanceError):
        img.layers = ()  # type: ignore[misc]
    with pytest.raises(ImageError, match="tuples"):
        im.Image([layer], img.config_file)  # type: ignore[arg-type]


def test_layers_and_diff_ids_cannot_drift_apart(layer):
    img = im.append_layers(im.empty(), layer)
    with pytest.raises(ImageError, match="diff_ids"):
        dataclasses.replace(img, layers=())
    with pytest.raises(ImageError, match="media type"):
        im.with_media_type(img, "application/json")


def test_docker_media_types_for_old_registries(layer):
    img = im.with_media_type(im.append_layers(im.empty(), layer), DOCKER_MANIFEST)
    manifest = json.loads(img.raw_manifest)
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert manifest["layers"][0]["mediaType"] == DOCKER_LAYER_GZIP
    assert img.config_digest == im.append_layers(im.empty(), layer).config_digest
    with pytest.raises(ImageError, match="annotations"):
        im.with_annotations(img, {"a": "b"})


def test_manifest_descriptor(layer):
    img = im.append_layers(im.empty(), layer)
    desc = img.manifest_descriptor(annotations={"k": "v"}, platform=True)
    assert desc.to_json() == {
        "mediaType": OCI_MANIFEST,
        "digest": str(img.digest),
        "size": len(img.raw_manifest),
        "annotations": {"k": "v"},
        "platform": {"architecture": "amd64", "os": "linux"},
    }
    assert img.config_descriptor.digest == img.config_digest


def test_same_inputs_give_the_same_digest_in_another_process_dir_umask_and_zone(tmp_path):
    exe = tmp_path / "one" / "app"
    exe.parent.mkdir()
    exe.write_bytes(os.urandom(100_000))
    os.environ.pop("SOURCE_DATE_EPOCH", None)
    here = _build(exe)
    again = _build(exe)
    assert again.digest == here.digest

    other = tmp_path / "two" / "nested" / "exe-copy"
    other.parent.mkdir(parents=True)
    other.write_bytes(exe.read_bytes())
    os.chmod(other, 0o700)
    os.utime(other, (1, 1))
    script = tmp_path / "build.py"
    script.write_text(BUILD)
    env = {**os.environ, "PYTHONPATH": str(SRC), "TZ": "Asia/Kathmandu", "LC_ALL": "C"}
    out = subprocess.run(
        ["sh", "-c", 'umask 077 && exec "$0" "$@"', sys.executable, str(script), str(other)],
        cwd=other.parent,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(here.digest)

    env["SOURCE_DATE_EPOCH"] = "1700000000"
    pinned = subprocess.run(
        [sys.executable, str(script), str(exe)], env=env, capture_output=True, text=True, check=True
    )
    assert pinned.stdout.strip() != str(here.digest)


def test_in_memory_layers_work_too():
    blob = layer_from_entries([FileEntry("x", 0o644, data=b"x")], mtime=0)
    with blob.opener() as f:
        data = f.read()
    img = im.append_layers(im.empty(), layer_from_bytes(data))
    assert img.layers[0].digest == blob.digest
