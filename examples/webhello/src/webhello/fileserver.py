"""The /www/ file server: http.FileServer(http.Dir(cwd)) behind http.StripPrefix("/www").

One job: answer a request for a file or directory below the web root the way net/http does:
index.html and slash redirects, directory listings, MIME types (Go's built-in table, then
sniffing), conditional requests without ETags (If-Match, If-Unmodified-Since, If-None-Match,
If-Modified-Since, If-Range), byte ranges (206, multipart/byteranges, 416), confinement to the
root (symlinks out are 404, the TLS key is 403) and a stat-validated cache of small files.
Large files go back as a FileStream that protocol.py sends as the client reads.

handlers.App does the request accounting (count, log line, quota) and answers cache hits itself;
everything else about /www/ is here.
"""

from __future__ import annotations

import os
import stat

from .goformat import html_escape, http_date, parse_http_time
from .gopath import escape_path, go_base
from .response import FileStream, Response, encode, error_response, sniff

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from .config import ServerConfig
    from .http import Request
    from .log import Clock
    from .response import Result

# Go's built-in extension table (mime.builtinTypesLower); nothing is read from /etc/mime.types.
MIME_TYPES = {
    ".avif": "image/avif",
    ".css": "text/css; charset=utf-8",
    ".gif": "image/gif",
    ".htm": "text/html; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".jpeg": "image/jpeg",
    ".jpg": "image/jpeg",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".mjs": "text/javascript; charset=utf-8",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".webp": "image/webp",
    ".xml": "text/xml; charset=utf-8",
}

# Request headers that make a cached file take the full path (conditions, ranges).
CONDITIONAL_HEADERS = frozenset(
    ("Range", "If-Modified-Since", "If-Match", "If-None-Match", "If-Unmodified-Since")
)


class CachedFile:
    """A cached static file and its encoded header prefix (up to `Date: `).

    Valid while a fresh stat gives the same `key` (ino, dev, size, mtime, ctime): edits,
    replacements, chmods and re-pointed symlinks are seen on the next request.
    """

    __slots__ = ("content", "ctype", "full", "key", "lastmod", "mtime", "prefix", "size")

    def __init__(
        self, key: tuple[int, ...], full: bytes, content: bytes, ctype: str, mtime: int
    ) -> None:
        self.key = key
        self.full = full
        self.content = content
        self.ctype = ctype
        self.mtime = mtime
        self.size = len(content)
        self.lastmod = http_date(mtime) if mtime else ""
        hs = f"HTTP/1.1 200 OK\r\nAccept-Ranges: bytes\r\nContent-Length: {self.size}\r\n"
        hs += f"Content-Type: {ctype}\r\n"
        if self.lastmod:
            hs += f"Last-Modified: {self.lastmod}\r\n"
        self.prefix = (hs + "Date: ").encode("latin-1")


