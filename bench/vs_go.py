#!/usr/bin/env python3
"""webhello on `--runtime static` against Go's gowebhello, side by side (issue 14's table).

    .venv/bin/python bench/vs_go.py --go-src /path/to/gowebhello-checkout
        [--go /path/to/go] [--seed CACHE | --cache-dir CACHE] [--rounds 3] [--starts 15]
        [--duration 5] [--exe LABEL=PATH ...] [--json FILE]

Nothing of gowebhello is part of this repository: Go's reference is built here from the
checkout the user gives, in a temporary copy (`CGO_ENABLED=0 go build -ldflags='-s -w'
-trimpath`, GOTOOLCHAIN=local; a `go` line in go.mod newer than the toolchain is lowered to the
toolchain's version in the copy only). webhello is built with `scratchpack exe examples/webhello
--runtime static` (the kit from --cache-dir in place, from --seed copied, or built). --exe adds
further executables (e.g. one linked against an experimental kit) as extra columns.

Every server runs in an empty read-only root as uid 1000 (testsupport.rootfs: executable,
/etc/passwd, /etc/group; no /tmp, no /proc), pinned to core 0, its output going to a log file;
wrk -t2 -c64 runs on core 1 (bench/webhello_bench.py's harness). Figures, each a median, the
variants interleaved run by run:

- GET /, GET /www/etc/passwd, GET / with -disableKeepalive: req/s over --rounds runs each of
  --duration s, after one warm-up run (the servers of a scenario run side by side, idle but one);
- server CPU per request on each route (the server's threads, /proc/PID/task/*/schedstat,
  over each wrk run): what req/s cannot show once the client is the bound. wrk's own CPU per
  request (rusage) is printed below the table with the req/s its one core allows at that cost;
- RSS after load: the server's RSS after the GET / runs;
- idle RSS: 1 s after the first 200 of a fresh start;
- start to first 200: spawn (unshare + chroot included) to the first 200 on GET /, polled
  every 1 ms, over --starts starts; also the server's own CPU time at that moment;
- executable raw and gzip -9 bytes.

--rx-on-server-core (root) adds a row: GET / with -disableKeepalive again, with the loopback's
receive processing steered to the server's core (RPS: /sys/class/net/lo/queues/rx-0/rps_cpus,
restored afterwards). Why: on loopback, a packet's receive work runs on the core that sent it, so
wrk's core does the server's half of every handshake and the server's receive of every request,
and at about 40 us of kernel time per connection (wrk's own user time is ~2 us) it caps both
servers near 25k connections/s whatever they cost: the default row measures the client. Steered,
the server's core does all the receive work (its own, and the client's, which is the same for
every server), the client's core has room to spare, and req/s follow the server's cost per
connection. The setting is machine-wide while that row runs: other benchmarks running then are
steered too.

Markdown on stdout, progress on stderr; every process started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import static_bench as sb
import webhello_bench as wb

from testsupport import rootfs
from testsupport.net import free_port

REPO = Path(__file__).resolve().parent.parent
GO_LINE = re.compile(r"^go\s+(\d+)\.(\d+)(?:\.\d+)?\s*$", re.M)
TOOLCHAIN_LINE = re.compile(r"^toolchain\s+\S+\s*$", re.M)
START_TIMEOUT = 20.0
LO_RPS = Path("/sys/class/net/lo/queues/rx-0/rps_cpus")
RX_SCENARIO = wb.Scenario("root-no-ka-rx", "/", ("-disableKeepalive",), None)
TITLES = {
    "root": "GET / req/s",
    "static": "GET /www/etc/passwd req/s",
    "root-no-ka": "GET / without keep-alive req/s",
    "root-no-ka-rx": "GET / without keep-alive (loopback rx on the server core) req/s",
}


def note(message: str) -> None:
    print(f"[vs-go {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- building -------------------------------------------------------------------------------


def go_version(go: str) -> tuple[int, int]:
    out = subprocess.run(
        [go, "env", "GOVERSION"],
        env={**os.environ, "GOTOOLCHAIN": "local"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    m = re.match(r"go(\d+)\.(\d+)", out)
    if not m:
        sys.exit(f"{go}: cannot read its version from {out!r}")
    return int(m[1]), int(m[2])


def lower_go_line(gomod: str, have: tuple[int, int]) -> str:
    """go.mod with a `go` line newer than the toolchain lowered to it (and any `toolchain`
    line dropped): gowebhello uses nothing newer, and GOTOOLCHAIN=local must not download."""
    m = GO_LINE.search(gomod)
    if m and (int(m[1]), int(m[2])) > have:
        gomod = GO_LINE.sub(f"go {have[0]}.{have[1]}", gomod, count=1)
        gomod = TOOLCHAIN_LINE.sub("", gomod)
    return gomod


def build_go(go: str, src: Path, work: Path) -> tuple[Path, str]:
    """Go's reference executable from a temporary copy of the checkout; (path, go version)."""
    copy = work / "gowebhello-src"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns(".git"), symlinks=True)
    have = go_version(go)
    gomod = copy / "go.mod"
    gomod.write_text(lower_go_line(gomod.read_text(), have))
    main_dirs = sorted({p.parent for p in copy.rglob("*.go") if "package main" in p.read_text()})
    if not main_dirs:
        sys.exit(f"--go-src {src}: no `package main` in the checkout")
    out = work / "gowebhello"
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    argv = [go, "build", "-ldflags=-s -w", "-trimpath", "-o", str(out)]
    pkg = "./" + str(main_dirs[0].relative_to(copy)) if main_dirs[0] != copy else "."
    note(f"go: {' '.join(argv[1:])} {pkg} (go{have[0]}.{have[1]})")
    proc = subprocess.run(
        [*argv, pkg], cwd=copy, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"go build failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return out, f"go{have[0]}.{have[1]}"


# ---- running in the empty root --------------------------------------------------------------


@dataclass
class Variant:
    label: str
    exe: Path
    root: Path = Path()
    inroot: Path = Path()
    starts: list[float] = field(default_factory=list)
    start_cpu: list[float] = field(default_factory=list)
    idle_rss: list[float] = field(default_factory=list)
    load_rss: list[float] = field(default_factory=list)
    rps: dict[str, list[float]] = field(default_factory=dict)
    server_us: dict[str, list[float]] = field(default_factory=dict)
    client_us: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def served(v: Variant, args: Sequence[str], log: Path) -> Iterator[tuple[int, int, float]]:
    """Start v in its root on a free port, pinned to core 0, output to log; yields (port,
    host pid of the app, seconds from spawn to the first 200). Retries a lost port race."""
    for _attempt in range(5):
        port = free_port()
        argv = rootfs.rootfs_command(
            v.root, [str(v.inroot), "-addr", f"127.0.0.1:{port}", *args], read_only=True
        )
        with open(log, "ab") as fh:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                ["taskset", "-c", wb.SERVER_CPU, *argv],
                env={},
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=fh,
                start_new_session=True,
            )
        try:
            while proc.poll() is None and time.perf_counter() - t0 < START_TIMEOUT:
                if wb.http_get_status(port, timeout=1.0) == 200:
                    took = time.perf_counter() - t0
                    app = rootfs.namespace_init(proc)
                    assert app is not None
                    yield port, app, took
                    return
                time.sleep(0.001)
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                rootfs.stop(proc)
        if "address already in use" not in log.read_text(errors="replace").lower():
            raise RuntimeError(f"{v.label}: no 200 within {START_TIMEOUT} s; see {log}")
    raise RuntimeError(f"{v.label}: lost the port race 5 times")


