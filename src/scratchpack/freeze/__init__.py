"""The freezer: a Python project -> ONE statically linked executable.

PyInstaller --onefile, then staticx, in an isolated cached build venv; results are cached under a
key that covers everything that changes the output bytes (sources, declared dependencies, Python,
tool pins, options, SOURCE_DATE_EPOCH), so a warm build is a hash and a lookup.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from scratchpack._ctx import log, run_subprocess, step
from scratchpack._types import Runner
from scratchpack.errors import FreezeError, ProjectError, SinkError
from scratchpack.freeze import env as _env
from scratchpack.freeze import static as _static
from scratchpack.freeze.project import (
    dependency_digest,
    load_pyproject,
    project_info,
    source_digest,
    stage_sources,
)
from scratchpack.freeze.pyinstaller import run_pyinstaller
from scratchpack.freeze.spec import (
    DEFAULT_COMPRESSION,
    DEFAULT_SOURCE_DATE_EPOCH,
    TOOL_PINS,
    Distribution,
    FreezeSpec,
    FrozenApp,
    ProjectInfo,
)
from scratchpack.freeze.staticx import run_staticx

__all__ = [
    "DEFAULT_COMPRESSION",
    "Distribution",
    "FreezeSpec",
    "FrozenApp",
    "ProjectInfo",
    "default_cache_dir",
    "freeze",
    "read_project",
    "write_executable",
]

#: Bumped whenever the build recipe changes in a way the other key parts do not capture.
_RECIPE_VERSION = "3"


def read_project(project_dir: Path, entrypoint: str | None = None) -> ProjectInfo:
    """Validate the project's pyproject.toml; ``entrypoint`` overrides [tool.scratchpack]."""
    return project_info(load_pyproject(Path(project_dir)), entrypoint)


def default_cache_dir() -> Path:
    """$SCRATCHPACK_CACHE_DIR, else $XDG_CACHE_HOME/scratchpack, else ~/.cache/scratchpack."""
    if env := os.environ.get("SCRATCHPACK_CACHE_DIR"):
        return Path(env)
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg) / "scratchpack"
    return Path.home() / ".cache" / "scratchpack"


def _source_date_epoch(spec: FreezeSpec) -> int:
    if spec.source_date_epoch is not None:
        return spec.source_date_epoch
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return DEFAULT_SOURCE_DATE_EPOCH
    try:
        value = int(raw)
    except ValueError as err:
        raise ProjectError(
            f"SOURCE_DATE_EPOCH={raw!r} is not an integer number of seconds"
        ) from err
    # zip (base_library.zip) cannot store times before 1980
    return max(value, DEFAULT_SOURCE_DATE_EPOCH)


def _exe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "app"


def _app_from_meta(path: Path, meta: dict[str, object], cached: bool) -> FrozenApp:
    project = meta["project"]
    dists = meta["distributions"]
    assert isinstance(project, dict) and isinstance(dists, list)
    project["ports"] = tuple(project["ports"])
    project["args"] = tuple(project["args"])
    project["exclude_modules"] = tuple(project.get("exclude_modules", ()))
    project["include_modules"] = tuple(project.get("include_modules", ()))
    return FrozenApp(
        path=path,
        sha256=str(meta["sha256"]),
        size=int(str(meta["size"])),
        project=ProjectInfo(**project),
        distributions=tuple(Distribution(**d) for d in dists),
        python_version=str(meta["python_version"]),
        cached=cached,
        runtime="static" if meta.get("runtime") == "static" else "pyinstaller",
    )


