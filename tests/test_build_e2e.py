"""`scratchpack build` end to end, through the CLI, against the real tools.

webhello is frozen and assembled once (session fixture); the outputs are then read back by
umoci and skopeo, loaded and run by podman and by docker 20.10, pushed to the real distribution
registry and pulled again by skopeo and podman.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testsupport.engines import serve
from testsupport.net import free_port
from testsupport.registry_server import USERS, make_tls, skopeo_inspect_digest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
WEBHELLO = ROOT / "examples" / "webhello"
SCRATCHPACK = [sys.executable, "-m", "scratchpack"]


def scratchpack(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"SOURCE_DATE_EPOCH"}}
    return subprocess.run(
        [*SCRATCHPACK, *args],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def skopeo_config(ref: str) -> dict[str, Any]:
    """The image config as skopeo reads it from ``ref`` (e.g. ``oci:DIR:TAG``)."""
    proc = subprocess.run(
        ["skopeo", "inspect", "--config", ref], capture_output=True, text=True, check=True
    )
    return dict(json.loads(proc.stdout))


@dataclass(frozen=True)
class Built:
    out: Path
    result: dict[str, Any]
    registry_ref: str

    @property
    def tarball(self) -> Path:
        return self.out / "webhello.tar"

    @property
    def layout(self) -> Path:
        return self.out / "layout"

    @property
    def digest(self) -> str:
        return str(self.result["image_digest"])


@pytest.fixture(scope="session")
def built(tmp_path_factory, freeze_cache: Path, plain_registry) -> Built:
    out = tmp_path_factory.mktemp("build")
    ref = f"{plain_registry.host}/demo/webhello:1.0"
    proc = scratchpack(
        "build",
        str(WEBHELLO),
        "--tarball",
        str(out / "webhello.tar"),
        "--oci-layout",
        str(out / "layout"),
        "--push",
        ref,
        "--insecure-registry",
        "--tag",
        "webhello:e2e",
        "--json",
        env={"SCRATCHPACK_CACHE_DIR": str(freeze_cache)},
    )
    assert proc.returncode == 0, proc.stderr
    return Built(out, json.loads(proc.stdout), ref)


def test_outputs_agree_on_one_digest(built: Built):
    kinds = {o["kind"]: o for o in built.result["outputs"]}
    assert set(kinds) == {"tarball", "oci-layout", "registry", "registry-sbom"}
    for kind in ("tarball", "oci-layout", "registry"):
        assert kinds[kind]["digest"] == built.digest
    assert kinds["registry"]["location"] == f"{built.registry_ref.rsplit(':', 1)[0]}@{built.digest}"


def test_umoci_unpack_gives_exactly_the_scratch_filesystem(built: Built, tmp_path: Path):
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{built.layout}:e2e", str(bundle)],
        check=True,
        capture_output=True,
    )
    rootfs = bundle / "rootfs"
    found = {}
    for path in sorted(rootfs.rglob("*")):
        st = path.lstat()
        found[str(path.relative_to(rootfs))] = (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid)
    assert found == {
        "app": ("0o555", 0, 0),
        "etc": ("0o755", 0, 0),
        "etc/group": ("0o644", 0, 0),
        "etc/passwd": ("0o644", 0, 0),
        "tmp": ("0o1777", 0, 0),
    }
    passwd = (rootfs / "etc/passwd").read_text().splitlines()
    assert passwd[0].startswith("root:x:0:0:")
    assert "appuser:x:1000:1000::/home/appuser:/sbin/nologin" in passwd
    assert (
        "statically linked"
        in subprocess.run(
            ["file", "-b", str(rootfs / "app")], capture_output=True, text=True, check=True
        ).stdout
    )
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["user"]["uid"] == 1000
    assert config["process"]["args"][0] == "/app"


def test_image_config(built: Built):
    cfg = skopeo_config(f"oci:{built.layout}:e2e")
    assert cfg["architecture"] == "amd64" and cfg["os"] == "linux"
    assert cfg["created"] == "1970-01-01T00:00:00Z"
    c = cfg["config"]
    assert c["User"] == "1000:1000"
    assert c["Entrypoint"] == ["/app"]
    assert c["WorkingDir"] == "/"
    assert set(c["ExposedPorts"]) == {"8080/tcp", "8443/tcp"}
    assert c["Labels"]["org.opencontainers.image.title"] == "webhello"
    assert c["Labels"]["org.opencontainers.image.version"] == "0.1.0"
    assert c["Labels"]["org.opencontainers.image.created"] == "1970-01-01T00:00:00Z"


def test_skopeo_reads_the_tarball_as_both_archive_kinds(built: Built):
    for transport in ("docker-archive", "oci-archive"):
        proc = subprocess.run(
            ["skopeo", "inspect", f"{transport}:{built.tarball}"],
            capture_output=True,
            text=True,
            check=True,
        )
        info = json.loads(proc.stdout)
        assert info["Architecture"] == "amd64"
        assert info["Labels"]["org.opencontainers.image.title"] == "webhello"
    oci = json.loads(
        subprocess.run(
            ["skopeo", "inspect", f"oci-archive:{built.tarball}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert oci["Digest"] == built.digest


def _webhello_in(runtime, image: str) -> None:
    container, port, body = serve(runtime, image, lambda port: ["-addr", f"127.0.0.1:{port}"])
    assert b"<title>webhello root page</title>" in body
    logs = container.logs()
    assert "user: appuser (uid: 1000)" in logs, logs
    assert f"serving HTTP on TCP 127.0.0.1:{port}" in logs
    code = container.stop(timeout=10)
    assert code == 0, container.logs()


def test_podman_loads_and_runs_webhello(built: Built, podman_runtime):
    out = podman_runtime.load(built.tarball)
    assert "webhello:e2e" in out
    _webhello_in(podman_runtime, "webhello:e2e")


def test_docker_loads_and_runs_webhello(built: Built, docker_runtime):
    out = docker_runtime.load(built.tarball)
    assert "Loaded image: webhello:e2e" in out
    assert docker_runtime.image_inspect("webhello:e2e")["Config"]["User"] == "1000:1000"
    _webhello_in(docker_runtime, "webhello:e2e")


def test_pushed_image_pulls_back_with_the_same_digest(built: Built, podman_store):
    ref = built.registry_ref
    assert skopeo_inspect_digest(ref) == built.digest
    assert podman_store.pull_digest(ref) == built.digest


def test_sbom_beside_outputs_in_layout_and_in_registry(built: Built):
    sbom_file = built.out / "webhello.tar.spdx.json"
    doc = json.loads(sbom_file.read_text())
    assert doc["spdxVersion"] == "SPDX-2.3"
    names = {p["name"] for p in doc["packages"]}
    assert {"webhello", "cpython", "pyinstaller", "staticx"} <= names
    pyinstaller = next(p for p in doc["packages"] if p["name"] == "pyinstaller")
    assert pyinstaller["licenseDeclared"] == "GPL-2.0-or-later WITH Bootloader-exception"
    assert built.digest in doc["comment"]
    # in the layout: an artifact manifest whose subject is the image
    index = json.loads((built.layout / "index.json").read_text())
    artifacts = [m for m in index["manifests"] if m.get("artifactType") == "application/spdx+json"]
    assert len(artifacts) == 1
    blob = built.layout / "blobs" / "sha256" / artifacts[0]["digest"].split(":")[1]
    manifest = json.loads(blob.read_bytes())
    assert manifest["subject"]["digest"] == built.digest
    layer_hex = manifest["layers"][0]["digest"].split(":")[1]
    assert (built.layout / "blobs" / "sha256" / layer_hex).read_bytes() == sbom_file.read_bytes()
    # in the registry: the sha256-<hex>.sbom tag
    repo = built.registry_ref.rsplit(":", 1)[0]
    tag = "sha256-" + built.digest.split(":")[1] + ".sbom"
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{repo}:{tag}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pushed = json.loads(raw)
    assert pushed["artifactType"] == "application/spdx+json"
    assert pushed["subject"]["digest"] == built.digest


def _clone(dest: Path) -> Path:
    if (ROOT / ".git").exists():
        subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
        # the clone holds what is committed; overlay the working tree's webhello so the
        # test checks the code under test, identically in both clones
        shutil.rmtree(dest / "examples" / "webhello")
    shutil.copytree(WEBHELLO, dest / "examples" / "webhello", ignore=_build_junk)
    return dest / "examples" / "webhello"


def _build_junk(_dir: str, names: list[str]) -> list[str]:
    return [n for n in names if n in {"build", "__pycache__"} or n.endswith(".egg-info")]


def test_two_clean_checkouts_build_the_same_image(tmp_path: Path, freeze_cache: Path, built):
    digests = []
    for name in ("one", "elsewhere/two"):
        project = _clone(tmp_path / name)
        proc = scratchpack(
            "build",
            str(project),
            "--oci-layout",
            str(tmp_path / f"{name.replace('/', '-')}-layout"),
            "--json",
            env={"SCRATCHPACK_CACHE_DIR": str(freeze_cache)},
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        digests.append(json.loads(proc.stdout)["image_digest"])
    assert digests[0] == digests[1]


def test_source_date_epoch_sets_created(tmp_path: Path, freeze_cache: Path, built):
    proc = scratchpack(
        "build",
        str(WEBHELLO),
        "--oci-layout",
        str(tmp_path / "layout"),
        "--sbom",
        "none",
        "--json",
        env={"SCRATCHPACK_CACHE_DIR": str(freeze_cache), "SOURCE_DATE_EPOCH": "1700000000"},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["image_digest"] != built.digest
    cfg = skopeo_config(f"oci:{tmp_path / 'layout'}:latest")
    assert cfg["created"] == "2023-11-14T22:13:20Z"
    assert not (tmp_path / "layout.spdx.json").exists()


def _docker_config(directory: Path, host: str, user: str, password: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return directory


def test_push_with_docker_config_credentials(tmp_path, freeze_cache, basic_registry, built):
    user, password = next(iter(USERS.items()))
    config = _docker_config(tmp_path / "docker", basic_registry.host, user, password)
    ref = f"{basic_registry.host}/team/webhello:auth"
    proc = scratchpack(
        "build",
        str(WEBHELLO),
        "--push",
        ref,
        "--registry-ca",
        str(basic_registry.tls.cert),
        env={"SCRATCHPACK_CACHE_DIR": str(freeze_cache), "DOCKER_CONFIG": str(config)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{ref.rsplit(':', 1)[0]}@{built.digest}"


def test_wrong_password_is_a_clear_error(tmp_path, freeze_cache, basic_registry, built):
    user = next(iter(USERS))
    config = _docker_config(tmp_path / "docker", basic_registry.host, user, "not-the-password")
    proc = scratchpack(
        "build",
        str(WEBHELLO),
        "--push",
        f"{basic_registry.host}/team/webhello:nope",
        "--registry-ca",
        str(basic_registry.tls.cert),
        env={"SCRATCHPACK_CACHE_DIR": str(freeze_cache), "DOCKER_CONFIG": str(config)},
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ")
    assert "401" in proc.stderr or "unauthorized" in proc.stderr.lower()
    assert "not-the-password" not in proc.stderr


def test_scratchpack_repo_is_the_default_push_target(freeze_cache, plain_registry, built):
    proc = scratchpack(
        "build",
        str(WEBHELLO),
        "--insecure-registry",
        "--sbom",
        "none",
        env={
            "SCRATCHPACK_CACHE_DIR": str(freeze_cache),
            "SCRATCHPACK_REPO": f"{plain_registry.host}/ko-style",
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{plain_registry.host}/ko-style/webhello@{built.digest}"


def test_unreachable_registry(freeze_cache, built):
    port = free_port()
    proc = scratchpack(
        "build",
        str(WEBHELLO),
        "--push",
        f"127.0.0.1:{port}/x/webhello",
        "--insecure-registry",
        env={"SCRATCHPACK_CACHE_DIR": str(freeze_cache)},
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ")
    assert f"127.0.0.1:{port}" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--push", "Bad/Name"], "invalid repository name"),
        (["--tarball", "x.tar", "--tag", "a:b:c"], "invalid"),
        ([], "no output chosen"),
    ],
)
def test_bad_arguments_fail_before_any_work(tmp_path: Path, args, message):
    proc = scratchpack("build", str(WEBHELLO), *args, cwd=tmp_path)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "hint:" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_leaves_nothing_behind(tmp_path: Path, freeze_cache, built):
    target = tmp_path / "ro"
    target.mkdir()
    (target / "file").write_text("not a directory")
    proc = scratchpack(
        "build",
        str(WEBHELLO),
        "--tarball",
        str(target / "file" / "webhello.tar"),
        env={"SCRATCHPACK_CACHE_DIR": str(freeze_cache)},
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ")
    assert sorted(p.name for p in target.iterdir()) == ["file"]


def test_scratchpack_run_with_podman(built: Built, tmp_path: Path):
    """`scratchpack run TARBALL` loads into podman and serves; SIGTERM stops the container."""
    storage = tmp_path / "storage.conf"
    storage.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_path}/root"\nrunroot = "{tmp_path}/run"\n'
    )
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(storage)}
    port = free_port()
    proc = subprocess.Popen(
        [*SCRATCHPACK, "run", str(built.tarball), "--engine", "podman", "--name",
         f"sp-run-{port}", "--", "-addr", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        from testsupport.engines import wait_http

        status, body = wait_http(f"http://127.0.0.1:{port}/", timeout=60)
        assert status == 200 and b"webhello root page" in body
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "user: appuser (uid: 1000)" in out
    assert "shutdown" in out
    listed = subprocess.run(
        ["podman", "ps", "-a", "--format", "{{.Names}}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"sp-run-{port}" not in listed


def test_tarball_without_manifest_is_refused(tmp_path: Path):
    bogus = tmp_path / "bogus.tar"
    with tarfile.open(bogus, "w") as tar:
        info = tarfile.TarInfo("hello.txt")
        tar.addfile(info)
    proc = scratchpack("run", str(bogus))
    assert proc.returncode == 1
    assert "not an image tarball" in proc.stderr


def test_image_options_reach_config_and_rootfs(tmp_path: Path, freeze_cache: Path, built):
    bundle_pem = make_tls(tmp_path / "tls").cert  # --ca-certs takes real PEM certificates only
    layout = tmp_path / "layout"
    proc = scratchpack(
        "build",
        str(WEBHELLO),
        "--oci-layout",
        str(layout),
        "--sbom",
        "none",
        "--user",
        "web:2000",
        "--ca-certs",
        str(bundle_pem),
        "--env",
        "GWH_BANNER=from image",
        "--label",
        "team=platform",
        "--port",
        "9000",
        "--",
        "-quota",
        "5",
        env={"SCRATCHPACK_CACHE_DIR": str(freeze_cache)},
    )
    assert proc.returncode == 0, proc.stderr
    cfg = skopeo_config(f"oci:{layout}:latest")["config"]
    assert cfg["User"] == "2000:2000"
    assert cfg["Cmd"] == ["-quota", "5"]
    assert "GWH_BANNER=from image" in cfg["Env"]
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in cfg["Env"]
    assert cfg["Labels"]["team"] == "platform"
    assert set(cfg["ExposedPorts"]) == {"9000/tcp"}
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:latest", str(bundle)],
        check=True,
        capture_output=True,
    )
    rootfs = bundle / "rootfs"
    ca = rootfs / "etc/ssl/certs/ca-certificates.crt"
    assert ca.read_bytes() == bundle_pem.read_bytes()
    assert oct(ca.stat().st_mode & 0o7777) == "0o444"
    assert "web:x:2000:2000::/home/web:/sbin/nologin" in (rootfs / "etc/passwd").read_text()


def test_arg_flag_form_and_contradiction(tmp_path: Path, freeze_cache: Path, built):
    proc = scratchpack(
        "build", str(WEBHELLO), "--oci-layout", str(tmp_path / "l"), "--sbom", "none",
        "--arg=-banner", "--arg=hello world",
        env={"SCRATCHPACK_CACHE_DIR": str(freeze_cache)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    cfg = skopeo_config(f"oci:{tmp_path / 'l'}:latest")["config"]
    assert cfg["Cmd"] == ["-banner", "hello world"]
    both = scratchpack(
        "build", str(WEBHELLO), "--tarball", "x.tar", "--arg=a", "--", "b", cwd=tmp_path
    )
    assert both.returncode == 2
    assert "not both" in both.stderr
