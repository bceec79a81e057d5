"""The accept path of webhello's transport on a real loop and real sockets (127.0.0.1)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

from webhello.loop import Loop
from webhello.transport import Acceptor, SocketTransport


class _Proto:
    """Records the transport it is given and stops the loop."""

    def __init__(self, loop: Loop, made: list[Any]) -> None:
        self._loop = loop
        self._made = made

    def connection_made(self, transport: Any) -> None:
        self._made.append(transport)
        self._loop.stop()

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


def _accept(listener: socket.socket, connect: Any, count: int, probe: Any) -> list[Any]:
    """Accept ``count`` connections made by ``connect()`` through an Acceptor: ``probe`` of
    each accepted socket, while it is open."""
    loop = Loop()
    made: list[Any] = []
    acceptor = Acceptor(loop, listener, lambda: _Proto(loop, made))
    clients = []
    try:
        for _ in range(count):
            clients.append(connect())
            loop.run_forever()
        return [probe(t.get_extra_info("socket")) for t in made]
    finally:
        for t in made:
            t.abort()
        for c in clients:
            c.close()
        acceptor.close()


def test_every_accepted_tcp_connection_has_nodelay() -> None:
    """Small responses must not wait for Nagle, on the first connection and the ones after."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    addr = listener.getsockname()

    def nodelay(sock: socket.socket) -> int:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    assert _accept(listener, lambda: socket.create_connection(addr), 3, nodelay) == [1, 1, 1]


def test_a_listener_without_tcp_options_still_accepts(tmp_path: Path) -> None:
    """A Unix socket has no TCP_NODELAY: neither the listener nor a connection may fail on it."""
    path = str(tmp_path / "s")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    listener.setblocking(False)

    def connect() -> socket.socket:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(path)
        return c

    assert _accept(listener, connect, 2, lambda sock: sock.family) == [socket.AF_UNIX] * 2


# --- write_last: the answer and the FIN in one segment ----------------------------------------

_TCP_INFO_SEGS_IN = 140  # offset of tcpi_segs_in in Linux's struct tcp_info (since 4.2)


class _Lost(_Proto):
    """Records pause_writing and connection_lost (then stops the loop)."""

    def connection_made(self, transport: Any) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self._made.append(exc)
        self._loop.stop()

    def pause_writing(self) -> None:
        self._made.append("pause_writing")


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """(client, accepted server side) of one connection on 127.0.0.1, the server with
    TCP_NODELAY as webhello's listener gives it, and left blocking as the Acceptor leaves it:
    the transport must never wait in a send or receive (MSG_DONTWAIT)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def _last_write(server: socket.socket, data: bytes) -> list[Any]:
    """webhello's transport on ``server`` sends ``data`` with write_last; run until it is
    closed. Returns what connection_lost got."""
    loop = Loop()
    lost: list[Any] = []
    tr = SocketTransport(loop, server, _Lost(loop, lost), ("127.0.0.1", 1), watch=False)
    tr.write_last(data)
    loop.run_forever()
    return lost


def _read_all(client: socket.socket) -> bytes:
    chunks = []
    while chunk := client.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def test_the_last_answer_and_the_fin_leave_in_one_segment() -> None:
    """A `Connection: close` answer: the client gets it and EOF from one segment (the SYN-ACK
    and that one: 2 received), not answer then FIN (3)."""
    client, server = _tcp_pair()
    with client:
        assert _last_write(server, b"x" * 1200) == [None]
        assert _read_all(client) == b"x" * 1200
        info = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        (segs_in,) = struct.unpack_from("I", info, _TCP_INFO_SEGS_IN)
        assert segs_in == 2


def test_the_last_answer_arrives_even_when_close_resets() -> None:
    """Input the server never read makes close() send a reset; the answer (and the FIN) went
    out before it, so the client still reads it whole (held by MSG_MORE at close() it would
    be discarded with the reset)."""
    client, server = _tcp_pair()
    with client:
        client.sendall(b"GET / HTTP/1.1\r\n\r\n" * 4)
        time.sleep(0.05)  # the unread input is in the server's receive queue
        assert _last_write(server, b"y" * 5000) == [None]
        got = b""
        try:
            while chunk := client.recv(1 << 16):
                got += chunk
        except ConnectionResetError:
            pass
        assert got == b"y" * 5000


def test_a_last_answer_larger_than_the_send_buffer_is_sent_whole() -> None:
    """What send() did not take waits for the socket, above the high-water mark tells the
    protocol (which then applies its write deadline), and the connection closes after it."""
    client, server = _tcp_pair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    data = bytes(range(256)) * 4096  # 1 MiB, well above the 256 KiB high-water mark
    got: list[bytes] = []
    with client:
        reader = threading.Thread(target=lambda: got.append(_read_all(client)))
        reader.start()
        assert _last_write(server, data) == ["pause_writing", None]
        reader.join(30)
        assert got == [data]


_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"


class _Answers(_Proto):
    """Answers the first bytes it gets with write_last; records them, then "lost"."""

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._made.append(data)
        self._transport.write_last(_ANSWER)

    def connection_lost(self, exc: Exception | None) -> None:
        self._made.append("lost")
        self._loop.stop()


def _recording_acceptor() -> tuple[Loop, Acceptor, list[Any], list[int], tuple[str, int]]:
    """A loop and an Acceptor of _Answers on a fresh listener; the fds the loop adds to its
    poller from now on are recorded."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    loop = Loop()
    made: list[Any] = []
    acceptor = Acceptor(loop, listener, lambda: _Answers(loop, made))
    registered: list[int] = []
    update = loop._update

    def record(fd: int, old: int, new: int) -> None:
        if new and not old:
            registered.append(fd)
        update(fd, old, new)

    loop._update = record  # type: ignore[method-assign]
    return loop, acceptor, made, registered, listener.getsockname()


def test_a_request_already_there_is_answered_without_the_poller() -> None:
    """The request came with the handshake: accept, read, answer and close in one go; the
    connection's fd never enters the epoll set (no epoll_ctl add and delete)."""
    loop, acceptor, made, registered, addr = _recording_acceptor()
    with socket.create_connection(addr) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.05)  # the request is in the server's receive queue
        acceptor._on_accept()
        loop.call_later(5.0, loop.stop)
        loop.run_forever()
        assert _read_all(client) == _ANSWER
    acceptor.close()
    assert made == [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "lost"]
    assert registered == []


def test_a_request_that_comes_later_waits_in_the_poller_without_blocking_the_loop() -> None:
    """Nothing to read right after the accept: that first read on the (blocking) socket must
    return at once, the fd then waits in the epoll set, and the request is answered when it
    arrives. A read that blocked would hold the loop until the client sends (1.5 s)."""
    loop, acceptor, made, registered, addr = _recording_acceptor()
    with socket.create_connection(addr) as client:
        later = threading.Timer(1.5, client.sendall, (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",))
        later.start()
        try:
            t0 = time.monotonic()
            acceptor._on_accept()
            took = time.monotonic() - t0
            assert took < 1.0
            assert len(registered) == 1  # the connection, waiting for its request
            loop.call_later(10.0, loop.stop)
            loop.run_forever()
            assert _read_all(client) == _ANSWER
        finally:
            later.join()
    acceptor.close()
    assert made == [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "lost"]
