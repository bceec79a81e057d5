"""`scratchpack exe --runtime static --platform linux/arm64`: one arm64 executable, proven real.

The aarch64 kit is cross-built once per session (cold in CI, in the background, beside the
x86-64 kit: `arm64_cache`; the host kit's interpreter is its build interpreter), webhello is
frozen for linux/arm64, and the executable runs under Debian's qemu-aarch64-static inside
testsupport.static_sandbox: an empty, read-only root (no /tmp, no /proc) as uid 1000, where
webhello's behaviour suite runs against it.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.webhello._server import EarlySuites
from testsupport import static_sandbox
from testsupport.net import free_port, get_status

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[1]
WEBHELLO = REPO / "examples" / "webhello"
SANDBOX = Path(static_sandbox.__file__)
SYSTEM_PYTHON = "/usr/bin/python3"
QEMU = "qemu-aarch64-static"


def _scratchpack(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    return subprocess.run(
        [sys.executable, "-m", "scratchpack", *args, "--cache-dir", str(cache)],
        env=env,
        capture_output=True,
        text=True,
        timeout=2400,
        check=False,
    )


def _file_type(path: Path) -> str:
    proc = subprocess.run(["file", "-b", str(path)], check=True, capture_output=True, text=True)
    return proc.stdout


@pytest.fixture(scope="session")
def arm64_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Home of the executables and the servers' working directories. The sandbox binds each
    at its own path into a fresh root, so only the directory itself must let uid 1000 in."""
    d = tmp_path_factory.mktemp("arm64")
    d.chmod(0o755)
    return d


#: The behaviour suite's test below, whose run webhello_arm64 starts (EarlySuites).
SUITE_TEST = (
    Path(__file__),
    "test_arm64_webhello_behaviour_suite_passes_under_qemu_in_read_only_sandbox",
)
SUITE_DROP = ("WEBHELLO_SANDBOX_UID",)


def _suite_env(exe: Path) -> dict[str, str]:
    return {
        "WEBHELLO_CMD": str(exe),
        "WEBHELLO_SANDBOX": "ro-rootfs",
        "WEBHELLO_SANDBOX_EMULATOR": QEMU,
    }


