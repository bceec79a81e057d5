"""Run every check and print `name: ok` or `name: FAIL <error>` for each; exit 1 if any failed.

A child process that runs this app again instead of Python (a frozen app's sys.executable is the
app) sees MATRIX_PARENT in its environment and exits 3 at once, so it cannot recurse.
"""

import os
import sys
from collections.abc import Callable

CHECKS: list[tuple[str, Callable[[], None]]] = []
TIMEOUT = 20


def check(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    def register(fn: Callable[[], None]) -> Callable[[], None]:
        CHECKS.append((name, fn))
        return fn

    return register


def expect(got: object, want: object) -> None:
    if got != want:
        raise AssertionError(f"got {got!r}, want {want!r}")


@check("sqlite3")
def _sqlite3() -> None:
    import sqlite3

    db = sqlite3.connect(":memory:")
    db.execute("create table t (x integer)")
    db.executemany("insert into t values (?)", [(1,), (2,), (3,)])
    expect(db.execute("select sum(x) from t").fetchone()[0], 6)


@check("ctypes")
def _ctypes() -> None:
    import ctypes

    buf = ctypes.create_string_buffer(b"scratch", 16)
    ctypes.memmove(buf, b"SCR", 3)
    expect(buf.value, b"SCRatch")
    double = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: 2 * x)
    expect(double(21), 42)


@check("lzma")
def _lzma() -> None:
    import lzma

    data = b"lzma " * 100
    expect(lzma.decompress(lzma.compress(data)), data)


@check("bz2")
def _bz2() -> None:
    import bz2

    data = b"bz2 " * 100
    expect(bz2.decompress(bz2.compress(data)), data)


@check("decimal")
def _decimal() -> None:
    from decimal import Decimal, localcontext

    expect(Decimal("1.1") + Decimal("2.2"), Decimal("3.3"))
    with localcontext() as ctx:
        ctx.prec = 5
        expect(str(Decimal(1) / Decimal(7)), "0.14286")


@check("zoneinfo")
def _zoneinfo() -> None:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    expect(datetime(2024, 7, 1, 12, tzinfo=paris).utcoffset(), timedelta(hours=2))
    expect(datetime(2024, 1, 1, 12, tzinfo=paris).utcoffset(), timedelta(hours=1))


@check("uuid")
def _uuid() -> None:
    import uuid

    expect(uuid.uuid4().version, 4)
    expect(str(uuid.uuid5(uuid.NAMESPACE_DNS, "example.org"))[:8], "aad03681")


@check("hashlib")
def _hashlib() -> None:
    import hashlib

    expect(hashlib.sha3_256(b"abc").hexdigest()[:16], "3a985da74fe225b2")
    expect(hashlib.blake2b(b"abc", digest_size=16).hexdigest()[:16], "cf4ab791c62b8d2b")
    expect(hashlib.sha256(b"abc").hexdigest()[:16], "ba7816bf8f01cfea")
    expect(hashlib.md5(b"abc").hexdigest()[:16], "900150983cd24fb0")
    # the static route links no built-in stand-in for a digest OpenSSL has: every guaranteed
    # name must still construct (from OpenSSL, or _blake2 for blake2b/blake2s)
    expect(len([hashlib.new(n, b"abc") for n in sorted(hashlib.algorithms_guaranteed)]), 14)


@check("ssl")
def _ssl() -> None:
    import ssl

    ctx = ssl.create_default_context()
    expect(ctx.verify_mode, ssl.CERT_REQUIRED)
    expect(ssl.HAS_TLSv1_3, True)


@check("unicodedata")
def _unicodedata() -> None:
    import unicodedata

    expect(unicodedata.name("é"), "LATIN SMALL LETTER E WITH ACUTE")
    expect(len(unicodedata.normalize("NFD", "é")), 2)


@check("locale")
def _locale() -> None:
    import codecs
    import locale

    expect(os.environ.get("LANG"), "C.UTF-8")
    locale.setlocale(locale.LC_ALL, "")
    expect(codecs.lookup(locale.getpreferredencoding(False)).name, "utf-8")
    expect(locale.localeconv()["decimal_point"], ".")


@check("xml.etree")
def _xml_etree() -> None:
    import xml.etree.ElementTree as ET

    root = ET.fromstring("<feed><item id='1'>a</item><item id='2'>b</item></feed>")
    expect([i.get("id") for i in root.iter("item")], ["1", "2"])
    expect(ET.tostring(root.find("item"), encoding="unicode"), '<item id="1">a</item>')


@check("email")
def _email() -> None:
    import email
    from email import policy
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.org", "b@example.org", "héllo"
    msg.set_content("body text\n")
    back = email.message_from_string(msg.as_string(), policy=policy.default)
    expect(back["Subject"], "héllo")
    expect(back.get_content(), "body text\n")


