"""The HTTP seam: redaction, bounded reads, keep-alive, stale connections, TLS errors, retries.

Real sockets on loopback: small http.server/socket servers stand in for a registry here; the
real registry is driven in test_registry.py.
"""

from __future__ import annotations

import io
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scratchpack.cli import render_error
from scratchpack.errors import RegistryError
from scratchpack.oci._http import (
    MAX_BODY,
    Headers,
    Response,
    RetryPolicy,
    StdlibTransport,
    TransportError,
    parse_error_body,
    redact_url,
    retrying,
    status_error,
)
from testsupport.net import free_port
from testsupport.registry_server import TLSFiles, make_tls

# --- redaction ---------------------------------------------------------------------------------


def test_redact_drops_state_signatures_and_userinfo_but_keeps_protocol_params():
    url = (
        "https://user:pw@registry.example:5000/v2/app/blobs/uploads/abc"
        "?_state=SECRETSTATE&digest=sha256%3Aaa&X-Amz-Signature=SIG&scope=repository%3Aapp%3Apull"
        "#frag"
    )
    out = redact_url(url)
    assert "SECRETSTATE" not in out and "SIG" not in out and "pw" not in out and "user" not in out
    assert "frag" not in out
    assert out.startswith("https://registry.example:5000/v2/app/blobs/uploads/abc?")
    assert "digest=sha256%3Aaa" in out and "scope=repository%3Aapp%3Apull" in out


def test_redact_keeps_ipv6_host_and_handles_garbage():
    assert redact_url("http://[::1]:5000/v2/?token=x") == "http://[::1]:5000/v2/"
    assert redact_url("http://[::1") == "<unparsable URL>"


def test_headers_are_case_insensitive_and_keep_repeats():
    h = Headers([("WWW-Authenticate", "Basic realm=a"), ("www-authenticate", "Bearer realm=b")])
    assert h["Www-Authenticate"] == "Basic realm=a"
    assert h.get_all("WWW-AUTHENTICATE") == ["Basic realm=a", "Bearer realm=b"]
    assert len(h) == 1 and list(h) == ["www-authenticate"]
    assert h.get("missing", "d") == "d"


# --- a small real server -----------------------------------------------------------------------


class _State:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[tuple[str, str, bytes]] = []


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            state.connections += 1

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length", "0"))
            return self.rfile.read(n) if n else b""

        def _send(self, status: int, body: bytes, **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k.replace("_", "-"), v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path, b""))
            path = self.path.partition("?")[0]
            if path == "/big":
                self._send(200, b"x" * (MAX_BODY * 4))
            elif path == "/error":
                self._send(
                    503,
                    b'{"errors":[{"code":"UNAVAILABLE","message":"down for maintenance"}]}',
                    Retry_After="7",
                )
            elif path == "/close-after":
                # Answer, but do not promise to close; then close anyway (an idle timeout).
                self._send(200, b"ok")
                self.close_connection = True
            else:
                self._send(200, b"hello")

        def do_HEAD(self) -> None:
            state.requests.append(("HEAD", self.path, b""))
            self._send(200, b"12345")

        def do_PUT(self) -> None:
            body = self._body()
            state.requests.append(("PUT", self.path, body))
            self._send(201, b"")

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, _State]]:
    state = _State()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", state
    finally:
        srv.shutdown()
        srv.server_close()


def test_keep_alive_reuses_one_connection(server):
    base, state = server
    with StdlibTransport() as t:
        for _ in range(5):
            assert t.request("GET", base + "/", {}).body == b"hello"
        resp = t.request("HEAD", base + "/", {})
    assert resp.status == 200 and resp.body == b""
    assert state.connections == 1


def test_body_reads_are_bounded(server):
    base, _ = server
    with StdlibTransport() as t:
        resp = t.request("GET", base + "/big", {})
        assert resp.truncated and len(resp.body) == MAX_BODY
        # The oversized response's connection was dropped, not reused half-read.
        assert t.request("GET", base + "/", {}).body == b"hello"


def test_stale_keep_alive_connection_is_replaced(server):
    base, state = server
    with StdlibTransport() as t:
        assert t.request("GET", base + "/close-after", {}).body == b"ok"
        assert t.request("GET", base + "/", {}).body == b"hello"
        assert t.request("PUT", base + "/p", {}, b"payload").status == 201
    assert state.connections >= 2
    assert ("PUT", "/p", b"payload") in state.requests


def test_streamed_body_needs_content_length(server):
    base, state = server
    with StdlibTransport() as t:
        with pytest.raises(ValueError, match="Content-Length"):
            t.request("PUT", base + "/s", {}, io.BytesIO(b"abc"))
        t.request("PUT", base + "/s", {"Content-Length": "3"}, io.BytesIO(b"abc"))
    assert ("PUT", "/s", b"abc") in state.requests


def test_error_body_becomes_a_typed_temporary_error(server):
    base, _ = server
    with StdlibTransport() as t:
        resp = t.request("GET", base + "/error?_state=SECRET", {})
    err = status_error(resp, "GET", "checking")
    assert err.status == 503 and err.temporary and err.codes == ("UNAVAILABLE",)
    assert "down for maintenance" in str(err) and "SECRET" not in str(err)
    assert "SECRET" not in err.url
    assert getattr(err, "retry_after", None) == 7.0


def test_parse_error_body_tolerates_garbage():
    assert parse_error_body(b"not json") == []
    assert parse_error_body(b'{"errors": "x"}') == []
    assert parse_error_body(b'{"errors":[{"code":"DENIED","message":"no"}, 3]}') == [
        ("DENIED", "no")
    ]


