#!/usr/bin/env python3
"""The real-apps suite (tests/realapps/) on both routes and from a plain venv: build, size, start.

    .venv/bin/python bench/realapps.py [--apps a,b] [--runs 5] [--seed CACHE] [--skip-cold]
        [--routes pyinstaller,static] [--json FILE] [--rps-apps a,b] [--wrk-runs 3]
        [--wrk-duration 5] [--connections 64] [--threads 2]

Per app and route, one pass on snapshots of the projects:

- build time with the CLI (`scratchpack exe PROJECT --runtime ROUTE`): cold (an empty build
  cache, so the build venv and, on the default route, the PyInstaller/staticx tool venv are made
  from scratch; the static route's runtime kit and zig toolchain are NOT rebuilt: every cold
  static build shares one kit copied from --seed, as tests/conftest.py does; pip's own download
  cache stays warm) and warm (the same cache, a new SOURCE_DATE_EPOCH: the app is analysed,
  frozen and linked again with every environment warm, the everyday rebuild). --skip-cold builds
  once per route in one shared cache and reports that build as warm only;
- executable size, raw and gzip -9;
- start: servers (the suite's Server apps) from spawn to the first 200 on their path, polled
  every 2 ms; CLIs from spawn to exit. Each executable runs as the suite runs it (uid 1000 in an
  empty root: static read-only with no /tmp and no /proc, default with /tmp and /proc) and also
  directly on the host; the baseline is the entry point from a plain venv (Debian's python3,
  the project installed with pip, `.pyc` compiled and warmed by one run) on the host. Variants
  of one app take turns run by run; medians of --runs. The ratio static/venv compares the two
  host figures of the same pass (the target of issue 10 is <= 0.6 on the servers);
- RSS: servers, the process tree 1 s after the first 200 (idle); CLIs, the peak
  (/usr/bin/time's %M: the largest process of the run);
- req/s (servers named by --rps-apps, fastapi_uvicorn by default): GET on the suite's path
  with wrk, as bench/static_bench.py measures webhello: every host variant (plain venv, each
  route's executable) serves at once, pinned to core 0 (`taskset -c 0`), wrk on core 1; one
  warm-up run each, then --wrk-runs rounds in which the variants take turns (the order rotates
  round by round); medians, and the non-2xx responses and socket errors of all runs. Below the
  table, issue 12's targets for these apps (static start <= 0.5x the default route's and <= the
  plain venv's, host figures; static gzip size <= the default route's), each met or not.

(app, route) pairs the suite EXPECTs refused are built and shown as refused; a build or start
that fails is shown with its cause instead of figures. Markdown on stdout, progress on stderr;
every process started is stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import webhello_bench as wb  # noqa: E402

from scratchpack.config import read_project  # noqa: E402
from scratchpack.freeze.static import kit_key  # noqa: E402
from tests.test_realapps import (  # noqa: E402
    EXPECTED,
    REALAPPS,
    REFUSED,
    RUNS,
    Cli,
    Server,
    image_args,
    make_root,
    tls_server,
)
from testsupport import rootfs  # noqa: E402
from testsupport.net import free_port  # noqa: E402

SCRATCHPACK = [sys.executable, "-m", "scratchpack"]
Popen = subprocess.Popen[bytes]
#: The static route and the baseline venv both run CPython 3.11 from Debian's python3.
VENV_PYTHON = "/usr/bin/python3"
START_TIMEOUT = 60.0


def note(message: str) -> None:
    print(f"[realapps-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def gzip9(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


# ---- building ------------------------------------------------------------------------------


def seed_runtime(seed: Path, dest: Path) -> None:
    """Copy the kit and zig from a built cache (tests/conftest.py's _seed_runtime)."""
    src = seed / "runtime"
    if not (src / kit_key()).is_dir():
        sys.exit(f"--seed {seed}: no runtime kit {kit_key()} under {src}")
    for part in [src / kit_key(), *sorted(src.glob("zig-[0-9]*")), src / "zig-cache"]:
        if part.is_dir():
            shutil.copytree(part, dest / part.name, symlinks=True)


def new_cache(work: Path, name: str, runtime: Path | None) -> Path:
    """An empty build cache; static: its runtime/ is the shared seeded kit (not rebuilt)."""
    cache = work / "caches" / name
    cache.mkdir(parents=True)
    if runtime is not None:
        (cache / "runtime").symlink_to(runtime)
    return cache


@dataclass
class BuildResult:
    seconds: float
    ok: bool
    stderr: str


def build(project: Path, route: str, out: Path, cache: Path, epoch: int) -> BuildResult:
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    argv = [*SCRATCHPACK, "exe", str(project), "--runtime", route, "-o", str(out),
            "--cache-dir", str(cache)]  # fmt: skip
    t = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, check=False)
    return BuildResult(time.perf_counter() - t, proc.returncode == 0 and out.is_file(), proc.stderr)