def stat_key(st: os.stat_result) -> tuple[int, ...]:
    """What must not change for a CachedFile to stay valid."""
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FileServer:
    """Serves files below `root` (the cwd at start-up) for the /www/ route.

    `cache` maps a canonical request path (`/www/etc/passwd`) to its CachedFile; it is cleared
    in place when full, never rebound, so handlers.App can keep a reference for its fast path.
    """

    #: What handlers.App's cache-hit path needs, reached through the server it made lazily.
    conditional = CONDITIONAL_HEADERS
    stat_key = staticmethod(stat_key)

    def __init__(
        self,
        root: bytes,
        key_path: bytes,
        cfg: ServerConfig,
        clock: Clock,
        keepalives: bool,
        *,
        root_real: bytes | None = None,
    ) -> None:
        """``root_real``: ``root`` resolved when the server started (default: now)."""
        self._root = root
        self._root_real = os.path.realpath(root) if root_real is None else root_real
        self._key_path = key_path
        self._cfg = cfg
        self._clock = clock
        self._keepalives = keepalives
        self.cache: dict[str, CachedFile] = {}

    def _encode(self, req: Request, resp: Response) -> tuple[bytes, bool, None]:
        self._clock.tick()
        data, close = encode(resp, req, self._keepalives, self._clock.date)
        return data, close, None

    def _full(self, name: str) -> bytes:
        rel = name[1:] or "."
        return os.path.join(self._root, rel.encode("latin-1"))

    def _open(self, name: str) -> tuple[int, os.stat_result] | Response:
        """http.Dir.Open + Stat, confined to the root: fd and stat, or an error response."""
        if "\x00" in name:
            return error_response("500 Internal Server Error", 500)
        full = self._full(name)
        try:
            real = os.path.realpath(full)
            root = self._root_real
            if real != root and not real.startswith(root.rstrip(b"/") + b"/"):
                # A symlink leading out of the served directory: refused (not found).
                return error_response("404 page not found", 404)
            fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return error_response("404 page not found", 404)
        except PermissionError:
            return error_response("403 Forbidden", 403)
        except OSError:
            return error_response("500 Internal Server Error", 500)
        st = os.fstat(fd)
        if self._is_key(st):
            os.close(fd)
            return error_response("403 Forbidden", 403)  # deviation 2
        return fd, st

    def _is_key(self, st: os.stat_result) -> bool:
        try:
            kst = os.stat(self._key_path)
        except OSError:
            return False
        return (kst.st_dev, kst.st_ino) == (st.st_dev, st.st_ino)

    def serve_file(self, req: Request, upath: str, name: str) -> Result:
        """FileServer.ServeHTTP for upath (the URL path below /www) and its cleaned name."""
        if upath.endswith("/index.html"):
            return self._local_redirect(req, "./")
        opened = self._open(name)
        if isinstance(opened, Response):
            return self._encode(req, opened)
        fd, st = opened
        try:
            isdir = stat.S_ISDIR(st.st_mode)
            if isdir and not upath.endswith("/"):
                return self._local_redirect(req, go_base(upath) + "/")
            if not isdir and upath.endswith("/"):
                base = go_base(upath)
                if base in ("/", "."):
                    return self._encode(
                        req,
                        error_response("http: attempting to traverse a non-directory", 500),
                    )
                return self._local_redirect(req, "../" + base)
            fname = go_base(name)
            if isdir:
                index = name.rstrip("/") + "/index.html"
                sub = self._open(index)
                if not isinstance(sub, Response):
                    os.close(fd)
                    fd, st = sub
                    isdir = stat.S_ISDIR(st.st_mode)
                    fname = "index.html"
            if isdir:
                mtime = int(st.st_mtime)
                if _ims_false(req, mtime):
                    return self._encode(req, Response(304, []))
                hs = [("Last-Modified", http_date(mtime))] if mtime else []
                return self._encode(req, self._dir_list(fd, hs))
            return self._serve_content(req, name, fname, fd, st)
        finally:
            if fd >= 0:
                os.close(fd)

    def _local_redirect(self, req: Request, loc: str) -> Result:
        if req.query:
            loc += "?" + req.query
        return self._encode(req, Response(301, [("Location", loc)]))

    def _dir_list(self, fd: int, hs: list[tuple[str, str]]) -> Response:
        try:
            with os.scandir(fd) as it:
                ents = [(os.fsencode(d.name), d.is_dir(follow_symlinks=False)) for d in it]
        except OSError:
            return error_response("Error reading directory", 500)
        ents.sort()
        out = ['<!doctype html>\n<meta name="viewport" content="width=device-width">\n<pre>\n']
        for raw, isdir in ents:
            nm = raw.decode("latin-1") + ("/" if isdir else "")
            href = escape_path(nm)
            colon = href.find(":")
            if colon >= 0 and "/" not in href[:colon]:
                href = "./" + href
            out.append(f'<a href="{href}">{html_escape(nm)}</a>\n')
        out.append("</pre>\n")
        hs.append(("Content-Type", "text/html; charset=utf-8"))
        return Response(200, hs, "".join(out).encode("latin-1"))

    def _serve_content(
        self, req: Request, name: str, fname: str, fd: int, st: os.stat_result
    ) -> Result:
        size = st.st_size
        mtime = int(st.st_mtime)
        cached: CachedFile | None = None
        content: bytes | None = None
        if size <= self._cfg.file_cache_max and stat.S_ISREG(st.st_mode):
            try:
                content = os.pread(fd, size + 1, 0)
            except OSError:
                return self._encode(req, error_response("500 Internal Server Error", 500))
            if len(content) == size:
                dot = fname.rfind(".")
                ext = fname[dot:] if dot >= 0 else ""
                ctype = MIME_TYPES.get(ext) or MIME_TYPES.get(ext.lower()) or sniff(content)
                cached = CachedFile(stat_key(st), self._full(name), content, ctype, mtime)
                if len(self.cache) >= self._cfg.file_cache_entries:
                    self.cache.clear()
                if req.path == "/www" + name:  # only canonical file URLs use the fast path
                    self.cache[req.path] = cached
            else:
                size = len(content)
        if cached is not None:
            ctype = cached.ctype
        elif content is not None:
            dot = fname.rfind(".")
            ext = fname[dot:] if dot >= 0 else ""
            ctype = MIME_TYPES.get(ext) or MIME_TYPES.get(ext.lower()) or sniff(content)
        else:
            dot = fname.rfind(".")
            ext = fname[dot:] if dot >= 0 else ""
            ctype = MIME_TYPES.get(ext) or MIME_TYPES.get(ext.lower()) or ""
            if not ctype:
                try:
                    ctype = sniff(os.pread(fd, 512, 0))
                except OSError:
                    ctype = "application/octet-stream"
        hs: list[tuple[str, str]] = []
        lastmod = http_date(mtime) if mtime else ""
        if lastmod:
            hs.append(("Last-Modified", lastmod))
        done = _preconditions(req, mtime, hs)
        if isinstance(done, Response):
            return self._encode(req, done)
        rng = done
        hs.append(("Content-Type", ctype))
        ranges: list[tuple[int, int]] = []
        if rng:
            parsed = parse_range(rng, size)
            if isinstance(parsed, str):
                if parsed == "invalid range: failed to overlap":
                    if size == 0:
                        parsed = []
                    else:
                        hs = [("Content-Range", f"bytes */{size}")]
                        return self._encode(req, error_response(parsed, 416, hs))
                else:
                    hs = [h for h in hs if h[0] != "Last-Modified"]
                    return self._encode(req, error_response(parsed, 416, hs))
            ranges = parsed
            if sum(r[1] for r in ranges) > size:
                ranges = []
        code = 200
        segments: list[bytes | tuple[int, int]]
        if len(ranges) == 1:
            start, length = ranges[0]
            code = 206
            hs.append(("Content-Range", f"bytes {start}-{start + length - 1}/{size}"))
            segments = [(start, length)]
            send = length
        elif len(ranges) > 1:
            code = 206
            boundary = os.urandom(30).hex()
            hs = [h for h in hs if h[0] != "Content-Type"]
            hs.append(("Content-Type", "multipart/byteranges; boundary=" + boundary))
            segments = []
            send = 0
            for i, (start, length) in enumerate(ranges):
                part = (
                    ("\r\n" if i else "")
                    + f"--{boundary}\r\nContent-Range: bytes {start}-{start + length - 1}/{size}"
                    f"\r\nContent-Type: {ctype}\r\n\r\n"
                ).encode("latin-1")
                segments.append(part)
                segments.append((start, length))
                send += len(part) + length
            tail = f"\r\n--{boundary}--\r\n".encode("latin-1")
            segments.append(tail)
            send += len(tail)
        else:
            segments = [(0, size)]
            send = size
        hs.append(("Accept-Ranges", "bytes"))
        hs.append(("Content-Length", str(send)))
        resp = Response(code, hs)
        if content is not None:
            resp.body = b"".join(
                s if isinstance(s, bytes) else content[s[0] : s[0] + s[1]] for s in segments
            )
            return self._encode(req, resp)
        resp.stream = []
        data, close, _ = self._encode(req, resp)
        if req.method == "HEAD":
            return data, close, None
        stream = FileStream(os.dup(fd), segments)
        return data, close, stream


