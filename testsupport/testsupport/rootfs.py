"""Run an executable in an otherwise empty root filesystem, as a non-root user.

The root holds only the executable, /etc/passwd, /etc/group, a 1777 /tmp and an empty /proc
mount point. The process runs in fresh PID and mount namespaces (`unshare -p -f -m`), proc is
mounted inside the new root (frozen binaries read /proc/self/exe), then `chroot --userspec`.
It is started with setsid so the whole process group can be signalled: a server that is PID 1
of its namespace, under another uid, ignores a SIGTERM sent to `unshare` alone.

Shared by the freezer tests and the image tests (docs: docs/design/freezer.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nappuser:x:1000:1000::/home/appuser:/sbin/nologin\n"
GROUP = "root:x:0:\nappuser:x:1000:\n"
APP_UID = 1000


def make_rootfs(
    root: Path,
    executable: Path,
    *,
    name: str = "app",
    files: Mapping[str, bytes] | None = None,
) -> Path:
    """Lay out the minimal root in ``root``; returns the in-root path of the executable."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    for d in ("etc", "proc"):
        (root / d).mkdir(exist_ok=True)
        (root / d).chmod(0o755)
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    for rel, data in (files or {}).items():
        target = root / rel.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o644)
    dest = root / name
    shutil.copyfile(executable, dest)
    dest.chmod(0o755)
    return Path("/") / name


def make_scratch_rootfs(
    root: Path,
    executable: Path,
    *,
    name: str = "app",
    files: Mapping[str, bytes] | None = None,
) -> Path:
    """A truly empty root for --runtime static: the executable, /etc/passwd, /etc/group and
    ``files``; no /tmp, no /proc (run it with read_only=True). Returns the in-root path."""
    exe = make_rootfs(root, executable, name=name, files=files)
    (root / "tmp").rmdir()
    (root / "proc").rmdir()
    return exe


def rootfs_command(
    root: Path,
    argv: Sequence[str],
    *,
    uid: int = APP_UID,
    gid: int = APP_UID,
    read_only: bool = False,
    shm: bool = False,
) -> list[str]:
    """unshare + mount proc in the root + chroot as uid:gid, exec argv (argv[0] in-root path).

    read_only=True (a scratch root, see make_scratch_rootfs): no proc is mounted and the root
    is bound onto itself and remounted read-only inside the private mount namespace.
    shm=True: a 1777 tmpfs on /dev/shm (created in the root first), as docker and podman give
    every container, --read-only too: multiprocessing's semaphores (sem_open) live there.
    """
    prepare = (
        '/usr/bin/mount --bind "$root" "$root" && /usr/bin/mount -o remount,bind,ro "$root"'
        if read_only
        else '/usr/bin/mount -t proc proc "$root/proc"'
    )
    if shm:
        (root / "dev" / "shm").mkdir(parents=True, exist_ok=True)
        prepare += ' && /usr/bin/mount -t tmpfs -o mode=1777,size=16m tmpfs "$root/dev/shm"'
    script = (
        f"root=$1; user=$2; shift 2; {prepare} && "
        'exec /usr/sbin/chroot --userspec="$user" "$root" "$@"'
    )
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    return [
        unshare, "-p", "-f", "-m", "--propagation", "private",
        "/bin/sh", "-c", script, "sh", str(root), f"{uid}:{gid}", *argv,
    ]  # fmt: skip


def start(
    root: Path,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    uid: int = APP_UID,
    gid: int = APP_UID,
    read_only: bool = False,
    shm: bool = False,
    prefix: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start argv inside the root in its own session/process group; stdout+stderr piped.

    ``prefix`` runs first and must exec the rest (e.g. nsenter into a network namespace).
    """
    return subprocess.Popen(
        [*prefix, *rootfs_command(root, argv, uid=uid, gid=gid, read_only=read_only, shm=shm)],
        env=dict(env or {}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def run(
    root: Path,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    read_only: bool = False,
    shm: bool = False,
    prefix: Sequence[str] = (),
) -> subprocess.CompletedProcess[bytes]:
    """Run to completion inside the root; output is stdout+stderr combined."""
    proc = start(root, argv, env=env, read_only=read_only, shm=shm, prefix=prefix)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc, signal.SIGKILL)
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, None)


def namespace_init(proc: subprocess.Popen[bytes]) -> int | None:
    """Host PID of the app: unshare's forked child (sh and chroot exec into it), PID 1 inside."""
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    """Signal the app (the namespace's PID 1), as `docker stop` does, and wait.

    Only PID 1 is signalled, not the whole group: the frozen app is a chain of processes
    (staticx loader -> PyInstaller parent -> Python) that forward signals down the chain
    themselves, and a copy delivered to every link at once races their teardown. The group
    is SIGKILLed if the app does not exit in time.
    """
    target = namespace_init(proc)
    with contextlib.suppress(ProcessLookupError):
        if target is not None and sig != signal.SIGKILL:
            os.kill(target, sig)
        else:
            os.killpg(proc.pid, sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        raise


@contextlib.contextmanager
def running(
    root: Path,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    read_only: bool = False,
    shm: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """A started process that is always stopped (group SIGKILL) when the block exits."""
    proc = start(root, argv, env=env, read_only=read_only, shm=shm)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def group_pids(pgid: int) -> list[int]:
    """PIDs (host view) of every process in process group ``pgid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def group_rss_kib(pgid: int) -> int:
    """Resident memory summed over the process group (KiB), from /proc/PID/status VmRSS."""
    total = 0
    for pid in group_pids(pgid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under path (what a start extracted into /tmp)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                p = Path(dirpath, name)
                if p.is_file() and not p.is_symlink():
                    total += p.stat().st_size
    return total


def wait_for(predicate: object, timeout: float = 30, interval: float = 0.05) -> bool:
    """Poll a zero-argument callable until it returns truthy or the timeout passes."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
