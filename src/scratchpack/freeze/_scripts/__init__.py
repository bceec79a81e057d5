"""Programs the freezer runs under ANOTHER interpreter: the target Python or the build venv's.

Each one is a standalone script, run by file path (``python -I path/to/script.py ARGS``), because
scratchpack is not installed where it runs: it imports nothing from scratchpack, only the
standard library (``distributions.py`` also uses ``packaging``, which every build venv gets), and
prints its answer as one JSON line on stdout. They are real modules so ruff and mypy check them;
``script_path`` finds one on disk.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["script_path"]


def script_path(name: str) -> Path:
    """The file of the script ``name`` (e.g. ``"interpreter"``), to run by path."""
    path = Path(__file__).with_name(f"{name}.py")
    if not path.is_file():  # pragma: no cover - a packaging mistake
        raise FileNotFoundError(path)
    return path
