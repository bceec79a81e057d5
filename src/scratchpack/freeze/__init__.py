"""The freezer: a Python project -> ONE statically linked executable.

Two routes (``--runtime``), each a ``Freezer`` (base.py): PyInstaller --onefile + staticx
(onefile.py, the default) and the static CPython kit (static/). ``freeze()`` picks one from the
route name and does the common part: probe the interpreter, look up the cache, stage the
sources, prepare the route's isolated build venv, publish the result to the cache. Results are
cached under a key that covers everything that changes the output bytes (sources, declared
dependencies, Python, the route's tools and options, SOURCE_DATE_EPOCH), so a warm build is a
hash and a lookup.
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
from collections.abc import Callable, Mapping
from pathlib import Path

from scratchpack import config
from scratchpack._ctx import log, run_subprocess, step, warn
from scratchpack._fs import atomic_output, is_no_space, owned_tempdir, sweep_stale
from scratchpack._types import Platform, Runner, host_platform
from scratchpack.config import ProjectConfig, Runtime
from scratchpack.errors import FreezeError
from scratchpack.freeze import env as _env
from scratchpack.freeze.base import Build, Freezer
from scratchpack.freeze.onefile import PyInstallerFreezer
from scratchpack.freeze.project import (
    check_outputs,
    dependency_digest,
    source_digest,
    stage_sources,
)
from scratchpack.freeze.spec import (
    DEFAULT_COMPRESSION,
    DEFAULT_SOURCE_DATE_EPOCH,
    Component,
    Distribution,
    FreezeSpec,
    FrozenApp,
)
from scratchpack.freeze.static import StaticFreezer

__all__ = [
    "DEFAULT_COMPRESSION",
    "Component",
    "Distribution",
    "FreezeSpec",
    "Freezer",
    "FrozenApp",
    "check_outputs",
    "default_cache_dir",
    "freeze",
    "freezer_for",
    "write_executable",
]

#: Bumped whenever the build recipe changes in a way the other key parts do not capture.
_RECIPE_VERSION = "4"  # 4: the launcher runs multiprocessing children, SCRATCHPACK_PYTHON

#: The routes by name; each freezer is stateless, so a fresh one per build costs nothing.
_FREEZERS: Mapping[Runtime, Callable[[], Freezer]] = {
    "pyinstaller": PyInstallerFreezer,
    "static": StaticFreezer,
}


def freezer_for(route: Runtime | None) -> Freezer:
    """The freezer of ``route`` (None: the default, pyinstaller)."""
    return _FREEZERS[route or "pyinstaller"]()


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
    epoch = config.source_date_epoch(os.environ)
    # zip (base_library.zip) cannot store times before 1980
    return DEFAULT_SOURCE_DATE_EPOCH if epoch is None else max(epoch, DEFAULT_SOURCE_DATE_EPOCH)


def _exe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "app"


def _app_from_meta(
    path: Path,
    meta: Mapping[str, object],
    project: ProjectConfig,
    freezer: Freezer,
    *,
    cached: bool,
    platform: Platform,
) -> FrozenApp:
    dists = meta["distributions"]
    recorded = meta["project"]
    extra = meta.get("components", [])  # per build: host C libraries, wheels' libraries
    assert isinstance(dists, list) and isinstance(recorded, dict) and isinstance(extra, list)
    return FrozenApp(
        path=path,
        sha256=str(meta["sha256"]),
        size=int(str(meta["size"])),
        project=dataclasses.replace(project, version=str(recorded["version"])),
        distributions=tuple(Distribution(**d) for d in dists),
        python_version=str(meta["python_version"]),
        cached=cached,
        runtime=freezer.route,
        components=(*freezer.components(), *(Component(**c) for c in extra)),
        platform=platform,
    )


def _load_cached(
    entry: Path, project: ProjectConfig, freezer: Freezer, platform: Platform
) -> FrozenApp | None:
    """The cached result if it is complete and its bytes still hash to what was recorded."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        path = entry / str(meta["file"])
        if path.stat().st_size != meta["size"] or _sha256(path) != meta["sha256"]:
            # a bit flip or a truncated copy: shipping it would put bytes in the image that
            # the reported sha256 does not describe
            warn(f"cached executable {path} does not match its recorded sha256: rebuilding it")
            return None
        return _app_from_meta(path, meta, project, freezer, cached=True, platform=platform)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: How tools report a full disk (errno 28, 122) in their output.
