#!/usr/bin/env python3
"""Throughput, memory and cold start of webhello, measured with wrk on this machine.

Why a script and not a test: speed depends on the machine, so it is reported (and compared with
targets) rather than asserted in the unit suite.

Set-up, per scenario: the server is pinned to core 0 (`taskset -c 0`), wrk to core 1
(`wrk -t2 -c64 -d10s`), the server's stderr goes to a file, one 2 s warm-up run is discarded and
the median of --runs runs is reported. Scenarios and targets (req/s):
  root          GET /                                 19,000
  static        GET /www/etc/passwd (79 bytes, E4)    17,000
  root-no-ka    GET / with -disableKeepalive          11,000
Each run must show 0 non-2xx responses and 0 socket errors. Also measured: idle RSS after start
and after the load, cold start to the first 200 (median of --cold-runs), and for context Python's
own `http.server` serving the same etc/passwd (HTTP/1.0: one connection per request).

The server command is WEBHELLO_CMD (shell words) when set, else `<this python> -m webhello`.
Traffic stays on 127.0.0.1 and every process started here is stopped before exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from testsupport import rootfs

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nappuser:x:1000:1000::/home/appuser:/sbin/nologin\n"
SERVER_CPU = "0"
CLIENT_CPU = "1"
WARMUP_SECONDS = 2
START_TIMEOUT = 20.0


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    args: tuple[str, ...]
    target: float | None  # req/s; None = context only


SCENARIOS = (
    Scenario("root", "/", (), 19_000),
    Scenario("static", "/www/etc/passwd", (), 17_000),
    Scenario("root-no-ka", "/", ("-disableKeepalive",), 11_000),
)


@dataclass
class WrkRun:
    rps: float
    requests: int
    non2xx: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    p50_ms: float | None
    p99_ms: float | None

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts


@dataclass
class ScenarioResult:
    name: str
    url: str
    server_argv: list[str]
    wrk_argv: list[str]
    target_rps: float | None
    runs: list[WrkRun] = field(default_factory=list)
    rss_idle_kib: int = 0
    rss_after_kib: int = 0
    server_errors: list[str] = field(default_factory=list)
    other_cpu_pct: float = 0.0  # CPU used by processes other than server/wrk during the runs

    @property
    def median_rps(self) -> float:
        return statistics.median(r.rps for r in self.runs) if self.runs else 0.0

    @property
    def clean(self) -> bool:
        return all(r.non2xx == 0 and r.socket_errors == 0 for r in self.runs)

    @property
    def verdict(self) -> str:
        if self.target_rps is None:
            return "context"
        return "PASS" if self.median_rps >= self.target_rps and self.clean else "MISS"


def server_command() -> list[str]:
    raw = os.environ.get("WEBHELLO_CMD", "").strip()
    return shlex.split(raw) if raw else [sys.executable, "-m", "webhello"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get_status(port: int, path: str = "/", timeout: float = 2.0) -> int | None:
    """Status of one GET over a fresh connection, or None if nothing answered."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
            data = s.recv(64)
    except OSError:
        return None
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(m.group(1)) if m else None


