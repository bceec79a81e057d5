"""Hostile and unlucky conditions (issue 11, items 4 and 5), each against the real thing.

Every failure a user can reach is one ``error:`` line, a ``hint:`` and a non-zero exit, never a
traceback: a file name that is not UTF-8, files and directories the user cannot read (tested
as a non-root user: root reads anything), wrong TOML types, and a full disk (a real 1 MB
tmpfs) at the output, in TMPDIR and in the build cache. A build stopped by SIGTERM or SIGINT
stops PyInstaller and everything it started, removes its temporary files and says so in one
line; what a SIGKILLed build leaves behind is removed by the next run, and a live run's files
are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import scratchpack

#: A uid/gid without privileges, for the permission tests.
NOBODY = 1000

_MAIN = 'def main() -> None:\n    print("{greeting}")\n'


def _project(root: Path, greeting: str = "hello") -> Path:
    """A small pure-Python project with a package directory and a data subdirectory."""
    proj = root / "proj"
    (proj / "src" / "demo" / "data").mkdir(parents=True)
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "1.0"\n'
        '[project.scripts]\ndemo = "demo:main"\n'
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    (proj / "src" / "demo" / "__init__.py").write_text(_MAIN.format(greeting=greeting))
    (proj / "src" / "demo" / "data" / "table.txt").write_text("1 2 3\n")
    return proj


def _cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scratchpack", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def _assert_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 1, an ``error:`` first line, a ``hint:``, the needles, and no traceback."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and lines[0].startswith("error: "), proc.stderr
    assert any(line.startswith("  hint: ") for line in lines), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


# --- item 4: no tracebacks ------------------------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    (proj / "src" / "demo" / os.fsdecode(b"caf\xe9.txt")).write_text("x")
    proc = _cli("exe", str(proj), "-o", str(tmp_path / "app"))
    _assert_error(proc, "caf\\xe9.txt", "not valid UTF-8", str(proj / "src" / "demo"))


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('tool = 5\n[project]\nname = "demo"\nversion = "1.0"\n', "[tool] must be a table"),
        ('[project]\nname = "demo"\ndynamic = 5\n', "[project] dynamic must be a list"),
        ('[project]\nname = "demo"\nversion = 1\n', "[project] version = 1 must be a string"),
    ],
    ids=["tool", "dynamic", "version"],
)
def test_wrong_toml_types_name_the_key(tmp_path: Path, body: str, named: str) -> None:
    proj = _project(tmp_path)
    (proj / "pyproject.toml").write_text(body)
    _assert_error(_cli("exe", str(proj), "-o", str(tmp_path / "app")), named)


#: The user can import scratchpack and start its own interpreter again (the build does).
_CAN_RUN = "import scratchpack, subprocess, sys; subprocess.run([sys.executable, '-V'], check=True)"


@pytest.fixture
def as_nobody() -> Iterator[tuple[Path, Callable[..., subprocess.CompletedProcess[str]]]]:
    """A directory owned by an unprivileged user, and a way to run the CLI as that user.

    The scratchpack package is copied in (the test's venv may sit under a home the user cannot
    enter), and the first interpreter that user can run (and re-run) is used.
    """
    base = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        base.chmod(0o755)
        lib = base / "lib"
        shutil.copytree(Path(scratchpack.__file__).parent, lib / "scratchpack")
        drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(base),
            "PYTHONPATH": str(lib),
            "SCRATCHPACK_CACHE_DIR": str(base / "cache"),
        }
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(base)], check=True)
        python = next(
            (
                py
                for py in (sys.executable, "/usr/bin/python3", shutil.which("python3"))
                if py
                and subprocess.run(
                    [*drop, py, "-c", _CAN_RUN],
                    env=env,
                    capture_output=True,
                    check=False,
                ).returncode
                == 0
            ),
            None,
        )
        assert python, f"no Python that uid {NOBODY} can run with scratchpack"

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*drop, python, "-m", "scratchpack", *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=900,
                check=False,
            )

        yield base, run
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("target", ["src/demo/data", "src/demo/__init__.py", ".", "pyproject.toml"])
def test_what_the_user_cannot_read_is_an_error_naming_it(
    as_nobody: tuple[Path, Callable[..., subprocess.CompletedProcess[str]]], target: str
) -> None:
    """Before: an unreadable subdirectory was silently left out of the build, an unreadable
    file or project directory gave a traceback."""
    base, run = as_nobody
    proj = _project(base)
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(proj)], check=True)
    locked = (proj / target).resolve()
    locked.chmod(0)
    proc = run("exe", str(proj), "-o", str(base / "app"))
    _assert_error(proc, f"cannot read {locked}: Permission denied", "permission")
    assert not (base / "app").exists()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MB tmpfs: writes beyond it fail with ENOSPC."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A project frozen once into a build cache (its build venv then serves every build here)."""
    root = tmp_path_factory.mktemp("built")
    proj, cache = _project(root), root / "cache"
    proc = _cli(
        "exe", str(proj), "-o", str(root / "app"), env={"SCRATCHPACK_CACHE_DIR": str(cache)}
    )
    assert proc.returncode == 0, proc.stderr
    return proj, cache


@pytest.mark.e2e
@pytest.mark.slow
def test_full_disk_at_the_executable_output(built: tuple[Path, Path], full_disk: Path) -> None:
    """Before: the -o advice ("choose a path in a writable directory") hid the full disk."""
    proj, cache = built
    out = full_disk / "app"
    proc = _cli("exe", str(proj), "-o", str(out), env={"SCRATCHPACK_CACHE_DIR": str(cache)})
    _assert_error(proc, f"cannot write {out}: No space left on device", "hint: the disk is full")
    assert "writable directory" not in proc.stderr
    assert list(full_disk.iterdir()) == []


@pytest.mark.e2e
@pytest.mark.slow
def test_full_disk_in_tmpdir_while_assembling_the_layer(
    built: tuple[Path, Path], full_disk: Path, tmp_path: Path
) -> None:
    """Before: a raw OSError traceback from the layer writer."""
    proj, cache = built
    out = tmp_path / "image.tar"
    env = {"SCRATCHPACK_CACHE_DIR": str(cache), "TMPDIR": str(full_disk)}
    proc = _cli("build", str(proj), "--tarball", str(out), env=env)
    _assert_error(proc, "cannot write the image layer", "No space left on device", "TMPDIR")
    assert not out.exists()
    assert list(full_disk.iterdir()) == []


@pytest.mark.e2e
@pytest.mark.slow
def test_full_disk_in_the_build_cache(full_disk: Path, tmp_path: Path) -> None:
    """Before: "on Debian install python3-venv" for a venv that did not fit."""
    proj = _project(tmp_path)
    proc = _cli("exe", str(proj), "-o", str(tmp_path / "app"), "--cache-dir", str(full_disk))
    _assert_error(proc, "out of disk space", str(full_disk), "hint: the disk is full")
    assert "python3-venv" not in proc.stderr
    assert not (tmp_path / "app").exists()
