#!/usr/bin/env python3
"""--runtime static vs the default route, for webhello: size, start, RSS, writes, image, req/s.

    .venv/bin/python bench/static_bench.py [--runs 15] [--starts 5] [--wrk-runs 3]
        [--seed CACHE | --cache-dir CACHE] [--cold-runtime] [--wait-idle S] [--no-docker]

One run, on a snapshot of examples/webhello (edits to the tree during the run do not leak in):

- builds: `scratchpack exe --runtime static` (CLI, timed: first build with a warm runtime kit,
  rebuilds, cached) and the default route (PyInstaller + staticx, `freeze(FreezeSpec(...))`);
- (a) raw and gzip -9 size; start to the first 200 on GET / in an empty rootfs as uid 1000
  (testsupport.rootfs: the static executable in a READ-ONLY root with no /tmp and no /proc, the
  default one in the usual root with a 1777 /tmp and proc), the static executable on the host,
  `python -m webhello` on the host, and a `gcc -static` C server in the same read-only root
  (the harness floor: unshare + mount + chroot + polling); idle RSS of the app's process tree
  1 s after the first 200; bytes written under the root (and the host's TMPDIR/cwd) during the
  start, from a listing taken before and while running. Variants are interleaved run by run
  (medians of --runs). Where the static executable's bytes go: the ELF part vs the appended
  zip (`zipfile` listing), ELF sections, and two smaller apps the freezer builds (one importing
  nothing, one importing only ssl);
- (b) `scratchpack build` both ways to docker-archive tarballs: compressed layer bytes from the
  OCI manifest, `podman images` (private store) and `docker images` (private dockerd) sizes,
  `podman run` to the first 200 (static: --read-only --read-only-tmpfs=false, no tmpfs, no
  --init; default: writable root, --init), interleaved, median of --starts;
- (c) req/s with bench/webhello_bench.py's wrk harness (server on core 0, wrk on core 1):
  GET /, GET /www/etc/passwd, GET / with -disableKeepalive; all variants run side by side and
  take turns run by run, median of --wrk-runs;
- (d) --cold-runtime: `scratchpack exe --runtime static -v` in an EMPTY cache with pip's cache
  off (the zig wheel is downloaded), total and per-phase seconds from the progress lines.

The runtime kit for (a)-(c) comes from --cache-dir (used in place), from --seed (a kit copied
into a private cache, as tests/conftest.py does), or else is built in the private cache. Markdown
on stdout, progress on stderr. Every process, container and daemon started is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import webhello_bench as wb

from scratchpack.freeze import FreezeSpec, freeze
from scratchpack.freeze.static import kit_key
from testsupport import rootfs
from testsupport.engines import (
    Container,
    ContainerRuntime,
    build_static_server,
    docker_session,
    podman_session,
)
from testsupport.net import free_port, get_status

REPO = Path(__file__).resolve().parent.parent

WEBHELLO = REPO / "examples" / "webhello"
#: The static runtime embeds CPython 3.11.2, so the app is installed with Debian's 3.11.
STATIC_PYTHON = "/usr/bin/python3"
SCRATCHPACK = [sys.executable, "-m", "scratchpack"]
STATIC_TAG, DEFAULT_TAG = "webhello-static:bench", "webhello-default:bench"
PHASE = re.compile(r"^scratchpack: (?P<title>.+): done in (?P<secs>[\d.]+)s$", re.M)
START_TIMEOUT = 30.0
TARGETS = {"start_ms": 30.0, "rss_mib": 12.0, "image_mb": 6.1, "layer_mb": 3.5}


def note(message: str) -> None:
    print(f"[static-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def settle(args: argparse.Namespace, section: str, loads: dict[str, str]) -> None:
    """Optionally wait for other processes to go quiet; record the load average (and the CPU
    share other processes used over the last 3 s of the wait)."""
    loads[section] = loadavg()
    if args.wait_idle:
        other = wb.wait_idle(args.wait_idle)
        note(f"{section}: other processes use {other:.0f}% of the CPUs")
        loads[section] = f"{loadavg()} (other processes {other:.0f}%)"


def rotate(items: Sequence[str], i: int) -> list[str]:
    """Run i starts with item i % n: no variant always goes first (or right after another)."""
    k = i % len(items)
    return [*items[k:], *items[:k]]


def mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def gzip9(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


# ---- building -----------------------------------------------------------------------------


def scratchpack(
    *args: str, cache: Path, env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run the CLI (as a user would) with --json -v; seconds and the completed process."""
    full_env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    full_env.update(env or {})
    argv = [*SCRATCHPACK, *args, "--cache-dir", str(cache), "--json", "-v"]
    t = time.perf_counter()
    proc = subprocess.run(
        argv, env=full_env, capture_output=True, text=True, timeout=3600, check=False
    )
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return elapsed, proc