def _ims_false(req: Request, mtime: int) -> bool:
    """checkIfModifiedSince == condFalse (i.e. answer 304)."""
    if req.method not in ("GET", "HEAD") or not mtime:
        return False
    ims = req.hmap.get("If-Modified-Since")
    if not ims:
        return False
    t = parse_http_time(ims)
    return t is not None and mtime <= t


def _etag_ok(tok: str) -> bool:
    t = tok[2:] if tok.startswith("W/") else tok
    return len(t) >= 2 and t[0] == '"' and t[-1] == '"' and '"' not in t[1:-1]


def _preconditions(req: Request, mtime: int, hs: list[tuple[str, str]]) -> Response | str:
    """checkPreconditions with no ETag: a 304/412 Response, or the Range header to honour."""
    hmap = req.hmap
    ch: bool | None = None
    im = hmap.get("If-Match")
    if im:
        ch = False
        for raw_tok in im.split(","):
            tok = raw_tok.strip(" \t")
            if not tok:
                continue
            if tok[0] == "*":
                ch = True
                break
            if not _etag_ok(tok):
                break
    else:
        ius = hmap.get("If-Unmodified-Since")
        if ius and mtime:
            t = parse_http_time(ius)
            if t is not None:
                ch = mtime <= t
    if ch is False:
        return Response(412, list(hs))
    inm = hmap.get("If-None-Match")
    if inm:
        star = any(t.strip(" \t").startswith("*") for t in inm.split(",") if t.strip(" \t"))
        first = next((t.strip(" \t") for t in inm.split(",") if t.strip(" \t")), "")
        if star and first.startswith("*"):
            if req.method in ("GET", "HEAD"):
                return Response(304, list(hs))
            return Response(412, list(hs))
    elif _ims_false(req, mtime):
        return Response(304, list(hs))
    rng = hmap.get("Range", "")
    if rng:
        ir = hmap.get("If-Range")
        if ir:
            ok = False
            if not _etag_ok(ir) and mtime:
                t = parse_http_time(ir)
                ok = t is not None and t == mtime
            if not ok:
                rng = ""
    return rng


