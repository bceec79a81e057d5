"""The image built in Python, loaded and run by the real docker engine 20.10 and podman."""

from __future__ import annotations

from pathlib import Path

import pytest

from scratchpack.oci.reference import Reference
from scratchpack.oci.tarball import write_tarball
from testsupport.engines import (
    ContainerRuntime,
    scratch_image,
    serve,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TAG = "scratchpack-e2e/server:1.0"
OTHER = "localhost:5000/team/server:latest"
EXPECTED_BODY = b"uid=1000 gid=1000 user=appuser tmp=ok\n"


@pytest.fixture(scope="module")
def image(static_server: Path, tmp_path_factory):
    return scratch_image(static_server, tmp_path_factory.mktemp("layers"))


@pytest.fixture(scope="module")
def tarball(image, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tarball") / "server.tar"
    write_tarball(image, out, tags=[Reference.parse(TAG), Reference.parse(OTHER)])
    return out


def _serve_and_stop(runtime: ContainerRuntime, ref: str) -> str:
    container, _, body = serve(runtime, ref, lambda port: [str(port)])
    assert body == EXPECTED_BODY  # runs as appuser (1000) from /etc/passwd, /tmp writable
    assert container.inspect()["Config"]["User"] == "1000:1000"
    code = container.stop(timeout=10)
    logs = container.logs()
    assert code == 0, logs  # SIGTERM reached the server and it exited cleanly
    assert "listening on 127.0.0.1:" in logs and "stopping" in logs
    return logs


def test_docker_load_names_and_runs_the_image(docker_runtime: ContainerRuntime, image, tarball):
    out = docker_runtime.load(tarball)
    assert f"Loaded image: {TAG}" in out
    assert f"Loaded image: {OTHER}" in out
    names = docker_runtime.image_names()
    assert TAG in names and OTHER in names
    info = docker_runtime.image_inspect(TAG)
    assert info["Id"] == str(image.config_digest)  # docker's image ID is the config digest
    assert info["Config"]["Entrypoint"] == ["/app"]
    assert info["RootFS"]["Layers"] == [str(image.layers[0].diff_id)]
    assert info["Created"].startswith("1970-01-01T00:00:00")
    _serve_and_stop(docker_runtime, TAG)


def test_docker_container_logs_and_exit(docker_runtime: ContainerRuntime, tarball):
    docker_runtime.load(tarball)
    container, port, _ = serve(docker_runtime, OTHER, lambda port: [str(port)])
    assert f"listening on 127.0.0.1:{port} as appuser" in container.logs()
    assert container.stop(timeout=10) == 0
    # A missing argument makes the server exit 2 with its usage line: stderr is collected.
    proc = docker_runtime.run_once(OTHER)
    assert proc.returncode == 2
    assert "usage: /app PORT" in proc.stderr


def test_podman_load_names_and_runs_the_image(podman_runtime: ContainerRuntime, image, tarball):
    out = podman_runtime.load(tarball)
    assert f"docker.io/{TAG}" in out and OTHER in out
    names = podman_runtime.image_names()
    assert f"docker.io/{TAG}" in names and OTHER in names
    info = podman_runtime.image_inspect(TAG)
    assert info["Id"] == image.config_digest.hex
    assert info["Config"]["Entrypoint"] == ["/app"]
    _serve_and_stop(podman_runtime, TAG)


def test_podman_loads_a_single_tag_through_the_oci_index(
    podman_runtime: ContainerRuntime, image, tmp_path
):
    """One tag: podman reads the archive as oci-archive and names it from the index."""
    single = tmp_path / "single.tar"
    ref = "localhost/scratchpack-e2e/single:2"
    write_tarball(image, single, tags=[Reference.parse(ref)])
    out = podman_runtime.load(single)
    assert f"Loaded image: {ref}" in out
    assert ref in podman_runtime.image_names()
    container, _, body = serve(podman_runtime, ref, lambda port: [str(port)])
    assert body == EXPECTED_BODY
    assert container.stop(timeout=10) == 0


@pytest.mark.parametrize("runtime_fixture", ["docker_runtime", "podman_runtime"])
def test_an_untagged_tarball_loads_by_image_id(runtime_fixture, request, image, tmp_path):
    runtime: ContainerRuntime = request.getfixturevalue(runtime_fixture)
    untagged = tmp_path / "untagged.tar"
    write_tarball(image, untagged)
    out = runtime.load(untagged)
    assert image.config_digest.hex in out  # "Loaded image ID: sha256:<config digest>"
    assert runtime.image_inspect(image.config_digest.hex[:12])["Id"].endswith(
        image.config_digest.hex
    )
