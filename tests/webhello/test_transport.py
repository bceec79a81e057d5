"""The accept path of webhello's transport on a real loop and real sockets (127.0.0.1)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from webhello.loop import Loop
from webhello.transport import Acceptor


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
