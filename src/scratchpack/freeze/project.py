"""Hashes and stages a project's sources, and keys its third-party dependencies.

The pyproject itself is read and validated once, by ``scratchpack.config``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterator, Sequence
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
    """Project files and symlinks in a fixed order, skipping VCS, caches and build debris.

    A directory that cannot be listed is an error, not a silent gap in the build; so is a
    name that is not UTF-8 (wheels and zip archives cannot hold it). A symlinked directory is
    yielded, not entered. Every symlink must resolve inside the project: one that leaves it
    (to /etc/shadow, ~/.ssh/id_ed25519) would put that file's bytes into the executable, so the
    walk ends with an error naming each of them.
    """

    def fail(err: OSError) -> None:
        raise unreadable(err) from err

    top = project_dir.resolve()
    escapes: list[str] = []
    for root, dirs, files in os.walk(project_dir, onerror=fail):
        keep = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in (*keep, *files):
            _check_name(root, name)
        dirs[:] = [d for d in keep if not os.path.islink(os.path.join(root, d))]
        linked_dirs = [d for d in keep if d not in dirs]
        for name in sorted([*files, *linked_dirs]):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = Path(root, name)
            if path.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(top):
                escapes.append(f"{path.relative_to(project_dir)} -> {os.readlink(path)}")
                continue
            yield path
    if escapes:
        raise ProjectError(
            f"{len(escapes)} symlink(s) in {project_dir} lead outside the project, and their "
            "targets would be copied into the executable:\n" + "\n".join(f"  {e}" for e in escapes),
            hint="replace each with a copy of what the app needs, or point it inside the project",
        )


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
    """Copy the sources pip should see, so its in-tree build never writes into the user's tree.

    Symlinks (to files or package directories; ``_walk`` keeps only those that stay inside the
    project) are staged as relative links to the same place in the copy, so pip builds them as
    it would from the project itself.
    """
    for path in _walk(project_dir):
        target = dest / path.relative_to(project_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            real = os.path.realpath(path)
            target.symlink_to(os.path.relpath(real, os.path.realpath(path.parent)))
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


def check_outputs(project_dir: Path, outputs: Sequence[Path], inputs: Sequence[Path] = ()) -> None:
    """Refuse outputs that would land in the project's sources (which the next build would hash
    and stage: ``exe -o pyproject.toml`` replaced it with an ELF), overwrite an input file, or
    write one another. ``build/``, ``dist/`` and the other ``SKIP_DIRS`` are not sources."""
    project = project_dir.resolve()
    seen: dict[Path, Path] = {}
    for output in outputs:
        path = output.parent.resolve() / output.name
        if path == project or path.is_relative_to(project):
            parts = path.relative_to(project).parts[:-1] if path != project else ()
            if path == project or not any(p in SKIP_DIRS or p.endswith(".egg-info") for p in parts):
                raise ProjectError(
                    f"output {output} is inside the project's sources ({project})",
                    hint=f"write outputs outside {project}, or under its dist/ or build/ "
                    "directory, which are not sources",
                    remedy="output-in-project",
                )
        for other in inputs:
            source = other.resolve()
            if path == source or source.is_relative_to(path):
                raise ProjectError(
                    f"output {output} would overwrite the input {other}",
                    hint="choose another output path",
                    remedy="output-overwrites-input",
                )
        if path in seen:
            raise ProjectError(
                f"outputs {seen[path]} and {output} are the same path",
                hint="give each output its own path",
            )
        seen[path] = output
