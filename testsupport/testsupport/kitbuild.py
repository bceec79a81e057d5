"""A static CPython kit built in the background while the tests that do not need it run.

A cold kit build is minutes of compiling; most of the suite waits on servers, registries and
container runtimes and leaves the CPU idle meanwhile. So the session starts the build in its
own process (niced: a test's deadline never waits on the kit's compilers) as soon as it knows
a collected test needs the kit, and the kit fixture only waits for it. The build is the real
``ensure_kit``, the same call a user's first static build makes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

#: Run by the build's process: scratchpack's own progress lines (each step and how long it
#: took) go to the log, which says where the time went.
_BUILD = """
import sys
from pathlib import Path
from scratchpack import _ctx
from scratchpack.freeze.static import ensure_kit
_ctx.PROGRESS.set(True)
kit = ensure_kit(Path(sys.argv[1]), runner=_ctx.run_subprocess)
print(f"kit ready: {kit.root}", flush=True)
"""

#: The same for a cross kit (``sys.argv[2]``: ``linux/arm64``): it waits on the host kit's lock
#: when that one is still building (its interpreter is the cross build's build interpreter).
BUILD_FOR_PLATFORM = """
import sys
from pathlib import Path
from scratchpack import _ctx
from scratchpack._types import Platform
from scratchpack.freeze.static import ensure_kit
from scratchpack.freeze.static.toolchain import target_for
_ctx.PROGRESS.set(True)
target = target_for(Platform.parse(sys.argv[2]))
kit = ensure_kit(Path(sys.argv[1]), runner=_ctx.run_subprocess, target=target)
print(f"kit ready: {kit.root}", flush=True)
"""

#: How much lower than the tests the build runs: it gets the CPU the tests leave idle.
NICENESS = 10

#: How long a test waits for the build at most (a cold build is 6-10 min on 2 idle cores).
WAIT_SECONDS = 2400.0

#: How long a stopped build gets to stop its compilers (scratchpack's own SIGINT path: each
#: tool's process group gets SIGTERM, then SIGKILL after a few seconds) before it is killed.
STOP_GRACE_SECONDS = 20.0


class KitBuildError(AssertionError):
    """The background kit build failed: the kit fixture's error, with the build's log."""


class BackgroundKit:
    """One ``ensure_kit(cache)`` in a child process, started now; ``wait()`` joins it.

    ``script`` (Python, given the cache as ``sys.argv[1]`` and ``args`` after it) is the build;
    tests of this class give a stand-in."""

    def __init__(
        self,
        cache: Path,
        log: Path,
        *,
        script: str = _BUILD,
        args: tuple[str, ...] = (),
        label: str = "",
    ) -> None:
        self.cache = cache
        self.label = label  # which kit, in the session's summary
        self.log = log
        self.started = time.monotonic()
        self.seconds: float | None = None  # how long it ran, once it has ended
        self.waited: float | None = None  # how long the first test that needed it waited
        self._lock = threading.Lock()
        self._done = threading.Event()  # the process has ended (and been reaped)
        with log.open("wb") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", script, str(cache), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C at the terminal stops pytest, which stops us
                preexec_fn=lambda: os.nice(NICENESS),  # noqa: PLW1509 - one syscall
            )
        # notes when the build ends, not when a test first asks (the summary's figure)
        threading.Thread(target=self._watch, name="kit-build-watch", daemon=True).start()

    def wait(self, timeout: float = WAIT_SECONDS) -> None:
        """Block until the kit is built; raise with the build's log if it was not.

        pytest-timeout's alarm (the waiting test's own budget) is held while waiting: the
        build's minutes are not that test's, and this wait has its own bound."""
        asked = time.monotonic()
        alarm = signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise KitBuildError(
                f"the background kit build was still running after {timeout:.0f} s of waiting; "
                f"stopped. Its log ({self.log}):\n{self._tail()}"
            ) from None
        finally:
            if alarm[0] > 0:
                signal.setitimer(signal.ITIMER_REAL, *alarm)
        self._ended()
        if self.waited is None:
            self.waited = time.monotonic() - asked
        if code != 0:
            raise KitBuildError(
                f"the background kit build exited with {code} after {self.seconds:.0f} s; "
                f"its log ({self.log}):\n{self._tail()}"
            )

    def stop(self) -> None:
        """Stop an unfinished build (the session ends first) and every compiler it started."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGINT)  # KeyboardInterrupt: it stops its tools
            try:
                self._proc.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._ended()

    def outcome(self) -> str:
        """One line for the session's summary: how it ended, how long the tests waited."""
        code, ran = self._proc.poll(), f"{self.seconds or 0:.0f} s"
        if code is None or self.seconds is None:
            return "still running"
        if code != 0 and self.waited is None:
            return f"stopped unfinished after {ran}: no test waited for it"
        if code != 0:
            return f"failed after {ran}"
        waited = "no test waited" if self.waited is None else f"tests waited {self.waited:.0f} s"
        return f"built in {ran} beside the other tests; {waited}"

    def steps(self) -> list[str]:
        """The build's timed steps, ``"compiling OpenSSL: done in 110.6s"`` and the like."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return []
        return re.findall(r"^scratchpack: (.*(?:done in|built in) .*)$", text, re.M)

    def when_built(self, then: Callable[[], None]) -> None:
        """Call ``then`` in a thread of its own as soon as the build has succeeded (never if
        it fails or is stopped): work that needs the kit starts then, not when a test asks.
        It must not touch pytest: no fixture, no alarm (the running test owns those)."""

        def call() -> None:
            self._done.wait()
            if self._proc.returncode == 0:
                then()

        threading.Thread(target=call, name="kit-build-then", daemon=True).start()

    def _watch(self) -> None:
        self._proc.wait()
        self._ended()
        self._done.set()

    def _ended(self) -> None:
        with self._lock:
            if self.seconds is None:
                self.seconds = time.monotonic() - self.started

    def _tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as err:
            return f"(unreadable: {err})"