def phases(stderr: str) -> list[tuple[str, float]]:
    return [(m["title"], float(m["secs"])) for m in PHASE.finditer(stderr)]


def static_exe(
    project: Path, out: Path, cache: Path, env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    return scratchpack(
        "exe",
        str(project),
        "--runtime",
        "static",
        "--python",
        STATIC_PYTHON,
        "-o",
        str(out),
        cache=cache,
        env=env,
    )


def seed_cache(seed: Path, cache: Path) -> None:
    """Copy a built kit and its zig toolchain from another cache (what tests/conftest.py does)."""
    src, dest = seed / "runtime", cache / "runtime"
    parts = [src / kit_key(), *sorted(src.glob("zig-[0-9]*")), src / "zig-cache"]
    if not (src / kit_key()).is_dir():
        sys.exit(f"--seed {seed}: no runtime kit {kit_key()} under {src}")
    for part in parts:
        if part.is_dir():
            shutil.copytree(part, dest / part.name, symlinks=True)


@dataclass
class ColdRuntime:
    total_s: float
    kit_s: float
    phases: list[tuple[str, float]]


def cold_runtime(project: Path, cache: Path, out: Path) -> ColdRuntime:
    """`scratchpack exe --runtime static` into an empty cache; pip's cache off (zig downloaded)."""
    note(f"cold: building the runtime kit in the empty cache {cache} (minutes)")
    total, proc = static_exe(project, out, cache, env={"PIP_NO_CACHE_DIR": "1"})
    steps = phases(proc.stderr)
    meta = json.loads((cache / "runtime" / kit_key() / "runtime.json").read_text())
    zig = sum(s for title, s in steps if title.startswith("installing the zig"))
    return ColdRuntime(total, zig + float(meta["build_seconds"]), steps)


@dataclass
class Builds:
    static: Path
    default: Path
    rows: list[tuple[str, str]]


def build_all(project: Path, cache: Path, work: Path, rebuilds: int) -> Builds:
    rows: list[tuple[str, str]] = []
    out = work / "exe"
    out.mkdir(mode=0o755)
    static = out / "webhello-static"
    note("static: first build of the app with a warm runtime kit")
    first, proc = static_exe(project, static, cache)
    steps = phases(proc.stderr)
    fresh = any(t.startswith("creating build venv") for t, _ in steps)
    rows.append(
        (
            "`scratchpack exe --runtime static`, first build (kit warm, build venv "
            + ("created)" if fresh else "reused)")
            + (
                " [cache hit: built before in this cache]"
                if json.loads(proc.stdout)["cached"]
                else ""
            ),
            f"{first:.1f} s ({'; '.join(f'{t} {secs:.1f} s' for t, secs in steps)})",
        )
    )
    times, split = [], []
    base = int(time.time())
    for i in range(rebuilds):
        # a new SOURCE_DATE_EPOCH is a new cache key: the app is analysed, compiled and linked
        # again with the kit and build venv warm -- the everyday "I changed my code" rebuild
        t, proc = static_exe(
            project, out / f"rebuild-{i}", cache, {"SOURCE_DATE_EPOCH": str(base + i)}
        )
        times.append(t)
        split.append(dict(phases(proc.stderr)))
    detail = ", ".join(
        f"{title} {statistics.median(s.get(title, 0.0) for s in split):.1f} s"
        for title in ("finding and compiling the app's modules", "linking the static executable")
    )
    rows.append(
        (
            "`scratchpack exe --runtime static`, warm rebuild (kit + venv warm; median of "
            f"{rebuilds})",
            f"{statistics.median(times):.1f} s ({detail})",
        )
    )
    cached, proc = static_exe(project, static, cache)
    assert json.loads(proc.stdout)["cached"], proc.stdout
    rows.append(
        ("`scratchpack exe --runtime static`, unchanged inputs (cache hit)", f"{cached:.2f} s")
    )
    note("default route: freeze (PyInstaller + staticx), cached after the first time")
    t = time.perf_counter()
    app = freeze(FreezeSpec(project, cache_dir=cache))
    took = time.perf_counter() - t
    default = out / "webhello-default"
    shutil.copyfile(app.path, default)
    default.chmod(0o755)
    rows.append(
        (
            "default route `freeze()` (PyInstaller + staticx)",
            f"{took:.1f} s ({'cache hit' if app.cached else 'built'})",
        )
    )
    return Builds(static, default, rows)


# ---- (a) start, RSS, bytes written ----------------------------------------------------------


def listing(bases: Sequence[Path]) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of everything under the bases (what a start may write to)."""
    out: dict[str, tuple[int, int]] = {}
    for base in bases:
        for dirpath, dirs, files in os.walk(base):
            for name in [*dirs, *files]:
                with contextlib.suppress(OSError):
                    st = os.lstat(os.path.join(dirpath, name))
                    size = st.st_size if not os.path.isdir(os.path.join(dirpath, name)) else 0
                    out[os.path.join(dirpath, name)] = (size, st.st_mtime_ns)
    return out


def written(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> tuple[int, int]:
    """(bytes, entries) new or rewritten between two listings."""
    changed = [k for k, v in after.items() if before.get(k) != v]
    return sum(after[k][0] for k in changed), len(changed)


@dataclass
class StartVariant:
    label: str
    spawn: Callable[[int], subprocess.Popen[bytes]]
    in_rootfs: bool
    watch: list[Path]
    scratch: Path | None = None  # a /tmp to empty after each run
    starts: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    procs: list[int] = field(default_factory=list)
    bytes_written: list[int] = field(default_factory=list)
    entries_written: list[int] = field(default_factory=list)


def stop_variant(v: StartVariant, proc: subprocess.Popen[bytes]) -> None:
    wb.stop_started(proc, in_root=v.in_rootfs, timeout=15)
    if proc.stdout:
        proc.stdout.close()
    if v.scratch is not None:
        for leftover in v.scratch.iterdir():  # a killed start may leave its extraction behind
            shutil.rmtree(leftover, ignore_errors=True)


def one_start(v: StartVariant) -> None:
    """Spawn, poll GET / every 2 ms until 200, idle 1 s, then RSS and bytes written; stop."""
    for _attempt in range(3):
        port = free_port()
        before = listing(v.watch)
        t0 = time.perf_counter()
        proc = v.spawn(port)
        output = ""
        try:
            while get_status(port, timeout=1) != 200:
                if proc.poll() is not None or time.perf_counter() - t0 > START_TIMEOUT:
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
                    output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                    break
                time.sleep(0.002)
            else:
                v.starts.append(time.perf_counter() - t0)
                time.sleep(1.0)  # idle
                app = rootfs.namespace_init(proc) if v.in_rootfs else proc.pid
                assert app is not None
                v.rss.append(wb.tree_rss_kib(app) / 1024)
                v.procs.append(1 + len(wb.descendants(app)))
                nbytes, entries = written(before, listing(v.watch))
                v.bytes_written.append(nbytes)
                v.entries_written.append(entries)
                return
        finally:
            stop_variant(v, proc)
        if "in use" not in output:
            raise RuntimeError(f"{v.label}: no 200 within {START_TIMEOUT} s\n{output[-3000:]}")
    raise RuntimeError(f"{v.label}: lost the port race 3 times")


def start_variants(builds: Builds, project: Path, work: Path) -> list[StartVariant]:
    root_s, root_d = work / "root-static", work / "root-default"
    exe_s = rootfs.make_scratch_rootfs(root_s, builds.static)
    exe_d = rootfs.make_rootfs(root_d, builds.default)
    host = work / "host"  # cwd and TMPDIR of the host variants
    (host / "tmp").mkdir(parents=True)
    src = project / "src"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=True)

    def addr(port: int) -> list[str]:
        return ["-addr", f"127.0.0.1:{port}"]

    def host_spawn(argv: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*argv, *addr(port)],
            cwd=host,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", ""), **env},
            start_new_session=True,
        )

    tmpenv = {"TMPDIR": str(host / "tmp")}
    root_c = work / "root-c"
    exe_c = rootfs.make_scratch_rootfs(root_c, build_static_server(work / "c-server"))
    return [
        StartVariant(
            "static, read-only empty rootfs",
            lambda port: rootfs.start(root_s, [str(exe_s), *addr(port)], read_only=True),
            True,
            [root_s],
        ),
        StartVariant(
            "default route, empty rootfs",
            lambda port: rootfs.start(root_d, [str(exe_d), *addr(port)]),
            True,
            [root_d],
            scratch=root_d / "tmp",
        ),
        StartVariant(
            "static, host",
            lambda port: host_spawn([str(builds.static)], port, tmpenv),
            False,
            [host],
        ),
        StartVariant(
            "`python -m webhello`, host",
            lambda port: host_spawn(
                [sys.executable, "-m", "webhello"], port, {**tmpenv, "PYTHONPATH": str(src)}
            ),
            False,
            [host, src],
        ),
        StartVariant(
            "reference: C server (gcc -static), read-only empty rootfs",
            lambda port: rootfs.start(root_c, [str(exe_c), str(port)], read_only=True),
            True,
            [root_c],
        ),
    ]


def measure_starts(variants: list[StartVariant], runs: int) -> None:
    labels = [v.label for v in variants]
    by_label = {v.label: v for v in variants}
    for i in range(runs):
        for label in rotate(labels, i):
            one_start(by_label[label])
        note(f"starts: run {i + 1}/{runs}")


# ---- (b) images -----------------------------------------------------------------------------


def layer_bytes(tarball: Path) -> dict[str, int]:
    """Compressed layer bytes and what a push sends, from the archive's OCI manifest."""
    with tarfile.open(tarball) as tf:

        def member(name: str) -> Any:
            f = tf.extractfile(name)
            assert f is not None
            return json.load(f)

        desc = member("index.json")["manifests"][0]
        manifest = member(f"blobs/sha256/{desc['digest'].split(':', 1)[1]}")
    layers = sum(int(layer["size"]) for layer in manifest["layers"])
    return {
        "layers": layers,
        "count": len(manifest["layers"]),
        "push": layers + int(manifest["config"]["size"]) + int(desc["size"]),
        "tarball": tarball.stat().st_size,
    }


def run_static_container(runtime: ContainerRuntime, args: list[str]) -> Container:
    """--read-only without any tmpfs and without --init: the executable is PID 1 (as in
    tests/test_static_e2e.py)."""
    flags = [f for f in runtime.run_flags if not f.startswith("--init")]
    argv = [
        "run",
        "-d",
        "--network=host",
        "--pull=never",
        *flags,
        "--read-only",
        "--read-only-tmpfs=false",
        STATIC_TAG,
        *args,
    ]
    container = Container(runtime, runtime.cli(*argv).stdout.strip().splitlines()[-1])
    runtime.containers.append(container)
    return container


def first_200(port: int, t0: float, container: Container) -> float:
    while get_status(port, timeout=1) != 200:
        if time.perf_counter() - t0 > START_TIMEOUT:
            raise RuntimeError(f"no 200 within {START_TIMEOUT} s:\n{container.logs()}")
        time.sleep(0.002)
    return time.perf_counter() - t0


@dataclass
class ImageResult:
    build_s: float
    layers: dict[str, int]
    podman_size: str = ""
    podman_bytes: int = 0
    docker_size: str = ""
    docker_bytes: int = 0
    starts: list[float] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)


