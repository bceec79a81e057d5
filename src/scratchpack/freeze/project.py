"""Reads and validates a project's pyproject.toml; hashes and stages its sources.

Validation happens here, before any tool runs, so a user gets "no entry point" in milliseconds
rather than a PyInstaller traceback a minute later.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scratchpack.errors import ProjectError
from scratchpack.freeze.spec import RUNTIMES, ProjectInfo

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*$")
#: a distribution's name as pip takes it (PEP 508): include-modules accepts those too
_DIST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_OBJECT_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$")
_PORT_RE = re.compile(r"^([0-9]{1,5})(/(tcp|udp|sctp))?$")
_URL_KEYS = ("source", "source code", "repository", "code", "homepage", "home")

#: Directories that are build debris or tooling state, never part of the app.
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        "build",
        "dist",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "node_modules",
        ".eggs",
    }
)
LOCK_FILES = ("requirements.txt", "pylock.toml", "uv.lock", "poetry.lock", "pdm.lock")


def load_pyproject(project_dir: Path) -> dict[str, Any]:
    """The parsed pyproject.toml, or a ProjectError saying why the directory is not a project."""
    if not project_dir.exists():
        raise ProjectError(
            f"project directory {project_dir} does not exist",
            hint="pass the directory that holds your pyproject.toml",
        )
    if not project_dir.is_dir():
        raise ProjectError(f"{project_dir} is not a directory", hint="pass the project directory")
    pyproject = project_dir / "pyproject.toml"
    if not pyproject.is_file():
        raise ProjectError(
            f"{project_dir} is not a Python project: it has no pyproject.toml",
            hint="add a pyproject.toml with a [project] table (name, version, dependencies)",
        )
    try:
        with pyproject.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ProjectError(
            f"cannot read {pyproject}: {err}", hint="fix the TOML syntax and try again"
        ) from err


def _str_list(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProjectError(f"{where} must be a list of strings in pyproject.toml")
    return tuple(value)


def resolve_entrypoint(value: str, scripts: dict[str, str]) -> str:
    """Turn a CLI/pyproject entry point (object ref, module, or script name) into mod[:func]."""
    value = value.strip()
    if value in scripts:
        target = scripts[value].split("[", 1)[0].strip()
        if not _OBJECT_RE.match(target):
            raise ProjectError(
                f"[project.scripts] {value} = {scripts[value]!r} is not 'module:function'"
            )
        return target
    if _OBJECT_RE.match(value) or _MODULE_RE.match(value):
        return value
    known = ", ".join(sorted(scripts)) or "none"
    raise ProjectError(
        f"entry point {value!r} is neither 'module:function', 'module', nor a [project.scripts] "
        f"name (scripts: {known})",
        hint='e.g. [tool.scratchpack] entrypoint = "mypkg.__main__:main"',
    )


def project_info(data: dict[str, Any], entrypoint: str | None) -> ProjectInfo:
    """Validate the [project] and [tool.scratchpack] tables into a ProjectInfo."""
    project = data.get("project")
    if not isinstance(project, dict) or not isinstance(project.get("name"), str):
        raise ProjectError(
            "pyproject.toml has no [project] table with a name",
            hint='add [project] name = "..." and version = "..."',
        )
    name = project["name"]
    version = project.get("version")
    if not isinstance(version, str):
        if "version" not in project.get("dynamic", []):
            raise ProjectError("pyproject.toml [project] has no version (static or dynamic)")
        version = ""  # filled in from the installed metadata after the build
    tool = data.get("tool", {}).get("scratchpack", {})
    if not isinstance(tool, dict):
        raise ProjectError("[tool.scratchpack] must be a table")
    scripts = project.get("scripts", {})
    if not isinstance(scripts, dict) or not all(isinstance(v, str) for v in scripts.values()):
        raise ProjectError("[project.scripts] must map names to 'module:function' strings")
    chosen = entrypoint or tool.get("entrypoint")
    if chosen is not None and not isinstance(chosen, str):
        raise ProjectError("[tool.scratchpack] entrypoint must be a string")
    if not chosen:
        if len(scripts) == 1:
            chosen = next(iter(scripts))
        else:
            listed = f" (scripts: {', '.join(sorted(scripts))})" if scripts else ""
            raise ProjectError(
                f"project {name!r} has no entry point{listed}",
                hint='set [tool.scratchpack] entrypoint = "pkg.module:main" in pyproject.toml '
                "or pass --entrypoint",
            )
    resolved = resolve_entrypoint(chosen, scripts)
    ports = _str_list(tool.get("ports", []), "[tool.scratchpack] ports")
    normalized: list[str] = []
    for port in ports:
        m = _PORT_RE.match(port)
        if not m or not 0 < int(m.group(1)) < 65536:
            raise ProjectError(
                f"[tool.scratchpack] ports: {port!r} is not PORT[/tcp|udp|sctp]",
                hint='e.g. ports = ["8080/tcp"]',
            )
        normalized.append(f"{int(m.group(1))}/{m.group(3) or 'tcp'}")
    args = _str_list(tool.get("args", []), "[tool.scratchpack] args")
    excludes = _str_list(tool.get("exclude-modules", []), "[tool.scratchpack] exclude-modules")
    for module in excludes:
        if not _MODULE_RE.match(module):
            raise ProjectError(
                f"[tool.scratchpack] exclude-modules: {module!r} is not a module name"
            )
    includes = _str_list(tool.get("include-modules", []), "[tool.scratchpack] include-modules")
    for module in includes:
        if not (_MODULE_RE.match(module.removesuffix(".*")) or _DIST_RE.match(module)):
            raise ProjectError(
                f"[tool.scratchpack] include-modules: {module!r} is not a module name "
                "(or package.* for all of its submodules, or a distribution's name)"
            )
    runtime = tool.get("runtime")
    if runtime is not None and runtime not in RUNTIMES:
        raise ProjectError(
            f"[tool.scratchpack] runtime = {runtime!r}: must be 'pyinstaller' or 'static'",
            hint="static needs a pure-Python app; pyinstaller freezes anything",
        )
    urls = project.get("urls", {})
    source_url = ""
    if isinstance(urls, dict):
        by_key = {str(k).lower(): v for k, v in urls.items() if isinstance(v, str)}
        source_url = next((by_key[k] for k in _URL_KEYS if k in by_key), "")
    return ProjectInfo(
        name=name,
        version=version,
        entrypoint=resolved,
        ports=tuple(normalized),
        args=args,
        source_url=source_url,
        exclude_modules=excludes,
        include_modules=includes,
        runtime=runtime,
    )


def _walk(project_dir: Path) -> Iterator[Path]:
    """Project files in a fixed order, skipping VCS, caches and build debris."""
    for root, dirs, files in os.walk(project_dir):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            yield Path(root, name)


def source_digest(project_dir: Path) -> str:
    """sha256 over relative paths, exec bits and contents: what the cache keys sources on."""
    h = hashlib.sha256()
    for path in _walk(project_dir):
        st = path.lstat()
        rel = path.relative_to(project_dir).as_posix()
        if stat.S_ISLNK(st.st_mode):
            h.update(f"L {rel} {os.readlink(path)}\n".encode())
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        h.update(f"F {rel} {st.st_mode & 0o111:o} {st.st_size}\n".encode())
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def stage_sources(project_dir: Path, dest: Path) -> None:
    """Copy the sources pip should see, so its in-tree build never writes into the user's tree."""
    for path in _walk(project_dir):
        target = dest / path.relative_to(project_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            target.symlink_to(os.readlink(path))
        elif path.is_file():
            shutil.copy2(path, target)


def dependency_digest(data: dict[str, Any], project_dir: Path) -> str:
    """What decides the third-party packages: declared deps, build system and lock files."""
    h = hashlib.sha256()
    project = data.get("project", {})
    h.update(repr(project.get("dependencies", [])).encode())
    h.update(repr(data.get("build-system", {})).encode())
    for name in LOCK_FILES:
        p = project_dir / name
        if p.is_file():
            h.update(name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()