def make_venv(project: Path, venv: Path) -> Path:
    """A plain venv with the project installed (not editable) and its .pyc compiled."""
    subprocess.run([VENV_PYTHON, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(project)],
        check=True, capture_output=True,
    )  # fmt: skip
    # a test file of some package may not compile: that is not the app's code, so no check
    compileall = [str(py), "-m", "compileall", "-q", str(venv / "lib")]
    subprocess.run(compileall, check=False, capture_output=True)
    return py


def venv_argv(py: Path, app: str) -> list[str]:
    """The entry point as scratchpack resolves it, run as its console script would run it (a
    plain module: python -m)."""
    entry = read_project(REALAPPS / app).entrypoint
    module, _, attr = entry.partition(":")
    if not attr:
        return [str(py), "-m", module]
    return [str(py), "-c", f"import sys; from {module} import {attr} as f; sys.exit(f())"]


# ---- starting ------------------------------------------------------------------------------


@dataclass
class Variant:
    """One way of starting one app; figures collected run by run."""

    label: str
    spawn: Callable[..., subprocess.Popen[bytes]]  # (env, args, prefix[, log])
    in_root: bool
    starts_ms: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    failure: str = ""


def start_server(v: Variant, spec: Server, env: dict[str, str], args: tuple[str, ...]) -> None:
    """Spawn, GET spec.path every 2 ms until 200, idle 1 s, RSS of the tree; stop."""
    port = free_port()
    env = {**env, "PORT": str(port)}
    t0 = time.perf_counter()
    proc = v.spawn(env, args, [])
    try:
        while wb.http_get_status(port, spec.path, timeout=1) != 200:
            if proc.poll() is not None or time.perf_counter() - t0 > START_TIMEOUT:
                wb.stop_started(proc, in_root=v.in_root)
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                v.failure = f"no 200 (exit {proc.returncode}): {out[-300:]}"
                return
            time.sleep(0.002)
        v.starts_ms.append((time.perf_counter() - t0) * 1000)
        time.sleep(1.0)
        app = rootfs.namespace_init(proc) if v.in_root else proc.pid
        if app is not None:
            v.rss_mib.append(wb.tree_rss_kib(app) / 1024)
    finally:
        wb.stop_started(proc, in_root=v.in_root)
        if proc.stdout is not None:
            proc.stdout.close()


def run_cli(v: Variant, spec: Cli, env: dict[str, str], args: tuple[str, ...]) -> None:
    """Spawn under /usr/bin/time (its %M is the peak RSS of what it runs: a child forked from
    this script would inherit this script's peak), wait for the exit; the status must match."""
    with tempfile.NamedTemporaryFile("r") as rss:
        t0 = time.perf_counter()
        proc = v.spawn(env, args, ["/usr/bin/time", "-f", "%M", "-o", rss.name])
        try:
            out, _ = proc.communicate(timeout=START_TIMEOUT)
            elapsed = (time.perf_counter() - t0) * 1000
        finally:
            wb.stop_started(proc, in_root=v.in_root)
        peak_kib = rss.read().split()
    if proc.returncode != spec.exit_code:
        v.failure = f"exit {proc.returncode}: {out.decode(errors='replace')[-300:]}"
        return
    v.starts_ms.append(elapsed)
    if peak_kib and peak_kib[-1].isdigit():
        v.rss_mib.append(int(peak_kib[-1]) / 1024)


