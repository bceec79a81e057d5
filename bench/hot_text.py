#!/usr/bin/env python3
"""Regenerate the static runtime's hot-text list (src/scratchpack/freeze/static/hot_text.txt).

    .venv/bin/python bench/hot_text.py --cache-dir CACHE [--idle 3] [--out FILE]

Builds `scratchpack exe examples/webhello --runtime static` with the kit in CACHE, links it a
second time without `-s` and without the hot-text script (same objects, the linker's own
layout, now with symbols), and runs that under gdb with a breakpoint on every function; each
breakpoint disables itself when first hit. The server runs as in a scratch container (an
empty root, PID 1 of its namespace, uid 1000: testsupport.rootfs's root, entered with
`unshare -R`) on a free loopback port, answers one GET /, idles for --idle s and is stopped
with SIGTERM; the functions hit before the SIGTERM (shutdown's are not) are written in the
order that layout had them: neighbours from one source file stay neighbours, which gzip
rewards (first-call order cost 9 KB more of webhello's gzip -9 for the same resident code).
Needs root (namespaces), gdb and nm. Takes about a minute: every first call stops the program
once.

Why webhello: it is the interpreter's own start (the core, importlib, zipimport, unmarshal,
the built-ins every app imports) plus a socket server's request path; an app's other functions
stay where the linker puts them anyway (link.HOT_TEXT).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import webhello_bench as wb

from scratchpack.freeze.static.link import FUNCTION_NAME, HOT_TEXT
from testsupport import rootfs
from testsupport.net import free_port

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "src" / "scratchpack" / "freeze" / "static" / HOT_TEXT

HEADER = (
    "The functions the static runtime runs to start an app and serve its first requests, in the "
    "linker's own order: the link puts them ahead of the rest of the code (link.HOT_TEXT), so "
    "the pages a running app needs are not scattered over the whole text. Made by "
    "bench/hot_text.py ({what}). A name that matches no section costs nothing; an app's "
    "functions not listed stay in .text."
)


def header(what: str) -> str:
    """The list's comment block."""
    text = HEADER.format(what=what)
    return textwrap.fill(text, 96, initial_indent="# ", subsequent_indent="# ") + "\n"


#: Run by gdb on `unshare ... /app`: it follows unshare's child into the exec of the app, then
#: sets a self-disabling breakpoint at each address of the function table; at the app's exit
#: it writes the hits with their times.
GDB_SCRIPT = """\
import time, gdb
table, hits_file = {table!r}, {hits!r}
names = {{}}
for line in open(table):
    address, name = line.split()
    names.setdefault(int(address, 16), []).append(name)
hits = []
class First(gdb.Breakpoint):
    def stop(self):
        hits.append((time.time(), int(self.location[1:], 16)))
        self.enabled = False
        return False
def write(_event):
    with open(hits_file, "w") as f:
        for when, address in hits:
            f.write(f"{{when:.6f}} {{' '.join(names[address])}}\\n")
gdb.events.exited.connect(write)
for setting in ("follow-fork-mode child", "detach-on-fork on", "follow-exec-mode same"):
    gdb.execute("set " + setting)
gdb.execute("handle SIGTERM SIGPIPE pass nostop noprint")
gdb.execute("catch exec")
gdb.execute("run")
while open(f"/proc/{{gdb.selected_inferior().pid}}/comm").read().strip() != "app":
    gdb.execute("continue")
for address in names:
    First(f"*{{address:#x}}", internal=True)
gdb.execute("continue")
"""


