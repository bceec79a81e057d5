"""Real container runtimes for end-to-end tests: a private dockerd, a private podman store.

Both run with their own state under a temp directory, so tests never touch (or depend on) the
host's images, and everything they start is stopped by PID at the end. The helpers are
generic -- load an archive, run an image with arguments on a loopback port, wait for HTTP 200,
collect logs, stop -- so any test can run any image (the C test server here, webhello later).

Wrap ``docker_session()``/``podman_session()`` in session fixtures (see tests/test_engine.py;
in conftest.py they are shared by every module), or use ``Dockerd``/``Podman`` directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testsupport.net import free_port

DOCKER_CLI = "/usr/bin/docker"  # /usr/local/bin/docker is a newer client than engine 20.10
PODMAN_RUN_FLAGS = (
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
    "--init",
)
# podman's default init (catatonit) is not packaged here; tini-static does the same job.
INIT_PATHS = ("/usr/libexec/podman/catatonit", "/usr/bin/catatonit", "/usr/bin/tini-static")


class RuntimeCommandError(AssertionError):
    """A runtime command failed; the message carries the command and its output."""


def _run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv),
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeCommandError(
            f"{' '.join(argv)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc


def wait_http(
    url: str,
    *,
    timeout: float = 30,
    alive: Any = None,
    expect: int = 200,
) -> tuple[int, bytes]:
    """Poll ``url`` until it answers ``expect``; ``alive()`` may report a dead container early."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = resp.read()
                if resp.status == expect:
                    return resp.status, body
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as err:
            if err.code == expect:
                return err.code, err.read()
            last = err
        except (OSError, urllib.error.URLError) as err:
            last = err
        if alive is not None and not alive():
            raise RuntimeCommandError(f"the container exited before {url} answered (last: {last})")
        time.sleep(0.1)
    raise RuntimeCommandError(f"{url} did not answer {expect} within {timeout}s (last: {last})")


def serve(
    runtime: ContainerRuntime,
    image: str,
    args_for_port: Callable[[int], Sequence[str]],
    *,
    path: str = "/",
    env_for_port: Callable[[int], Mapping[str, str]] | None = None,
    extra: Sequence[str] = (),
    timeout: float = 30,
    attempts: int = 3,
) -> tuple[Container, int, bytes]:
    """Run ``image`` serving HTTP on a free loopback port; retry if the port race is lost.

    Returns the running container, its port and the body of the first 200 answer.
    """
    last: Exception | None = None
    for _ in range(attempts):
        port = free_port()
        env = env_for_port(port) if env_for_port else None
        container = runtime.run(image, args_for_port(port), env=env, extra=extra)
        try:
            _, body = container.wait_http(f"http://127.0.0.1:{port}{path}", timeout=timeout)
        except RuntimeCommandError as err:
            last = err
            logs = container.logs()
            container.stop(timeout=2)
            if "in use" in logs:  # someone took the port between free_port() and bind()
                continue
            raise
        return container, port, body
    raise RuntimeCommandError(f"no free port after {attempts} attempts: {last}")


def _unmount_below(base: Path) -> None:
    """Unmount anything a runtime left mounted below ``base`` (deepest first)."""
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted(points, key=len, reverse=True):
        if point == str(base) or point.startswith(f"{base}/"):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _remove_tree(base: Path) -> None:
    _unmount_below(base)
    shutil.rmtree(base, ignore_errors=True)


@dataclass
class Container:
    """A detached container; ``stop()`` is idempotent and also removes it."""

    runtime: ContainerRuntime
    id: str
    stopped: bool = False
    final_logs: str = ""  # what the container printed, kept by stop() before removing it

    def running(self) -> bool:
        proc = self.runtime.cli("inspect", "--format", "{{.State.Running}}", self.id, check=False)
        return proc.returncode == 0 and proc.stdout.strip() == "true"

    def inspect(self) -> dict[str, Any]:
        data = json.loads(self.runtime.cli("inspect", self.id).stdout)
        return dict(data[0])

    def logs(self) -> str:
        if self.stopped:
            return self.final_logs
        proc = self.runtime.cli("logs", self.id, check=False)
        return proc.stdout + proc.stderr

    def wait_http(self, url: str, *, timeout: float = 30, expect: int = 200) -> tuple[int, bytes]:
        try:
            return wait_http(url, timeout=timeout, alive=self.running, expect=expect)
        except RuntimeCommandError as err:
            raise RuntimeCommandError(f"{err}\n--- container logs ---\n{self.logs()}") from None

    def stop(self, timeout: int = 10) -> int | None:
        """Stop (SIGTERM, then SIGKILL after ``timeout``), remove; returns the exit code."""
        if self.stopped:
            return None
        self.runtime.cli("stop", "-t", str(timeout), self.id, check=False, timeout=timeout + 60)
        code = None
        proc = self.runtime.cli("inspect", "--format", "{{.State.ExitCode}}", self.id, check=False)
        if proc.returncode == 0 and proc.stdout.strip().lstrip("-").isdigit():
            code = int(proc.stdout.strip())
        self.final_logs = self.logs()
        self.runtime.cli("rm", "-f", self.id, check=False)
        self.stopped = True
        return code


