"""The real-apps builds (tests/test_realapps.py), started in the background as soon as they can.

A build is minutes of one busy process (pip, PyInstaller's analysis, the static bundler) or a
download; the tests only run the executables. So the session starts every build its tests will
ask for, two at a time, in the tests' order: the default route's when the session begins, the
static route's once the kit is built (tests/conftest.py). Each runs niced like the background
kit build, so the tests that run meanwhile keep their CPU, and a test waits only for what is
not built yet.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from testsupport.kitbuild import NICENESS

REALAPPS = Path(__file__).resolve().parent / "realapps"
MODULE = Path(__file__).resolve().parent / "test_realapps.py"
SCRATCHPACK = [sys.executable, "-m", "scratchpack"]


@dataclass(frozen=True)
class Build:
    returncode: int
    stderr: str
    exe: Path
    seconds: float


def planned(items: Iterable[pytest.Item]) -> dict[str, list[str]]:
    """route -> the apps this session's test_realapps tests build on it, in the tests' order."""
    plan: dict[str, list[str]] = {}
    for item in items:
        params = getattr(item, "callspec", None)
        if item.path != MODULE or params is None or "route" not in params.params:
            continue
        app = params.params.get("app", "stdlib_matrix")  # test_stdlib_item: the matrix app
        apps = plan.setdefault(params.params["route"], [])
        if app not in apps:
            apps.append(app)
    return plan


class Builder:
    """Builds each planned (app, route) once, from a snapshot of its project (the build must not
    write build/ or *.egg-info into the repository), two at a time: ``start(route, cache)``
    queues a route's builds, calling the builder waits for one."""

    def __init__(self, workdir: Path, plan: Mapping[str, list[str]]) -> None:
        self.workdir, self.plan = workdir, plan
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="realapps-build")
        self._builds: dict[tuple[str, str], Future[Build]] = {}
        self._running: set[subprocess.Popen[str]] = set()
        self._closing = threading.Event()
        self._lock = threading.Lock()

    def start(self, route: str, cache: Path) -> None:
        """Queue every planned build of ``route`` not queued yet (cache: its --cache-dir).
        Thread-safe: the kit's builder thread and a test's kit fixture may both call it."""
        with self._lock:
            if self._closing.is_set():
                return
            for app in self.plan.get(route, ()):
                if (app, route) not in self._builds:
                    self._builds[app, route] = self._pool.submit(self._build, app, route, cache)

    def __call__(self, app: str, route: str) -> Build:
        with self._lock:
            future = self._builds.get((app, route))
        assert future is not None, f"{app} on {route}: not planned, or its route not started"
        return future.result()

    def close(self) -> None:
        """Builds nobody asked for (a test failed or was interrupted first) are stopped: the
        CLI stops its tools on SIGTERM."""
        with self._lock:
            self._closing.set()
        for proc in list(self._running):
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _build(self, app: str, route: str, cache: Path) -> Build:
        src = self.workdir / route / "src" / app  # per route: two builds of one app may overlap
        shutil.copytree(REALAPPS / app, src, ignore=shutil.ignore_patterns("*.egg-info", "build"))
        out = self.workdir / "out" / route / app
        out.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
        started = time.monotonic()
        with subprocess.Popen(
            [*SCRATCHPACK, "exe", str(src), "--runtime", route, "-o", str(out),
             "--cache-dir", str(cache)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: os.nice(NICENESS),  # noqa: PLW1509 - one syscall
        ) as proc:  # fmt: skip
            self._running.add(proc)
            if self._closing.is_set():  # close() ran while this one was starting
                proc.terminate()
            try:
                _, stderr = proc.communicate(timeout=900)
            except subprocess.TimeoutExpired:
                proc.terminate()
                _, stderr = proc.communicate()
                stderr += "\n(stopped after 900 s)"
            finally:
                self._running.discard(proc)
        return Build(proc.returncode, stderr, out, time.monotonic() - started)