def parse_range(s: str, size: int) -> list[tuple[int, int]] | str:
    """http parseRange: (start, length) pairs, or Go's error text."""
    if not s.startswith("bytes="):
        return "invalid range"
    out: list[tuple[int, int]] = []
    no_overlap = False
    for raw_ra in s[6:].split(","):
        ra = raw_ra.strip(" \t")
        if not ra:
            continue
        start, sep, end = ra.partition("-")
        if not sep:
            return "invalid range"
        start, end = start.strip(" \t"), end.strip(" \t")
        if not start:
            if not end or end[0] == "-" or not _digits(end):
                return "invalid range"
            i = min(int(end), size)
            out.append((size - i, i))
        else:
            if not _digits(start):
                return "invalid range"
            i = int(start)
            if i >= size:
                no_overlap = True
                continue
            if not end:
                out.append((i, size - i))
            else:
                if not _digits(end) or i > int(end):
                    return "invalid range"
                j = min(int(end), size - 1)
                out.append((i, j - i + 1))
    if no_overlap and not out:
        return "invalid range: failed to overlap"
    return out


def _digits(s: str) -> bool:
    t = s[1:] if s[:1] == "+" else s
    return bool(t) and t.isascii() and t.isdigit() and len(t) <= 19


__all__ = ["CONDITIONAL_HEADERS", "CachedFile", "FileServer", "parse_range", "stat_key"]
