"""Per-connection protocol: feeds the parser, runs handlers, writes responses in order.

The callbacks are asyncio.Protocol's (connection_made, data_received, ...), driven by
transport.py on webhello's own loop (loop.py).

Also owns keep-alive, deadlines (checked by the server's once-a-second sweep, so the hot path
only stores a number), flow control (stop reading while the client does not read) and the
mapping of parser errors to net/http's error answers. `TlsProtocol` puts TLS (ssl.MemoryBIO)
in front of it so that plain HTTP on the TLS port can be detected and answered like Go does.
"""

from __future__ import annotations

import os

from .errors import HttpError, RequestTimeoutError
from .http import Parser
from .response import Deferred

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable
    from typing import Any, Protocol

    from .config import ServerConfig
    from .http import Request
    from .log import Logger
    from .loop import Loop
    from .response import FileStream, Result
    from .transport import Transport

    class Responder(Protocol):
        """What a connection needs from the application (handlers.App, handlers.RedirectApp).

        Structural, so this module never imports the application layer.
        """

        def respond(self, req: Request) -> Result: ...


_IDLE, _HEAD, _BODY, _BUSY, _WRITE = range(5)
_INF = float("inf")


class ConnState:
    """What the server shares with every connection (no module globals)."""

    __slots__ = ("cfg", "closing", "conns", "log", "loop")

    def __init__(self, cfg: ServerConfig, log: Logger, loop: Loop) -> None:
        self.cfg = cfg
        self.log = log
        self.loop = loop
        self.conns: set[HttpProtocol] = set()
        self.closing = False


def format_addr(peer: Any) -> str:
    """net.Addr.String(): `1.2.3.4:5`, `[::1]:5`; v4-mapped IPv6 shown as IPv4 like Go."""
    if not isinstance(peer, tuple) or len(peer) < 2:
        return str(peer or "")
    host, port = peer[0], peer[1]
    if ":" in host:
        if host.startswith("::ffff:") and "." in host:
            return f"{host[7:]}:{port}"
        return f"[{host}]:{port}"
    return f"{host}:{port}"


