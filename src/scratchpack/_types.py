"""Small shared types: path-likes and the injectable subprocess runner."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
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
