"""What goes back to the client: handler results, the Response value, and its serialisation.

The handler-result types (`Result`, `Deferred`, `FileStream`) live here, below both the app
modules and protocol.py, so the protocol can run what a handler returns without importing the
application.

`encode` follows net/http's chunkWriter.writeHeader: automatic Content-Length when the handler's
output fits the 2048-byte buffer, chunked encoding above that (HTTP/1.1), close-delimited bodies
for HTTP/1.0, sniffed Content-Type, `Connection` handling and the header order (handler headers
sorted by key, then Date, Content-Length, Content-Type, Connection, Transfer-Encoding).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    class RequestLike(Protocol):
        """The request facts that shape a response (http.Request has them)."""

        method: str
        minor: int
        wants_close: bool
        wants10ka: bool


STATUS_TEXT: dict[int, str] = {
    100: "Continue",
    101: "Switching Protocols",
    102: "Processing",
    103: "Early Hints",
    200: "OK",
    201: "Created",
    202: "Accepted",
    203: "Non-Authoritative Information",
    204: "No Content",
    205: "Reset Content",
    206: "Partial Content",
    207: "Multi-Status",
    208: "Already Reported",
    226: "IM Used",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    414: "Request URI Too Long",
    415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable",
    417: "Expectation Failed",
    418: "I'm a teapot",
    421: "Misdirected Request",
    422: "Unprocessable Entity",
    423: "Locked",
    424: "Failed Dependency",
    425: "Too Early",
    426: "Upgrade Required",
    428: "Precondition Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    451: "Unavailable For Legal Reasons",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates",
    507: "Insufficient Storage",
    508: "Loop Detected",
    510: "Not Extended",
    511: "Network Authentication Required",
}

BUFFER_BEFORE_CHUNKING = 2048


def status_line(minor: int, code: int) -> str:
    proto = "HTTP/1.1 " if minor >= 1 else "HTTP/1.0 "
    text = STATUS_TEXT.get(code)
    if text:
        return f"{proto}{code} {text}\r\n"
    return f"{proto}{code:03d} status code {code}\r\n"


def body_allowed(code: int) -> bool:
    return not (100 <= code <= 199 or code in (204, 304))


# --- Content sniffing (net/http DetectContentType, mimesniff) ---------------------------------

_WS = b"\t\n\x0c\r "
_HTML_SIGS = (
    b"<!DOCTYPE HTML",
    b"<HTML",
    b"<HEAD",
    b"<SCRIPT",
    b"<IFRAME",
    b"<H1",
    b"<DIV",
    b"<FONT",
    b"<TABLE",
    b"<A",
    b"<STYLE",
    b"<TITLE",
    b"<B",
    b"<BODY",
    b"<BR",
    b"<P",
    b"<!--",
)
_EXACT1 = ((b"%PDF-", "application/pdf"), (b"%!PS-Adobe-", "application/postscript"))
_EXACT2 = (
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"BM", "image/bmp"),
)
_BINARY = frozenset([*range(9), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])


def _masked(data: bytes, mask: bytes, pat: bytes) -> bool:
    if len(data) < len(mask):
        return False
    return all(data[i] & mask[i] == pat[i] for i in range(len(mask)))


def sniff(data: bytes) -> str:
    """DetectContentType: the MIME type of up to the first 512 bytes of data."""
    data = data[:512]
    ws = len(data) - len(data.lstrip(_WS))
    d = data[ws:]
    upper = d[:15].upper()
    for sig in _HTML_SIGS:
        n = len(sig)
        if len(d) >= n + 1 and upper[:n] == sig and d[n] in b" >":
            return "text/html; charset=utf-8"
    if d[:5] == b"<?xml":
        return "text/xml; charset=utf-8"
    for sig, ct in _EXACT1:
        if data.startswith(sig):
            return ct
    if _masked(data, b"\xff\xff\x00\x00", b"\xfe\xff\x00\x00"):
        return "text/plain; charset=utf-16be"
    if _masked(data, b"\xff\xff\x00\x00", b"\xff\xfe\x00\x00"):
        return "text/plain; charset=utf-16le"
    if _masked(data, b"\xff\xff\xff\x00", b"\xef\xbb\xbf\x00"):
        return "text/plain; charset=utf-8"
    for sig, ct in _EXACT2:
        if data.startswith(sig):
            return ct
    riff = b"\xff\xff\xff\xff\x00\x00\x00\x00\xff\xff\xff\xff"
    if _masked(data, riff + b"\xff\xff", b"RIFF\x00\x00\x00\x00WEBPVP"):
        return "image/webp"
    if data.startswith(b"\x00\x00\x01\x00"):
        return "image/vnd.microsoft.icon"
    if data.startswith(b"OggS\x00"):
        return "application/ogg"
    if _masked(data, riff, b"RIFF\x00\x00\x00\x00WAVE"):
        return "audio/wave"
    for sig, ct in (
        (b"\x1a\x45\xdf\xa3", "video/webm"),
        (b"Rar \x1a\x07\x00", "application/x-rar-compressed"),
        (b"PK\x03\x04", "application/zip"),
        (b"\x1f\x8b\x08", "application/x-gzip"),
    ):
        if data.startswith(sig):
            return ct
    if len(data) >= 12:
        box = int.from_bytes(data[:4], "big")
        if box % 4 == 0 and len(data) >= box and data[4:8] == b"ftyp":
            for st in range(8, box, 4):
                if st != 12 and data[st : st + 3] == b"mp4":
                    return "video/mp4"
    if not _BINARY.intersection(d):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


# --- Handler results ---------------------------------------------------------------------------


class Deferred:
    """A handler result that needs blocking work (run off the event loop) before `data`."""

    __slots__ = ("close", "data", "work")

    def __init__(self, work: Callable[[], None], data: bytes, close: bool) -> None:
        self.work = work
        self.data = data
        self.close = close


class FileStream:
    """Body segments of a large file (bytes, or (offset, length) read from fd), sent lazily."""

    __slots__ = ("fd", "segments")

    def __init__(self, fd: int, segments: list[bytes | tuple[int, int]]) -> None:
        self.fd = fd
        self.segments = segments

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# What a handler returns: (head + body bytes, close after it, a FileStream still to send), or a
# Deferred. Plain bytes rather than a Response: the hot paths hand over precomputed templates.
Result = tuple[bytes, bool, "FileStream | None"] | Deferred


# --- Response ----------------------------------------------------------------------------------


class Response:
    """What a handler produced: status, its own headers, and the bytes it wrote.

    `stream` (file segments `(fd, offset, length)` or bytes) is used instead of `body` for
    large static files; those responses always carry an explicit Content-Length.
    `informational` is a 1xx header block written before the final response (net/http does
    that when a handler calls WriteHeader with a 1xx code).
    """

    __slots__ = ("body", "close", "headers", "informational", "status", "stream")

    def __init__(
        self,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        self.status = status
        self.headers = headers if headers is not None else []
        self.body = body
        self.stream: list[bytes | tuple[int, int, int]] | None = None
        self.close = False
        self.informational = b""


def _get(headers: list[tuple[str, str]], key: str) -> str | None:
    for k, v in headers:
        if k == key:
            return v
    return None


def encode(resp: Response, req: RequestLike, keepalives: bool, date: bytes) -> tuple[bytes, bool]:
    """Serialise resp for a request; returns (head + body bytes, close_after_reply)."""
    minor = req.minor
    is_head = req.method == "HEAD"
    wants_close = req.wants_close
    wants10ka = req.wants10ka
    code = resp.status
    headers = resp.headers
    body = resp.body
    allowed = body_allowed(code)
    written = len(body)
    has_cl_hdr = _get(headers, "Content-Length") is not None
    extra_cl: int | None = None
    if (
        resp.stream is None
        and written <= BUFFER_BEFORE_CHUNKING
        and allowed
        and not has_cl_hdr
        and (not is_head or written > 0)
    ):
        extra_cl = written
    has_cl = has_cl_hdr or extra_cl is not None
    conn_hdr = _get(headers, "Connection") or ""
    close = resp.close
    extra_conn = ""
    if wants10ka and (is_head or has_cl or not allowed):
        if _get(headers, "Connection") is None:
            extra_conn = "keep-alive"
    elif minor == 0 or wants_close:
        close = True
    if conn_hdr == "close" or not keepalives:
        close = True
    extra_ct = ""
    drop: tuple[str, ...] = ()
    if allowed:
        if written > 0 and _get(headers, "Content-Type") is None:
            extra_ct = sniff(body)
    else:
        drop = (
            ("Content-Type", "Content-Length", "Transfer-Encoding")
            if code == 304
            else ("Content-Length", "Transfer-Encoding")
        )
    chunking = False
    if is_head or not allowed or code == 204 or has_cl:
        pass
    elif minor >= 1:
        chunking = True
    else:
        close = True
    if chunking:
        drop = (*drop, "Content-Length")
    if close and (not keepalives or not has_token_close(conn_hdr)):
        drop = (*drop, "Connection")
        if minor >= 1:
            extra_conn = "close"
    parts = [status_line(minor, code)]
    for k, v in sorted(headers, key=_key0):
        if k not in drop:
            if "\r" in v or "\n" in v:  # net/http: headerNewlineToSpace, then trim
                parts.append(f"{k}: {v.replace(chr(13), ' ').replace(chr(10), ' ').strip()}\r\n")
            else:
                parts.append(f"{k}: {v}\r\n")
    parts.append("Date: ")
    out = [resp.informational, "".join(parts).encode("latin-1"), date]
    tail = "\r\n"
    if extra_cl is not None:
        tail += f"Content-Length: {extra_cl}\r\n"
    if extra_ct:
        tail += f"Content-Type: {extra_ct}\r\n"
    if extra_conn:
        tail += f"Connection: {extra_conn}\r\n"
    if chunking:
        tail += "Transfer-Encoding: chunked\r\n"
    out.append((tail + "\r\n").encode("latin-1"))
    if not is_head and allowed and resp.stream is None:
        if chunking:
            if written:
                out.append(b"%x\r\n" % written)
                out.append(body)
                out.append(b"\r\n0\r\n\r\n")
            else:
                out.append(b"0\r\n\r\n")
        else:
            out.append(body)
    return b"".join(out), close


def _key0(h: tuple[str, str]) -> str:
    return h[0]


def has_token_close(v: str) -> bool:
    return bool(v) and any(t.strip(" \t").lower() == "close" for t in v.split(","))


def error_response(msg: str, code: int, headers: list[tuple[str, str]] | None = None) -> Response:
    """http.Error: plain text, nosniff, body msg + newline (Content-Length dropped)."""
    hs = [h for h in (headers or []) if h[0] not in ("Content-Length",)]
    hs = [h for h in hs if h[0] not in ("Content-Type", "X-Content-Type-Options")]
    hs.append(("Content-Type", "text/plain; charset=utf-8"))
    hs.append(("X-Content-Type-Options", "nosniff"))
    return Response(code, hs, (msg + "\n").encode("latin-1"))
