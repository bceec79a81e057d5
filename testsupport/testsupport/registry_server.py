"""Real registries for tests: Debian's docker-registry (CNCF distribution), a token server,
a fault-injecting proxy, and small images to push. Reusable by any test module.

Everything binds 127.0.0.1 on a free port, keeps its state in a tmp directory, and is
stopped by PID (each registry runs in its own session/process group).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

import pytest

from scratchpack.oci.auth import Credentials, normalize_registry
from scratchpack.oci.digest import Digest
from scratchpack.oci.mediatypes import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST
from testsupport.net import free_port

REGISTRY_BIN = "docker-registry"
SERVICE = "scratchpack-test-registry"
ISSUER = "scratchpack-test-issuer"


# --- credentials --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticKeychain:
    """Fixed credentials per registry host (a test Keychain; the product reads config files)."""

    entries: tuple[tuple[str, Credentials], ...] = ()

    @classmethod
    def of(cls, mapping: dict[str, Credentials]) -> StaticKeychain:
        return cls(tuple(mapping.items()))

    def resolve(self, registry: str) -> Credentials | None:
        want = normalize_registry(registry)
        for key, creds in self.entries:
            if normalize_registry(key) == want:
                return creds
        return None


# --- certificates and password files -----------------------------------------------------------


@dataclass(frozen=True)
class TLSFiles:
    cert: Path
    key: Path

    @property
    def cert_dir(self) -> Path:
        """A directory with ``ca.crt`` for skopeo/podman ``--cert-dir``."""
        return self.cert.parent / "certs.d"


def make_tls(directory: Path) -> TLSFiles:
    """A self-signed server certificate for 127.0.0.1 and localhost (openssl, 2 days)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
            "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    certs = directory / "certs.d"
    certs.mkdir(exist_ok=True)
    (certs / "ca.crt").write_bytes(cert.read_bytes())
    return TLSFiles(cert, key)