@dataclass
class ContainerRuntime:
    """What docker and podman have in common, driven through their CLIs."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    run_flags: tuple[str, ...] = ()
    containers: list[Container] = field(default_factory=list)

    def cli(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return _run([*self.argv, *args], env=self.env, check=check, timeout=timeout)

    def load(self, archive: Path) -> str:
        """``load -i``; returns the runtime's output (it names the loaded image)."""
        proc = self.cli("load", "-i", str(archive))
        return proc.stdout + proc.stderr

    def image_inspect(self, ref: str) -> dict[str, Any]:
        data = json.loads(self.cli("image", "inspect", ref).stdout)
        return dict(data[0])

    def image_names(self) -> list[str]:
        """``REPOSITORY:TAG`` of every image, as ``<runtime> images`` shows them."""
        out = self.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def image_size(self, ref: str) -> int:
        """Bytes the runtime reports for the image (``images``/``inspect`` Size)."""
        return int(self.image_inspect(ref)["Size"])

    def remove_image(self, ref: str) -> None:
        self.cli("rmi", "-f", ref, check=False)

    def run(
        self,
        image: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        extra: Sequence[str] = (),
    ) -> Container:
        """Start a detached container on the host network; never pulls."""
        argv = ["run", "-d", "--network=host", "--pull=never", *self.run_flags, *extra]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        if user is not None:
            argv += ["--user", user]
        argv += [image, *args]
        cid = self.cli(*argv).stdout.strip().splitlines()[-1]
        container = Container(self, cid)
        self.containers.append(container)
        return container

    def run_once(
        self, image: str, args: Sequence[str] = (), *, extra: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        """``run --rm`` in the foreground; returns the completed process (not checked)."""
        return self.cli(
            "run",
            "--rm",
            "--network=host",
            "--pull=never",
            *self.run_flags,
            *extra,
            image,
            *args,
            check=False,
        )

    def stop_all(self) -> None:
        for container in self.containers:
            container.stop(timeout=2)
        self.containers.clear()


class Dockerd:
    """A private docker engine: own data-root, exec-root, pidfile and socket; no bridge."""

    def __init__(self, base: Path | None = None, *, binary: str = "dockerd") -> None:
        # Short path: containerd's socket lives below exec-root, and sun_path has 108 bytes.
        self.base = base or Path(tempfile.mkdtemp(prefix="spd-", dir="/tmp"))
        self.binary = binary
        self.socket = self.base / "docker.sock"
        self.pidfile = self.base / "docker.pid"
        self.log_path = self.base / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def runtime(self) -> ContainerRuntime:
        config_dir = self.base / "client"
        config_dir.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(config_dir)  # never read or write ~/.docker
        return ContainerRuntime("docker", (DOCKER_CLI, "-H", self.host), env)

    def start(self, timeout: float = 90) -> ContainerRuntime:
        (self.base / "daemon.json").write_text("{}\n")  # ignore any /etc/docker/daemon.json
        argv = [
            self.binary,
            "--config-file",
            str(self.base / "daemon.json"),
            "--data-root",
            str(self.base / "data"),
            "--exec-root",
            str(self.base / "x"),
            "--pidfile",
            str(self.pidfile),
            "-H",
            self.host,
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--userland-proxy=false",
            "--exec-opt",
            "native.cgroupdriver=cgroupfs",
            "--log-level=warn",
        ]
        with open(self.log_path, "wb") as log:
            # Own session: the daemon and the containerd it spawns form one process group.
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        runtime = self.runtime()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                message = f"dockerd exited {self.proc.returncode}:\n{self.log()}"
                self.stop()
                raise RuntimeCommandError(message)
            if runtime.cli("version", check=False, timeout=30).returncode == 0:
                return runtime
            time.sleep(0.2)
        message = f"dockerd did not answer within {timeout}s:\n{self.log()}"
        self.stop()
        raise RuntimeCommandError(message)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the daemon by PID, wait, then SIGKILL its process group if needed."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            # containerd and shims were started in the daemon's group; none may linger.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        _remove_tree(self.base)


class Podman:
    """podman with a private --root/--runroot/--tmpdir, runc and cgroupfs (crun fails here)."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = base or Path(tempfile.mkdtemp(prefix="spp-", dir="/tmp"))

    def runtime(self) -> ContainerRuntime:
        b = self.base
        argv = (
            "podman",
            "--root",
            str(b / "root"),
            "--runroot",
            str(b / "run"),
            "--tmpdir",
            str(b / "tmp"),
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        )
        init = next((p for p in INIT_PATHS if Path(p).exists()), None)
        flags = PODMAN_RUN_FLAGS + ((f"--init-path={init}",) if init else ())
        env = {k: v for k, v in os.environ.items() if k not in {"CONTAINER_HOST"}}
        env["REGISTRY_AUTH_FILE"] = str(b / "auth.json")  # never read or write the host's
        env["TMPDIR"] = str(b / "tmp")
        (b / "tmp").mkdir(parents=True, exist_ok=True)
        if not (b / "auth.json").exists():
            (b / "auth.json").write_text('{"auths": {}}\n')
        return ContainerRuntime("podman", argv, env, flags)

    def stop(self, runtime: ContainerRuntime | None = None) -> None:
        runtime = runtime or self.runtime()
        runtime.stop_all()
        runtime.cli("rm", "-af", "-t", "1", check=False)
        runtime.cli("rmi", "-af", check=False)
        _remove_tree(self.base)


# --- a static test server (the image's /app in the e2e tests) -------------------------------

SERVER_C = r"""
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

static volatile sig_atomic_t stopping = 0;
static void on_signal(int sig) { (void)sig; stopping = 1; }

/* The name of a uid from /etc/passwd, parsed by hand: static glibc cannot use NSS. */
static void user_name(unsigned uid, char *out, size_t n) {
    char line[512];
    snprintf(out, n, "?");
    FILE *f = fopen("/etc/passwd", "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        char *name = strtok(line, ":"), *pw = strtok(NULL, ":"), *id = strtok(NULL, ":");
        if (name && pw && id && (unsigned)strtoul(id, NULL, 10) == uid) {
            snprintf(out, n, "%s", name);
            break;
        }
    }
    fclose(f);
}

/* Can this user create a file in /tmp (the 1777 directory)? */
static const char *tmp_writable(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/probe-%d", (int)getpid());
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd < 0) return "no";
    close(fd);
    unlink(path);
    return "ok";
}

