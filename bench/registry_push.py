"""Registry push benchmark: a ~20 MB image to a local docker-registry, cold and warm.

Usage: .venv/bin/python bench/registry_push.py [--runs N] [--mb SIZE]
Prints a Markdown table of medians. "cold" pushes to a new repository each run (every blob is
uploaded: distribution links blobs per repository), "warm" re-pushes to a repository that has
every blob (HEAD hits only). skopeo copying the same image from an OCI layout is the reference.
The registries (plain HTTP and TLS) are started on loopback and stopped before exit.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from scratchpack.oci.reference import Reference
from scratchpack.oci.registry import PushOptions, push
from testsupport.registry_server import (
    Registry,
    StaticKeychain,
    TestImage,
    make_image,
    make_tls,
)


def write_oci_layout(image: TestImage, dest: Path) -> None:
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for layer in image.layers:
        (blobs / layer.digest.hex).write_bytes(layer.data)
    (blobs / image.config_digest.hex).write_bytes(image.raw_config)
    (blobs / image.digest.hex).write_bytes(image.raw_manifest)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": image.manifest_media_type,
                "digest": str(image.digest),
                "size": len(image.raw_manifest),
                "annotations": {"org.opencontainers.image.ref.name": "bench"},
            }
        ],
    }
    (dest / "index.json").write_text(json.dumps(index))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mb", type=float, default=20.0, help="image size in MB")
    args = parser.parse_args()

    size = int(args.mb * 1_000_000)
    image = make_image((size - 500_000, 500_000), seed=7)
    total = sum(layer.size for layer in image.layers) + len(image.raw_config)
    anon = StaticKeychain()
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="scratchpack-bench-") as tmp:
        work = Path(tmp)
        tls = make_tls(work / "tls")
        layout = work / "layout"
        write_oci_layout(image, layout)
        counter = iter(range(10_000))

        def fresh(with_tls: bool) -> Registry:
            """A registry with empty storage: nothing to skip, nothing to mount."""
            n = next(counter)
            return Registry(work / f"registry-{n}", tls=tls if with_tls else None).start()

        def timed(with_tls: bool, action: Callable[[Registry], object], warm: bool) -> float:
            times = []
            registry = fresh(with_tls)
            try:
                if warm:
                    action(registry)
                for _ in range(args.runs):
                    if not warm:
                        registry.stop()
                        registry = fresh(with_tls)
                    start = time.perf_counter()
                    action(registry)
                    times.append((time.perf_counter() - start) * 1000)
            finally:
                registry.stop()
            return statistics.median(times)

        cases: list[tuple[str, bool, PushOptions]] = [
            ("plain HTTP", False, PushOptions(insecure=True)),
            ("TLS (ca_file)", True, PushOptions(ca_file=tls.cert)),
        ]
        for label, with_tls, opts in cases:

            def scratchpack(registry: Registry, opts: PushOptions = opts) -> None:
                ref = Reference.parse(f"{registry.host}/bench/app:v1")
                push(image, ref, keychain=anon, options=opts)

            for warm in (False, True):
                ms = timed(with_tls, scratchpack, warm)
                rows.append((f"scratchpack push, {label}, {'warm' if warm else 'cold'}", ms))

        def skopeo(registry: Registry) -> None:
            subprocess.run(
                [
                    "skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                    f"oci:{layout}:bench", f"docker://{registry.host}/bench/app:v1",
                ],
                check=True,
            )  # fmt: skip

        for warm in (False, True):
            ms = timed(False, skopeo, warm)
            rows.append(
                (f"skopeo copy oci: -> docker://, plain HTTP, {'warm' if warm else 'cold'}", ms)
            )

    print(
        f"image: {len(image.layers)} layers + config, {total / 1e6:.1f} MB compressed, "
        f"median of {args.runs} runs\n"
    )
    print("| case | median ms | MB/s |")
    print("|---|---:|---:|")
    for label, ms in rows:
        rate = f"{total / 1e6 / (ms / 1000):.0f}" if label.endswith("cold") else "-"
        print(f"| {label} | {ms:.0f} | {rate} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