def build_unstripped(cache: Path, work: Path) -> Path:
    """webhello's executable linked without -s and the hot-text script (its zip appended)."""
    import scratchpack.freeze.static as static
    from scratchpack.cli import main as cli

    unstripped = work / "webhello-symbols"
    original = static.link_executable

    def link(kit: Any, builtins: Any, entry: str, out: Path, workdir: Path, **kw: Any) -> None:
        runner = kw.pop("runner")

        def run(argv: list[str], **rkw: Any) -> Any:
            proc = runner(argv, **rkw)
            if "-o" in argv and argv[argv.index("-o") + 1] == str(out):
                again = [a for a in argv if a != "-s" and not a.startswith("-Wl,-T,")]
                again[again.index("-o") + 1] = str(unstripped)
                runner(again, **rkw)
            return proc

        original(kit, builtins, entry, out, workdir, runner=run, **kw)

    static.link_executable = link  # type: ignore[assignment]
    try:
        exe = work / "webhello"
        argv = ["exe", str(REPO / "examples" / "webhello"), "--runtime", "static", "--no-cache"]
        if cli([*argv, "--cache-dir", str(cache), "-o", str(exe), "-q"]) != 0:
            sys.exit("building webhello failed")
    finally:
        static.link_executable = original  # type: ignore[assignment]
    stripped = exe.read_bytes()
    elf_end = _elf_end(stripped)
    with unstripped.open("ab") as f:
        f.write(stripped[elf_end:])  # the appended zip
    unstripped.chmod(0o755)
    return unstripped


def _elf_end(data: bytes) -> int:
    """Where an lld-linked ELF64 ends: its section header table is the last thing in it."""
    shoff = int.from_bytes(data[0x28:0x30], "little")
    shentsize = int.from_bytes(data[0x3A:0x3C], "little")
    shnum = int.from_bytes(data[0x3C:0x3E], "little")
    return shoff + shentsize * shnum


def trace(exe: Path, work: Path, idle: float) -> list[str]:
    """The functions exe runs to its first 200 and through idle seconds, in address order."""
    nm = subprocess.run(["nm", str(exe)], capture_output=True, text=True, check=True).stdout
    table = work / "functions.txt"
    functions = [p for p in map(str.split, nm.splitlines()) if p[1:2] in (["t"], ["T"])]
    table.write_text("".join(f"{a} {name}\n" for a, _kind, name in functions))
    hits = work / "hits.txt"
    script = work / "trace.py"
    script.write_text(GDB_SCRIPT.format(table=str(table), hits=str(hits)))
    root = work / "root"
    rootfs.make_scratch_rootfs(root, exe)
    port = free_port()
    # as in a scratch container: PID 1 of its namespace, uid 1000, nothing else in its root
    unshare = ["unshare", "-p", "-f", "-R", str(root), "-S", "1000", "-G", "1000"]
    argv = [*unshare, "/app", "-addr", f"127.0.0.1:{port}"]
    gdb = subprocess.Popen(
        ["gdb", "-q", "-batch", "-x", str(script), "--args", *argv],
        env={"PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while wb.http_get_status(port, timeout=2.0) != 200:
            if gdb.poll() is not None or time.monotonic() > deadline:
                sys.exit("the traced webhello never answered GET /")
            time.sleep(0.5)
        time.sleep(idle)
        cut = time.time()
        unshared = Path(f"/proc/{gdb.pid}/task/{gdb.pid}/children").read_text().split()
        for parent in unshared:
            for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
                os.kill(int(pid), signal.SIGTERM)  # the app: PID 1 in its namespace
        gdb.wait(timeout=120)
    finally:
        if gdb.poll() is None:
            gdb.send_signal(signal.SIGKILL)
            gdb.wait()
    address = {name: int(a, 16) for a, _kind, name in functions}
    names: dict[str, None] = {}
    for line in hits.read_text().splitlines():
        when, *aliases = line.split()
        if float(when) < cut:
            names.update(dict.fromkeys(a for a in aliases if FUNCTION_NAME.fullmatch(a)))
    return sorted(names, key=lambda name: (address[name], name))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", type=Path, required=True, help="scratchpack cache with the kit")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds traced after the first 200")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    from scratchpack.freeze.static.kit import kit_key

    with tempfile.TemporaryDirectory(prefix="hot-text-") as d:
        work = Path(d)
        names = trace(build_unstripped(args.cache_dir, work), work, args.idle)
    what = (
        f"webhello on kit {kit_key()} as PID 1 and uid 1000 in an empty root: start, one GET /, "
        f"{args.idle:g} s idle, traced under gdb"
    )
    args.out.write_text(header(what) + "".join(f"{n}\n" for n in names))
    print(f"{args.out}: {len(names)} functions", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
