"""Hostile-input corpus for webhello: malformed and malicious HTTP/1.x requests as raw bytes.

Each case states what the server must answer and why: the spec
(/work/shared/spec/webhello-behaviour.md, cited as C3, E6, deviation 5, ...), the STYLE limits
(request line 8 KiB, header field 8 KiB, 100 headers, head 16 KiB, body cap 1 MiB -> 413) and,
where both are silent, RFC 9112/9110 or the reference's (Go net/http) documented behaviour. The
expectations never come from what the implementation happens to do.

The corpus needs a served tree laid out by `build_tree` (cwd of the server):
    root/etc/passwd            the spec's 79-byte file (E4)
    root/index.html            so /www/ serves it (E9)
    root/sub/a.txt, root/sub/link_up -> ../../outside/secret.txt
    root/odd/...               odd file names (spaces, &<>"', CR/LF, non-UTF-8, HTML)
    root/big.bin               16 MiB, for clients that vanish mid-response
    root/link_* symlinks       out of the root (file, dir, /, /etc/passwd, chains), in the root,
                               broken, self-loop
    outside/secret.txt         a secret next to the root: its content must never be served
This module has no pytest dependency so a fuzzer or a manual run can reuse it.
"""

from __future__ import annotations

import os
import re
import select
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CRLF = b"\r\n"
MiB = 1024 * 1024
BODY_CAP = 1 * MiB  # deviation 5 default
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nappuser:x:1000:1000::/home/appuser:/sbin/nologin\n"
INDEX = b"<!DOCTYPE html>\n<html><body>webhello-hostile-index</body></html>\n"
ODD_NAME = "odd name &<>\"'%#?;=.txt"
ODD_CONTENT = b"odd-file-content-ok\n"
HTML_NAME = "<img src=x onerror=alert(1)>.txt"
CRLF_DIR = "crlf\r\nX-Injected: yes"
LATIN1_NAME = b"latin1-\xe9.txt"
LATIN1_CONTENT = b"latin1-file-content-ok\n"
BIG_SIZE = 16 * MiB
READ_TIMEOUT = 5.0  # per exchange; a correct server answers every case in milliseconds

# ---------------------------------------------------------------------------------------------
# Served tree and the secrets that must never leak


@dataclass(frozen=True)
class Tree:
    """Paths and markers of the served tree; `leaks` names every forbidden byte string."""

    base: Path
    root: Path
    secret_path: Path
    secret: bytes
    outside_only_name: str
    env_marker: str
    host_passwd_lines: tuple[bytes, ...]

    def leaks(self, data: bytes) -> list[str]:
        """Names of the out-of-root contents found in `data` (empty list = clean)."""
        found = []
        if self.secret in data:
            found.append("secret file content (outside the served root)")
        if self.outside_only_name.encode() in data:
            found.append("listing of the directory outside the served root")
        if self.env_marker.encode() in data:
            found.append("server environment (/proc/self/environ)")
        for line in self.host_passwd_lines:
            if line in data:
                found.append(f"host /etc/passwd line {line[:20]!r}")
                break
        return found


