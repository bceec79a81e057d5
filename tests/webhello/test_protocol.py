"""webhello's per-connection protocol driven in-process: bytes in, bytes out, a clock we move.

The seams are the ones the server already uses: HttpProtocol takes its app (any `respond`) and a
ConnState holding the loop; the transport is whatever connection_made hands it; the server's
deadline sweep runs on the loop it is given. FakeTransport (a byte buffer) and FakeLoop (a clock
that only moves when a test says so) follow uvicorn's MockTransport/MockLoop
(tests/protocols/test_http.py), so keep-alive, pipelining and timeouts are checked without a
socket, a thread or a sleep. The behaviour suite checks the same rules against a real server.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from webhello.config import ServerConfig
from webhello.handlers import App, AppInfo
from webhello.http import Request
from webhello.protocol import ConnState, HttpProtocol
from webhello.response import Deferred, FileStream, Response, Result, encode
from webhello.server import Server

DATE = b"Sat, 05 Dec 2026 01:00:00 GMT"
PEER = ("127.0.0.1", 40000)
T0 = 1000.0


class FakeLoop:
    """The loop surface the protocol and the server use, on a clock that moves on request."""

    def __init__(self) -> None:
        self.now = T0
        self._timers: list[tuple[float, int, Callable[..., object], tuple[object, ...]]] = []
        self._seq = 0
        self.jobs: list[tuple[Callable[[], object], Callable[[], object]]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., object], *args: object) -> None:
        self._seq += 1
        self._timers.append((self.now + delay, self._seq, callback, args))

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        self.call_later(0, callback, *args)

    def run_in_thread(self, work: Callable[[], object], done: Callable[[], object]) -> None:
        self.jobs.append((work, done))

    def advance(self, seconds: float) -> None:
        """Move the clock, running every callback that falls due, in time order."""
        end = self.now + seconds
        while True:
            due = [t for t in self._timers if t[0] <= end]
            if not due:
                break
            timer = min(due)
            self._timers.remove(timer)
            self.now = max(self.now, timer[0])
            timer[2](*timer[3])
        self.now = end

    def finish_jobs(self) -> None:
        """What the worker pool does: run each job, then its completion on the loop."""
        jobs, self.jobs = self.jobs, []
        for work, done in jobs:
            work()
            done()


class FakeTransport:
    """A byte buffer with the transport methods HttpProtocol calls (transport.Transport).

    Like SocketTransport, writes after close are dropped and connection_lost comes on the next
    loop round. With `high_water`, it calls pause_writing once more than that is unread.
    """

    def __init__(self, loop: FakeLoop, proto: Any, high_water: int | None = None) -> None:
        self.loop = loop
        self.proto = proto
        self.buffer = bytearray()
        self.high_water = high_water
        self.write_paused = False
        self.reading = True
        self.closed = False
        self.aborted = False
        self.lingered = False
        self.dropped = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            self.dropped += len(data)
            return
        self.buffer += data
        full = self.high_water is not None and len(self.buffer) > self.high_water
        if full and not self.write_paused:
            self.write_paused = True
            self.proto.pause_writing()

    def take(self) -> bytes:
        """Everything written since the last take (what the client has read)."""
        data = bytes(self.buffer)
        self.buffer.clear()
        if self.write_paused:
            self.write_paused = False
            self.proto.resume_writing()
        return data

    def write_last(self, data: bytes) -> None:
        self.write(data)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.reading = False
            self.loop.call_soon(self.proto.connection_lost, None)

    def linger_close(self) -> None:
        self.lingered = True
        self.close()

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        if not self.closed:
            self.reading = True

    def get_write_buffer_size(self) -> int:
        return len(self.buffer)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return PEER if name == "peername" else default


class FakeLog:
    """Logger's surface: lines are kept, nothing is written."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, msg: str) -> None:
        self.lines.append(msg)

    def raw(self, text: str) -> None:
        self.lines.extend(text.splitlines())


class EchoApp:
    """A Responder that answers each request with its method, path and body (encode()'s rules)."""

    def __init__(self) -> None:
        self.seen: list[Request] = []
        self.special: dict[str, Callable[[Request], Result]] = {}

    def respond(self, req: Request) -> Result:
        self.seen.append(req)
        special = self.special.get(req.path)
        if special is not None:
            return special(req)
        data, close = encode(
            Response(200, [("Content-Type", "text/plain")], echo(req)), req, True, DATE
        )
        return data, close, None


def echo(req: Request) -> bytes:
    return f"{req.method} {req.path} {req.body!r}\n".encode()


