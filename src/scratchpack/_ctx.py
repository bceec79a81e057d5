"""Per-run context: verbosity and progress reporting kept in contextvars, plus run_subprocess.

Contextvars rather than globals so tests and concurrent callers each get their own settings.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence

from scratchpack._types import StrPath

VERBOSITY: contextvars.ContextVar[int] = contextvars.ContextVar("VERBOSITY", default=0)
PROGRESS: contextvars.ContextVar[bool] = contextvars.ContextVar("PROGRESS", default=False)


def log(message: str) -> None:
    """A progress line on stderr, shown only when progress output is on (TTY and not --json)."""
    if PROGRESS.get() or VERBOSITY.get() > 0:
        print(f"scratchpack: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """A build warning or note on stderr, shown whether or not stderr is a TTY: unlike progress,
    it says something about the result (a module left out, a feature that will fail)."""
    print(f"scratchpack: {message}", file=sys.stderr, flush=True)


def debug(message: str) -> None:
    if VERBOSITY.get() > 0:
        print(f"scratchpack: [debug] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """Announce a long step and how long it took."""
    log(f"{title} ...")
    start = time.monotonic()
    yield
    log(f"{title}: done in {time.monotonic() - start:.1f}s")


def run_subprocess(
    cmd: Sequence[StrPath],
    *,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool capturing its output; the caller decides what a failure means.

    Output is streamed to stderr only at -v, and otherwise kept for the error message.
    """
    argv = [os.fspath(c) for c in cmd]
    debug("running " + " ".join(argv))
    return subprocess.run(  # noqa: PLW1510 - the caller inspects returncode
        argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