class HttpProtocol:
    __slots__ = (
        "_after_close",
        "_app",
        "_busy",
        "_eof",
        "_parser",
        "_paused",
        "_state",
        "_stream",
        "_transport",
        "deadline",
        "phase",
        "remote",
    )

    def __init__(self, app: Responder, state: ConnState) -> None:
        self._app = app
        self._state = state
        self._parser = Parser(state.cfg)
        self._transport: Transport | None = None
        self._busy = False
        self._eof = False
        self._paused = False
        self._stream: FileStream | None = None
        self._after_close = False
        self.remote = ""
        self.phase = _HEAD
        self.deadline = _INF

    # --- transport callbacks ------------------------------------------------------------------

    def connection_made(self, transport: Transport) -> None:
        self._transport = transport
        self.remote = format_addr(transport.get_extra_info("peername"))
        st = self._state
        st.conns.add(self)
        self.deadline = st.loop.time() + st.cfg.head_timeout
        if st.closing:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._state.conns.discard(self)
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        if self._busy or self._paused or self._stream is not None:
            if self._transport is not None:
                self._transport.pause_reading()
            return
        self._process()

    def eof_received(self) -> bool | None:
        """Client half-closed: finish a response still being produced, then close."""
        if self._busy or self._stream is not None or self._paused:
            self._eof = True
            self._after_close = True
            return True
        return None

    def pause_writing(self) -> None:
        self._paused = True
        self.phase = _WRITE
        self.deadline = self._state.loop.time() + self._state.cfg.write_timeout
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        t = self._transport
        if t is None:
            return
        if self._stream is not None:
            self._pump()
            return
        if not self._busy:
            if self._eof:
                self._process()
                t.close()
                return
            t.resume_reading()
            self._process()

    # --- request loop -------------------------------------------------------------------------

    def _process(self) -> None:
        parser = self._parser
        app = self._app
        t = self._transport
        if t is None:
            return
        while True:
            try:
                req = parser.next()
            except HttpError as err:
                self._fail(err)
                return
            if req is None:
                break
            req.remote = self.remote
            try:
                r = app.respond(req)
            except Exception as exc:  # a handler bug: net/http logs the panic and drops the conn
                self._state.log.log(f"http: panic serving {self.remote}: {exc!r}")
                t.abort()
                return
            if type(r) is tuple:
                data, close, stream = r
                if stream is None and (close or self._state.closing):
                    t.write_last(data)
                    return
                t.write(data)
                if stream is not None:
                    self._stream = stream
                    self._after_close = close
                    t.pause_reading()
                    self._pump()
                    return
                if self._paused:
                    return
            else:
                assert isinstance(r, Deferred)
                self._run_deferred(r)
                return
        self._arm(parser)

    def _arm(self, parser: Parser) -> None:
        """Choose the deadline for what the connection waits for now."""
        t = self._transport
        if t is None:
            return
        st = self._state
        if parser.want_continue:
            parser.want_continue = False
            t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if parser.idle():
            if st.closing:
                t.close()
                return
            self.phase = _IDLE
            self.deadline = st.loop.time() + st.cfg.keepalive_timeout
        elif parser.in_body():
            if self.phase != _BODY:
                self.phase = _BODY
                self.deadline = st.loop.time() + st.cfg.body_timeout
        elif self.phase != _HEAD:
            self.phase = _HEAD
            self.deadline = st.loop.time() + st.cfg.head_timeout
        t.resume_reading()

    def _fail(self, err: HttpError) -> None:
        t = self._transport
        if t is not None:
            t.write(err.response())
            linger = getattr(t, "linger_close", None)
            if linger is not None:
                linger()
            else:
                t.close()

    def _pump(self) -> None:
        """Send a large file a chunk at a time, as fast as the client reads it."""
        s = self._stream
        t = self._transport
        if s is None or t is None:
            return
        chunk = self._state.cfg.read_chunk
        segs = s.segments
        while segs and not self._paused:
            seg = segs[0]
            if isinstance(seg, bytes):
                t.write(seg)
                segs.pop(0)
                continue
            off, length = seg
            try:
                data = os.pread(s.fd, min(chunk, length), off)
            except OSError:
                data = b""
            if not data:  # file shrank under us: the promised length cannot be sent
                s.close()
                self._stream = None
                t.abort()
                return
            t.write(data)
            if len(data) == length:
                segs.pop(0)
            else:
                segs[0] = (off + len(data), length - len(data))
        if segs:
            return
        s.close()
        self._stream = None
        if self._after_close or self._state.closing:
            t.close()
            return
        if not self._paused:
            self._process()

    def _run_deferred(self, d: Deferred) -> None:
        self._busy = True
        self.phase = _BUSY
        self.deadline = _INF
        t = self._transport
        if t is not None:
            t.pause_reading()
        self._state.loop.run_in_thread(d.work, lambda: self._deferred_done(d))

    def _deferred_done(self, d: Deferred) -> None:
        self._busy = False
        t = self._transport
        if t is None:
            return
        if d.close or self._eof or self._state.closing:
            t.write_last(d.data)
            return
        t.write(d.data)
        if not self._paused:
            self._process()

    # --- called by the server -----------------------------------------------------------------

    def expire(self) -> None:
        """The deadline passed: 408 if a request was under way, else just close."""
        t = self._transport
        if t is None:
            return
        if self.phase in (_HEAD, _BODY) and self._parser.buffered() > 0:
            t.write(RequestTimeoutError().response())
            t.close()
        elif self.phase == _WRITE:
            t.abort()
        else:
            t.close()

    def is_idle(self) -> bool:
        return not self._busy and self._stream is None and self._parser.idle()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


# --- TLS --------------------------------------------------------------------------------------

