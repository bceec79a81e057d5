"""Sans-IO HTTP/1.x request parser: bytes in, Request objects out, HttpError on bad input.

No asyncio here (STYLE convention 11). Text is kept as latin-1 `str` so every byte the client sent
survives unchanged into the page and the logs, exactly like Go strings do.

Fast path: find the blank line, validate the whole head with one translate() and two counts,
split it once. No regexes: `import re` alone costs ~6 ms of cold start, and the hand-written
checks below are as fast or faster on real heads.
Limits (config.ServerConfig) are checked on the complete head *and* on an incomplete tail, so a
line that never ends cannot grow without bound.
"""

from __future__ import annotations

from .config import ServerConfig
from .errors import (
    BadRequestError,
    HeaderTooLargeError,
    PayloadTooLargeError,
    UnsupportedTEError,
    VersionNotSupportedError,
)

_CTL = bytes((*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F))  # CTLs except HTAB, LF, CR
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TCHAR = frozenset(_ALNUM + "!#$%&'*+-.^_`|~")  # RFC 9110 token characters
_HOST_CHAR = frozenset(_ALNUM + "!$%&'()*+,-.:;=[]_~")  # httpguts.ValidHostHeader's table
_HEX_BYTES = frozenset(b"0123456789abcdefABCDEF")


def _bad_head(head: bytes) -> bool:
    """A control byte other than HTAB, or a CR that does not start CRLF: never valid in a head.

    Every CRLF holds one CR and no CR is in two, so equal counts mean every CR starts a CRLF.
    """
    if len(head.translate(None, _CTL)) != len(head):
        return True
    return head.count(b"\r") != head.count(b"\r\n")


def is_token(s: str) -> bool:
    """A non-empty RFC 9110 token (method, header name, scheme)."""
    return bool(s) and _TCHAR.issuperset(s)


def _chunk_size(line: bytes) -> int | None:
    """A chunk-size line (1-16 hex digits, optional `;ext` without CR/LF), or None if bad."""
    size, semi, ext = line.partition(b";")
    if not 0 < len(size) <= 16 or not _HEX_BYTES.issuperset(size):
        return None
    if semi and (b"\r" in ext or b"\n" in ext):
        return None
    return int(size, 16)


_HEXVAL = {c: int(c, 16) for c in "0123456789abcdefABCDEF"}
# "%XX" -> its byte as a latin-1 char; built from digit values (484 int() calls cost ~0.1 ms).
_UNHEX = {a + b: chr(x * 16 + y) for a, x in _HEXVAL.items() for b, y in _HEXVAL.items()}
_KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"))

_canon_cache: dict[str, str] = {}


def canonical_key(k: str) -> str:
    """textproto.CanonicalMIMEHeaderKey for a valid token (`x-lower` -> `X-Lower`)."""
    c = _canon_cache.get(k)
    if c is not None:
        return c
    if not is_token(k):
        raise BadRequestError()
    c = "-".join(p[:1].upper() + p[1:].lower() for p in k.split("-"))
    if len(_canon_cache) < 1024:
        _canon_cache[k] = c
    return c


def unescape_path(s: str) -> str:
    """url.PathUnescape semantics: every % must start a valid two-digit hex escape."""
    parts = s.split("%")
    out = [parts[0]]
    for p in parts[1:]:
        ch = _UNHEX.get(p[:2])
        if ch is None:
            raise BadRequestError()
        out.append(ch)
        out.append(p[2:])
    return "".join(out)


def has_token(v: str, token: str) -> bool:
    """httpguts.HeaderValuesContainsToken for one value, case-insensitively."""
    if not v:
        return False
    return any(t.strip(" \t").lower() == token for t in v.split(","))


