#!/usr/bin/env python3
"""Soak: 1,000 concurrent keep-alive connections against webhello for 60 s, 0 errors expected.

Why: throughput benchmarks use 64 connections; this checks that many long-lived connections
are all served for a long time without an error, a stall or memory that keeps growing.

The client is asyncio in this process (loopback only, bounded by --duration, stops by itself):
each connection sends `GET <path>` (HTTP/1.1, keep-alive) and reads the full response, again and
again. The server is pinned to core 0 and the client to core 1. RLIMIT_NOFILE is raised to its
hard limit before the server starts, so both sides can hold the connections. Reported: requests,
errors by kind, the server's RSS before (idle), at its peak and after the clients have gone, its
open file descriptors before and after, and sockets it left in CLOSE_WAIT.

The server command is WEBHELLO_CMD (shell words) when set, else `<this python> -m webhello`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

# A sibling script: python puts the running script's directory (bench/) first on sys.path.
from webhello_bench import (
    PASSWD,
    running_server,
    server_command,
    tree_rss_kib,
)

CLIENT_CPU = 1
IO_TIMEOUT = 30.0  # one response may take this long under full load before it counts as an error


@dataclass
class SoakResult:
    connections: int
    duration_s: float
    path: str
    server_argv: list[str] = field(default_factory=list)
    connected: int = 0
    requests_ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    rss_before_kib: int = 0
    rss_connected_kib: int = 0
    rss_peak_kib: int = 0
    rss_after_kib: int = 0
    fds_before: int = 0
    fds_after: int = 0
    close_wait_after: int = 0
    server_alive: bool = True
    max_latency_s: float = 0.0

    @property
    def total_errors(self) -> int:
        return sum(self.errors.values())


def raise_nofile() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def close_wait(port: int) -> int:
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as fh:
            for line in fh.readlines()[1:]:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "08":
                    n += 1
    return n


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response (Content-Length or chunked); its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    i = lower.find(b"\r\ncontent-length:")
    if i >= 0:
        n = int(lower[i + 17 : lower.index(b"\r\n", i + 2)].strip())
        await reader.readexactly(n)
    elif b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def one_connection(
    port: int,
    path: str,
    stop_at: float,
    res: SoakResult,
    errors: Counter[str],
    connected: asyncio.Event,
) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n".encode()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), IO_TIMEOUT
        )
    except (OSError, TimeoutError) as err:
        errors[f"connect: {type(err).__name__}"] += 1
        return
    res.connected += 1
    if res.connected == res.connections:
        connected.set()
    try:
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            writer.write(request)
            status = await asyncio.wait_for(read_response(reader), IO_TIMEOUT)
            res.max_latency_s = max(res.max_latency_s, time.monotonic() - t0)
            if status == 200:
                res.requests_ok += 1
            else:
                errors[f"status {status}"] += 1
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as err:
        errors[f"io: {type(err).__name__}"] += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def soak(port: int, pid: int, args: argparse.Namespace, res: SoakResult) -> None:
    errors: Counter[str] = Counter()
    connected = asyncio.Event()
    start = time.monotonic()
    stop_at = start + args.duration
    tasks = []
    for i in range(args.connections):  # batches: do not overrun the listen backlog
        tasks.append(
            asyncio.create_task(one_connection(port, args.path, stop_at, res, errors, connected))
        )
        if i % 100 == 99:
            await asyncio.sleep(0.05)

    async def sample() -> None:
        while time.monotonic() < stop_at:
            res.rss_peak_kib = max(res.rss_peak_kib, tree_rss_kib(pid))
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(connected.wait(), IO_TIMEOUT)
    res.rss_connected_kib = tree_rss_kib(pid)
    await asyncio.gather(*tasks)
    await sampler
    res.duration_s = time.monotonic() - start
    res.errors = dict(errors)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds (60)")
    ap.add_argument("--path", default="/", help="request path (/)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    soft, _ = raise_nofile()
    if soft < args.connections + 100:
        sys.exit(f"RLIMIT_NOFILE {soft} is too low for {args.connections} connections")
    res = SoakResult(args.connections, args.duration, args.path)
    with tempfile.TemporaryDirectory(prefix="webhello-soak-") as tmp:
        work = Path(tmp)
        (work / "etc").mkdir()
        (work / "etc" / "passwd").write_bytes(PASSWD)
        log = work / "server.log"
        with running_server(server_command(), work, log) as srv:
            res.server_argv = srv.argv
            pid = srv.proc.pid
            time.sleep(0.5)
            res.rss_before_kib = tree_rss_kib(pid)
            res.fds_before = fd_count(pid)
            os.sched_setaffinity(0, {CLIENT_CPU})
            asyncio.run(soak(srv.port, pid, args, res))
            time.sleep(2.0)  # let the server notice the closes
            res.rss_after_kib = tree_rss_kib(pid)
            res.fds_after = fd_count(pid)
            res.close_wait_after = close_wait(srv.port)
            res.server_alive = srv.proc.poll() is None
        tracebacks = log.read_text(errors="replace").count("Traceback")
    if tracebacks:
        res.errors["server tracebacks"] = tracebacks
    if args.json:
        print(json.dumps(asdict(res) | {"total_errors": res.total_errors}, indent=2))
    else:
        rate = res.requests_ok / res.duration_s if res.duration_s else 0.0
        mb = 1024.0
        print(
            f"soak: {res.connected}/{res.connections} connections for {res.duration_s:.1f}s, "
            f"GET {res.path}\n"
            f"  requests ok {res.requests_ok:,} ({rate:,.0f}/s), errors {res.total_errors}"
            f" {res.errors or ''}, slowest response {res.max_latency_s * 1000:.0f} ms\n"
            f"  server RSS: idle {res.rss_before_kib / mb:.1f} MB, all connected "
            f"{res.rss_connected_kib / mb:.1f} MB, peak {res.rss_peak_kib / mb:.1f} MB, "
            f"after {res.rss_after_kib / mb:.1f} MB\n"
            f"  server fds: before {res.fds_before}, after {res.fds_after}; "
            f"CLOSE_WAIT after {res.close_wait_after}; alive {res.server_alive}\n"
            f"  server: {' '.join(res.server_argv)}"
        )
    ok = res.total_errors == 0 and res.connected == res.connections and res.server_alive
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