_NO_SPACE_TEXT = re.compile(r"No space left on device|Disk quota exceeded|\[Errno (28|122)\]")


def freeze(spec: FreezeSpec, *, runner: Runner = run_subprocess) -> FrozenApp:
    """Build (or fetch from the cache) the static executable for ``spec.project_dir``.

    A full disk or an unwritable cache, whether our own write or a tool's failed, is reported
    as such, naming the cache and temp directories, not as the step that happened to hit it.
    """
    cache_dir = Path(spec.cache_dir) if spec.cache_dir else default_cache_dir()
    sweep_stale(cache_dir / "tmp", "build-")  # what killed runs left, even on a cache hit
    try:
        return _freeze(spec, runner=runner)
    except FreezeError as err:
        short = _short_of_space(cache_dir, Path(tempfile.gettempdir()))
        if not (short or _NO_SPACE_TEXT.search(err.output)):
            raise
        where = short or f"{cache_dir} or {tempfile.gettempdir()}"
        raise FreezeError(
            f"{err.message}: out of disk space in {where}",
            tool=err.tool,
            output=err.output,
            hint=_space_hint(cache_dir),
            remedy="cache-space",
        ) from err
    except OSError as err:
        if not (is_no_space(err) or _inside(err.filename, cache_dir)):
            raise
        where = f": {err.filename}" if err.filename else ""
        raise FreezeError(
            f"cannot write in the build cache {cache_dir}: {err.strerror}{where}",
            hint=_space_hint(cache_dir)
            if is_no_space(err)
            else "set SCRATCHPACK_CACHE_DIR to a writable directory",
            remedy="cache-space" if is_no_space(err) else "cache-dir",
        ) from err


#: Less free space than this where the build writes: a tool's failure is taken for a full disk
#: (tools do not always say so: ensurepip's "exit status 1" does not).
_LOW_SPACE = 64 << 20


def _short_of_space(*dirs: Path) -> str:
    """The directories among ``dirs`` with less than ``_LOW_SPACE`` free, and what they have."""
    short = []
    for d in dirs:
        probe = next((p for p in (d, *d.parents) if p.exists()), d)
        try:
            st = os.statvfs(probe)
        except OSError:
            continue
        free = st.f_bavail * st.f_frsize
        if free < _LOW_SPACE:
            short.append(f"{d} ({free >> 10} KiB free)")
    return " and ".join(short)


def _space_hint(cache_dir: Path) -> str:
    return (
        f"the disk is full or over quota: free some space in {cache_dir} and "
        f"{tempfile.gettempdir()}, or set SCRATCHPACK_CACHE_DIR and TMPDIR to a larger file system"
    )


def _inside(filename: object, directory: Path) -> bool:
    if not isinstance(filename, str | bytes | os.PathLike):
        return False
    return Path(os.fsdecode(filename)).absolute().is_relative_to(directory.absolute())


