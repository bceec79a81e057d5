"""Fast tests of the freezer's pure parts: source hashing, the launcher, output writing.

pyproject validation is tests/test_project_config.py; the routes driven end to end with a fake
runner are tests/test_freezers.py; the real tools (pip, PyInstaller, staticx) run in
tests/test_freeze_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from scratchpack._types import StrPath
from scratchpack.config import ProjectConfig
from scratchpack.errors import FreezeError, SinkError
from scratchpack.freeze import (
    DEFAULT_COMPRESSION,
    FreezeSpec,
    FrozenApp,
    default_cache_dir,
    freeze,
    write_executable,
)
from scratchpack.freeze._scripts import script_path
from scratchpack.freeze.env import probe_python
from scratchpack.freeze.project import source_digest, stage_sources
from scratchpack.freeze.pyinstaller import launcher_source
from tests._fixtures import BASE, FIXTURES, write_project


def test_source_digest_ignores_debris_and_sees_changes(tmp_path: Path) -> None:
    d = write_project(tmp_path, BASE)
    (d / "pkg").mkdir()
    (d / "pkg" / "m.py").write_text("x = 1\n")
    first = source_digest(d)
    for debris in (
        "__pycache__/m.cpython-311.pyc",
        ".git/HEAD",
        "build/lib/m.py",
        "pkg.egg-info/PKG-INFO",
        ".venv/bin/python",
    ):
        p = d / debris
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("noise")
    assert source_digest(d) == first
    (d / "pkg" / "m.py").write_text("x = 2\n")
    assert source_digest(d) != first
    (d / "pkg" / "m.py").write_text("x = 1\n")
    (d / "pkg" / "m.py").chmod(0o755)
    assert source_digest(d) != first


def test_source_digest_does_not_depend_on_location(tmp_path: Path) -> None:
    a = write_project(tmp_path, BASE, "a")
    stage_sources(FIXTURES / "app_pure", a / "x")
    b = write_project(tmp_path, BASE, "b")
    stage_sources(FIXTURES / "app_pure", b / "x")
    assert source_digest(a) == source_digest(b)
    assert not (a / "x" / "build").exists()


def test_launcher_source_compiles() -> None:
    for ep in ("pkg.mod:main", "pkg.mod:obj.run", "pkg"):
        compile(launcher_source(ep), "launcher", "exec")
    assert "sys.exit(_entry_module.obj.run())" in launcher_source("pkg.mod:obj.run")
    assert "run_module('pkg'" in launcher_source("pkg")


@pytest.mark.parametrize(
    ("argv", "stdin", "expect"),
    [
        (["-c", "import sys; print(sys.argv)", "a", "-c"], "", "['-c', 'a', '-c']\n"),
        (["-I", "-Bu", "-c", "import sys; print(sys.dont_write_bytecode)"], "", "True\n"),
        (["-m", "json.tool"], '{"a": 1}', '{\n    "a": 1\n}\n'),
        ([], "print('from stdin')", "from stdin\n"),
        (["-", "x"], "import sys; print(sys.argv)", "['-', 'x']\n"),
    ],
)
def test_launcher_python_mode(tmp_path: Path, argv: list[str], stdin: str, expect: str) -> None:
    """SCRATCHPACK_PYTHON=1: the launcher acts as `python`, the entry point is never reached."""
    (tmp_path / "launcher.py").write_text(launcher_source("no_such_module:main"))
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "launcher.py"), *argv],
        input=stdin,
        env={**os.environ, "SCRATCHPACK_PYTHON": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, expect), proc.stderr


def test_launcher_without_opt_in_runs_the_app(tmp_path: Path) -> None:
    """`app -c X` reaches the entry point: the app's own -c (gunicorn's config) stays its."""
    (tmp_path / "launcher.py").write_text(launcher_source("no_such_module:main"))
    env = {k: v for k, v in os.environ.items() if k != "SCRATCHPACK_PYTHON"}
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "launcher.py"), "-c", "print(1)"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "No module named 'no_such_module'" in proc.stderr


def _check_entrypoint(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run _scripts/check_entrypoint.py with ``site`` first on sys.path (an installed venv)."""
    script = str(script_path("check_entrypoint"))
    runner = (
        "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
        f"runpy.run_path({script!r}, run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-I", "-c", runner, str(site), *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def site_with_console_script(tmp_path: Path) -> Path:
    """A site dir where the distribution fake-httpie installs the console script ``http``."""
    site = tmp_path / "site"
    (site / "fakehttp").mkdir(parents=True)
    (site / "fakehttp" / "__init__.py").write_text("def main():\n    return 0\n")
    info = site / "fake_httpie-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-httpie\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[console_scripts]\nhttp = fakehttp:main [extra]\n")
    return site