def images(
    project: Path, cache: Path, work: Path, args: argparse.Namespace
) -> dict[str, ImageResult]:
    out: dict[str, ImageResult] = {}
    for label, tag, extra in (
        ("static", STATIC_TAG, ["--runtime", "static", "--python", STATIC_PYTHON]),
        ("default", DEFAULT_TAG, []),
    ):
        tarball = work / f"{label}.tar"
        note(f"image: scratchpack build ({label})")
        took, _ = scratchpack(
            "build", str(project), *extra, "--tarball", str(tarball), "--tag", tag, cache=cache
        )
        out[label] = ImageResult(took, layer_bytes(tarball))
    with podman_session() as podman:
        for label, tag in (("static", STATIC_TAG), ("default", DEFAULT_TAG)):
            podman.load(work / f"{label}.tar")
            out[label].podman_size = podman.cli(
                "images", "--format", "{{.Size}}", tag
            ).stdout.strip()
            out[label].podman_bytes = podman.image_size(tag)
        for i in range(args.starts):
            for label in rotate(["static", "default"], i):
                port = free_port()
                t0 = time.perf_counter()
                argv = ["-addr", f"127.0.0.1:{port}"]
                c = (
                    run_static_container(podman, argv)
                    if label == "static"
                    else podman.run(DEFAULT_TAG, argv)
                )
                try:
                    out[label].starts.append(first_200(port, t0, c))
                    if i == 0:
                        diff = podman.cli("diff", c.id).stdout.split("\n")
                        out[label].diff = [line for line in diff if line.strip()]
                finally:
                    c.stop(timeout=5)
            note(f"podman run: start {i + 1}/{args.starts}")
    if not args.no_docker:
        with docker_session() as docker:
            for label, tag in (("static", STATIC_TAG), ("default", DEFAULT_TAG)):
                docker.load(work / f"{label}.tar")
                out[label].docker_size = docker.cli(
                    "images", "--format", "{{.Size}}", tag
                ).stdout.strip()
                out[label].docker_bytes = docker.image_size(tag)
    return out


