"""Real apps on both routes: ordinary projects on popular PyPI packages, built with the CLI.

Each project in tests/realapps/ is written the way its users write it (pinned dependencies, no
`include-modules` but the app's own modules loaded by name). Every (app, route) is built with
`scratchpack exe PROJECT --runtime ROUTE` and run as uid 1000 in an empty root filesystem
(testsupport.rootfs): the default route with a 1777 /tmp and /proc, the static route read-only
with neither. Servers must answer a GET and exit on SIGTERM; CLIs must print what they print
under plain Python.

EXPECTED below is the measured state: "pass", "refused" (the designed static-route refusal
of a compiled extension with no musllinux wheel), or a strict xfail naming the cause issue 10
must fix. When a fix lands, its xfail turns into an XPASS failure: flip that entry to PASS.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import re
import signal
import ssl
import subprocess
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests._realapps import REALAPPS, Build, Builder
from testsupport import rootfs, tls
from testsupport.net import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

ROUTES = ("pyinstaller", "static")
PASS, REFUSED = "pass", "refused"


@dataclass(frozen=True)
class Broken:
    """Does not work today, for a cause issue 10 asks to fix: a strict xfail."""

    cause: str


# ---- the measured table: (app, route) -> outcome -------------------------------------------

# Causes name the first failure today, found by running the case with --runxfail.
EXPECTED: dict[str, dict[str, str | Broken]] = {
    "flask_waitress": {"pyinstaller": PASS, "static": PASS},
    "django_site": {"pyinstaller": PASS, "static": PASS},
    "sqlalchemy_sqlite": {"pyinstaller": PASS, "static": PASS},
    "aiohttp_server": {"pyinstaller": PASS, "static": PASS},
    "gunicorn_wsgi": {"pyinstaller": PASS, "static": PASS},
    "click_rich_cli": {"pyinstaller": PASS, "static": PASS},
    "requests_https": {"pyinstaller": PASS, "static": PASS},
    "yaml_msgpack": {"pyinstaller": PASS, "static": PASS},
    "stdlib_matrix": {"pyinstaller": PASS, "static": PASS},  # items are judged one by one
    "fastapi_uvicorn": {"pyinstaller": PASS, "static": PASS},
    "orjson_cli": {"pyinstaller": PASS, "static": PASS},
    "native_math": {"pyinstaller": PASS, "static": PASS},
}

#: stdlib_matrix items that fail today, per route (every other item must print `name: ok`).
#: The runs get what docker and podman give every container (an /etc/hosts, a /dev/shm tmpfs;
#: see make_root) and, on the read-only static root, TMPDIR=/dev/shm as the README advises.
MATRIX_BROKEN: dict[str, dict[str, str]] = {"pyinstaller": {}, "static": {}}

#: The compiled module each refusal must name (none today: the static route loads the
#: musllinux builds of these apps' extensions; a glibc-only one would be refused).
REFUSAL_NAMES: dict[str, str] = {}


# ---- how each app is exercised --------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """Concurrent JSON POSTs to ``path``: ``threads`` client threads, ``per_thread`` requests
    each, all sent at once; each thread also sends one invalid body half-way, which must be
    answered 422 with the validation error ``error_type`` at ``error_loc``."""

    path: str
    threads: int
    per_thread: int
    error_type: str
    error_loc: tuple[str, ...]


@dataclass(frozen=True)
class Server:
    """GET ``path`` once the port answers; the body must contain ``body``; then ``load``, if
    any (see run_load); then SIGTERM."""

    path: str
    body: str
    exit_code: Mapping[str, int] = field(default_factory=dict)  # route -> code; default 0
    env: Mapping[str, str] = field(default_factory=dict)
    load: Load | None = None


@dataclass(frozen=True)
class Cli:
    """Run with ``args``; exit ``exit_code``; stdout must contain every line of ``lines`` and
    of ``route_lines[route]``."""

    args: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()
    exit_code: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    route_lines: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


RUNS: dict[str, Server | Cli] = {
    "flask_waitress": Server("/", "<p>hello from flask on waitress</p>"),
    "django_site": Server("/", "1 note(s): hello from django"),
    "sqlalchemy_sqlite": Cli(
        lines=("shelf A: 100 items", "shelf B: 7 items", "sqlalchemy 2.0.36 on sqlite: ok")
    ),
    "aiohttp_server": Server("/", "hello from aiohttp"),
    "gunicorn_wsgi": Server("/", "hello from gunicorn worker"),
    "click_rich_cli": Cli(
        args=("Ada", "--count", "3"),
        lines=("│ 1 │ Hello, Ada!", "│ 2 │ Bonjour, Ada !", "│ 3 │ Hallo, Ada!"),
    ),
    "requests_https": Cli(
        lines=(
            r"certifi 2024.08.30: \d+ CA certificates, where\(\) readable: True",
            "status 200",
            "hello over TLS to /realapps",
            "charset_normalizer.md compiled: True",
        ),
        env={"REQUESTS_CA_BUNDLE": "/ca.pem"},
    ),
    "yaml_msgpack": Cli(lines=("msgpack: 98 bytes", "  owner: café", "round trip: ok")),
    "stdlib_matrix": Cli(env={"LANG": "C.UTF-8"}),
    # uvicorn re-raises the SIGTERM it handled (plain Python: killed by SIGTERM); the staticx
    # loader reports a child killed by a signal as "Child exited for unknown reason", exit 2;
    # the static executable, PID 1 here, exits 143 (128 + SIGTERM) as the bootstrap makes it
    # /orders is a sync endpoint: anyio worker threads run pydantic-core concurrently
    "fastapi_uvicorn": Server(
        "/",
        '{"message":"hello from fastapi","length":18}',
        exit_code={"pyinstaller": 2, "static": 143},
        load=Load("/orders", 8, 25, "greater_than", ("body", "quantity")),
    ),
    "orjson_cli": Cli(
        lines=(
            '{"app":"orjcli","items":[1,2.5,null,"é"],"when":"2024-01-02"}',
            "orjson 3.10.12: round trip ok",
        )
    ),
    # OpenBLAS starts its threads (2, whatever the machine's cores) for the 200x200 product;
    # the static route loads numpy's bundled OpenBLAS and libgfortran, cryptography's OpenSSL
    # and kiwisolver's libstdc++ from the executable itself, the default route from its
    # extraction directory
    "native_math": Cli(
        lines=(
            "numpy 2.1.3: a @ b 200x200: ok",
            "numpy linalg.solve: ok",
            "cryptography Fernet round trip: ok",
            "cryptography X.509: CN=nativemath serial 4242",
            "kiwisolver: width 120, C++ exception caught as DuplicateConstraint",
        ),
        env={"OPENBLAS_NUM_THREADS": "2"},
        route_lines={
            "pyinstaller": ("3 extension modules loaded from: disk",),
            "static": ("3 extension modules loaded from: executable",),
        },
    ),
}


def reason(cause: str) -> str:
    return cause if cause.startswith("root:") else f"issue 10: {cause}"


def _cases() -> Iterator[object]:
    for app in sorted(EXPECTED):
        for route in ROUTES:
            outcome = EXPECTED[app][route]
            marks = []
            if isinstance(outcome, Broken):
                marks.append(pytest.mark.xfail(strict=True, reason=reason(outcome.cause)))
            yield pytest.param(app, route, id=f"{app}-{route}", marks=marks)


# ---- building: one build per (app, route) per session, started early (tests/_realapps.py) ----


#: Waits for one (app, route) build of the session: the ``build`` fixture.
BuildFn = Callable[[str, str], Build]


@pytest.fixture(scope="module")
def build(request: pytest.FixtureRequest, realapps_builds: Builder | None) -> BuildFn:
    """The session's builds. A static case first asks for the kit, whose fixture starts the
    static route's builds once it is built, so `-k pyinstaller` never builds the kit."""
    assert realapps_builds is not None, "tests/conftest.py plans the builds of this module"
    builds = realapps_builds

    def get(app: str, route: str) -> Build:
        if route == "static":
            request.getfixturevalue("static_cache")
        return builds(app, route)

    return get


