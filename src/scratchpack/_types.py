"""Small shared types: path-likes, the injectable subprocess runner, the target platform."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

StrPath = str | os.PathLike[str]


class Runner(Protocol):
    """Runs a command and returns the completed process; injected so tests can replace tools."""

    def __call__(
        self,
        cmd: Sequence[StrPath],
        *,
        cwd: StrPath | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]: ...


#: ``platform.machine()`` -> the GOARCH name OCI platforms use.
GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform (``linux/arm64``): what the image index says and what the freezer targets.

    Here, not in oci/, because the freezer (which never imports oci/) takes one as its target.
    """

    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch[/variant]`` as docker's ``--platform`` spells it; raises ValueError."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"platform {text!r}: expected OS/ARCH[/VARIANT], e.g. linux/arm64")
        return cls(*(p.lower() for p in parts))


def host_platform() -> Platform:
    """This machine's platform (an unknown machine keeps its own name, refused by who needs it)."""
    machine = platform.machine()
    return Platform("linux", GO_ARCH.get(machine, machine.lower()))