def make_htpasswd(path: Path, users: dict[str, str]) -> Path:
    lines = []
    for user, password in users.items():
        out = subprocess.run(
            ["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True
        ).stdout
        lines.append(out.strip())
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the registry ------------------------------------------------------------------------------


class PortTakenError(RuntimeError):
    pass


@dataclass
class Registry:
    """One docker-registry process; ``restart()`` keeps its port and storage (a crash test)."""

    workdir: Path
    tls: TLSFiles | None = None
    htpasswd: Path | None = None
    token_realm: str = ""
    token_bundle: Path | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def log_path(self) -> Path:
        return self.workdir / "registry.log"

    def config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.workdir / 'data'}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
        ]
        if self.tls:
            lines += ["  tls:", f"    certificate: {self.tls.cert}", f"    key: {self.tls.key}"]
        if self.htpasswd:
            lines += [
                "auth:",
                "  htpasswd:",
                "    realm: scratchpack-test",
                f"    path: {self.htpasswd}",
            ]
        elif self.token_realm:
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.token_realm}",
                f"    service: {SERVICE}",
                f"    issuer: {ISSUER}",
                f"    rootcertbundle: {self.token_bundle}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> Registry:
        """Start on ``self.port`` (or a free one, retrying if another process wins the race)."""
        fixed = bool(self.port)
        for _ in range(5):
            if not fixed:
                self.port = free_port()
            try:
                self._spawn()
                return self
            except PortTakenError:
                if fixed:
                    time.sleep(0.5)
        raise RuntimeError(f"docker-registry could not bind a port; see {self.log_path}")

    def _spawn(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "config.yml"
        cfg.write_text(self.config())
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        log = self.log_path.open("ab")
        self._close_pipe()
        self.proc = subprocess.Popen(
            ["sh", "-c", _WATCHDOG, "sh", REGISTRY_BIN, str(cfg)],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = self.log_path.read_text(errors="replace")
                if "address already in use" in text[-2000:]:
                    raise PortTakenError(self.port)
                raise RuntimeError(f"docker-registry exited early:\n{text[-3000:]}")
            if _http_answers(self.scheme, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer within 20s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, no graceful shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_pipe()

    def restart(self) -> None:
        self.kill()
        self.start()


# The registry runs under a shell in its own process group (stopped with killpg). A
# background reader holds the pipe from the test process: if pytest dies without running
# its finalizers (killed by a timeout), the pipe reaches EOF and the registry is stopped, so
# no registry outlives the test run.
_WATCHDOG = (
    'exec 3<&0; "$1" serve "$2" </dev/null 3<&- & child=$!; '
    'trap \'kill "$child" 2>/dev/null; wait "$child"; exit 0\' TERM; '
    '(read -r _ <&3; kill "$child") & exec 3<&-; wait "$child"'
)


def _http_answers(scheme: str, port: int) -> bool:
    request = b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            if scheme != "https":
                sock.sendall(request)
                return sock.recv(12).startswith(b"HTTP/1.")
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                tls.sendall(request)
                return tls.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False


# --- a token server for the Bearer flow ----------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """A distribution token service: JWTs signed RS256, the signing cert sent as ``x5c``.

    ``users`` may push anywhere except under ``readonly/`` (pull only); anonymous callers get
    an empty grant. ``identity_tokens`` map an OAuth refresh token to a user (the POST flow).
    """

    workdir: Path
    tls: TLSFiles
    users: dict[str, str] = field(default_factory=dict)
    identity_tokens: dict[str, str] = field(default_factory=dict)
    access_token_only: bool = False
    requests: list[dict[str, object]] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    @property
    def realm(self) -> str:
        return f"https://127.0.0.1:{self.port}/token"

    @property
    def bundle(self) -> Path:
        return self.workdir / "token-signing.crt"

    def start(self) -> TokenServer:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.workdir.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scratchpack test token signer")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._key = key
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

        server = ThreadingHTTPServer(("127.0.0.1", free_port()), _token_handler(self))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.tls.cert, self.tls.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def sign(self, subject: str, access: list[dict[str, object]], audience: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": audience,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    def grant(self, user: str, scopes: list[str]) -> list[dict[str, object]]:
        access: list[dict[str, object]] = []
        if not user:
            return access
        for scope in scopes:
            for item in scope.split(" "):
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                wanted = [a for a in actions.split(",") if a]
                if name.startswith("readonly/"):
                    wanted = [a for a in wanted if a == "pull"]
                access.append({"type": kind, "name": name, "actions": wanted})
        return access


def _token_handler(ts: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self, status: int, doc: dict[str, object]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _deny(self, message: str) -> None:
            self._answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": message}]})

        def _issue(self, user: str, scopes: list[str], service: str, oauth: bool) -> None:
            token = ts.sign(user, ts.grant(user, scopes), service)
            if oauth or ts.access_token_only:
                self._answer(200, {"access_token": token, "expires_in": 300})
            else:
                self._answer(200, {"token": token, "expires_in": 300})

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            ts.requests.append(
                {
                    "method": "GET",
                    "query": query,
                    "authorization": self.headers.get("Authorization"),
                }
            )
            user = ""
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                if ts.users.get(name) != password or name not in ts.users:
                    self._deny(f"token service: invalid username or password for {name!r}")
                    return
                user = name
            self._issue(user, query.get("scope", []), query.get("service", [""])[0], False)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            ts.requests.append(
                {"method": "POST", "form": form, "authorization": self.headers.get("Authorization")}
            )
            refresh = form.get("refresh_token", [""])[0]
            user = ts.identity_tokens.get(refresh, "")
            if form.get("grant_type", [""])[0] != "refresh_token" or not user:
                self._deny("token service: unknown refresh token")
                return
            scopes = form.get("scope", [""])[0].split(" ")
            self._issue(user, scopes, form.get("service", [""])[0], True)

    return Handler


# --- a fault-injecting proxy ---------------------------------------------------------------


@dataclass
class Fault:
    """Fire ``action`` on the first ``times`` requests whose method and path match."""

    method: str
    path: str  # regular expression searched in the request path
    # "503" | "drop" (close before answering) | "drop_after" (forward, then close) | "ok200"
    action: str
    times: int = 1
    fired: int = 0


@dataclass
class FaultProxy:
    """A loopback HTTP proxy in front of a plain-HTTP registry that injects faults."""

    upstream_port: int
    faults: list[Fault] = field(default_factory=list)
    port: int = 0
    seen: list[str] = field(default_factory=list)
    _sock: socket.socket | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._sock = sock
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()

    def _accept(self) -> None:
        assert self._sock is not None
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _pick(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.seen.append(f"{method} {path}")
            for fault in self.faults:
                if (
                    fault.fired < fault.times
                    and fault.method == method
                    and re.search(fault.path, path)
                ):
                    fault.fired += 1
                    return fault
        return None

    def _serve(self, client: socket.socket) -> None:
        try:
            with client, client.makefile("rb") as reader:
                self._relay(client, reader)
        except OSError:
            pass  # the client went away mid-request: nothing to relay

    def _relay(self, client: socket.socket, reader: BinaryIO) -> None:
        """One request per client connection (the answer says Connection: close)."""
        if reader.peek(1)[:1] == b"\x16":  # type: ignore[attr-defined]
            # A TLS ClientHello: answer like Go's plain-HTTP server does.
            client.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request\n")
            return
        head = _read_head(reader)
        if head is None:
            return
        method, path = head.split(b" ", 2)[:2]
        length = int(_header(head, b"content-length") or b"0")
        body = reader.read(length) if length else b""
        fault = self._pick(method.decode(), path.decode())
        if fault is not None and fault.action == "drop":
            return
        if fault is not None and fault.action == "503":
            doc = b'{"errors":[{"code":"UNAVAILABLE","message":"injected by the proxy"}]}'
            client.sendall(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(doc), doc)
            )
            return
        if fault is not None and fault.action == "ok200":
            client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            return
        response = self._forward(head, body)
        if fault is not None and fault.action == "drop_after":
            return
        client.sendall(response)

    def _forward(self, head: bytes, body: bytes) -> bytes:
        lines = [
            ln for ln in head.split(b"\r\n") if ln and not ln.lower().startswith(b"connection:")
        ]
        request = b"\r\n".join([*lines, b"Connection: close", b"", b""]) + body
        with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30) as up:
            up.sendall(request)
            chunks = []
            while data := up.recv(65536):
                chunks.append(data)
        return b"".join(chunks)


def _read_head(reader: BinaryIO) -> bytes | None:
    lines = []
    while True:
        line = reader.readline(65537)
        if not line:
            return None
        if line in {b"\r\n", b"\n"}:
            return b"".join(lines)
        lines.append(line)


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


# --- images to push ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobLayer:
    data: bytes
    digest: Digest
    size: int
    diff_id: Digest
    media_type: str = OCI_LAYER_GZIP

    @property
    def opener(self) -> Callable[[], BinaryIO]:
        return lambda: io.BytesIO(self.data)


@dataclass(frozen=True)
class TestImage:
    """A minimal valid OCI image (real tar+gzip layers) implementing registry.PushableImage."""

    __test__ = False

    layers: tuple[BlobLayer, ...]
    raw_config: bytes
    config_digest: Digest
    raw_manifest: bytes
    digest: Digest
    manifest_media_type: str = OCI_MANIFEST


def make_layer(size: int, seed: int, name: str = "payload.bin") -> BlobLayer:
    """A gzip'd tar with one file of ``size`` pseudo-random (incompressible) bytes."""
    data = _prng(seed, size)
    raw_tar = io.BytesIO()
    with tarfile.open(fileobj=raw_tar, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"data/{seed}-{name}")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw_tar.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=1) as out:
        out.write(tar_bytes)
    blob = gz.getvalue()
    return BlobLayer(blob, Digest.of_bytes(blob), len(blob), Digest.of_bytes(tar_bytes))


def _prng(seed: int, size: int) -> bytes:
    """Fast deterministic incompressible bytes (SHAKE-256 output)."""
    return hashlib.shake_256(f"scratchpack-test-{seed}".encode()).digest(size)


def make_image(layer_sizes: tuple[int, ...] = (4096, 20000), seed: int = 0) -> TestImage:
    layers = tuple(make_layer(size, seed * 1000 + i) for i, size in enumerate(layer_sizes))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/data"]},
        "rootfs": {"type": "layers", "diff_ids": [str(layer.diff_id) for layer in layers]},
    }
    raw_config = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": str(Digest.of_bytes(raw_config)),
            "size": len(raw_config),
        },
        "layers": [
            {"mediaType": layer.media_type, "digest": str(layer.digest), "size": layer.size}
            for layer in layers
        ],
    }
    raw_manifest = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return TestImage(
        layers,
        raw_config,
        Digest.of_bytes(raw_config),
        raw_manifest,
        Digest.of_bytes(raw_manifest),
    )