def _process(method: str) -> None:
    import multiprocessing

    from matrix.work import child

    ctx = multiprocessing.get_context(method)
    parent, sub = ctx.Pipe()
    proc = ctx.Process(target=child, args=(sub,))
    proc.start()
    proc.join(TIMEOUT)
    if proc.is_alive():
        proc.kill()
        raise TimeoutError(f"{method} child still running after {TIMEOUT} s")
    expect(proc.exitcode, 0)
    expect(parent.recv(), 30)


@check("multiprocessing.fork")
def _mp_fork() -> None:
    _process("fork")


@check("multiprocessing.spawn")
def _mp_spawn() -> None:
    _process("spawn")


@check("multiprocessing.forkserver")
def _mp_forkserver() -> None:
    _process("forkserver")


def _pool(method: str | None) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from matrix.work import square

    ctx = multiprocessing.get_context(method) if method else None
    pool = ProcessPoolExecutor(max_workers=2, mp_context=ctx)
    try:
        expect(list(pool.map(square, range(4), timeout=TIMEOUT)), [0, 1, 4, 9])
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


@check("ProcessPoolExecutor")
def _pool_default() -> None:
    _pool(None)


@check("ProcessPoolExecutor.spawn")
def _pool_spawn() -> None:
    _pool("spawn")


@check("subprocess.sys.executable")
def _subprocess() -> None:
    import subprocess

    # A frozen app opts in to `sys.executable -c` for its children (README: "Child processes")
    out = subprocess.run(
        [sys.executable, "-c", "print(6 * 7)"],
        env={**os.environ, "SCRATCHPACK_PYTHON": "1"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    expect((out.returncode, out.stdout.strip()), (0, "42"))


@check("importlib.resources")
def _resources() -> None:
    from importlib.resources import files

    expect(
        files("matrix").joinpath("data/sample.txt").read_text(),
        "sample data for the stdlib matrix\n",
    )


@check("pkgutil.get_data")
def _get_data() -> None:
    import pkgutil

    expect(pkgutil.get_data("matrix", "data/sample.txt"), b"sample data for the stdlib matrix\n")


@check("__file__.open")
def _file_relative() -> None:
    path = os.path.join(os.path.dirname(__file__), "data", "sample.txt")
    with open(path, encoding="utf-8") as f:
        expect(f.read(), "sample data for the stdlib matrix\n")


@check("curses")
def _curses() -> None:
    import curses
    import curses.ascii

    expect(curses.ascii.isalpha("a"), True)
    expect(curses.ascii.ctrl("c"), "\x03")
    expect(callable(curses.wrapper), True)


@check("asyncio")
def _asyncio() -> None:
    import asyncio

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    async def run() -> bytes:
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping\n")
        line = await reader.readline()
        writer.close()
        server.close()
        await server.wait_closed()
        return line

    expect(asyncio.run(asyncio.wait_for(run(), TIMEOUT)), b"PING\n")


@check("getaddrinfo")
def _getaddrinfo() -> None:
    import socket

    addrs = {ai[4][0] for ai in socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)}
    if not addrs & {"127.0.0.1", "::1"}:
        raise AssertionError(f"localhost resolved to {sorted(addrs)}")


@check("ast.symtable.tokenize.tracemalloc")
def _compiler_modules() -> None:
    # the static route links their C modules only for an app that imports them (link.py)
    import ast
    import symtable
    import tokenize
    import tracemalloc

    space: dict[str, object] = {}
    exec(compile(ast.parse("x = 6 * 7"), "<matrix>", "exec"), space)
    expect(space["x"], 42)
    table = symtable.symtable("def f(a):\n    return a\n", "<matrix>", "exec")
    expect([t.get_name() for t in table.get_children()], ["f"])
    tokens = tokenize._generate_tokens_from_c_tokenizer("a + 1")  # the C tokenizer, _tokenize
    expect([t.string for t in tokens][:3], ["a", "+", "1"])
    tracemalloc.start()
    try:
        block = bytearray(100_000)
        expect(tracemalloc.get_traced_memory()[0] >= len(block), True)
    finally:
        tracemalloc.stop()


def main() -> int:
    if os.environ.get("MATRIX_PARENT"):
        print(f"matrix: this app was run again as a child process: argv={sys.argv[1:]}")
        return 3
    os.environ["MATRIX_PARENT"] = str(os.getpid())
    wanted = set(sys.argv[1:])
    failed = 0
    for name, fn in CHECKS:
        if wanted and name not in wanted:
            continue
        try:
            fn()
        except BaseException as err:  # report every item, whatever it raised
            failed += 1
            text = " ".join(f"{type(err).__name__}: {err}".split())
            print(f"{name}: FAIL {text}", flush=True)
        else:
            print(f"{name}: ok", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