def rotate(variants: list[Variant], i: int) -> list[Variant]:
    """Round i starts with variant i % n: none always goes first."""
    k = i % len(variants)
    return [*variants[k:], *variants[:k]]


def cpu_seconds(pid: int) -> float:
    """CPU time of pid's threads and descendants, in ns resolution (/proc/PID/task/*/schedstat;
    /proc/PID/stat's jiffies are too coarse for a start of a few ms)."""
    total = 0
    for p in [pid, *wb.descendants(pid)]:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def children_cpu_seconds() -> float:
    """CPU time of this script's waited-for children (each wrk run adds its own)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def per_request_us(before: float, after: float, requests: int) -> float:
    """CPU microseconds per request between two CPU-time readings (seconds)."""
    return (after - before) / requests * 1e6 if requests else 0.0


def measure_starts(variants: list[Variant], runs: int, logs: Path) -> None:
    for i in range(runs):
        for v in rotate(variants, i):
            with served(v, [], logs / f"{v.label}-start.log") as (_port, app, took):
                v.starts.append(took)
                v.start_cpu.append(cpu_seconds(app))
                time.sleep(1.0)
                v.idle_rss.append(wb.tree_rss_kib(app) / 1024)
        note(f"starts: {i + 1}/{runs}")


@contextlib.contextmanager
def lo_rx_on(cpu: str) -> Iterator[None]:
    """Loopback receive processing on core ``cpu`` (RPS) while the block runs; the old mask
    is written back afterwards, also on errors and Ctrl-C."""
    old = LO_RPS.read_text().strip()
    LO_RPS.write_text(format(1 << int(cpu), "x"))
    try:
        yield
    finally:
        LO_RPS.write_text(old)


def scenarios(args: argparse.Namespace) -> list[wb.Scenario]:
    return [*wb.SCENARIOS, *([RX_SCENARIO] if args.rx_on_server_core else [])]


def measure_rps(variants: list[Variant], args: argparse.Namespace, logs: Path) -> None:
    kw = {"threads": args.threads, "connections": args.connections}
    for sc in scenarios(args):
        with contextlib.ExitStack() as stack:
            if sc is RX_SCENARIO:
                stack.enter_context(lo_rx_on(wb.SERVER_CPU))
            ports: dict[str, tuple[int, int]] = {}
            for v in variants:
                port, app, _ = stack.enter_context(
                    served(v, sc.args, logs / f"{v.label}-{sc.name}.log")
                )
                if wb.http_get_status(port, sc.path) != 200:
                    raise RuntimeError(f"{v.label}: GET {sc.path} is not 200")
                ports[v.label] = (port, app)
                v.rps[sc.name], v.errors[sc.name] = [], 0
                v.server_us[sc.name], v.client_us[sc.name] = [], []
            for v in variants:
                url = f"http://127.0.0.1:{ports[v.label][0]}{sc.path}"
                wb.run_wrk(wb.wrk_argv(url, duration=wb.WARMUP_SECONDS, **kw))
            for i in range(args.rounds):
                for v in rotate(variants, i):
                    port, app = ports[v.label]
                    url = f"http://127.0.0.1:{port}{sc.path}"
                    srv0, cli0 = cpu_seconds(app), children_cpu_seconds()
                    run = wb.run_wrk(wb.wrk_argv(url, duration=args.duration, **kw))
                    srv1, cli1 = cpu_seconds(app), children_cpu_seconds()
                    v.rps[sc.name].append(run.rps)
                    v.server_us[sc.name].append(per_request_us(srv0, srv1, run.requests))
                    v.client_us[sc.name].append(per_request_us(cli0, cli1, run.requests))
                    v.errors[sc.name] += run.non2xx + run.socket_errors
                note(
                    f"{sc.name} round {i + 1}/{args.rounds}: "
                    + ", ".join(f"{v.label} {v.rps[sc.name][-1]:,.0f}" for v in variants)
                )
            if sc.name == "root":
                for v in variants:
                    v.load_rss.append(wb.tree_rss_kib(ports[v.label][1]) / 1024)


# ---- report ---------------------------------------------------------------------------------


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def ratio_text(ours: float, go: float, *, higher_is_better: bool) -> str:
    if go == 0:
        return "-"
    r = ours / go
    ahead = r >= 1 if higher_is_better else r <= 1
    return f"{r:.2f}x ({'ahead' if ahead else 'behind'})" if r != 1 else "1.00x (equal)"


def report(variants: list[Variant], args: argparse.Namespace, info: list[str]) -> str:
    go, rest = variants[0], variants[1:]
    sizes = {v.label: (v.exe.stat().st_size, sb.gzip9(v.exe.read_bytes())) for v in variants}
    rows: list[list[str]] = []

    def row(name: str, values: dict[str, float], fmt: str, *, higher: bool) -> None:
        cells = [format(values[v.label], fmt) for v in variants]
        ratios = [
            ratio_text(values[v.label], values[go.label], higher_is_better=higher) for v in rest
        ]
        rows.append([name, *cells, *ratios])

    titles = TITLES
    names = list(go.rps)  # the scenarios measured, in order
    for name in names:
        row(titles[name], {v.label: med(v.rps[name]) for v in variants}, ",.0f", higher=True)
    for name in names:
        row(
            f"server CPU per request, {titles[name].removesuffix(' req/s')} (us)",
            {v.label: med(v.server_us[name]) for v in variants},
            ".1f",
            higher=False,
        )
    row("RSS after load (MiB)", {v.label: med(v.load_rss) for v in variants}, ".1f", higher=False)
    row("idle RSS (MiB)", {v.label: med(v.idle_rss) for v in variants}, ".1f", higher=False)
    row(
        f"start to first 200 (ms, median of {args.starts})",
        {v.label: med(v.starts) * 1000 for v in variants},
        ".1f",
        higher=False,
    )
    row(
        "server CPU at the first 200 (ms)",
        {v.label: med(v.start_cpu) * 1000 for v in variants},
        ".1f",
        higher=False,
    )
    row("executable raw (MB)", {k: s[0] / 1e6 for k, s in sizes.items()}, ".2f", higher=False)
    row("executable gzip -9 (MB)", {k: s[1] / 1e6 for k, s in sizes.items()}, ".2f", higher=False)
    header = ["figure", *(v.label for v in variants), *(f"{v.label} / Go" for v in rest)]
    lines = [*info, "", sb.table(header, rows), ""]
    runs = "; ".join(
        f"{v.label}: "
        + ", ".join(
            f"{titles[k].removesuffix(' req/s')} " + "/".join(f"{x:,.0f}" for x in xs)
            for k, xs in v.rps.items()
        )
        + f", starts {min(v.starts) * 1000:.1f}-{max(v.starts) * 1000:.1f} ms"
        for v in variants
    )
    errors = ", ".join(f"{v.label} {sum(v.errors.values())}" for v in variants)
    lines += [f"runs: {runs}", f"non-2xx + socket errors: {errors}", client_line(variants, titles)]
    lines += [""]
    targets = targets_met(variants[1], go, sizes)
    lines += [sb.table(["issue 14 target", "measured", "verdict"], targets)]
    return "\n".join(lines)


def client_line(variants: list[Variant], titles: dict[str, str]) -> str:
    """wrk's own CPU per request against each server, and the req/s its one core allows at
    that cost: where a route's req/s sit at that ceiling for every server, the client is the
    bound, and the server CPU per request rows are the comparison that remains."""
    parts = []
    for name in variants[0].client_us:
        each = []
        for v in variants:
            us = med(v.client_us[name])
            each.append(f"{v.label} {us:.1f} us (<= {1e6 / us:,.0f} req/s)" if us else "-")
        parts.append(f"{titles[name].removesuffix(' req/s')}: " + ", ".join(each))
    return "client (wrk, one core) CPU per request: " + "; ".join(parts)


def targets_met(ours: Variant, go: Variant, sizes: dict[str, tuple[int, int]]) -> list[list[str]]:
    """The issue's bars for the first scratchpack column, against Go in this same run."""
    out = []
    for name in ours.rps:
        r = med(ours.rps[name]) / med(go.rps[name])
        out.append([f"{name} req/s >= 1.25x Go", f"{r:.2f}x", "met" if r >= 1.25 else "MISSED"])
    r = med(ours.starts) / med(go.starts)
    out.append(["start <= 2x Go", f"{r:.2f}x", "met" if r <= 2 else "MISSED"])
    ok = med(ours.idle_rss) <= med(go.idle_rss)
    out.append(
        [
            "idle RSS <= Go",
            f"{med(ours.idle_rss):.1f} vs {med(go.idle_rss):.1f} MiB",
            "met" if ok else "MISSED",
        ]
    )
    raw, gz = sizes[ours.label]
    graw, ggz = sizes[go.label]
    out.append(["raw size <= Go", f"{raw:,} vs {graw:,} B", "met" if raw <= graw else "MISSED"])
    out.append(["gzip size <= Go", f"{gz:,} vs {ggz:,} B", "met" if gz <= ggz else "MISSED"])
    return out