# ---- (c) req/s ------------------------------------------------------------------------------


@dataclass
class Throughput:
    rps: dict[str, list[float]]
    errors: dict[str, int]
    other_pct: float


def other_cpu(pids: Sequence[int], t0: float, busy0: int, srv0: int, own0: float) -> float:
    elapsed = (time.monotonic() - t0) * wb.CLK_TCK * (os.cpu_count() or 1)
    ours = sum(wb.tree_cpu_jiffies(p) for p in pids) - srv0 + wb.own_and_children_jiffies() - own0
    return max(0.0, (wb.busy_jiffies() - busy0 - ours) / elapsed * 100) if elapsed else 0.0


def throughput(
    commands: dict[str, list[str]], work: Path, args: argparse.Namespace, loads: dict[str, str]
) -> dict[str, Throughput]:
    wrkdir = work / "wrk"
    (wrkdir / "etc").mkdir(parents=True)
    (wrkdir / "etc" / "passwd").write_bytes(wb.PASSWD)
    kw = {"threads": args.threads, "connections": args.connections}
    results: dict[str, Throughput] = {}
    for sc in wb.SCENARIOS:
        settle(args, f"req/s {sc.name}", loads)
        with contextlib.ExitStack() as stack:
            servers: dict[str, wb.Running] = {}
            for label, cmd in commands.items():
                log = wrkdir / f"{label.split()[0]}-{sc.name}.log"
                srv = stack.enter_context(wb.running_server([*cmd, *sc.args], wrkdir, log))
                if wb.http_get_status(srv.port, sc.path) != 200:
                    raise RuntimeError(f"{label}: GET {sc.path} is not 200")
                servers[label] = srv
            url = {k: f"http://127.0.0.1:{s.port}{sc.path}" for k, s in servers.items()}
            for label in servers:
                wb.run_wrk(wb.wrk_argv(url[label], duration=wb.WARMUP_SECONDS, **kw))
            res = Throughput({k: [] for k in servers}, dict.fromkeys(servers, 0), 0.0)
            pids = [s.proc.pid for s in servers.values()]
            t0, busy0 = time.monotonic(), wb.busy_jiffies()
            srv0, own0 = sum(wb.tree_cpu_jiffies(p) for p in pids), wb.own_and_children_jiffies()
            for i in range(args.wrk_runs):
                for label in rotate(list(servers), i):
                    run = wb.run_wrk(wb.wrk_argv(url[label], duration=args.duration, **kw))
                    res.rps[label].append(run.rps)
                    res.errors[label] += run.non2xx + run.socket_errors
                note(
                    f"req/s {sc.name}: run {i + 1}/{args.wrk_runs}: "
                    + ", ".join(f"{k.split(',')[0]} {v[-1]:,.0f}" for k, v in res.rps.items())
                )
            res.other_pct = other_cpu(pids, t0, busy0, srv0, own0)
        results[f"{sc.name}: GET {sc.path} {' '.join(sc.args)}".strip()] = res
    return results


