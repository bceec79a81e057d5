"""Runs INSIDE the static runtime's build interpreter: finds the app's modules, writes the zip.

Why in that interpreter: the bytecode must come from the exact CPython the executable embeds,
and "is this a built-in" must be answered by the runtime, not by the host Python. Stdlib only;
reads one JSON request file (argv[1]), writes one JSON report to stdout.

Request: entry (module), search_path, app_paths (non-stdlib roots), excludes, includes,
distributions (dist-info names to keep), output (zip path), compression ("stored"/"deflated").
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import importlib.util
import json
import marshal
import modulefinder
import os
import sys
import types
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

_imp = __import__("_imp")

#: Imported by the interpreter itself at start-up, or by the codec machinery on demand; the
#: import graph cannot see them. The CJK codecs need C modules the app would have to import.
ALWAYS = (
    "encodings",
    "encodings.aliases",
    "encodings.utf_8",
    "encodings.utf_8_sig",
    "encodings.ascii",
    "encodings.latin_1",
    "encodings.charmap",
    "encodings.raw_unicode_escape",
    "encodings.unicode_escape",
    "encodings.utf_16",
    "encodings.utf_16_le",
    "encodings.utf_16_be",
    "encodings.utf_32",
    "encodings.utf_32_le",
    "encodings.utf_32_be",
)

#: Stdlib imports made inside functions (or from C) that the stdlib itself triggers routinely:
#: module-level scanning of the stdlib cannot see them. module -> what it needs at run time.
STDLIB_LAZY = {
    "concurrent.futures": ("concurrent.futures.thread",),
    "asyncio.base_events": ("concurrent.futures.thread",),
    "hashlib": ("_blake2", "_md5", "_sha1", "_sha256", "_sha512", "_sha3"),
    "socket": ("encodings.idna",),  # getaddrinfo() encodes every str host with "idna"
    "datetime": ("_strptime",),
    "email": ("email.parser",),
    "multiprocessing": (
        "multiprocessing.context",
        "multiprocessing.popen_fork",
        "multiprocessing.synchronize",
        "multiprocessing.queues",
        "multiprocessing.pool",
        "multiprocessing.connection",
        "multiprocessing.reduction",
    ),
    # the pyexpat users import their parser module when a parser is made, never at import;
    # the C _elementtree imports copy when it loads (else ElementTree silently runs in Python)
    "xml.etree.ElementTree": ("xml.parsers.expat", "copy"),
    "xml.dom.minidom": ("xml.dom.expatbuilder",),
    "xml.sax": ("xml.sax.expatreader",),  # by name, from xml.sax.default_parser_list
}


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(body: list[ast.stmt], *, lazy: bool, main: bool) -> Iterator[ast.stmt]:
    """Import statements that can run: never under `if TYPE_CHECKING:`; inside functions only
    when ``lazy``; under `if __name__ == "__main__":` only when ``main``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if lazy:
                yield from _imports(node.body, lazy=lazy, main=main)
        elif isinstance(node, ast.If):
            if _is_type_checking(node.test) or (_is_main_guard(node.test) and not main):
                yield from _imports(node.orelse, lazy=lazy, main=main)
            else:
                yield from _imports(node.body, lazy=lazy, main=main)
                yield from _imports(node.orelse, lazy=lazy, main=main)
        elif isinstance(node, ast.Try | ast.TryStar):
            for part in (node.body, node.orelse, node.finalbody):
                yield from _imports(part, lazy=lazy, main=main)
            for handler in node.handlers:
                yield from _imports(handler.body, lazy=lazy, main=main)
        elif isinstance(node, ast.ClassDef | ast.With | ast.AsyncWith):
            yield from _imports(node.body, lazy=lazy, main=main)
        elif isinstance(node, ast.For | ast.AsyncFor | ast.While):
            yield from _imports(node.body, lazy=lazy, main=main)
            yield from _imports(node.orelse, lazy=lazy, main=main)
        elif isinstance(node, ast.Match):
            for case in node.cases:
                yield from _imports(case.body, lazy=lazy, main=main)


