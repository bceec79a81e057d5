"""Per-run context: verbosity and progress reporting kept in contextvars, plus run_subprocess.

Contextvars rather than globals so tests and concurrent callers each get their own settings.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

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


#: How long a stopped tool's process group gets to exit on SIGTERM before it is killed.
STOP_GRACE_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1


def run_subprocess(
    cmd: Sequence[StrPath],
    *,
    cwd: StrPath | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool capturing its output; the caller decides what a failure means.

    Output is streamed to stderr only at -v, and otherwise kept for the error message.
    The tool runs in its own process group, so a Ctrl-C at the terminal reaches scratchpack
    alone, and when scratchpack is stopped (an exception, SIGINT, SIGTERM) the whole group
    (PyInstaller and whatever it started) is stopped with it, not left running under PID 1.
    If scratchpack is killed outright, the kernel kills the tool (PR_SET_PDEATHSIG; the
    kernel's "parent" is the calling thread, so call this from one that outlives the tool).
    """
    argv = [os.fspath(c) for c in cmd]
    debug("running " + " ".join(argv))
    with subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        process_group=0,
        preexec_fn=_die_with_parent(),  # noqa: PLW1509 - one prctl call, resolved before fork
    ) as proc:
        try:
            output, _ = proc.communicate()
        except BaseException:
            stop_group(proc)
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, output, None)


def stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the process group led by ``proc``, then SIGKILL what is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(STOP_GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers, and a leader that ignored SIGTERM
    proc.wait()


def _die_with_parent() -> Callable[[], object]:
    """What the child calls before exec so that the kernel SIGKILLs it when scratchpack dies.

    Looked up in the parent: the child of a fork should do as little as possible."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return functools.partial(prctl, _PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
