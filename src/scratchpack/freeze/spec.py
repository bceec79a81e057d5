"""Value types of the freezer: what to build (FreezeSpec) and what came out (FrozenApp).

Frozen, slotted dataclasses so a spec can be hashed into the cache key and a result can be shared
between the image builder and the SBOM writer without anyone mutating it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from scratchpack._types import Platform
from scratchpack.config import RUNTIMES, ProjectConfig, Runtime

__all__ = [
    "DEFAULT_COMPRESSION",
    "DEFAULT_SOURCE_DATE_EPOCH",
    "RUNTIMES",
    "Component",
    "Compression",
    "Distribution",
    "FreezeSpec",
    "FrozenApp",
    "Runtime",
]

Compression = Literal["none", "xz"]

#: Default staticx archive compression. "none" starts ~2.5x faster than "xz" and, once the image
#: layer is gzipped, costs only ~5% more bytes (docs/bench/freezer.md).
DEFAULT_COMPRESSION: Compression = "none"

#: Timestamp used when neither the spec nor $SOURCE_DATE_EPOCH gives one. 1980-01-01: zip (which
#: PyInstaller's base_library.zip uses) cannot encode earlier times.
DEFAULT_SOURCE_DATE_EPOCH = 315532800

#: Read by the distributions probe (requirement markers) in every route's build venv.
PACKAGING_PIN = "packaging==26.4"

#: Not a tool: the IANA time zone database, bundled by every route when the app can reach
#: zoneinfo (a scratch image has no /usr/share/zoneinfo); pinned so builds embed the same data.
TZDATA_PIN = "tzdata==2026.6"


@dataclass(frozen=True, slots=True)
class FreezeSpec:
    """Everything that decides the output executable (and so the cache key)."""

    project_dir: Path
    entrypoint: str | None = None
    python: str | None = None
    compression: Compression = DEFAULT_COMPRESSION
    runtime: Runtime | None = None  # None: [tool.scratchpack] runtime, else "pyinstaller"
    #: The project's settings, read once by the caller (config.read_project) with its flags
    #: applied; None: freeze() reads project_dir itself (with ``entrypoint``).
    project: ProjectConfig | None = None
    exclude_modules: tuple[str, ...] = ()
    source_date_epoch: int | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    #: The machine the executable runs on; None: this one. Only the static route cross-builds.
    platform: Platform | None = None

    def __post_init__(self) -> None:
        if self.compression not in ("none", "xz"):
            raise ValueError(f"compression must be 'none' or 'xz', not {self.compression!r}")
        if self.runtime is not None and self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be 'pyinstaller' or 'static', not {self.runtime!r}")
        if self.source_date_epoch is not None and self.source_date_epoch < 0:
            raise ValueError("source_date_epoch must be >= 0")
        modules: object = self.exclude_modules  # a caller's str passes the type at run time
        if isinstance(modules, str):
            raise TypeError("exclude_modules must be a tuple of module names, not a string")
        if self.project is not None and self.entrypoint is not None:
            raise ValueError(
                "entrypoint is resolved when the project is read: pass it to "
                "config.read_project, not beside a project"
            )


@dataclass(frozen=True, slots=True)
class Distribution:
    """A Python distribution bundled inside the executable (for the SBOM)."""

    name: str
    version: str
    license: str = ""
    source_url: str = ""
    #: the wheel file the route put in itself (the static route's musllinux builds), and its hash
    wheel: str = ""
    sha256: str = ""


@dataclass(frozen=True, slots=True)
class Component:
    """Something a freezer route puts into every executable besides the app's distributions
    (a bootloader, a libc, a C library), as the SBOM lists it."""

    name: str
    version: str
    purl: str
    license: str = ""
    download_location: str = ""
    sha256: str = ""


@dataclass(frozen=True, slots=True)
class FrozenApp:
    """A built executable; ``path`` lives in the cache, so callers copy it (write_executable)."""

    path: Path
    sha256: str
    size: int
    project: ProjectConfig  # with the version filled in when pyproject declares it dynamic
    distributions: tuple[Distribution, ...]
    python_version: str
    cached: bool
    runtime: Runtime = "pyinstaller"  # the route that made it
    platform: Platform | None = None  # the machine it runs on (None: recorded before platforms)
    components: tuple[Component, ...] = ()  # what the route embeds, for the SBOM