def host_spawn(argv: list[str], cwd: Path) -> Callable[..., subprocess.Popen[bytes]]:
    def spawn(
        env: dict[str, str], args: tuple[str, ...], pre: list[str], log: IO[bytes] | None = None
    ) -> subprocess.Popen[bytes]:
        """Output piped, or into ``log`` for a server under load (a pipe nobody reads fills
        up with access-log lines and stalls the server)."""
        return subprocess.Popen(
            [*pre, *argv, *args], cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if log is None else log, stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", ""), **env}, start_new_session=True,
        )  # fmt: skip

    return spawn


def root_spawn(route: str, root: Path, exe_in_root: Path) -> Callable[..., subprocess.Popen[bytes]]:
    def spawn(
        env: dict[str, str], args: tuple[str, ...], pre: list[str]
    ) -> subprocess.Popen[bytes]:
        return rootfs.start(
            root,
            [str(exe_in_root), *args],
            env=env,
            read_only=route == "static",
            shm=True,
            prefix=pre,
        )

    return spawn


# ---- one app -------------------------------------------------------------------------------


@dataclass
class RouteFigures:
    outcome: str = ""  # "ok", "refused", "build failed: ..."
    cold_s: float | None = None
    warm_s: float | None = None
    raw: int | None = None
    gz: int | None = None


@dataclass
class AppFigures:
    app: str
    kind: str
    routes: dict[str, RouteFigures] = field(default_factory=dict)
    starts: dict[str, dict[str, object]] = field(default_factory=dict)
    rps: dict[str, dict[str, object]] = field(default_factory=dict)  # host variant -> figures


def throughput(
    variants: list[Variant],
    spec: Server,
    env_for: Callable[[Variant], dict[str, str]],
    extra: tuple[str, ...],
    logs: Path,
    args: argparse.Namespace,
) -> dict[str, dict[str, object]]:
    """req/s of GET spec.path on each host variant: all serve at once on core 0, wrk on core
    1 takes them in turn, the order rotating round by round (see the module docstring)."""
    kw = {"threads": args.threads, "connections": args.connections}
    runs: dict[str, list[float]] = {v.label: [] for v in variants}
    errors = dict.fromkeys(runs, 0)
    failures = dict.fromkeys(runs, "")
    urls: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for v in variants:
            port = free_port()
            log = stack.enter_context((logs / f"rps-{v.label.split(',')[0]}.log").open("wb"))
            env = {**env_for(v), "PORT": str(port)}
            proc = v.spawn(env, extra, ["taskset", "-c", wb.SERVER_CPU], log)
            stack.callback(wb.stop_started, proc, in_root=False)
            t0 = time.perf_counter()
            while wb.http_get_status(port, spec.path, timeout=1) != 200:
                if proc.poll() is not None or time.perf_counter() - t0 > START_TIMEOUT:
                    failures[v.label] = f"no 200 (exit {proc.poll()}), see {log.name}"
                    break
                time.sleep(0.02)
            else:
                urls[v.label] = f"http://127.0.0.1:{port}{spec.path}"
        for url in urls.values():
            wb.run_wrk(wb.wrk_argv(url, duration=wb.WARMUP_SECONDS, **kw))
        labels = list(urls)
        for i in range(args.wrk_runs):
            k = i % len(labels) if labels else 0
            for label in [*labels[k:], *labels[:k]]:
                run = wb.run_wrk(wb.wrk_argv(urls[label], duration=args.wrk_duration, **kw))
                runs[label].append(run.rps)
                errors[label] += run.non2xx + run.socket_errors
            note(
                f"req/s round {i + 1}/{args.wrk_runs}: "
                + ", ".join(f"{label} {runs[label][-1]:,.0f}" for label in labels)
            )
    return {
        label: {"rps": median(runs[label]), "runs": runs[label], "errors": errors[label],
                "failure": failures[label]}
        for label in runs
    }  # fmt: skip


