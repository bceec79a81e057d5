"""The HTTP seam for registry pushes: a small Transport protocol and its http.client implementation.

Why not urllib.request: a push needs keep-alive reuse across hundreds of requests, streamed
request bodies with an exact Content-Length, HEAD/PATCH, and full control over what is read
from an untrusted server. Everything a registry sends back is bounded here (64 KiB per body),
and every URL that may reach a log or an error goes through :func:`redact_url` first, because
upload locations and redirects carry state tokens and signed query parameters.
"""

from __future__ import annotations

import errno
import http.client
import io
import json
import logging
import math
import random
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from scratchpack.errors import RegistryError, printable

__all__ = [
    "MAX_BODY",
    "Body",
    "Deadline",
    "DeadlineExceededError",
    "Headers",
    "Response",
    "RetryPolicy",
    "StdlibTransport",
    "Transport",
    "connection_error",
    "redact_url",
    "retrying",
    "status_error",
    "with_query",
]

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
"""Cap on any response body we read (error documents, token responses): ggcr's maxErrorBodySize."""

BLOCK = 1 << 20
"""Socket write block size for streamed request bodies."""

# Query parameters that the registry protocol itself sends; anything else (an upload's _state,
# a signed redirect's X-Amz-Signature, a token) is dropped before a URL is logged or shown.
_QUERY_ALLOWLIST = frozenset({"scope", "service", "mount", "from", "digest", "n", "last"})

TEMPORARY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class Readable(Protocol):
    """A request body stream: http.client calls ``read(blocksize)`` until it returns b''."""

    def read(self, size: int = -1, /) -> bytes: ...


Body = bytes | Readable | None


def redact_url(url: str) -> str:
    """``url`` without credentials, fragment, or query parameters outside the protocol allowlist.

    The result is printable: a URL can come from a server (a ``Location``, a token realm).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
    except ValueError:
        return "<unparsable URL>"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k in _QUERY_ALLOWLIST])
    return printable(urlunsplit((parts.scheme, netloc, parts.path, query, "")), 1000)


class Headers(Mapping[str, str]):
    """Immutable, case-insensitive response headers; repeated fields stay available via get_all."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: tuple[tuple[str, str], ...] = tuple((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        key = key.lower()
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for k, _ in self._items:
            if k not in seen:
                seen.add(k)
                yield k

    def __len__(self) -> int:
        return len({k for k, _ in self._items})

    def get_all(self, key: str) -> list[str]:
        key = key.lower()
        return [v for k, v in self._items if k == key]

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"


@dataclass(frozen=True, slots=True)
class Response:
    """A fully read response; ``body`` holds at most MAX_BODY bytes (``truncated`` says if cut)."""

    status: int
    reason: str
    headers: Headers = field(repr=False)  # Location carries upload state
    body: bytes = field(default=b"", repr=False)  # a token response is a secret
    truncated: bool = False
    url: str = field(default="", repr=False)


class Transport(Protocol):
    """Sends one HTTP request. Stream bodies need a Content-Length header; bytes get one.

    ``timeout`` is the most the whole exchange may take, in seconds, sending and answer
    together (a push's time left); a transport also has its own per-request limits.
    """

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Body = None,
        *,
        timeout: float | None = None,
    ) -> Response: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Deadline:
    """A point in time on ``clock`` by which a whole operation (a push) must be done."""

    at: float
    seconds: float
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(clock() + seconds, seconds, clock)

    def left(self) -> float:
        return self.at - self.clock()


class DeadlineExceededError(RegistryError):
    """The operation's :class:`Deadline` passed; never retried."""

    retries_exhausted = True


class _Limits:
    """The time a connection's socket calls may still take: ``until`` (monotonic) for all of
    them together, ``idle`` for each one. The transport moves ``until`` per request phase."""

    __slots__ = ("allowed", "idle", "until")

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.until = math.inf
        self.allowed = math.inf  # seconds ``until`` gave the current phase, for messages

    def expire_in(self, seconds: float) -> None:
        self.allowed = seconds
        self.until = time.monotonic() + seconds


