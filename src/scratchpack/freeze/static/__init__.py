"""The static freezer (``--runtime static``): one musl-linked CPython with the app inside.

Pipeline: ensure the cached runtime kit -> find the app's modules and compile them with the
kit's own interpreter into a zip -> link a launcher with only the built-in modules the app
imports -> append the zip to the ELF. At run time zipimport reads the modules from the
executable itself: nothing is extracted, one process, no /tmp or /proc needed.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.resources
import json
import os
from dataclasses import dataclass
from pathlib import Path

from scratchpack._ctx import step, warn
from scratchpack._types import Runner
from scratchpack.errors import FreezeError, ProjectError
from scratchpack.freeze.env import BuildEnv
from scratchpack.freeze.spec import Distribution
from scratchpack.freeze.static.link import link_executable
from scratchpack.freeze.static.runtime import (
    PYTHON_VERSION,
    RuntimeKit,
    ensure_runtime,
    runtime_key,
)

__all__ = [
    "PYTHON_VERSION",
    "StaticBuild",
    "build_static",
    "ensure_runtime",
    "freezer_digest",
    "runtime_key",
]

#: Stored, not deflated: the image layer is gzipped anyway, and inflating every module at
#: import costs start-up time (docs/bench/static-runtime.md).
ZIP_COMPRESSION = "stored"


@dataclass(frozen=True, slots=True)
class StaticBuild:
    """What the static freezer made, for the cache entry and the SBOM."""

    path: Path
    python_version: str


def freezer_digest() -> str:
    """Hash of the files that decide what the static freezer emits, for the output cache key."""
    h = hashlib.sha256(runtime_key().encode())
    package = importlib.resources.files("scratchpack.freeze.static")
    for name in ("_bundle.py", "launcher.c", "link.py", "__init__.py"):
        h.update(name.encode() + b"\0" + package.joinpath(name).read_bytes())
    return h.hexdigest()[:24]


def _site_packages(benv: BuildEnv, *, runner: Runner) -> list[str]:
    code = (
        "import json, sysconfig; print(json.dumps(sorted("
        "{sysconfig.get_path('purelib'), sysconfig.get_path('platlib')})))"
    )
    proc = benv.run(runner, ["-c", code])
    if proc.returncode != 0:
        raise FreezeError("cannot locate the build venv's site-packages", output=proc.stdout)
    return [str(p) for p in json.loads(proc.stdout.strip().splitlines()[-1])]


def _owners(site_dirs: list[str]) -> dict[str, str]:
    """Installed file (absolute path) -> distribution name, from every dist-info RECORD."""
    owners: dict[str, str] = {}
    for site in site_dirs:
        for info in sorted(Path(site).glob("*.dist-info")):
            record = info / "RECORD"
            if not record.is_file():
                continue
            name = info.name.removesuffix(".dist-info").rsplit("-", 1)[0]
            with record.open(newline="") as f:
                for row in csv.reader(f):
                    if row:
                        owners[os.path.normpath(os.path.join(site, row[0]))] = name
    return owners


def _c_extension_error(extensions: list[dict[str, str]], site_dirs: list[str]) -> FreezeError:
    owners = _owners(site_dirs)
    lines = []
    for ext in extensions:
        dist = owners.get(os.path.normpath(ext["file"]), "")
        lines.append(
            f"  {ext['module']} ({os.path.basename(ext['file'])}"
            + (f", from the {dist} distribution)" if dist else ")")
        )
    return FreezeError(
        "the static runtime cannot load C extension modules, and the app imports "
        f"{len(extensions)}:\n" + "\n".join(lines),
        hint="build with the default runtime instead (drop --runtime static, or pass "
        "--runtime pyinstaller), or use a pure-Python alternative of those packages",
    )


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
) -> StaticBuild:
    """Build ``workdir/static/<name>``: the kit's interpreter, the app's built-ins and modules."""
    kit = ensure_runtime(cache_dir, runner=runner)
    site_dirs = _site_packages(benv, runner=runner)
    bundle_zip = workdir / "modules.zip"
    request = {
        "entry": entrypoint.partition(":")[0],
        "run_main": ":"
        not in entrypoint,  # a plain module runs as __main__ (a package: its __main__)
        "search_path": [str(kit.stdlib), *site_dirs],
        "app_paths": site_dirs,
        "stdlib": str(kit.stdlib),
        "excludes": list(excludes),
        "includes": list(includes),
        "distributions": [d.name for d in distributions],
        "output": str(bundle_zip),
        "compression": ZIP_COMPRESSION,
        "optimize": 0,
    }
    request_file = workdir / "bundle-request.json"
    request_file.write_text(json.dumps(request))
    with step("finding and compiling the app's modules"):
        report = _run_bundle(kit, request_file, workdir, runner=runner)
    if report.get("error"):
        raise ProjectError(str(report["error"]))
    if report["extensions"]:
        raise _c_extension_error(report["extensions"], site_dirs)
    _warn_about(report)
    out_dir = workdir / "static"
    out_dir.mkdir()
    exe = out_dir / name
    with step("linking the static executable"):
        builtins = set(report["builtins"])
        if ZIP_COMPRESSION == "deflated":
            builtins.add("zlib")  # zipimport inflates with it
        link_executable(kit, builtins, entrypoint, exe, workdir / "link", runner=runner)
    with exe.open("ab") as f, bundle_zip.open("rb") as z:
        f.write(z.read())
    exe.chmod(0o755)
    return StaticBuild(path=exe, python_version=kit.python_version)


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
            "it fails if the app uses it at run time: then use --runtime pyinstaller"
        )


def _run_bundle(kit: RuntimeKit, request_file: Path, workdir: Path, *, runner: Runner) -> dict:  # type: ignore[type-arg]
    script = importlib.resources.files("scratchpack.freeze.static").joinpath("_bundle.py")
    copy = workdir / "_bundle.py"
    copy.write_text(script.read_text())
    (workdir / "link").mkdir(exist_ok=True)
    proc = runner([str(kit.python), "-I", "-S", str(copy), str(request_file)], cwd=workdir)
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