def bench_app(app: str, args: argparse.Namespace, work: Path, runtime: Path | None) -> AppFigures:
    spec = RUNS[app]
    kind = "server" if isinstance(spec, Server) else "cli"
    figs = AppFigures(app, kind)
    project = work / "src" / app
    shutil.copytree(REALAPPS / app, project, ignore=shutil.ignore_patterns("*.egg-info", "build"))
    exes: dict[str, Path] = {}
    epoch = 1_700_000_000
    for route in args.routes:
        rf = figs.routes.setdefault(route, RouteFigures())
        out = work / "exe" / route / app
        out.parent.mkdir(parents=True, exist_ok=True)
        rt = runtime if route == "static" else None
        if args.skip_cold:
            if route not in args.shared_caches:
                args.shared_caches[route] = new_cache(work, f"shared-{route}", rt)
            cache = args.shared_caches[route]
        else:
            note(f"{app} {route}: cold build")
            cache = new_cache(work, f"{app}-{route}", rt)
            cold = build(project, route, out, cache, epoch)
            rf.cold_s = cold.seconds
            if not cold.ok:
                rf.outcome = refusal_or_failure(app, route, cold.stderr)
                continue
        note(f"{app} {route}: warm build")
        warm = build(project, route, out, cache, epoch + 1)
        rf.warm_s = warm.seconds
        if not warm.ok:
            rf.outcome = refusal_or_failure(app, route, warm.stderr)
            continue
        rf.outcome = "ok"
        rf.raw, rf.gz = out.stat().st_size, gzip9(out)
        exes[route] = out
        if not args.skip_cold:
            shutil.rmtree(cache, ignore_errors=True)  # each cold cache is hundreds of MB
    note(f"{app}: plain venv")
    py = make_venv(project, work / "venvs" / app)
    host = work / "host" / app
    (host / "tmp").mkdir(parents=True)
    variants = [Variant("venv, host", host_spawn(venv_argv(py, app), host), False)]
    for route, exe in exes.items():
        root = work / "roots" / route / app
        files = {"/ca.pem": b""} if app == "requests_https" else None
        in_root = make_root(route, root, exe, files)
        variants.append(Variant(f"{route}, empty root", root_spawn(route, root, in_root), True))
        variants.append(Variant(f"{route}, host", host_spawn([str(exe)], host), False))
    with app_env(app, spec, work) as (env_for, extra_args):
        for v in variants:  # one untimed start each: the venv's .pyc and the page cache warm
            measure(v, spec, env_for(v), extra_args)
            v.starts_ms.clear(), v.rss_mib.clear()
        for i in range(args.runs):
            k = i % len(variants)
            for v in [*variants[k:], *variants[:k]]:
                if not v.failure:
                    measure(v, spec, env_for(v), extra_args)
    if app in args.rps_apps and isinstance(spec, Server):
        note(f"{app}: req/s")
        with app_env(app, spec, work) as (env_for, extra_args):
            hosts = [v for v in variants if not v.in_root]
            figs.rps = throughput(hosts, spec, env_for, extra_args, host, args)
    for v in variants:
        figs.starts[v.label] = {
            "start_ms": median(v.starts_ms),
            "rss_mib": median(v.rss_mib),
            "runs": len(v.starts_ms),
            "failure": v.failure,
        }
        note(f"{app} {v.label}: {figs.starts[v.label]}")
    return figs


def measure(v: Variant, spec: Server | Cli, env: dict[str, str], args: tuple[str, ...]) -> None:
    if isinstance(spec, Server):
        start_server(v, spec, env, args)
    else:
        run_cli(v, spec, env, args)


def refusal_or_failure(app: str, route: str, stderr: str) -> str:
    """ "refused" where the suite expects it, else the build's error line (not its hint)."""
    if EXPECTED[app][route] == REFUSED and stderr.startswith("error: "):
        return "refused"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return "build failed: " + ((errors or lines or ["?"])[0])[:160].replace("|", "/")


