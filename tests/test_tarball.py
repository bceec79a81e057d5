from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import textwrap
from pathlib import Path

import pytest

from scratchpack.errors import DigestMismatchError, ImageError, SinkError
from scratchpack.oci import image as im
from scratchpack.oci.layer import FileEntry, Layer, layer_from_entries
from scratchpack.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from scratchpack.oci.reference import Reference
from scratchpack.oci.tarball import write_tarball
from scratchpack.oci.validate import validate_tarball
from testsupport.engines import build_static_server, scratch_image

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def exe(tmp_path_factory) -> Path:
    return build_static_server(tmp_path_factory.mktemp("exe"))


@pytest.fixture
def image(exe, tmp_path):
    return scratch_image(exe, tmp_path / "layers", cmd=("8080",))


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        out = {}
        for m in tar.getmembers():
            f = tar.extractfile(m)
            out[m.name] = f.read() if f else b""
        return out


def _refs(*names: str) -> list[Reference]:
    return [Reference.parse(n) for n in names]


def test_tarball_is_a_docker_archive_and_an_oci_layout(image, tmp_path):
    out = tmp_path / "image.tar"
    published = write_tarball(image, out, tags=_refs("webhello:1.0"))
    assert (published.kind, published.location, published.digest) == (
        "tarball",
        str(out),
        image.digest,
    )
    layer = image.layers[0]
    with tarfile.open(out) as tar:
        infos = tar.getmembers()
    assert [m.name for m in infos] == [
        "blobs",
        "blobs/sha256",
        *sorted(f"blobs/sha256/{d.hex}" for d in (image.digest, image.config_digest, layer.digest)),
        "index.json",
        "manifest.json",
        "oci-layout",
    ]
    assert {(m.uid, m.gid, m.mtime, m.uname) for m in infos} == {(0, 0, 0, "")}
    files = _members(out)
    assert files[f"blobs/sha256/{image.digest.hex}"] == image.raw_manifest
    assert files[f"blobs/sha256/{image.config_digest.hex}"] == image.raw_config
    with layer.opener() as f:
        assert files[f"blobs/sha256/{layer.digest.hex}"] == f.read()
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    assert json.loads(files["manifest.json"]) == [
        {
            "Config": f"blobs/sha256/{image.config_digest.hex}",
            "RepoTags": ["docker.io/library/webhello:1.0"],
            "Layers": [f"blobs/sha256/{layer.digest.hex}"],
        }
    ]
    assert json.loads(files["index.json"]) == {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": str(image.digest),
                "size": len(image.raw_manifest),
                "annotations": {
                    "io.containerd.image.name": "docker.io/library/webhello:1.0",
                    "org.opencontainers.image.ref.name": "1.0",
                },
            }
        ],
    }
    checked = validate_tarball(out)
    assert checked.image.digest == image.digest
    assert checked.repo_tags == ("docker.io/library/webhello:1.0",)
    assert checked.names == ("docker.io/library/webhello:1.0",)
    assert [e.path for e in checked.image.layers[0]] == [
        "app",
        "etc",
        "etc/group",
        "etc/passwd",
        "tmp",
    ]


def test_same_image_and_tags_give_the_same_bytes_anywhere(exe, tmp_path):
    a_img = scratch_image(exe, tmp_path / "la")
    b_img = scratch_image(exe, tmp_path / "lb")
    tags = _refs("localhost:5000/team/app:v1", "app:latest")
    a = tmp_path / "a" / "x.tar"
    b = tmp_path / "b" / "other-name.tar"
    a.parent.mkdir()
    b.parent.mkdir()
    write_tarball(a_img, a, tags=tags)
    old = os.umask(0o077)
    try:
        write_tarball(b_img, b, tags=tags)
    finally:
        os.umask(old)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    assert oct(a.stat().st_mode & 0o777) != oct(b.stat().st_mode & 0o777)  # umask applies
    checked = validate_tarball(a)
    assert checked.repo_tags == ("localhost:5000/team/app:v1", "docker.io/library/app:latest")
    assert len(checked.names) == 2  # one index entry per tag, like docker save


def test_untagged_tarball_and_tag_rules(image, tmp_path):
    out = tmp_path / "untagged.tar"
    write_tarball(image, out)
    files = _members(out)
    assert json.loads(files["manifest.json"])[0]["RepoTags"] == []
    assert "annotations" not in json.loads(files["index.json"])["manifests"][0]
    assert validate_tarball(out).repo_tags == ()
    with pytest.raises(ImageError, match="no tag"):
        write_tarball(image, out, tags=[Reference.parse("app@sha256:" + "0" * 64)])
    dup = tmp_path / "dup.tar"
    write_tarball(
        image, dup, tags=_refs("app:1", "docker.io/library/app:1", "app:1@sha256:" + "1" * 64)
    )
    assert validate_tarball(dup).repo_tags == ("docker.io/library/app:1",)


def _broken(layer: Layer, data: bytes) -> Layer:
    return Layer(lambda: io.BytesIO(data), layer.digest, layer.diff_id, layer.size)


