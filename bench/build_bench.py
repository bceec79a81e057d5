"""The webhello image end to end: sizes, assembly, push, and `podman run` cold start.

Usage: .venv/bin/python bench/build_bench.py [--runs N] [--starts N]

Freezes examples/webhello once (warm cache afterwards), then measures in one run:
image size as `docker images` / `podman images` report it, compressed bytes pushed, image
assembly time (layer + image + tarball, freeze excluded), push time to a local registry
(cold: empty registry; warm: every blob present) and cold start of `podman run` to the first
HTTP 200 (median of N). A private dockerd, a private podman store and a registry are started
on loopback and stopped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from scratchpack import pipeline
from scratchpack.freeze import FreezeSpec, freeze
from scratchpack.oci.reference import Reference
from scratchpack.oci.registry import PushOptions, push
from scratchpack.oci.tarball import write_tarball
from testsupport.engines import docker_session, podman_session
from testsupport.net import free_port
from testsupport.registry_server import Registry

ROOT = Path(__file__).resolve().parents[1]

WEBHELLO = ROOT / "examples" / "webhello"


def first_200(url: str, start: float, timeout: float = 30) -> float:
    """Seconds from ``start`` (a perf_counter value) until ``url`` answers 200."""
    deadline = start + timeout
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.002)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="assembly/push repetitions")
    parser.add_argument("--starts", type=int, default=10, help="podman run cold starts")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="build-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        app = freeze(FreezeSpec(WEBHELLO, cache_dir=work / "cache"))
        cold_freeze = time.perf_counter() - t0
        rows: list[tuple[str, str]] = [
            ("freeze, cold (s)", f"{cold_freeze:.1f}"),
            ("executable (bytes)", f"{app.size:,}"),
        ]

        assembly: list[float] = []
        image = None
        for i in range(args.runs):
            t = time.perf_counter()
            image = pipeline.assemble(
                app,
                pipeline.ImageOptions(),
                project_dir=WEBHELLO,
                epoch=0,
                workdir=work / f"layers{i}",
            )
            write_tarball(image, work / "webhello.tar", tags=[Reference.parse("webhello:bench")])
            assembly.append(time.perf_counter() - t)
        assert image is not None
        rows.append(
            (
                "assembly: layer+image+tarball, median (ms)",
                f"{statistics.median(assembly) * 1000:.0f}",
            )
        )
        pushed = sum(layer.size for layer in image.layers)
        pushed += len(image.raw_config) + len(image.raw_manifest)
        rows.append(("bytes pushed: layers + config + manifest", f"{pushed:,}"))
        rows.append(("tarball (bytes)", f"{(work / 'webhello.tar').stat().st_size:,}"))

        cold: list[float] = []
        warm: list[float] = []
        for i in range(args.runs):
            registry = Registry(work / f"registry{i}").start()
            try:
                ref = Reference.parse(f"{registry.host}/bench/webhello:1")
                opts = PushOptions(insecure=True)
                t = time.perf_counter()
                push(image, ref, options=opts)
                cold.append(time.perf_counter() - t)
                t = time.perf_counter()
                push(image, ref, options=opts)
                warm.append(time.perf_counter() - t)
            finally:
                registry.stop()
        rows.append(
            ("push to local registry, cold, median (ms)", f"{statistics.median(cold) * 1000:.0f}")
        )
        rows.append(
            ("push, warm (all blobs present), median (ms)", f"{statistics.median(warm) * 1000:.0f}")
        )

        with podman_session() as podman:
            podman.load(work / "webhello.tar")
            rows.append(
                (
                    "podman images size",
                    podman.cli("images", "--format", "{{.Size}}", "webhello:bench").stdout.strip(),
                )
            )
            starts: list[float] = []
            for _ in range(args.starts):
                port = free_port()
                t = time.perf_counter()
                container = podman.run("webhello:bench", ["-addr", f"127.0.0.1:{port}"])
                starts.append(first_200(f"http://127.0.0.1:{port}/", t))
                container.stop(timeout=5)
            rows.append(
                ("podman run -> first 200, median (ms)", f"{statistics.median(starts) * 1000:.0f}")
            )
        with docker_session() as docker:
            docker.load(work / "webhello.tar")
            rows.append(
                (
                    "docker images size",
                    docker.cli("images", "--format", "{{.Size}}", "webhello:bench").stdout.strip(),
                )
            )

    print("| measure | value |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
