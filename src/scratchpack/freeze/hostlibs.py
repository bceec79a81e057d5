"""The host's shared libraries inside a default-route executable, as SBOM components.

PyInstaller copies the C libraries the app's modules load (OpenSSL, zlib, libffi...) and staticx
adds everything those and the bootloader link against (glibc, its loader); none of them is a
Python distribution, so the SBOM would not list them. ``ldd`` gives each library's closure, and
the host's dpkg database (``/var/lib/dpkg``) names the package and version that installed it.
A library no package owns (pyenv's libpython) is not listed here: CPython is its own component.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path

from scratchpack._types import Runner
from scratchpack.freeze.spec import Component

DPKG = Path("/var/lib/dpkg")
OS_RELEASE = Path("/etc/os-release")

_LDD_LINE = re.compile(r"(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)")


def library_closure(paths: Iterable[str], *, runner: Runner) -> set[str]:
    """``paths`` and every library they load, as ``ldd`` resolves them on this host."""
    found = set(paths)
    for path in sorted(found):
        proc = runner(["ldd", path])
        if proc.returncode == 0:
            found.update(m[1] for m in _LDD_LINE.finditer(proc.stdout or ""))
    return found


def _aliases(path: str) -> set[str]:
    """The names dpkg may list a file under: as given, resolved, and across the /usr merge."""
    names = {path, os.path.realpath(path)}
    for name in list(names):
        if name.startswith("/usr/"):
            names.add(name.removeprefix("/usr"))
        else:
            names.add("/usr" + name)
    return names


def _status(dpkg: Path) -> dict[str, tuple[str, str]]:
    """package[:arch] -> (version, architecture) of every installed package."""
    out: dict[str, tuple[str, str]] = {}
    for stanza in (dpkg / "status").read_text(errors="replace").split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, re.M))
        if "Package" in fields and "install ok installed" in fields.get("Status", ""):
            arch = fields.get("Architecture", "")
            for key in (fields["Package"], f"{fields['Package']}:{arch}"):
                out[key] = (fields.get("Version", ""), arch)
    return out


def _os_release(path: Path) -> Mapping[str, str]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    return {k: v.strip('"') for k, v in re.findall(r"^(\w+)=(.*)$", text, re.M)}


def debian_components(
    libraries: Iterable[str], *, dpkg: Path = DPKG, os_release: Path = OS_RELEASE
) -> tuple[Component, ...]:
    """One component per dpkg package that installed one of ``libraries`` (none off Debian)."""
    wanted = {alias: lib for lib in libraries for alias in _aliases(lib)}
    info = dpkg / "info"
    if not wanted or not info.is_dir():
        return ()
    owners: set[str] = set()
    for listing in sorted(info.glob("*.list")):
        for line in listing.read_text(errors="replace").splitlines():
            if line in wanted:
                owners.add(listing.name.removesuffix(".list"))
                break
    status = _status(dpkg)
    release = _os_release(os_release)
    distro = f"{release.get('ID', 'debian')}-{release.get('VERSION_ID', '')}".rstrip("-")
    out = []
    for owner in sorted(owners):
        version, arch = status.get(owner, ("", ""))
        name = owner.partition(":")[0]
        quoted = urllib.parse.quote(version, safe="")
        out.append(
            Component(
                name,
                version,
                f"pkg:deb/{release.get('ID', 'debian')}/{name}@{quoted}?arch={arch}"
                f"&distro={distro}",
                download_location="https://deb.debian.org/debian/",
            )
        )
    return tuple(out)