@pytest.mark.parametrize("damage", ["flipped", "short", "long"])
def test_a_corrupt_layer_fails_and_leaves_the_old_file_alone(image, tmp_path, damage):
    layer = image.layers[0]
    with layer.opener() as f:
        good = f.read()
    data = {
        "flipped": good[:-1] + bytes([good[-1] ^ 1]),
        "short": good[:-10],
        "long": good + b"extra",
    }[damage]
    bad = im.Image((_broken(layer, data),), image.config_file)
    out = tmp_path / "out" / "image.tar"
    out.parent.mkdir()
    out.write_bytes(b"previous")
    with pytest.raises(DigestMismatchError, match=str(layer.digest)):
        write_tarball(bad, out, tags=_refs("app:1"))
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in out.parent.iterdir()) == ["image.tar"]


def test_unwritable_destinations_raise_sink_errors_with_hints(image, tmp_path):
    with pytest.raises(SinkError, match="No such file") as info:
        write_tarball(image, tmp_path / "missing" / "x.tar")
    assert "create the directory" in (info.value.hint or "")
    with pytest.raises(SinkError, match="is a directory"):
        write_tarball(image, tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SinkError, match="Not a directory"):
        write_tarball(image, blocker / "x.tar")


_pycache = shutil.ignore_patterns("__pycache__")


def test_permission_denied_for_a_non_root_user(tmp_path_factory):
    """Root ignores permissions, so drop to nobody with setpriv to hit a real EACCES."""
    base = Path(tempfile.mkdtemp(prefix="sp-perm-"))
    try:
        os.chmod(base, 0o755)
        locked = base / "locked"
        locked.mkdir(mode=0o555)
        os.chmod(locked, 0o555)
        # nobody may not reach the checkout (a CI clone under /root): run a readable copy
        src = base / "src"
        shutil.copytree(SRC / "scratchpack", src / "scratchpack", ignore=_pycache)
        for path in [src, *src.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        script = textwrap.dedent(
            f"""
            from pathlib import Path
            from scratchpack.errors import SinkError
            from scratchpack.oci import image as im
            from scratchpack.oci.layer import FileEntry, layer_from_entries
            from scratchpack.oci.tarball import write_tarball
            layer = layer_from_entries([FileEntry("a", 0o644, data=b"a")], mtime=0)
            img = im.append_layers(im.empty(), layer)
            try:
                write_tarball(img, Path({str(locked / "x.tar")!r}))
            except SinkError as err:
                print("SINKERROR", err)
            """
        )
        proc = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
                script,
            ],
            env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "TMPDIR": "/tmp"},
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        assert proc.returncode == 0, proc.stderr
        assert "SINKERROR cannot write tarball" in proc.stdout
        assert "Permission denied" in proc.stdout
        assert "check the permissions of" in proc.stdout
        assert list(locked.iterdir()) == []
    finally:
        os.chmod(base / "locked", 0o755)
        shutil.rmtree(base)


def test_duplicate_layers_are_written_once(tmp_path):
    layer = layer_from_entries([FileEntry("a", 0o644, data=b"a")], mtime=0, workdir=tmp_path)
    img = im.append_layers(im.empty(), layer, layer)
    out = tmp_path / "dup.tar"
    write_tarball(img, out, tags=_refs("dup:1"))
    names = [n for n in _members(out) if n.startswith("blobs/sha256/")]
    assert len(names) == len(set(names)) == 3
    manifest = json.loads(_members(out)["manifest.json"])[0]
    assert manifest["Layers"] == [f"blobs/sha256/{layer.digest.hex}"] * 2
    validate_tarball(out)


@pytest.mark.e2e
def test_skopeo_reads_it_as_oci_archive_and_as_docker_archive(image, tmp_path):
    out = tmp_path / "image.tar"
    write_tarball(image, out, tags=_refs("webhello:1.0"))

    def skopeo(*args: str) -> dict:
        proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    oci = skopeo("inspect", f"oci-archive:{out}")
    assert oci["Digest"] == str(image.digest)
    assert oci["Layers"] == [str(image.layers[0].digest)]
    assert (oci["Architecture"], oci["Os"]) == ("amd64", "linux")
    oci_config = skopeo("inspect", "--config", f"oci-archive:{out}")
    assert oci_config["rootfs"]["diff_ids"] == [str(image.layers[0].diff_id)]
    docker = skopeo("inspect", f"docker-archive:{out}")
    assert docker["Created"] == "1970-01-01T00:00:00Z"
    assert docker["Layers"] == [str(image.layers[0].diff_id)]  # skopeo shows them uncompressed
    raw = skopeo("inspect", "--raw", f"docker-archive:{out}")
    assert raw["config"]["digest"] == str(image.config_digest)
    # With several tags the OCI side names each one; skopeo then wants the ref name.
    multi = tmp_path / "multi.tar"
    write_tarball(image, multi, tags=_refs("a:1", "b:2"))
    assert skopeo("inspect", f"oci-archive:{multi}:2")["Digest"] == str(image.digest)
    assert skopeo("inspect", f"docker-archive:{multi}:docker.io/library/b:2")["Layers"] == [
        str(image.layers[0].diff_id)
    ]
