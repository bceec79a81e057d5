"""The Freezer interface: what one route (``--runtime``) owns, and what it is given to build.

``freeze()`` picks one freezer from the route name and does the common part (probe, cache
lookup, staging, build venv, publish to the cache); everything that differs between the routes
sits behind this protocol, so neither ``freeze()`` nor the pipeline branches on the route.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from scratchpack._types import Platform, Runner, host_platform
from scratchpack.config import ProjectConfig, Runtime
from scratchpack.freeze.env import BuildEnv, PythonInfo, Tools
from scratchpack.freeze.spec import Component, Compression, Distribution

__all__ = ["Build", "Built", "Freezer"]


@dataclass(frozen=True, slots=True)
class Build:
    """One build's inputs, after the common part ran: the venv holds the app and its deps."""

    env: BuildEnv
    project: ProjectConfig  # the route's settings are project.freeze
    name: str  # the executable's file name
    distributions: tuple[Distribution, ...]
    python: PythonInfo
    workdir: Path  # a private temp directory, removed after the build
    cache_dir: Path
    compression: Compression
    source_date_epoch: int
    platform: Platform = field(default_factory=host_platform)  # the machine it runs on


@dataclass(frozen=True, slots=True)
class Built:
    """What a route made: the executable and the CPython version inside it."""

    path: Path
    python_version: str
    # build-venv distributions inside it beyond the requirement closure (e.g. tzdata), or
    # closure ones it bundled from another build (the static route's musllinux wheels)
    distributions: tuple[Distribution, ...] = ()
    # what this build embeds beyond the route's fixed components (the default route: the host's C
    # libraries; the static route: the libraries musllinux wheels bundle)
    components: tuple[Component, ...] = ()


class Freezer(Protocol):
    """One freezer route: its tools, its cache key, its host checks, its build, its SBOM parts."""

    @property
    def route(self) -> Runtime:
        """The route's name, as ``--runtime`` and ``[tool.scratchpack] runtime`` spell it."""
        ...

    @property
    def tools(self) -> Tools:
        """What the build venv installs for this route (and only for it)."""
        ...

    def check_python(self, py: PythonInfo) -> None:
        """Refuse an interpreter this route cannot build with, before anything slow runs."""
        ...

    def check_platform(self, platform: Platform) -> None:
        """Refuse a target platform this route cannot build for, before anything slow runs."""
        ...

    def cache_key(self, project: ProjectConfig, *, compression: Compression) -> dict[str, object]:
        """This route's part of the output cache key: everything of its own that changes bytes."""
        ...

    def build(self, job: Build, *, runner: Runner) -> Built:
        """Make the executable inside ``job.workdir``."""
        ...

    def components(self) -> tuple[Component, ...]:
        """What this route embeds in every executable besides the app's distributions."""
        ...