def descendants(pid: int) -> list[int]:
    """All processes below pid (a frozen one-file executable serves from a child)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def tree_rss_kib(pid: int) -> int:
    """VmRSS of pid plus its descendants."""
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    argv: list[str]
    log: Path


@contextlib.contextmanager
def running_server(
    cmd: Sequence[str],
    cwd: Path,
    log: Path,
    *,
    cpu: str | None = SERVER_CPU,
    with_addr: bool = True,
) -> Iterator[Running]:
    """Start cmd on a free loopback port (retrying a lost port race) and stop it afterwards."""
    env = {k: v for k, v in os.environ.items() if k not in {"PORT", "GWH_BANNER"}}
    for _attempt in range(5):
        port = free_port()
        argv = [*cmd, "-addr", f"127.0.0.1:{port}"] if with_addr else [*cmd, str(port)]
        if cpu is not None:
            argv = ["taskset", "-c", cpu, *argv]
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh, env=env,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if http_get_status(port, timeout=0.5) is not None:
                break
            time.sleep(0.02)
        if proc.poll() is None and http_get_status(port) is not None:
            try:
                yield Running(proc, port, argv, log)
            finally:
                stop(proc)
            return
        stop(proc)
        if "address already in use" not in log.read_text(errors="replace").lower():
            raise RuntimeError(f"server did not start: {argv}\n{log.read_text()[-2000:]}")
    raise RuntimeError("no free port after 5 attempts")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group we created (graceful, deviation 6), SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def stop_started(proc: subprocess.Popen[bytes], *, in_root: bool, timeout: float = 10) -> None:
    """Stop a process a bench started in its own session, whatever it became: in an empty root
    (testsupport.rootfs.start) the app, the namespace's PID 1, gets SIGTERM as `docker stop`
    gives it; on the host its process group gets SIGTERM (stop above). Either way the group is
    SIGKILLed if anything of it still runs, so no bench leaves a server behind."""
    if proc.poll() is None:
        if in_root:
            with contextlib.suppress(subprocess.TimeoutExpired):
                rootfs.stop(proc, timeout=timeout)
        else:
            stop(proc)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


_NUM = r"([\d.]+)"


def _duration_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[m.group(2)]
    return float(m.group(1)) * scale


def parse_wrk(out: str) -> WrkRun:
    rps = re.search(r"Requests/sec:\s+" + _NUM, out)
    reqs = re.search(r"(\d+) requests in", out)
    if not rps or not reqs:
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    errs = [int(x) for x in sock.groups()] if sock else [0, 0, 0, 0]
    return WrkRun(
        rps=float(rps.group(1)),
        requests=int(reqs.group(1)),
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        connect_errors=errs[0],
        read_errors=errs[1],
        write_errors=errs[2],
        timeouts=errs[3],
        p50_ms=_duration_ms(p50.group(1)) if p50 else None,
        p99_ms=_duration_ms(p99.group(1)) if p99 else None,
    )


def wrk_argv(url: str, *, threads: int, connections: int, duration: int) -> list[str]:
    return [
        "taskset", "-c", CLIENT_CPU, "wrk", f"-t{threads}", f"-c{connections}",
        f"-d{duration}s", "--latency", url,
    ]  # fmt: skip


def run_wrk(argv: list[str]) -> WrkRun:
    res = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"wrk failed ({res.returncode}): {res.stderr}{res.stdout}")
    return parse_wrk(res.stdout)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def busy_jiffies() -> int:
    """Busy CPU time of the whole machine (all cores) from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = f
    return user + nice + system + irq + softirq + steal


def tree_cpu_jiffies(pid: int) -> int:
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def own_and_children_jiffies() -> float:
    """CPU of this script and its waited-for children (wrk), in jiffies."""
    r_self = resource.getrusage(resource.RUSAGE_SELF)
    r_kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    secs = r_self.ru_utime + r_self.ru_stime + r_kids.ru_utime + r_kids.ru_stime
    return secs * CLK_TCK


@dataclass
class CpuMeter:
    """Share of the machine's CPU spent by OTHER processes (not server, wrk or this script):
    a benchmark run beside someone else's test suite is not a measurement of webhello."""

    pid: int
    t0: float = 0.0
    busy0: int = 0
    srv0: int = 0
    own0: float = 0.0

    def start(self) -> None:
        self.t0, self.busy0 = time.monotonic(), busy_jiffies()
        self.srv0, self.own0 = tree_cpu_jiffies(self.pid), own_and_children_jiffies()

    def other_pct(self) -> float:
        elapsed = (time.monotonic() - self.t0) * CLK_TCK * (os.cpu_count() or 1)
        busy = busy_jiffies() - self.busy0
        ours = (tree_cpu_jiffies(self.pid) - self.srv0) + (own_and_children_jiffies() - self.own0)
        return max(0.0, (busy - ours) / elapsed * 100) if elapsed else 0.0


def server_errors(log: Path) -> list[str]:
    """Tracebacks or error lines the server printed under load (there should be none)."""
    bad = []
    with open(log, errors="replace") as fh:
        for line in fh:
            if "Traceback" in line or "Error" in line or "panic" in line:
                bad.append(line.rstrip()[:200])
                if len(bad) >= 10:
                    break
    return bad


