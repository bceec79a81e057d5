"""The background kit build of the test session (testsupport/kitbuild.py), with stand-in
builds: a failure reaches the waiting test with the build's log, and a build stopped at the end
of the session takes the tools it started with it. The real build: the static_cache fixture."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from testsupport.kitbuild import BackgroundKit, KitBuildError

_STEPS = """
import sys
from scratchpack import _ctx
_ctx.PROGRESS.set(True)
with _ctx.step("compiling zlib"):
    pass
print("kit ready:", sys.argv[1])
"""

_FAILS = """
import sys
print("configure: error: no C compiler", file=sys.stderr)
sys.exit(3)
"""

#: A build busy in a tool, the way ensure_kit runs make: through run_subprocess, in the tool's
#: own process group. Its PID goes to a file so the test can see it stop.
_BUSY = """
import sys
from pathlib import Path
from scratchpack import _ctx
argv = ["sh", "-c", f"echo $$ > {sys.argv[1]}/tool.pid; exec sleep 600"]
_ctx.run_subprocess(argv)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_finished_build_reports_its_steps(tmp_path: Path) -> None:
    build = BackgroundKit(tmp_path, tmp_path / "build.log", script=_STEPS)
    log = tmp_path / "build.log"
    while "kit ready" not in log.read_text():
        time.sleep(0.05)
    time.sleep(2)  # the build is over well before a test asks: its time is its own
    build.wait()
    asked_after = time.monotonic() - build.started
    assert build.seconds is not None and asked_after - build.seconds > 1.5, build.seconds
    assert (tmp_path / "build.log").read_text().endswith(f"kit ready: {tmp_path}\n")
    assert len(build.steps()) == 1
    assert build.steps()[0].startswith("compiling zlib: done in ")
    assert build.outcome().startswith("built in ")
    build.stop()  # a finished build: nothing to stop
    assert build.outcome().startswith("built in ")


def test_a_failed_build_is_the_waiting_tests_error_with_its_log(tmp_path: Path) -> None:
    build = BackgroundKit(tmp_path, tmp_path / "build.log", script=_FAILS)
    with pytest.raises(KitBuildError, match="exited with 3") as err:
        build.wait()
    assert "configure: error: no C compiler" in str(err.value)
    assert build.outcome().startswith("failed after ")


def test_a_wait_past_its_bound_stops_the_build_and_says_so(tmp_path: Path) -> None:
    build = BackgroundKit(tmp_path, tmp_path / "build.log", script=_BUSY)
    with pytest.raises(KitBuildError, match="still running after 1 s of waiting"):
        build.wait(timeout=1)
    assert build.outcome().startswith("stopped unfinished after ")


def test_the_wait_holds_the_tests_alarm_and_gives_back_what_was_left(tmp_path: Path) -> None:
    """pytest-timeout's SIGALRM would fail the waiting test for the build's minutes."""
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the alarm fired"))
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        build = BackgroundKit(tmp_path, tmp_path / "build.log", script="import time; time.sleep(2)")
        build.wait()
        left, _ = signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert 0 < left <= 1.0


def test_stopping_an_unfinished_build_stops_its_tools(tmp_path: Path) -> None:
    build = BackgroundKit(tmp_path, tmp_path / "build.log", script=_BUSY)
    pid_file = tmp_path / "tool.pid"
    deadline = time.monotonic() + 30
    while not pid_file.is_file() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, (tmp_path / "build.log").read_text()
        time.sleep(0.05)
    tool = int(pid_file.read_text())
    assert _alive(tool)
    build.stop()
    # it stopped itself on SIGINT (its tool's group got SIGTERM), not SIGKILLed after the grace;
    # no time bound here: under a loaded machine the niced child may take a while to run
    assert build._proc.returncode != -signal.SIGKILL, build.log.read_text()
    deadline = time.monotonic() + 10
    while _alive(tool) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(tool)
    assert build.outcome().startswith("stopped unfinished after ")


def test_work_that_needs_the_kit_starts_when_it_is_built_and_only_then(tmp_path: Path) -> None:
    built = threading.Event()
    build = BackgroundKit(tmp_path, tmp_path / "build.log", script="import time; time.sleep(1)")
    build.when_built(built.set)
    assert not built.is_set()  # the build takes a second
    assert built.wait(30)
    assert build.seconds is not None  # it had ended first
    failed = threading.Event()
    BackgroundKit(tmp_path, tmp_path / "fail.log", script=_FAILS).when_built(failed.set)
    time.sleep(2)
    assert not failed.is_set()