class StdlibAwareFinder(modulefinder.ModuleFinder):
    """modulefinder, reading imports from the source's syntax tree instead of its bytecode.

    The app and its dependencies: every import that can run, including inside functions. The
    stdlib: only what runs at import (plus STDLIB_LAZY); its function-level imports are how it
    keeps optional, heavy features (pydoc, doctest, email, multiprocessing...) off the start
    path, and following them bundles half of it. Nowhere: `if TYPE_CHECKING:` blocks.
    """

    def __init__(self, stdlib: str, main: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.stdlib = stdlib.rstrip("/") + "/"
        self.main = main
        # short str literals of the app's and its dependencies' code: codec names may be in them
        self.app_strings: set[str] = set()
        # private helpers of ModuleFinder that typeshed does not describe
        self._hook: Callable[..., object] = getattr(self, "_safe_import_hook")  # noqa: B009
        self._parent: Callable[..., Any] = getattr(self, "determine_parent")  # noqa: B009

    def scan_code(self, co: types.CodeType, m: modulefinder.Module) -> None:
        path: str = getattr(m, "__file__", None) or ""
        if not path.endswith(".py"):
            super().scan_code(co, m)
            return
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
        in_stdlib = path.startswith(self.stdlib)
        if not in_stdlib:
            self.app_strings.update(
                node.value
                for node in ast.walk(tree)
                if isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and 2 <= len(node.value) <= 40
                and node.value.isascii()
            )
        name: str = getattr(m, "__name__", "")
        for node in _imports(tree.body, lazy=not in_stdlib, main=name == self.main):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self._hook(alias.name, m, None, level=0)
                continue
            assert isinstance(node, ast.ImportFrom)
            fromlist = [a.name for a in node.names if a.name != "*"]
            if node.level and not node.module:
                parent = self._parent(m, level=node.level)
                self._hook(parent.__name__, None, fromlist, level=0)
            else:
                self._hook(node.module or "", m, fromlist or None, level=node.level)


#: C modules the static runtime cannot provide, and what usually imports them.
UNAVAILABLE = {
    "_tkinter": "tkinter",
    "readline": "readline",  # GPL-3: never linked into every executable
    "_dbm": "dbm.ndbm",
    "_gdbm": "dbm.gnu",
    "_uuid": "uuid",
}

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".so", ".pyd")


def _matches(name: str, patterns: list[str]) -> bool:
    return any(
        name == p or name.startswith(p + ".") or fnmatch.fnmatchcase(name, p) for p in patterns
    )


def _pyc(code: types.CodeType) -> bytes:
    # flags=0 with a zero mtime/size: zipimport does not validate a .pyc that has no .py beside it
    return importlib.util.MAGIC_NUMBER + b"\0" * 12 + marshal.dumps(code)