def parse_exe(spec: str) -> tuple[str, Path]:
    label, sep, path = spec.partition("=")
    if not sep or not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH to an executable, got {spec!r}")
    return label, Path(path).resolve()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--go-src", type=Path, required=True, help="a gowebhello source checkout")
    ap.add_argument("--go", default=shutil.which("go"), help="the go command (default: on PATH)")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--cache-dir", type=Path, help="use this scratchpack cache in place")
    where.add_argument("--seed", type=Path, help="copy the runtime kit from this cache")
    ap.add_argument(
        "--exe",
        type=parse_exe,
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="also measure this executable (repeatable)",
    )
    ap.add_argument("--rounds", type=int, default=3, help="wrk runs per server and route (3)")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    ap.add_argument("--starts", type=int, default=15, help="starts per server (15)")
    ap.add_argument("--connections", type=int, default=64, help="wrk -c (64)")
    ap.add_argument("--threads", type=int, default=2, help="wrk -t (2)")
    ap.add_argument(
        "--rx-on-server-core",
        action="store_true",
        help="also measure GET / without keep-alive with loopback rx steered to the server's "
        "core (RPS; needs root; restored afterwards)",
    )
    ap.add_argument("--json", type=Path, help="also write every per-run figure here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    if not args.go or not Path(args.go).exists():
        sys.exit("no go command: put go on PATH or pass --go")
    if not (args.go_src / "go.mod").is_file():
        sys.exit(f"--go-src {args.go_src}: no go.mod there")
    wb.preflight()
    if args.rx_on_server_core and not os.access(LO_RPS, os.W_OK):
        sys.exit(f"--rx-on-server-core: {LO_RPS} is not writable (needs root and RPS support)")
    load0 = sb.loadavg()
    with tempfile.TemporaryDirectory(prefix="vs-go-", dir="/tmp") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # the servers run as uid 1000
        go_exe, go_ver = build_go(args.go, args.go_src.resolve(), work)
        project = work / "webhello"
        shutil.copytree(
            sb.WEBHELLO,
            project,
            ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"),
        )
        if args.cache_dir:
            cache = args.cache_dir
        else:
            cache = work / "cache"
            if args.seed:
                sb.seed_cache(args.seed, cache)
        static = work / "webhello-static"
        note("scratchpack exe examples/webhello --runtime static")
        sb.static_exe(project, static, cache)
        variants = [Variant("Go", go_exe), Variant("static", static)]
        variants += [Variant(label, path) for label, path in args.exe]
        for v in variants:
            v.root = work / f"root-{v.label}"
            v.inroot = rootfs.make_scratch_rootfs(v.root, v.exe)
        logs = work / "logs"
        logs.mkdir()
        measure_starts(variants, args.starts, logs)
        measure_rps(variants, args, logs)
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        info = [
            f"vs-go, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {rev}, "
            f"Go reference built with {go_ver}; load average {load0} -> {sb.loadavg()}",
            f"{args.rounds} x {args.duration} s wrk -t{args.threads} -c{args.connections} "
            f"per route (core 1), servers on core 0 in an empty read-only root as uid 1000, "
            f"{args.starts} starts each; medians, variants interleaved",
        ]
        if args.rx_on_server_core:
            info.append(
                f"{TITLES[RX_SCENARIO.name].removesuffix(' req/s')}: "
                f"{LO_RPS} = {1 << int(wb.SERVER_CPU):x} during that row only"
            )
        print(report(variants, args, info))
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        v.label: {
                            "exe_bytes": v.exe.stat().st_size,
                            "starts": v.starts,
                            "start_cpu": v.start_cpu,
                            "idle_rss": v.idle_rss,
                            "load_rss": v.load_rss,
                            "rps": v.rps,
                            "server_us": v.server_us,
                            "client_us": v.client_us,
                            "errors": v.errors,
                        }
                        for v in variants
                    },
                    indent=1,
                )
            )
        if args.keep:
            kept = Path(tempfile.mkdtemp(prefix="vs-go-kept-", dir="/tmp"))
            for v in variants:
                shutil.copy2(v.exe, kept / v.label)
            note(f"kept the executables in {kept}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
