"""Start webhello as a real child process and talk to it over real sockets.

Every webhello test (behaviour, hostile input, benchmarks) goes through this module, so the same
suite runs against `python -m webhello` and against a frozen executable: the command comes from
the WEBHELLO_CMD environment variable (shell words), nothing here imports webhello, and argv[0]
is never assumed (see `usage_argv0`).

The server gets a minimal, controlled environment (like `env -i`) plus what each test passes.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

from testsupport import static_sandbox
from testsupport.net import free_port

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
WEBHELLO_SRC = REPO / "examples" / "webhello" / "src"
# The pyenv interpreter behind .venv lives under /root (mode 0700): another uid cannot run it,
# so non-root runs of the source tree use Debian's interpreter with PYTHONPATH instead.
SYSTEM_PYTHON = "/usr/bin/python3"
START_TIMEOUT = 15.0
IO_TIMEOUT = 10.0

# Go `log` prefix: local time, second resolution.
LOG_LINE = re.compile(r"^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) (.*)$", re.S)
_SERVING = re.compile(r"^serving HTTPS? on TCP (\S*)$")
_REDIRECT = re.compile(r"^installing redirect from HTTP=(\S*) to HTTPS=")
_PROBE_ERROR = re.compile(r"^http: TLS handshake error from (\S+): ")
_CLONE_NEWNET = 0x40000000


def _tool(name: str) -> str:
    """Absolute path of a system tool, so the server's environment can stay empty (no PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise AssertionError(f"{name} not found: run scripts/install-system-deps")
    return found


def custom_command() -> list[str] | None:
    """The command from WEBHELLO_CMD, with a bare program name resolved on PATH."""
    raw = os.environ.get("WEBHELLO_CMD", "").strip()
    if not raw:
        return None
    words = shlex.split(raw)
    if "/" not in words[0]:
        words[0] = _tool(words[0])
    return words


#: How the behaviour suite is split for a frozen executable: the tests marked ``slow`` (real
#: deadlines: about a minute of waiting on the server's 60 s keep-alive timer) in one child
#: pytest, all the others in a second one started beside it, so the minute overlaps the rest;
#: that one spreads its files over two pytest-xdist workers (a module's tests stay together
#: and in order: they share module-scoped servers), so a server start that is CPU (a one-file
#: executable's extraction, qemu) uses both cores.
SUITE_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("slow", ()),
    ("not slow", ("-n", "2", "--dist", "loadfile")),
)

_SUMMARY = re.compile(r"^=* ?(\d+ \w+.*) in [\d.]+s")
_COUNT = re.compile(r"(\d+) (\w+)")


@dataclass(frozen=True)
class SuiteResult:
    """What a run of the behaviour suite in child pytests gave, all parts together."""

    returncode: int  # the first part's non-zero exit status, else 0
    output: str  # each part's whole output, one after the other
    counts: dict[str, int]  # outcome ("passed", "failed", "skipped"...) -> tests, all parts
    complete: bool  # every test of the suite ran: what the first part deselected, the others ran

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def _counts(output: str) -> dict[str, int]:
    """pytest's closing line ("797 passed, 1 deselected in 40.1s") as outcome -> number."""
    summaries = [m.group(1) for line in output.splitlines() if (m := _SUMMARY.match(line))]
    if not summaries:
        return {}
    return {kind: int(n) for n, kind in _COUNT.findall(summaries[-1])}


