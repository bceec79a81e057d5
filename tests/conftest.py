"""Suite-wide rules: in CI (CI=true) a skipped test is a failure, never a quiet pass."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testsupport.kitbuild import BUILD_FOR_PLATFORM, BackgroundKit
from testsupport.net import free_port
from testsupport.registry_server import (
    basic_registry,
    plain_registry,
    podman_store,
    registry_tls,
    tls_registry,
    token_registry,
    token_server,
)

if TYPE_CHECKING:
    from tests._realapps import Builder
    from tests.webhello._server import EarlySuites
    from testsupport.engines import ContainerRuntime


__all__ = [  # shared session fixtures (one registry of each kind per test session) and helpers
    "basic_registry",
    "free_port",
    "plain_registry",
    "podman_store",
    "registry_tls",
    "tls_registry",
    "token_registry",
    "token_server",
]

_skipped: list[str] = []


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # pytest reports a strict xfail that failed as "skipped" with ``wasxfail``: that test ran
    # and failed exactly as its reason states (and passing would fail the run), so it is not a
    # skip. Everything else reported skipped did not run, and CI counts it as a failure.
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if in_ci() and _skipped and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for build in _kit_builds:  # where a CI run's kit time went
        what = f"static kit for {build.label}" if build.label else "static kit"
        terminalreporter.write_sep("-", f"{what} (background build): {build.outcome()}")
        for line in build.steps():
            terminalreporter.write_line(f"  {line}")
    if in_ci() and _skipped:
        terminalreporter.write_line(
            f"CI=true: {len(_skipped)} skipped test(s) count as failures:", red=True
        )
        for nodeid in _skipped:
            terminalreporter.write_line(f"  {nodeid}", red=True)


# --- container runtimes shared by every module: one private dockerd, one podman store ----------


@pytest.fixture(scope="session")
def docker_runtime() -> Iterator[ContainerRuntime]:
    from testsupport.engines import docker_session  # runtimes imports free_port from here

    with docker_session() as runtime:
        yield runtime


@pytest.fixture(scope="session")
def podman_runtime() -> Iterator[ContainerRuntime]:
    from testsupport.engines import podman_session

    with podman_session() as runtime:
        yield runtime


@pytest.fixture(scope="session")
def static_server(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from testsupport.engines import build_static_server

    return build_static_server(tmp_path_factory.mktemp("static-server"))


@pytest.fixture(scope="session")
def behaviour_suites(request: pytest.FixtureRequest) -> Iterator[EarlySuites]:
    """Runs of the webhello behaviour suite against frozen executables, started early by the
    fixtures that build them (tests/webhello/_server.py EarlySuites)."""
    from tests.webhello._server import EarlySuites

    runs = EarlySuites({(item.path, item.name) for item in request.session.items})
    try:
        yield runs
    finally:
        runs.stop()


@pytest.fixture(scope="session")
def freeze_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build cache for the whole session: each project is frozen cold once, then reused."""
    return tmp_path_factory.mktemp("freeze-cache")


@pytest.fixture(scope="session", autouse=True)
def realapps_builds(
    request: pytest.FixtureRequest,
    freeze_cache: Path,
    _kit_in_background: BackgroundKit | None,  # its cache outlives these builds
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Builder | None]:
    """The builds test_realapps' selected tests will run, started early so that they overlap
    the other tests: the default route's when the session begins, the static route's once the
    background kit is built (or when ``static_cache`` is made, for a seeded kit). None when no
    such test is selected."""
    from tests._realapps import Builder, planned

    plan = planned(request.session.items)
    if not plan:
        yield None
        return
    builder = Builder(tmp_path_factory.mktemp("realapps"), plan)
    builder.start("pyinstaller", freeze_cache)
    if _kit_in_background is not None:  # else the seeded kit's fixture starts them
        kit = _kit_in_background
        kit.when_built(lambda: builder.start("static", kit.cache))
    try:
        yield builder
    finally:
        builder.close()


# --- the --runtime static runtime kit: built cold ONCE per session, shared by every static test --

RUNTIME_SEED_ENV = "SCRATCHPACK_TEST_RUNTIME_SEED"
KIT_FIXTURE = "static_cache"
ARM64_KIT_FIXTURE = "arm64_cache"  # the cross kit for linux/arm64 too (after the host's)
_NEEDS_KIT = pytest.StashKey[bool]()
_NEEDS_ARM64_KIT = pytest.StashKey[bool]()
_kit_builds: list[BackgroundKit] = []


def _kit_rank(item: pytest.Item) -> int:
    """0: no kit; 1: the host's kit; 2: the arm64 kit as well (built after the host's)."""
    if ARM64_KIT_FIXTURE in getattr(item, "fixturenames", ()):
        return 2
    return 1 if _needs_kit(item) else 0


