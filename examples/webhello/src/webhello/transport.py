"""A lean TCP transport and accept loop on webhello's own event loop (loop.py).

The transport/protocol split is asyncio's (the method names are the same, so the protocols read
like asyncio.Protocol objects), implemented directly on loop.add_reader/add_writer: a connection
costs no Task, future or extra loop round. Sockets are `_socket.socket` objects: socket.py builds
IntEnums at import (~6 ms of cold start) and webhello needs none of its wrappers.
"""

from __future__ import annotations

import _socket
import errno
import mmap

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    from .loop import Loop

    class Transport(Protocol):
        """What a protocol may call on its transport (SocketTransport, protocol._TlsShim)."""

        def write(self, data: bytes | bytearray | memoryview) -> None: ...
        def write_last(self, data: bytes) -> None: ...
        def close(self) -> None: ...
        def abort(self) -> None: ...
        def is_closing(self) -> bool: ...
        def pause_reading(self) -> None: ...
        def resume_reading(self) -> None: ...
        def get_write_buffer_size(self) -> int: ...
        def get_extra_info(self, name: str, default: Any = None) -> Any: ...

    class StreamProtocol(Protocol):
        """What a transport calls on its protocol (asyncio.Protocol's callbacks)."""

        def connection_made(self, transport: Transport) -> None: ...
        def data_received(self, data: bytes) -> None: ...
        def eof_received(self) -> bool | None: ...
        def connection_lost(self, exc: Exception | None) -> None: ...
        def pause_writing(self) -> None: ...
        def resume_writing(self) -> None: ...


_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
_RECV = 256 * 1024
# One receive buffer for the whole (single-threaded) loop: recv(256 KiB) would allocate and then
# shrink a 256 KiB bytes object per read, and musl's malloc serves >= 32 KiB with mmap/munmap,
# which halved req/s in the static build. recv_into + a copy of the n bytes read avoids that.
# An anonymous mapping rather than a bytearray (which is zero-filled, so 256 KiB resident at
# start): a page becomes resident only once a read has reached it.
_RECV_BUF = mmap.mmap(-1, _RECV)
_ACCEPT_BATCH = 128
_MSG_MORE = getattr(_socket, "MSG_MORE", 0)
# Every send and receive passes MSG_DONTWAIT, so an accepted socket never needs O_NONBLOCK: one
# ioctl fewer per connection. Where the flag is missing, sockets are made non-blocking instead.
_DONTWAIT = getattr(_socket, "MSG_DONTWAIT", 0)


