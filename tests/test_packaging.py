"""The wheel a user installs carries every file the package reads at run time.

A non-editable install (``pip install scratchpack``) has only what the wheel holds, and the static
route compiles its launcher from the C sources beside its modules: an editable install, which
every other test uses, would hide a file the wheel leaves out.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def package_files(src: Path) -> set[str]:
    """Every file of the package other than Python modules, as the wheel names them."""
    return {
        path.relative_to(src).as_posix()
        for path in (src / "scratchpack").rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    }


@pytest.mark.e2e
def test_wheel_carries_every_file_of_the_package(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, project / name)
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    wanted = package_files(project / "src")
    assert "scratchpack/freeze/static/launcher.c" in wanted  # the check sees the C sources
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(project)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "dist").glob("scratchpack-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        missing = wanted - set(archive.namelist())
    assert not missing, f"the wheel lacks {sorted(missing)}"