def _resolved(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = proc.stdout.splitlines()[-1]
    assert line.startswith("ScratchpackEntry: "), proc.stdout
    return dict(json.loads(line.removeprefix("ScratchpackEntry: ")))


def test_entrypoint_console_script_of_a_dependency_wins_over_a_module(
    site_with_console_script: Path,
) -> None:
    """`entrypoint = "http"` with httpie installed runs httpie, not the stdlib package http."""
    found = _resolved(_check_entrypoint(site_with_console_script, "http", "app", "Fake_Httpie"))
    assert found["entrypoint"] == "fakehttp:main"
    assert "console script http of the fake-httpie distribution" in found["how"]


def test_entrypoint_module_when_no_app_distribution_has_the_script(
    site_with_console_script: Path,
) -> None:
    """Console scripts count only from the app's distributions (never the build tools'): without
    fake-httpie among them, "http" is the stdlib package, which cannot run as a program."""
    proc = _check_entrypoint(site_with_console_script, "http", "app")
    assert proc.returncode == 3
    assert "package http has no __main__ module to run" in proc.stdout
    found = _resolved(_check_entrypoint(site_with_console_script, "json.tool", "fake-httpie"))
    assert found == {
        "entrypoint": "json.tool",
        "how": "the module json.tool (no console script of the app has that name)",
    }
    found = _resolved(_check_entrypoint(site_with_console_script, "fakehttp:main"))
    assert found["entrypoint"] == "fakehttp:main"


def test_entrypoint_neither_script_nor_module(site_with_console_script: Path) -> None:
    proc = _check_entrypoint(site_with_console_script, "my-tool", "fake-httpie")
    assert proc.returncode == 3
    assert "neither a console script of the app's distributions nor a module" in proc.stdout


def test_freeze_spec_validates() -> None:
    assert FreezeSpec(Path()).compression == DEFAULT_COMPRESSION
    with pytest.raises(ValueError, match="compression"):
        FreezeSpec(Path(), compression="gzip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="source_date_epoch"):
        FreezeSpec(Path(), source_date_epoch=-1)
    with pytest.raises(TypeError, match="tuple"):
        FreezeSpec(Path(), exclude_modules="tkinter")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="entrypoint"):
        FreezeSpec(Path(), entrypoint="m:f", project=ProjectConfig("n", "1", "m:main"))


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCRATCHPACK_CACHE_DIR", str(tmp_path / "sp"))
    assert default_cache_dir() == tmp_path / "sp"
    monkeypatch.delenv("SCRATCHPACK_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "scratchpack"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "scratchpack"


def _app(path: Path) -> FrozenApp:
    data = path.read_bytes()
    return FrozenApp(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        project=ProjectConfig(name="demo", version="1", entrypoint="demo:main"),
        distributions=(),
        python_version="3.11.7",
        cached=False,
    )


def test_write_executable_is_atomic_and_0755(tmp_path: Path) -> None:
    src = tmp_path / "cache" / "demo"
    src.parent.mkdir()
    src.write_bytes(b"\x7fELF fake")
    src.chmod(0o700)
    out = write_executable(_app(src), tmp_path / "demo-out")
    assert out.read_bytes() == b"\x7fELF fake"
    assert out.stat().st_mode & 0o777 == 0o755
    outdir = tmp_path / "dir"
    outdir.mkdir()
    assert write_executable(_app(src), outdir) == outdir / "demo"
    assert sorted(os.listdir(outdir)) == ["demo"]


def test_write_executable_unwritable_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "demo"
    src.write_bytes(b"x")
    with pytest.raises(SinkError, match="cannot write") as err:
        write_executable(_app(src), tmp_path / "no" / "such" / "dir" / "demo")
    assert err.value.hint
    assert err.value.remedy == "exe-output"  # the CLI words it with its -o flag
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        # root ignores directory modes: then use a path below a regular file, which nobody can make
        target = src / "demo" if os.geteuid() == 0 else ro / "demo"
        with pytest.raises(SinkError, match="cannot write"):
            write_executable(_app(src), target)
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o755)


class RecordingRunner:
    """Stands in for the tools: records argv, answers the Python probe, fails everything else."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(
        self,
        cmd: Sequence[StrPath],
        *,
        cwd: StrPath | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [os.fspath(c) for c in cmd]
        self.calls.append(argv)
        return subprocess.CompletedProcess(argv, 1, "boom: tool output tail\n", None)


def test_failing_tool_becomes_freeze_error_with_output(tmp_path: Path) -> None:
    runner = RecordingRunner()
    with pytest.raises(FreezeError, match="cannot run Python interpreter") as err:
        probe_python(None, runner=runner)
    assert err.value.tool == "python"
    assert "boom: tool output tail" in str(err.value)


def test_missing_interpreter(tmp_path: Path) -> None:
    with pytest.raises(FreezeError, match="not found"):
        freeze(FreezeSpec(FIXTURES / "app_pure", python=str(tmp_path / "nope"), cache_dir=tmp_path))