def build_tree(base: Path) -> Tree:
    """Lay out the served root and its hostile neighbours under `base`."""
    tag = uuid.uuid4().hex[:12]
    root = base / "root"
    outside = base / "outside"
    (root / "etc").mkdir(parents=True)
    (root / "sub").mkdir()
    (root / "odd").mkdir()
    outside.mkdir()
    secret_path = outside / "secret.txt"
    secret = f"SECRET-{tag}-do-not-serve".encode()
    secret_path.write_bytes(secret + b"\n")
    outside_only = f"outside-only-{tag}.txt"
    (outside / outside_only).write_bytes(b"x\n")
    (root / "etc" / "passwd").write_bytes(PASSWD)
    (root / "index.html").write_bytes(INDEX)
    (root / "sub" / "a.txt").write_bytes(b"sub-a\n")
    (root / "odd" / ODD_NAME).write_bytes(ODD_CONTENT)
    (root / "odd" / HTML_NAME).write_bytes(b"html-name\n")
    (root / "odd" / CRLF_DIR).mkdir()
    with open(os.path.join(os.fsencode(root / "odd"), LATIN1_NAME), "wb") as fh:
        fh.write(LATIN1_CONTENT)
    with open(root / "big.bin", "wb") as fh:
        block = b"B" * MiB
        for _ in range(BIG_SIZE // MiB):
            fh.write(block)
    links = {
        "link_out": "../outside/secret.txt",
        "link_out_abs": str(secret_path),
        "link_passwd": "/etc/passwd",
        "link_dir_out": "../outside",
        "link_root": "/",
        "link_proc": "/proc/self",
        "link_chain": "link_out",
        "link_in": "etc/passwd",
        "link_broken": "/nonexistent-webhello-hostile",
        "link_loop": "link_loop",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    (root / "sub" / "link_up").symlink_to("../../outside/secret.txt")
    ours = set(PASSWD.splitlines())
    host_lines = tuple(
        line
        for line in Path("/etc/passwd").read_bytes().splitlines()
        if len(line) >= 8 and line not in ours
    )
    return Tree(
        base=base,
        root=root,
        secret_path=secret_path,
        secret=secret,
        outside_only_name=outside_only,
        env_marker=f"envmark-{tag}",
        host_passwd_lines=host_lines,
    )


# ---------------------------------------------------------------------------------------------
# Response parsing (strict enough to notice a broken response, lenient about reason phrases)


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class ResponseParseError(Exception):
    """The bytes received are not a sequence of HTTP/1.x responses."""


_STATUS_LINE = re.compile(r"(HTTP/1\.[01]) ([1-9]\d\d)(?: (.*))?")


@dataclass
class ResponseReader:
    """Incremental parser: feed bytes, collect complete final responses (1xx counted apart)."""

    heads: frozenset[int] = frozenset()  # indexes of responses that answer HEAD (no body)
    buf: bytearray = field(default_factory=bytearray)
    pos: int = 0
    responses: list[Response] = field(default_factory=list)
    interim: int = 0

    def feed(self, data: bytes, *, eof: bool = False) -> None:
        self.buf += data
        while self._one(eof=eof):
            pass

    def _one(self, *, eof: bool) -> bool:
        buf = self.buf
        end = buf.find(b"\r\n\r\n", self.pos)
        if end < 0:
            if eof and self.pos < len(buf):
                tail = bytes(buf[self.pos :])[:120]
                raise ResponseParseError(f"truncated response head: {tail!r}")
            return False
        lines = bytes(buf[self.pos : end]).decode("latin-1").split("\r\n")
        m = _STATUS_LINE.fullmatch(lines[0])
        if not m:
            raise ResponseParseError(f"bad status line {lines[0][:120]!r}")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or "\n" in line or "\r" in line:
                raise ResponseParseError(f"bad response header line {line[:120]!r}")
            headers.append((name, value.strip(" \t")))
        status = int(m[2])
        start = end + 4
        resp = Response(m[1], status, m[3] or "", headers, b"")
        if 100 <= status < 200:
            self.interim += 1
            self.pos = start
            return True
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if len(self.responses) in self.heads or status in (204, 304):
            self.pos = start
        elif te:
            if te != "chunked":
                raise ResponseParseError(f"unexpected response Transfer-Encoding {te!r}")
            decoded = _dechunk(bytes(buf[start:]))
            if decoded is None:
                if eof:
                    raise ResponseParseError("truncated chunked response body")
                return False
            resp.body, used = decoded
            self.pos = start + used
        elif cl is not None:
            if not cl.isascii() or not cl.isdigit():
                raise ResponseParseError(f"bad response Content-Length {cl!r}")
            n = int(cl)
            if len(buf) - start < n:
                if eof:
                    raise ResponseParseError(f"body shorter than Content-Length {n}")
                return False
            resp.body = bytes(buf[start : start + n])
            self.pos = start + n
        else:  # close-delimited (e.g. Go's plain 400 for a garbage request line)
            if not eof:
                return False
            resp.body = bytes(buf[start:])
            self.pos = len(buf)
        self.responses.append(resp)
        return True


def _dechunk(data: bytes) -> tuple[bytes, int] | None:
    """Decode a chunked body; None if incomplete; raises ResponseParseError on bad framing."""
    out = bytearray()
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_txt = data[pos:eol].split(b";", 1)[0].strip()
        if not re.fullmatch(rb"[0-9a-fA-F]{1,16}", size_txt):
            raise ResponseParseError(f"bad chunk size line {data[pos:eol][:40]!r}")
        size = int(size_txt, 16)
        pos = eol + 2
        if size == 0:
            end = data.find(b"\r\n\r\n", pos - 2)
            if end < 0:
                return None
            return bytes(out), end + 4
        if len(data) < pos + size + 2:
            return None
        out += data[pos : pos + size]
        if data[pos + size : pos + size + 2] != CRLF:
            raise ResponseParseError("chunk data not followed by CRLF")
        pos += size + 2


# ---------------------------------------------------------------------------------------------
# One exchange over a raw socket


class Shut:
    """In a case's `send`: half-close the client side (FIN) at this point."""


SHUT = Shut()
Step = bytes | float | Shut  # bytes to write, seconds to pause, or SHUT


@dataclass
class Exchange:
    """What one connection saw: raw bytes, parsed responses and how it ended."""

    raw: bytes = b""
    responses: list[Response] = field(default_factory=list)
    interim: int = 0
    eof: bool = False
    reset: bool = False
    timed_out: bool = False
    send_error: str | None = None
    unparseable: str | None = None
    followup: Response | None = None
    followup_error: str | None = None
    elapsed: float = 0.0

    @property
    def closed(self) -> bool:
        return self.eof or self.reset

    def first(self) -> Response | None:
        return self.responses[0] if self.responses else None


FOLLOWUP = b"GET /follow-up HTTP/1.1\r\nHost: t\r\n\r\n"


def exchange(
    port: int,
    send: Sequence[Step],
    *,
    expect: int,
    heads: frozenset[int] = frozenset(),
    until_close: bool = False,
    followup: bool = False,
    timeout: float = READ_TIMEOUT,
    host: str = "127.0.0.1",
) -> Exchange:
    """Write `send`, then read until `expect` responses (and EOF if `until_close`) or timeout.

    Large writes go out in 64 KiB slices and stop as soon as the server has answered, so a
    server that rejects a big body early (413) is not met with a reset of our own making.
    """
    ex = Exchange()
    reader = ResponseReader(heads=heads)
    t0 = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        answered_early = False
        try:
            for step in send:
                if isinstance(step, Shut):
                    sock.shutdown(socket.SHUT_WR)
                elif isinstance(step, float):
                    time.sleep(step)
                else:
                    answered_early = _send_watching(sock, step)
                    if answered_early:
                        break
        except OSError as err:
            ex.send_error = f"{type(err).__name__}: {err}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                reader.feed(b"", eof=False)
            except ResponseParseError as err:
                ex.unparseable = str(err)
                break
            have = len(reader.responses)
            if expect and have >= expect and not until_close:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                ex.timed_out = True
                break
            sock.settimeout(remaining)
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:
                ex.timed_out = True
                break
            except (ConnectionResetError, BrokenPipeError):
                ex.reset = True
                data = b""
            if not data:
                ex.eof = not ex.reset
                try:
                    reader.feed(b"", eof=True)
                except ResponseParseError as err:
                    ex.unparseable = str(err)
                break
            try:
                reader.feed(data)
            except ResponseParseError as err:
                ex.unparseable = str(err)
                break
        if followup and not ex.closed and not ex.unparseable:
            ex.followup, ex.followup_error = _followup(sock, timeout)
    ex.raw = bytes(reader.buf)
    ex.responses = reader.responses
    ex.interim = reader.interim
    ex.elapsed = time.monotonic() - t0
    return ex


def _send_watching(sock: socket.socket, data: bytes) -> bool:
    """sendall in slices; True if the server started answering before we finished."""
    if len(data) <= 65536:
        sock.sendall(data)
        return False
    view = memoryview(data)
    for off in range(0, len(data), 65536):
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            return True
        sock.sendall(view[off : off + 65536])
    return False


def _followup(sock: socket.socket, timeout: float) -> tuple[Response | None, str | None]:
    """Prove the connection is still usable: one more request on it must get a response."""
    reader = ResponseReader()
    try:
        sock.sendall(FOLLOWUP)
        deadline = time.monotonic() + timeout
        while not reader.responses:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = sock.recv(65536)
            if not data:
                return None, "connection closed before the follow-up response"
            reader.feed(data)
    except (OSError, ResponseParseError) as err:
        return None, f"follow-up failed: {type(err).__name__}: {err}"
    return reader.responses[0], None


# ---------------------------------------------------------------------------------------------
# Cases

Check = Callable[[Exchange], str | None]

OK = frozenset({200})
BAD = frozenset({400})
OK_OR_BAD = frozenset({200, 400})
LINE_TOO_LONG = frozenset({400, 414, 431})
HEAD_TOO_LARGE = frozenset({400, 431})
TOO_LARGE = frozenset({413})
BAD_OR_TOO_LARGE = frozenset({400, 413})
UNSUPPORTED_TE = frozenset({400, 501})
BAD_VERSION = frozenset({400, 505})
# Traversal: redirect, refusal or not-found; 200 only with content from inside the root.
TRAVERSAL = frozenset({200, 301, 400, 403, 404})
OUT_OF_ROOT = frozenset({400, 403, 404})
# A NUL byte in a file name: Go's http.Dir gets EINVAL from open(2), which toHTTPError maps to
# 500; refusing earlier (400/404) is as good. Never a leak, never a crash.
NUL_NAME = frozenset({400, 403, 404, 500})


@dataclass(frozen=True)
class Case:
    """One hostile request (or several on one connection) and what the server must do."""

    id: str
    send: tuple[Step, ...]
    statuses: tuple[frozenset[int], ...]  # allowed statuses per final response, in order
    why: str
    close: bool | None = None  # True: server must close after them; False: must keep it usable
    heads: frozenset[int] = frozenset()
    checks: tuple[Check, ...] = ()
    never: tuple[str, ...] = ()  # paths that must never reach a handler (server log)
    timeout: float = READ_TIMEOUT
    maybe: frozenset[int] | None = None  # statuses=(): at most one response, with one of these


def raw(*lines: bytes, body: bytes = b"") -> bytes:
    """A request from its head lines: CRLF-joined, blank line, then `body`."""
    return CRLF.join(lines) + CRLF + CRLF + body


def get(target: bytes, *headers: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    return raw(b"GET " + target + b" " + version, b"Host: t", *headers)


def post(body: bytes, *headers: bytes, target: bytes = b"/") -> bytes:
    return raw(b"POST " + target + b" HTTP/1.1", b"Host: t", *headers, body=body)


def smuggle(case_id: str) -> tuple[str, bytes]:
    """A marker path and a complete request for it, hidden where it must not be executed."""
    path = f"/smuggled-{case_id}"
    return path, f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


# --- checks (each returns a problem description or None)


def _first(ex: Exchange) -> Response:
    resp = ex.first()
    assert resp is not None  # evaluate() only runs checks when the responses arrived
    return resp


def body_is(expected: bytes) -> Check:
    def check(ex: Exchange) -> str | None:
        body = _first(ex).body
        return None if body == expected else f"body is {body[:80]!r}, want {expected[:80]!r}"

    return check


def body_has(*needles: bytes, when: int | None = None) -> Check:
    def check(ex: Exchange) -> str | None:
        resp = _first(ex)
        if when is not None and resp.status != when:
            return None
        missing = [n for n in needles if n not in resp.body]
        return f"body lacks {missing!r}" if missing else None

    return check


def body_lacks(*needles: bytes, when: int | None = None) -> Check:
    def check(ex: Exchange) -> str | None:
        resp = _first(ex)
        if when is not None and resp.status != when:
            return None
        found = [n for n in needles if n in resp.body]
        return f"body contains {found!r}" if found else None

    return check


def location_is(expected: str) -> Check:
    def check(ex: Exchange) -> str | None:
        loc = _first(ex).header("Location")
        return None if loc == expected else f"Location is {loc!r}, want {expected!r}"

    return check


def header_is(name: str, expected: str) -> Check:
    def check(ex: Exchange) -> str | None:
        value = _first(ex).header(name)
        return None if value == expected else f"{name} is {value!r}, want {expected!r}"

    return check


def body_size(n: int, when: int | None = 200) -> Check:
    """The root page reports the request body size it read (D3)."""
    return body_has(f"<p>request body size: {n}</p>".encode(), when=when)


def escaped(raw_text: bytes, escaped_text: bytes) -> Check:
    """Deviation 1: reflected text is HTML-escaped on the root page (checked when 200)."""

    def check(ex: Exchange) -> str | None:
        resp = _first(ex)
        if resp.status != 200:
            return None
        if raw_text in resp.body:
            return f"reflected unescaped: {raw_text!r}"
        if escaped_text not in resp.body:
            return f"escaped form {escaped_text!r} not on the page"
        return None

    return check


def in_root_content(ex: Exchange) -> str | None:
    """A 200 on a traversal attempt may only carry content from inside the served root."""
    resp = _first(ex)
    if resp.status != 200:
        return None
    if resp.body in (PASSWD, INDEX) or b"Request method=" in resp.body:
        return None
    return f"200 with content not from the served root: {resp.body[:100]!r}"


def no_injected_line(ex: Exchange) -> str | None:
    """A folded or whitespace-led line must not become a header of its own on the page."""
    resp = _first(ex)
    if resp.status == 200 and b"\nX-Injected: yes<br>" in resp.body:
        return "a continuation line was taken as a separate header"
    return None


def paths_in_order(*paths: str) -> Check:
    """Pipelined root-page responses answer their requests in order (D3 path=[...])."""

    def check(ex: Exchange) -> str | None:
        for i, path in enumerate(paths):
            if i >= len(ex.responses):
                return f"missing response {i}"
            if f"path=[{path}]".encode() not in ex.responses[i].body:
                return f"response {i} is not for {path}"
        return None

    return check


def bodies_in_order(*bodies: bytes) -> Check:
    def check(ex: Exchange) -> str | None:
        for i, body in enumerate(bodies):
            if i >= len(ex.responses):
                return f"missing response {i}"
            if b"<pre>\n" + body + b"\n</pre>" not in ex.responses[i].body:
                return f"response {i} does not echo body {body!r}"
        return None

    return check


def nth_body_is(index: int, expected: bytes) -> Check:
    def check(ex: Exchange) -> str | None:
        if index >= len(ex.responses):
            return f"missing response {index}"
        body = ex.responses[index].body
        return None if body == expected else f"response {index} body {body[:60]!r}"

    return check


def nth_has(index: int, needle: bytes) -> Check:
    def check(ex: Exchange) -> str | None:
        if index >= len(ex.responses):
            return f"missing response {index}"
        return None if needle in ex.responses[index].body else f"response {index} lacks {needle!r}"

    return check


def not_a_tunnel(ex: Exchange) -> str | None:
    resp = _first(ex)
    if resp.status == 200 and b"<html>" not in resp.body:
        return "CONNECT answered 200 without a page: looks like a tunnel"
    return None


# --- the corpus


def _c(
    id: str,
    send: bytes | Sequence[Step],
    statuses: frozenset[int] | Sequence[frozenset[int]],
    why: str,
    **kw: object,
) -> Case:
    steps = (send,) if isinstance(send, bytes) else tuple(send)
    sts = (statuses,) if isinstance(statuses, frozenset) else tuple(statuses)
    return Case(id=id, send=steps, statuses=sts, why=why, **kw)  # type: ignore[arg-type]


def controls() -> list[Case]:
    """Well-formed requests: prove the harness sees the spec's answers (no blanket 404s)."""
    return [
        _c("control-root", get(b"/"), OK, "D1", checks=(body_has(b"Requests: "),)),
        _c("control-static", get(b"/www/etc/passwd"), OK, "E4", checks=(body_is(PASSWD),)),
        _c("control-index", get(b"/www/"), OK, "E9", checks=(body_is(INDEX),)),
        _c("control-www-redirect", get(b"/www"), frozenset({301}), "C2",
           checks=(location_is("/www/"),)),
        _c("control-options-star", raw(b"OPTIONS * HTTP/1.1", b"Host: t"), OK, "C3"),
        _c("control-http10-no-host", raw(b"GET /q HTTP/1.0"), OK, "C3: 1.0 closes",
           close=True, checks=(body_has(b"path=[/q]"),)),
        _c("control-missing-404-keeps-alive", get(b"/www/nope"), frozenset({404}), "E6",
           close=False, checks=(body_is(b"404 page not found\n"),)),
        _c("control-odd-name", get(b"/www/odd/odd%20name%20%26%3C%3E%22%27%25%23%3F%3B%3D.txt"),
           OK, "E1/E3: any file name", checks=(body_is(ODD_CONTENT),)),
        _c("control-odd-listing", get(b"/www/odd/"), OK, "E10: names HTML-escaped",
           checks=(body_lacks(b"<img src=x"), body_has(b"&lt;img src=x onerror=alert(1)&gt;.txt"))),
        _c("control-latin1-name", get(b"/www/odd/latin1-%E9.txt"), OK,
           "E1: /www/<p> maps to the file named by the decoded bytes",
           checks=(body_is(LATIN1_CONTENT),)),
        _c("control-index-html-redirect", get(b"/www/index.html"), frozenset({301}), "E8",
           checks=(location_is("./"),)),
        _c("control-chunked-post", post(b"5\r\nhello\r\n0\r\n\r\n", b"Transfer-Encoding: chunked"),
           OK, "D3 echoes the decoded body", checks=(body_size(5), bodies_in_order(b"hello"))),
        _c("control-symlink-inside-root", get(b"/www/link_in"), frozenset({200, 403, 404}),
           "a link to a file inside the root may be served", checks=(body_has(PASSWD, when=200),)),
    ]  # fmt: skip


def request_line_cases() -> list[Case]:
    h = b"Host: t"
    c = []

    def bad(id: str, line: bytes, why: str = "C3: malformed request line -> 400, close") -> None:
        c.append(_c(f"rl-{id}", raw(line, h), BAD, why, close=True))

    bad("garbage", b"BOGUS")
    c.append(_c("rl-garbage-alone", b"BOGUS\r\n\r\n", BAD, "C3", close=True,
                checks=(header_is("Connection", "close"),)))  # fmt: skip
    bad("missing-version", b"GET /")
    bad("only-method", b"GET")
    bad("empty-version", b"GET / ")
    bad("double-space", b"GET  / HTTP/1.1")
    bad("leading-space", b" GET / HTTP/1.1")
    bad("trailing-space", b"GET / HTTP/1.1 ")
    bad("tabs", b"GET\t/\tHTTP/1.1")
    bad("extra-token", b"GET / HTTP/1.1 extra")
    bad("lowercase-version", b"GET / http/1.1")
    bad("version-garbage", b"GET / HTTP/1.x")
    bad("version-no-minor", b"GET / HTTP/1.")
    bad("version-only-prefix", b"GET / HTTP/")
    bad("version-three-parts", b"GET / HTTP/1.1.1")
    bad("version-negative", b"GET / HTTP/-1.1")
    bad("version-fullwidth-digits", "GET / HTTP/\uff11.\uff11".encode())
    bad("version-nul", b"GET / HTTP/1.1\x00")
    bad("version-suffix", b"GET / HTTP/1.1x")
    bad("method-paren", b"GE(T / HTTP/1.1", "method must be a token (RFC 9110 5.6.2)")
    bad("method-nul", b"G\x00ET / HTTP/1.1", "method must be a token")
    bad("method-utf8", "GÉT / HTTP/1.1".encode(), "method must be a token")
    bad("method-slash", b"GET/ / HTTP/1.1", "method must be a token")
    bad("uri-ctl-01", b"GET /a\x01b HTTP/1.1", "control characters in the target")
    bad("uri-ctl-7f", b"GET /a\x7fb HTTP/1.1", "control characters in the target")
    bad("uri-ctl-esc", b"GET /a\x1bb HTTP/1.1", "control characters in the target")
    bad("uri-nul", b"GET /a\x00b HTTP/1.1", "NUL in the target")
    bad("uri-bare-cr", b"GET /a\rb HTTP/1.1", "bare CR in the request line")
    bad("uri-nul-static", b"GET /www/etc/passwd\x00 HTTP/1.1", "NUL in the target")
    bad("uri-relative", b"GET www/etc/passwd HTTP/1.1", "origin-form must start with /")
    bad("uri-query-only", b"GET ?a=1 HTTP/1.1", "origin-form must start with /")
    bad("uri-asterisk-get", b"GET * HTTP/1.1", "'*' only for OPTIONS (Go mux: 400)")
    bad("pct-bad-hex", b"GET /%zz HTTP/1.1", "invalid percent-encoding")
    bad("pct-truncated", b"GET /% HTTP/1.1", "invalid percent-encoding")
    bad("pct-one-digit", b"GET /%4 HTTP/1.1", "invalid percent-encoding")
    bad("pct-static", b"GET /www/% HTTP/1.1", "invalid percent-encoding")
    bad("pct-iis-unicode", b"GET /%u002e HTTP/1.1", "invalid percent-encoding")
    c += [
        _c("rl-empty-line-first", b"\r\n" + get(b"/"), OK_OR_BAD,
           "RFC 9112 2.2: may ignore a leading empty line (Go: 400)"),
        _c("rl-http09", b"GET /\r\n\r\n", BAD, "HTTP/0.9 is not supported", close=True),
        _c("rl-lowercase-method", raw(b"get / HTTP/1.1", h), OK,
           "C1: any method; methods are case-sensitive tokens", checks=(body_has(b"method=get"),)),
        _c("rl-unknown-method", raw(b"FROB / HTTP/1.1", h), OK, "C1: any method",
           checks=(body_has(b"method=FROB"),)),
        _c("rl-version-2", raw(b"GET / HTTP/2.0", h), BAD_VERSION, "h2 only via TLS (dev. 7)"),
        _c("rl-version-3", raw(b"GET / HTTP/3.0", h), BAD_VERSION, "unsupported major version"),
        _c("rl-version-0.9", raw(b"GET / HTTP/0.9", h), BAD_VERSION, "unsupported version"),
        _c("rl-version-1.2", raw(b"GET / HTTP/1.2", h), frozenset({200, 505}),
           "RFC 9110 2.5: a higher 1.x minor is served as 1.1"),
        _c("rl-version-1.10", raw(b"GET / HTTP/1.10", h), BAD_VERSION, "one digit per part"),
        _c("rl-version-leading-zero", raw(b"GET / HTTP/01.1", h), BAD_VERSION,
           "one digit per part"),
        _c("rl-h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", BAD_VERSION,
           "no h2c prior knowledge on the plain port"),
        _c("rl-absolute-form-root", raw(b"GET http://example.test/ HTTP/1.1", b"Host: other"),
           OK, "RFC 9112 3.2.2: servers MUST accept absolute-form"),
        _c("rl-absolute-form-static", raw(b"GET http://example.test/www/etc/passwd HTTP/1.1", h),
           OK, "absolute-form routes by its path", checks=(body_is(PASSWD),)),
        _c("rl-absolute-form-file-scheme", raw(b"GET file:///etc/passwd HTTP/1.1", h),
           OK_OR_BAD, "never a file read outside the root"),
        _c("rl-absolute-form-traversal",
           raw(b"GET http://x/www/%2e%2e/%2e%2e/%2e%2e/etc/passwd HTTP/1.1", h), TRAVERSAL,
           "traversal through absolute-form", checks=(in_root_content,)),
        _c("rl-double-slash-target", get(b"//www/etc/passwd"), frozenset({301}),
           "C2: //www/ is unclean -> 301 (not an authority)",
           checks=(location_is("/www/etc/passwd"),)),
        _c("rl-connect", raw(b"CONNECT example.test:443 HTTP/1.1", b"Host: example.test:443"),
           frozenset({200, 400, 404, 405, 501}), "never a tunnel", checks=(not_a_tunnel,)),
        _c("rl-uri-utf8-raw", get("/café".encode()), OK_OR_BAD, "raw non-ASCII target"),
        _c("rl-uri-invalid-utf8", get(b"/\xff\xfe"), OK_OR_BAD, "raw invalid UTF-8 target"),
        _c("rl-uri-fragment", get(b"/#frag"), OK_OR_BAD, "fragment in the target"),
        _c("rl-pct-nul-root", get(b"/%00"), OK_OR_BAD, "%00 on the root page: no crash"),
        _c("rl-pct-bad-in-query", get(b"/?a=%zz"), OK, "D3: query is shown raw, not decoded",
           checks=(body_has(b"query=[a=%zz]"),)),
        _c("rl-line-7000", get(b"/" + b"a" * 7000), OK, "under the 8 KiB request-line cap"),
        _c("rl-line-9000", get(b"/" + b"a" * 9000), LINE_TOO_LONG,
           "STYLE: request line capped at 8 KiB", close=True),
        _c("rl-line-64k", get(b"/" + b"a" * 65536), LINE_TOO_LONG,
           "STYLE: request line capped at 8 KiB", close=True),
        _c("rl-line-no-crlf", b"GET /" + b"a" * 20000, LINE_TOO_LONG,
           "bounded: reject a line that never ends, without waiting for CRLF", close=True),
        _c("rl-long-method", raw(b"A" * 9000 + b" / HTTP/1.1", h), LINE_TOO_LONG,
           "STYLE: request line capped at 8 KiB", close=True),
        _c("rl-long-query", get(b"/?" + b"q=1&" * 2500), LINE_TOO_LONG,
           "STYLE: request line capped at 8 KiB", close=True),
    ]  # fmt: skip
    return c


def header_cases() -> list[Case]:
    c = []

    def bad(id: str, *headers: bytes, why: str) -> None:
        c.append(_c(f"hd-{id}", raw(b"GET / HTTP/1.1", *headers), BAD, why, close=True))

    bad("missing-host", why="C3: HTTP/1.1 without Host -> 400")
    bad("two-hosts", b"Host: a", b"Host: b", why="RFC 9112 3.2: more than one Host -> 400")
    bad("host-space", b"Host: a b", why="RFC 9112 3.2: invalid Host value -> 400")
    bad("host-ctl", b"Host: a\x01b", why="control character in a field value")
    bad("no-colon", b"Host: t", b"X-No-Colon value", why="field line without colon")
    bad("space-before-colon", b"Host: t", b"X-A : b", why="RFC 9112 5.1: MUST 400")
    bad("tab-before-colon", b"Host: t", b"X-A\t: b", why="RFC 9112 5.1: MUST 400")
    bad("host-space-before-colon", b"Host : t", why="RFC 9112 5.1: MUST 400")
    bad("empty-name", b"Host: t", b": v", why="empty field name")
    bad("name-space", b"Host: t", b"X A: b", why="field name must be a token")
    bad("name-utf8", b"Host: t", "Xé: b".encode(), why="field name must be a token")
    bad("name-nul", b"Host: t", b"X\x00A: b", why="field name must be a token")
    bad("name-brackets", b"Host: t", b"X<A>: b", why="field name must be a token")
    bad("name-quote", b"Host: t", b'X"A: b', why="field name must be a token")
    bad("value-nul", b"Host: t", b"X-A: a\x00b", why="RFC 9110 5.5: NUL in a value")
    bad("value-ctl-01", b"Host: t", b"X-A: a\x01b", why="RFC 9110 5.5: CTL in a value")
    bad("value-ctl-7f", b"Host: t", b"X-A: a\x7fb", why="RFC 9110 5.5: DEL in a value")
    bad("value-ctl-esc", b"Host: t", b"X-A: a\x1bb", why="RFC 9110 5.5: ESC in a value")
    bad("value-bare-cr", b"Host: t", b"X-A: a\rb", why="RFC 9112 2.2: bare CR -> reject")
    bad("value-vtab", b"Host: t", b"X-A: a\x0bb", why="RFC 9110 5.5: VT in a value")

    fold = raw(b"GET / HTTP/1.1", b"Host: t", b"X-Fold: a", b" X-Injected: yes")
    fold_tab = raw(b"GET / HTTP/1.1", b"Host: t", b"X-Fold: a", b"\tX-Injected: yes")
    lead_ws = raw(b"GET / HTTP/1.1", b" X-Injected: yes", b"Host: t")
    many = [b"X-H%d: v" % i for i in range(99)]
    c += [
        _c("hd-obs-fold", fold, OK_OR_BAD, "RFC 9112 5.2: reject, or unfold into one value",
           checks=(no_injected_line,)),
        _c("hd-obs-fold-tab", fold_tab, OK_OR_BAD, "RFC 9112 5.2", checks=(no_injected_line,)),
        _c("hd-leading-ws-first-field", lead_ws, OK_OR_BAD,
           "RFC 9112 2.2: reject, or ignore the whitespace-led line", checks=(no_injected_line,)),
        _c("hd-bare-lf", b"GET / HTTP/1.1\nHost: t\n\n", OK_OR_BAD,
           "RFC 9112 2.2: MAY accept bare LF"),
        _c("hd-mixed-lf", b"GET / HTTP/1.1\r\nHost: t\n\r\n", OK_OR_BAD, "RFC 9112 2.2"),
        _c("hd-host-empty", raw(b"GET / HTTP/1.1", b"Host:"), OK_OR_BAD, "empty Host"),
        _c("hd-value-obs-text", raw(b"GET / HTTP/1.1", b"Host: t", "X-A: café".encode()), OK,
           "RFC 9110 5.5: obs-text allowed", close=False),
        _c("hd-value-tab", raw(b"GET / HTTP/1.1", b"Host: t", b"X-A: a\tb"), OK,
           "HTAB allowed in values"),
        _c("hd-value-ows-trimmed", raw(b"GET / HTTP/1.1", b"Host: t", b"X-Ows:   b   "), OK,
           "OWS around values is not part of them", checks=(body_has(b"X-Ows: b<br>"),)),
        _c("hd-100-fields", raw(b"GET / HTTP/1.1", b"Host: t", *many), OK,
           "STYLE: 100 header fields are allowed"),
        _c("hd-101-fields", raw(b"GET / HTTP/1.1", b"Host: t", *many, b"X-Last: v"),
           HEAD_TOO_LARGE, "STYLE: header count capped at 100", close=True),
        _c("hd-1000-fields",
           raw(b"GET / HTTP/1.1", b"Host: t", *[b"X-H%d: v" % i for i in range(1000)]),
           HEAD_TOO_LARGE, "STYLE: header count capped at 100", close=True),
        _c("hd-10000-tiny-fields", raw(b"GET / HTTP/1.1", b"Host: t", *[b"a:b"] * 10000),
           HEAD_TOO_LARGE, "STYLE: header count and head size capped", close=True),
        _c("hd-value-7000", raw(b"GET / HTTP/1.1", b"Host: t", b"X-Big: " + b"v" * 7000), OK,
           "under the 8 KiB field cap"),
        _c("hd-value-9000", raw(b"GET / HTTP/1.1", b"Host: t", b"X-Big: " + b"v" * 9000),
           HEAD_TOO_LARGE, "STYLE: header field capped at 8 KiB", close=True),
        _c("hd-name-9000", raw(b"GET / HTTP/1.1", b"Host: t", b"X" * 9000 + b": v"),
           HEAD_TOO_LARGE, "STYLE: header field capped at 8 KiB", close=True),
        _c("hd-value-1mib", raw(b"GET / HTTP/1.1", b"Host: t", b"X-Big: " + b"v" * MiB),
           HEAD_TOO_LARGE, "STYLE: header field capped at 8 KiB", close=True),
        _c("hd-head-12k", raw(b"GET / HTTP/1.1", b"Host: t", b"X-A: " + b"a" * 6000,
                              b"X-B: " + b"b" * 6000), OK, "under the 16 KiB head cap"),
        _c("hd-head-18k", raw(b"GET / HTTP/1.1", b"Host: t", b"X-A: " + b"a" * 6000,
                              b"X-B: " + b"b" * 6000, b"X-C: " + b"c" * 6000),
           HEAD_TOO_LARGE, "STYLE: whole head capped at 16 KiB", close=True),
        _c("hd-endless-field", b"GET / HTTP/1.1\r\nHost: t\r\nX-Endless: " + b"e" * 65536,
           HEAD_TOO_LARGE, "bounded: no waiting for a CRLF that never comes", close=True),
        _c("hd-cookie-bomb",
           raw(b"GET / HTTP/1.1", b"Host: t", *[b"Cookie: c%d=%s" % (i, b"x" * 100)
                                                 for i in range(200)]),
           HEAD_TOO_LARGE, "STYLE: header count and head size capped", close=True),
        _c("hd-expect-100", post(b"hello", b"Content-Length: 5", b"Expect: 100-continue"), OK,
           "final response after an optional 100 Continue", checks=(body_size(5),)),
        _c("hd-expect-unknown", raw(b"GET / HTTP/1.1", b"Host: t", b"Expect: 999-frob"),
           frozenset({200, 417}), "RFC 9110 10.1.1: may answer 417"),
        _c("hd-connection-close", raw(b"GET / HTTP/1.1", b"Host: t", b"Connection: close"), OK,
           "C3: client close -> closed", close=True),
        _c("hd-connection-keepalive-and-close",
           raw(b"GET / HTTP/1.1", b"Host: t", b"Connection: keep-alive", b"Connection: close"),
           OK, "close in the Connection list wins", close=True),
        _c("hd-connection-commas",
           raw(b"GET / HTTP/1.1", b"Host: t", b"Connection: " + b"," * 5000), OK,
           "empty list elements are ignored"),
        _c("hd-upgrade-h2c",
           raw(b"GET / HTTP/1.1", b"Host: t", b"Connection: Upgrade, HTTP2-Settings",
               b"Upgrade: h2c", b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"),
           OK, "no h2c upgrade on plain HTTP (dev. 7): served as HTTP/1.1"),
        _c("hd-upgrade-websocket",
           raw(b"GET / HTTP/1.1", b"Host: t", b"Connection: Upgrade", b"Upgrade: websocket",
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Version: 13"),
           OK, "no protocol switch: served as HTTP/1.1"),
        _c("hd-underscore-te-name",
           post(b"0\r\n\r\n", b"Transfer_Encoding: chunked", b"Content-Length: 5"), OK,
           "Transfer_Encoding is another field: body framed by Content-Length",
           checks=(body_size(5),)),
    ]  # fmt: skip
    return c


def framing_cases() -> list[Case]:
    """Content-Length / Transfer-Encoding conflicts and chunked framing (request smuggling)."""
    c = []

    def smug_case(id: str, head: tuple[bytes, ...], body: bytes, statuses: frozenset[int],
                  why: str, close: bool | None = True) -> None:  # fmt: skip
        marker, smuggled = smuggle(id)
        c.append(_c(id, post(body + smuggled, *head), statuses, why, close=close, never=(marker,)))

    te = b"Transfer-Encoding: chunked"
    zero = b"0\r\n\r\n"
    smug_case("smuggle-cl-te", (b"Content-Length: 5", te), zero, BAD,
              "brief: CL and TE together -> 400, close")  # fmt: skip
    smug_case("smuggle-te-cl", (te, b"Content-Length: 60"), zero, BAD,
              "brief: CL and TE together -> 400, close")  # fmt: skip
    smug_case("smuggle-cl-te-lowercase", (b"content-length: 5", b"transfer-encoding: chunked"),
              zero, BAD, "field names are case-insensitive")  # fmt: skip
    smug_case("smuggle-cl-cl-differ", (b"Content-Length: 0", b"Content-Length: 60"), b"", BAD,
              "RFC 9110 8.6: differing Content-Length -> 400")  # fmt: skip
    smug_case("smuggle-cl-list-differ", (b"Content-Length: 0, 60",), b"", BAD,
              "RFC 9110 8.6: differing Content-Length -> 400")  # fmt: skip
    smug_case("smuggle-cl-space-before-colon", (b"Content-Length : 60",), b"", BAD,
              "RFC 9112 5.1: whitespace before colon -> 400")  # fmt: skip
    smug_case("smuggle-te-space-before-colon", (b"Transfer-Encoding : chunked",
              b"Content-Length: 5"), zero, BAD, "RFC 9112 5.1")  # fmt: skip
    smug_case("smuggle-te-xchunked", (b"Transfer-Encoding: xchunked", b"Content-Length: 5"),
              zero, UNSUPPORTED_TE, "unknown coding -> 501 (Go) or 400")  # fmt: skip
    smug_case("smuggle-te-chunked-identity", (b"Transfer-Encoding: chunked, identity",),
              zero, UNSUPPORTED_TE, "RFC 9112 6.3: chunked not final -> 400")  # fmt: skip
    smug_case("smuggle-te-identity-chunked", (b"Transfer-Encoding: identity, chunked",),
              zero, UNSUPPORTED_TE, "identity is not a coding (Go: 501)")  # fmt: skip
    smug_case("smuggle-te-gzip-chunked", (b"Transfer-Encoding: gzip, chunked",),
              zero, UNSUPPORTED_TE, "unsupported coding -> 501 (RFC 9112 6.1)")  # fmt: skip
    smug_case("smuggle-te-chunked-gzip", (b"Transfer-Encoding: chunked, gzip",),
              zero, UNSUPPORTED_TE, "RFC 9112 6.3: chunked not final -> 400")  # fmt: skip
    smug_case("smuggle-te-twice", (te, te), zero, UNSUPPORTED_TE,
              "chunked applied twice is invalid (RFC 9112 7)")  # fmt: skip
    smug_case("smuggle-te-empty", (b"Transfer-Encoding:", b"Content-Length: 5"), zero,
              UNSUPPORTED_TE, "empty coding list")  # fmt: skip
    smug_case("smuggle-te-vtab", (b"Transfer-Encoding:\x0bchunked", b"Content-Length: 5"),
              zero, UNSUPPORTED_TE, "VT is not whitespace here")  # fmt: skip
    smug_case("smuggle-te-nbsp", (b"Transfer-Encoding: chunked\xa0", b"Content-Length: 5"),
              zero, UNSUPPORTED_TE, "NBSP is not whitespace")  # fmt: skip
    smug_case("smuggle-te-comma-prefix", (b"Transfer-Encoding: ,chunked", b"Content-Length: 5"),
              zero, frozenset({200, 400, 501}),
              "empty list element; chunked wins or rejected")  # fmt: skip
    # HTTP/1.0 + TE: RFC 9112 6.1 -> faulty framing, close after responding.
    marker, smuggled = smuggle("smuggle-te-http10")
    c.append(_c("smuggle-te-http10",
                raw(b"POST / HTTP/1.0", te, b"Content-Length: 5", body=zero + smuggled),
                OK_OR_BAD, "RFC 9112 6.1: TE in 1.0 -> close after", close=True,
                never=(marker,)))  # fmt: skip
    # The tail of a body must never be read as a request after an error.
    marker, smuggled = smuggle("smuggle-bad-chunk-tail")
    c.append(_c("smuggle-bad-chunk-tail", post(b"5\r\nhelloXX" + smuggled, te), BAD,
                "bad chunk framing -> 400, close; tail never parsed", close=True,
                never=(marker,)))  # fmt: skip

    c += [
        _c("cl-duplicate-same", post(b"hello", b"Content-Length: 5", b"Content-Length: 5"),
           OK_OR_BAD, "RFC 9110 8.6: identical duplicates may be accepted",
           checks=(body_size(5),)),
        _c("cl-list-same", post(b"hello", b"Content-Length: 5, 5"), OK_OR_BAD,
           "RFC 9110 8.6", checks=(body_size(5),)),
        _c("cl-leading-zeros", post(b"hello", b"Content-Length: 0005"), OK,
           "1*DIGIT: leading zeros are valid", checks=(body_size(5),)),
        _c("cl-ows", post(b"hello", b"Content-Length:   5  "), OK, "OWS trimmed",
           checks=(body_size(5),)),
        _c("cl-zero-get", get(b"/", b"Content-Length: 0"), OK, "empty body",
           checks=(body_size(0),)),
        _c("cl-get-with-body", raw(b"GET / HTTP/1.1", b"Host: t", b"Content-Length: 5",
                                   body=b"hello"), OK, "D3: any method's body is read",
           checks=(body_size(5),), close=False),
    ]  # fmt: skip
    for id, value, statuses in [
        ("negative", b"-1", BAD),
        ("plus", b"+5", BAD),
        ("hex", b"0x5", BAD),
        ("underscore", b"1_0", BAD),
        ("arabic-digit", "\u0665".encode(), BAD),
        ("fullwidth-digit", "\uff15".encode(), BAD),
        ("float", b"5.0", BAD),
        ("empty", b"", BAD),
        ("inner-space", b"5 5", BAD),
        ("letters", b"five", BAD),
        ("huge", b"9" * 30, BAD_OR_TOO_LARGE),
        ("uint64-overflow", b"18446744073709551616", BAD_OR_TOO_LARGE),
    ]:
        c.append(_c(f"cl-{id}", post(b"hello", b"Content-Length: " + value), statuses,
                    "Content-Length = 1*DIGIT (RFC 9110 8.6)", close=True))  # fmt: skip

    def chunked(id: str, body: bytes, statuses: frozenset[int], why: str, **kw: object) -> None:
        c.append(_c(f"chunk-{id}", post(body, te), statuses, why, **kw))

    chunked(
        "ext",
        b"5;name=value\r\nhello\r\n0\r\n\r\n",
        OK,
        "chunk extensions are ignored",
        checks=(body_size(5),),
    )
    chunked(
        "ext-quoted",
        b'5;a="b;c"\r\nhello\r\n0\r\n\r\n',
        OK,
        "quoted chunk extension",
        checks=(body_size(5),),
    )
    chunked(
        "uppercase-hex",
        b"A\r\nhelloworld\r\n0\r\n\r\n",
        OK,
        "hex digits are case-free",
        checks=(body_size(10),),
    )
    c.append(_c("chunk-te-value-uppercase", post(b"5\r\nhello\r\n0\r\n\r\n",
                b"Transfer-Encoding: CHUNKED"), OK, "coding names are case-insensitive",
                checks=(body_size(5),)))  # fmt: skip
    c.append(_c("chunk-te-value-tab", post(b"5\r\nhello\r\n0\r\n\r\n",
                b"Transfer-Encoding:\tchunked"), OK, "HTAB is OWS",
                checks=(body_size(5),)))  # fmt: skip
    bad_framing = "RFC 9112 7.1: chunk-size = 1*HEXDIG -> 400, close"
    for id, body in [
        ("bad-hex", b"zz\r\nhello\r\n0\r\n\r\n"),
        ("0x-prefix", b"0x5\r\nhello\r\n0\r\n\r\n"),
        ("underscore", b"0_5\r\nhello\r\n0\r\n\r\n"),
        ("negative", b"-5\r\nhello\r\n0\r\n\r\n"),
        ("plus", b"+5\r\nhello\r\n0\r\n\r\n"),
        ("leading-space", b" 5\r\nhello\r\n0\r\n\r\n"),
        ("empty-size", b"\r\nhello\r\n0\r\n\r\n"),
        ("fullwidth-digit", "\uff15".encode() + b"\r\nhello\r\n0\r\n\r\n"),
        ("missing-crlf-after-data", b"5\r\nhelloXX0\r\n\r\n"),
        ("data-longer-than-size", b"3\r\nhello\r\n0\r\n\r\n"),
        ("trailer-no-colon", b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n"),
        ("trailer-nul", b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n"),
    ]:
        chunked(id, body, BAD, bad_framing, close=True)
    chunked(
        "size-overflow-20-digits",
        b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        BAD_OR_TOO_LARGE,
        "bounded chunk size",
        close=True,
    )
    chunked(
        "size-16-f",
        b"ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        BAD_OR_TOO_LARGE,
        "bounded chunk size",
        close=True,
    )
    chunked(
        "size-over-cap-declared",
        b"100001\r\nhello\r\n0\r\n\r\n",
        BAD_OR_TOO_LARGE,
        "a chunk larger than the 1 MiB cap (dev. 5)",
        close=True,
    )
    chunked(
        "lf-only",
        b"5\nhello\n0\n\n",
        OK_OR_BAD,
        "RFC 9112 2.2: MAY accept bare LF",
        checks=(body_size(5),),
    )
    chunked(
        "trailer-valid",
        b"5\r\nhello\r\n0\r\nX-Trailer: v\r\n\r\n",
        OK,
        "trailers are allowed",
        checks=(body_size(5),),
    )
    chunked(
        "trailer-content-length",
        b"5\r\nhello\r\n0\r\nContent-Length: 100\r\n\r\n",
        OK,
        "a Content-Length trailer must not reframe",
        checks=(body_size(5),),
        close=False,
    )
    chunked(
        "trailer-20k-line",
        b"5\r\nhello\r\n0\r\nX-T: " + b"t" * 20000 + b"\r\n\r\n",
        frozenset({400, 413, 431}),
        "trailer fields are bounded like header fields",
        close=True,
    )
    chunked(
        "trailer-2mib-of-lines",
        b"5\r\nhello\r\n0\r\n" + b"X-T: tttttt\r\n" * (2 * MiB // 13) + b"\r\n",
        frozenset({400, 413, 431}),
        "trailers are bounded (head or body cap)",
        close=True,
    )
    chunked(
        "ext-endless",
        b"5;" + b"e" * 20000,
        frozenset({400, 413, 431}),
        "bounded chunk-size line: no waiting for its CRLF",
        close=True,
    )
    chunked(
        "many-tiny",
        b"1\r\na\r\n" * 100000 + b"0\r\n\r\n",
        OK,
        "100,000 one-byte chunks: 100 KB body",
        checks=(body_size(100000),),
    )
    return c


def body_cap_cases() -> list[Case]:
    """Deviation 5: the echoed body is capped at 1 MiB; larger bodies get 413."""
    te = b"Transfer-Encoding: chunked"
    marker, smuggled = smuggle("body-over-cap-cl")
    over = smuggled + b"A" * (BODY_CAP + 1 - len(smuggled))
    marker2, smuggled2 = smuggle("body-over-cap-chunked")
    chunk = smuggled2 + b"A" * (64 * 1024 - len(smuggled2))
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17)) + b"0\r\n\r\n"
    return [
        _c("body-at-cap", post(b"A" * BODY_CAP, b"Content-Length: %d" % BODY_CAP), OK,
           "dev. 5: exactly 1 MiB is within the cap", checks=(body_size(BODY_CAP),)),
        _c("body-over-cap-cl", post(over, b"Content-Length: %d" % len(over)), TOO_LARGE,
           "dev. 5: larger bodies get 413; the body is never parsed as requests",
           never=(marker,)),
        _c("body-over-cap-chunked", post(chunks, te), TOO_LARGE,
           "dev. 5: the cap also applies to chunked bodies", never=(marker2,)),
        _c("body-over-cap-get", raw(b"GET / HTTP/1.1", b"Host: t",
                                     b"Content-Length: %d" % (2 * MiB), body=b"G" * 2 * MiB),
           TOO_LARGE, "dev. 5: any method"),
        _c("body-declared-1tb", post(b"", b"Content-Length: 1000000000000"), BAD_OR_TOO_LARGE,
           "dev. 5: refused from the declared length, without reading it"),
    ]  # fmt: skip


# --- traversal

DOTS = {
    "raw": "..",
    "pct": "%2e%2e",
    "PCT": "%2E%2E",
    "pct-mixed": "%2e%2E",
    "half-1": ".%2e",
    "half-2": "%2e.",
    "double-enc": "%252e%252e",
    "double-enc-pct": "%25%32%65%25%32%65",
    "pctpct": "%%32%65%%32%65",
    "overlong-2": "%c0%ae%c0%ae",
    "overlong-3": "%e0%80%ae%e0%80%ae",
    "iis-u": "%u002e%u002e",
    "fullwidth": "%ef%bc%8e%ef%bc%8e",
    "three-dots": "...",
    "four-dots": "....",
    "nul-suffix": "..%00",
    "space-suffix": "..%20",
    "semicolon": "..;",
}
SEPS = {
    "pct": "%2f",
    "PCT": "%2F",
    "backslash-pct": "%5c",
    "backslash": "\\",
    "double-enc": "%252f",
    "overlong": "%c0%af",
    "dup": "//",
    "dot-seg": "/./",
}


# Placeholders for the secret's absolute path (known only once the tree exists): see `resolve`.
SECRET_ABS = b"@SECRET_ABS@"
SECRET_ABS_PCT = b"@SECRET_ABS_PCT@"


def resolve(steps: Sequence[Step], tree: Tree) -> tuple[Step, ...]:
    """Fill the tree-dependent placeholders into a case's bytes."""
    abs_path = str(tree.secret_path).encode()
    out: list[Step] = []
    for step in steps:
        if isinstance(step, bytes):
            filled = step.replace(SECRET_ABS_PCT, abs_path.replace(b"/", b"%2f"))
            out.append(filled.replace(SECRET_ABS, abs_path))
        else:
            out.append(step)
    return tuple(out)


def _path(dots: str, sep: str, levels: int, rest: str) -> str:
    return "/www/" + (dots + sep) * levels + rest.replace("/", sep)


def traversal_cases() -> list[Case]:
    """Every encoding of '..' and '/' against the secret next to the root and the host passwd."""
    c = []
    targets = {"secret": (1, "outside/secret.txt"), "hostpasswd": (16, "etc/passwd")}
    combos = [(f"dots-{d}", DOTS[d], "/") for d in DOTS]
    combos += [(f"sep-{s}-dots-pct", "%2e%2e", SEPS[s]) for s in SEPS]
    combos += [(f"sep-{s}-dots-raw", "..", SEPS[s]) for s in ("pct", "backslash-pct", "overlong")]
    for combo_id, dots, sep in combos:
        for target_id, (levels, rest) in targets.items():
            path = _path(dots, sep, levels, rest)
            why = "E1: /www/ never escapes its directory"
            allowed = TRAVERSAL | NUL_NAME if "%00" in dots else TRAVERSAL
            c.append(_c(f"tr-{combo_id}-{target_id}", get(path.encode()), allowed, why,
                        checks=(in_root_content,)))  # fmt: skip
    more = [
        (
            "tr-mux-dotdot-exact",
            b"/www/../etc/passwd",
            frozenset({301}),
            (location_is("/etc/passwd"),),
            "C2: unclean path -> 301 /etc/passwd",
        ),
        (
            "tr-mux-dotdot-many",
            b"/www/../../../../etc/passwd",
            frozenset({301}),
            (location_is("/etc/passwd"),),
            "C2: cleaned like path.Clean",
        ),
        (
            "tr-mux-dotdot-query",
            b"/www/..?x=1",
            frozenset({301}),
            (location_is("/?x=1"),),
            "C2: query preserved",
        ),
        (
            "tr-mux-dot-segment",
            b"/www/./etc/passwd",
            frozenset({301}),
            (location_is("/www/etc/passwd"),),
            "C2",
        ),
        (
            "tr-sub-dotdot-pct-secret",
            b"/www/sub/%2e%2e/%2e%2e/outside/secret.txt",
            TRAVERSAL,
            (in_root_content,),
            "E1",
        ),
        (
            "tr-etc-dotdot-pct-secret",
            b"/www/etc/%2e%2e/%2e%2e/outside/secret.txt",
            TRAVERSAL,
            (in_root_content,),
            "E1",
        ),
        (
            "tr-dot-then-pct",
            b"/www/./%2e%2e/outside/secret.txt",
            TRAVERSAL,
            (in_root_content,),
            "E1",
        ),
        (
            "tr-abs-double-slash",
            b"/www//etc/passwd",
            TRAVERSAL,
            (in_root_content,),
            "never os.path.join(root, '/etc/passwd')",
        ),
        (
            "tr-abs-pct-slash",
            b"/www/%2fetc%2fpasswd",
            TRAVERSAL,
            (in_root_content,),
            "never os.path.join(root, '/etc/passwd')",
        ),
        (
            "tr-abs-pct-double-slash",
            b"/www/%2f%2fetc/passwd",
            TRAVERSAL,
            (in_root_content,),
            "never os.path.join(root, '//etc/passwd')",
        ),
        ("tr-abs-backslash", b"/www/%5cetc%5cpasswd", TRAVERSAL, (in_root_content,), "E1"),
        (
            "tr-abs-secret-pct",
            b"/www/" + SECRET_ABS_PCT,
            TRAVERSAL,
            (in_root_content,),
            "absolute path of the secret, slashes encoded",
        ),
        (
            "tr-abs-secret-raw",
            b"/www/" + SECRET_ABS,
            TRAVERSAL,
            (in_root_content,),
            "absolute path of the secret after /www/",
        ),
        (
            "tr-proc-environ",
            b"/www/%2e%2e/%2e%2e/%2e%2e/%2e%2e/proc/self/environ",
            TRAVERSAL,
            (in_root_content,),
            "no process environment",
        ),
        (
            "tr-proc-environ-abs",
            b"/www/%2fproc%2fself%2fenviron",
            TRAVERSAL,
            (in_root_content,),
            "no process environment",
        ),
        (
            "tr-dev-zero",
            b"/www/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/dev/zero",
            frozenset({301, 400, 403, 404}),
            (),
            "never stream a device",
        ),
        (
            "tr-nul-suffix-html",
            b"/www/etc/passwd%00.html",
            NUL_NAME,
            (),
            "NUL in a file name: no suffix truncation",
        ),
        ("tr-nul-mid", b"/www/etc%00/passwd", NUL_NAME, (), "NUL in a file name"),
        (
            "tr-backslash-raw",
            b"/www/..\\..\\..\\etc\\passwd",
            TRAVERSAL,
            (in_root_content,),
            "backslash is an ordinary byte on Linux",
        ),
        (
            "tr-trailing-dot",
            b"/www/etc/passwd.",
            frozenset({404}),
            (),
            "no Windows name normalisation",
        ),
        (
            "tr-trailing-space",
            b"/www/etc/passwd%20",
            frozenset({404}),
            (),
            "no Windows name normalisation",
        ),
        (
            "tr-ads",
            b"/www/etc/passwd::$DATA",
            frozenset({404}),
            (),
            "no Windows name normalisation",
        ),
        ("tr-uppercase", b"/www/ETC/PASSWD", frozenset({404}), (), "names are case-sensitive"),
        ("tr-tilde-user", b"/www/~root/.bashrc", frozenset({404}), (), "no ~user expansion"),
        (
            "tr-file-uri-in-path",
            b"/www/file:%2f%2f%2fetc%2fpasswd",
            TRAVERSAL,
            (in_root_content,),
            "no URI interpretation of the path",
        ),
    ]
    for id, target, statuses, checks, why in more:
        c.append(_c(id, get(target), statuses, why, checks=checks))
    return c


def symlink_cases() -> list[Case]:
    """Links out of the root are never followed (the brief's invariant; Go's http.Dir does)."""
    cases = [
        ("sym-out-file", b"/www/link_out", OUT_OF_ROOT),
        ("sym-out-file-abs", b"/www/link_out_abs", OUT_OF_ROOT),
        ("sym-host-passwd", b"/www/link_passwd", OUT_OF_ROOT),
        ("sym-dir-out-listing", b"/www/link_dir_out/", OUT_OF_ROOT),
        ("sym-dir-out-file", b"/www/link_dir_out/secret.txt", OUT_OF_ROOT),
        ("sym-dir-out-noslash", b"/www/link_dir_out", frozenset({301, 400, 403, 404})),
        ("sym-root-passwd", b"/www/link_root/etc/passwd", OUT_OF_ROOT),
        ("sym-root-listing", b"/www/link_root/", OUT_OF_ROOT),
        ("sym-proc-environ", b"/www/link_proc/environ", OUT_OF_ROOT),
        ("sym-chain", b"/www/link_chain", OUT_OF_ROOT),
        ("sym-sub-up", b"/www/sub/link_up", OUT_OF_ROOT),
        ("sym-encoded-name", b"/www/link%5fout", OUT_OF_ROOT),
        ("sym-via-pct-dotdot", b"/www/sub/%2e%2e/link_out", frozenset({301, 400, 403, 404})),
        ("sym-with-trailing-slash", b"/www/link_out/", frozenset({301, 400, 403, 404})),
        ("sym-broken", b"/www/link_broken", frozenset({403, 404})),
        ("sym-loop", b"/www/link_loop", frozenset({400, 403, 404, 500})),
    ]
    return [
        _c(id, get(target), statuses, "symlinks never lead out of the served root")
        for id, target, statuses in cases
    ]


def injection_cases() -> list[Case]:
    """Reflected text is escaped (deviation 1); nothing a client sends becomes a header."""
    script = b"<script>alert(1)</script>"
    esc_script = b"&lt;script&gt;alert(1)&lt;/script&gt;"
    return [
        _c("xss-path-encoded", get(b"/%3Cscript%3Ealert(1)%3C/script%3E"), OK, "dev. 1",
           checks=(escaped(script, esc_script),)),
        _c("xss-path-raw", get(b"/" + script), OK_OR_BAD, "dev. 1",
           checks=(escaped(script, esc_script),)),
        _c("xss-query-raw", get(b"/?q=" + script), OK_OR_BAD, "dev. 1",
           checks=(escaped(script, esc_script),)),
        _c("xss-query-encoded", get(b"/?q=%3Cscript%3E"), OK, "D3: query shown raw",
           checks=(body_lacks(b"<script>"), body_has(b"query=[q=%3Cscript%3E]"))),
        _c("xss-header-value", raw(b"GET / HTTP/1.1", b"Host: t", b"X-Evil: " + script), OK,
           "dev. 1", checks=(escaped(script, esc_script),)),
        _c("xss-header-name-token-chars", raw(b"GET / HTTP/1.1", b"Host: t", b"X-A&b: v"), OK,
           "dev. 1: header names too (canonical form X-A&b)",
           checks=(escaped(b"X-A&b:", b"X-A&amp;b:"),)),
        _c("xss-method", raw(b"A&B / HTTP/1.1", b"Host: t"), OK, "dev. 1: method too",
           checks=(escaped(b"method=A&B ", b"method=A&amp;B "),)),
        _c("xss-body", post(script, b"Content-Length: %d" % len(script)), OK, "dev. 1",
           checks=(escaped(script, esc_script),)),
        _c("xss-host", raw(b"GET / HTTP/1.1", b"Host: " + script), OK_OR_BAD,
           "dev. 1 (or 400: not a valid host)", checks=(escaped(script, esc_script),)),
        _c("xss-redirect-body", get(b"/www/./%3Cscript%3Ealert(1)%3C/script%3E"),
           frozenset({301}), "C2: redirect body never reflects markup",
           checks=(body_lacks(b"<script"),)),
        _c("crlf-mux-redirect", get(b"/x%0d%0aX-Injected:%20yes/./"), frozenset({301}),
           "C2 301: Location escaped, no header injection"),
        _c("crlf-dir-redirect", get(b"/www/odd/crlf%0D%0AX-Injected:%20yes"),
           frozenset({301, 400, 404}), "E8 301 for a directory named with CR/LF: no injection"),
        _c("crlf-query-redirect", get(b"/www?%0d%0aX-Injected:%20yes"), frozenset({301}),
           "C2: query kept encoded in Location"),
        _c("crlf-root-path", get(b"/a%0d%0aX-Injected:%20yes"), OK, "decoded CR/LF stays text"),
    ]  # fmt: skip


def pipelining_cases() -> list[Case]:
    h = b"Host: t"
    m1, s1 = smuggle("pl-error-stops")
    m2, s2 = smuggle("pl-bad-header-stops")
    m3, s3 = smuggle("pl-close-stops")
    m4, s4 = smuggle("pl-http10-stops")
    m5, s5 = smuggle("pl-bad-body-stops")
    fifty = b"".join(get(b"/p%d" % i) for i in range(50))
    return [
        _c("pl-three", get(b"/p1") + get(b"/p2") + get(b"/p3"), (OK, OK, OK),
           "HTTP/1.1 pipelining: answered in order", checks=(paths_in_order("/p1", "/p2", "/p3"),)),
        _c("pl-mixed", get(b"/www/etc/passwd") + raw(b"HEAD / HTTP/1.1", h) + get(b"/www/nope")
           + raw(b"OPTIONS * HTTP/1.1", h), (OK, OK, frozenset({404}), OK),
           "in order, HEAD has no body", heads=frozenset({1}),
           checks=(nth_body_is(0, PASSWD), nth_body_is(2, b"404 page not found\n"))),
        _c("pl-fifty", fifty, (OK,) * 50, "50 in one write",
           checks=(paths_in_order(*[f"/p{i}" for i in range(50)]),)),
        _c("pl-error-stops", get(b"/ok") + b"BOGUS\r\n\r\n" + s1, (OK, BAD),
           "after a 400 the connection closes; later requests never run", close=True,
           never=(m1,)),
        _c("pl-bad-header-stops", get(b"/ok") + raw(b"GET /x HTTP/1.1", h, b"bad header") + s2,
           (OK, BAD), "after a 400 nothing more is read", close=True, never=(m2,)),
        _c("pl-close-stops", raw(b"GET /a HTTP/1.1", h, b"Connection: close") + s3, (OK,),
           "C3: Connection: close ends the connection", close=True, never=(m3,)),
        _c("pl-http10-stops", raw(b"GET /a HTTP/1.0") + s4, (OK,),
           "C3: HTTP/1.0 closes after the response", close=True, never=(m4,)),
        _c("pl-bad-body-stops",
           post(b"5\r\nhello\r\nZZ\r\n", b"Transfer-Encoding: chunked") + s5, (BAD,),
           "bad framing: 400 and close", close=True, never=(m5,)),
        _c("pl-posts-framed",
           post(b"AAA", b"Content-Length: 3") + post(b"BBB", b"Content-Length: 3")
           + post(b"3\r\nCCC\r\n0\r\n\r\n", b"Transfer-Encoding: chunked") + get(b"/last"),
           (OK, OK, OK, OK), "bodies framed exactly",
           checks=(bodies_in_order(b"AAA", b"BBB", b"CCC"),)),
        _c("pl-head-then-get", raw(b"HEAD / HTTP/1.1", h) + get(b"/after-head"), (OK, OK),
           "HEAD response carries no body (D2)", heads=frozenset({0}),
           checks=(nth_has(1, b"path=[/after-head]"),)),
        _c("pl-garbage-after-body", post(b"hello", b"Content-Length: 5") + b"GARBAGE\r\n\r\n",
           (OK, BAD), "the request after the body is parsed on its own", close=True),
        _c("pl-one-byte-writes", tuple(bytes([b]) for b in get(b"/slow")), OK,
           "a head split into 1-byte segments", checks=(body_has(b"path=[/slow]"),)),
        _c("pl-split-crlf", (b"GET /s HTTP/1.1\r", 0.05, b"\nHost: t\r\n\r", 0.05, b"\n"), OK,
           "CR and LF in different segments", checks=(body_has(b"path=[/s]"),)),
        _c("pl-thousand", get(b"/") * 1000, (OK,) * 1000, "1000 pipelined requests, one write",
           timeout=30.0),
    ]  # fmt: skip


def content_length_at_most(limit: int) -> Check:
    """A response must not be an amplification of the request (multi-range abuse)."""

    def check(ex: Exchange) -> str | None:
        resp = _first(ex)
        size = len(resp.body) if resp.header("Content-Length") is None else None
        cl = resp.header("Content-Length")
        n = int(cl) if cl is not None and cl.isdigit() else size or 0
        return None if n <= limit else f"response of {n} bytes for a {limit}-byte bound"

    return check


def static_cases() -> list[Case]:
    """Hostile Range and conditional headers against the file server (E5), HEAD framing (D2)."""
    h = b"Host: t"
    big = 16 * MiB
    many_small = b"Range: bytes=" + b",".join([b"0-0"] * 1000)
    many_whole = b"Range: bytes=" + b",".join([b"0-"] * 100)
    ranged = frozenset({200, 206, 416})
    return [
        _c("range-1000-tiny", get(b"/www/etc/passwd", many_small), ranged,
           "E5/Go: ranges summing over the file size are ignored (no amplification)",
           checks=(content_length_at_most(64 * 1024),)),
        _c("range-100-whole-big", get(b"/www/big.bin", many_whole), ranged,
           "no 100x amplification of a 16 MiB file", checks=(content_length_at_most(big + 65536),),
           timeout=30.0),
        _c("range-huge-end", get(b"/www/etc/passwd", b"Range: bytes=0-99999999999999999999999"),
           ranged, "E5: an end past the file is clamped (or the range refused)"),
        _c("range-inverted", get(b"/www/etc/passwd", b"Range: bytes=5-1"),
           frozenset({200, 416}), "E5: invalid range -> 416 (or ignored)"),
        _c("range-double-dash", get(b"/www/etc/passwd", b"Range: bytes=--1"),
           frozenset({200, 416}), "malformed range"),
        _c("range-suffix-zero", get(b"/www/etc/passwd", b"Range: bytes=-0"), ranged,
           "empty suffix range"),
        _c("range-negative-start", get(b"/www/etc/passwd", b"Range: bytes=-5-10"),
           frozenset({200, 416}), "malformed range"),
        _c("range-unit-unknown", get(b"/www/etc/passwd", b"Range: lines=0-1"), ranged,
           "unknown range unit", checks=(body_has(PASSWD, when=200),)),
        _c("range-not-ascii", get(b"/www/etc/passwd", b"Range: bytes=\xd9\xa5-9"),
           frozenset({200, 416}), "non-ASCII digits in a range"),
        _c("ims-garbage", get(b"/www/etc/passwd", b"If-Modified-Since: \xff\xfe garbage"), OK,
           "E5: an unparsable date is ignored", checks=(body_is(PASSWD),)),
        _c("ims-far-future", get(b"/www/etc/passwd",
                                 b"If-Modified-Since: Fri, 01 Jan 9999 00:00:00 GMT"),
           frozenset({200, 304}), "E5: date >= mtime -> 304"),
        _c("head-big-file", raw(b"HEAD /www/big.bin HTTP/1.1", h) + get(b"/after-head"),
           (OK, OK), "D2: HEAD sends headers only, the next response follows at once",
           heads=frozenset({0}), checks=(header_is("Content-Length", str(big)),
                                         nth_has(1, b"path=[/after-head]"))),
        _c("head-with-body", raw(b"HEAD / HTTP/1.1", h, b"Content-Length: 5", body=b"hello")
           + get(b"/after-head-body"), (OK, OK), "the HEAD request's body is framed and skipped",
           heads=frozenset({0}), checks=(nth_has(1, b"path=[/after-head-body]"),)),
        _c("static-file-trailing-slash", get(b"/www/etc/passwd/"), frozenset({301}), "E8",
           checks=(location_is("../passwd"),)),
        _c("static-pct-slash-inside", get(b"/www/etc%2fpasswd"), frozenset({200, 301, 404}),
           "an encoded slash inside the root", checks=(body_has(PASSWD, when=200),)),
        _c("static-dir-no-slash", get(b"/www/etc"), frozenset({301}), "E8",
           checks=(location_is("etc/"),)),
        _c("static-post-body", post(b"ignored", b"Content-Length: 7", target=b"/www/etc/passwd"),
           OK, "E3: any method returns the file", checks=(body_is(PASSWD),), close=False),
    ]  # fmt: skip


def misc_cases() -> list[Case]:
    h = b"Host: t"
    m1, s1 = smuggle("smuggle-te-obs-fold")
    m2, s2 = smuggle("smuggle-te-two-lines")
    m3, s3 = smuggle("smuggle-te-name-upper")
    return [
        _c("smuggle-te-obs-fold",
           raw(b"POST / HTTP/1.1", h, b"Transfer-Encoding:", b" chunked", b"Content-Length: 5",
               body=b"0\r\n\r\n" + s1), frozenset({400, 501}),
           "RFC 9112 5.2: obs-fold rejected (or unfolded, then CL+TE -> 400)", close=True,
           never=(m1,)),
        _c("smuggle-te-two-lines",
           raw(b"POST / HTTP/1.1", h, b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity",
               body=b"0\r\n\r\n" + s2), UNSUPPORTED_TE, "the combined list is not 'chunked'",
           close=True, never=(m2,)),
        _c("smuggle-te-name-upper",
           raw(b"POST / HTTP/1.1", h, b"TRANSFER-ENCODING: chunked", b"CONTENT-LENGTH: 5",
               body=b"0\r\n\r\n" + s3), BAD, "brief: CL and TE together -> 400", close=True,
           never=(m3,)),
        _c("pl-http10-keepalive",
           raw(b"GET /k1 HTTP/1.0", b"Connection: keep-alive")
           + raw(b"GET /k2 HTTP/1.0", b"Connection: keep-alive"), (OK, OK),
           "C3: HTTP/1.0 with keep-alive stays open", checks=(paths_in_order("/k1", "/k2"),)),
        _c("hd-value-invalid-utf8", raw(b"GET / HTTP/1.1", h, b"X-Bin: \xff\xfe\x80"), OK,
           "obs-text need not be UTF-8"),
        _c("rl-query-invalid-utf8", get(b"/?q=\xff\xfe"), OK_OR_BAD, "raw bytes in the query"),
        _c("hd-host-7000", raw(b"GET / HTTP/1.1", b"Host: " + b"h" * 7000), OK_OR_BAD,
           "a long Host under the field cap"),
        _c("tr-many-pct-dotdot", get(b"/www/" + b"%2e%2e/" * 1000 + b"etc/passwd"), TRAVERSAL,
           "1000 encoded '..' segments (7 KB line)", checks=(in_root_content,)),
        _c("tr-many-dot-segments", get(b"/www" + b"/." * 3000 + b"/etc/passwd"),
           frozenset({301}), "C2: 3000 '.' segments cleaned in one redirect",
           checks=(location_is("/www/etc/passwd"),)),
        _c("tr-two-dot-leader", get(b"/www/%e2%80%a5/etc/passwd"), frozenset({404}),
           "U+2025 is not '..'"),
        _c("hd-expect-100-over-cap",
           raw(b"POST / HTTP/1.1", h, b"Expect: 100-continue", b"Content-Length: 2097152"),
           TOO_LARGE, "dev. 5: refuse the declared size instead of inviting the upload"),
    ]  # fmt: skip


def halfclose_cases() -> list[Case]:
    """The client half-closes (FIN) mid-request: the server must close too, not wait forever."""
    te = b"Transfer-Encoding: chunked"
    gone = frozenset({400, 408})
    return [
        _c("halfclose-mid-request-line", (b"GET /partial", SHUT), (), "EOF mid-head",
           close=True, maybe=gone),
        _c("halfclose-mid-headers", (b"GET / HTTP/1.1\r\nHost: t\r\nX-A: b", SHUT), (),
           "EOF mid-head", close=True, maybe=gone),
        _c("halfclose-mid-body", (raw(b"POST / HTTP/1.1", b"Host: t", b"Content-Length: 100",
                                      body=b"0123456789"), SHUT), (),
           "EOF mid-body", close=True, maybe=gone),
        _c("halfclose-mid-chunk", (post(b"a\r\nhel", te), SHUT), (), "EOF mid-chunk",
           close=True, maybe=gone),
        _c("halfclose-before-last-chunk", (post(b"5\r\nhello\r\n", te), SHUT), (),
           "EOF before the last chunk", close=True, maybe=gone),
        _c("halfclose-after-request", (get(b"/fin"), SHUT), (),
           "a complete request then FIN: answered (or dropped), then closed", close=True,
           maybe=OK),
    ]  # fmt: skip


def all_cases() -> list[Case]:
    cases = (
        controls()
        + request_line_cases()
        + header_cases()
        + framing_cases()
        + body_cap_cases()
        + traversal_cases()
        + symlink_cases()
        + injection_cases()
        + pipelining_cases()
        + halfclose_cases()
        + static_cases()
        + misc_cases()
    )
    ids = [c.id for c in cases]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise ValueError(f"duplicate case ids: {sorted(dupes)}")
    return cases


def evaluate(case: Case, ex: Exchange, tree: Tree, log_text: str) -> list[str]:
    """Every way the exchange breaks the case's expectation or a global invariant."""
    problems = [f"LEAK: {leak}" for leak in tree.leaks(ex.raw)]
    if ex.followup is not None:
        problems += [f"LEAK in follow-up: {leak}" for leak in tree.leaks(ex.followup.body)]
    if ex.unparseable:
        problems.append(f"invalid HTTP from the server: {ex.unparseable}")
    for i, resp in enumerate(ex.responses):
        if resp.header_all("X-Injected"):
            problems.append(f"response {i} carries an injected header")
    got = [r.status for r in ex.responses]
    want = [sorted(s) for s in case.statuses]
    if case.maybe is not None:
        if len(got) > 1 or any(s not in case.maybe for s in got):
            problems.append(f"statuses {got}, want none or one of {sorted(case.maybe)}")
    elif len(got) < len(want):
        how = "closed" if ex.closed else "timed out" if ex.timed_out else "stopped"
        problems.append(f"{len(got)} of {len(want)} responses ({how}); statuses {got}, want {want}")
    elif len(got) > len(want):
        problems.append(f"extra responses: statuses {got}, want {want}")
    for i, (status, allowed) in enumerate(zip(got, case.statuses, strict=False)):
        if status not in allowed:
            problems.append(f"response {i}: status {status}, want one of {sorted(allowed)}")
    if case.close is True and not ex.closed:
        problems.append("connection left open (must close)")
    if case.close is False:
        if ex.closed:
            problems.append("connection closed (must stay usable)")
        elif ex.followup is None or ex.followup.status != 200:
            problems.append(f"follow-up on the same connection: {ex.followup_error}")
    if len(got) >= len(want) and not ex.unparseable:
        for check in case.checks:
            msg = check(ex)
            if msg:
                problems.append(msg)
    handler_lines = [
        ln for ln in log_text.splitlines() if "rootHandler" in ln or "staticHandler" in ln
    ]
    for marker in case.never:
        if any(marker in ln for ln in handler_lines):
            problems.append(f"SMUGGLED request {marker} reached a handler")
    return problems
