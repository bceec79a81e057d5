"""Go's slash-path and URL-path helpers: path.Clean, path.Base, ServeMux's cleanPath, escaping.

Why a module of its own: routing (handlers.py) and the file server (fileserver.py) both decide
redirects and file names with these, and the answers must match net/http byte for byte. Pure
string functions on latin-1 "byte strings", no imports.
"""

from __future__ import annotations

_PATH_SAFE = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~$&+,/:;=@"
)


def escape_path(s: str) -> str:
    """url.URL{Path: s}.EscapedPath() for a latin-1 (byte) string."""
    b = s.encode("latin-1")
    if all(c in _PATH_SAFE for c in b):
        return s
    return "".join(chr(c) if c in _PATH_SAFE else f"%{c:02X}" for c in b)


def hex_escape_non_ascii(s: str) -> str:
    """http.Redirect's hexEscapeNonASCII: %XX for each byte >= 0x80 of the Location."""
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


def clean_abs(p: str) -> str:
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
