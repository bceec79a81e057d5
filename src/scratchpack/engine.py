"""Running a built image with whichever container tool works here (``scratchpack run``).

Docker needs a running daemon; podman needs none, so it is the fallback. Containers use the
host network: the app's ports are this machine's ports, and no bridge network is created.
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

from scratchpack import _ctx
from scratchpack.errors import EngineError

_INSTALL_HINT = (
    "install podman (daemonless: `apt-get install podman runc`), or start the Docker daemon "
    "(`dockerd`), then try again; or load the tarball yourself with `docker load -i FILE`"
)


def _works(argv: Sequence[str]) -> bool:
    if shutil.which(argv[0]) is None:
        return False
    try:
        proc = subprocess.run(list(argv), capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def podman_global_flags() -> list[str]:
    """Flags podman needs where systemd does not manage cgroups (containers, CI machines)."""
    flags: list[str] = []
    if not Path("/run/systemd/system").is_dir():
        flags += ["--cgroup-manager", "cgroupfs"]
    if shutil.which("crun") is None and shutil.which("runc") is not None:
        flags += ["--runtime", "runc"]
    return flags


def choose_tool(tool: str = "auto") -> list[str]:
    """The command prefix of a working container tool, or an error saying what to install."""
    candidates = ["docker", "podman"] if tool == "auto" else [tool]
    for name in candidates:
        prefix = [name] + (podman_global_flags() if name == "podman" else [])
        if _works([*prefix, "info"]):
            return prefix
    if tool == "auto":
        raise EngineError(
            "no working container tool: docker has no running daemon and podman is not usable",
            hint=_INSTALL_HINT,
        )
    raise EngineError(f"{tool} is not installed or not working here", hint=_INSTALL_HINT)


def run_args(prefix: Sequence[str], image: str, name: str, app_args: Sequence[str]) -> list[str]:
    argv = [*prefix, "run", "--rm", "--network=host", "--pull=never", "--name", name]
    if prefix[0] == "podman":
        # podman's defaults can exceed what runc may set here ("error setting rlimits"):
        # pass explicit limits, never above our own (nproc capped: some kernels refuse more).
        for key, limit, cap in (
            ("nofile", resource.RLIMIT_NOFILE, 1 << 20),
            ("nproc", resource.RLIMIT_NPROC, 4096),
        ):
            hard = resource.getrlimit(limit)[1]
            value = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
            argv += ["--ulimit", f"{key}={value}:{value}"]
    return [*argv, image, *app_args]


def tarball_tags(tarball: Path) -> tuple[str, ...]:
    """The image names recorded in a docker-archive's manifest.json (what `docker load` uses)."""
    try:
        with tarfile.open(tarball) as tar:
            member = tar.extractfile("manifest.json")
            data = json.loads(member.read()) if member is not None else []
    except (OSError, KeyError, tarfile.TarError, ValueError) as err:
        raise EngineError(
            f"{tarball} is not an image tarball ({err})",
            hint="pass an image tarball written by scratchpack, or a project directory",
            remedy="run-target",
        ) from err
    return tuple(tag for entry in data for tag in entry.get("RepoTags") or ())


def run_tarball(
    tarball: Path,
    *,
    tags: Sequence[str],
    tool: str = "auto",
    name: str | None = None,
    app_args: Sequence[str] = (),
) -> int:
    """Load ``tarball`` and run its first tag in the foreground; returns the container's exit."""
    if not tags:
        raise EngineError(
            f"{tarball}: no image name to run", hint="name the image NAME[:TAG]", remedy="run-tag"
        )
    prefix = choose_tool(tool)
    with _ctx.step(f"loading {tarball} into {prefix[0]}"):
        proc = _ctx.run_subprocess([*prefix, "load", "-i", str(tarball)])
    if proc.returncode != 0:
        raise EngineError(
            f"{prefix[0]} load -i {tarball} failed:\n{proc.stdout.strip()}",
            hint="check that the tarball is an image tarball written by scratchpack",
            remedy="run-target",
        )
    image = tags[0]
    container = name or "scratchpack-" + image.rsplit("/", 1)[-1].split(":", 1)[0]
    argv = run_args(prefix, image, container, app_args)
    _ctx.log("running " + " ".join(argv))
    return _run_forwarding_signals(argv)


def _run_forwarding_signals(argv: Sequence[str]) -> int:
    """Run in the foreground; SIGINT/SIGTERM go to the tool, which stops the container.

    Without this, a signal aimed at scratchpack alone (not its process group, as a
    supervisor or `kill` sends it) would leave the container running.
    """
    proc = subprocess.Popen(list(argv))

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