# --- pulling back with skopeo and podman ---------------------------------------------------


def skopeo_inspect_digest(
    ref: str, *, tls: TLSFiles | None = None, creds: str | None = None
) -> str:
    """The manifest digest skopeo reads from the registry (``docker://ref``)."""
    args = ["skopeo", "inspect", "--raw"]
    args += [f"--cert-dir={tls.cert_dir}"] if tls else ["--tls-verify=false"]
    if creds:
        args.append(f"--creds={creds}")
    raw = _run([*args, f"docker://{ref}"]).stdout
    return str(Digest.of_bytes(raw))


def skopeo_copy_to_oci(
    ref: str, dest: Path, *, tls: TLSFiles | None = None, creds: str | None = None
) -> str:
    """Copy ``ref`` into an OCI layout (skopeo verifies every blob) and return its digest."""
    args = ["skopeo", "copy", "--quiet"]
    args += [f"--src-cert-dir={tls.cert_dir}"] if tls else ["--src-tls-verify=false"]
    if creds:
        args.append(f"--src-creds={creds}")
    _run([*args, f"docker://{ref}", f"oci:{dest}:pulled"])
    index = json.loads((dest / "index.json").read_text())
    return str(index["manifests"][0]["digest"])


@dataclass
class Podman:
    """podman with a private storage root, so tests never touch the host's images."""

    root: Path

    def _base(self) -> list[str]:
        return [
            "podman",
            "--root", str(self.root / "root"),
            "--runroot", str(self.root / "run"),
            "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
        ]  # fmt: skip

    def pull_digest(self, ref: str, *, creds: str | None = None) -> str:
        args = [*self._base(), "pull", "--quiet", "--tls-verify=false"]
        if creds:
            args.append(f"--creds={creds}")
        _run([*args, ref])
        out = _run([*self._base(), "image", "inspect", "--format", "{{.Digest}}", ref]).stdout
        return out.decode().strip()


