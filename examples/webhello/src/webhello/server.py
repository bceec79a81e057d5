"""Listeners with Go's error texts, the deadline sweep, signals and graceful shutdown."""

from __future__ import annotations

import _socket  # socket.py and signal.py build IntEnums at import: ~11 ms of cold start
import os

from .goformat import errno_text
from .loop import Loop
from .protocol import ConnState, HttpProtocol, TlsProtocol
from .transport import Acceptor

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    import signal as _signal  # typed API; at run time the same constants from the C module
    import ssl
    from collections.abc import Callable

    from .config import ServerConfig
    from .log import Logger
    from .protocol import Responder
    from .transport import StreamProtocol
else:
    import _signal

# net's built-in service table (used when /etc/services is absent, as in a scratch image).
_SERVICES = {
    "ftp": 21,
    "ftps": 990,
    "gopher": 70,
    "http": 80,
    "https": 443,
    "imap2": 143,
    "imap3": 220,
    "imaps": 993,
    "pop3": 110,
    "pop3s": 995,
    "smtp": 25,
    "submissions": 465,
    "ssh": 22,
    "telnet": 23,
}


class ListenError(Exception):
    """A listen failure, worded like Go's *net.OpError (`listen tcp :80: bind: ...`)."""


def split_host_port(addr: str) -> tuple[str, str]:
    """net.SplitHostPort with Go's error messages."""
    missing = f"address {addr}: missing port in address"
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise ListenError(f"listen tcp: address {addr}: missing ']' in address")
        if end + 1 == len(addr):
            raise ListenError(f"listen tcp: {missing}")
        if addr[end + 1] != ":":
            raise ListenError(f"listen tcp: address {addr}: missing port in address")
        host, port = addr[1:end], addr[end + 2 :]
        if ":" in port:
            raise ListenError(f"listen tcp: address {addr}: too many colons in address")
        return host, port
    i = addr.rfind(":")
    if i < 0:
        raise ListenError(f"listen tcp: {missing}")
    host, port = addr[:i], addr[i + 1 :]
    if ":" in host:
        raise ListenError(f"listen tcp: address {addr}: too many colons in address")
    return host, port


def _idna_free(host: str) -> str | bytes:
    """The host as getaddrinfo will see it, without loading the idna codec when possible.

    getaddrinfo encodes a str host with the "idna" codec (importing encodings.idna,
    stringprep and unicodedata, ~1.4 ms); for an ASCII name whose labels pass that codec's
    checks the result is just the ASCII bytes, so pass those. Anything else goes through as
    str and gets exactly the codec's behaviour (a name it refuses, such as `a..b`, is a
    lookup failure, as in Go).
    """
    if not host.isascii():
        return host
    labels = host.split(".")
    if len(labels[-1]) >= 64 or not all(0 < len(label) < 64 for label in labels[:-1]):
        return host
    return host.encode("ascii")


def listen(addr: str) -> _socket.socket:
    """net.Listen("tcp", addr): wildcard hosts listen dual-stack, like Go."""
    host, port_s = split_host_port(addr)
    if port_s == "":
        port = 0
    elif port_s.isascii() and port_s.isdigit():
        port = int(port_s)
        if port > 65535:
            raise ListenError(f"listen tcp: address {port_s}: invalid port")
    elif port_s.lower() in _SERVICES:
        port = _SERVICES[port_s.lower()]
    else:
        raise ListenError(f"listen tcp: lookup tcp/{port_s}: unknown port")
    wildcard = host in ("", "0.0.0.0", "::")
    if wildcard:
        candidates: list[tuple[int, str]] = [
            (_socket.AF_INET6, "::"),
            (_socket.AF_INET, "0.0.0.0"),
        ]
        shown = f":{port}"
    else:
        try:
            infos = _socket.getaddrinfo(_idna_free(host), port, 0, _socket.SOCK_STREAM)
        except (OSError, UnicodeError):  # UnicodeError: the idna codec refused the name
            raise ListenError(f"listen tcp: lookup {host}: no such host") from None
        except LookupError:  # the frozen builds leave the idna codec out (README: deviations)
            if host.isascii():  # an invalid ASCII name, which the codec would have refused
                raise ListenError(f"listen tcp: lookup {host}: no such host") from None
            raise ListenError(
                f"listen tcp: lookup {host}: non-ASCII host names are not supported "
                "(use the punycode xn-- form)"
            ) from None
        fam_ip = [(int(i[0]), str(i[4][0])) for i in infos]
        fam_ip.sort(key=lambda f: f[0] != _socket.AF_INET)
        candidates = fam_ip[:1]
        ip = candidates[0][1]
        shown = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    last: OSError | None = None
    for fam, ip in candidates:
        try:
            s = _socket.socket(fam, _socket.SOCK_STREAM)
        except OSError as err:
            last = err
            continue
        try:
            s.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            if fam == _socket.AF_INET6 and wildcard:
                s.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 0)
            s.bind((ip, port))
            s.listen(4096)
            s.setblocking(False)
            return s
        except OSError as err:
            s.close()
            raise ListenError(f"listen tcp {shown}: bind: {errno_text(err)}") from None
    raise ListenError(f"listen tcp {shown}: socket: {errno_text(last or OSError(0, 'failed'))}")