class SocketTransport:
    """Stream socket, never waited on (MSG_DONTWAIT, even if the socket itself blocks):
    recv -> data_received, write tries send() at once."""

    __slots__ = (
        "_buf",
        "_closing",
        "_fd",
        "_linger",
        "_loop",
        "_lost",
        "_peer",
        "_proto",
        "_proto_paused",
        "_reading",
        "_sock",
    )

    def __init__(
        self,
        loop: Loop,
        sock: _socket.socket,
        proto: StreamProtocol,
        peer: Any,
        *,
        watch: bool = True,
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._proto = proto
        self._peer = peer
        self._buf = bytearray()
        self._closing = False
        self._lost = False
        self._reading = True
        self._proto_paused = False
        self._linger = False
        if watch:
            loop.add_reader(self._fd, self._on_read)

    # --- reading ------------------------------------------------------------------------------

    def _on_read(self) -> None:
        try:
            n = self._sock.recv_into(_RECV_BUF, 0, _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        if n:
            self._proto.data_received(_RECV_BUF[:n])
            return
        self.pause_reading()
        keep = self._proto.eof_received()
        if not keep:
            self.close()

    def poll_read(self) -> None:
        """Read now if data is already there (a cheap EAGAIN otherwise)."""
        if self._reading:
            self._on_read()

    def watch(self) -> None:
        """Have the loop call back when data arrives, if the connection still reads (made
        with watch=False: a first read came before the fd went into the epoll set)."""
        if self._reading and not self._closing:
            self._loop.add_reader(self._fd, self._on_read)

    def pause_reading(self) -> None:
        if self._reading and not self._lost:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_read)

    # --- writing ------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            return
        if not self._buf:
            try:
                n = self._sock.send(data, _DONTWAIT)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._fatal(exc)
                return
            if n == len(data):
                return
            data = memoryview(data)[n:]
            self._loop.add_writer(self._fd, self._on_write)
        self._buf += data
        if not self._proto_paused and len(self._buf) > _HIGH_WATER:
            self._proto_paused = True
            self._proto.pause_writing()

    def write_last(self, data: bytes) -> None:
        """Send the connection's last bytes and close it (a `Connection: close` answer).

        The bytes go with MSG_MORE, so the kernel holds the last partial segment, and
        shutdown(SHUT_WR) then sends it with the FIN in one segment: one segment fewer per
        connection than send() and close(), and less work for the client. The FIN is sent by
        shutdown rather than by close() so that the answer has left before close() could
        turn into a reset (unread input); were the bytes still held at close(), a reset would
        discard them.
        """
        if self._closing:
            return
        if self._buf:  # earlier output still queued: it goes first, the normal way
            self.write(data)
            self.close()
            return
        try:
            n = self._sock.send(data, _MSG_MORE | _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._fatal(exc)
            return
        if n == len(data):
            try:  # noqa: SIM105 (contextlib costs ~5 ms of cold start)
                self._sock.shutdown(_socket.SHUT_WR)
            except OSError:  # ENOTCONN: the peer reset; close() still releases the socket
                pass
        else:  # the rest waits for the socket (and counts for pause_writing) as any write;
            # the plain send() of _on_write pushes what MSG_MORE held
            self.write(memoryview(data)[n:])
        self.close()

    def _on_write(self) -> None:
        try:
            n = self._sock.send(self._buf, _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        del self._buf[:n]
        if self._buf:
            if self._proto_paused and len(self._buf) <= _LOW_WATER:
                self._proto_paused = False
                self._proto.resume_writing()
            return
        self._loop.remove_writer(self._fd)
        if self._closing:
            if self._linger:
                self._start_linger()
            else:
                self._finish(None)
            return
        if self._proto_paused:
            self._proto_paused = False
            self._proto.resume_writing()

    def get_write_buffer_size(self) -> int:
        return len(self._buf)

    # --- closing ------------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Close after the buffered output is sent (protocol told via connection_lost)."""
        if self._closing:
            return
        self._closing = True
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)
        if not self._buf:
            self._finish(None)

    def linger_close(self, timeout: float = 2.0) -> None:
        """Close after an error answer without a reset: send FIN, drain input until EOF.

        A client still sending a request body would otherwise get a TCP reset, and a reset
        can destroy the error response before the client has read it (net/http does the same
        with closeWriteAndWait).
        """
        if self._closing:
            return
        self._closing = True
        self._linger = True
        self._loop.call_later(timeout, self._fatal, None)
        if not self._buf:
            self._start_linger()

    def _start_linger(self) -> None:
        try:
            self._sock.shutdown(_socket.SHUT_WR)
        except OSError:
            self._fatal(None)
            return
        self._reading = True
        self._loop.add_reader(self._fd, self._discard)

    def _discard(self) -> None:
        try:
            n = self._sock.recv_into(_RECV_BUF, 0, _DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0
        if not n:
            self._fatal(None)

    def abort(self) -> None:
        self._fatal(None)

    def _fatal(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._closing = True
        self._buf.clear()
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._finish(exc)

    def _finish(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        # The fd is out of the selector by now: close it at once (the FIN leaves now), and tell
        # the protocol on the next loop round, as asyncio does.
        self._sock.close()
        self._loop.call_soon(self._proto.connection_lost, exc)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer
        if name == "socket":
            return self._sock
        if name == "sockname":
            try:
                return self._sock.getsockname()
            except OSError:
                return default
        return default


def _nodelay(sock: _socket.socket) -> bool:
    """Whether TCP_NODELAY is on for ``sock``."""
    try:
        return bool(sock.getsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY))
    except OSError:
        return False


class Acceptor:
    """Accepts connections on a listening socket and attaches a new protocol to each."""

    def __init__(
        self,
        loop: Loop,
        sock: _socket.socket,
        factory: Callable[[], StreamProtocol],
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._factory = factory
        self._open = True
        # TCP_NODELAY on the listener: Linux copies it to every accepted socket, which saves a
        # setsockopt per connection (1 of 8 syscalls of a request without keep-alive). Whether
        # it did is checked on the first connection; where it did not, each one gets its own.
        self._nodelay_each: bool | None = None
        try:
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        except OSError:
            self._nodelay_each = True
        loop.add_reader(sock.fileno(), self._on_accept)

    def _on_accept(self) -> None:
        # _accept() -> (fd, address): the C method under socket.socket.accept.
        accept: Callable[[], tuple[int, Any]] = self._sock._accept  # type: ignore[attr-defined]
        family = self._sock.family
        loop = self._loop
        for _ in range(_ACCEPT_BATCH):
            try:
                fd, peer = accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: stop accepting for a moment instead of spinning.
                    loop.remove_reader(self._sock.fileno())
                    loop.call_later(0.1, self._resume)
                return
            conn = _socket.socket(family, _socket.SOCK_STREAM, 0, fd)
            if not _DONTWAIT:  # pragma: no cover - platforms without MSG_DONTWAIT
                conn.setblocking(False)
            if self._nodelay_each is None:
                self._nodelay_each = not _nodelay(conn)
            if self._nodelay_each:
                try:  # noqa: SIM105 (contextlib costs ~5 ms of cold start)
                    conn.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            proto = self._factory()
            tr = SocketTransport(loop, conn, proto, peer, watch=False)
            proto.connection_made(tr)
            # Most clients send the request right behind the handshake: try reading it now
            # instead of waiting one more event-loop round, and only then put the fd into the
            # epoll set if the connection is still open: a connection that is answered and
            # closed by that first read (no keep-alive) costs no epoll_ctl ADD and DEL.
            if not tr.is_closing():
                tr.poll_read()
            tr.watch()

    def _resume(self) -> None:
        if self._open:
            self._loop.add_reader(self._sock.fileno(), self._on_accept)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