@contextlib.contextmanager
def app_env(
    app: str, spec: Server | Cli, work: Path
) -> Iterator[tuple[Callable[[Variant], dict[str, str]], tuple[str, ...]]]:
    """Per-variant environment and the extra arguments, as tests/test_realapps.py runs them."""
    extra = (*image_args(app), *(spec.args if isinstance(spec, Cli) else ()))
    with contextlib.ExitStack() as stack:
        ca_file: Path | None = None
        if app == "requests_https":
            tmp = Path(tempfile.mkdtemp(dir=work))
            port, ca = stack.enter_context(tls_server(tmp))
            extra = (*extra, f"https://127.0.0.1:{port}/realapps")
            ca_file = tmp / "ca.pem"
            ca_file.write_bytes(ca)
            for root in (work / "roots").glob(f"*/{app}"):
                (root / "ca.pem").write_bytes(ca)

        def env_for(v: Variant) -> dict[str, str]:
            env = dict(spec.env)
            if ca_file is not None and not v.in_root:
                env["REQUESTS_CA_BUNDLE"] = str(ca_file)
            if v.label.startswith("static, empty"):
                env.setdefault("TMPDIR", "/dev/shm")
            if v.label.startswith("pyinstaller, empty") and app == "django_site":
                env.setdefault("SITE_DB", "/tmp/site.sqlite3")
            if not v.in_root:
                env.setdefault("TMPDIR", str(work / "host" / app / "tmp"))
            return env

        yield env_for, extra


# ---- report --------------------------------------------------------------------------------


def ms(x: object) -> str:
    return f"{x:.1f}" if isinstance(x, float) else "-"


def why(failure: object) -> str:
    """The last line of a failure's output, fit for a table cell."""
    lines = [line.strip() for line in str(failure).splitlines() if line.strip()]
    return "fails: " + (lines[-1] if lines else "?").replace("|", "/")[:90]


