"""Exec a program in an empty, read-only root filesystem, as the given uid (run as root).

The webhello behaviour suite uses it (WEBHELLO_SANDBOX=ro-rootfs, tests/webhello/_server.py) to
run a --runtime static executable the way a `FROM scratch` container with `--read-only` does:
the new root is a tmpfs holding only /etc/passwd and /etc/group (copies of the host's, so user
names match what the suite expects), the executable (read-only bind at its own path, so argv[0]
is unchanged) and the caller's working directory plus any --bind directories (read-write binds
at the same paths: the test's "volumes"). The root is then remounted read-only: no /tmp, no
/proc, no /dev. The process keeps its PID (no fork), so the suite signals it directly.

An executable for another machine (linux/arm64 on x86-64) runs under a user-mode emulator given
with --emulator (qemu-aarch64-static: itself a static program, bound read-only at its own path
like the executable); the program keeps its argv[0], as qemu passes the file name through.

Run by Debian's /usr/bin/python3 with -I (stdlib only; the caller's environment, which is the
program's, may hold anything):

    python3 -I .../testsupport/static_sandbox.py [--uid N] [--gid N] [--bind DIR]...
        [--emulator QEMU] -- EXE [ARG...]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import sys
from collections.abc import Sequence

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
#: Where the new root is assembled: a tmpfs mounted there inside the private mount namespace
#: only. On the host it stays an empty directory (created once, never mounted on).
NEW_ROOT = "/tmp/.scratchpack-static-sandbox"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.unshare.argtypes = [ctypes.c_int]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def _inside(path: str) -> str:
    return os.path.join(NEW_ROOT, path.lstrip("/"))


def _mountpoint(path: str, *, directory: bool) -> str:
    """Create the (empty) mount point for ``path`` in the new root, parents mode 0755."""
    target = _inside(path)
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if directory:
        os.makedirs(target, mode=0o755, exist_ok=True)
    elif not os.path.exists(target):
        with open(target, "wb"):
            pass
    return target


def _bind_file(path: str) -> None:
    """``path`` read-only at its own place in the new root."""
    target = _mountpoint(path, directory=False)
    _mount(path, target, None, MS_BIND)
    _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def build_root(exe: str, cwd: str, binds: Sequence[str], emulator: str | None = None) -> None:
    """Assemble the new root in a private mount namespace (see the module docstring)."""
    os.makedirs(NEW_ROOT, mode=0o755, exist_ok=True)
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates to the host
    _mount("tmpfs", NEW_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    etc = _inside("/etc")
    os.makedirs(etc, mode=0o755)
    for name in ("passwd", "group"):
        shutil.copyfile(f"/etc/{name}", os.path.join(etc, name))
        os.chmod(os.path.join(etc, name), 0o644)
    # parents before children: a bind below another one must be mounted after it
    for path in sorted({cwd, *binds}, key=lambda p: p.rstrip("/").count("/")):
        if path.startswith(NEW_ROOT + "/") or path in {"/", NEW_ROOT}:
            raise SystemExit(f"static_sandbox: cannot bind {path!r} (the sandbox uses {NEW_ROOT})")
        _mount(path, _mountpoint(path, directory=True), None, MS_BIND | MS_REC)
    for path in (exe, *([emulator] if emulator else [])):  # last: no directory bind covers them
        _bind_file(path)
    _mount(None, NEW_ROOT, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="static_sandbox")
    parser.add_argument("--uid", type=int, default=1000)
    parser.add_argument("--gid", type=int)
    parser.add_argument("--bind", action="append", default=[], metavar="DIR")
    parser.add_argument("--emulator", metavar="QEMU", help="run EXE under this static emulator")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or not os.path.isabs(command[0]):
        parser.error("give the executable by its absolute path after --")
    exe, cwd = command[0], os.getcwd()
    binds = [os.path.abspath(b) for b in args.bind if os.path.isdir(b)]
    emulator = os.path.realpath(args.emulator) if args.emulator else None
    build_root(exe, cwd, binds, emulator)
    os.chroot(NEW_ROOT)
    os.chdir(cwd)
    gid = args.uid if args.gid is None else args.gid
    os.setgroups([])
    os.setgid(gid)
    os.setuid(args.uid)
    program, argv = (emulator, [emulator, *command]) if emulator else (exe, command)
    try:
        os.execve(program, argv, dict(os.environ))
    except OSError as err:
        print(f"static_sandbox: cannot exec {program}: {err}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
