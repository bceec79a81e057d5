"""Go's text formats (durations, times, %v, %q, log prefix, HTTP dates, HTML escapes) by hand.

Why: the reference's output is Go's formatting and scripts parse it; the stdlib has no equivalent,
and importing `email`/`calendar`/`datetime` would slow the cold start.
"""

from __future__ import annotations

import time

NS = 1
US = 1_000
MS = 1_000_000
SEC = 1_000_000_000
MIN = 60 * SEC
HOUR = 60 * MIN
_MAX_I64 = (1 << 63) - 1

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


_POW10 = {3: 10**3, 6: 10**6, 9: 10**9}


def _frac(v: int, prec: int) -> tuple[str, int]:
    """Go's fmtFrac: the fraction v % 10**prec without trailing zeros, and v // 10**prec."""
    w, f = divmod(v, _POW10[prec])
    if not f:
        return "", w
    return "." + f"{f:0{prec}d}".rstrip("0"), w


def duration(d: int) -> str:
    """time.Duration.String() for d nanoseconds: 0s, 1.5µs, 306.490799ms, 1m0s, -5s."""
    neg = d < 0
    u = -d if neg else d
    if u < SEC:
        if u == 0:
            return "0s"
        if u < US:
            out = f"{u}ns"
        elif u < MS:
            f, w = _frac(u, 3)
            out = f"{w}{f}\xc2\xb5s"  # UTF-8 µ as latin-1 bytes (see log.py)
        else:
            f, w = _frac(u, 6)
            out = f"{w}{f}ms"
    else:
        f, w = _frac(u, 9)
        out = f"{w % 60}{f}s"
        w //= 60
        if w > 0:
            out = f"{w % 60}m{out}"
            w //= 60
            if w > 0:
                out = f"{w}h{out}"
    return "-" + out if neg else out


_UNITS = {
    "ns": NS,
    "us": US,
    "µs": US,  # U+00B5
    "μs": US,  # U+03BC
    "ms": MS,
    "s": SEC,
    "m": MIN,
    "h": HOUR,
}


def quote(s: str) -> str:
    """strconv.Quote for the common cases (ASCII escapes; printable non-ASCII kept)."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in {'"', "\\"}:
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif 0xDC80 <= o <= 0xDCFF:  # undecodable byte kept by surrogateescape
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o >= 0x80 and not ch.isprintable():
            out.append(f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def parse_duration(s: str) -> int:
    """time.ParseDuration: returns nanoseconds or raises ValueError with Go's message."""
    orig = s
    bad = f"time: invalid duration {quote(orig)}"
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(bad)
    total = 0
    while s:
        i = 0
        while i < len(s) and s[i].isascii() and s[i].isdigit():
            i += 1
        pre = i > 0
        whole = int(s[:i]) if pre else 0
        s = s[i:]
        frac, scale, post = 0, 1, False
        if s.startswith("."):
            s = s[1:]
            i = 0
            while i < len(s) and s[i].isascii() and s[i].isdigit():
                i += 1
            post = i > 0
            if post:
                frac = int(s[:i])
                scale = 10**i
            s = s[i:]
        if not pre and not post:
            raise ValueError(bad)
        i = 0
        while i < len(s) and s[i] != "." and not (s[i].isascii() and s[i].isdigit()):
            i += 1
        if i == 0:
            raise ValueError(f"time: missing unit in duration {quote(orig)}")
        unit_s = s[:i]
        s = s[i:]
        unit = _UNITS.get(unit_s)
        if unit is None:
            raise ValueError(f"time: unknown unit {quote(unit_s)} in duration {quote(orig)}")
        v = whole * unit + (frac * unit) // scale
        total += v
        if total > _MAX_I64 + (1 if neg else 0):
            raise ValueError(bad)
    return -total if neg else total


def needs_html_escape(s: str) -> bool:
    """Whether s holds one of `&<>"'` (five C-speed scans; no `re` import at start-up)."""
    return "&" in s or "<" in s or ">" in s or '"' in s or "'" in s