def _freeze(spec: FreezeSpec, *, runner: Runner) -> FrozenApp:
    project_dir = Path(spec.project_dir).absolute()
    project = spec.project or config.read_project(project_dir, spec.entrypoint)
    project = project.with_overrides(runtime=spec.runtime, exclude_modules=spec.exclude_modules)
    epoch = _source_date_epoch(spec)
    cache_dir = Path(spec.cache_dir) if spec.cache_dir else default_cache_dir()
    freezer = freezer_for(project.freeze.runtime)
    platform = spec.platform or host_platform()
    freezer.check_platform(platform)
    py = _env.probe_python(spec.python, runner=runner)
    freezer.check_python(py)
    key_doc = {
        "recipe": _RECIPE_VERSION,
        "runtime": freezer.route,
        "includes": tuple(sorted(set(project.freeze.include_modules))),
        "python": py.identity,
        "sources": source_digest(project_dir),
        "entrypoint": project.entrypoint,
        "exclude_modules": project.freeze.exclude_modules,
        "source_date_epoch": epoch,
        "platform": str(platform),
        **freezer.cache_key(project, compression=spec.compression),
    }
    key = hashlib.sha256(json.dumps(key_doc, sort_keys=True).encode()).hexdigest()[:32]
    entry = cache_dir / "out" / key
    if spec.use_cache and (hit := _load_cached(entry, project, freezer, platform)) is not None:
        log(f"using cached executable {hit.path}")
        return hit
    try:
        (cache_dir / "tmp").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FreezeError(
            f"cannot create the build cache {cache_dir}: {err.strerror}",
            hint="set SCRATCHPACK_CACHE_DIR to a writable directory",
            remedy="cache-dir",
        ) from err
    name = _exe_name(project.name)
    with owned_tempdir("build-", cache_dir / "tmp") as work:
        stage = work / "src" / name
        stage_sources(project_dir, stage)
        deps_key = dependency_digest(project.dependency_declaration, project_dir)
        with _env.build_env(
            cache_dir, py, deps_key, tools=freezer.tools, runner=runner, reuse=spec.use_cache
        ) as (base, fresh):
            if fresh:
                _env.install_dependencies(base, stage, project.name, workdir=work, runner=runner)
                _env.mark_ready(base)
            # the project goes into this build's own venv, never into the shared base
            benv = _env.project_env(base, work / "venv", py, runner=runner)
            _env.install_project(benv, stage, runner=runner)
            dists = _env.list_distributions(benv, project.name, runner=runner)
            with step(f"checking that entry point {project.entrypoint} imports"):
                entrypoint, how = _env.check_entrypoint(
                    benv, project.entrypoint, work, distributions=dists, runner=runner
                )
            if ":" not in project.entrypoint:  # a bare name: say which rule won
                log(f"entry point {project.entrypoint}: {how} ({entrypoint})")
            job = Build(
                env=benv,
                # the resolved entry point for the route; the result keeps the configured one,
                # as a cache hit (keyed on the configured one) has no other
                project=dataclasses.replace(project, entrypoint=entrypoint),
                name=name,
                distributions=dists,
                python=py,
                workdir=work,
                cache_dir=cache_dir,
                compression=spec.compression,
                source_date_epoch=epoch,
                platform=platform,
            )
            built = freezer.build(job, runner=runner)
        merged = {_norm(d.name): d for d in (*dists, *built.distributions)}  # the build's win
        dists = tuple(sorted(merged.values(), key=lambda d: _norm(d.name)))
        if not project.version:
            own = next((d for d in dists if _norm(d.name) == _norm(project.name)), None)
            project = dataclasses.replace(project, version=own.version if own else "0")
        result = built.path
        meta = {
            "file": name,
            "sha256": _sha256(result),
            "size": result.stat().st_size,
            "project": {"name": project.name, "version": project.version},
            "distributions": [dataclasses.asdict(d) for d in dists],
            "components": [dataclasses.asdict(c) for c in built.components],
            "python_version": built.python_version,
            "runtime": freezer.route,
            "platform": str(platform),
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
    return _app_from_meta(entry / name, meta, project, freezer, cached=False, platform=platform)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def write_executable(app: FrozenApp, output: Path) -> Path:
    """Copy the executable to ``output`` atomically (temp file + rename), mode 0755."""
    output = Path(output)
    if output.is_dir():
        output = output / app.path.name
    with (
        atomic_output(
            output, what="write", mode=0o755, remedy="exe-output", space_remedy="exe-output-space"
        ) as dst,
        app.path.open("rb") as src,
    ):
        shutil.copyfileobj(src, dst, 1 << 20)
    return output