def _run(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(args, capture_output=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')}"
        )
    return proc


# --- session fixtures: import them into a test module to use them ---------------------------

USERS = {"alice": "wonder-land-42", "bob": "b0b-secret"}


@pytest.fixture(scope="session")
def registry_tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """One self-signed certificate for every TLS registry and the token service."""
    return make_tls(tmp_path_factory.mktemp("registry-tls"))


def _serve_registry(registry: Registry) -> Iterator[Registry]:
    registry.start()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Anonymous, plain HTTP."""
    yield from _serve_registry(Registry(tmp_path_factory.mktemp("registry-plain")))


@pytest.fixture(scope="session")
def tls_registry(
    tmp_path_factory: pytest.TempPathFactory, registry_tls: TLSFiles
) -> Iterator[Registry]:
    """Anonymous, HTTPS with the test CA."""
    yield from _serve_registry(Registry(tmp_path_factory.mktemp("registry-tls"), tls=registry_tls))


@pytest.fixture(scope="session")
def basic_registry(
    tmp_path_factory: pytest.TempPathFactory, registry_tls: TLSFiles
) -> Iterator[Registry]:
    """htpasswd (Basic) over HTTPS; users in ``USERS``."""
    work = tmp_path_factory.mktemp("registry-basic")
    htpasswd = make_htpasswd(work / "htpasswd", USERS)
    yield from _serve_registry(Registry(work, tls=registry_tls, htpasswd=htpasswd))


@pytest.fixture(scope="session")
def token_server(
    tmp_path_factory: pytest.TempPathFactory, registry_tls: TLSFiles
) -> Iterator[TokenServer]:
    server = TokenServer(tmp_path_factory.mktemp("token-server"), registry_tls, dict(USERS))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, registry_tls: TLSFiles, token_server: TokenServer
) -> Iterator[Registry]:
    """Bearer tokens from ``token_server`` over HTTPS."""
    registry = Registry(
        tmp_path_factory.mktemp("registry-token"),
        tls=registry_tls,
        token_realm=token_server.realm,
        token_bundle=token_server.bundle,
    )
    yield from _serve_registry(registry)


@pytest.fixture(scope="session")
def podman_store(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    return Podman(tmp_path_factory.mktemp("podman"))