def bench_server(
    name: str,
    cmd: Sequence[str],
    path: str,
    target: float | None,
    args: argparse.Namespace,
    workdir: Path,
    *,
    with_addr: bool = True,
) -> ScenarioResult:
    log = workdir / f"{name}.log"
    log.unlink(missing_ok=True)
    with running_server(cmd, workdir, log, with_addr=with_addr) as srv:
        url = f"http://127.0.0.1:{srv.port}{path}"
        if http_get_status(srv.port, path) != 200:
            raise RuntimeError(f"{name}: GET {path} is not 200 before the load")
        time.sleep(0.5)
        res = ScenarioResult(name, url, srv.argv, [], target)
        res.rss_idle_kib = tree_rss_kib(srv.proc.pid)
        kw = {"threads": args.threads, "connections": args.connections}
        run_wrk(wrk_argv(url, duration=WARMUP_SECONDS, **kw))
        res.wrk_argv = wrk_argv(url, duration=args.duration, **kw)
        meter = CpuMeter(srv.proc.pid)
        meter.start()
        for i in range(args.runs):
            run = run_wrk(res.wrk_argv)
            res.runs.append(run)
            print(
                f"  {name} run {i + 1}/{args.runs}: {run.rps:,.0f} req/s, non-2xx {run.non2xx},"
                f" socket errors {run.socket_errors}",
                file=sys.stderr,
            )
        res.other_cpu_pct = meter.other_pct()
        time.sleep(0.5)
        res.rss_after_kib = tree_rss_kib(srv.proc.pid)
        if srv.proc.poll() is not None:
            res.server_errors.append(f"server exited with {srv.proc.returncode} during the load")
    res.server_errors += server_errors(log)
    if not args.keep_logs:
        log.unlink(missing_ok=True)
    return res


def _one_cold_start(cmd: Sequence[str], workdir: Path, log: Path) -> float | None:
    """Milliseconds from spawn to the first 200 for GET /; None if the process gave up."""
    env = {k: v for k, v in os.environ.items() if k not in {"PORT", "GWH_BANNER"}}
    port = free_port()
    argv = ["taskset", "-c", SERVER_CPU, *cmd, "-addr", f"127.0.0.1:{port}"]
    with open(log, "wb") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh, env=env,
            start_new_session=True,
        )  # fmt: skip
    try:
        while proc.poll() is None and time.perf_counter() - t0 < START_TIMEOUT:
            if http_get_status(port, timeout=1.0) == 200:
                return (time.perf_counter() - t0) * 1000
            time.sleep(0.001)
        return None
    finally:
        stop(proc)


def cold_start_ms(cmd: Sequence[str], workdir: Path, runs: int) -> tuple[list[float], list[str]]:
    """Cold starts, one fresh process each. A run whose process exits early (a lost port race)
    is retried up to 3 times; a run that fails for good is reported, not fatal."""
    out: list[float] = []
    failures: list[str] = []
    log = workdir / "cold-start.log"
    for _ in range(runs):
        for _attempt in range(3):
            ms = _one_cold_start(cmd, workdir, log)
            if ms is not None:
                out.append(ms)
                break
        else:
            failures.append(log.read_text(errors="replace")[-500:])
    return out, failures


def wait_idle(max_wait: float) -> float:
    """Wait (up to max_wait s) until other processes use < 10% of the machine for 3 s; the
    share seen last, in percent."""
    deadline = time.monotonic() + max_wait
    while True:
        b0, own0, t0 = busy_jiffies(), own_and_children_jiffies(), time.monotonic()
        time.sleep(3.0)
        elapsed = (time.monotonic() - t0) * CLK_TCK * (os.cpu_count() or 1)
        pct = (busy_jiffies() - b0 - (own_and_children_jiffies() - own0)) / elapsed * 100
        if pct < 10 or time.monotonic() > deadline:
            return pct


