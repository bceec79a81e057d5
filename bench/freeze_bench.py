"""Freezer benchmark: build time (cold/warm), executable size, start time, RSS, /tmp bytes.

    .venv/bin/python bench/freeze_bench.py [--project examples/webhello] [--runs 10]

Starts each variant in the empty rootfs (testsupport.rootfs: fresh PID+mount namespaces, chroot,
uid 1000) and measures from the spawn of `unshare` to the first HTTP 200 on GET /, then the idle
RSS summed over the process group and the bytes the start extracted into /tmp. `python -m
<package>` (this venv's interpreter, on the host, same uid 0 -> no chroot) is the baseline.
Prints a Markdown table (the figures in docs/bench/freezer.md come from one run of this).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scratchpack.config import read_project
from scratchpack.freeze import FreezeSpec, freeze
from testsupport import rootfs
from testsupport.net import free_port, get_status

REPO = Path(__file__).resolve().parent.parent


def measure_start(spawn, tmpdir: Path, runs: int) -> dict[str, float]:
    """spawn(port) -> Popen in its own process group; returns medians over ``runs`` starts."""
    starts, rss, tmp_bytes = [], [], []
    for _ in range(runs):
        port = free_port()
        t0 = time.perf_counter()
        proc = spawn(port)
        try:
            while get_status(port) != 200:
                if proc.poll() is not None:
                    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                    raise RuntimeError(f"server exited {proc.returncode}:\n{out}")
                if time.perf_counter() - t0 > 30:
                    os.killpg(proc.pid, signal.SIGKILL)
                    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                    raise RuntimeError(f"no 200 within 30 s:\n{out}")
                time.sleep(0.002)
            starts.append(time.perf_counter() - t0)
            time.sleep(1.0)  # idle
            rss.append(rootfs.group_rss_kib(proc.pid) / 1024)
            tmp_bytes.append(rootfs.tree_bytes(tmpdir))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        for leftover in tmpdir.iterdir():  # a killed start may leave its extraction behind
            shutil.rmtree(leftover, ignore_errors=True)
    return {
        "start_ms": statistics.median(starts) * 1000,
        "start_min_ms": min(starts) * 1000,
        "rss_mib": statistics.median(rss),
        "tmp_mib": statistics.median(tmp_bytes) / 2**20,
    }


def gzip9_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, default=REPO / "examples" / "webhello")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--python", default=None, help="interpreter to build with (default: this)")
    args = ap.parse_args()
    info = read_project(args.project)
    package = info.entrypoint.split(":")[0].split(".")[0]
    work = Path(tempfile.mkdtemp(prefix="freeze-bench-"))
    rows: list[tuple[str, str]] = []
    try:
        # a snapshot: every build below sees the same sources even if the tree is being edited
        snapshot = work / "project"
        shutil.copytree(
            args.project, snapshot, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
        )
        args.project = snapshot
        cache = work / "cache"
        t = time.perf_counter()
        app = freeze(FreezeSpec(args.project, python=args.python, cache_dir=cache))
        cold = time.perf_counter() - t
        t = time.perf_counter()
        warm_app = freeze(FreezeSpec(args.project, python=args.python, cache_dir=cache))
        warm = time.perf_counter() - t
        assert warm_app.cached
        t = time.perf_counter()
        xz = freeze(FreezeSpec(args.project, python=args.python, cache_dir=cache, compression="xz"))
        xz_build = time.perf_counter() - t
        rows += [
            ("cold build (empty cache: venv, tools, deps, PyInstaller, staticx)", f"{cold:.1f} s"),
            ("warm build (unchanged inputs)", f"{warm * 1000:.0f} ms"),
            ("rebuild with compression=xz (build venv cached)", f"{xz_build:.1f} s"),
        ]
        results = {}
        for label, variant in (("none", app), ("xz", xz)):
            root = work / f"root-{label}"
            exe = rootfs.make_rootfs(root, variant.path)
            argv0 = str(exe)

            def spawn(port: int, root: Path = root, argv0: str = argv0) -> subprocess.Popen[bytes]:
                return rootfs.start(
                    root, [argv0, "-addr", f"127.0.0.1:{port}", "-httpsAddr", "127.0.0.1:0"]
                )

            results[label] = measure_start(spawn, root / "tmp", args.runs)
            rows += [
                (f"size, compression={label} (raw)", f"{variant.size / 1e6:.2f} MB"),
                (
                    f"size, compression={label} (gzip -9)",
                    f"{gzip9_size(variant.path) / 1e6:.2f} MB",
                ),
            ]
        host_tmp = work / "host-tmp"
        host_tmp.mkdir()

        def spawn_py(port: int) -> subprocess.Popen[bytes]:
            env = {"PATH": os.environ.get("PATH", ""), "TMPDIR": str(host_tmp)}
            return subprocess.Popen(
                [sys.executable, "-m", package, "-addr", f"127.0.0.1:{port}",
                 "-httpsAddr", "127.0.0.1:0"],
                cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

        results["python"] = measure_start(spawn_py, host_tmp, args.runs)
        for label, name in (
            ("none", "frozen, compression=none (default), empty rootfs"),
            ("xz", "frozen, compression=xz, empty rootfs"),
            ("python", f"`python -m {package}` on the host (baseline)"),
        ):
            r = results[label]
            rows += [
                (
                    f"start to first 200, {name}",
                    f"{r['start_ms']:.0f} ms (min {r['start_min_ms']:.0f})",
                ),
                (f"idle RSS (process tree), {name}", f"{r['rss_mib']:.1f} MiB"),
                (f"bytes written to /tmp per start, {name}", f"{r['tmp_mib']:.1f} MiB"),
            ]
        print(f"project: {info.name} {info.version}, Python {app.python_version}, "
              f"runs: {args.runs} (medians)\n")  # fmt: skip
        print("| measure | value |\n|---|---|")
        for k, v in rows:
            print(f"| {k} | {v} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