class SuiteRun:
    """The behaviour suite in child pytests with ``env`` added (WEBHELLO_CMD...), one per
    SUITE_PARTS entry, all started now: how the freezer tests prove a frozen webhello.
    ``drop`` names variables the children must not see. ``wait()`` collects the result."""

    def __init__(self, env: Mapping[str, str], *args: str, drop: Sequence[str] = ()) -> None:
        child = {**os.environ, **env}
        for name in ("PYTEST_ADDOPTS", *drop):
            child.pop(name, None)
        self._parts: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
        for marks, options in SUITE_PARTS:
            out = tempfile.TemporaryFile(prefix="webhello-suite-")  # noqa: SIM115 - read in wait()
            argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marks]
            argv += options
            proc = subprocess.Popen(
                [*argv, *args], cwd=REPO, env=child, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            self._parts.append((proc, out))

    def stop(self) -> None:
        """End the parts still running (a session that ends before its test collected them)."""
        for proc, out in self._parts:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()

    def wait(self, timeout: float = 1200) -> SuiteResult:
        deadline = time.monotonic() + timeout
        codes, outputs = [], []
        for proc, out in self._parts:
            try:
                codes.append(proc.wait(max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes.append(-signal.SIGKILL)
            with out:
                out.seek(0)
                outputs.append(out.read().decode("utf-8", "replace"))
        per_part = [_counts(text) for text in outputs]
        totals: dict[str, int] = {}
        for counts in per_part:
            for kind, n in counts.items():
                if kind != "deselected":
                    totals[kind] = totals.get(kind, 0) + n
        selected = [
            sum(n for k, n in c.items() if k not in {"deselected", "warnings"}) for c in per_part
        ]
        # The first part (no xdist) collects the whole suite and runs only its own marker's
        # tests; the others together must run exactly what it deselected. (pytest-xdist's
        # summary has no "deselected": its workers deselect.)
        complete = all(per_part) and sum(selected[1:]) == per_part[0].get("deselected", -1)
        return SuiteResult(
            returncode=next((code for code in codes if code != 0), 0),
            output="\n".join(
                f"--- part -m {part[0]!r}: exit {code} ---\n{text}"
                for part, code, text in zip(SUITE_PARTS, codes, outputs, strict=True)
            ),
            counts=totals,
            complete=complete,
        )


class EarlySuites:
    """Suite runs started before the test that checks them, by the fixture that builds the
    executable: the run's minute of waiting then overlaps the tests in between. Keyed by the
    checking test (its file and name); only a selected test's run is started early."""

    def __init__(self, selected: Iterable[tuple[Path, str]]) -> None:
        self._selected = {(path.resolve(), name) for path, name in selected}
        self._runs: dict[tuple[Path, str], SuiteRun] = {}

    def start(
        self, test: tuple[Path, str], env: Mapping[str, str], *args: str, drop: Sequence[str] = ()
    ) -> None:
        key = (test[0].resolve(), test[1])
        if key in self._selected and key not in self._runs:
            self._runs[key] = SuiteRun(env, *args, drop=drop)

    def run(
        self, test: tuple[Path, str], env: Mapping[str, str], *args: str, drop: Sequence[str] = ()
    ) -> SuiteResult:
        """The run started early for ``test`` (it must have been given the same env), or one
        started now; waited for to its end."""
        run = self._runs.pop((test[0].resolve(), test[1]), None)
        return (run or SuiteRun(env, *args, drop=drop)).wait()

    def stop(self) -> None:
        for run in self._runs.values():
            run.stop()
        self._runs.clear()


def frozen_executable() -> str | None:
    """The executable when WEBHELLO_CMD is a single path: then it is also argv[0]."""
    words = custom_command()
    return words[0] if words is not None and len(words) == 1 else None


@functools.cache
def readable_source() -> Path:
    """A copy of the webhello sources that any uid can read.

    The checkout may sit below a 0700 directory (a CI clone under /root), where another uid
    cannot reach it; a world-readable copy in /tmp (not pytest's 0700 basetemp) always works.
    """
    dest = Path(tempfile.mkdtemp(prefix="webhello-src-"))
    dest.chmod(0o755)
    shutil.copytree(
        WEBHELLO_SRC / "webhello", dest / "webhello", ignore=shutil.ignore_patterns("__pycache__")
    )
    for path in dest.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    atexit.register(shutil.rmtree, dest, True)
    return dest


def base_command(*, non_root: bool = False) -> tuple[list[str], dict[str, str]]:
    """The words that start webhello and the environment entries they need."""
    custom = custom_command()
    if custom is not None:
        return custom, {}
    if non_root:
        return [SYSTEM_PYTHON, "-m", "webhello"], {
            "PYTHONPATH": str(readable_source()),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    return [sys.executable, "-m", "webhello"], {}


# --- WEBHELLO_SANDBOX=ro-rootfs: the executable in an empty, read-only root ---------------------
# Used by tests/test_static_e2e.py for --runtime static executables: testsupport.static_sandbox
# (run as root) gives the server a tmpfs root with only /etc/passwd, /etc/group, the executable
# and the test's cwd (plus directories named by absolute-path arguments, e.g. -cert /x/c.pem),
# remounts it read-only (no /tmp, no /proc) and drops to the uid the test asks for.
# A test that asks for no uid keeps the suite's contract "the server runs as the invoking user"
# (root): about 40 tests assert `user: root (uid: 0)`, own files as os.getuid(), or use pytest's
# 0700 root-owned tmp dirs as cwd, so forcing uid 1000 on them (WEBHELLO_SANDBOX_UID=1000) makes
# them fail for that reason only. Every test that asks for uid 1000 (or 54321) gets it.
SANDBOX_ENV = "WEBHELLO_SANDBOX"
SANDBOX_LAUNCHER = Path(static_sandbox.__file__)
SANDBOX_UID_ENV = "WEBHELLO_SANDBOX_UID"
#: An executable for another machine (linux/arm64) runs under this emulator in the sandbox.
SANDBOX_EMULATOR_ENV = "WEBHELLO_SANDBOX_EMULATOR"


def sandbox_mode() -> bool:
    value = os.environ.get(SANDBOX_ENV, "").strip()
    if value and value != "ro-rootfs":
        raise AssertionError(f"{SANDBOX_ENV}={value!r}: the only sandbox is 'ro-rootfs'")
    return bool(value)


def sandbox_default_uid() -> int | None:
    """The uid a test that asks for none runs as in the sandbox (None: the caller's own)."""
    raw = os.environ.get(SANDBOX_UID_ENV, "").strip()
    return int(raw) if raw else None


def _sandbox_binds(args: Sequence[str]) -> list[str]:
    """Existing directories an argument names by absolute path (`-cert /d/c.pem`, `-touch=/d/f`):
    bound into the sandbox like container volumes, so such paths mean the same inside."""
    out = set()
    for arg in args:
        value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if not value.startswith("/"):
            continue
        path = Path(value)
        directory = path if path.is_dir() else path.parent
        if directory.is_dir() and directory != Path("/"):
            out.add(str(directory))
    return sorted(out)


def sandbox_argv(
    argv: Sequence[str], args: Sequence[str], *, uid: int | None, gid: int | None
) -> list[str]:
    """argv wrapped in the sandbox launcher; it execs, so the server keeps the launcher's PID."""
    if frozen_executable() is None:
        raise AssertionError(f"{SANDBOX_ENV}=ro-rootfs needs WEBHELLO_CMD=<one executable path>")
    user = sandbox_default_uid() if uid is None else uid
    user = os.getuid() if user is None else user
    group = user if gid is None else gid
    binds = [f"--bind={d}" for d in _sandbox_binds(args)]
    emulator = os.environ.get(SANDBOX_EMULATOR_ENV, "").strip()
    binds += [f"--emulator={_tool(emulator)}"] if emulator else []
    return [
        SYSTEM_PYTHON, "-I", str(SANDBOX_LAUNCHER), f"--uid={user}", f"--gid={group}", *binds,
        "--", *argv,
    ]  # fmt: skip


def build_argv(
    args: Sequence[str],
    *,
    uid: int | None = None,
    gid: int | None = None,
    cpus: str | None = None,
    netns: bool = False,
) -> tuple[list[str], dict[str, str]]:
    """Full argv (with setpriv/taskset/unshare wrappers, which all exec) and base environment."""
    cmd, env = base_command(non_root=uid is not None and uid != 0)
    argv = [*cmd, *args]
    if sandbox_mode():
        argv = sandbox_argv(argv, args, uid=uid, gid=gid)
    elif uid is not None:
        group = uid if gid is None else gid
        argv = [_tool("setpriv"), f"--reuid={uid}", f"--regid={group}", "--clear-groups", *argv]
    if cpus is not None:
        argv = [_tool("taskset"), "-c", cpus, *argv]
    if netns:
        # A private network namespace: only loopback exists there, so the server may listen on
        # all interfaces (":8080") without exposing anything, and every port is free.
        script = f'{_tool("ip")} link set lo up && exec "$@"'
        argv = [_tool("unshare"), "--net", "--", "/bin/sh", "-c", script, "sh", *argv]
    return argv, env


def run(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    uid: int | None = None,
    gid: int | None = None,
    cpus: str | None = None,
    timeout: float = START_TIMEOUT,
) -> Completed:
    """Run webhello to completion (for -h, -version, flag errors) and collect its output."""
    argv, base_env = build_argv(args, uid=uid, gid=gid, cpus=cpus)
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env={**base_env, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return Completed(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: str

    def lines(self) -> list[str]:
        return self.stderr.splitlines()

    def messages(self) -> list[str]:
        return [message(line) for line in self.lines()]


def message(line: str) -> str:
    """A stderr line without its Go log timestamp (lines without one, like usage, unchanged)."""
    m = LOG_LINE.match(line)
    return m.group(2) if m else line


def split_addr(addr: str) -> tuple[str, int] | None:
    """Where to connect for a listen address (":P" means every address, so loopback works)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        return None
    host = host.strip("[]")
    if host in {"", "0.0.0.0"}:
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def in_netns(pid: int, fn: Callable[[], T]) -> T:
    """Run fn in a fresh thread that joined the network namespace of process pid.

    Sockets keep the namespace they were created in, so a socket made here can be used from
    any thread afterwards. setns() on a thread changes only that thread.
    """
    box: dict[str, object] = {}

    def target() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into net namespace of {pid}: {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


class ServerStartError(AssertionError):
    """The server exited or never accepted connections; the message carries its log."""

    def __init__(self, msg: str, lines: Sequence[str]) -> None:
        super().__init__(msg + "\n--- server stderr ---\n" + "\n".join(lines))
        self.lines = list(lines)


class Server:
    """One webhello process: collects stderr lines, waits for its ports, always dies at the end.

    The process starts in a new session (setsid) so that cleanup can kill its whole process
    group (a frozen one-file executable runs the app in a child process).
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        cwd: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        uid: int | None = None,
        gid: int | None = None,
        cpus: str | None = None,
        netns: bool = False,
    ) -> None:
        self.args = list(args)
        self.cwd = Path(cwd)
        self.netns = netns
        self.argv, base_env = build_argv(args, uid=uid, gid=gid, cpus=cpus, netns=netns)
        self.env = {**base_env, **(env or {})}
        self._lines: list[str] = []
        self._stdout = bytearray()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._probes: set[str] = set()
        self.probe_lines: list[str] = []
        self.returncode: int | None = None
        # Filled in by serve(): the loopback ports it picked.
        self.port = 0
        self.https_port = 0
        self.addr = ""
        self.https_addr = ""

    # --- process ---------------------------------------------------------------------------

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise AssertionError("server not started")
        return self._proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, *, ready: bool = True, timeout: float = START_TIMEOUT) -> Server:
        """Start; with ready=True return once every address it says it serves accepts."""
        self._proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._proc.stderr is not None
        assert self._proc.stdout is not None
        for target, stream in (
            (self._read_stderr, self._proc.stderr),
            (self._read_stdout, self._proc.stdout),
        ):
            thread = threading.Thread(target=target, args=(stream,), daemon=True)
            thread.start()
            self._threads.append(thread)
        if ready:
            self.wait_ready(timeout)
        return self

    def _read_stderr(self, stream: object) -> None:
        assert hasattr(stream, "readline")
        try:
            for raw in iter(stream.readline, b""):
                text = raw.decode("utf-8", "replace").rstrip("\n")
                with self._cond:
                    # A connect-and-close probe of wait_ready is a TLS handshake error for
                    # the server; it is kept apart so that tests see only their own lines.
                    probe = _PROBE_ERROR.match(message(text))
                    if probe and probe.group(1) in self._probes:
                        self.probe_lines.append(text)
                    else:
                        self._lines.append(text)
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self._cond.notify_all()

    def _read_stdout(self, stream: object) -> None:
        assert hasattr(stream, "read1")
        try:
            while chunk := stream.read1(65536):
                with self._cond:
                    self._stdout += chunk
        except (OSError, ValueError):
            pass

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = IO_TIMEOUT) -> int:
        """Wait for the process to exit on its own; its exit status."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"webhello still running after {timeout}s\n" + "\n".join(self.lines())
            ) from None
        self._join_readers()
        return self.returncode

    def stop(self, sig: int = signal.SIGTERM, timeout: float = IO_TIMEOUT) -> int:
        """Send sig to the server process (not its group) and return its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        """Kill the process group we created, if anything of it is left."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(IO_TIMEOUT)
        self._join_readers()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()

    def _join_readers(self) -> None:
        for thread in self._threads:
            thread.join(IO_TIMEOUT)

    def __enter__(self) -> Server:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    # --- output ----------------------------------------------------------------------------

    def lines(self) -> list[str]:
        """Raw stderr lines so far (with Go log timestamps)."""
        with self._cond:
            return list(self._lines)

    def messages(self) -> list[str]:
        """Stderr lines so far without their timestamps."""
        return [message(line) for line in self.lines()]

    def settle_root(self, n: int, timeout: float = 5.0) -> int:
        """Wait until root request n has logged all four lines (D4); the line count then.

        Log lines may reach stderr after the response; snapshot after this, not before.
        """
        self.wait_for_log(rf"^rootHandler: req={n} query=", timeout)
        idx = next(
            i for i, t in enumerate(self.messages()) if t.startswith(f"rootHandler: req={n} query=")
        )
        self.wait_for_log(r"^(?:body size: |rootHandler req=)", timeout, start=idx + 1)
        return len(self.lines())

    def window(self, first: str, count: int, start: int = 0, timeout: float = 5.0) -> list[str]:
        """The count messages starting at the first one (from start on) matching regex first."""
        self.wait_for_log(first, timeout, start)
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            idx = next(i for i in range(start, len(msgs)) if re.search(first, msgs[i]))
            if len(msgs) >= idx + count or time.monotonic() > deadline:
                return msgs[idx : idx + count]
            time.sleep(0.01)

    @property
    def stdout(self) -> bytes:
        with self._cond:
            return bytes(self._stdout)

    def wait_for_log(
        self, pattern: str | re.Pattern[str], timeout: float = 5.0, start: int = 0
    ) -> re.Match[str]:
        """First log message (timestamp removed) from index start on that re.search-matches."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for text in self._lines[start:]:
                    m = regex.search(message(text))
                    if m:
                        return m
                left = deadline - time.monotonic()
                exited = self._proc is not None and self._proc.poll() is not None
                if left <= 0 or (exited and not any(t.is_alive() for t in self._threads)):
                    break
                self._cond.wait(min(left, 0.05))
        raise AssertionError(
            f"no log line matching {regex.pattern!r} within {timeout}s\n" + "\n".join(self.lines())
        )

    # --- sockets ---------------------------------------------------------------------------

    def connect(
        self, port: int, host: str = "127.0.0.1", timeout: float = IO_TIMEOUT
    ) -> socket.socket:
        """A TCP connection to the server (inside its network namespace when it has one)."""

        def dial() -> socket.socket:
            return socket.create_connection((host, port), timeout=timeout)

        return in_netns(self.pid, dial) if self.netns else dial()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait for the "serving" line, then until every address it serves accepts.

        The line is printed before listen (spec B2), so a connect is the only proof.
        """
        try:
            m = self.wait_for_log(_SERVING, timeout)
        except AssertionError:
            raise ServerStartError("webhello never logged 'serving ...'", self.lines()) from None
        targets = [m.group(1)]
        for text in self.messages():
            r = _REDIRECT.search(text)
            if r:
                targets.append(r.group(1))
        deadline = time.monotonic() + timeout
        for addr in targets:
            where = split_addr(addr)
            if where is None:
                raise ServerStartError(f"cannot probe listen address {addr!r}", self.lines())
            while True:
                if self.proc.poll() is not None:
                    self._join_readers()
                    raise ServerStartError(
                        f"webhello exited with {self.proc.returncode} before accepting",
                        self.lines(),
                    )
                try:
                    probe = self.connect(where[1], where[0], timeout=1.0)
                    host, port = probe.getsockname()[:2]
                    with self._cond:
                        self._probes.add(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
                    probe.close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise ServerStartError(
                            f"{addr} did not accept within {timeout}s", self.lines()
                        ) from None
                    time.sleep(0.01)


def two_ports() -> tuple[int, int]:
    while True:
        a, b = free_port(), free_port()
        if a != b:
            return a, b


@contextlib.contextmanager
def serve(
    args: Sequence[str] = (),
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    uid: int | None = None,
    gid: int | None = None,
    cpus: str | None = None,
    https: bool = True,
    attempts: int = 3,
) -> Iterator[Server]:
    """A running server on fresh loopback ports: `-addr 127.0.0.1:P` (and, with https=True,
    `-httpsAddr 127.0.0.1:Q`) are put before args; a lost port race is retried."""
    for attempt in range(attempts):
        port, https_port = two_ports()
        addr, https_addr = f"127.0.0.1:{port}", f"127.0.0.1:{https_port}"
        full = ["-addr", addr, *(["-httpsAddr", https_addr] if https else []), *args]
        srv = Server(full, cwd=cwd, env=env, uid=uid, gid=gid, cpus=cpus)
        srv.port, srv.https_port, srv.addr = port, https_port, addr
        srv.https_addr = https_addr if https else ":8443"
        try:
            srv.start()
        except ServerStartError as exc:
            srv.kill()
            if attempt + 1 < attempts and any("address already in use" in x for x in exc.lines):
                continue
            raise
        try:
            yield srv
        finally:
            srv.kill()
        return


# --- HTTP over raw sockets ------------------------------------------------------------------


@dataclass
class Response:
    """One HTTP response exactly as received."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    head: bytes = b""
    chunked: bool = False

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def names(self) -> list[str]:
        return [k for k, _ in self.headers]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class RawConn:
    """A client connection with its own read buffer, for exact bytes and pipelining."""

    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    @property
    def local_addr(self) -> str:
        """Our end as Go prints r.RemoteAddr: `127.0.0.1:43420`, `[::1]:43420`."""
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_until(self, delim: bytes) -> bytes:
        while delim not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed before {delim!r}; got {bytes(self.buf)!r}")
        idx = self.buf.index(delim) + len(delim)
        out = bytes(self.buf[:idx])
        del self.buf[:idx]
        return out

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed after {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_all(self) -> bytes:
        """Everything until the peer closes (a reset counts as the end)."""
        with contextlib.suppress(ConnectionResetError):
            while self._fill():
                pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def closed_by_peer(self, timeout: float = 3.0) -> bool:
        """True when the server closes the connection (EOF or reset) with nothing more sent."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(IO_TIMEOUT)

    def read_response(self, method: str = "GET") -> Response:
        head = self.read_until(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        headers = []
        for line in header_lines:
            name, _, value = line.partition(":")
            headers.append((name, value.strip(" \t")))
        resp = Response(version, int(code), reason, headers, b"", head)
        te = (resp.header("Transfer-Encoding") or "").lower()
        if method == "HEAD" or resp.status in {204, 304} or 100 <= resp.status < 200:
            return resp
        if te == "chunked":
            resp.chunked = True
            body = bytearray()
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    while self.read_until(b"\r\n") != b"\r\n":
                        pass
                    break
                body += self.read_exact(size)
                self.read_exact(2)
            resp.body = bytes(body)
        elif resp.header("Content-Length") is not None:
            resp.body = self.read_exact(int(resp.header("Content-Length") or "0"))
        else:
            resp.body = self.read_all()
        return resp

    def request(
        self,
        method: str,
        target: str,
        *,
        host: str | None = "127.0.0.1",
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        version: str = "HTTP/1.1",
    ) -> Response:
        self.send(
            build_request(method, target, host=host, headers=headers, body=body, version=version)
        )
        return self.read_response(method)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_request(
    method: str,
    target: str,
    *,
    host: str | None = "127.0.0.1",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    version: str = "HTTP/1.1",
) -> bytes:
    """Request bytes exactly as the test means them: no header added except Host and, for a
    body, Content-Length (unless given)."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in headers]
    if body and not any(k.lower() in {"content-length", "transfer-encoding"} for k, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def open_conn(srv: Server, port: int | None = None, host: str = "127.0.0.1") -> RawConn:
    return RawConn(srv.connect(srv.port if port is None else port, host))


def http(
    srv: Server,
    method: str,
    target: str,
    *,
    port: int | None = None,
    host: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    version: str = "HTTP/1.1",
) -> Response:
    """One request on a fresh connection; Host defaults to the address connected to."""
    p = srv.port if port is None else port
    with open_conn(srv, p) as conn:
        hdr = f"127.0.0.1:{p}" if host is None else host
        return conn.request(method, target, host=hdr, headers=headers, body=body, version=version)


def tls_context(
    cafile: str | os.PathLike[str], alpn: Sequence[str] | None = None
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))
    if alpn is not None:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def tls_conn(
    srv: Server,
    cafile: str | os.PathLike[str],
    *,
    port: int | None = None,
    alpn: Sequence[str] | None = ("http/1.1",),
) -> RawConn:
    """A verified TLS connection (server name localhost) to the HTTPS port."""
    raw = srv.connect(srv.https_port if port is None else port)
    ctx = tls_context(cafile, alpn)
    return RawConn(ctx.wrap_socket(raw, server_hostname="localhost"))


# --- Go formatting ----------------------------------------------------------------------------

# time.Duration.String(): "0s", "306.490799ms", "1.015094095s", "1m0s", "-5s", "2h0m0s".
_FRAC = r"(?:\.\d*[1-9])?"
GO_DURATION = (
    rf"(?:0s|-?(?:[1-9]\d*{_FRAC}(?:ns|µs|ms)"
    rf"|(?:[1-9]\d*h)?(?:\d+m)?\d+{_FRAC}s))"
)
# time.Time.String() with its monotonic reading.
GO_TIME = (
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{0,8}[1-9])? [+-]\d{4} [A-Za-z0-9+-]+ m=[+-]\d+\.\d{9}"
)
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string (only for checking values, not formatting)."""
    if not re.fullmatch(GO_DURATION, text):
        raise AssertionError(f"not a Go duration: {text!r}")
    sign = -1.0 if text.startswith("-") else 1.0
    total = sum(
        float(num) * _UNITS[unit]
        for num, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|µs|us|ns|m|s)", text.lstrip("-"))
    )
    return sign * total


HTTP_DATE = (
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT"
)


# --- expected texts from the spec -----------------------------------------------------------


def usage_text(argv0: str, *, addr: str = ":8080", banner: str = "banner default") -> str:
    """Spec A2: the Go flag package usage, verbatim (defaults follow PORT/GWH_BANNER)."""
    return (
        f"Usage of {argv0}:\n"
        "  -addr string\n"
        f'    \tHTTP listen address (env var PORT sets default port) (default "{addr}")\n'
        "  -banner string\n"
        "    \tbanner will be displayed (env var GWH_BANNER sets default banner)"
        f' (default "{banner}")\n'
        "  -burnCpu\n"
        "    \tenable /burncpu path\n"
        "  -cert string\n"
        '    \tTLS cert file (default "cert.pem")\n'
        "  -disableKeepalive\n"
        "    \tdisable keepalive\n"
        "  -exitOnQuota\n"
        "    \texit if quota reached\n"
        "  -httpsAddr string\n"
        '    \tHTTPS listen address (default ":8443")\n'
        "  -key string\n"
        '    \tTLS key file (default "key.pem")\n'
        "  -quota int\n"
        "    \tif defined, service is terminated after serving that amount of requests\n"
        "  -quotaStatus int\n"
        "    \thttp status code for quota reached (default 500)\n"
        "  -quotaTime string\n"
        "    \tif defined, service is terminated after serving that amount of time\n"
        "  -touch string\n"
        "    \twrite version info into this file, if specified\n"
        "  -version\n"
        "    \tdoes not actually run\n"
    )


class Rx(str):
    """A regular-expression fragment inside an otherwise literal expected page."""


ANY = Rx(r"[^\n]*")
NUMBER = Rx(r"\d+")


class PagePattern:
    """The expected root page; fullmatch() explains where a page departs from it."""

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.pieces = list(pieces)
        self.regex = re.compile(b"".join(self.pieces), re.S)

    def fullmatch(self, page: bytes) -> re.Match[bytes]:
        m = self.regex.fullmatch(page)
        if m is not None:
            return m
        # Longest prefix of the template that still matches: the next piece is the culprit.
        good = 0
        for i in range(1, len(self.pieces) + 1):
            if re.match(b"".join(self.pieces[:i]), page, re.S):
                good = i
            else:
                break
        m2 = re.match(b"".join(self.pieces[:good]), page, re.S)
        at = m2.end() if m2 else 0
        want = self.pieces[good] if good < len(self.pieces) else b"<end>"
        raise AssertionError(
            f"root page differs at byte {at}: expected {want!r}, got {page[at : at + 120]!r}\n"
            f"page:\n{page.decode('utf-8', 'replace')}"
        )


def root_page_re(
    *,
    version: str | Rx = ANY,
    runtime: str | Rx = ANY,
    arch: str | Rx = ANY,
    keepalive: str | Rx = "true",
    banner: str | Rx = "banner default",
    args: str | Rx = ANY,
    cwd: str | Rx = ANY,
    pid: str | Rx = NUMBER,
    user: str | Rx = ANY,
    hostname: str | Rx = ANY,
    listen: str | Rx = ANY,
    remote: str | Rx = ANY,
    method: str = "GET",
    host: str | Rx = ANY,
    path: str = "/",
    query: str | Rx = "",
    requests: str | Rx = NUMBER,
    quota: str | Rx = "0",
    exit_on_quota: str | Rx = "false",
    quota_status: str | Rx = "500",
    quota_time: str | Rx = "0s",
    time_left: str | Rx = "0s",
    burn: str | Rx = "false",
    headers: Sequence[str] | None = None,
    body: bytes | None = b"",
    body_size: int | None = None,
) -> PagePattern:
    """Spec D3 as a bytes regex that must fullmatch the page (port rule: title `webhello`).

    Arguments are the text expected on the page (already HTML-escaped where deviation 1 says
    so); Rx values are regex fragments. Captured groups: `time` (Go time.Time.String()) and
    `uptime` (Go duration). `headers` are the header lines without `<br>`; None = anything.
    """
    not_found: list[str | Rx] = []
    if path != "/":
        not_found = [
            "\n<h2>Path not found!</h2>\nMethod: ", method, "<br>\nHost: ", host,
            "<br>\nPath not found: [", path, "]<br>\nQuery: [", query, "]<br>\n",
        ]  # fmt: skip
    parts: list[str | Rx | bytes] = [
        "<!DOCTYPE html>\n\n<html>\n  <head>\n    <title>webhello root page</title>\n"
        "  </head>\n  <body>\n    <h1>webhello root page</h1>\n    <p>\n    ",
        Rx(r'<a href="[^"\n]*">[^<\n]*</a>[^\n]*'),
        "\n    </p>\n<h2>Welcome!</h2>\n\t",
        Rx("(?:go)?webhello"), " version ", version, " runtime ", runtime,
        " os=linux arch=", arch, "<br>\n        Keepalive: ", keepalive,
        "<br>\n\tApplication banner: ", banner,
        "<br>\n\tApplication arguments: ", args,
        "<br>\n\tApplication dir: ", cwd,
        "<br>\n\tProcess: ", pid,
        "<br>\n\tUser: ", user,
        "<br>\n\tServer hostname: ", hostname,
        "<br>\n\tListen: ", listen,
        "<br>\n\tYour address: ", remote,
        "<br>\n\tRequest method=", method, " host=", host, " path=[", path, "] query=[", query,
        "]<br>\n\tCurrent time: ", Rx(f"(?P<time>{GO_TIME})"),
        "<br>\n\tUptime: ", Rx(f"(?P<uptime>{GO_DURATION})"),
        "<br>\n\tRequests: ", requests, " (Quota=", quota, " ExitOnQuota=", exit_on_quota,
        " QuotaStaus=", quota_status, " QuotaTime=", quota_time, " TimeLeft=", time_left,
        ")<br>\n\tBurnCPU: ", burn, "<br>\n    ", *not_found,
        "\n    <h2>All known paths:</h2>\n    ", '<a href="/www/">/www/</a> <br>',
        "\n<h2>Headers</h2>\n",
    ]  # fmt: skip
    if headers is None:
        parts.append(Rx(r"(?:[^\n]*<br>\n)*"))
    else:
        parts += sorted(h + "<br>\n" for h in headers)
    parts.append("<h2>Request Body</h2>\n")
    if body is None:
        parts.append(Rx(r"<p>request body size: \d+</p>\n<pre>\n.*\n</pre>\n"))
    else:
        size = len(body) if body_size is None else body_size
        parts += [f"<p>request body size: {size}</p>\n<pre>\n", body, "\n</pre>\n"]
    parts.append("</body>\n</html>\n")
    pieces = []
    for p in parts:
        if isinstance(p, Rx):
            pieces.append(p.encode())
        elif isinstance(p, bytes):
            pieces.append(re.escape(p))
        else:
            pieces.append(re.escape(p.encode()))
    return PagePattern(pieces)


def page_field(page: bytes | str, label: str) -> str:
    """The value of one `\\t<label>: <value><br>` line of the root page."""
    text = page.decode("utf-8", "replace") if isinstance(page, bytes) else page
    m = re.search(rf"^\s*{re.escape(label)}: ([^\n]*)<br>$", text, re.M)
    if not m:
        raise AssertionError(f"no {label!r} line in page:\n{text}")
    return m.group(1)


def requests_count(page: bytes | str) -> int:
    return int(page_field(page, "Requests").split(" ", 1)[0])


def is_same_or_descendant(pid: int, ancestor: int) -> bool:
    """A frozen one-file executable serves from a child of the process we started."""
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pid == ancestor


def match_lines(actual: Sequence[str], patterns: Sequence[str]) -> list[re.Match[str]]:
    """Every line fullmatches its regex, and there are exactly as many lines as regexes."""
    report = "\n".join(f"  {a!r}" for a in actual)
    assert len(actual) == len(patterns), f"expected {len(patterns)} lines, got:\n{report}"
    out = []
    for a, p in zip(actual, patterns, strict=True):
        m = re.fullmatch(p, a)
        assert m, f"line {a!r} does not match {p!r}; all lines:\n{report}"
        out.append(m)
    return out
