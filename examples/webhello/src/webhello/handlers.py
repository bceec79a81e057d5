"""The application: ServeMux routing and redirects, the root page, /www/ files, quota, /burncpu.

Handlers are plain functions returning encoded bytes (no coroutine per request: that is the
largest single cost on the hot path). The one slow handler, /burncpu, returns a Deferred that
protocol.py runs in a worker thread.
"""

from __future__ import annotations

import os
import stat
import time

from .errors import HttpError
from .goformat import argv_v, duration, errno_text, http_date, parse_http_time, time_string
from .http import Request, unescape_path
from .response import Response, encode, error_response, sniff, status_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable

    from .config import ServerConfig
    from .log import Clock, Logger

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


def _needs_escape(s: str) -> bool:
    """Whether s holds one of `&<>"'` (five C-speed scans; no `re` import at start-up)."""
    return "&" in s or "<" in s or ">" in s or '"' in s or "'" in s


_PATH_SAFE = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~$&+,/:;=@"
)
_COND_SET = frozenset(
    ("Range", "If-Modified-Since", "If-Match", "If-None-Match", "If-Unmodified-Since")
)


def html_escape(s: str) -> str:
    """html.EscapeString (the escapes Go uses)."""
    if not _needs_escape(s):
        return s
    return (
        s.replace("&", "&amp;")
        .replace("'", "&#39;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
    )


def escape_path(s: str) -> str:
    """url.URL{Path: s}.EscapedPath() for a latin-1 (byte) string."""
    b = s.encode("latin-1")
    if all(c in _PATH_SAFE for c in b):
        return s
    return "".join(chr(c) if c in _PATH_SAFE else f"%{c:02X}" for c in b)


def hex_escape_non_ascii(s: str) -> str:
    if s.isascii():
        return s
    return "".join(c if ord(c) < 0x80 else f"%{ord(c):02X}" for c in s)


def go_clean(p: str) -> str:
    """path.Clean for an absolute slash path."""
    if not p:
        return "."
    rooted = p[0] == "/"
    out: list[str] = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(seg)
    res = ("/" if rooted else "") + "/".join(out)
    return res or ("/" if rooted else ".")


def _clean_abs(p: str) -> str:
    """go_clean with a fast path for paths that are already clean."""
    if "//" not in p and "/." not in p and (len(p) == 1 or p[-1] != "/"):
        return p
    return go_clean(p)


def clean_path(p: str) -> str:
    """ServeMux cleanPath: path.Clean, but keep a trailing slash."""
    if p[:1] == "/" and "//" not in p and "/." not in p:
        return p
    if not p:
        return "/"
    if p[0] != "/":
        p = "/" + p
    np = go_clean(p)
    if p[-1] == "/" and np != "/":
        np += "/"
    return np


def go_base(p: str) -> str:
    """path.Base."""
    if not p:
        return "."
    p = p.rstrip("/")
    if not p:
        return "/"
    return p[p.rfind("/") + 1 :]


class AppInfo:
    """Start-up facts shown on the page (all text as latin-1 byte strings).

    A plain slotted class rather than a NamedTuple: `typing` is not imported at start-up.
    """

    __slots__ = (
        "addr",
        "argv",
        "banner",
        "burn_cpu",
        "exit_on_quota",
        "goarch",
        "goos",
        "https_addr",
        "keepalive",
        "key_path",
        "pid",
        "quota",
        "quota_status",
        "quota_time_ns",
        "runtime",
        "start_mono_ns",
        "uid",
        "user",
        "version",
        "www_root",
    )

    def __init__(
        self,
        *,
        version: str,
        runtime: str,
        goos: str,
        goarch: str,
        argv: list[str],
        pid: int,
        user: str,
        uid: str,
        addr: str,
        https_addr: str,
        banner: str,
        keepalive: bool,
        burn_cpu: bool,
        quota: int,
        quota_status: int,
        exit_on_quota: bool,
        quota_time_ns: int,
        www_root: bytes,
        key_path: bytes,
        start_mono_ns: int,
    ) -> None:
        self.version = version
        self.runtime = runtime
        self.goos = goos
        self.goarch = goarch
        self.argv = argv
        self.pid = pid
        self.user = user
        self.uid = uid
        self.addr = addr
        self.https_addr = https_addr
        self.banner = banner
        self.keepalive = keepalive
        self.burn_cpu = burn_cpu
        self.quota = quota
        self.quota_status = quota_status
        self.exit_on_quota = exit_on_quota
        self.quota_time_ns = quota_time_ns
        self.www_root = www_root
        self.key_path = key_path
        self.start_mono_ns = start_mono_ns


class Deferred:
    """A handler result that needs blocking work (run off the event loop) before `data`."""

    __slots__ = ("close", "data", "work")

    def __init__(self, work: Callable[[], None], data: bytes, close: bool) -> None:
        self.work = work
        self.data = data
        self.close = close


Result = tuple[bytes, bool, "FileStream | None"] | Deferred


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


class _Entry:
    """A cached static file: validated by (ino, dev, size, mtime, ctime) of a fresh stat."""

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


def _statkey(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class App:
    """Routing and handlers for the main listener."""

    def __init__(
        self,
        info: AppInfo,
        cfg: ServerConfig,
        log: Logger,
        clock: Clock,
        exit_now: Callable[[int], None],
    ) -> None:
        self.info = info
        self.cfg = cfg
        self.log = log
        self.clock = clock
        self.exit_now = exit_now
        self.count = 0
        self.keepalives = info.keepalive
        self._files: dict[str, _Entry] = {}
        self._root_real = os.path.realpath(info.www_root)
        self._key_id: tuple[int, int] | None = None
        self._mid_sec = -1
        self._has_quota = info.quota > 0 or info.quota_time_ns > 0
        self._mid = ""
        self._tsec = -1
        self._tdate = ""
        self._tzone = ""
        e = html_escape
        self._page_a = (
            "<!DOCTYPE html>\n\n<html>\n  <head>\n    <title>webhello root page</title>\n"
            "  </head>\n  <body>\n    <h1>webhello root page</h1>\n    <p>\n"
            '    <a href="https://github.com/udhos/gowebhello">https://github.com/udhos/gowebhello'
            "</a> is a simple golang replacement for 'python -m SimpleHTTPServer'.\n    </p>\n"
            "<h2>Welcome!</h2>\n"
            f"\tgowebhello version {info.version} runtime {info.runtime} "
            f"os={info.goos} arch={info.goarch}<br>\n"
            f"        Keepalive: {_b(info.keepalive)}<br>\n"
            f"\tApplication banner: {e(info.banner)}<br>\n"
            f"\tApplication arguments: {e(argv_v(info.argv))}<br>\n"
            "\tApplication dir: "
        )
        qt = info.quota_time_ns
        self._page_c = (
            f" (Quota={info.quota} ExitOnQuota={_b(info.exit_on_quota)} "
            f"QuotaStaus={info.quota_status} QuotaTime={duration(qt)} TimeLeft="
        )
        self._page_d = f")<br>\n\tBurnCPU: {_b(info.burn_cpu)}<br>\n    "
        self._page_e = (
            '\n    <h2>All known paths:</h2>\n    <a href="/www/">/www/</a> <br>\n'
            "<h2>Headers</h2>\n"
        )

    # --- routing ------------------------------------------------------------------------------

    def respond(self, req: Request) -> Result:
        """ServeMux: OPTIONS *, cleaning redirects, /www redirect, then the handlers."""
        raw = req.raw_path
        if raw == "*":
            if req.method == "OPTIONS":
                return self._encode(req, Response(200, [("Content-Length", "0")]))
            return self._encode(req, Response(400, [("Connection", "close")] if req.minor else []))
        if req.expect_fail:
            r = Response(417, [("Connection", "close")])
            return self._encode(req, r)
        if raw == "/":
            return self.root(req)
        cleaned = clean_path(raw)
        end = cleaned.find("/", 1)
        first = cleaned[1:] if end < 0 else cleaned[1:end]
        if "%" in first:
            first = _unescape_loose(first)
        if first == "www":
            if end < 0:
                loc = clean_path(req.path) + "/"
                return self._redirect(req, escape_path(loc), 301)
            if cleaned != raw:
                return self._redirect(req, escape_path(cleaned), 301)
            return self.static(req)
        if cleaned != raw:
            return self._redirect(req, escape_path(cleaned), 301)
        if first == "burncpu" and self.info.burn_cpu:
            return self.burn(req)
        return self.root(req)

    def _redirect(self, req: Request, url: str, code: int) -> Result:
        if req.query:
            url += "?" + req.query
        return self._encode(req, redirect_response(req, url, code))

    def _encode(self, req: Request, resp: Response) -> tuple[bytes, bool, None]:
        self.clock.tick()
        data, close = encode(resp, req, self.keepalives, self.clock.date)
        return data, close, None

    # --- quota --------------------------------------------------------------------------------

    def _quota_msg(self, label: str, n: int) -> str | None:
        """The quota log line if this request is over a quota (F2, F4), else None."""
        info = self.info
        if info.quota > 0 and n > info.quota:
            return (
                f"{label} req={n} quota={info.quota} exitOnQuota={_b(info.exit_on_quota)} "
                f"quotaStatus={info.quota_status} reached"
            )
        if info.quota_time_ns > 0:
            up = time.monotonic_ns() - info.start_mono_ns
            if up < info.quota_time_ns:
                return None
            return (
                f"{label} req={n} exitOnQuota={_b(info.exit_on_quota)} uptime={duration(up)} "
                f"quotaTime={duration(info.quota_time_ns)} "
                f"timeLeft={duration(info.quota_time_ns - up)} reached"
            )
        return None

    def _quota(self, label: str, n: int) -> Response | None:
        msg = self._quota_msg(label, n) if self._has_quota else None
        if msg is None:
            return None
        return self._quota_hit(msg)

    def _quota_hit(self, msg: str) -> Response:
        """Log the quota line; exit (F5) or answer http.Error(quotaStatus) (F3)."""
        info = self.info
        if info.exit_on_quota:
            self.log.log(msg + " EXITING")
            self.exit_now(0)
        self.log.log(msg)
        code = info.quota_status
        resp = error_response("Quota forced malfunction", code)
        if 100 <= code <= 199 and code != 101:
            # net/http writes a 1xx header block, then the body write implies 200 OK.
            hs = "".join(f"{k}: {v}\r\n" for k, v in resp.headers)
            resp.informational = (status_line(1, code) + hs + "\r\n").encode("latin-1")
            resp.status = 200
        return resp

    # --- root page ----------------------------------------------------------------------------

    def root(self, req: Request) -> Result:
        self.count += 1
        n = self.count
        clock = self.clock
        clock.tick()
        p = clock.prefix
        self.log.raw(
            f"{p}rootHandler: req={n} from={req.remote}\n"
            f"{p}rootHandler: req={n} method={req.method} host={req.host} path={req.path}\n"
            f"{p}rootHandler: req={n} query={req.query}\n"
        )
        if self._has_quota:
            msg = self._quota_msg("rootHandler", n)
            if msg is not None:
                return self._encode(req, self._quota_hit(msg))
        body = req.body
        self.log.raw(f"{p}body size: {len(body)}\n")
        page = self._page(req, n).encode("latin-1")
        if (
            len(page) <= 2048
            and req.minor == 1
            and self.keepalives
            and not req.wants_close
            and req.method != "HEAD"
        ):
            return (
                b"HTTP/1.1 200 OK\r\nDate: %s\r\nContent-Length: %d\r\n"
                b"Content-Type: text/html; charset=utf-8\r\n\r\n%s" % (clock.date, len(page), page),
                False,
                None,
            )
        if len(page) <= 2048 and req.minor == 1 and req.method != "HEAD":
            # -disableKeepalive or a client's Connection: close: same bytes as encode().
            return (
                b"HTTP/1.1 200 OK\r\nDate: %s\r\nContent-Length: %d\r\n"
                b"Content-Type: text/html; charset=utf-8\r\nConnection: close\r\n\r\n%s"
                % (clock.date, len(page), page),
                True,
                None,
            )
        hs = [] if self.keepalives else [("Connection", "close")]
        return self._encode(req, Response(200, hs, page))

    def _page(self, req: Request, n: int) -> str:
        info = self.info
        sec = self.clock.sec
        if sec != self._mid_sec:
            self._mid_sec = sec
            self._mid = (
                f"<br>\n\tProcess: {info.pid}<br>\n"
                f"\tUser: {info.user} (uid: {info.uid})<br>\n"
                f"\tServer hostname: {html_escape(os.uname().nodename)}<br>\n"
                f"\tListen: HTTP={html_escape(info.addr)} HTTPS={html_escape(info.https_addr)}"
                "<br>\n\tYour address: "
            )
        try:
            cwd = os.getcwdb().decode("latin-1")
            if _needs_escape(cwd):
                cwd = html_escape(cwd)
        except OSError as err:
            cwd = f" (error: getwd: {errno_text(err)})"
        wall = time.time_ns()
        mono = time.monotonic_ns() - info.start_mono_ns
        tsec, tns = divmod(wall, 1_000_000_000)
        if tsec != self._tsec:
            full = time_string(tsec * 1_000_000_000, 0)
            self._tsec = tsec
            self._tdate = full[:19]
            self._tzone = full[19 : full.rindex(" m=")]
        frac = f".{tns:09d}".rstrip("0") if tns else ""
        ms, mns = divmod(mono, 1_000_000_000)
        qt = info.quota_time_ns
        left = duration(qt - mono) if qt > mono > 0 else "0s"
        method, host, path, query = req.method, req.host, req.path, req.query
        if _needs_escape(method + host + path + query):
            e = html_escape
            method, host, path, query = e(method), e(host), e(path), e(query)
        if path != "/":
            nf = (
                f"\n<h2>Path not found!</h2>\nMethod: {method}<br>\nHost: {host}<br>\n"
                f"Path not found: [{path}]<br>\nQuery: [{query}]<br>\n"
            )
        else:
            nf = ""
        hdrs = ""
        if req.headers:
            hdrs = "".join(sorted([f"{k}: {v}<br>\n" for k, v in req.headers]))
            if _needs_escape(hdrs):
                e = html_escape
                hdrs = "".join(sorted([f"{e(k)}: {e(v)}<br>\n" for k, v in req.headers]))
        body = req.body
        btext = ""
        if body:
            btext = body.decode("latin-1")
            if _needs_escape(btext):
                btext = html_escape(btext)
        return (
            f"{self._page_a}{cwd}{self._mid}{req.remote}<br>\n\tRequest method={method} "
            f"host={host} path=[{path}] query=[{query}]<br>\n\tCurrent time: {self._tdate}"
            f"{frac}{self._tzone} m=+{ms}.{mns:09d}<br>\n\tUptime: {duration(mono)}<br>\n"
            f"\tRequests: {n}{self._page_c}{left}{self._page_d}{nf}{self._page_e}{hdrs}"
            f"<h2>Request Body</h2>\n<p>request body size: {len(body)}</p>\n<pre>\n"
            f"{btext}\n</pre>\n</body>\n</html>\n"
        )

    # --- /burncpu -----------------------------------------------------------------------------

    def burn(self, req: Request) -> Result:
        self.count += 1
        n = self.count
        self.log.log(f"burncpuHandler: req={n} from={req.remote}")
        q = self._quota("burncpuHandler", n)
        if q is not None:
            return self._encode(req, q)
        data, close, _ = self._encode(req, Response(200, [], b"done\n"))
        return Deferred(burn_cpu, data, close)

    # --- /www/ --------------------------------------------------------------------------------

    def static(self, req: Request) -> Result:
        self.count += 1
        n = self.count
        clock = self.clock
        clock.tick()
        self.log.raw(
            f"{clock.prefix}staticHandler.ServeHTTP req={n} url={req.path} from={req.remote}\n"
        )
        if self._has_quota:
            q = self._quota("staticHandler.ServeHTTP", n)
            if q is not None:
                return self._encode(req, q)
        if not req.raw_path.startswith("/www/"):
            return self._encode(req, error_response("404 page not found", 404))
        entry = self._files.get(req.path)
        if entry is not None and (not req.hmap or _COND_SET.isdisjoint(req.hmap)):
            try:
                st = os.stat(entry.full)
            except (OSError, ValueError):
                st = None
            if (
                st is not None
                and _statkey(st) == entry.key
                and req.minor == 1
                and req.method != "HEAD"
            ):
                if self.keepalives and not req.wants_close:
                    return (
                        b"".join((entry.prefix, clock.date, b"\r\n\r\n", entry.content)),
                        False,
                        None,
                    )
                tail = b"\r\nConnection: close\r\n\r\n"
                return b"".join((entry.prefix, clock.date, tail, entry.content)), True, None
        upath = req.path[4:]
        return self._serve_file(req, upath, _clean_abs(upath))

    def _full(self, name: str) -> bytes:
        rel = name[1:] or "."
        return os.path.join(self.info.www_root, rel.encode("latin-1"))

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
            kst = os.stat(self.info.key_path)
        except OSError:
            return False
        return (kst.st_dev, kst.st_ino) == (st.st_dev, st.st_ino)

    def _serve_file(self, req: Request, upath: str, name: str) -> Result:
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
        cached: _Entry | None = None
        content: bytes | None = None
        if size <= self.cfg.file_cache_max and stat.S_ISREG(st.st_mode):
            try:
                content = os.pread(fd, size + 1, 0)
            except OSError:
                return self._encode(req, error_response("500 Internal Server Error", 500))
            if len(content) == size:
                dot = fname.rfind(".")
                ext = fname[dot:] if dot >= 0 else ""
                ctype = MIME_TYPES.get(ext) or MIME_TYPES.get(ext.lower()) or sniff(content)
                cached = _Entry(_statkey(st), self._full(name), content, ctype, mtime)
                if len(self._files) >= self.cfg.file_cache_entries:
                    self._files.clear()
                if req.path == "/www" + name:  # only canonical file URLs use the fast path
                    self._files[req.path] = cached
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


def redirect_response(req: Request, url: str, code: int) -> Response:
    """http.Redirect for an absolute path or URL (Location, and a small HTML body for GET)."""
    if "://" not in url:
        path, q, query = url.partition("?")
        trailing = path.endswith("/")
        path = go_clean(path)
        if trailing and not path.endswith("/"):
            path += "/"
        url = path + q + query
    hs = [("Location", hex_escape_non_ascii(url))]
    body = b""
    if req.method in ("GET", "HEAD"):
        hs.append(("Content-Type", "text/html; charset=utf-8"))
    if req.method == "GET":
        text = {301: "Moved Permanently", 302: "Found"}[code]
        body = f'<a href="{html_escape(url)}">{text}</a>.\n\n'.encode("latin-1")
    return Response(code, hs, body)


class RedirectApp:
    """The HTTP->HTTPS redirect server used when TLS is on (I4): every request gets a 302."""

    def __init__(self, https_port: str, clock: Clock, keepalives: bool) -> None:
        self.port = https_port
        self.clock = clock
        self.keepalives = keepalives

    def respond(self, req: Request) -> Result:
        if req.raw_path == "*" and req.method == "OPTIONS":
            resp = Response(200, [("Content-Length", "0")])
        else:
            host = req.host
            if host.startswith("["):  # deviation 4: keep an IPv6 literal whole
                end = host.find("]")
                h = host[: end + 1] if end > 0 else host
            else:
                h = host.split(":", 1)[0]
            resp = redirect_response(req, f"https://{h}:{self.port}{req.target}", 302)
        self.clock.tick()
        data, close = encode(resp, req, self.keepalives, self.clock.date)
        return data, close, None


def _b(v: bool) -> str:
    return "true" if v else "false"


def _unescape_loose(s: str) -> str:
    """A path segment unescaped for routing (the parser already validated the escapes)."""
    try:
        return unescape_path(s)
    except HttpError:
        return s


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


_BURN_ITERATIONS = 2_200_000


def burn_cpu() -> None:
    """~0.5 s of CPU in C with the GIL released (PBKDF2), so the event loop keeps serving."""
    import hashlib

    hashlib.pbkdf2_hmac("sha256", b"webhello", b"burncpu", _BURN_ITERATIONS)


__all__ = ["App", "AppInfo", "Deferred", "FileStream", "RedirectApp"]
