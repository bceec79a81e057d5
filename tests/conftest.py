"""Suite-wide rules: in CI (CI=true) a skipped test is a failure, never a quiet pass."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests._net import free_port
from tests.registry_server import (
    basic_registry,
    plain_registry,
    podman_store,
    registry_tls,
    tls_registry,
    token_registry,
    token_server,
)

if TYPE_CHECKING:
    from tests.runtimes import ContainerRuntime


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
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if in_ci() and _skipped and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if in_ci() and _skipped:
        terminalreporter.write_line(
            f"CI=true: {len(_skipped)} skipped test(s) count as failures:", red=True
        )
        for nodeid in _skipped:
            terminalreporter.write_line(f"  {nodeid}", red=True)


# --- container runtimes shared by every module: one private dockerd, one podman store ----------


@pytest.fixture(scope="session")
def docker_runtime() -> Iterator[ContainerRuntime]:
    from tests.runtimes import docker_session  # runtimes imports free_port from here

    with docker_session() as runtime:
        yield runtime


@pytest.fixture(scope="session")
def podman_runtime() -> Iterator[ContainerRuntime]:
    from tests.runtimes import podman_session

    with podman_session() as runtime:
        yield runtime


@pytest.fixture(scope="session")
def static_server(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.runtimes import build_static_server

    return build_static_server(tmp_path_factory.mktemp("static-server"))


@pytest.fixture(scope="session")
def freeze_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build cache for the whole session: each project is frozen cold once, then reused."""
    return tmp_path_factory.mktemp("freeze-cache")