class _TimedSocket:
    """A connected socket whose blocking calls share one deadline.

    http.client reads a response head line by line and a body chunk by chunk, each bounded
    only by the socket timeout, so a server that sends a byte per interval (or an endless run
    of ``100 Continue`` heads) never trips it. Here each call gets only the time left.
    """

    def __init__(self, sock: socket.socket, limits: _Limits) -> None:
        self._sock = sock
        self._limits = limits

    def _arm(self) -> None:
        left = self._limits.until - time.monotonic()
        if left <= 0:
            raise TimeoutError("out of time")
        self._sock.settimeout(min(left, self._limits.idle))

    def sendall(self, data: bytes) -> None:
        self._arm()
        self._sock.sendall(data)

    def recv_into(self, buffer: memoryview, nbytes: int = 0) -> int:
        self._arm()
        return self._sock.recv_into(buffer, nbytes)

    def makefile(self, mode: str = "rb", *_args: object, **_kwargs: object) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError(f"unsupported makefile mode {mode!r}")
        return io.BufferedReader(_TimedReader(self))

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> object:  # setsockopt, fileno, ... as the socket
        return getattr(self._sock, name)


class _TimedReader(io.RawIOBase):
    def __init__(self, sock: _TimedSocket) -> None:
        self._timed = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return self._timed.recv_into(buffer)


class _HTTPConnection(http.client.HTTPConnection):
    limits: _Limits

    def connect(self) -> None:
        super().connect()
        self.sock = cast(socket.socket, _TimedSocket(self.sock, self.limits))


class _HTTPSConnection(http.client.HTTPSConnection):
    limits: _Limits
    tls: ssl.SSLContext

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP; the handshake below has a deadline
        tls = self.tls.wrap_socket(
            self.sock, server_hostname=self.host, do_handshake_on_connect=False
        )
        try:
            _handshake(tls, min(self.limits.until, time.monotonic() + self.limits.idle))
        except BaseException:
            tls.close()  # it owns the connection now (wrap_socket detached the plain socket)
            raise
        self.sock = cast(socket.socket, _TimedSocket(tls, self.limits))


def _handshake(sock: ssl.SSLSocket, until: float) -> None:
    """The TLS handshake, all of it by ``until``: a blocking one bounds each read only, so a
    server dripping its certificate would hold it for ever."""
    sock.setblocking(False)
    with selectors.DefaultSelector() as selector:
        while True:
            try:
                sock.do_handshake()
                return
            except ssl.SSLWantReadError:
                events = selectors.EVENT_READ
            except ssl.SSLWantWriteError:
                events = selectors.EVENT_WRITE
            left = until - time.monotonic()
            selector.register(sock, events)
            ready = selector.select(left) if left > 0 else []
            selector.unregister(sock)
            if not ready:
                raise TimeoutError("the TLS handshake did not complete in time")


