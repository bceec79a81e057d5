"""The application: ServeMux routing and redirects, the root page, quota, /burncpu, and the
HTTP->HTTPS redirect app. The /www/ route's request accounting is here; the file server behind it
is fileserver.py, the path rules gopath.py.

Handlers are plain functions returning encoded bytes (no coroutine per request: that is the
largest single cost on the hot path). The one slow handler, /burncpu, returns a Deferred that
protocol.py runs in a worker thread.
"""

from __future__ import annotations

import os
import time

from .errors import HttpError
from .goformat import (
    argv_v,
    duration,
    errno_text,
    html_escape,
    needs_html_escape,
    time_string,
)
from .gopath import clean_abs, clean_path, escape_path, go_clean, hex_escape_non_ascii
from .http import Request, unescape_path
from .response import Deferred, Response, encode, error_response, status_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable

    from .config import ServerConfig
    from .fileserver import FileServer
    from .log import Clock, Logger
    from .response import Result


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
        # Made at the first /www/ request (_file_server): the first GET / does not import
        # fileserver.py (~0.25 ms of start). The root is resolved now, at start-up, as before.
        self.files: FileServer | None = None
        self._www_real = os.path.realpath(info.www_root)
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
            if needs_html_escape(cwd):
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
        if needs_html_escape(method + host + path + query):
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
            if needs_html_escape(hdrs):
                e = html_escape
                hdrs = "".join(sorted([f"{e(k)}: {e(v)}<br>\n" for k, v in req.headers]))
        body = req.body
        btext = ""
        if body:
            btext = body.decode("latin-1")
            if needs_html_escape(btext):
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
        files = self.files
        if files is None:
            files = self._file_server()
        # A cache hit is answered here, not in FileServer: the hottest static request then takes
        # no extra call. Everything else (misses, conditions, ranges) is the file server's.
        entry = files.cache.get(req.path)
        if entry is not None and (not req.hmap or files.conditional.isdisjoint(req.hmap)):
            try:
                st = os.stat(entry.full)
            except (OSError, ValueError):
                st = None
            if (
                st is not None
                and files.stat_key(st) == entry.key
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
        return files.serve_file(req, upath, clean_abs(upath))

    def _file_server(self) -> FileServer:
        from .fileserver import FileServer

        info = self.info
        self.files = FileServer(
            info.www_root,
            info.key_path,
            self.cfg,
            self.clock,
            info.keepalive,
            root_real=self._www_real,
        )
        return self.files


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


_BURN_ITERATIONS = 2_200_000


def burn_cpu() -> None:
    """~0.5 s of CPU in C with the GIL released (PBKDF2), so the event loop keeps serving."""
    import hashlib

    hashlib.pbkdf2_hmac("sha256", b"webhello", b"burncpu", _BURN_ITERATIONS)


__all__ = ["App", "AppInfo", "RedirectApp", "redirect_response"]