class Request:
    """One parsed request. `headers` excludes Host (Go keeps it in r.Host) and framing TE."""

    __slots__ = (
        "body",
        "expect_fail",
        "headers",
        "hmap",
        "host",
        "method",
        "minor",
        "path",
        "query",
        "raw_path",
        "remote",
        "target",
        "wants10ka",
        "wants_close",
    )

    def __init__(self) -> None:
        self.body = b""
        self.expect_fail = False
        self.headers: list[tuple[str, str]] = []
        self.hmap: dict[str, str] = {}
        self.host = ""
        self.method = "GET"
        self.minor = 1
        self.path = "/"
        self.query = ""
        self.raw_path = "/"
        self.remote = ""
        self.target = "/"
        self.wants10ka = False
        self.wants_close = False


_HEAD, _BODY, _CHUNK_SIZE_ST, _CHUNK_DATA, _CHUNK_TRAILER = range(5)


class Parser:
    """Incremental parser for one connection. feed() bytes, then call next() until None."""

    __slots__ = (
        "_body",
        "_bodylen",
        "_buf",
        "_cfg",
        "_cur",
        "_pos",
        "_remaining",
        "_state",
        "_trailer",
        "want_continue",
    )

    def __init__(self, cfg: ServerConfig) -> None:
        self._cfg = cfg
        self._buf = b""
        self._pos = 0
        self._state = _HEAD
        self._cur: Request | None = None
        self._remaining = 0
        self._body: list[bytes] = []
        self._bodylen = 0
        self._trailer = 0
        self.want_continue = False

    def feed(self, data: bytes) -> None:
        if self._pos >= len(self._buf):
            self._buf = data
        else:
            self._buf = self._buf[self._pos :] + data
        self._pos = 0

    def buffered(self) -> int:
        """Bytes received and not yet consumed."""
        return len(self._buf) - self._pos

    def idle(self) -> bool:
        """True between requests with nothing pending (keep-alive idle)."""
        return self._state == _HEAD and self._pos >= len(self._buf)

    def in_body(self) -> bool:
        return self._state != _HEAD

    def next(self) -> Request | None:
        """The next complete request, or None if more bytes are needed."""
        if self._state == _HEAD:
            buf = self._buf
            pos = self._pos
            e = buf.find(b"\r\n\r\n", pos)
            if e < 0:
                if pos >= len(buf):
                    return None
                if b"\n\n" in buf or b"\n\r\n" in buf:
                    return self._slow_head()
                self._check_partial(buf, pos)
                return None
            head = buf[pos:e]
            if head.count(b"\n") != head.count(b"\r\n"):
                return self._slow_head()
            if e - pos > self._cfg.max_head:
                raise HeaderTooLargeError()
            self._pos = e + 4
            req = self._parse_head(head)
            if self._state == _HEAD:
                return req
            self._cur = req
        return self._read_body()

    def _check_partial(self, buf: bytes, pos: int) -> None:
        cfg = self._cfg
        n = len(buf) - pos
        if n > cfg.max_head:
            raise HeaderTooLargeError()
        nl = buf.find(b"\n", pos)
        if nl < 0:
            if n > cfg.max_request_line:
                raise HeaderTooLargeError()
        else:
            last = buf.rfind(b"\n", pos) + 1
            if len(buf) - last > cfg.max_header_field:
                raise HeaderTooLargeError()

    def _slow_head(self) -> Request | None:
        """Heads with bare-LF line ends (net/http accepts them): split line by line."""
        buf, pos = self._buf, self._pos
        lines: list[bytes] = []
        i = pos
        while True:
            j = buf.find(b"\n", i)
            if j < 0:
                self._check_partial(buf, pos)
                return None
            line = buf[i:j]
            if line.endswith(b"\r"):
                line = line[:-1]
            i = j + 1
            if not line and lines:
                break
            lines.append(line)
            if i - pos > self._cfg.max_head:
                raise HeaderTooLargeError()
        self._pos = i
        req = self._parse_head(b"\r\n".join(lines))
        if self._state == _HEAD:
            return req
        self._cur = req
        return self._read_body()

    def _parse_head(self, head: bytes) -> Request:
        cfg = self._cfg
        if _bad_head(head):
            raise BadRequestError()
        lines = head.decode("latin-1").split("\r\n")
        rl = lines[0]
        if len(rl) > cfg.max_request_line:
            raise HeaderTooLargeError()
        if len(lines) > cfg.max_headers + 1:
            raise HeaderTooLargeError()
        parts = rl.split(" ", 2)
        if len(parts) != 3:
            raise BadRequestError()
        method, target, proto = parts
        req = Request()
        if proto == "HTTP/1.1":
            pass
        elif proto == "HTTP/1.0":
            req.minor = 0
        elif len(proto) == 8 and proto[:5] == "HTTP/" and proto[5].isdigit() and proto[6] == ".":
            if not proto[7].isdigit():
                raise BadRequestError()
            if proto[5] != "1":
                raise VersionNotSupportedError()
            req.minor = int(proto[7])
        else:
            raise BadRequestError()
        if method not in _KNOWN_METHODS and not is_token(method):
            raise BadRequestError()
        req.method = method
        req.target = target
        if not target:
            raise BadRequestError()
        if target[0] == "/":
            q = target.find("?")
            if q >= 0:
                raw, req.query = target[:q], target[q + 1 :]
            else:
                raw = target
            req.raw_path = raw
            req.path = unescape_path(raw) if "%" in raw else raw
        elif target == "*":
            req.raw_path = req.path = "*"
        else:
            self._absolute(req, target)

        hmap = req.hmap
        headers = req.headers
        host: str | None = None
        maxf = cfg.max_header_field
        for line in lines[1:]:
            if len(line) > maxf:
                raise HeaderTooLargeError()
            k, sep, v = line.partition(":")
            if not sep:
                raise BadRequestError()
            ck = _canon_cache.get(k) or canonical_key(k)
            v = v.strip(" \t")
            if ck == "Host":
                if host is not None:
                    raise BadRequestError("too many Host headers")
                host = v
                continue
            if ck in hmap:
                if ck == "Content-Length":
                    if v != hmap[ck]:
                        raise BadRequestError()
                    continue
                if ck == "Transfer-Encoding":
                    raise UnsupportedTEError()
            else:
                hmap[ck] = v
            headers.append((ck, v))
        if host is None:
            if req.minor >= 1:
                raise BadRequestError("missing required Host header")
        elif not _HOST_CHAR.issuperset(host):
            raise BadRequestError("malformed Host header")
        if not req.host:
            req.host = host or ""
        if hmap:
            conn = hmap.get("Connection")
            if conn is not None:
                # r.Close looks at every Connection value; wants10KeepAlive at the first.
                req.wants_close = any(
                    has_token(v, "close") for k, v in headers if k == "Connection"
                )
                req.wants10ka = req.minor == 0 and has_token(conn, "keep-alive")
            if "Transfer-Encoding" in hmap or "Content-Length" in hmap or "Expect" in hmap:
                self._framing(req)
        return req

    def _absolute(self, req: Request, target: str) -> None:
        """absolute-form: scheme://authority[/path][?query]; the authority becomes r.Host."""
        scheme, sep, rest = target.partition("://")
        if not sep or not scheme or not scheme[0].isalpha() or not is_token(scheme):
            raise BadRequestError()
        cut = len(rest)
        for ch in "/?":
            i = rest.find(ch)
            if 0 <= i < cut:
                cut = i
        req.host = rest[:cut]
        rest = rest[cut:]
        q = rest.find("?")
        raw, req.query = (rest[:q], rest[q + 1 :]) if q >= 0 else (rest, "")
        req.raw_path = raw
        req.path = unescape_path(raw) if "%" in raw else raw

    def _framing(self, req: Request) -> None:
        hmap = req.hmap
        te = hmap.get("Transfer-Encoding")
        cl = hmap.get("Content-Length")
        if te is not None:
            if cl is not None or req.minor == 0:
                raise BadRequestError()  # CL+TE or TE on HTTP/1.0: refuse, no smuggling
            if te.lower() != "chunked":
                raise UnsupportedTEError()
            del hmap["Transfer-Encoding"]
            req.headers = [h for h in req.headers if h[0] != "Transfer-Encoding"]
            self._state = _CHUNK_SIZE_ST
            self._body = []
            self._bodylen = 0
            self._trailer = 0
        elif cl is not None:
            if not cl or len(cl) > 18 or not (cl.isascii() and cl.isdigit()):
                raise BadRequestError()
            n = int(cl)
            if n > self._cfg.max_body:
                raise PayloadTooLargeError()
            if n:
                self._state = _BODY
                self._remaining = n
        expect = hmap.get("Expect")
        if expect is not None:
            if has_token(expect, "100-continue") and req.minor >= 1 and self._state != _HEAD:
                self.want_continue = True
            else:
                req.expect_fail = True

    def _read_body(self) -> Request | None:
        req = self._cur
        assert req is not None
        buf = self._buf
        if self._state == _BODY:
            n = self._remaining
            if len(buf) - self._pos < n:
                return None
            req.body = buf[self._pos : self._pos + n]
            self._pos += n
            return self._done(req)
        cfg = self._cfg
        pos = self._pos
        try:
            while True:
                st = self._state
                if st == _CHUNK_SIZE_ST:
                    j = buf.find(b"\r\n", pos)
                    lf = buf.find(b"\n", pos)
                    if lf >= 0 and (lf == pos or buf[lf - 1] != 13):
                        raise BadRequestError()  # strict: chunk lines end in CRLF
                    if j < 0:
                        if len(buf) - pos > cfg.max_chunk_line:
                            raise BadRequestError()
                        return None
                    if j - pos > cfg.max_chunk_line:
                        raise BadRequestError()
                    n_or_none = _chunk_size(buf[pos:j])
                    if n_or_none is None:
                        raise BadRequestError()
                    n = n_or_none
                    pos = j + 2
                    if n == 0:
                        self._state = _CHUNK_TRAILER
                    else:
                        if self._bodylen + n > cfg.max_body:
                            raise PayloadTooLargeError()
                        self._remaining = n
                        self._state = _CHUNK_DATA
                elif st == _CHUNK_DATA:
                    n = self._remaining
                    if len(buf) - pos < n + 2:
                        if len(buf) - pos == n + 1 and buf[pos + n] != 13:
                            raise BadRequestError()
                        return None
                    if buf[pos + n : pos + n + 2] != b"\r\n":
                        raise BadRequestError()
                    self._body.append(buf[pos : pos + n])
                    self._bodylen += n
                    pos += n + 2
                    self._state = _CHUNK_SIZE_ST
                else:  # trailer lines until an empty line; their content is discarded
                    j = buf.find(b"\r\n", pos)
                    lf = buf.find(b"\n", pos)
                    if lf >= 0 and (lf == pos or buf[lf - 1] != 13):
                        raise BadRequestError()
                    if j < 0:
                        if len(buf) - pos + self._trailer > cfg.max_head:
                            raise HeaderTooLargeError()
                        return None
                    if j == pos:
                        pos += 2
                        req.body = b"".join(self._body)
                        self._body = []
                        return self._done(req)
                    line = buf[pos:j]
                    self._trailer += j - pos + 2
                    if self._trailer > cfg.max_head or b":" not in line or _bad_head(line):
                        raise (
                            HeaderTooLargeError()
                            if self._trailer > cfg.max_head
                            else BadRequestError()
                        )
                    pos = j + 2
        finally:
            self._pos = pos

    def _done(self, req: Request) -> Request:
        self._state = _HEAD
        self._cur = None
        self.want_continue = False
        return req