@pytest.fixture(scope="session")
def webhello_arm64(
    arm64_cache: Path,
    arm64_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    behaviour_suites: EarlySuites,
) -> dict[str, Any]:
    """webhello frozen for linux/arm64 through the CLI; the first static build of this target
    cross-builds its kit (SCRATCHPACK_TEST_RUNTIME_SEED may hold it beside the x86-64 one).
    The behaviour suite's run under qemu starts here, beside the tests before its own."""
    src = tmp_path_factory.mktemp("webhello-arm64") / "webhello"
    shutil.copytree(
        WEBHELLO, src, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build")
    )
    out = arm64_dir / "webhello-arm64"
    proc = _scratchpack(
        "exe", str(src), "--runtime", "static", "--platform", "linux/arm64",
        "-o", str(out), "--json", cache=arm64_cache,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert Path(result["executable"]) == out
    behaviour_suites.start(SUITE_TEST, _suite_env(out), "tests/webhello", drop=SUITE_DROP)
    return dict(result)


def test_exe_for_linux_arm64_is_one_static_aarch64_executable(
    webhello_arm64: dict[str, Any],
) -> None:
    out = Path(webhello_arm64["executable"])
    kind = _file_type(out)
    assert "ARM aarch64" in kind and "statically linked" in kind, kind
    assert webhello_arm64["platform"] == "linux/arm64"
    assert out.stat().st_mode & 0o777 == 0o755
    raw = out.read_bytes()
    print(f"\nwebhello linux/arm64: {len(raw)} B raw, {len(gzip.compress(raw, 6))} B gzip")


def _sandboxed(exe: Path, args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    """The executable under qemu in the empty read-only root, as uid 1000."""
    argv = [
        SYSTEM_PYTHON, "-I", str(SANDBOX), "--uid=1000", f"--emulator={shutil.which(QEMU)}",
        "--", str(exe), *args,
    ]  # fmt: skip
    return subprocess.Popen(argv, cwd=cwd, env={}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_arm64_webhello_serves_under_qemu_in_empty_read_only_root_as_uid_1000(
    webhello_arm64: dict[str, Any], arm64_dir: Path
) -> None:
    exe = Path(webhello_arm64["executable"])
    cwd = arm64_dir / "cwd"
    cwd.mkdir(exist_ok=True)
    port, https_port = free_port(), free_port()
    started = time.monotonic()
    proc = _sandboxed(
        exe, ["-addr", f"127.0.0.1:{port}", "-httpsAddr", f"127.0.0.1:{https_port}"], cwd
    )
    try:
        status = None
        while time.monotonic() - started < 60 and proc.poll() is None:
            status = get_status(port, timeout=1)
            if status == 200:
                break
            time.sleep(0.05)
        first_200 = time.monotonic() - started
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate()[0].decode(errors="replace")
    assert status == 200, out
    assert "(uid: 1000)" in out, out
    assert code == 0, f"exit {code} after SIGTERM:\n{out}"
    print(f"\nwebhello linux/arm64 under qemu: first HTTP 200 after {first_200:.2f} s")


def test_arm64_webhello_behaviour_suite_passes_under_qemu_in_read_only_sandbox(
    webhello_arm64: dict[str, Any], behaviour_suites: EarlySuites
) -> None:
    """tests/webhello against the arm64 executable, every server started under qemu by
    testsupport.static_sandbox (see _server.py's WEBHELLO_SANDBOX_EMULATOR)."""
    env = _suite_env(Path(webhello_arm64["executable"]))
    result = behaviour_suites.run(SUITE_TEST, env, "tests/webhello", drop=SUITE_DROP)
    assert result.returncode == 0, result.tail()
    assert result.counts.get("passed", 0) > 0, result.tail()
    assert not result.counts.keys() & {"skipped", "xfailed", "xpassed"}, result.tail()
    assert result.complete, result.tail()  # every test ran, once


#: What each app prints last when all its compiled parts worked (under qemu, from the executable).
NATIVE_APPS = {
    # C, Rust with TLS in 50 threads and a caught panic (pydantic-core), aiohttp's C parser
    "app_native": (
        REPO / "tests" / "fixtures" / "app_native",
        '{"aiohttp": true, "markupsafe": true, "msgpack": true, "orjson": true, '
        '"pydantic": true, "rust_panic": true, "yaml": true}',
    ),
    # numpy on OpenBLAS, cryptography (Rust + OpenSSL), kiwisolver's C++ exception through the
    # bundled libstdc++ (its TLS goes through TLS descriptors on aarch64)
    "native_math": (
        REPO / "tests" / "realapps" / "native_math",
        "3 extension modules loaded from: executable",
    ),
}


@pytest.mark.parametrize("app", sorted(NATIVE_APPS))
def test_arm64_musllinux_extensions_load_under_qemu_in_empty_read_only_root(
    app: str, arm64_cache: Path, arm64_dir: Path
) -> None:
    """An app's musllinux aarch64 wheels loaded by elfload.c from the arm64 executable, under
    qemu as uid 1000 in an empty read-only root."""
    project, last_line = NATIVE_APPS[app]
    out = arm64_dir / f"{app}-arm64"
    proc = _scratchpack(
        "exe", str(project), "--runtime", "static",
        "--platform", "linux/arm64", "-o", str(out), cache=arm64_cache,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "ARM aarch64" in _file_type(out)
    cwd = arm64_dir / f"cwd-{app}"
    cwd.mkdir(exist_ok=True)
    ran = _sandboxed(out, [], cwd)
    output, _ = ran.communicate(timeout=300)
    text = output.decode(errors="replace")
    assert ran.returncode == 0, text
    assert text.splitlines()[-1] == last_line, text
    assert "FAIL" not in text, text
