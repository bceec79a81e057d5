"""A multi-platform webhello (linux/amd64 + linux/arm64, static route) read by the real tools.

One build writes all three outputs: the tarball (docker 20.10 and podman load it and run the
host's image), the OCI layout (umoci unpacks each platform's image; skopeo chooses by
architecture) and a push to the real distribution registry (skopeo finds both platforms in
the index); a second clean build gives byte-identical outputs.

The build runs in-process through the pipeline, with the static route's cross-build: the arm64
image's /app is a real aarch64 static executable (the session's runtime cache holds both kits),
and podman runs that image under qemu-user-static registered with binfmt_misc.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scratchpack import config, pipeline
from scratchpack.freeze import FreezeSpec
from scratchpack.oci.digest import Digest
from scratchpack.oci.mediatypes import OCI_INDEX
from scratchpack.oci.rootfs import elf_info
from scratchpack.oci.validate import CheckedManifest, validate_layout, validate_tarball
from testsupport.binfmt import aarch64_binfmt
from testsupport.engines import serve

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
WEBHELLO = ROOT / "examples" / "webhello"
AMD64, ARM64 = "linux/amd64", "linux/arm64"
HOST = str(pipeline.host_platform())
TAG = "webhello-multi:e2e"


@dataclass(frozen=True)
class MultiBuild:
    out: Path
    result: pipeline.BuildResult
    registry_ref: str

    @property
    def tarball(self) -> Path:
        return self.out / "webhello.tar"

    @property
    def layout(self) -> Path:
        return self.out / "layout"

    def index(self) -> CheckedManifest:
        (top,) = [e for e in validate_layout(self.layout) if e.ref_name]
        return top


def _snapshot(dest: Path) -> Path:
    shutil.copytree(
        WEBHELLO, dest, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build")
    )
    return dest


def _build(
    src: Path, out: Path, cache: Path, push: str | None = None, *, use_cache: bool = True
) -> pipeline.BuildResult:
    """``scratchpack build --runtime static --platform linux/amd64,linux/arm64`` in-process."""
    out.mkdir(parents=True, exist_ok=True)
    project = config.read_project(src).with_overrides(runtime="static")
    spec = FreezeSpec(project_dir=src, project=project, cache_dir=cache, use_cache=use_cache)
    options = pipeline.BuildOptions(
        freeze=spec,
        tags=(TAG,),
        tarball=out / "webhello.tar",
        oci_layout=out / "layout",
        push=push,
        insecure_registry=push is not None,
        platforms=config.parse_platforms([f"{AMD64},{ARM64}"]),  # as --platform gives them
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SOURCE_DATE_EPOCH", raising=False)
        return pipeline.build(options)


@pytest.fixture(scope="session")
def multi(tmp_path_factory, arm64_cache: Path, plain_registry) -> MultiBuild:
    base = tmp_path_factory.mktemp("multi")
    src = _snapshot(base / "one" / "webhello")
    ref = f"{plain_registry.host}/demo/webhello-multi:1.0"
    return MultiBuild(base / "out", _build(src, base / "out", arm64_cache, ref), ref)


def test_every_output_carries_the_index_and_its_digest_is_the_one_printed(multi: MultiBuild):
    top = multi.index()
    assert top.media_type == OCI_INDEX and top.digest == multi.result.image_digest
    assert [str(c.platform) for c in top.children] == [AMD64, ARM64]
    kinds = {p.kind: p for p in multi.result.published}
    assert {kinds[k].digest for k in ("tarball", "oci-layout", "registry")} == {top.digest}
    assert kinds["registry"].location.endswith(f"@{top.digest}")
    report = multi.result.to_json()
    assert [p["image_digest"] for p in report["platforms"]] == [str(c.digest) for c in top.children]
    tar = validate_tarball(multi.tarball)
    assert tar.image.digest == top.digest
    assert tar.docker_image is not None and str(tar.docker_image.platform) == HOST


def _skopeo(*args: str) -> str:
    return subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def _config_digests(multi: MultiBuild) -> dict[str, str]:
    """Each platform's config digest, as the layout's index lists the images."""
    return {str(c.platform): c.manifest["config"]["digest"] for c in multi.index().children}


def _check_skopeo_chooses(
    ref: str, platform: str, multi: MultiBuild, configs: dict[str, str]
) -> None:
    """skopeo resolves the index to the platform's image (its Digest stays the index's)."""
    arch = platform.split("/")[1]
    tls = ["--tls-verify=false"] if ref.startswith("docker://") else []
    chosen = json.loads(_skopeo("inspect", *tls, "--override-arch", arch, ref))
    assert chosen["Architecture"] == arch
    assert chosen["Digest"] == str(multi.result.image_digest)
    config = _skopeo("inspect", *tls, "--raw", "--config", "--override-arch", arch, ref)
    assert str(Digest.of_bytes(config.encode())) == configs[platform]


def test_skopeo_finds_both_platforms_in_the_pushed_index(multi: MultiBuild):
    raw = _skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{multi.registry_ref}")
    assert str(Digest.of_bytes(raw.encode())) == str(multi.result.image_digest)
    index = json.loads(raw)
    assert index["mediaType"] == OCI_INDEX
    children = {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m for m in index["manifests"]
    }
    assert set(children) == {AMD64, ARM64}
    configs = _config_digests(multi)
    for p in multi.result.platforms:
        assert children[str(p.platform)]["digest"] == str(p.image_digest)
        _check_skopeo_chooses(f"docker://{multi.registry_ref}", str(p.platform), multi, configs)
        # each image's SBOM is pushed as its referrer, under the sha256-<hex>.sbom tag
        repo = multi.registry_ref.rsplit(":", 1)[0]
        tag = f"sha256-{p.image_digest.hex}.sbom"
        sbom = json.loads(
            _skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{repo}:{tag}")
        )
        assert sbom["subject"]["digest"] == str(p.image_digest)


def _single_platform_layouts(layout: Path, dest: Path, top: CheckedManifest) -> Path:
    """The layout's blobs with an index.json naming each platform's image by its architecture:
    umoci 0.4 cannot choose a platform from an image index (it calls the tag ambiguous)."""
    shutil.copytree(layout, dest)
    entries = [
        {
            "mediaType": c.media_type,
            "digest": str(c.digest),
            "size": (layout / "blobs" / "sha256" / c.digest.hex).stat().st_size,
            "annotations": {"org.opencontainers.image.ref.name": c.platform.architecture},
        }
        for c in top.children
        if c.platform is not None
    ]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    (dest / "index.json").write_text(json.dumps(index))
    return dest


def test_umoci_unpacks_each_platforms_image_from_the_layout(multi: MultiBuild, tmp_path: Path):
    top = multi.index()
    layouts = _single_platform_layouts(multi.layout, tmp_path / "layout", top)
    executables = {str(p.platform): p.executable_sha256 for p in multi.result.platforms}
    for child in top.children:
        arch = child.platform.architecture if child.platform else ""
        bundle = tmp_path / f"bundle-{arch}"
        subprocess.run(
            ["umoci", "unpack", "--image", f"{layouts}:{arch}", str(bundle)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        app = bundle / "rootfs" / "app"
        assert hashlib.sha256(app.read_bytes()).hexdigest() == executables[f"linux/{arch}"]
        assert sorted(p.name for p in (bundle / "rootfs").iterdir()) == ["app", "etc", "tmp"]
        spec = json.loads((bundle / "config.json").read_text())
        assert spec["process"]["user"]["uid"] == 1000 and spec["process"]["args"][0] == "/app"
    # skopeo reads the layout's index as it is and chooses by architecture
    configs = _config_digests(multi)
    for p in multi.result.platforms:
        _check_skopeo_chooses(f"oci:{multi.layout}:e2e", str(p.platform), multi, configs)


def _host_image(multi: MultiBuild) -> CheckedManifest:
    (child,) = [c for c in multi.index().children if str(c.platform) == HOST]
    return child


def _serves_webhello(runtime, image: str) -> None:
    container, port, body = serve(runtime, image, lambda port: ["-addr", f"127.0.0.1:{port}"])
    assert b"<title>webhello root page</title>" in body
    assert f"serving HTTP on TCP 127.0.0.1:{port}" in container.logs()
    assert container.stop(timeout=10) == 0, container.logs()


def test_docker_load_of_the_multi_platform_tarball_loads_the_hosts_image(
    multi: MultiBuild, docker_runtime
):
    out = docker_runtime.load(multi.tarball)
    assert f"Loaded image: {TAG}" in out
    inspected = docker_runtime.image_inspect(TAG)
    host = _host_image(multi)
    assert inspected["Architecture"] == HOST.split("/")[1]
    assert inspected["Id"] == host.manifest["config"]["digest"]  # the host's config, not arm64's
    _serves_webhello(docker_runtime, TAG)


def test_podman_load_of_the_multi_platform_tarball_loads_the_hosts_image(
    multi: MultiBuild, podman_runtime
):
    out = podman_runtime.load(multi.tarball)
    assert TAG in out
    inspected = podman_runtime.image_inspect(TAG)
    host = _host_image(multi)
    assert inspected["Architecture"] == HOST.split("/")[1]
    assert "sha256:" + inspected["Id"].removeprefix("sha256:") == host.manifest["config"]["digest"]
    _serves_webhello(podman_runtime, TAG)
    # the other platform is in the same archive, for podman to choose by architecture
    other = ARM64 if HOST == AMD64 else AMD64
    (child,) = [c for c in multi.index().children if str(c.platform) == other]
    pulled = (
        podman_runtime.cli("pull", "--arch", other.split("/")[1], f"oci-archive:{multi.tarball}")
        .stdout.strip()
        .splitlines()[-1]
    )
    assert "sha256:" + pulled == child.manifest["config"]["digest"]


@pytest.fixture(scope="module")
def aarch64_emulation() -> Iterator[str]:
    with aarch64_binfmt() as entry:
        yield entry


def test_podman_runs_the_arm64_image_from_the_index_under_binfmt_qemu(
    multi: MultiBuild, podman_runtime, aarch64_emulation: str
):
    """The index's arm64 image, chosen by podman from the tarball, runs as it would on a
    Graviton: /app is the aarch64 static executable, run by qemu through binfmt_misc."""
    (child,) = [c for c in multi.index().children if str(c.platform) == ARM64]
    pulled = podman_runtime.cli("pull", "--arch", "arm64", f"oci-archive:{multi.tarball}")
    image = pulled.stdout.strip().splitlines()[-1]
    assert "sha256:" + image.removeprefix("sha256:") == child.manifest["config"]["digest"]
    assert podman_runtime.image_inspect(image)["Architecture"] == "arm64"
    container, port, body = serve(
        podman_runtime,
        image,
        lambda port: ["-addr", f"127.0.0.1:{port}"],
        extra=("--platform", ARM64),
        timeout=60,
    )
    assert b"<title>webhello root page</title>" in body
    logs = container.logs()
    assert f"serving HTTP on TCP 127.0.0.1:{port}" in logs
    assert b"arch=arm64" in body  # the page reports the machine the program runs on
    assert container.stop(timeout=10) == 0, container.logs()


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_two_clean_builds_give_byte_identical_index_tarball_and_layout(
    multi: MultiBuild, arm64_cache: Path, tmp_path: Path
):
    """Another checkout elsewhere, another output directory and work directory, both executables
    frozen again without the build cache (the kits stay): the same bytes, the index's digest."""
    src = _snapshot(tmp_path / "elsewhere" / "webhello")
    out = tmp_path / "out"
    again = _build(src, out, arm64_cache, use_cache=False)
    assert again.image_digest == multi.result.image_digest
    assert (out / "webhello.tar").read_bytes() == multi.tarball.read_bytes()
    assert _files(out / "layout") == _files(multi.layout)
    sboms = sorted(p.name for p in out.iterdir() if p.name.endswith(".spdx.json"))
    assert sboms == [
        "layout.linux-amd64.spdx.json",
        "layout.linux-arm64.spdx.json",
        "webhello.tar.linux-amd64.spdx.json",
        "webhello.tar.linux-arm64.spdx.json",
    ]
    for name in sboms:
        assert (out / name).read_bytes() == (multi.out / name).read_bytes()


def test_each_image_holds_an_executable_for_its_platform(multi: MultiBuild, tmp_path: Path):
    for child in multi.index().children:
        layer = child.manifest["layers"][0]["digest"].split(":")[1]
        blob = gzip.decompress((multi.layout / "blobs" / "sha256" / layer).read_bytes())
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            member = tar.extractfile("app")
            assert member is not None
            (tmp_path / "app").write_bytes(member.read())
        arch, interp = elf_info(tmp_path / "app")
        assert child.platform is not None
        assert (arch, interp) == (child.platform.architecture, None)
