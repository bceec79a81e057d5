"""Hashes and stages a project's sources, and keys its third-party dependencies.

The pyproject itself is read and validated once, by ``scratchpack.config``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from scratchpack.config import unreadable
from scratchpack.errors import ProjectError

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


def _walk(project_dir: Path) -> Iterator[Path]:
    """Project files in a fixed order, skipping VCS, caches and build debris.

    A directory that cannot be listed is an error, not a silent gap in the build; so is a
    name that is not UTF-8 (wheels and zip archives cannot hold it).
    """

    def fail(err: OSError) -> None:
        raise unreadable(err) from err

    for root, dirs, files in os.walk(project_dir, onerror=fail):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in (*dirs, *files):
            _check_name(root, name)
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            yield Path(root, name)


def _check_name(root: str, name: str) -> None:
    try:
        name.encode()
    except UnicodeEncodeError:
        shown = os.fsencode(name).decode("ascii", "backslashreplace")
        raise ProjectError(
            f"the file name '{shown}' in {root} is not valid UTF-8",
            hint="rename it with UTF-8 characters (wheels and the executable's archive store "
            "names as UTF-8), or move it out of the project",
        ) from None


def source_digest(project_dir: Path) -> str:
    """sha256 over relative paths, exec bits and contents: what the cache keys sources on."""
    try:
        return _source_digest(project_dir)
    except OSError as err:
        raise unreadable(err) from err


def _source_digest(project_dir: Path) -> str:
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


def dependency_digest(declaration: str, project_dir: Path) -> str:
    """What decides the third-party packages: the declared deps and build system
    (``ProjectConfig.dependency_declaration``) and the lock files."""
    h = hashlib.sha256()
    h.update(declaration.encode())
    for name in LOCK_FILES:
        p = project_dir / name
        if p.is_file():
            h.update(name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()