def html_escape(s: str) -> str:
    """html.EscapeString (the escapes Go uses)."""
    if not needs_html_escape(s):
        return s
    return (
        s.replace("&", "&amp;")
        .replace("'", "&#39;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
    )


def argv_v(args: list[str]) -> str:
    """fmt %v of a []string: [a b c]."""
    return "[" + " ".join(args) + "]"


def log_prefix(sec: int) -> str:
    """The standard log package's `YYYY/MM/DD HH:MM:SS ` prefix, local time."""
    t = time.localtime(sec)
    return (
        f"{t.tm_year:04d}/{t.tm_mon:02d}/{t.tm_mday:02d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} "
    )


def http_date(sec: int) -> str:
    """net/http TimeFormat (RFC 1123, GMT)."""
    t = time.gmtime(sec)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def time_string(wall_ns: int, mono_ns: int) -> str:
    """time.Time.String() with its monotonic reading, in local time.

    `2026-11-27 14:14:10.893110012 +0000 UTC m=+1.015346734`
    """
    sec, ns = divmod(wall_ns, SEC)
    t = time.localtime(sec)
    frac = f".{ns:09d}".rstrip("0") if ns else ""
    off = t.tm_gmtoff or 0
    sign = "-" if off < 0 else "+"
    off = abs(off) // 60
    zone = t.tm_zone or f"{sign}{off // 60:02d}{off % 60:02d}"
    msign = "-" if mono_ns < 0 else "+"
    ms, mns = divmod(abs(mono_ns), SEC)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}{frac} "
        f"{sign}{off // 60:02d}{off % 60:02d} {zone} m={msign}{ms}.{mns:09d}"
    )


def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def timegm(y: int, mo: int, d: int, *hms: int) -> int:
    """Seconds since the epoch of a UTC calendar time (calendar.timegm without the import)."""
    h, mi, s = hms
    return _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s


def parse_http_time(v: str) -> int | None:
    """http.ParseTime: RFC 1123, RFC 850 and asctime forms; None when none matches."""
    mon = {m: i + 1 for i, m in enumerate(_MONTHS)}
    try:
        p = v.split()
        if len(p) == 6 and p[0].endswith(",") and p[5] == "GMT":  # Mon, 02 Jan 2006 15:04:05 GMT
            if p[0][:-1] not in _DAYS or len(p[1]) != 2 or len(p[3]) != 4:
                return None
            d, mo, y, hms = int(p[1]), mon[p[2]], int(p[3]), p[4]
        elif len(p) == 4 and p[0].endswith(",") and p[3] == "GMT":  # Monday, 02-Jan-06 ...
            dd, mm, yy = p[1].split("-")
            if len(dd) != 2 or len(yy) != 2:
                return None
            d, mo, y, hms = int(dd), mon[mm], int(yy), p[2]
            y += 1900 if y >= 69 else 2000
        elif len(p) == 5 and p[0] in _DAYS:  # Mon Jan _2 15:04:05 2006
            d, mo, y, hms = int(p[2]), mon[p[1]], int(p[4]), p[3]
        else:
            return None
        hh, mi, ss = hms.split(":")
        if len(hh) != 2 or len(mi) != 2 or len(ss) != 2:
            return None
        h, m_, s = int(hh), int(mi), int(ss)
        if not (1 <= d <= 31 and h < 24 and m_ < 60 and s < 60):
            return None
        return timegm(y, mo, d, h, m_, s)
    except (KeyError, ValueError):
        return None


# Go's syscall.Errno strings (zerrors_linux_*.go): Go ships its own table, so the text does not
# depend on the C library. glibc happens to agree with it; musl (the static build) does not
# ("address in use", "permission denied" vs "Permission denied", ...).
_GO_ERRNO = {
    1: "operation not permitted",
    2: "no such file or directory",
    3: "no such process",
    4: "interrupted system call",
    5: "input/output error",
    9: "bad file descriptor",
    11: "resource temporarily unavailable",
    12: "cannot allocate memory",
    13: "permission denied",
    17: "file exists",
    20: "not a directory",
    21: "is a directory",
    22: "invalid argument",
    23: "too many open files in system",
    24: "too many open files",
    28: "no space left on device",
    30: "read-only file system",
    32: "broken pipe",
    36: "file name too long",
    97: "address family not supported by protocol",
    98: "address already in use",
    99: "cannot assign requested address",
    101: "network is unreachable",
    104: "connection reset by peer",
    110: "connection timed out",
    111: "connection refused",
    113: "no route to host",
}


def errno_text(err: OSError) -> str:
    """An OSError's text as Go prints it (`bind: address already in use`)."""
    if err.errno in _GO_ERRNO:
        return _GO_ERRNO[err.errno]
    text = err.strerror or str(err)
    return text[:1].lower() + text[1:]