def load_tls(cert: str, key: str) -> ssl.SSLContext:
    """tls.LoadX509KeyPair with Go-like error texts; ALPN offers http/1.1 only."""
    import ssl as _ssl

    for path, what in ((cert, "certificate"), (key, "key")):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            raise ListenError(f"open {path}: {errno_text(err)}") from None
        if b"-----BEGIN" not in data:
            raise ListenError(f"tls: failed to find any PEM data in {what} input")
    ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except _ssl.SSLError as err:
        reason = (err.reason or str(err)).lower().replace("_", " ")
        raise ListenError(f"tls: {reason}") from None
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Listener:
    """One bound socket, what it serves, and its TLS context (None: plain HTTP)."""

    __slots__ = ("app", "sock", "tls")

    def __init__(
        self, sock: _socket.socket, app: Responder, tls: ssl.SSLContext | None = None
    ) -> None:
        self.sock = sock
        self.app = app
        self.tls = tls


class Server:
    """Runs the listeners until a signal or a quota exit; exit status via `exit_now`."""

    def __init__(
        self,
        cfg: ServerConfig,
        log: Logger,
        exit_now: Callable[[int], None],
        *,
        loop: Loop | None = None,
    ) -> None:
        self.cfg = cfg
        self.log = log
        self.exit_now = exit_now
        self.loop = Loop() if loop is None else loop  # tests pass a fake loop with a fake clock
        self.state = ConnState(cfg, log, self.loop)
        self._acceptors: list[Acceptor] = []

    def run(self, listeners: list[Listener]) -> None:
        loop = self.loop
        self.log.schedule = loop.call_soon
        loop.report = self.log.raw
        for lst in listeners:
            self._acceptors.append(Acceptor(loop, lst.sock, self._factory(lst)))
        for sig in (_signal.SIGTERM, _signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.call_later(1.0, self._sweep)
        loop.run_forever()

    def _factory(self, lst: Listener) -> Callable[[], StreamProtocol]:
        state = self.state
        app = lst.app
        ctx = lst.tls
        if ctx is None:
            return lambda: HttpProtocol(app, state)
        log = self.log
        return lambda: TlsProtocol(ctx, lambda: HttpProtocol(app, state), log)

    def _sweep(self) -> None:
        now = self.loop.time()
        for c in [c for c in self.state.conns if c.deadline < now]:
            c.expire()
        self.loop.call_later(1.0, self._sweep)

    def _on_signal(self, sig: int) -> None:
        if self.state.closing:
            return
        self.state.closing = True
        name = "terminated" if sig == _signal.SIGTERM else "interrupt"
        busy = [c for c in self.state.conns if not c.is_idle()]
        self.log.log(
            f"shutdown: received signal {name}: closing listeners, "
            f"waiting up to {self.cfg.shutdown_grace:g}s for {len(busy)} in-flight request(s)"
        )
        for acc in self._acceptors:
            acc.close()
        for c in list(self.state.conns):
            if c.is_idle():
                c.close()
        deadline = self.loop.time() + self.cfg.shutdown_grace
        self._drain(deadline)

    def _drain(self, deadline: float) -> None:
        if not self.state.conns or self.loop.time() >= deadline:
            for c in list(self.state.conns):
                c.abort()
            self.exit_now(0)
            return
        self.loop.call_later(0.05, self._drain, deadline)


def ports(addr: str, default: str) -> str:
    """gowebhello's port extraction: strings.Split(addr, ":")[1], or the default."""
    parts = addr.split(":")
    return parts[1] if len(parts) > 1 else default


def exit_process(log: Logger) -> Callable[[int], None]:
    """os.Exit after the log buffer is written (nothing else needs to run)."""

    def _exit(code: int) -> None:
        log.flush()
        os._exit(code)

    return _exit