_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class StdlibTransport:
    """http.client connections kept alive per (scheme, host, port); TLS verified by default.

    ``timeout`` bounds each request three ways: connecting, each socket call while the request
    is sent, and the whole answer from the end of sending (head, ``100 Continue`` lines and
    body together), so a server that drips its answer fails in ``timeout`` seconds.
    ``ca_file`` adds a CA to the system trust store (it does not replace it, so token realms on
    public hosts keep working). ``insecure_hosts`` are the ``(host, port)`` pairs whose TLS is
    not verified: an insecure registry, and only it, so that a token realm on another host is
    still verified. ``verify=False`` skips verification everywhere.
    """

    def __init__(
        self,
        *,
        ca_file: Path | None = None,
        verify: bool = True,
        insecure_hosts: Iterable[tuple[str, int]] = (),
        timeout: float = 60.0,
        max_body: int = MAX_BODY,
    ) -> None:
        self.timeout = timeout
        self.max_body = max_body
        self._ca_file = ca_file
        self._verify = verify
        self._insecure_hosts = frozenset((h.lower(), p) for h, p in insecure_hosts)
        self._ctx: ssl.SSLContext | None = None
        self._unverified_ctx: ssl.SSLContext | None = None
        if ca_file is not None:
            self._tls_context()  # a bad CA file is reported now, not at the first request
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def _tls_context(self, host: str = "", port: int = 0) -> ssl.SSLContext:
        """Built on first use: loading the system CA store costs ~20 ms per push."""
        if not self._verify or (host.lower(), port) in self._insecure_hosts:
            if self._unverified_ctx is None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                self._unverified_ctx = ctx
            return self._unverified_ctx
        if self._ctx is not None:
            return self._ctx
        ctx = ssl.create_default_context()
        if self._ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=str(self._ca_file))
            except (OSError, ssl.SSLError) as err:
                raise RegistryError(
                    f"cannot load the CA certificate file {self._ca_file}: {err}",
                    hint="pass a PEM file with the registry's CA certificate",
                ) from None
        self._ctx = ctx
        return ctx

    def _connect(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        conn: _HTTPConnection | _HTTPSConnection
        if scheme == "https":
            conn = _HTTPSConnection(
                host,
                port,
                timeout=self.timeout,
                context=self._tls_context(host, port),
                blocksize=BLOCK,
            )
        else:
            conn = _HTTPConnection(host, port, timeout=self.timeout, blocksize=BLOCK)
        conn.limits = _Limits(self.timeout)
        if isinstance(conn, _HTTPSConnection):
            conn.tls = self._tls_context(host, port)
        return conn

    def _checkout(self, key: tuple[str, str, int]) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop(), True
        return self._connect(*key), False

    def _checkin(self, key: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(conn)

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Body = None,
        *,
        timeout: float | None = None,
    ) -> Response:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {redact_url(url)}")
        streamed = body is not None and not isinstance(body, bytes)
        if streamed and not any(k.lower() == "content-length" for k in headers):
            raise ValueError("a streamed request body needs a Content-Length header")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, parts.hostname, port)
        target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
        rewindable = body is None or isinstance(body, bytes)
        cap = math.inf if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            conn, reused = self._checkout(key)
            limits: _Limits = getattr(conn, "limits", _Limits(self.timeout))
            try:
                # Connecting and sending: each step within ``timeout``, all within the cap.
                left = cap - time.monotonic()
                conn.timeout = max(0.001, min(self.timeout, left))
                limits.expire_in(left)
                conn.request(method, target, body=body, headers=dict(headers))
                # The answer, all of it, within ``timeout`` of the end of sending.
                limits.expire_in(min(self.timeout, cap - time.monotonic()))
                resp = conn.getresponse()
            except _STALE as err:
                conn.close()
                # A kept-alive connection the server has since closed (idle timeout, restart):
                # resend on a fresh one when the body can be sent again, as Go's net/http does.
                if reused and rewindable:
                    log.debug("stale connection to %s:%d (%s); reconnecting", key[1], key[2], err)
                    continue
                raise connection_error(err, method, url) from None
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                raise connection_error(_timing(err, limits), method, url) from None
            except BaseException:
                conn.close()  # e.g. the body stream raised: the connection is mid-request
                raise
            break
        try:
            data, truncated = self._read_bounded(resp, method)
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            raise connection_error(_timing(err, limits), method, url) from None
        if truncated or resp.will_close:
            conn.close()
        else:
            self._checkin(key, conn)
        log.debug("%s %s -> %d", method, redact_url(url), resp.status)
        return Response(
            status=resp.status,
            reason=resp.reason,
            headers=Headers(list(resp.getheaders())),
            body=data,
            truncated=truncated,
            url=url,
        )

    def _read_bounded(self, resp: http.client.HTTPResponse, method: str) -> tuple[bytes, bool]:
        if method == "HEAD":
            resp.read()
            return b"", False
        chunks: list[bytes] = []
        total = 0
        while total <= self.max_body:
            chunk = resp.read(self.max_body + 1 - total)
            if not chunk:
                return b"".join(chunks), False
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)[: self.max_body], True

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()

    def __enter__(self) -> StdlibTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _timing(err: BaseException, limits: _Limits) -> BaseException:
    """A timeout at the request's deadline says so; one socket call's timeout stays as is."""
    if isinstance(err, TimeoutError) and time.monotonic() >= limits.until - 0.01:
        return TimeoutError(f"the request did not complete within {limits.allowed:.3g} s")
    return err