def _needs_kit(item: pytest.Item) -> bool:
    """A test that uses the kit: it asks for the fixture, or it is a static-route case of a
    parametrized test that asks for the fixture only for that route (request.getfixturevalue)."""
    if KIT_FIXTURE in getattr(item, "fixturenames", ()):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "static" in callspec.params.values()


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: only the tests that will run count
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The kit's tests run last, each module's in its own order: the kit builds in the
    background while all the others run, the default-route half of a module that tests both
    routes included. (Such a module's module-scoped fixtures are made once per half: today
    test_realapps' build and matrix, whose builds and runs are per route anyway.)"""
    items.sort(key=_kit_rank)  # stable
    config.stash[_NEEDS_KIT] = any(map(_needs_kit, items))
    config.stash[_NEEDS_ARM64_KIT] = any(_kit_rank(item) == 2 for item in items)


def _seed_runtime(seed: Path, cache: Path) -> None:
    """Copy a built kit and its zig toolchain from another cache (local runs only)."""
    from scratchpack.freeze.static import kit_key
    from scratchpack.freeze.static.toolchain import TARGETS

    src, dest = seed / "runtime", cache / "runtime"
    kits = [src / kit_key(t) for t in TARGETS.values()]  # each target's kit, if the seed has it
    parts = [*kits, *sorted(src.glob("zig-[0-9]*")), src / "zig-cache"]
    for part in parts:
        if part.is_dir():
            shutil.copytree(part, dest / part.name, symlinks=True)


@pytest.fixture(scope="session", autouse=True)
def _kit_in_background(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundKit | None]:
    """Starts the cold kit build when the session begins, if a selected test needs the kit
    and no seed is given; stops it at the end if no test waited for it to finish."""
    if not request.config.stash.get(_NEEDS_KIT, False) or os.environ.get(RUNTIME_SEED_ENV):
        yield None
        return
    cache = tmp_path_factory.mktemp("static-cache")
    build = BackgroundKit(cache, tmp_path_factory.getbasetemp() / "static-kit-build.log")
    _kit_builds.append(build)
    try:
        yield build
    finally:
        build.stop()
        shutil.rmtree(cache, ignore_errors=True)  # about 700 MB


@pytest.fixture(scope="session", autouse=True)
def _arm64_kit_in_background(
    request: pytest.FixtureRequest,
    _kit_in_background: BackgroundKit | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BackgroundKit | None]:
    """The linux/arm64 cross kit, started with the host's in the same cache: it waits on the
    host kit's lock, then builds while the host kit's tests run."""
    if _kit_in_background is None or not request.config.stash.get(_NEEDS_ARM64_KIT, False):
        yield None
        return
    build = BackgroundKit(
        _kit_in_background.cache,
        tmp_path_factory.getbasetemp() / "static-kit-arm64-build.log",
        script=BUILD_FOR_PLATFORM,
        args=("linux/arm64",),
        label="linux/arm64",
    )
    _kit_builds.append(build)
    try:
        yield build
    finally:
        build.stop()


@pytest.fixture(scope="session")
def arm64_cache(static_cache: Path, _arm64_kit_in_background: BackgroundKit | None) -> Path:
    """``static_cache`` once it also holds the linux/arm64 kit: built in this session (cold, in
    the background) or, locally, seeded beside the host's; ensured here either way."""
    from scratchpack._ctx import run_subprocess
    from scratchpack._types import Platform
    from scratchpack.freeze.static import ensure_kit
    from scratchpack.freeze.static.toolchain import target_for

    if _arm64_kit_in_background is not None:
        _arm64_kit_in_background.wait()
    target = target_for(Platform.parse("linux/arm64"))
    alarm = signal.setitimer(signal.ITIMER_REAL, 0)  # a seed without the arm64 kit builds it here
    try:
        ensure_kit(static_cache, runner=run_subprocess, target=target)
    finally:
        if alarm[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, *alarm)
    return static_cache


@pytest.fixture(scope="session")
def static_cache(
    _kit_in_background: BackgroundKit | None,
    realapps_builds: Builder | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    """A build cache whose static CPython kit (zlib, OpenSSL, CPython from Debian sources, zig cc)
    is built from scratch in this session, once: this IS the proof that the runtime builds
    (~6-10 min of 2 cores, started in the background when the session begins; the first test
    that asks waits for what is left). Every --runtime static build of the session uses it.

    Locally, SCRATCHPACK_TEST_RUNTIME_SEED=<cache dir> copies an already built kit in instead;
    with CI=true that shortcut is refused, so CI always builds the kit cold.
    """
    from scratchpack._ctx import run_subprocess
    from scratchpack.freeze.static import ensure_kit

    if _kit_in_background is not None:
        _kit_in_background.wait()  # a failed build is this fixture's error, with its log
        ensure_kit(_kit_in_background.cache, runner=run_subprocess)  # loads what was built
        if realapps_builds is not None:
            realapps_builds.start("static", _kit_in_background.cache)
        yield _kit_in_background.cache
        return
    cache = tmp_path_factory.mktemp("static-cache")
    seed = os.environ.get(RUNTIME_SEED_ENV, "").strip()
    if seed:
        if in_ci():
            pytest.fail(f"{RUNTIME_SEED_ENV} is set: CI must build the static runtime cold")
        _seed_runtime(Path(seed), cache)
    ensure_kit(cache, runner=run_subprocess)
    if realapps_builds is not None:
        realapps_builds.start("static", cache)
    yield cache
    if realapps_builds is not None:
        realapps_builds.close()  # before their cache goes
    shutil.rmtree(cache, ignore_errors=True)