def built_exe(build: BuildFn, app: str, route: str) -> Path:
    result = build(app, route)
    assert result.returncode == 0, f"build failed:\n{result.stderr}"
    return result.exe


# ---- running: an empty root as uid 1000 ------------------------------------------------------


#: What docker and podman give every container, --read-only ones too, and an empty root lacks:
#: an /etc/hosts naming localhost (written by the runtime) and a tmpfs on /dev/shm (where
#: multiprocessing's semaphores live). The runs get both, as the images' users do.
HOSTS = b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def make_root(route: str, root: Path, exe: Path, files: Mapping[str, bytes] | None = None) -> Path:
    files = {"etc/hosts": HOSTS, **(files or {})}
    if route == "static":
        return rootfs.make_scratch_rootfs(root, exe, files=files)
    return rootfs.make_rootfs(root, exe, files=files)


def http_get(port: int, path: str) -> tuple[int, str] | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except OSError:
        return None
    finally:
        conn.close()


def post_json(conn: http.client.HTTPConnection, path: str, body: object) -> tuple[int, object]:
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def run_load(port: int, load: Load) -> list[str]:
    """Send ``load``'s requests from its threads at once; what went wrong, one line each."""
    problems: list[str] = []
    start = threading.Barrier(load.threads)

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            start.wait()
            for i in range(load.per_thread):
                order = {"item": f"t{k}-{i}", "quantity": i + 1}
                got = post_json(conn, load.path, order)
                if got != (200, {**order, "worker": True}):
                    problems.append(f"{order}: {got}")
                if i == load.per_thread // 2:
                    status, body = post_json(conn, load.path, {"item": "x", "quantity": 0})
                    errors = body.get("detail", []) if isinstance(body, dict) else []
                    seen = [(e.get("type"), tuple(e.get("loc", ()))) for e in errors]
                    if (status, seen) != (422, [(load.error_type, load.error_loc)]):
                        problems.append(f"invalid order: {status} {body}")
        except (OSError, ValueError, threading.BrokenBarrierError) as err:
            problems.append(f"client {k}: {err!r}")
        finally:
            conn.close()

    clients = [threading.Thread(target=client, args=(k,)) for k in range(load.threads)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(300)
    return problems + [f"{t.name} still running" for t in clients if t.is_alive()]


def image_args(app: str) -> tuple[str, ...]:
    """[tool.scratchpack] args: the image's Cmd, which `scratchpack exe` does not bake in."""
    with (REALAPPS / app / "pyproject.toml").open("rb") as f:
        return tuple(tomllib.load(f)["tool"].get("scratchpack", {}).get("args", ()))


def run_server(route: str, exe: Path, root: Path, spec: Server, args: tuple[str, ...]) -> None:
    port = free_port()
    env = {"PORT": str(port), **spec.env}
    if route == "pyinstaller":
        env.setdefault("SITE_DB", "/tmp/site.sqlite3")  # django_site: a file database
    if route == "static":
        env.setdefault("TMPDIR", "/dev/shm")  # as for run_cli below: a --read-only container
    argv = [str(make_root(route, root, exe)), *args]
    got: tuple[int, str] | None = None
    with rootfs.running(root, argv, env=env, read_only=route == "static", shm=True) as proc:
        rootfs.wait_for(
            lambda: proc.poll() is not None or http_get(port, spec.path) is not None, 90, 0.2
        )
        got = http_get(port, spec.path)
        problems = run_load(port, spec.load) if spec.load and got is not None else []
        code = rootfs.stop(proc, signal.SIGTERM, timeout=20) if proc.poll() is None else None
        assert proc.stdout is not None
        out = proc.stdout.read().decode(errors="replace")
    assert got is not None, f"never answered on port {port}; exit {proc.returncode}:\n{out}"
    status, body = got
    assert (status, spec.body in body) == (200, True), f"GET {spec.path}: {status} {body!r}\n{out}"
    assert not problems, f"{len(problems)} wrong answers under load:\n" + "\n".join(problems[:20])
    want = spec.exit_code.get(route, 0)
    assert code == want, f"exit {code} after SIGTERM, want {want}:\n{out}"


def run_cli(
    route: str,
    exe: Path,
    root: Path,
    spec: Cli,
    *,
    args: tuple[str, ...] = (),
    files: Mapping[str, bytes] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    argv = [str(make_root(route, root, exe, files)), *spec.args, *args]
    env = dict(spec.env)
    if route == "static":
        # README: a --read-only container has no writable temp dir but /dev/shm (forkserver's
        # socket, tempfile): TMPDIR=/dev/shm, as the README says to set
        env.setdefault("TMPDIR", "/dev/shm")
    return rootfs.run(root, argv, env=env, timeout=180, read_only=route == "static", shm=True)


# ---- a local TLS server with a private CA (requests_https) -----------------------------------


@contextlib.contextmanager
def tls_server(tmp: Path) -> Iterator[tuple[int, bytes]]:
    """An HTTPS server on 127.0.0.1:<port>; yields (port, the CA certificate in PEM)."""
    ca, leaf, key = tls.ca_and_leaf("127.0.0.1")
    (tmp / "leaf.pem").write_bytes(leaf)
    (tmp / "leaf.key").write_bytes(key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "leaf.pem", tmp / "leaf.key")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), tls.HelloHandler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield int(server.server_address[1]), ca
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


# ---- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize(("app", "route"), list(_cases()))
def test_realapp(app: str, route: str, build: BuildFn, tmp_path: Path) -> None:
    outcome = EXPECTED[app][route]
    result = build(app, route)
    if outcome == REFUSED:
        assert result.returncode != 0, "the build of a compiled extension must be refused"
        assert result.stderr.startswith("error: "), result.stderr
        assert REFUSAL_NAMES[app] in result.stderr, result.stderr
        assert not result.exe.exists()
        return
    assert result.returncode == 0, f"build failed:\n{result.stderr}"
    spec, root = RUNS[app], tmp_path / "root"
    if isinstance(spec, Server):
        run_server(route, result.exe, root, spec, image_args(app))
        return
    if app == "requests_https":
        with tls_server(tmp_path) as (port, ca):
            proc = run_cli(
                route, result.exe, root, spec, args=(f"https://127.0.0.1:{port}/realapps",),
                files={"/ca.pem": ca},
            )  # fmt: skip
    else:
        proc = run_cli(route, result.exe, root, spec)
    out = proc.stdout.decode(errors="replace")
    if app == "stdlib_matrix":  # items are judged one by one below; here: one line each
        assert set(re.findall(r"^([\w.]+): (?:ok|FAIL)", out, re.M)) == set(MATRIX_ITEMS), out
        return
    assert proc.returncode == spec.exit_code, out
    for line in (*spec.lines, *spec.route_lines.get(route, ())):
        assert re.search(line if "\\d" in line else re.escape(line), out), f"{line!r}:\n{out}"


# ---- stdlib_matrix, item by item --------------------------------------------------------------

MATRIX_ITEMS = (
    "sqlite3", "ctypes", "lzma", "bz2", "decimal", "zoneinfo", "uuid", "hashlib", "ssl",
    "unicodedata", "locale", "xml.etree", "email", "multiprocessing.fork",
    "multiprocessing.spawn", "multiprocessing.forkserver", "ProcessPoolExecutor",
    "ProcessPoolExecutor.spawn", "subprocess.sys.executable", "importlib.resources",
    "pkgutil.get_data", "__file__.open", "curses", "asyncio", "getaddrinfo",
    "ast.symtable.tokenize.tracemalloc",
)  # fmt: skip


@pytest.fixture(scope="module")
def matrix_output(build: BuildFn, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The matrix runs once per route; route -> its output (or the build's error)."""

    class Outputs(dict[str, str]):
        def __missing__(self, route: str) -> str:
            result = build("stdlib_matrix", route)
            if result.returncode != 0:
                self[route] = text = f"build failed: {result.stderr}"
                return text
            root = tmp_path_factory.mktemp(f"matrix-{route}") / "root"
            proc = run_cli(route, result.exe, root, RUNS["stdlib_matrix"])  # type: ignore[arg-type]
            self[route] = text = proc.stdout.decode(errors="replace")
            return text

    return Outputs()


def _matrix_cases() -> Iterator[object]:
    for route in ROUTES:
        for item in MATRIX_ITEMS:
            cause = MATRIX_BROKEN[route].get(item)
            marks = [pytest.mark.xfail(strict=True, reason=reason(cause))] if cause else []
            yield pytest.param(route, item, id=f"{route}-{item}", marks=marks)


@pytest.mark.parametrize(("route", "item"), list(_matrix_cases()))
def test_stdlib_item(route: str, item: str, matrix_output: dict[str, str]) -> None:
    out = matrix_output[route]
    line = re.search(rf"^{re.escape(item)}: (.*)$", out, re.M)
    assert line is not None, f"no line for {item}:\n{out}"
    assert line.group(1) == "ok", line.group(0)