class TransportError(RegistryError):
    """No HTTP answer at all (connect, TLS, reset); ``tls`` marks a failed TLS handshake,
    ``timed_out`` a server that did not answer (in full) in time.

    Every argument but the message has a default so that ``copy.copy`` (the CLI rewording a
    hint) can rebuild it from the message alone.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        temporary: bool = False,
        tls: bool = False,
        timed_out: bool = False,
        hint: str | None = None,
        remedy: str | None = None,
    ) -> None:
        super().__init__(
            message, method=method, url=url, temporary=temporary, hint=hint, remedy=remedy
        )
        self.tls = tls
        self.timed_out = timed_out


_TLS_PLAINTEXT_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL", "HTTP_REQUEST"}
)
INSECURE_HINT = (
    "scratchpack uses HTTPS for every registry, localhost included; a plain-HTTP registry "
    "you trust must be allowed as insecure"
)


def connection_error(err: BaseException, method: str, url: str) -> TransportError:
    """A TransportError that says which host failed, why, and what to try."""
    parts = urlsplit(url)
    where = printable(parts.netloc.rpartition("@")[2], 200)
    safe = redact_url(url)
    if isinstance(err, ssl.SSLCertVerificationError):
        return TransportError(
            f"the TLS certificate of {where} is not trusted: "
            f"{printable(str(err.verify_message or err))}",
            method=method,
            url=safe,
            tls=True,
            hint=(
                "pass the registry's CA certificate (a CA file), or allow the registry as "
                "insecure to skip verification for a registry you trust"
            ),
            remedy="registry-ca",
        )
    if isinstance(err, ssl.SSLError):
        reason = str(getattr(err, "reason", "") or "")
        if reason in _TLS_PLAINTEXT_REASONS or "wrong version number" in str(err):
            return TransportError(
                f"TLS handshake with {where} failed: it answers in plain HTTP, not HTTPS",
                method=method,
                url=safe,
                tls=True,
                hint=INSECURE_HINT,
                remedy="insecure-registry",
            )
        return TransportError(
            f"TLS handshake with {where} failed: {printable(str(err))}",
            method=method,
            url=safe,
            tls=True,
            hint="check the registry's TLS setup; an insecure registry skips verification",
            remedy="registry-tls",
        )
    if isinstance(err, socket.gaierror):
        return TransportError(
            f"cannot resolve registry host {parts.hostname!r}: "
            f"{printable(str(err.strerror or err))}",
            method=method,
            url=safe,
            temporary=err.errno == socket.EAI_AGAIN,
            hint="check the registry host name in the image reference",
        )
    if isinstance(err, TimeoutError):
        why = printable(str(err)) or "timed out"
        return TransportError(
            f"registry {where} timed out ({method} {safe}): {why}",
            method=method,
            url=safe,
            temporary=True,
            timed_out=True,
            hint="the registry did not answer in time: check that it is running and is a "
            "registry, and the network path to it, or allow the push more time",
            remedy="push-timeout",
        )
    if isinstance(err, ConnectionRefusedError):
        why = "connection refused"
    elif isinstance(err, OSError) and err.errno in {errno.ECONNRESET, errno.EPIPE}:
        why = "connection dropped by the registry"
    elif isinstance(err, http.client.RemoteDisconnected):
        why = "the registry closed the connection without answering"
    elif isinstance(err, http.client.IncompleteRead):
        why = "the response ended early"
    else:
        why = printable(str(err)) or type(err).__name__  # BadStatusLine quotes the server
    return TransportError(
        f"cannot reach registry {where} ({method} {safe}): {why}",
        method=method,
        url=safe,
        temporary=True,
        hint="check that the registry is running and the host:port in the image reference",
    )


def with_query(url: str, params: Sequence[tuple[str, str]]) -> str:
    """``url`` with ``params`` appended to whatever query it already has (e.g. ``_state``)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def parse_error_body(body: bytes) -> list[tuple[str, str]]:
    """``(code, message)`` pairs from a distribution-spec ``{"errors": [...]}`` document."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    items = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return []
    out: list[tuple[str, str]] = []
    for item in items[:20]:
        if isinstance(item, dict):
            code = item.get("code")
            message = item.get("message")
            out.append(
                (
                    printable(code, 100) if isinstance(code, str) else "",
                    printable(message) if isinstance(message, str) else "",
                )
            )
    return out


def retry_after(headers: Headers) -> float | None:
    """Seconds from a numeric Retry-After header (HTTP dates are ignored)."""
    value = headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def status_error(
    resp: Response,
    method: str,
    what: str,
    *,
    cls: type[RegistryError] = RegistryError,
    hint: str | None = None,
) -> RegistryError:
    """The registry's own words for a failed request, typed; 5xx/429 are ``temporary``."""
    errors = list(dict.fromkeys(parse_error_body(resp.body)))  # one line per distinct error
    codes = tuple(dict.fromkeys(code for code, _ in errors if code))
    detail = "; ".join(f"{code}: {msg}" if code and msg else code or msg for code, msg in errors)
    if not detail and resp.body and not resp.truncated:
        text = resp.body.decode("utf-8", "replace").strip()
        if text and text.isprintable():  # one line of plain text; HTML pages are noise
            detail = text[:300]
    safe = redact_url(resp.url)
    reason = printable(resp.reason, 100)
    message = f"{what}: {method} {safe} answered {resp.status} {reason}".rstrip()
    if detail:
        message += f": {detail}"
    temporary = resp.status in TEMPORARY_STATUS or bool(
        {"UNAVAILABLE", "TOOMANYREQUESTS"} & set(codes)
    )
    err = cls(
        message,
        status=resp.status,
        codes=codes,
        method=method,
        url=safe,
        temporary=temporary,
        hint=hint,
    )
    err.retry_after = retry_after(resp.headers)  # type: ignore[attr-defined]
    return err


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: ``backoff * 2**n`` (with jitter), capped, honouring Retry-After."""

    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    jitter: Callable[[], float] = field(default=random.random, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        base = self.backoff * float(1 << min(attempt, 30))
        base += base * 0.25 * float(self.jitter())
        if retry_after is not None:
            base = max(base, retry_after)
        return min(base, self.max_backoff)


T = TypeVar("T")


def retrying(
    policy: RetryPolicy,
    op: Callable[[], T],
    *,
    is_retryable: Callable[[RegistryError], bool] = lambda e: e.temporary,
    on_retry: Callable[[RegistryError, int, float], None] | None = None,
    time_left: Callable[[], float] | None = None,
) -> T:
    """Run ``op``; on a retryable RegistryError sleep and run it again, up to ``policy.retries``.

    ``time_left`` (seconds until a deadline) stops the retries when the next sleep would
    reach it: waiting only to fail at the deadline helps no one.

    An error that already went through its own retries (a token request inside a blob upload)
    is not retried again by an enclosing loop: nested retries would multiply the wait.
    """
    attempt = 0
    while True:
        try:
            return op()
        except RegistryError as err:
            exhausted = getattr(err, "retries_exhausted", False)
            if exhausted or not is_retryable(err) or attempt >= policy.retries:
                if attempt and not exhausted:
                    err.message = f"{err.message} (gave up after {attempt + 1} attempts)"
                    err.retries_exhausted = True  # type: ignore[attr-defined]
                raise
            delay = policy.delay(attempt, getattr(err, "retry_after", None))
            if time_left is not None and time_left() <= delay:
                err.message = f"{err.message} (no time left for attempt {attempt + 2})"
                err.retries_exhausted = True  # type: ignore[attr-defined]
                raise
            if on_retry is not None:
                on_retry(err, attempt + 1, delay)
            log.debug("retrying after %.2fs: %s", delay, err.message)
            policy.sleep(delay)
            attempt += 1