def _under(path: str, roots: list[str]) -> str | None:
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return root
    return None


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        req = json.load(f)
    search_path: list[str] = req["search_path"]
    app_paths: list[str] = req["app_paths"]
    excludes: list[str] = req["excludes"]
    frozen = set(_imp._frozen_module_names()) - {"__hello__", "__phello__"}
    builtin = set(sys.builtin_module_names)
    finder = StdlibAwareFinder(req["stdlib"], req["entry"], path=search_path, excludes=excludes)
    finder.import_hook(req["entry"])
    entry_mod = finder.modules.get(req["entry"])
    if req.get("run_main") and getattr(entry_mod, "__path__", None):
        finder.import_hook(req["entry"] + ".__main__")  # runpy runs a package's __main__
    _add_named_codecs(finder, req["stdlib"], excludes)
    done: set[str] = set()
    while True:  # STDLIB_LAZY until nothing new: the added modules may need more
        todo = [m for m in STDLIB_LAZY if m in finder.modules and m not in done]
        if not todo:
            break
        for name in todo:
            done.add(name)
            for extra in STDLIB_LAZY[name]:
                if not _matches(extra, excludes):
                    with contextlib.suppress(ImportError):
                        finder.import_hook(extra)
    for name in list(ALWAYS) + list(req["includes"]):
        star = name.endswith(".*")
        base = name[:-2] if star else name
        try:
            finder.import_hook(base, fromlist=["*"] if star else None)
        except ImportError as err:
            print(json.dumps({"error": f"include-modules: cannot find {base}: {err}"}))
            return 2
        if star:
            mod = finder.modules.get(base)
            for sub in sorted(_submodules(mod)):
                if not _matches(sub, excludes):
                    finder.import_hook(sub)

    entries: dict[str, bytes] = {}
    used_builtins: set[str] = set()
    extensions: list[dict[str, str]] = []
    app_files: list[str] = []
    for name, mod in sorted(finder.modules.items()):
        path: str | None = getattr(mod, "__file__", None)
        is_pkg = getattr(mod, "__path__", None) is not None
        if name in frozen and (path is None or _under(path, app_paths) is None):
            continue
        if path is None:
            if name in builtin:
                used_builtins.add(name)
            continue
        if path.endswith((".so", ".pyd")):
            extensions.append({"module": name, "file": path})
            continue
        if not path.endswith(".py"):
            continue
        root = _under(path, app_paths)
        rel = os.path.relpath(path, root) if root else os.path.relpath(path, req["stdlib"])
        with open(path, "rb") as f:
            source = f.read()
        try:
            code = compile(source, rel, "exec", dont_inherit=True, optimize=req["optimize"])
        except SyntaxError as err:
            print(json.dumps({"error": f"cannot compile {path}: {err}"}))
            return 2
        arc = name.replace(".", "/") + ("/__init__.pyc" if is_pkg else ".pyc")
        entries[arc] = _pyc(code)
        if root:
            app_files.append(path)

    # package data (templates, certificates, py.typed...) of third-party and app packages
    tops = {os.path.relpath(p, _under(p, app_paths) or "/").split("/")[0] for p in app_files}
    for root in app_paths:
        for top in sorted(tops):
            base = os.path.join(root, top)
            if not os.path.isdir(base):
                continue
            for dirpath, dirs, files in os.walk(base):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                for fn in sorted(files):
                    if fn.endswith(CODE_SUFFIXES):
                        continue
                    full = os.path.join(dirpath, fn)
                    with open(full, "rb") as f:
                        entries.setdefault(os.path.relpath(full, root), f.read())
        for dist in req["distributions"]:
            for meta in ("METADATA", "entry_points.txt", "top_level.txt"):
                for info in _dist_infos(root, dist):
                    full = os.path.join(root, info, meta)
                    if os.path.isfile(full):
                        with open(full, "rb") as f:
                            entries[f"{info}/{meta}"] = f.read()

    missing_c = []
    for cmod, user in sorted(UNAVAILABLE.items()):
        if cmod in finder.badmodules and user in finder.modules:
            importers = sorted(finder.badmodules[cmod])
            missing_c.append({"module": user, "c_module": cmod, "imported_by": importers})

    method = zipfile.ZIP_DEFLATED if req["compression"] == "deflated" else zipfile.ZIP_STORED
    tmp = req["output"] + ".part"
    with zipfile.ZipFile(tmp, "w", method) as zf:
        level = 9 if method == zipfile.ZIP_DEFLATED else None
        for arc in sorted(entries):
            zinfo = zipfile.ZipInfo(arc, ZIP_DATE)
            zinfo.compress_type = method
            zinfo.external_attr = 0o100444 << 16
            zinfo.create_system = 3
            zf.writestr(zinfo, entries[arc], compresslevel=level)
    os.replace(tmp, req["output"])
    print(
        json.dumps(
            {
                "builtins": sorted(used_builtins),
                "modules": sum(1 for a in entries if a.endswith(".pyc")),
                "files": len(entries),
                "extensions": extensions,
                "missing_c": missing_c,
            }
        )
    )
    return 0


def _add_named_codecs(finder: StdlibAwareFinder, stdlib: str, excludes: list[str]) -> None:
    """Codecs are imported by name (``s.encode("punycode")``): bundle every codec whose name
    appears as a string literal in the app's or its dependencies' code."""
    from encodings.aliases import aliases  # this interpreter's stdlib is the kit's

    encodings_dir = os.path.join(stdlib, "encodings")
    available = {f[:-3] for f in os.listdir(encodings_dir) if f.endswith(".py")}
    wanted: set[str] = set()
    for value in finder.app_strings:
        norm = value.lower().replace("-", "_").replace(" ", "_")
        norm = aliases.get(norm, norm)
        if norm in available and norm not in ("__init__", "aliases"):
            wanted.add(norm)
    for name in sorted(wanted):
        full = f"encodings.{name}"
        if not _matches(full, excludes):
            with contextlib.suppress(ImportError):
                finder.import_hook(full)


def _submodules(mod: object) -> list[str]:
    paths: list[str] = getattr(mod, "__path__", None) or []
    name: str = getattr(mod, "__name__", "")
    out = []
    for d in paths:
        for fn in sorted(os.listdir(d)):
            stem, ext = os.path.splitext(fn)
            if ext == ".py" and stem != "__init__":
                out.append(f"{name}.{stem}")
            elif os.path.isfile(os.path.join(d, fn, "__init__.py")):
                out.append(f"{name}.{fn}")
    return out


def _dist_infos(root: str, dist: str) -> list[str]:
    norm = dist.lower().replace("-", "_").replace(".", "_")
    out = []
    for fn in sorted(os.listdir(root)):
        if fn.endswith(".dist-info") and fn.split("-")[0].lower().replace(".", "_") == norm:
            out.append(fn)
    return out


if __name__ == "__main__":
    sys.exit(main())