def preflight() -> None:
    missing = [t for t in ("wrk", "taskset") if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing tools: {missing} (scripts/install-system-deps installs them)")
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs 2 CPUs (server on core 0, wrk on core 1)")


def render(
    results: list[ScenarioResult],
    cold: list[float],
    cold_failures: list[str],
    args: argparse.Namespace,
) -> str:
    lines = [
        f"webhello benchmark, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, "
        f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"server: {shlex.join(server_command())} (taskset -c {SERVER_CPU})",
        f"client: wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency"
        f" (taskset -c {CLIENT_CPU}); median of {args.runs} runs after a {WARMUP_SECONDS}s warm-up",
        "other% = CPU share (of all cores) used by other processes during the runs;"
        " well above 0 means the figures are skewed",
        "",
        f"{'scenario':<20}{'median req/s':>13}{'target':>9}  {'verdict':<13}{'p50 ms':>7}"
        f"{'p99 ms':>8}{'non2xx':>7}{'sockerr':>8}{'RSS idle':>10}{'RSS after':>10}{'other%':>7}",
    ]
    for r in results:
        p50 = statistics.median(x.p50_ms for x in r.runs if x.p50_ms is not None)
        p99 = statistics.median(x.p99_ms for x in r.runs if x.p99_ms is not None)
        target = f"{r.target_rps:,.0f}" if r.target_rps else "-"
        verdict = r.verdict
        if verdict == "MISS" and r.target_rps:
            verdict += f" {(r.median_rps / r.target_rps - 1) * 100:+.0f}%"
        lines.append(
            f"{r.name:<20}{r.median_rps:>13,.0f}{target:>9}  {verdict:<13}{p50:>7.2f}{p99:>8.2f}"
            f"{sum(x.non2xx for x in r.runs):>7}{sum(x.socket_errors for x in r.runs):>8}"
            f"{r.rss_idle_kib / 1024:>8.1f}MB{r.rss_after_kib / 1024:>8.1f}MB"
            f"{r.other_cpu_pct:>7.1f}"
        )
    lines.append("")
    for r in results:
        lines.append(f"{r.name}: runs " + ", ".join(f"{x.rps:,.0f}" for x in r.runs) + " req/s")
        for err in r.server_errors:
            lines.append(f"    server: {err}")
    if cold:
        lines += [
            "",
            f"cold start to first 200 (GET /): median {statistics.median(cold):.1f} ms over "
            f"{len(cold)} runs (min {min(cold):.1f}, max {max(cold):.1f})",
        ]
    for fail in cold_failures:
        lines.append(f"cold start FAILED: {fail}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="measured wrk runs per scenario (5)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    ap.add_argument("--connections", type=int, default=64, help="wrk -c (64)")
    ap.add_argument("--threads", type=int, default=2, help="wrk -t (2)")
    ap.add_argument("--cold-runs", type=int, default=10, help="cold-start samples (10)")
    ap.add_argument("--no-baseline", action="store_true", help="skip python -m http.server")
    ap.add_argument("--only", action="append", help="run only this scenario (repeatable)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--keep-logs", action="store_true", help="keep server logs in the work dir")
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="before each scenario wait up to S seconds for other processes to go quiet",
    )
    args = ap.parse_args(argv)
    preflight()
    cmd = server_command()
    results: list[ScenarioResult] = []
    with tempfile.TemporaryDirectory(prefix="webhello-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "etc").mkdir()
        (workdir / "etc" / "passwd").write_bytes(PASSWD)
        for sc in SCENARIOS:
            if args.only and sc.name not in args.only:
                continue
            if args.wait_idle:
                print(f"  other processes: {wait_idle(args.wait_idle):.0f}%", file=sys.stderr)
            print(f"scenario {sc.name} ...", file=sys.stderr)
            results.append(
                bench_server(sc.name, [*cmd, *sc.args], sc.path, sc.target, args, workdir)
            )
        if not args.no_baseline and not args.only:
            if args.wait_idle:
                print(f"  other processes: {wait_idle(args.wait_idle):.0f}%", file=sys.stderr)
            print("baseline python -m http.server ...", file=sys.stderr)
            base_cmd = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1"]
            results.append(
                bench_server(
                    "python-http.server", base_cmd, "/etc/passwd", None, args, workdir,
                    with_addr=False,
                )
            )  # fmt: skip
        cold, cold_failures = cold_start_ms(cmd, workdir, args.cold_runs)
        if args.keep_logs:
            keep = Path.cwd() / "webhello-bench-logs"
            keep.mkdir(exist_ok=True)
            for log in workdir.glob("*.log"):
                shutil.copy(log, keep / log.name)
    if args.json:
        doc = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "server_command": cmd,
            "scenarios": [
                {
                    **{k: v for k, v in asdict(r).items() if k != "runs"},
                    "runs": [asdict(x) | {"socket_errors": x.socket_errors} for x in r.runs],
                    "median_rps": r.median_rps,
                    "verdict": r.verdict,
                }
                for r in results
            ],
            "cold_start_ms": {
                "runs": cold,
                "median": statistics.median(cold) if cold else None,
                "failures": cold_failures,
            },
        }
        print(json.dumps(doc, indent=2))
    else:
        print(render(results, cold, cold_failures, args))
    ok = all(r.verdict != "MISS" for r in results) and not cold_failures
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
