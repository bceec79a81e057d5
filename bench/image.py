"""Image assembly benchmark: layer build, image, sinks, validation, runtime-reported sizes.

Usage: .venv/bin/python bench/image.py [EXECUTABLE] [--runs N] [--runtimes]
Prints a Markdown table of medians. EXECUTABLE defaults to /usr/bin/docker-registry (a
~20 MB Go binary); a random (incompressible) file of the same size is measured alongside,
standing in for a staticx/PyInstaller executable whose payload is already compressed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from scratchpack.oci import image as im
from scratchpack.oci.config import ImageConfig
from scratchpack.oci.layer import layer_from_entries
from scratchpack.oci.layout import write_layout
from scratchpack.oci.reference import Reference
from scratchpack.oci.rootfs import scratch_rootfs
from scratchpack.oci.tarball import write_tarball
from scratchpack.oci.validate import validate_tarball

ROOT = Path(__file__).resolve().parents[1]


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def assemble(exe: Path, work: Path, level: int = 6) -> im.Image:
    entries = scratch_rootfs(exe, allow_dynamic=True)
    layer = layer_from_entries(entries, mtime=0, workdir=work, compresslevel=level)
    img = im.append_layers(im.empty(), layer)
    img = im.with_config(img, ImageConfig(user="1000:1000", entrypoint=("/app",)))
    img = im.with_created(img, 0)
    _ = img.digest
    return img


def bench(exe: Path, label: str, runs: int, runtimes: bool) -> list[str]:
    rows = []
    size_mb = exe.stat().st_size / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for level in (1, 6, 9):
            ms = median_ms(lambda lv=level: assemble(exe, work / f"l{lv}", lv), runs)
            img = assemble(exe, work / f"l{level}", level)
            rows.append(
                f"| {label} ({size_mb:.1f} MB) | assemble, gzip level {level} | {ms:.0f} ms "
                f"| layer {img.layers[0].size / 1e6:.2f} MB |"
            )
        img = assemble(exe, work / "l6")
        tar = work / "image.tar"
        tags = [Reference.parse("bench/app:1")]
        ms = median_ms(lambda: write_tarball(img, tar, tags=tags), runs)
        rows.append(
            f"| {label} | write_tarball | {ms:.0f} ms | tarball {tar.stat().st_size / 1e6:.2f} MB |"
        )
        ms = median_ms(lambda: validate_tarball(tar), runs)
        rows.append(f"| {label} | validate_tarball | {ms:.0f} ms | |")
        layout = work / "layout"
        write_layout(img, layout, ref_name="1")
        ms = median_ms(lambda: write_layout(img, layout, ref_name="1"), runs)
        rows.append(f"| {label} | write_layout (blobs present: verify + skip) | {ms:.0f} ms | |")

        def fresh_layout() -> None:
            with tempfile.TemporaryDirectory(dir=work) as d:
                write_layout(img, Path(d) / "l", ref_name="1")

        ms = median_ms(fresh_layout, runs)
        rows.append(f"| {label} | write_layout (new directory) | {ms:.0f} ms | |")
        if runtimes:
            from testsupport.engines import docker_session, podman_session

            with docker_session() as docker:
                docker.load(tar)
                size = docker.cli("images", "--format", "{{.Size}}", "bench/app:1").stdout
                rows.append(f"| {label} | `docker images` size | | {size.strip()} |")
            with podman_session() as podman:
                podman.load(tar)
                size = podman.cli("images", "--format", "{{.Size}}", "bench/app:1").stdout
                rows.append(f"| {label} | `podman images` size | | {size.strip()} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("executable", nargs="?", default="/usr/bin/docker-registry")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--runtimes", action="store_true")
    args = parser.parse_args()
    exe = Path(args.executable)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, runs={args.runs}")
    print("| input | step | median | size |")
    print("|---|---|---|---|")
    for row in bench(exe, exe.name, args.runs, args.runtimes):
        print(row)
    with tempfile.TemporaryDirectory() as tmp:
        rnd = Path(tmp) / "random-exe"
        head = exe.read_bytes()[:4096]  # keep a valid ELF header
        rnd.write_bytes(head + os.urandom(exe.stat().st_size - len(head)))
        for row in bench(rnd, "random", args.runs, args.runtimes):
            print(row)


if __name__ == "__main__":
    main()