# ---- where the bytes go ---------------------------------------------------------------------


FLOOR_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0"
dependencies = []

[tool.setuptools.packages.find]
where = ["src"]

[tool.scratchpack]
entrypoint = "{name}.main:main"
exclude-modules = {excludes}
"""


def split_exe(exe: Path) -> tuple[bytes, bytes, list[zipfile.ZipInfo]]:
    """(ELF part, appended zip, zip entries) of a --runtime static executable."""
    data = exe.read_bytes()
    with zipfile.ZipFile(exe) as zf:
        infos = zf.infolist()
    start = min(i.header_offset for i in infos)  # zipfile shifts offsets past the ELF part
    return data[:start], data[start:], infos


def floors(cache: Path, work: Path, project: Path) -> list[tuple[str, str]]:
    """Smaller variants the freezer makes: an app importing nothing, and one importing ssl,
    both with webhello's exclude-modules. Their ELF parts split webhello's interpreter bytes
    into core / ssl + OpenSSL / the rest of what webhello imports."""
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    excludes = json.dumps(pyproject["tool"]["scratchpack"].get("exclude-modules", []))
    rows = []
    for name, body in (
        ("floor", "def main() -> None:\n    pass\n"),
        ("floorssl", "import ssl\n\n\ndef main() -> None:\n    print(ssl.OPENSSL_VERSION)\n"),
    ):
        floor = work / name
        (floor / "src" / name).mkdir(parents=True)
        (floor / "pyproject.toml").write_text(FLOOR_PYPROJECT.format(name=name, excludes=excludes))
        (floor / "src" / name / "__init__.py").write_text("")
        (floor / "src" / name / "main.py").write_text(body)
        exe = work / "exe" / name
        note(f"size variant: {name}")
        static_exe(floor, exe, cache)
        elf, appended, infos = split_exe(exe)
        what = "imports nothing" if name == "floor" else "only does `import ssl`"
        rows.append(
            (
                f"freezer variant: an app that {what}",
                f"{mb(exe.stat().st_size)} = ELF {mb(len(elf))} (gzip {mb(gzip9(elf))}) + zip "
                f"{mb(len(appended))} ({len(infos)} entries)",
            )
        )
    return rows


def anatomy(exe: Path, cache: Path, work: Path, project: Path) -> list[tuple[str, str]]:
    elf, appended, infos = split_exe(exe)
    app = [i for i in infos if i.filename.startswith("webhello/")]
    rows = [
        (
            "ELF part: launcher + libpython + built-in C modules + OpenSSL + zlib + musl",
            f"{mb(len(elf))} raw, {mb(gzip9(elf))} gzip -9",
        ),
        (
            f"appended zip: {len(infos)} entries, stored (zipimport reads it in place)",
            f"{mb(len(appended))} raw, {mb(gzip9(appended))} gzip -9",
        ),
        (
            f"  of which webhello's own modules ({len(app)} .pyc)",
            f"{mb(sum(i.compress_size for i in app))}",
        ),
        (
            "  of which the stdlib modules it imports",
            f"{mb(sum(i.compress_size for i in infos if i not in app))}",
        ),
    ]
    top = sorted(infos, key=lambda i: i.compress_size, reverse=True)[:8]
    rows.append(
        (
            "  largest entries",
            ", ".join(f"{i.filename} {i.compress_size / 1e3:.0f} kB" for i in top),
        )
    )
    sections = subprocess.run(["size", "-A", str(exe)], capture_output=True, text=True, check=False)
    sec = {}
    for line in sections.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sec[parts[0]] = int(parts[1])
    if sec:
        big = sorted(sec.items(), key=lambda kv: kv[1], reverse=True)[:5]
        rows.append(("ELF sections (`size -A`)", ", ".join(f"{k} {mb(v)}" for k, v in big)))
    kind = subprocess.run(["file", "-b", str(exe)], capture_output=True, text=True, check=False)
    rows.append(("`file`", kind.stdout.strip().replace("|", "/")))
    rows += floors(cache, work, project)
    full = cache / "runtime" / kit_key() / "bin" / "python3.11"
    if full.is_file():
        rows.append(
            (
                "reference: the kit's full static interpreter (every built-in module, not "
                "stripped, no zip)",
                mb(full.stat().st_size),
            )
        )
    return rows


# ---- report ---------------------------------------------------------------------------------


def spread(xs: Sequence[float], scale: float = 1000, unit: str = "ms") -> str:
    return (
        f"{statistics.median(xs) * scale:.1f} {unit} "
        f"(min {min(xs) * scale:.1f}, max {max(xs) * scale:.1f})"
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def verdict(value: float, target: float, *, lower_is_better: bool = True) -> str:
    ok = value <= target if lower_is_better else value >= target
    margin = (target - value) if lower_is_better else (value - target)
    return ("met" if ok else "MISSED") + f" ({'margin' if ok else 'over by'} {abs(margin):.2f})"


def report(
    args: argparse.Namespace,
    builds: Builds,
    variants: list[StartVariant],
    imgs: dict[str, ImageResult] | None,
    rps: dict[str, Throughput] | None,
    cold: ColdRuntime | None,
    bytes_rows: list[tuple[str, str]],
    loads: dict[str, str],
    cache_note: str,
) -> str:
    out = [
        f"static-runtime benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}",
        f"runs {args.runs} (starts), {args.starts} (podman run), "
        f"{args.wrk_runs} x {args.duration} s "
        f"(wrk -t{args.threads} -c{args.connections}); medians; runtime kit: {cache_note}",
        "load average (1/5/15 min) at the start of each section: "
        + "; ".join(f"{k} {v}" for k, v in loads.items()),
        "",
        "### Build",
        "",
        table(["measure", "value"], builds.rows),
        "",
        "### Executable: size, start, memory, writes",
        "",
    ]
    sizes = {
        "static, read-only empty rootfs": builds.static,
        "default route, empty rootfs": builds.default,
        "static, host": builds.static,
    }
    rows = []
    for v in variants:
        exe = sizes.get(v.label)
        raw = mb(exe.stat().st_size) if exe else "-"
        gz = mb(gzip9(exe.read_bytes())) if exe else "-"
        rows.append(
            [
                v.label,
                raw,
                gz,
                spread(v.starts),
                f"{statistics.median(v.rss):.1f} MiB",
                f"{statistics.median(v.procs):.0f}",
                f"{statistics.median(v.bytes_written) / 2**20:.2f} MiB "
                f"(max {max(v.bytes_written):,} B, {max(v.entries_written)} entries)",
            ]
        )
    out += [
        table(
            [
                "variant",
                "size",
                "gzip -9",
                "start to first 200",
                "idle RSS (tree)",
                "processes",
                "written at start",
            ],
            rows,
        ),
        "",
        "### Where the static executable's bytes go",
        "",
        table(["part", "bytes"], bytes_rows),
        "",
    ]
    if imgs:
        s, d = imgs["static"], imgs["default"]
        irows = [
            [
                "`scratchpack build` (exe cached; assembly + tarball)",
                f"{s.build_s:.2f} s",
                f"{d.build_s:.2f} s",
            ],
            [
                "compressed layer bytes (OCI manifest)",
                f"{s.layers['layers']:,} ({mb(s.layers['layers'])})",
                f"{d.layers['layers']:,} ({mb(d.layers['layers'])})",
            ],
            [
                "bytes a push sends (layers + config + manifest)",
                f"{s.layers['push']:,}",
                f"{d.layers['push']:,}",
            ],
            ["tarball", f"{s.layers['tarball']:,}", f"{d.layers['tarball']:,}"],
            [
                "`podman images` SIZE",
                f"{s.podman_size} ({s.podman_bytes:,} B)",
                f"{d.podman_size} ({d.podman_bytes:,} B)",
            ],
        ]
        if not args.no_docker:
            irows.append(
                [
                    "`docker images` SIZE",
                    f"{s.docker_size} ({s.docker_bytes:,} B)",
                    f"{d.docker_size} ({d.docker_bytes:,} B)",
                ]
            )
        irows += [
            [
                "`podman run` flags",
                "--read-only --read-only-tmpfs=false (no tmpfs, no --init)",
                "--init, writable root",
            ],
            [
                f"`podman run -d` to first 200 (median of {args.starts})",
                spread(s.starts),
                spread(d.starts),
            ],
            [
                "`podman diff` after the first 200",
                f"{len(s.diff)} entries ({', '.join(s.diff[:4])})",
                f"{len(d.diff)} entries ({', '.join(d.diff[:4])}, ...)",
            ],
        ]
        out += ["### Image", "", table(["measure", "static", "default route"], irows), ""]
    if rps:
        labels = list(next(iter(rps.values())).rps)
        rrows = []
        for name, r in rps.items():
            med = {k: statistics.median(v) for k, v in r.rps.items()}
            ratio = med[labels[0]] / med[labels[1]]
            rrows.append(
                [
                    name,
                    *(f"{med[k]:,.0f}" for k in labels),
                    f"{ratio:.2f}",
                    ", ".join(str(r.errors[k]) for k in labels),
                    f"{r.other_pct:.0f}%",
                ]
            )
        out += [
            "### Requests per second (host, server on core 0, wrk on core 1)",
            "",
            table(["scenario", *labels, "static / default", "errors", "other%"], rrows),
            "",
            "runs: "
            + "; ".join(
                f"{n} "
                + ", ".join(
                    f"{k.split(',')[0]} " + "/".join(f"{x:,.0f}" for x in v)
                    for k, v in r.rps.items()
                )
                for n, r in rps.items()
            ),
            "",
        ]
    if cold:
        crows = [[title, f"{secs:.1f}"] for title, secs in cold.phases]
        crows.append(
            [
                "**runtime kit total** (zig install + runtime.json build_seconds)",
                f"**{cold.kit_s:.1f}**",
            ]
        )
        crows.append(
            ["**`scratchpack exe --runtime static`, empty cache, wall**", f"**{cold.total_s:.1f}**"]
        )
        out += [
            "### Cold runtime build (empty cache, pip cache off)",
            "",
            table(["phase (progress line, nested steps included)", "seconds"], crows),
            "",
        ]
    static = variants[0]
    trows = [
        [
            "start to first 200 <= 30 ms (static, read-only rootfs)",
            f"{statistics.median(static.starts) * 1000:.1f} ms",
            verdict(statistics.median(static.starts) * 1000, TARGETS["start_ms"]),
        ],
        [
            "idle RSS <= 12 MB (MiB here)",
            f"{statistics.median(static.rss):.1f} MiB",
            verdict(statistics.median(static.rss), TARGETS["rss_mib"]),
        ],
        [
            "0 bytes written at start",
            f"{max(static.bytes_written)} B (max over runs)",
            "met" if max(static.bytes_written) == 0 else "MISSED",
        ],
    ]
    if imgs:
        s = imgs["static"]
        size = s.docker_bytes or s.podman_bytes
        trows += [
            [
                "image <= 6.1 MB uncompressed",
                f"{size:,} B",
                verdict(size / 1e6, TARGETS["image_mb"]),
            ],
            [
                "image <= 3.5 MB compressed (layer)",
                f"{s.layers['layers']:,} B",
                verdict(s.layers["layers"] / 1e6, TARGETS["layer_mb"]),
            ],
            [
                "runs --read-only, no tmpfs",
                f"{len(s.starts)}/{args.starts} `podman run --read-only` starts served 200; "
                f"`podman diff`: {', '.join(s.diff) or 'empty'}",
                "met" if len(s.starts) == args.starts else "MISSED",
            ],
        ]
    if rps:
        labels = list(next(iter(rps.values())).rps)
        for name, r in rps.items():
            ratio = statistics.median(r.rps[labels[0]]) / statistics.median(r.rps[labels[1]])
            trows.append(
                [
                    f"req/s no worse than default ({name})",
                    f"{ratio:.2f}x",
                    "met" if ratio >= 1 else f"MISSED ({(ratio - 1) * 100:+.0f}%)",
                ]
            )
    out += ["### Targets", "", table(["target", "measured", "verdict"], trows)]
    return "\n".join(out)


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="static-bench-", dir="/tmp"))
    work.chmod(0o755)  # the rootfs variants run as uid 1000
    try:
        yield work
    finally:
        if keep:
            note(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="starts per variant (15)")
    ap.add_argument("--starts", type=int, default=5, help="podman run starts per image (5)")
    ap.add_argument("--wrk-runs", type=int, default=3, help="wrk runs per variant (3)")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    ap.add_argument("--connections", type=int, default=64, help="wrk -c (64)")
    ap.add_argument("--threads", type=int, default=2, help="wrk -t (2)")
    ap.add_argument("--rebuilds", type=int, default=3, help="timed warm static rebuilds (3)")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--cache-dir", type=Path, help="use this scratchpack cache in place")
    where.add_argument("--seed", type=Path, help="copy the runtime kit from this cache")
    ap.add_argument(
        "--cold-runtime",
        action="store_true",
        help="also build the runtime kit in an empty cache and time its phases",
    )
    ap.add_argument("--no-docker", action="store_true", help="skip `docker images` (no dockerd)")
    ap.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("image", "rps"),
        help="leave out a section (repeatable)",
    )
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="before each section wait up to S s for other processes to go quiet",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    wb.preflight()
    loads: dict[str, str] = {"begin": loadavg()}
    with workspace(args.keep) as work:
        project = work / "webhello"
        shutil.copytree(
            WEBHELLO, project, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build")
        )
        cold = None
        if args.cache_dir:
            cache, cache_note = args.cache_dir, f"--cache-dir {args.cache_dir}"
        else:
            cache = work / "cache"
            if args.seed:
                note(f"copying the runtime kit from {args.seed}")
                seed_cache(args.seed, cache)
                cache_note = f"copied from {args.seed}"
            else:
                cache_note = "built in this run's private cache"
        if not (args.cache_dir or args.seed):  # the kit is needed first: build it cold, timed
            settle(args, "cold runtime", loads)
            cold = cold_runtime(project, cache, work / "cold-webhello")
        settle(args, "builds", loads)
        builds = build_all(project, cache, work, args.rebuilds)
        bytes_rows = anatomy(builds.static, cache, work, project)
        variants = start_variants(builds, project, work)
        settle(args, "starts", loads)
        measure_starts(variants, args.runs)
        imgs = None
        if "image" not in args.skip:
            settle(args, "images", loads)
            imgs = images(project, cache, work, args)
        rps = None
        if "rps" not in args.skip:
            commands = {
                "static": [str(builds.static)],
                "default route": [str(builds.default)],
                "python -m webhello": [
                    "env",
                    f"PYTHONPATH={project / 'src'}",
                    sys.executable,
                    "-m",
                    "webhello",
                ],
            }
            rps = throughput(commands, work, args, loads)
        if args.cold_runtime and cold is None:  # last: minutes of compiling on every core
            settle(args, "cold runtime", loads)
            cold = cold_runtime(project, work / "cold-cache", work / "cold-webhello")
            shutil.rmtree(work / "cold-cache", ignore_errors=True)
        loads["end"] = loadavg()
        print(report(args, builds, variants, imgs, rps, cold, bytes_rows, loads, cache_note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