int main(int argc, char **argv) {
    const char *port_text = argc > 1 ? argv[1] : getenv("PORT");
    int port = port_text ? atoi(port_text) : 0;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: %s PORT (or PORT=...)\n", argv[0]);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;            /* no SA_RESTART: accept() returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(s, 64) != 0) {
        fprintf(stderr, "cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 1;
    }
    char name[64];
    user_name((unsigned)getuid(), name, sizeof name);
    char body[256];
    int body_len = snprintf(body, sizeof body, "uid=%u gid=%u user=%s tmp=%s\n",
                            (unsigned)getuid(), (unsigned)getgid(), name, tmp_writable());
    printf("listening on 127.0.0.1:%d as %s\n", port, name);
    fflush(stdout);
    while (!stopping) {
        int c = accept(s, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR) continue;
            break;
        }
        char req[4096];
        size_t got = 0;
        while (got < sizeof req - 1) {
            ssize_t r = read(c, req + got, sizeof req - 1 - got);
            if (r <= 0) break;
            got += (size_t)r;
            req[got] = 0;
            if (strstr(req, "\r\n\r\n")) break;
        }
        char head[256];
        int head_len = snprintf(head, sizeof head,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            "Connection: close\r\n\r\n", body_len);
        if (write(c, head, (size_t)head_len) < 0 || write(c, body, (size_t)body_len) < 0) {
            perror("write");
        }
        close(c);
    }
    printf("stopping\n");
    fflush(stdout);
    return 0;
}
"""


def build_static_server(directory: Path) -> Path:
    """Compile SERVER_C with ``gcc -static``: it must run in an empty rootfs."""
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "server.c"
    source.write_text(SERVER_C)
    binary = directory / "server"
    _run(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", str(binary), str(source)])
    return binary


def scratch_image(
    executable: Path,
    workdir: Path | None = None,
    *,
    cmd: Sequence[str] = (),
    epoch: int = 0,
    user: str = "1000:1000",
) -> Any:
    """The image the e2e tests run: ``scratch_rootfs(executable)`` as one layer, /app first."""
    from scratchpack.oci import image as im
    from scratchpack.oci.config import ImageConfig
    from scratchpack.oci.layer import layer_from_entries
    from scratchpack.oci.rootfs import scratch_rootfs

    layer = layer_from_entries(scratch_rootfs(executable), mtime=epoch, workdir=workdir)
    img = im.append_layers(im.empty(), layer)
    img = im.with_config(img, ImageConfig(user=user, entrypoint=("/app",), cmd=tuple(cmd)))
    return im.with_created(img, epoch)


# --- session context managers (wrap them in session fixtures) ------------------------------


@contextlib.contextmanager
def docker_session() -> Iterator[ContainerRuntime]:
    """A private dockerd, stopped by PID on exit (and its state directory removed)."""
    daemon = Dockerd()
    runtime = daemon.start()
    try:
        yield runtime
    finally:
        runtime.stop_all()
        daemon.stop()


@contextlib.contextmanager
def podman_session() -> Iterator[ContainerRuntime]:
    """podman on a private store; containers stopped and the store removed on exit."""
    podman = Podman()
    runtime = podman.runtime()
    try:
        runtime.cli("info")  # fail early, in podman's own words, if it cannot start
        yield runtime
    finally:
        podman.stop(runtime)
