"""Cuts CPython's C docstrings down to their Argument Clinic signatures before the kit build.

``--without-doc-strings`` empties every ``PyDoc_STR``/``PyDoc_STRVAR`` text, and with it the
``name(...)\\n--\\n\\n`` prefix from which a builtin's ``__text_signature__`` is read, so
``inspect.signature(hashlib.md5)`` raises ``ValueError`` (Django calls it at import time).
Building with doc strings but rewriting each literal to its signature prefix (or to ``""`` when it
has none, as ``--without-doc-strings`` gives) keeps ``inspect.signature`` working for every
builtin while the prose, most of the bytes, stays out of the executable.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_SIMPLE_ESCAPES = {
    ord("n"): b"\n",
    ord("t"): b"\t",
    ord("r"): b"\r",
    ord("\\"): b"\\",
    ord('"'): b'"',
    ord("'"): b"'",
    ord("?"): b"?",
    ord("a"): b"\a",
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("v"): b"\v",
}
#: Where CPython's ``skip_signature`` (Objects/typeobject.c) ends a signature.
_END = b")\n--\n\n"
_SIGNATURE_START = re.compile(rb"[A-Za-z_][\w.]*\(")
#: The directories of the CPython tree whose C sources hold docstrings.
SOURCE_DIRS = ("Include", "Modules", "Objects", "Parser", "Python")


@dataclass(frozen=True, slots=True)
class Rewrite:
    """What :func:`rewrite_tree` did, for the build log and the tests."""

    files: int
    docstrings: int  # literals rewritten
    signatures: int  # of which kept a signature


def decode_literal(token: bytes) -> bytes:
    """The bytes one C string literal (with its quotes) stands for."""
    body = token[1:-1].replace(b"\\\n", b"")
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != ord("\\"):
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[nxt]
            i += 2
        elif nxt == ord("x"):
            m = re.match(rb"[0-9A-Fa-f]+", body[i + 2 :])
            assert m is not None, token
            out.append(int(m.group(), 16) & 0xFF)
            i += 2 + len(m.group())
        else:
            m = re.match(rb"[0-7]{1,3}", body[i + 1 :])
            if m is None:
                raise ValueError(f"unknown escape in C literal {token[:60]!r}")
            out.append(int(m.group(), 8))
            i += 1 + len(m.group())
    return bytes(out)


def encode_literal(text: bytes) -> bytes:
    """One C string literal for ``text``; anything but printable ASCII as a 3-digit octal."""
    out = bytearray(b'"')
    for ch in text:
        if ch == 0x0A:
            out += b"\\n"
        elif ch in (0x22, 0x5C):
            out += b"\\" + bytes([ch])
        elif 0x20 <= ch < 0x7F and ch != ord("?"):  # "?" could start a trigraph
            out.append(ch)
        else:
            out += b"\\%03o" % ch
    return bytes(out + b'"')


def signature_only(doc: bytes) -> bytes:
    """The part of a docstring ``__text_signature__`` is read from, or ``b""`` if it has none.

    Mirrors CPython's ``find_signature``/``skip_signature``: the text must open with a name and
    ``(``, and the signature ends at the first ``)\\n--\\n\\n`` with no blank line before it.
    """
    if _SIGNATURE_START.match(doc) is None:
        return b""
    end = doc.find(_END)
    if end < 0 or b"\n\n" in doc[:end]:
        return b""
    return doc[: end + len(_END)]


#: The docstring macros of ``Include/pymacro.h`` and ``pycore_bytes_methods.h``: which argument
#: is the docstring.
DOC_MACROS = {"PyDoc_STR": 0, "PyDoc_STRVAR": 1, "PyDoc_STRVAR_shared": 1}
_DEFINE = re.compile(
    rb"^[ \t]*#[ \t]*define[ \t]+(\w+)\(([^)]*)\)((?:[^\n\\]|\\.|\\\n)*)", re.M | re.S
)
_TOKEN = re.compile(rb'(?:\s|\\\n)+|/\*.*?\*/|//[^\n]*|"(?:[^"\\\n]|\\.|\\\n)*"|[A-Za-z_]\w*', re.S)


def _args(src: bytes, i: int) -> tuple[list[tuple[int, int]], int] | None:
    """The spans of a call's top-level arguments, ``i`` just after its ``(``, and the index
    after its ``)``; None when the call does not close (a macro cut by the preprocessor)."""
    spans, depth, start = [], 0, i
    while i < len(src):
        ch = src[i : i + 1]
        if ch in (b'"', b"'"):
            m = re.compile(rb"%s(?:[^%s\\\n]|\\.|\\\n)*%s" % (ch, ch, ch), re.S).match(src, i)
            i = m.end() if m else i + 1
            continue
        if src.startswith(b"/*", i):
            close = src.find(b"*/", i + 2)
            i = len(src) if close < 0 else close + 2
            continue
        if ch in (b"(", b"[", b"{"):
            depth += 1
        elif ch in (b")", b"]", b"}"):
            if depth == 0:
                spans.append((start, i))
                return spans, i + 1
            depth -= 1
        elif ch == b"," and depth == 0:
            spans.append((start, i))
            start = i + 1
        i += 1
    return None


def _docstring(arg: bytes) -> tuple[int, int, bytes] | None:
    """What replaces which part of a docstring argument's text, or None to leave it as it is.

    The argument may mix C string literals and macro names (``NAME "($self, /)\\n--\\n\\n" DOC``,
    ``"strftime(...)..." STRFTIME_FORMAT_CODES``); the text a name stands for is unknown, so:
    when a literal holds the end of a signature, everything after it goes; when the literals
    before the first name already rule a signature out, the whole argument becomes ``""``;
    otherwise the argument is left alone.
    """
    tokens: list[bytes] = []
    first = last = 0  # the span of the tokens, without the space around them
    i = 0
    while i < len(arg):
        m = _TOKEN.match(arg, i)
        if m is None:
            return None
        if not m.group()[:1].isspace() and not m.group().startswith((b"/*", b"//", b"\\")):
            first = m.start() if not tokens else first
            last = m.end()
            tokens.append(m.group())
        i = m.end()
    if not tokens:
        return None
    run, run_start = b"", 0  # the literals since the last name, and where they start
    for n, token in enumerate(tokens):
        if not token.startswith(b'"'):
            if n == 0 or run_start > 0:
                run, run_start = b"", n + 1
                continue
            return (first, last, b'""') if _no_signature(run) else None
        run += decode_literal(token)
        if (end := run.find(_END)) < 0:
            continue
        if run_start == 0:  # the argument opens with the signature's text
            return first, last, encode_literal(signature_only(run))
        head = b" ".join(tokens[:run_start])
        return first, last, head + b" " + encode_literal(run[: end + len(_END)])
    return (first, last, encode_literal(signature_only(run))) if run_start == 0 else None


def _no_signature(text: bytes) -> bool:
    """Whether no continuation of ``text`` can open with a signature."""
    if b"\n\n" in text:
        return True
    name = re.match(rb"[A-Za-z_][\w.]*", text)
    if name is None:
        return bool(text)
    return name.end() < len(text) and text[name.end() : name.end() + 1] != b"("


def _doc_macros(src: bytes) -> dict[bytes, set[int]]:
    """The docstring macros ``src`` can call: pymacro.h's, and the file's own macros that pass
    one of their parameters as a whole to one of those (to a fixed point)."""
    macros = {name.encode(): {pos} for name, pos in DOC_MACROS.items()}
    defines = [
        (m.group(1), [p.strip() for p in m.group(2).split(b",")], m.group(3))
        for m in _DEFINE.finditer(src)
    ]
    changed = True
    while changed:
        changed = False
        for name, params, body in defines:
            for call in _call_sites(body, macros):
                callee, spans = call
                for pos in macros[callee]:
                    if pos >= len(spans):
                        continue
                    arg = body[spans[pos][0] : spans[pos][1]].strip()
                    if arg in params and params.index(arg) not in macros.setdefault(name, set()):
                        macros[name].add(params.index(arg))
                        changed = True
    return macros


def _call_sites(
    src: bytes, macros: dict[bytes, set[int]]
) -> list[tuple[bytes, list[tuple[int, int]]]]:
    pattern = re.compile(rb"\b(%s)\s*\(" % b"|".join(re.escape(n) for n in sorted(macros)))
    calls = []
    for m in pattern.finditer(src):
        parsed = _args(src, m.end())
        if parsed is not None:
            calls.append((m.group(1), parsed[0]))
    return calls


def rewrite_source(src: bytes) -> tuple[bytes, int, int]:
    """``src`` with every docstring argument cut to its signature (see :func:`_docstring`).

    Returns the new text, the number of docstrings rewritten and how many kept a signature.
    """
    macros = _doc_macros(src)
    edits: dict[int, tuple[int, bytes]] = {}
    for name, spans in _call_sites(src, macros):
        for pos in macros[name]:
            if pos >= len(spans):
                continue
            start, end = spans[pos]
            if (edit := _docstring(src[start:end])) is not None:
                first, last, text = edit
                edits[start + first] = (start + last, text)
    out = bytearray()
    pos = signatures = 0
    for start in sorted(edits):
        end, text = edits[start]
        if start < pos:
            continue
        out += src[pos:start] + text
        pos = end
        signatures += b"\\n--\\n\\n" in text
    return bytes(out + src[pos:]), len(edits), signatures


def rewrite_tree(root: Path) -> Rewrite:
    """Rewrites the ``.c``/``.h`` files under ``root``'s :data:`SOURCE_DIRS` in place.

    Each file keeps its modification time, so make's view of what is generated from what (and
    therefore what it regenerates) does not change.
    """
    files = docstrings = signatures = 0
    for top in SOURCE_DIRS:
        for path in sorted((root / top).rglob("*")):
            if path.suffix not in (".c", ".h") or not path.is_file():
                continue
            src = path.read_bytes()
            new, n, sigs = rewrite_source(src)
            if new == src:
                continue
            stat = path.stat()
            path.write_bytes(new)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            files += 1
            docstrings += n
            signatures += sigs
    return Rewrite(files=files, docstrings=docstrings, signatures=signatures)