_HTTP_PREFIXES = (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO")


class _TlsShim:
    """The transport the inner HttpProtocol sees: plaintext in, TLS records out."""

    __slots__ = ("_owner",)

    def __init__(self, owner: TlsProtocol) -> None:
        self._owner = owner

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._owner.send(bytes(data))

    def write_last(self, data: bytes) -> None:
        self._owner.send(data)
        self._owner.shutdown()

    def close(self) -> None:
        self._owner.shutdown()

    def abort(self) -> None:
        self._owner.raw_abort()

    def is_closing(self) -> bool:
        return self._owner.closed

    def pause_reading(self) -> None:
        r = self._owner.raw
        if r is not None and not r.is_closing():
            r.pause_reading()

    def resume_reading(self) -> None:
        r = self._owner.raw
        if r is not None and not r.is_closing():
            r.resume_reading()

    def get_write_buffer_size(self) -> int:
        r = self._owner.raw
        return r.get_write_buffer_size() if r is not None else 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._owner.sslobj
        r = self._owner.raw
        return r.get_extra_info(name, default) if r is not None else default


class TlsProtocol:
    """TLS over ssl.MemoryBIO in front of an HttpProtocol (HTTP/1.1 via ALPN)."""

    def __init__(self, ctx: ssl.SSLContext, inner: Callable[[], HttpProtocol], log: Logger) -> None:
        import ssl as _ssl

        self._ssl = _ssl
        self._ctx = ctx
        self._make_inner = inner
        self._log = log
        self.raw: Transport | None = None
        self.inner: HttpProtocol | None = None
        self._in = _ssl.MemoryBIO()
        self._out = _ssl.MemoryBIO()
        self.sslobj = ctx.wrap_bio(self._in, self._out, server_side=True)
        self._shim = _TlsShim(self)
        self._handshaked = False
        self._first = b""
        self._checked = False
        self._remote = ""
        self.closed = False

    def connection_made(self, transport: Transport) -> None:
        self.raw = transport
        self._remote = format_addr(transport.get_extra_info("peername"))
        # The inner protocol tracks deadlines; it joins the server's set right away so that a
        # client that never completes the handshake is still timed out.
        self.inner = self._make_inner()
        self.inner.connection_made(self._shim)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._handshaked and not self.closed:
            self._log.log(f"http: TLS handshake error from {self._remote}: EOF")
        self.closed = True
        if self.inner is not None:
            self.inner.connection_lost(exc)
        self.raw = None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def data_received(self, data: bytes) -> None:
        if not self._checked:
            self._first += data
            if len(self._first) < 5:
                return
            self._checked = True
            data, self._first = self._first, b""
            if data[:5] in _HTTP_PREFIXES:
                self._log.log(
                    f"http: TLS handshake error from {self._remote}: "
                    "client sent an HTTP request to an HTTPS server"
                )
                self.closed = True
                if self.raw is not None:
                    self.raw.write(
                        b"HTTP/1.0 400 Bad Request\r\n\r\n"
                        b"Client sent an HTTP request to an HTTPS server.\n"
                    )
                    self.raw.close()
                return
        ssl = self._ssl
        self._in.write(data)
        if not self._handshaked:
            try:
                self.sslobj.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except (ssl.SSLError, OSError) as err:
                self._flush()
                self.closed = True
                reason = getattr(err, "reason", None) or str(err)
                self._log.log(f"http: TLS handshake error from {self._remote}: {reason}")
                if self.raw is not None:
                    self.raw.close()
                return
            self._handshaked = True
            self._flush()
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self.sslobj.read(256 * 1024)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.shutdown()
                break
            except (ssl.SSLError, OSError):
                self.raw_abort()
                return
            if not chunk:
                break
            chunks.append(chunk)
        self._flush()
        if chunks and self.inner is not None and not self.closed:
            self.inner.data_received(b"".join(chunks))

    def eof_received(self) -> bool | None:
        return None

    def _flush(self) -> None:
        out = self._out.read()
        if out and self.raw is not None and not self.raw.is_closing():
            self.raw.write(out)

    def send(self, data: bytes) -> None:
        if self.closed or self.raw is None:
            return
        view = memoryview(data)
        while view:
            try:
                n = self.sslobj.write(view)
            except (self._ssl.SSLError, OSError):
                self.raw_abort()
                return
            view = view[n:]
        self._flush()

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._handshaked:
            try:  # noqa: SIM105 (contextlib costs ~5 ms of cold start)
                self.sslobj.unwrap()
            except (self._ssl.SSLError, OSError):
                pass
            self._flush()
        if self.raw is not None:
            self.raw.close()

    def raw_abort(self) -> None:
        self.closed = True
        if self.raw is not None:
            self.raw.abort()