def render(results: list[AppFigures], header: str) -> str:
    lines = [header, ""]
    lines += [
        "| app | route | build cold / warm (s) | size raw / gzip (MB) | start, empty root (ms) "
        "| start, host (ms) | vs venv (host) | RSS (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        venv = r.starts["venv, host"]
        kind = "to first 200" if r.kind == "server" else "to exit"
        lines.append(
            f"| {r.app} ({kind}) | plain venv | - | - | - | {ms(venv['start_ms'])} | 1.00 "
            f"| {ms(venv['rss_mib'])} |"
            if not venv["failure"]
            else f"| {r.app} | plain venv | - | - | - | {why(venv['failure'])} | - | - |"
        )
        for route, rf in r.routes.items():
            build_s = f"{ms(rf.cold_s)} / {ms(rf.warm_s)}"
            if rf.outcome != "ok":
                lines.append(f"| {r.app} | {route} | {build_s} | {rf.outcome} | | | | |")
                continue
            size = f"{rf.raw / 1e6:.2f} / {rf.gz / 1e6:.2f}"  # type: ignore[operator]
            root, host = r.starts[f"{route}, empty root"], r.starts[f"{route}, host"]
            cells = []
            for s in (root, host):
                cells.append(ms(s["start_ms"]) if not s["failure"] else why(s["failure"]))
            ratio = (
                f"{host['start_ms'] / venv['start_ms']:.2f}"  # type: ignore[operator]
                if isinstance(host["start_ms"], float) and isinstance(venv["start_ms"], float)
                else "-"
            )
            lines.append(
                f"| {r.app} | {route} | {build_s} | {size} | {cells[0]} | {cells[1]} | {ratio} "
                f"| {ms(root['rss_mib'])} |"
            )
    for r in results:
        if r.rps:
            lines += ["", *render_rps(r)]
    return "\n".join(lines)


def render_rps(r: AppFigures) -> list[str]:
    """The req/s table of one app, then issue 12's targets for it, each met or not."""
    spec = RUNS[r.app]
    path = spec.path if isinstance(spec, Server) else "?"
    venv = r.rps.get("venv, host", {}).get("rps")
    lines = [
        f"{r.app}, req/s of GET {path} (host; server on core {wb.SERVER_CPU}, wrk on core "
        f"{wb.CLIENT_CPU}; rounds interleaved; median):",
        "",
        "| variant | req/s | runs | vs venv | non-2xx + socket errors |",
        "|---|---:|---|---:|---:|",
    ]
    for label, fig in r.rps.items():
        rps, runs = fig["rps"], fig["runs"]
        if fig["failure"] or not isinstance(rps, float):
            lines.append(f"| {label} | {why(fig['failure'])} | | | |")
            continue
        ratio = f"{rps / venv:.2f}" if isinstance(venv, float) else "-"
        each = ", ".join(f"{x:,.0f}" for x in runs)  # type: ignore[attr-defined]
        lines.append(f"| {label} | {rps:,.0f} | {each} | {ratio} | {fig['errors']} |")
    lines += ["", *targets(r)]
    return lines


def targets(r: AppFigures) -> list[str]:
    """Issue 12's targets from this pass's figures (host starts, gzip sizes)."""

    def start(label: str) -> float | None:
        value = r.starts.get(label, {}).get("start_ms")
        return value if isinstance(value, float) else None

    static, default, venv = start("static, host"), start("pyinstaller, host"), start("venv, host")
    gz = {route: rf.gz for route, rf in r.routes.items()}
    out = [f"Targets (issue 12), {r.app}:"]
    if static is not None and default is not None:
        met = "met" if static <= 0.5 * default else "NOT met"
        out.append(
            f"- static start <= 0.5x the default route's: {static:.1f} ms vs {default:.1f} ms "
            f"({static / default:.2f}x): {met}"
        )
    if static is not None and venv is not None:
        met = "met" if static <= venv else "NOT met"
        out.append(
            f"- static start <= the plain venv's: {static:.1f} ms vs {venv:.1f} ms "
            f"({static / venv:.2f}x): {met}"
        )
    if gz.get("static") is not None and gz.get("pyinstaller") is not None:
        s_gz, d_gz = gz["static"], gz["pyinstaller"]
        met = "met" if s_gz <= d_gz else "NOT met"  # type: ignore[operator]
        out.append(
            f"- static gzip size <= the default route's: {s_gz / 1e6:.2f} MB vs "  # type: ignore[operator]
            f"{d_gz / 1e6:.2f} MB ({s_gz / d_gz:.2f}x): {met}"  # type: ignore[operator]
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--apps", default=",".join(sorted(RUNS)), help="comma-separated")
    ap.add_argument("--routes", default="pyinstaller,static", help="comma-separated")
    ap.add_argument("--runs", type=int, default=5, help="starts per variant (median)")
    ap.add_argument(
        "--seed",
        type=Path,
        default=Path(os.environ.get("SCRATCHPACK_TEST_RUNTIME_SEED", "") or "/nonexistent"),
        help="a build cache holding the static runtime kit (default: "
        "$SCRATCHPACK_TEST_RUNTIME_SEED)",
    )
    ap.add_argument("--skip-cold", action="store_true", help="one shared cache per route")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    ap.add_argument("--render", type=Path, help="print the table of an earlier --json file")
    ap.add_argument("--rps-apps", default="fastapi_uvicorn", help="servers whose req/s to measure")
    ap.add_argument("--wrk-runs", type=int, default=3, help="interleaved wrk rounds (median)")
    ap.add_argument("--wrk-duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=64, help="wrk -c")
    ap.add_argument("--threads", type=int, default=2, help="wrk -t")
    args = ap.parse_args()
    if args.render:
        data = json.loads(args.render.read_text())
        figs = [
            AppFigures(d["app"], d["kind"],
                       {k: RouteFigures(**v) for k, v in d["routes"].items()}, d["starts"],
                       d.get("rps", {}))
            for d in data
        ]  # fmt: skip
        print(render(figs, f"(from {args.render})"))
        return 0
    args.apps = [a for a in args.apps.split(",") if a]
    args.routes = [r for r in args.routes.split(",") if r]
    args.shared_caches = {}
    args.rps_apps = [a for a in args.rps_apps.split(",") if a]
    if args.rps_apps and shutil.which("wrk") is None:
        ap.error("--rps-apps needs wrk on PATH (or --rps-apps '')")
    unknown = set(args.apps) - set(RUNS)
    if unknown:
        ap.error(f"unknown apps: {sorted(unknown)}")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    work = args.keep or Path(tempfile.mkdtemp(prefix="realapps-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        runtime = None
        if "static" in args.routes:
            runtime = work / "runtime"
            note(f"seeding the static runtime kit {kit_key()} from {args.seed}")
            seed_runtime(args.seed, runtime)
        results = []
        for app in args.apps:
            results.append(bench_app(app, args, work, runtime))
            if args.json:  # after each app: a failure later keeps what was measured
                args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    header = (
        f"{started}, load average {load} at the start; {args.runs} starts per variant (median); "
        f"`{' '.join(['.venv/bin/python', 'bench/realapps.py', *sys.argv[1:]])}`"
    )
    print(render(results, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