def test_status_error_without_json_uses_short_text():
    resp = Response(502, "Bad Gateway", Headers(), b"upstream timed out", url="http://h/v2/")
    err = status_error(resp, "GET", "ping")
    assert "upstream timed out" in str(err) and err.temporary and err.codes == ()


# --- connection failures -----------------------------------------------------------------------


def test_connection_refused_names_the_host_and_is_temporary():
    port = free_port()
    with StdlibTransport(timeout=5) as t, pytest.raises(TransportError) as info:
        t.request("GET", f"https://127.0.0.1:{port}/v2/", {})
    err = info.value
    assert err.temporary and not err.tls
    assert f"127.0.0.1:{port}" in str(err) and "connection refused" in str(err)
    assert "registry is running" in str(err)


def test_dropped_connection_is_temporary():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    port = sock.getsockname()[1]

    def drop() -> None:
        conn, _ = sock.accept()
        conn.recv(100)
        conn.close()

    threading.Thread(target=drop, daemon=True).start()
    try:
        with StdlibTransport(timeout=5) as t, pytest.raises(TransportError) as info:
            t.request("GET", f"http://127.0.0.1:{port}/v2/", {})
    finally:
        sock.close()
    assert info.value.temporary


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> TLSFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


def _tls_server(tls: TLSFiles) -> tuple[ThreadingHTTPServer, str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _handler(_State()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls.cert, tls.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    return srv, f"https://127.0.0.1:{srv.server_address[1]}/"


def test_tls_to_a_plain_http_server_says_use_insecure_registry(server):
    base, _ = server
    with StdlibTransport() as t, pytest.raises(TransportError) as info:
        t.request("GET", base.replace("http:", "https:") + "/v2/", {})
    assert info.value.tls and not info.value.temporary
    assert "plain HTTP" in str(info.value) and info.value.remedy == "insecure-registry"
    assert "--insecure-registry" in render_error(info.value)
    assert "--insecure-registry" not in str(info.value)


def test_untrusted_certificate_then_ca_file_then_unverified(tls_files):
    srv, url = _tls_server(tls_files)
    try:
        with StdlibTransport() as t, pytest.raises(TransportError) as info:
            t.request("GET", url, {})
        assert info.value.tls and "not trusted" in str(info.value)
        assert info.value.remedy == "registry-ca" and "--registry-ca" not in str(info.value)
        assert "--registry-ca" in render_error(info.value)
        with StdlibTransport(ca_file=tls_files.cert) as t:
            assert t.request("GET", url, {}).body == b"hello"
        with StdlibTransport(verify=False) as t:
            assert t.request("GET", url, {}).body == b"hello"
    finally:
        srv.shutdown()
        srv.server_close()


def test_bad_ca_file_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(RegistryError, match="CA certificate file"):
        StdlibTransport(ca_file=bad)


# --- retries -----------------------------------------------------------------------------------


def test_retrying_backs_off_exponentially_then_gives_up():
    sleeps: list[float] = []
    policy = RetryPolicy(retries=3, backoff=0.5, sleep=sleeps.append, jitter=lambda: 0.0)
    calls = []

    def op() -> int:
        calls.append(1)
        raise RegistryError("flaky", temporary=True)

    with pytest.raises(RegistryError, match=r"gave up after 4 attempts"):
        retrying(policy, op)
    assert sleeps == [0.5, 1.0, 2.0] and len(calls) == 4


def test_retrying_recovers_and_skips_permanent_errors():
    sleeps: list[float] = []
    policy = RetryPolicy(retries=5, backoff=0.1, sleep=sleeps.append, jitter=lambda: 0.0)
    outcomes = iter([RegistryError("503", temporary=True), 42])

    def op() -> int:
        item = next(outcomes)
        if isinstance(item, Exception):
            raise item
        return item

    assert retrying(policy, op) == 42 and sleeps == [0.1]

    def permanent() -> int:
        raise RegistryError("denied", status=403)

    with pytest.raises(RegistryError) as info:
        retrying(policy, permanent)
    assert "gave up" not in str(info.value) and sleeps == [0.1]


def test_delay_is_capped_and_honours_retry_after():
    policy = RetryPolicy(backoff=1.0, max_backoff=5.0, jitter=lambda: 0.0)
    assert policy.delay(0) == 1.0
    assert policy.delay(10) == 5.0
    assert policy.delay(0, retry_after=3.0) == 3.0
    assert policy.delay(0, retry_after=300.0) == 5.0
    jittery = RetryPolicy(backoff=1.0, jitter=lambda: 1.0)
    assert jittery.delay(1) == 2.5


def test_response_repr_hides_body_and_headers():
    resp = Response(
        200,
        "OK",
        Headers([("Location", "/v2/x?_state=SECRETSTATE")]),
        b'{"token":"SECRETTOKEN"}',
        url="http://h/v2/x?_state=SECRETSTATE",
    )
    assert "SECRET" not in repr(resp) and "200" in repr(resp)


def test_nested_retries_do_not_multiply():
    sleeps: list[float] = []
    policy = RetryPolicy(retries=2, backoff=0.1, sleep=sleeps.append, jitter=lambda: 0.0)
    calls = []

    def inner() -> int:
        calls.append(1)
        raise RegistryError("token service down", temporary=True)

    with pytest.raises(RegistryError) as info:
        retrying(policy, lambda: retrying(policy, inner))
    assert len(calls) == 3 and sleeps == [0.1, 0.2]
    assert str(info.value).count("gave up") == 1