def ok(body: bytes, *, close: bool = False, minor: int = 1, keep_alive_10: bool = False) -> bytes:
    """EchoApp's answer, as net/http would write it."""
    head = f"HTTP/1.{minor} 200 OK\r\nContent-Type: text/plain\r\nDate: {DATE.decode()}\r\n"
    head += f"Content-Length: {len(body)}\r\n"
    if close and minor:
        head += "Connection: close\r\n"
    if keep_alive_10:
        head += "Connection: keep-alive\r\n"
    return head.encode() + b"\r\n" + body


def error_answer(status: str) -> bytes:
    """net/http's hand-written answer to a request it refuses before any handler."""
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Connection: close\r\n\r\n{status}"
    ).encode()


def get(path: str, *headers: str, version: str = "HTTP/1.1") -> bytes:
    lines = [f"GET {path} {version}", "Host: t", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Conn:
    """One connection: protocol, fake transport and fake loop, optionally under a Server."""

    def __init__(
        self,
        app: Any = None,
        cfg: ServerConfig | None = None,
        *,
        server: bool = False,
        high_water: int | None = None,
    ) -> None:
        self.cfg = cfg or ServerConfig()
        self.loop = FakeLoop()
        self.log = FakeLog()
        self.app = app if app is not None else EchoApp()
        if server:
            self.server = Server(self.cfg, self.log, self._exit, loop=self.loop)
            self.state = self.server.state
            self.loop.call_later(1.0, self.server._sweep)  # as Server.run() arms it
        else:
            self.state = ConnState(self.cfg, self.log, self.loop)
        self.proto = HttpProtocol(self.app, self.state)
        self.transport = FakeTransport(self.loop, self.proto, high_water)
        self.proto.connection_made(self.transport)

    def _exit(self, code: int) -> None:
        raise AssertionError(f"exit {code}")

    def send(self, data: bytes) -> bytes:
        """Deliver `data` as one read; returns what the server wrote since the last call."""
        self.proto.data_received(data)
        return self.transport.take()


# --- requests, keep-alive, pipelining ------------------------------------------------------------


def test_one_request_keeps_the_connection_open():
    c = Conn()
    assert c.state.conns == {c.proto}
    assert c.send(get("/a")) == ok(b"GET /a b''\n")
    assert not c.transport.closed and c.transport.reading
    assert c.proto.is_idle()
    assert c.proto.deadline == T0 + c.cfg.keepalive_timeout


def test_keep_alive_serves_requests_one_after_another():
    c = Conn()
    for i in range(3):
        assert c.send(get(f"/{i}")) == ok(f"GET /{i} b''\n".encode())
    assert not c.transport.closed


def test_pipelined_requests_are_answered_in_order_in_one_round():
    c = Conn()
    data = get("/1") + b"POST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi" + get("/3")
    assert c.send(data) == ok(b"GET /1 b''\n") + ok(b"POST /2 b'hi'\n") + ok(b"GET /3 b''\n")
    assert not c.transport.closed


def test_a_request_in_pieces_is_answered_once_complete():
    c = Conn()
    data = get("/split")
    for i in range(len(data) - 1):
        assert c.send(data[i : i + 1]) == b""
    assert c.send(data[-1:]) == ok(b"GET /split b''\n")


def test_connection_close_closes_after_the_response_and_drops_the_rest():
    c = Conn()
    out = c.send(get("/1", "Connection: close") + get("/2"))
    assert out == ok(b"GET /1 b''\n", close=True)
    assert c.transport.closed and not c.transport.aborted
    assert [r.path for r in c.app.seen] == ["/1"]  # the pipelined /2 never reaches the app
    c.loop.advance(0)
    assert c.state.conns == set()  # connection_lost ran


def test_connection_close_in_the_middle_of_a_pipeline():
    c = Conn()
    out = c.send(get("/1") + get("/2", "Connection: close") + get("/3"))
    assert out == ok(b"GET /1 b''\n") + ok(b"GET /2 b''\n", close=True)
    assert c.transport.closed


def test_http10_closes_unless_it_asks_for_keep_alive():
    c = Conn()
    assert c.send(get("/", version="HTTP/1.0")) == ok(b"GET / b''\n", close=True, minor=0)
    assert c.transport.closed
    c = Conn()
    out = c.send(get("/", "Connection: keep-alive", version="HTTP/1.0"))
    assert out == ok(b"GET / b''\n", minor=0, keep_alive_10=True)
    assert not c.transport.closed


def test_expect_100_continue_is_answered_before_the_body():
    c = Conn()
    head = b"POST /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    assert c.send(head) == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert c.send(b"abc") == ok(b"POST /up b'abc'\n")


def test_shutdown_closes_after_the_response_in_progress():
    c = Conn()
    c.state.closing = True
    assert c.send(get("/last") + get("/never")) == ok(b"GET /last b''\n")
    assert c.transport.closed
    assert [r.path for r in c.app.seen] == ["/last"]


def test_half_close_while_idle_lets_the_transport_close():
    c = Conn()
    c.send(get("/"))
    assert c.proto.eof_received() is None


# --- refusals ------------------------------------------------------------------------------------


def test_malformed_head_gets_400_and_a_lingering_close():
    c = Conn()
    assert c.send(b"GET /\r\nHost: t\r\n\r\n") == error_answer("400 Bad Request")
    assert c.transport.lingered and c.transport.closed
    assert c.app.seen == []


def test_400_after_a_good_pipelined_request():
    c = Conn()
    out = c.send(get("/ok") + b"GET / HTTP/1.1\r\n\r\n" + get("/never"))
    assert out == ok(b"GET /ok b''\n") + error_answer(
        "400 Bad Request: missing required Host header"
    )
    assert [r.path for r in c.app.seen] == ["/ok"]


LIMIT_CASES = {
    # A request line is answered 431, never 414: net/http counts it into the header limit.
    "request-line-unfinished": b"GET /" + b"a" * 8192,
    "request-line": b"GET /" + b"a" * 8192 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
    "header-line-unfinished": b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"v" * 8192,
    "header-count": b"GET / HTTP/1.1\r\nHost: t\r\n" + b"H: v\r\n" * 100 + b"\r\n",
    "whole-head": b"GET / HTTP/1.1\r\nHost: t\r\n" + (b"X: " + b"v" * 4000 + b"\r\n") * 5,
}


@pytest.mark.parametrize("data", LIMIT_CASES.values(), ids=LIMIT_CASES.keys())
def test_head_limits_answer_431(data: bytes):
    c = Conn()
    assert c.send(data) == error_answer("431 Request Header Fields Too Large")
    assert c.transport.closed and c.app.seen == []


def test_body_over_the_cap_gets_413_before_it_is_read():
    c = Conn(cfg=ServerConfig(max_body=10))
    out = c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n")
    assert out == error_answer("413 Request Entity Too Large")
    assert c.transport.lingered


def test_a_handler_exception_drops_the_connection_and_is_logged():
    c = Conn()

    def boom(req: Request) -> Result:
        raise RuntimeError("boom")

    c.app.special["/boom"] = boom
    assert c.send(get("/boom") + get("/after")) == b""
    assert c.transport.aborted
    assert c.log.lines == ["http: panic serving 127.0.0.1:40000: RuntimeError('boom')"]


# --- deadlines (the server's once-a-second sweep on the fake clock) ------------------------------


def test_head_deadline_answers_408_and_counts_from_connection_made():
    c = Conn(server=True)
    c.loop.advance(4)
    assert c.send(b"GET / HTTP/1.1\r\nHost: t\r\n") == b""
    c.loop.advance(c.cfg.head_timeout - 5)  # 9 s after accept: still waiting
    assert c.transport.take() == b"" and not c.transport.closed
    c.loop.advance(2)
    assert c.transport.take() == error_answer("408 Request Timeout")
    assert c.transport.closed


def test_a_silent_connection_is_closed_without_an_answer():
    c = Conn(server=True)
    c.loop.advance(c.cfg.head_timeout + 1)
    assert c.transport.closed and c.transport.take() == b""


def test_keep_alive_idle_timeout_closes_quietly():
    c = Conn(server=True)
    c.send(get("/"))
    c.loop.advance(c.cfg.head_timeout + 1)  # idle uses its own, longer deadline
    assert not c.transport.closed
    c.loop.advance(c.cfg.keepalive_timeout - c.cfg.head_timeout)
    assert c.transport.closed and c.transport.take() == b""
    c.loop.advance(0)
    assert c.state.conns == set()


def test_a_new_request_after_idle_gets_a_fresh_head_deadline():
    c = Conn(server=True)
    c.send(get("/"))
    c.loop.advance(50)
    c.send(b"GET /slow HTTP/1.1\r\n")
    c.loop.advance(c.cfg.head_timeout - 1)
    assert not c.transport.closed
    c.loop.advance(2)
    assert c.transport.take() == error_answer("408 Request Timeout")


def test_body_deadline_is_longer_than_the_head_deadline():
    c = Conn(server=True)
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nab")
    c.loop.advance(c.cfg.head_timeout + 5)
    assert not c.transport.closed
    c.loop.advance(c.cfg.body_timeout)
    assert c.transport.take() == error_answer("408 Request Timeout")


def test_a_client_that_stops_reading_is_dropped_after_the_write_timeout():
    c = Conn(server=True, high_water=10)
    c.send(get("/first"))  # take() drains and resumes: the client keeps up
    c.transport.high_water = 0
    c.proto.data_received(get("/stuck"))  # this answer is never read
    assert c.transport.write_paused and not c.transport.reading
    c.loop.advance(c.cfg.write_timeout + 1)
    assert c.transport.aborted


# --- blocking work and streamed files ------------------------------------------------------------


def test_deferred_work_runs_off_the_loop_and_the_pipeline_waits_for_it():
    c = Conn()
    ran: list[str] = []
    c.app.special["/burn"] = lambda req: Deferred(lambda: ran.append("work"), b"DONE", False)
    assert c.send(get("/burn") + get("/next")) == b""
    assert not c.transport.reading and len(c.loop.jobs) == 1
    assert not c.proto.is_idle()
    c.loop.finish_jobs()
    assert ran == ["work"]
    assert c.transport.take() == b"DONE" + ok(b"GET /next b''\n")
    assert c.transport.reading and c.proto.is_idle()


def test_a_file_stream_is_sent_in_chunks_then_the_pipeline_goes_on(tmp_path: Path):
    content = bytes(range(256)) * 4
    f = tmp_path / "big"
    f.write_bytes(content)
    c = Conn(cfg=ServerConfig(read_chunk=100), high_water=300)

    def stream(req: Request) -> Result:
        fd = os.open(f, os.O_RDONLY)
        return b"HEAD|", False, FileStream(fd, [b"<", (10, 1000), b">"])

    c.app.special["/file"] = stream
    c.proto.data_received(get("/file") + get("/after"))
    received = b""
    while c.transport.write_paused:  # the client reads whenever the buffer is full
        received += c.transport.take()
    received += c.transport.take()
    assert received == b"HEAD|<" + content[10:1010] + b">" + ok(b"GET /after b''\n")
    assert c.proto.is_idle()


# --- the real application through the protocol ---------------------------------------------------


class FixedClock:
    """log.Clock with a second that never moves, so two answers can be compared byte for byte."""

    sec = 1_796_432_400
    prefix = "2026/12/05 01:00:00 "
    date = DATE

    def tick(self) -> int:
        return self.sec


def real_app(root: Path, *, keepalive: bool = True) -> App:
    info = AppInfo(
        version="0.1.0",
        runtime="cpython3.11.7",
        goos="linux",
        goarch="amd64",
        argv=["webhello"],
        pid=1,
        user="root",
        uid="0",
        addr=":8080",
        https_addr=":8443",
        banner="banner",
        keepalive=keepalive,
        burn_cpu=False,
        quota=0,
        quota_status=500,
        exit_on_quota=False,
        quota_time_ns=0,
        www_root=os.fsencode(root),
        key_path=os.fsencode(root / "key.pem"),
        start_mono_ns=0,
    )
    return App(info, ServerConfig(), FakeLog(), FixedClock(), lambda code: None)


def test_cached_file_answer_is_byte_identical_to_the_full_file_server(tmp_path: Path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_bytes(b"root:x:0:0::/root:/bin/sh\n")
    os.utime(tmp_path / "etc" / "passwd", (946684800, 946684800))
    c = Conn(real_app(tmp_path))
    out = c.send(get("/www/etc/passwd") + get("/www/etc/passwd") + get("/"))
    expected = (
        b"HTTP/1.1 200 OK\r\nAccept-Ranges: bytes\r\nContent-Length: 26\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Last-Modified: Sat, 01 Jan 2000 00:00:00 GMT\r\nDate: " + DATE + b"\r\n\r\n"
        b"root:x:0:0::/root:/bin/sh\n"
    )
    # The first answer comes from the file server (a cache miss), the second from the cache.
    assert out.startswith(expected + expected + b"HTTP/1.1 200 OK\r\nDate: ")
    assert b"<title>webhello root page</title>" in out
    assert c.app.count == 3 and not c.transport.closed


def test_real_app_honours_connection_close_and_disabled_keep_alive(tmp_path: Path):
    c = Conn(real_app(tmp_path))
    out = c.send(get("/", "Connection: close") + get("/"))
    assert out.startswith(b"HTTP/1.1 200 OK\r\nDate: ")
    assert b"\r\nConnection: close\r\n\r\n<!DOCTYPE html>" in out
    assert out.count(b"HTTP/1.1 200 OK") == 1 and c.transport.closed
    c = Conn(real_app(tmp_path, keepalive=False))
    out = c.send(get("/www/missing") + get("/"))
    assert out.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"\r\nConnection: close\r\n" in out and c.transport.closed