def _load_cached(entry: Path) -> FrozenApp | None:
    """The cached result if it is complete and its bytes still hash to what was recorded."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        path = entry / str(meta["file"])
        if path.stat().st_size != meta["size"]:
            return None
        return _app_from_meta(path, meta, cached=True)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def freeze(spec: FreezeSpec, *, runner: Runner = run_subprocess) -> FrozenApp:
    """Build (or fetch from the cache) the static executable for ``spec.project_dir``."""
    project_dir = Path(spec.project_dir).absolute()
    data = load_pyproject(project_dir)
    info = project_info(data, spec.entrypoint)
    epoch = _source_date_epoch(spec)
    cache_dir = Path(spec.cache_dir) if spec.cache_dir else default_cache_dir()
    runtime = spec.runtime or info.runtime or "pyinstaller"
    static = runtime == "static"
    py = _env.probe_python(spec.python, runner=runner, need_libpython=not static)
    if static and not py.version.startswith(f"{_static.PYTHON_VERSION}."):
        raise ProjectError(
            f"--runtime static embeds CPython {_static.PYTHON_VERSION}, but the Python that "
            f"installs the app's dependencies is {py.version} ({py.executable})",
            hint=f"pass --python with a Python {_static.PYTHON_VERSION} interpreter "
            "(e.g. /usr/bin/python3 on Debian 12)",
        )
    excludes = tuple(sorted(set(spec.exclude_modules) | set(info.exclude_modules)))
    includes = tuple(sorted(set(info.include_modules)))
    if static and ":" not in info.entrypoint:
        includes = (*includes, "runpy")  # the launcher runs a plain module with runpy
    key_doc = {
        "recipe": _RECIPE_VERSION,
        "runtime": runtime,
        "tools": _static.freezer_digest() if static else TOOL_PINS,
        "includes": includes,
        "python": py.identity,
        "sources": source_digest(project_dir),
        "entrypoint": info.entrypoint,
        "compression": spec.compression,
        "exclude_modules": excludes,
        "source_date_epoch": epoch,
    }
    key = hashlib.sha256(json.dumps(key_doc, sort_keys=True).encode()).hexdigest()[:32]
    entry = cache_dir / "out" / key
    if spec.use_cache and (hit := _load_cached(entry)) is not None:
        log(f"using cached executable {hit.path}")
        return hit
    try:
        (cache_dir / "tmp").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FreezeError(
            f"cannot create the build cache {cache_dir}: {err.strerror}",
            hint="set SCRATCHPACK_CACHE_DIR to a writable directory",
        ) from err
    name = _exe_name(info.name)
    with tempfile.TemporaryDirectory(prefix="build-", dir=cache_dir / "tmp") as tmp:
        work = Path(tmp)
        stage = work / "src" / name
        stage_sources(project_dir, stage)
        deps_key = dependency_digest(data, project_dir)
        with _env.build_env(cache_dir, py, deps_key, runner=runner, reuse=spec.use_cache) as (
            benv,
            fresh,
        ):
            _env.install_project(benv, stage, with_deps=fresh, runner=runner)
            with step(f"checking that entry point {info.entrypoint} imports"):
                _env.check_entrypoint(benv, info.entrypoint, work, runner=runner)
            if fresh:
                _env.mark_ready(benv)
            dists = _env.list_distributions(benv, info.name, runner=runner)
            python_version = py.version
            if static:
                built = _static.build_static(
                    benv,
                    entrypoint=info.entrypoint,
                    name=name,
                    distributions=dists,
                    excludes=excludes,
                    includes=includes,
                    workdir=work,
                    cache_dir=cache_dir,
                    runner=runner,
                )
                result = built.path
                python_version = built.python_version
            else:
                result = _pyinstaller_staticx(
                    benv, name, info.entrypoint, excludes, work, epoch, spec, runner=runner
                )
        if not info.version:
            own = next((d for d in dists if _norm(d.name) == _norm(info.name)), None)
            info = dataclasses.replace(info, version=own.version if own else "0")
        size = result.stat().st_size
        meta = {
            "file": name,
            "sha256": _sha256(result),
            "size": size,
            "project": dataclasses.asdict(info),
            "distributions": [dataclasses.asdict(d) for d in dists],
            "python_version": python_version,
            "runtime": runtime,
            "key": key_doc,
        }
        # Publish atomically: build the entry beside its final place, then rename it in.
        staged_entry = work / "entry"
        staged_entry.mkdir()
        os.replace(result, staged_entry / name)
        (staged_entry / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        entry.parent.mkdir(parents=True, exist_ok=True)
        old = work / "old-entry"
        with contextlib.suppress(FileNotFoundError):
            os.replace(entry, old)
        os.replace(staged_entry, entry)
    return _app_from_meta(entry / name, meta, cached=False)


def _pyinstaller_staticx(  # noqa: PLR0917 - a private step with one caller
    benv: _env.BuildEnv,
    name: str,
    entrypoint: str,
    excludes: tuple[str, ...],
    work: Path,
    epoch: int,
    spec: FreezeSpec,
    *,
    runner: Runner,
) -> Path:
    """The default route: PyInstaller --onefile, then staticx bundles its shared libraries."""
    onefile = run_pyinstaller(
        benv,
        name=name,
        entrypoint=entrypoint,
        excludes=excludes,
        workdir=work,
        source_date_epoch=epoch,
        runner=runner,
    )
    static_dir = work / "static"
    static_dir.mkdir()
    return run_staticx(
        benv,
        onefile,
        static_dir / name,
        compression=spec.compression,
        source_date_epoch=epoch,
        runner=runner,
    )


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def write_executable(app: FrozenApp, output: Path) -> Path:
    """Copy the executable to ``output`` atomically (temp file + rename), mode 0755."""
    output = Path(output)
    if output.is_dir():
        output = output / app.path.name
    parent = output.parent if str(output.parent) else Path()
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", dir=parent)
    except OSError as err:
        raise SinkError(
            f"cannot write {output}: {err.strerror}",
            hint="choose an output path in an existing, writable directory (-o PATH)",
        ) from err
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as dst, app.path.open("rb") as src:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.chmod(0o755)
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return output
