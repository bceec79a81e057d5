"""The FROM-scratch filesystem: the executable plus the few files a non-root process needs.

``/etc/passwd`` and ``/etc/group`` let ``USER appuser`` resolve and give tools a name for the
uid; ``/tmp`` (1777) is where Python-based executables unpack themselves. Nothing else: no
shell, no libc, so the executable must be static.
"""

from __future__ import annotations

import re
import ssl
import stat
import struct
from pathlib import Path

from scratchpack.errors import ImageError
from scratchpack.oci.layer import FileEntry

APP_PATH = "/app"  # entries use the relative form (app)
CA_BUNDLE_PATH = "/etc/ssl/certs/ca-certificates.crt"
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_MAX_UID = 65534
_PT_INTERP = 3
_ELF_MACHINES = {3: "386", 40: "arm", 62: "amd64", 183: "arm64", 243: "riscv64", 21: "ppc64le"}
_PEM_LABEL = re.compile(rb"^-----BEGIN ([^\r\n]*?)-----\s*$", re.MULTILINE)
_MAX_CA_BUNDLE = 16 << 20  # certifi's is ~300 KB; a system bundle ~200 KB
_CA_HINT = "give a PEM file of CA certificates, e.g. /etc/ssl/certs/ca-certificates.crt"


def elf_info(path: Path) -> tuple[str, str | None]:
    """(architecture, ELF interpreter or None) of an executable; ImageError if not ELF.

    A dynamically linked program in an empty rootfs fails with a baffling "no such file or
    directory" (its loader is missing), so the builder checks for PT_INTERP up front.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 52 or head[:4] != b"\x7fELF":
                raise ImageError(
                    f"{path} is not an ELF executable",
                    hint="a FROM-scratch image has no shell or interpreter: "
                    "build one static binary (e.g. with `scratchpack exe`)",
                )
            is64, endian = head[4] == 2, "<" if head[5] == 1 else ">"
            machine = struct.unpack_from(endian + "H", head, 18)[0]
            if is64:
                (phoff,) = struct.unpack_from(endian + "Q", head, 0x20)
                phentsize, phnum = struct.unpack_from(endian + "HH", head, 0x36)
            else:
                (phoff,) = struct.unpack_from(endian + "I", head, 0x1C)
                phentsize, phnum = struct.unpack_from(endian + "HH", head, 0x2A)
            interp = None
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                ph = f.read(phentsize)
                if len(ph) < phentsize or phentsize < 16:
                    raise ImageError(f"{path} has a truncated ELF program header table")
                if struct.unpack_from(endian + "I", ph, 0)[0] == _PT_INTERP:
                    off, size = (
                        struct.unpack_from(endian + "QxxxxxxxxxxxxxxxxQ", ph, 8)
                        if is64
                        else struct.unpack_from(endian + "IxxxxxxxxI", ph, 4)
                    )
                    f.seek(off)
                    interp = f.read(min(size, 4096)).rstrip(b"\0").decode(errors="replace")
    except OSError as err:
        raise ImageError(f"cannot read executable {path}: {err.strerror}") from err
    return _ELF_MACHINES.get(machine, f"elf-machine-{machine}"), interp


def _check_ids(user: str, uid: int, gid: int) -> None:
    if not _USER.fullmatch(user) or user == "root":
        raise ImageError(
            f"invalid run user name {user!r}",
            hint="use a lowercase POSIX name other than root, e.g. 'appuser' (max 32 chars)",
        )
    for what, value in (("uid", uid), ("gid", gid)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_UID:
            raise ImageError(
                f"invalid {what} {value!r} for user {user!r}",
                hint=f"use 1..{_MAX_UID}: 0 is root, and rootless podman maps only 65536 ids",
            )


def read_ca_bundle(path: Path) -> bytes:
    """The bytes of a CA bundle, if they are PEM certificates and nothing else.

    The bundle is copied into the image readable by everyone: a mistyped path (a key, a
    password file) would otherwise publish it. Every PEM block must be a CERTIFICATE (text
    between blocks, like certifi's comments, is allowed) and OpenSSL must load them all.
    """
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_CA_BUNDLE + 1)
    except OSError as err:
        raise ImageError(
            f"cannot read the CA bundle {path}: {err.strerror or err}",
            hint=_CA_HINT,
            remedy="ca-certs-pem",
        ) from None
    if len(data) > _MAX_CA_BUNDLE:
        raise ImageError(
            f"the CA bundle {path} is larger than {_MAX_CA_BUNDLE >> 20} MiB: not a CA bundle",
            hint=_CA_HINT,
            remedy="ca-certs-pem",
        )
    labels = [m.decode("ascii", "replace") for m in _PEM_LABEL.findall(data)]
    others = sorted({label for label in labels if label != "CERTIFICATE"})
    if not labels or others:
        what = f"{', '.join(others)} blocks" if others else "no PEM certificate"
        raise ImageError(
            f"the CA bundle {path} holds {what}: only PEM certificates may go into the image",
            hint=_CA_HINT,
            remedy="ca-certs-pem",
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(cadata=data.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as err:
        raise ImageError(
            f"the CA bundle {path} does not load as PEM certificates: {err}",
            hint=_CA_HINT,
            remedy="ca-certs-pem",
        ) from None
    return data


def scratch_rootfs(
    executable: Path,
    *,
    user: str = "appuser",
    uid: int = 1000,
    gid: int = 1000,
    ca_bundle: Path | None = None,
    allow_dynamic: bool = False,
) -> tuple[FileEntry, ...]:
    """The entries of the one layer: /app, /etc/{passwd,group}, /tmp and an optional CA bundle.

    /app is root-owned 0555, so the run user can execute it but not replace it.
    """
    _check_ids(user, uid, gid)
    try:
        st = executable.stat()
    except OSError as err:
        raise ImageError(
            f"executable {executable} cannot be read: {err.strerror}",
            hint="build it first (scratchpack exe) and pass its path",
        ) from err
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"executable {executable} is not a regular file")
    _, interp = elf_info(executable)
    if interp is not None and not allow_dynamic:
        raise ImageError(
            f"{executable} is dynamically linked (it needs {interp}), "
            "which does not exist in a FROM-scratch image",
            hint="link it statically (gcc -static, CGO_ENABLED=0, or `scratchpack exe`, "
            "which runs staticx)",
        )
    passwd = (
        f"root:x:0:0:root:/root:/sbin/nologin\n{user}:x:{uid}:{gid}::/home/{user}:/sbin/nologin\n"
    )
    group = f"root:x:0:\n{user}:x:{gid}:\n"
    entries = [
        FileEntry(APP_PATH[1:], 0o555, source=executable),
        FileEntry("etc", 0o755, "dir"),
        FileEntry("etc/passwd", 0o644, data=passwd.encode()),
        FileEntry("etc/group", 0o644, data=group.encode()),
        FileEntry("tmp", 0o1777, "dir"),
    ]
    if ca_bundle is not None:
        if not ca_bundle.is_file():
            raise ImageError(
                f"CA bundle {ca_bundle} is not a readable file",
                hint="e.g. /etc/ssl/certs/ca-certificates.crt from the ca-certificates package",
            )
        # the bytes checked are the bytes shipped
        entries.append(FileEntry(CA_BUNDLE_PATH[1:], 0o444, data=read_ca_bundle(ca_bundle)))
    return tuple(entries)


__all__ = ["APP_PATH", "CA_BUNDLE_PATH", "elf_info", "read_ca_bundle", "scratch_rootfs"]
