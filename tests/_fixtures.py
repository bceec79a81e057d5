"""Fixture projects shared by several test modules: where they live, how to write a small one,
and what the app_procs fixture prints on either freezer route."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"

#: The smallest valid [project] table.
BASE = '[project]\nname = "demo"\nversion = "1.0"\n'

#: app_procs: the line each child-process check prints, the same on both routes.
PROCESS_CHECKS = {
    "fork": "fork: child pid=other exit=0",
    "spawn": "spawn: child pid=other exit=0",
    "forkserver": "forkserver: child pid=other exit=0",
    "pool-fork": "pool-fork: squares [0, 1, 4, 9, 16]",
    "pool-spawn": "pool-spawn: squares [0, 1, 4, 9, 16]",
    "pool-forkserver": "pool-forkserver: squares [0, 1, 4, 9, 16]",
    "executor-fork": "executor-fork: squares [0, 1, 4, 9, 16]",
    "executor-spawn": "executor-spawn: squares [0, 1, 4, 9, 16]",
    "python-c": "python-c: exit=0 python -c ['x', '-c']",
    "python-m": "python-m: exit=0 child module ['y']",
}


def write_project(tmp_path: Path, body: str, name: str = "proj") -> Path:
    """A project directory holding only ``pyproject.toml`` with ``body``."""
    d = tmp_path / name
    d.mkdir()
    (d / "pyproject.toml").write_text(body)
    return d
