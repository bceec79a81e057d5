"""Runs INSIDE the static runtime's build interpreter: finds the app's modules, writes the zip.

Why in that interpreter: the bytecode must come from the exact CPython the executable embeds,
and "is this a built-in" must be answered by the runtime, not by the host Python. Stdlib only;
reads one JSON request file (argv[1]), writes one JSON report to stdout.

Request: entry (module), run_main, search_path, stdlib, app_paths (non-stdlib roots),
excludes, includes, distributions (dist-info names to keep), output (zip path), compression
("stored"/"deflated"; "cold": the bytecode the start does not import deflated; "bytecode": all
bytecode deflated), optimize; optional strip_docstrings (distributions whose modules are
compiled without docstrings), native_roots and native_suffix (where musllinux
wheels are unpacked, their extension modules' suffix), elf_align (where ELF members' bytes
start: a multiple of it from the zip's start), multiarch (an executable for another
machine: its triple, which names its sysconfig data; this interpreter is then the host's kit,
built from the same sources, so its bytecode and built-in modules are the target's).
Report: builtins (C modules to link), modules, packages (top-level non-stdlib modules), files,
extensions (compiled modules the app needs: refused), native (compiled modules from
native_roots, the musllinux wheels' files, put into the zip with their bundled libraries:
module and member), left_out (optional ones, with who copes), sources_for_extensions
(compiled modules outside native_roots replaced by the .py beside them), missing_c (stdlib C
modules the kit lacks); or error.
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import functools
import importlib.machinery
import importlib.util
import json
import marshal
import modulefinder
import os
import re
import shutil
import sys
import types
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

_imp = __import__("_imp")

#: modulefinder's file kind for an implicit namespace package (its own kinds are 1-7)
NAMESPACE = 100

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

#: Edges the syntax tree cannot show: imports made from C, through the loader protocol or by a
#: computed name. module -> what it needs at run time. Everything a stdlib function imports in
#: Python is found by the scan itself (StdlibAwareFinder).
HIDDEN_EDGES = {
    # blake2b/blake2s always come from _blake2 (hashlib never asks OpenSSL for them); _md5,
    # _sha1, _sha256, _sha512 and _sha3 only stand in for a digest OpenSSL lacks, and the kit's
    # OpenSSL has them all: not linked (-55 KB)
    "hashlib": ("_blake2",),
    "socket": ("encodings.idna",),  # _socket.getaddrinfo() encodes every str host with "idna"
    "time": ("_strptime",),  # time.strptime() imports it from C
    "_datetime": ("time", "_strptime"),
    # importlib.resources asks the module's loader for a reader: here that is zipimport (frozen,
    # so never scanned), whose get_resource_reader() imports importlib.readers
    "importlib.resources": ("importlib.readers",),
    "importlib.resources._common": ("importlib.readers",),
    # what each C module imports with PyImport_ImportModule (CPython 3.11's Modules/*.c)
    "_pickle": ("copyreg", "_compat_pickle", "codecs", "functools"),
    "_elementtree": ("copy", "xml.etree.ElementPath"),
    "_decimal": ("numbers", "collections", "collections.abc"),
    "_sqlite3": ("functools",),
    "_ctypes": ("ctypes",),
    "_curses": ("curses",),
    "_zoneinfo": ("zoneinfo._tzpath", "zoneinfo._common", "io", "weakref"),
    # load_tzdata() opens importlib.resources.files("tzdata.zoneinfo.<Area>"): a scratch root
    # has no /usr/share/zoneinfo, so the IANA database comes from the tzdata package (its data
    # files go in with the package; ".*": every subpackage, each one a resource anchor)
    "zoneinfo._common": ("tzdata.*",),
    "dbm": ("dbm.dumb",),  # dbm.open() imports its back ends by name (gnu/ndbm: C, not built)
    "xml.dom.domreg": ("xml.dom.minidom",),  # getDOMImplementation() imports it by name
    "xml.sax": ("xml.sax.expatreader",),  # by name, from xml.sax.default_parser_list
    # Third-party packages that load their own modules by a name in configuration (what a
    # PyInstaller hook does for the default route); "pkg.*" is every submodule, optional ones
    # included, but none made mandatory. gunicorn: the logger class and the worker classes
    # (gunicorn.glogging.Logger, gunicorn.workers.sync.SyncWorker) are strings in its config.
    "gunicorn": ("gunicorn.*",),
    # SQLAlchemy imports the dialect a URL's scheme names ("sqlite://") through its PluginLoader
    "sqlalchemy.dialects": ("sqlalchemy.dialects.*",),
    # Django imports the ENGINE of settings.DATABASES (its ".base") and the management command
    # call_command()/manage.py names ("migrate") by name
    "django.db.utils": ("django.db.backends.*",),
    "django.core.management": ("django.core.management.commands.*",),
    # Django's template engine: its built-in tag and filter libraries, by name
    "django.template.engine": (
        "django.template.defaulttags",
        "django.template.defaultfilters",
        "django.template.loader_tags",
        "django.templatetags.*",
    ),
    # uvicorn: its loop, protocol and lifespan implementations are strings in its Config
    "uvicorn": ("uvicorn.*",),
    # pydantic's public names are lazy attributes: its __getattr__ imports their modules by name
    "pydantic": ("pydantic.*",),
    # anyio imports its event-loop back end by name (the trio one only when trio is installed)
    "anyio._core._eventloop": ("anyio._backends._asyncio", "anyio._backends._trio"),
}

#: Calls whose string arguments name modules a third-party package imports later by name: the
#: module making the call needs them as if it imported them. SQLAlchemy's ``util.preloaded``
#: registry: ``@util.preload_module("sqlalchemy.sql.util")`` registers, ``import_prefix()``
#: imports every registered module when the package finishes importing.
NAME_REGISTERING_CALLS = frozenset(("preload_module",))

#: Functions that read their CALLER's source when called (module, function): a module that
#: imports one keeps its ``.py`` beside its ``.pyc``, or it behaves as it would not in a venv.
#: anyio (4.12+): ``install_lazy_importer()`` builds the package's lazy-import table from the
#: ``if TYPE_CHECKING or not install_lazy_importer():`` block of its source; with no source it
#: returns False and the package imports every submodule eagerly (FastAPI's start: ~10 ms).
SOURCE_READERS = frozenset((("anyio._lazyimport", "install_lazy_importer"),))

#: Stdlib sources the runtime never executes: importlib/__init__ puts the frozen modules in
#: sys.modules under these names, so neither their code nor their function-level imports count.
FROZEN_ALIASES = frozenset(("importlib._bootstrap", "importlib._bootstrap_external"))

#: Stdlib imports not followed, each for a reason. (importer, imported)
UNFOLLOWED_EDGES = frozenset(
    (
        # only logs a digest that neither OpenSSL nor a built-in provides, which the kit's
        # OpenSSL never lacks (see HIDDEN_EDGES); following it bundled logging, pickle, _pickle
        # and string into every app that hashes (-47 KB linked, -45 KB of bytecode)
        ("hashlib", "logging"),
        # cannot run: traceback parses a source line to place its ^^^ carets, and the zip holds
        # no source
        ("traceback", "ast"),
        # not an API: XmlListener/XmlClient, outside multiprocessing.connection's __all__ and
        # its documentation; following it pulls xmlrpc, http.client, decimal and pyexpat into
        # every app that imports concurrent.futures (asyncio does)
        ("multiprocessing.connection", "xmlrpc.client"),
    )
)

#: Development and interactive tools: a stdlib module that imports one of them inside a function
#: does it for a debugging or help feature (pdb.set_trace, help(), doctest, a test runner). The
#: scan does not follow such a function-level stdlib edge; the app importing them gets them.
DEV_TOOLS = frozenset(
    {
        *("bdb", "code", "codeop", "cmd", "cProfile", "doctest", "ensurepip", "idlelib"),
        *("lib2to3", "pdb", "profile", "pstats", "pydoc", "pydoc_data", "rlcompleter"),
        *("tabnanny", "test", "timeit", "tkinter", "trace", "turtle", "turtledemo"),
        *("unittest", "venv", "webbrowser"),
    }
)

#: Stdlib functions that are `python -m module` command lines or self-tests (argparse,
#: printing, statistics of random's generators...): names equal to or starting with these.
CLI_FUNCTIONS = ("main", "_main", "test", "_test", "demo", "_demo")

#: Exception names whose handler makes a failing import inside its `try` a handled one.
IMPORT_ERRORS = frozenset(("ImportError", "ModuleNotFoundError", "Exception", "BaseException"))
#: The handlers that make a private function called in their `try` a probe (see probe_functions):
#: only the import errors themselves, since a broader one also hides the function's real work.
PROBE_ERRORS = frozenset(("ImportError", "ModuleNotFoundError"))


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


def _platform_value(expr: ast.expr) -> str | None:
    """``sys.platform`` / ``os.name`` (also as ``_sys``/``_os``): this interpreter's value, which
    is the target's (the kit runs the scan)."""
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
        if expr.value.id in ("sys", "_sys") and expr.attr == "platform":
            return sys.platform
        if expr.value.id in ("os", "_os") and expr.attr == "name":
            return os.name
    return None


def _str_consts(expr: ast.expr) -> tuple[str, ...] | None:
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return (expr.value,)
    if isinstance(expr, ast.Tuple | ast.List | ast.Set):
        out = [
            e.value for e in expr.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
        ]
        if len(out) == len(expr.elts):
            return tuple(out)
    return None


#: The OS interface module each platform builds in: ``"nt" in sys.builtin_module_names`` is a
#: platform test like ``os.name == "nt"`` (os.py's, which imports ntpath under it); whether
#: any other name is there depends on what the app's link keeps.
PLATFORM_MODULES = ("posix", "nt")


def _is_module_names(expr: ast.expr, aliases: frozenset[str]) -> bool:
    """``sys.builtin_module_names``, or a module-level name bound to it (os.py's ``_names``)."""
    if isinstance(expr, ast.Name):
        return expr.id in aliases
    return (
        isinstance(expr, ast.Attribute)
        and isinstance(expr.value, ast.Name)
        and expr.value.id in ("sys", "_sys")
        and expr.attr == "builtin_module_names"
    )


def module_names_aliases(body: list[ast.stmt]) -> frozenset[str]:
    """Module-level names bound to ``sys.builtin_module_names`` (``_names = sys.builtin_...``)."""
    return frozenset(
        node.targets[0].id
        for node in body
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and _is_module_names(node.value, frozenset())
    )


def static_truth(
    test: ast.expr, consts: dict[str, bool], aliases: frozenset[str] = frozenset()
) -> bool | None:
    """The value of a platform test (``sys.platform == "win32"``, ``os.name != "nt"``,
    ``sys.platform.startswith("darwin")``, ``"posix" in sys.builtin_module_names`` or in one
    of its ``aliases``, a module constant set from one, ``not``/``and``/``or`` of those) on the
    target; None when it is not such a test."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        v = static_truth(test.operand, consts, aliases)
        return None if v is None else not v
    if isinstance(test, ast.BoolOp):
        vals = [static_truth(v, consts, aliases) for v in test.values]
        decisive = isinstance(test.op, ast.Or)  # True decides an `or`, False an `and`
        if decisive in vals:
            return decisive
        return None if None in vals else not decisive
    if isinstance(test, ast.Name):
        return consts.get(test.id)
    if (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.In | ast.NotIn)
        and isinstance(test.left, ast.Constant)
        and test.left.value in PLATFORM_MODULES
        and _is_module_names(test.comparators[0], aliases)
    ):
        present = test.left.value == os.name
        return present if isinstance(test.ops[0], ast.In) else not present
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        value, options = _platform_value(test.left), _str_consts(test.comparators[0])
        if value is None or options is None:
            return None
        op = test.ops[0]
        if isinstance(op, ast.Eq | ast.In):
            return value in options if isinstance(op, ast.In) else value == options[0]
        if isinstance(op, ast.NotEq | ast.NotIn):
            return value not in options if isinstance(op, ast.NotIn) else value != options[0]
        return None
    if (
        isinstance(test, ast.Call)
        and isinstance(test.func, ast.Attribute)
        and test.func.attr == "startswith"
        and len(test.args) == 1
        and not test.keywords
    ):
        value, options = _platform_value(test.func.value), _str_consts(test.args[0])
        if value is not None and options is not None:
            return value.startswith(options)
    return None


def platform_constants(body: list[ast.stmt]) -> dict[str, bool]:
    """Module-level ``NAME = <platform test>`` (``_mswindows = sys.platform == "win32"``)."""
    aliases = module_names_aliases(body)
    consts: dict[str, bool] = {}
    for node in body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            v = static_truth(node.value, consts, aliases)
            if v is not None:
                consts[node.targets[0].id] = v
    return consts


def _catches_import_error(
    handler: ast.ExceptHandler, errors: frozenset[str] = IMPORT_ERRORS
) -> bool:
    types_ = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    for t in types_:
        if t is None:
            return "BaseException" in errors  # a bare `except:`
        name = t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else ""
        if name in errors:
            return True
    return False


def _suppresses_import_error(node: ast.With | ast.AsyncWith) -> bool:
    for item in node.items:
        call = item.context_expr
        if isinstance(call, ast.Call):
            f = call.func
            fname = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            args = [a.id if isinstance(a, ast.Name) else getattr(a, "attr", "") for a in call.args]
            if fname == "suppress" and IMPORT_ERRORS & set(args):
                return True
    return False


@dataclass(frozen=True, slots=True)
class Where:
    """Where an import statement sits. ``guarded``: a failure there is handled (inside
    ``try``/``except ImportError`` or ``suppress(ImportError)``, or in a probe function);
    ``lazy``: it runs only when a function is called; ``conditional``: under an ``if`` decided at
    run time (a flag); ``alternative_to``: in an ``except ImportError:`` handler, the imports of
    its ``try``; ``after``: in the ``else:`` of such a ``try``, which runs only once those
    imports have succeeded."""

    guarded: bool = False
    lazy: bool = False
    conditional: bool = False
    alternative_to: tuple[ast.Import | ast.ImportFrom, ...] = ()
    after: tuple[ast.Import | ast.ImportFrom, ...] = ()


@dataclass(frozen=True, slots=True)
class Site:
    """One import statement that can run, and where it sits."""

    node: ast.Import | ast.ImportFrom
    where: Where


@dataclass(frozen=True, slots=True)
class ScanRules:
    """Which import statements can run. ``lazy``: follow function bodies; ``main``: the
    `if __name__ == "__main__":` block; ``skip_functions``: function names never followed;
    ``consts``: the module's platform constants; ``module_names``: its names for
    ``sys.builtin_module_names``; ``probes``: the module's probe functions (probe_functions),
    whose imports are guarded."""

    lazy: bool
    main: bool
    skip_functions: tuple[str, ...] = ()
    consts: dict[str, bool] = field(default_factory=dict)
    module_names: frozenset[str] = frozenset()
    probes: frozenset[ast.FunctionDef | ast.AsyncFunctionDef] = frozenset()


def import_sites(body: list[ast.stmt], rules: ScanRules, where: Where = Where()) -> Iterator[Site]:
    """Import statements that can run on the target: never under `if TYPE_CHECKING:` nor in a
    platform branch that is false here; inside functions only when ``rules.lazy``; under
    `if __name__ == "__main__":` only when ``rules.main``."""

    def walk(part: list[ast.stmt], **change: Any) -> Iterator[Site]:
        return import_sites(part, rules, replace(where, **change))

    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield Site(node, where)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if rules.lazy and not (
                rules.skip_functions and node.name.startswith(rules.skip_functions)
            ):
                yield from walk(node.body, lazy=True, guarded=where.guarded or node in rules.probes)
        elif isinstance(node, ast.If):
            truth = static_truth(node.test, rules.consts, rules.module_names)
            if _is_type_checking(node.test) or (_is_main_guard(node.test) and not rules.main):
                truth = False
            flag = where.conditional or truth is None
            if truth is not False:
                yield from walk(node.body, conditional=flag)
            if truth is not True:
                yield from walk(node.orelse, conditional=flag)
        elif isinstance(node, ast.Try | ast.TryStar):
            handled = any(_catches_import_error(h) for h in node.handlers)
            yield from walk(node.body, guarded=where.guarded or handled)
            tried = tuple(n for n in node.body if isinstance(n, ast.Import | ast.ImportFrom))
            if handled and tried:  # runs only when every import of the try has worked
                yield from walk(node.orelse, conditional=True, after=where.after + tried)
            else:
                yield from walk(node.orelse)
            yield from walk(node.finalbody)
            for handler in node.handlers:
                alt = tried if _catches_import_error(handler) else ()
                yield from walk(handler.body, alternative_to=alt or where.alternative_to)
        elif isinstance(node, ast.With | ast.AsyncWith):
            yield from walk(node.body, guarded=where.guarded or _suppresses_import_error(node))
        elif isinstance(node, ast.ClassDef):
            yield from walk(node.body)
        elif isinstance(node, ast.For | ast.AsyncFor | ast.While):
            yield from walk(node.body)
            yield from walk(node.orelse)
        elif isinstance(node, ast.Match):
            for case in node.cases:
                yield from walk(case.body)


def probe_functions(tree: ast.Module) -> frozenset[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Module-level private functions called only inside a ``try`` whose handler catches
    ``ImportError`` (SQLAlchemy's ``_import_cy_extensions()``): an import failing in one is
    handled by every caller. Private (a leading underscore), so no other module calls it; every
    mention of its name in the module must be such a call, or it may be run from elsewhere."""
    defs: dict[str, list[ast.FunctionDef | ast.AsyncFunctionDef]] = {}
    todo: list[ast.stmt] = list(tree.body)
    while todo:  # the module's own level: through if/try/with, never into a class or function
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            defs.setdefault(node.name, []).append(node)
        elif isinstance(node, ast.If | ast.With | ast.For | ast.While):
            todo += node.body + node.orelse if not isinstance(node, ast.With) else node.body
        elif isinstance(node, ast.Try | ast.TryStar):
            todo += node.body + node.orelse + node.finalbody
            todo += [s for h in node.handlers for s in h.body]
    private = {n for n in defs if n.startswith("_") and not n.startswith("__")}
    if not private:
        return frozenset()
    guarded_calls: set[int] = set()
    mentions: dict[str, list[ast.Name]] = {}
    for sub in ast.walk(tree):
        if isinstance(sub, ast.Try | ast.TryStar) and any(
            _catches_import_error(h, PROBE_ERRORS) for h in sub.handlers
        ):
            for call in _calls_run(sub.body):
                if isinstance(call.func, ast.Name) and call.func.id in private:
                    guarded_calls.add(id(call.func))
        elif isinstance(sub, ast.Name) and sub.id in private:
            mentions.setdefault(sub.id, []).append(sub)
    out = []
    for name in private:
        used = mentions.get(name, [])
        if used and all(id(n) in guarded_calls for n in used):
            out += defs[name]
    return frozenset(out)


def _calls_run(body: list[ast.stmt]) -> Iterator[ast.Call]:
    """The calls these statements make when they run; not those inside a function, lambda or
    class they define (a conservative cut: a method may run later, outside the ``try``)."""
    todo: list[ast.AST] = list(body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        if isinstance(node, ast.Call):
            yield node
        todo.extend(ast.iter_child_nodes(node))


def _imports(body: list[ast.stmt], *, lazy: bool, main: bool) -> Iterator[ast.stmt]:
    """The statements of import_sites() (the platform-independent view)."""
    for site in import_sites(body, ScanRules(lazy=lazy, main=main)):
        yield site.node


def _codec_names(tree: ast.AST) -> Iterator[str]:
    """String constants the stdlib may pass as a codec name: in the first argument of
    ``x.encode(...)``, ``x.decode(...)``, ``codecs.lookup(...)`` or an ``encoding=`` argument,
    alone or as an alternative (``self.metadata_encoding or "cp437"``)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        exprs = [kw.value for kw in node.keywords if kw.arg == "encoding"]
        if isinstance(f, ast.Attribute) and f.attr in ("encode", "decode", "lookup") and node.args:
            exprs.append(node.args[0])
        for expr in exprs:
            for sub in ast.walk(expr):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    yield sub.value


#: compile()'s flag for an AST object instead of code (``ast.PyCF_ONLY_AST``).
PYCF_ONLY_AST = 0x400
_BUILTINS_NAMES = ("builtins", "__builtins__")


def _is_builtins_compile(node: ast.AST) -> bool:
    """``builtins.compile`` or ``__builtins__.compile``."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "compile"
        and isinstance(node.value, ast.Name)
        and node.value.id in _BUILTINS_NAMES
    )


def _may_ask_for_ast(call: ast.Call) -> bool:
    """Whether this call of compile() may pass PyCF_ONLY_AST: flags that are not a constant
    without it, or arguments unpacked from a sequence or mapping."""
    if any(isinstance(a, ast.Starred) for a in call.args) or any(
        kw.arg is None for kw in call.keywords
    ):
        return True
    flags = call.args[3] if len(call.args) > 3 else None
    flags = next((kw.value for kw in call.keywords if kw.arg == "flags"), flags)
    if flags is None:
        return False
    return not (
        isinstance(flags, ast.Constant)
        and isinstance(flags.value, int)
        and not flags.value & PYCF_ONLY_AST
    )


def _binds_compile(tree: ast.Module) -> bool:
    """Whether the module binds the name ``compile`` to something of its own (a def, an
    assignment, an import other than ``from builtins import compile``)."""
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [n.name]
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names = [n.id]
        elif isinstance(n, ast.Import) or (
            isinstance(n, ast.ImportFrom) and n.module not in _BUILTINS_NAMES
        ):
            names = [a.asname or a.name for a in n.names]
        else:
            continue
        if "compile" in names:
            return True
    return False


def makes_ast_objects(tree: ast.Module) -> bool:
    """Whether a module may make or compile AST objects without importing ``ast``: a call of
    the builtin compile() that may ask for one (``compile(src, name, "exec", 0x400)``), or
    compile() handed on by reference (``f = compile``, ``builtins.compile``,
    ``getattr(builtins, "compile")``), whose calls the scan cannot follow. The executable then
    links ``_ast`` and with it the AST object conversions (kit.AST_EDITS); a module that binds
    ``compile`` itself (``re``, ``from re import compile``) calls its own. Not seen, as with
    imports by computed name: code run from strings (exec, eval) and builtins looked up by a
    computed name (``getattr(builtins, name)``)."""
    own = _binds_compile(tree)

    def is_compile(node: ast.AST) -> bool:
        return _is_builtins_compile(node) or (
            not own and isinstance(node, ast.Name) and node.id == "compile"
        )

    called = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if is_compile(node.func):
            called.add(id(node.func))
            if _may_ask_for_ast(node):
                return True
        elif (
            isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id in _BUILTINS_NAMES
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value == "compile"
        ):
            return True
    return any(id(node) not in called and is_compile(node) for node in ast.walk(tree))


class StdlibAwareFinder(modulefinder.ModuleFinder):
    """modulefinder, reading imports from the source's syntax tree instead of its bytecode.

    Everywhere: every import that can run on the target, including inside functions; never
    `if TYPE_CHECKING:` blocks nor branches for another platform. The stdlib: not its
    `python -m` command-line functions (CLI_FUNCTIONS), nor a function-level import of a
    development tool (DEV_TOOLS): those are how it keeps pydoc, doctest, unittest... off the
    start path, and following them bundles half of it.
    Also supports implicit namespace packages, and takes the pure-Python source of a compiled
    module when it ships beside it (mypyc, Cython pure-Python mode) unless the compiled module
    is a musllinux wheel's (under ``native_roots``), which the executable loads.
    """

    def __init__(
        self, stdlib: str, main: str, native_roots: tuple[str, ...] = (), **kwargs: object
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.stdlib = stdlib.rstrip("/") + "/"
        self.native_roots = list(native_roots)
        self.main = main
        # short str literals of the app's and its dependencies' code: codec names may be in them
        self.app_strings: set[str] = set()
        self.codec_strings: set[str] = set()  # codec names the stdlib passes in calls
        self.namespaces: set[str] = set()
        self.source_for_extension: dict[str, str] = {}  # module -> the .so left for its .py
        # importer -> (imported module and its parents, whether a failure is handled)
        self.edges: dict[str, set[tuple[str, bool]]] = {}
        # module -> who imports it with no guard and no run-time condition around the import
        self.plain_importers: dict[str, set[str]] = {}
        # importer -> (imported module, the modules whose import must work first): imports in
        # the ``else:`` of a ``try`` that guards an ImportError (see needed_modules)
        self.after_edges: dict[str, set[tuple[str, tuple[str, ...]]]] = {}
        # importer -> what it imports at its module level (not in a function): run at import
        self.eager_edges: dict[str, set[str]] = {}
        # private helpers of ModuleFinder that typeshed does not describe
        self._hook: Callable[..., object] = getattr(self, "_safe_import_hook")  # noqa: B009
        self._parent: Callable[..., Any] = getattr(self, "determine_parent")  # noqa: B009

    def find_module(
        self, name: str, path: Any, parent: Any = None
    ) -> tuple[Any, Any, tuple[str, str, int]]:
        """modulefinder's, plus: frozen modules with no source, namespace packages, and the
        ``.py`` beside a compiled module instead of a ``.so`` the executable cannot load."""
        fullname = f"{parent.__name__}.{name}" if parent is not None else name
        if fullname in self.excludes:
            raise ImportError(name)
        if path is None:
            if name in sys.builtin_module_names:
                return (None, None, ("", "", modulefinder._C_BUILTIN))  # type: ignore[attr-defined]
            path = self.path
        spec = (
            None
            if fullname in FROZEN_ALIASES
            else importlib.machinery.PathFinder.find_spec(name, path)
        )
        if fullname in FROZEN_ALIASES or (
            spec is None and path is self.path and _imp.is_frozen(name)
        ):
            return (None, None, ("", "", modulefinder._PY_FROZEN))  # type: ignore[attr-defined]
        if spec is not None and spec.loader is None and spec.submodule_search_locations:
            return (None, list(spec.submodule_search_locations), ("", "", NAMESPACE))
        if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            origin = str(spec.origin)
            source = os.path.join(os.path.dirname(origin), name + ".py")
            if os.path.isfile(source) and _under(origin, self.native_roots) is None:
                self.source_for_extension[fullname] = origin
                kind = modulefinder._PY_SOURCE  # type: ignore[attr-defined]
                return (open(source, "rb"), source, (".py", "rb", kind))
        return modulefinder._find_module(name, path)  # type: ignore[attr-defined,no-any-return]

    def load_module(
        self, fqname: str, fp: Any, pathname: Any, file_info: tuple[Any, Any, Any]
    ) -> modulefinder.Module:
        if file_info[2] != NAMESPACE:
            return super().load_module(fqname, fp, pathname, file_info)
        m = self.add_module(fqname)
        setattr(m, "__file__", None)  # noqa: B010 - typeshed does not describe Module's fields
        setattr(m, "__path__", list(pathname))  # noqa: B010
        self.namespaces.add(fqname)
        return m

    def scan_code(self, co: types.CodeType, m: modulefinder.Module) -> None:
        path: str = getattr(m, "__file__", None) or ""
        if not path.endswith(".py"):
            super().scan_code(co, m)
            return
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
        in_stdlib = path.startswith(self.stdlib)
        if makes_ast_objects(tree):
            self._hook("_ast", m, None, level=0)  # links compile()'s AST objects
        if in_stdlib:
            self.codec_strings.update(_codec_names(tree))
        else:
            self.app_strings.update(
                node.value
                for node in ast.walk(tree)
                if isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and 2 <= len(node.value) <= 40
                and node.value.isascii()
            )
        name: str = getattr(m, "__name__", "")
        rules = ScanRules(
            lazy=True,
            main=name == self.main,
            skip_functions=CLI_FUNCTIONS if in_stdlib else (),
            consts=platform_constants(tree.body),
            module_names=module_names_aliases(tree.body),
            probes=frozenset() if in_stdlib else probe_functions(tree),
        )
        edges = self.edges.setdefault(name, set())
        if not in_stdlib:
            for target in _registered_modules(tree):
                self._hook(target, m, None, level=0)
                edges.update((t, False) for t in _prefixes(target))
                for t in _prefixes(target):
                    self.plain_importers.setdefault(t, set()).add(name)
        for site in import_sites(tree.body, rules):
            node = site.node
            where = site.where
            if in_stdlib and where.lazy and (where.guarded or _top(node) in DEV_TOOLS):
                continue  # the stdlib copes without it, or it is a debugging/help feature
            if isinstance(node, ast.Import) and any(
                (name, a.name) in UNFOLLOWED_EDGES for a in node.names
            ):
                continue
            if where.alternative_to and all(self._resolved(n, m) for n in where.alternative_to):
                continue  # a fallback for an import that works here
            for target in self._targets(node, m):
                if not where.lazy:
                    self.eager_edges.setdefault(name, set()).add(target)
                if where.after and not where.guarded:
                    first = tuple(n for t in where.after for n in self._imported(t, m))
                    self.after_edges.setdefault(name, set()).add((target, first))
                    continue
                edges.add((target, where.guarded))
                if not where.guarded and not where.conditional:
                    self.plain_importers.setdefault(target, set()).add(name)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self._hook(alias.name, m, None, level=0)
                continue
            fromlist = [a.name for a in node.names if a.name != "*"]
            if node.level and not node.module:
                parent = self._parent(m, level=node.level)
                self._hook(parent.__name__, None, fromlist, level=0)
            else:
                self._hook(node.module or "", m, fromlist or None, level=node.level)

    def _resolved(self, node: ast.Import | ast.ImportFrom, m: modulefinder.Module) -> bool:
        """Whether the import works in the executable: found, and not a compiled module."""
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom):
            base = self._base(node, m)
            names = [base] if base else []
        found = [self.modules.get(n) for n in names]
        return bool(names) and all(
            mod is not None and not str(getattr(mod, "__file__", "")).endswith((".so", ".pyd"))
            for mod in found
        )

    def _imported(self, node: ast.Import | ast.ImportFrom, m: modulefinder.Module) -> list[str]:
        """The modules an import statement must load for it to succeed (not its from-list,
        whose names may be attributes)."""
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        base = self._base(node, m)
        return [base] if base else []

    def _base(self, node: ast.ImportFrom, m: modulefinder.Module) -> str | None:
        """The absolute name of the module a ``from ... import`` reads (None: not resolvable)."""
        if not node.level:
            return node.module or ""
        try:
            parent = self._parent(m, level=node.level)
        except ImportError:
            return None
        pname = getattr(parent, "__name__", "") if parent is not None else ""
        return ".".join(p for p in (pname, node.module) if p)

    def _targets(self, node: ast.Import | ast.ImportFrom, m: modulefinder.Module) -> list[str]:
        """The absolute names an import statement may load (parents and from-list included)."""
        if isinstance(node, ast.Import):
            return [p for a in node.names for p in _prefixes(a.name)]
        base = self._base(node, m)
        if base is None:
            return []
        return _prefixes(base) + [f"{base}.{a.name}" for a in node.names if a.name != "*"]


def _registered_modules(tree: ast.Module) -> list[str]:
    """The module names passed to a NAME_REGISTERING_CALLS call anywhere in ``tree``."""
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if fname in NAME_REGISTERING_CALLS:
            out += [
                a.value
                for a in node.args
                if isinstance(a, ast.Constant)
                and isinstance(a.value, str)
                and all(part.isidentifier() for part in a.value.split("."))
            ]
    return sorted(set(out))


def _top(node: ast.Import | ast.ImportFrom) -> str:
    if isinstance(node, ast.Import):
        return node.names[0].name.split(".")[0]
    return "" if node.level else (node.module or "").split(".")[0]


def _prefixes(name: str) -> list[str]:
    parts = name.split(".") if name else []
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def unguarded_reach(
    roots: list[str],
    edges: dict[str, set[tuple[str, bool]]],
    extra: dict[str, set[str]] | None = None,
) -> set[str]:
    """Modules the app imports with no ``except ImportError`` on the way: an extension module
    outside this set is an optional speedup the importing code can live without. ``extra``:
    more unguarded edges (importer -> imported)."""
    seen: set[str] = set()
    todo = [p for r in roots for p in _prefixes(r)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(t for t, guarded in edges.get(name, ()) if not guarded)
        todo.extend((extra or {}).get(name, ()))
    return seen


#: What the interpreter imports from the zip before the app: the codecs of its UTF-8 mode.
INTERPRETER_START = ("encodings", "encodings.aliases", "encodings.utf_8")


def start_modules(roots: list[str], eager_edges: dict[str, set[str]]) -> set[str]:
    """Modules taken to be imported when the app starts: the interpreter's own, the roots
    (every module of the app and its dependencies: which of their functions run at start is
    not known here) and what module-level imports reach from them. The rest are stdlib modules
    only imported inside functions (ssl for TLS, typing from functools.singledispatch, ...).
    A module wrongly left out here is slower to import (inflated), never missing."""
    seen: set[str] = set()
    todo = [p for r in [*INTERPRETER_START, *roots] for p in _prefixes(r)]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(p for t in eager_edges.get(name, ()) for p in _prefixes(t))
    return seen


def needed_modules(
    roots: list[str],
    edges: dict[str, set[tuple[str, bool]]],
    after_edges: dict[str, set[tuple[str, tuple[str, ...]]]],
    found: set[str],
    compiled: set[str],
) -> set[str]:
    """unguarded_reach(), where an import in the ``else:`` of a ``try`` that guards an
    ImportError counts only when the tried imports work in the executable: each is found and
    every compiled module it needs is needed too (SQLAlchemy imports its greenlet-based module
    only in the ``else:`` of ``try: import greenlet``, so greenlet's compiled module left out
    leaves that branch out too). More needed modules can only make more such branches run:
    repeat until nothing changes."""
    active: dict[str, set[str]] = {}
    while True:
        needed = unguarded_reach(roots, edges, active)
        more = False
        for importer in sorted(needed & after_edges.keys()):
            for target, first in sorted(after_edges[importer]):
                if target in active.get(importer, ()):
                    continue
                reach = unguarded_reach(list(first), edges, active)
                if all(f in found for f in first) and compiled & reach <= needed:
                    active.setdefault(importer, set()).add(target)
                    more = True
        if not more:
            return needed


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


def without_docstrings(tree: ast.Module) -> ast.Module:
    """The module with its module, class and function docstrings removed, as `-OO` compiles it
    but keeping asserts and `__debug__`: `__doc__` is None."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            doc = body.pop(0)
            if not body and not isinstance(node, ast.Module):
                body.append(ast.copy_location(ast.Pass(), doc))
    return tree


def _pyc(code: types.CodeType, source: bytes | None = None) -> bytes:
    """flags=0 with a zero mtime/size: zipimport does not validate a .pyc that has no .py beside
    it. With its ``source`` beside it, an unchecked hash-based .pyc (PEP 552), which zipimport
    takes as it is, where a timestamp one would be stale against the member's date."""
    if source is None:
        return importlib.util.MAGIC_NUMBER + b"\0" * 12 + marshal.dumps(code)
    flags = (1).to_bytes(4, "little")  # hash-based, check_source unset
    return (
        importlib.util.MAGIC_NUMBER
        + flags
        + importlib.util.source_hash(source)
        + marshal.dumps(code)
    )


def reads_own_source(tree: ast.Module, name: str, is_pkg: bool) -> bool:
    """Whether module ``name`` imports one of the SOURCE_READERS at its top level."""
    package = name if is_pkg else name.rpartition(".")[0]
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom):
            continue
        base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
        module = ".".join([*base, node.module] if node.module else base)
        if any((module, alias.name) in SOURCE_READERS for alias in node.names):
            return True
    return False


def _under(path: str, roots: list[str]) -> str | None:
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return root
    return None


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        req = json.load(f)
    if req.get("native_suffix"):
        _find_extensions_named(req["native_suffix"])
    try:
        report = bundle(req)
    except BundleError as err:
        report = {"error": str(err)}
    print(json.dumps(report))
    return 2 if "error" in report else 0


def _find_extensions_named(suffix: str) -> None:
    """Make PathFinder (and so modulefinder) see extension modules with this suffix too: the
    musllinux wheels' names, which this interpreter, built for another triple, would not."""
    machinery = importlib.machinery
    loaders = [
        (machinery.ExtensionFileLoader, [suffix, *machinery.EXTENSION_SUFFIXES]),
        (machinery.SourceFileLoader, machinery.SOURCE_SUFFIXES),
        (machinery.SourcelessFileLoader, machinery.BYTECODE_SUFFIXES),
    ]
    hook = machinery.FileFinder.path_hook(*loaders)
    sys.path_hooks[:] = [
        hook if getattr(h, "__name__", "") == "path_hook_for_FileFinder" else h
        for h in sys.path_hooks
    ]
    sys.path_importer_cache.clear()


class BundleError(Exception):
    """The request cannot be bundled; the message is for the person at the terminal."""


def find_modules(req: dict[str, Any]) -> tuple[StdlibAwareFinder, list[str]]:
    """Walk the imports from the entry point: the finder, and the modules asked for by name
    (entry point, include-modules, hidden edges, codecs), the roots of the import graph."""
    excludes: list[str] = req["excludes"]
    finder = StdlibAwareFinder(
        req["stdlib"],
        req["entry"],
        native_roots=tuple(req.get("native_roots", ())),
        path=req["search_path"],
        excludes=excludes,
    )
    roots = [req["entry"]]
    finder.import_hook(req["entry"])
    entry_mod = finder.modules.get(req["entry"])
    if req.get("run_main") and getattr(entry_mod, "__path__", None):
        roots.append(req["entry"] + ".__main__")  # runpy runs a package's __main__
        finder.import_hook(roots[-1])
    includes = _expand_includes(req["includes"], req["app_paths"], req["search_path"])
    for name, named in [(n, True) for n in ALWAYS] + includes:
        star = name.endswith(".*")
        base = name[:-2] if star else name
        try:
            finder.import_hook(base)
        except ImportError as err:
            raise BundleError(f"include-modules: cannot find {base}: {err}") from None
        if named:
            roots.append(base)
        if star:  # bundled, but not roots: they make no compiled module mandatory
            for sub in _submodules(finder.modules.get(base)):
                if not _matches(sub, excludes):
                    with contextlib.suppress(ImportError):
                        finder.import_hook(sub)
    done: set[str] = set()
    scanned: set[str] = set()
    while True:  # hidden edges and codecs until nothing new: the added modules may need more
        for name, mod in sorted(finder.modules.items()):
            path = getattr(mod, "__file__", None) or ""
            if name in scanned or _under(path, req.get("native_roots", [])) is None:
                continue
            scanned.add(name)
            for extra in c_imports(path, req["app_paths"]):
                if not _matches(extra, excludes):
                    with contextlib.suppress(ImportError):
                        finder.import_hook(extra)
        todo = [m for m in HIDDEN_EDGES if m in finder.modules and m not in done]
        todo += [m for m in ("sysconfig",) if m in finder.modules and m not in done]
        before = len(finder.modules)
        for name in todo:
            done.add(name)
            extras = HIDDEN_EDGES.get(name) or (_sysconfigdata_name(req.get("multiarch")),)
            for extra in extras:
                base = extra.removesuffix(".*")
                if not _matches(base, excludes):
                    with contextlib.suppress(ImportError):
                        finder.import_hook(base)
                        roots.append(base)
                    if extra != base:
                        for sub in _submodules(finder.modules.get(base)):
                            if not _matches(sub, excludes):
                                with contextlib.suppress(ImportError):
                                    finder.import_hook(sub)
        roots += _add_named_codecs(finder, req["stdlib"], excludes)
        if not todo and len(finder.modules) == before:
            break
    return finder, roots


#: Names a compiled module's string literals may hold that are no import it makes: tools and
#: demos of the stdlib, never imported from C by an extension.
_NOT_FROM_C = frozenset(
    {
        *("test", "idlelib", "tkinter", "turtle", "turtledemo", "lib2to3", "ensurepip"),
        *("pydoc", "pydoc_data", "this", "antigravity", "doctest", "unittest", "pdb", "venv"),
        *("distutils", "__hello__", "__phello__", "__main__", "site", "builtins"),
    }
)
#: A leading digit too: mypyc's shared runtime module is ``<hex hash>__mypyc``, which each of
#: its shims (charset_normalizer's ``md``) imports by name.
_C_STRING = re.compile(rb"(?<![\w.])([a-z0-9_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)\x00")


def c_imports(path: str, app_paths: list[str]) -> list[str]:
    """Modules a compiled extension may import from C (``PyImport_ImportModule("uuid")``, which
    no bytecode shows): its NUL-terminated strings that name a stdlib module or a module
    installed beside the app. Bundled, never made mandatory; a wrong guess costs bytes only."""
    with open(path, "rb") as f:
        data = f.read()
    out = set()
    for m in _C_STRING.finditer(data):
        name = m.group(1).decode()
        top = name.partition(".")[0]
        if len(top) < 3 or top in _NOT_FROM_C:
            continue
        installed = any(_installed(r, top) for r in app_paths)
        if top in sys.stdlib_module_names or installed:
            out.add(name)
    return sorted(out)


@functools.cache
def _installed(root: str, top: str) -> bool:
    """A top-level package, module or extension module (``_cffi_backend.<suffix>.so``)."""
    if os.path.isdir(os.path.join(root, top)) or os.path.isfile(os.path.join(root, top + ".py")):
        return True
    with contextlib.suppress(OSError):
        return any(f.startswith(top + ".") and f.endswith(".so") for f in os.listdir(root))
    return False


def optional_extension(name: str, finder: StdlibAwareFinder, needed: set[str]) -> str | None:
    """Who copes without the compiled module ``name``, or None when the app needs it.

    Optional: no import of it is reached without an ``except ImportError`` on the way (markupsafe
    tries ``_speedups``, PyYAML's ``cyaml`` is itself tried), or its own package probes it under
    ``try`` and imports it elsewhere only behind a run-time flag (multidict's USE_EXTENSIONS).
    """
    guarded = sorted(i for i, e in finder.edges.items() if (name, True) in e)
    if name not in needed:  # the import in a try that leads to it, as close to it as possible
        for importer in guarded:
            return importer
        for importer, edges in sorted(finder.edges.items()):
            tried = [t for t, g in edges if g and t in finder.modules]
            if importer in needed and any(
                name in unguarded_reach([t], finder.edges) for t in tried
            ):
                return importer
        return "its importer"
    top = name.split(".", maxsplit=1)[0]
    probes = [i for i in guarded if i.split(".")[0] == top]
    if probes and not finder.plain_importers.get(name):
        return probes[0]
    return None


def bundle(req: dict[str, Any]) -> dict[str, Any]:
    """Find the app's modules, compile them into the zip ``req["output"]``, say what went in."""
    app_paths: list[str] = req["app_paths"]
    frozen = set(_imp._frozen_module_names()) - {"__hello__", "__phello__"}
    builtin = set(sys.builtin_module_names)
    finder, roots = find_modules(req)
    compiled = {
        n
        for n, m in finder.modules.items()
        if str(getattr(m, "__file__", None) or "").endswith((".so", ".pyd"))
    }
    needed = needed_modules(roots, finder.edges, finder.after_edges, set(finder.modules), compiled)

    entries: dict[str, bytes | Stored] = {}
    app_modules: list[str] = []  # bundled from app_paths: the app and its dependencies
    used_builtins: set[str] = set()
    extensions: list[dict[str, str]] = []
    native: list[dict[str, str]] = []
    left_out: list[dict[str, str]] = []
    app_files: list[str] = []
    no_docs = {
        top
        for dist in req.get("strip_docstrings", [])
        for root in app_paths
        for top in _distribution_tops(root, dist)
    }
    for name, mod in sorted(finder.modules.items()):
        path: str | None = getattr(mod, "__file__", None)
        is_pkg = getattr(mod, "__path__", None) is not None
        if name in finder.namespaces:
            entries[name.replace(".", "/") + "/"] = b""  # zipimport needs the directory entry
            continue
        if name in frozen and (path is None or _under(path, app_paths) is None):
            continue
        if path is None:
            if name in builtin:
                used_builtins.add(name)
            continue
        if path.endswith((".so", ".pyd")):
            ext = {"module": name, "file": path}
            native_root = _under(path, req.get("native_roots", []))
            if native_root is not None:  # a musllinux wheel's: the executable loads it
                member = os.path.relpath(path, native_root)
                entries[member] = _read(path)
                native.append({"module": name, "member": member})
                _add_libraries(entries, native_root, path)
                continue
            fallback = optional_extension(name, finder, needed)
            if fallback is None:
                extensions.append(ext)
            else:
                left_out.append({**ext, "imported_by": fallback})
            continue
        if not path.endswith(".py"):
            continue
        root = _under(path, app_paths)
        rel = os.path.relpath(path, root) if root else os.path.relpath(path, req["stdlib"])
        with open(path, "rb") as f:
            source = f.read()
        try:
            tree = ast.parse(source, rel)
            # the stdlib copes with -OO, i.e. with no docstrings (-20 % of its .pyc); the app's
            # own modules lose theirs when the project says it never reads them
            if not root or name.partition(".")[0] in no_docs:
                tree = without_docstrings(tree)
            code = compile(tree, rel, "exec", dont_inherit=True, optimize=req["optimize"])
        except SyntaxError as err:
            raise BundleError(f"cannot compile {path}: {err}") from None
        arc = name.replace(".", "/") + ("/__init__.pyc" if is_pkg else ".pyc")
        if root and reads_own_source(tree, name, is_pkg):
            entries[arc.removesuffix("c")] = source
            entries[arc] = _pyc(code, source)
        else:
            entries[arc] = _pyc(code)
        if root:
            app_files.append(path)
            app_modules.append(name)
    if "sysconfig" in finder.modules:
        target = req.get("multiarch")
        sysdata = _sysconfigdata_name(target)
        if sysdata not in finder.modules:  # the kit does not ship it: the runtime's own values
            data = _sysconfigdata_source(target)
            entries[f"{sysdata}.pyc"] = _pyc(compile(data, sysdata, "exec"))

    _add_package_data(entries, app_files, app_paths, req["distributions"])

    missing_c = []
    for cmod, user in sorted(UNAVAILABLE.items()):
        if cmod in finder.badmodules and user in finder.modules and cmod in needed:
            users = [i for i, e in finder.edges.items() if (user, False) in e and i in needed]
            importers = sorted(i for i in users if i.split(".")[0] != user.split(".")[0]) or [user]
            missing_c.append({"module": user, "c_module": cmod, "imported_by": importers})

    deflate: set[str] = set()
    if req["compression"] in ("cold", "bytecode"):
        cold = req["compression"] == "cold"  # "bytecode": the start's modules too
        warm = start_modules(app_modules, finder.eager_edges) if cold else set()
        deflate = {
            arc
            for arc in entries
            if arc.endswith(".pyc")
            and isinstance(entries[arc], bytes)
            and arc.removesuffix(".pyc").removesuffix("/__init__").replace("/", ".") not in warm
        }
    deflated = _write_zip(
        req["output"], entries, req["compression"], deflate, req.get("elf_align", 0)
    )
    return {
        "deflated": deflated,
        "builtins": sorted(used_builtins),
        "modules": sum(1 for a in entries if a.endswith(".pyc")),
        "packages": sorted({_top_name(p, app_paths) for p in app_files}),
        "files": len(entries),
        "extensions": extensions,
        "native": native,
        "left_out": left_out,
        "sources_for_extensions": [
            {"module": m, "file": f} for m, f in sorted(finder.source_for_extension.items())
        ],
        "missing_c": missing_c,
    }


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _add_libraries(entries: dict[str, bytes | Stored], root: str, extension: str) -> None:
    """The shared libraries the extension's wheel bundles (auditwheel's ``<dist>.libs/``), from
    the RECORD of the distribution that installed the extension into ``root``."""
    rel = os.path.relpath(extension, root)
    for info in sorted(os.listdir(root)):
        record = os.path.join(root, info, "RECORD")
        if not info.endswith(".dist-info") or not os.path.isfile(record):
            continue
        with open(record, encoding="utf-8") as f:
            files = [line.split(",", 1)[0] for line in f]
        if rel not in files:
            continue
        for member in files:
            top, _, base = member.partition("/")
            if top.endswith(".libs") and ".so" in base and "/" not in base:
                entries[member] = _read(os.path.join(root, member))


def _add_package_data(
    entries: dict[str, bytes | Stored], app_files: list[str], app_paths: list[str], dists: list[str]
) -> None:
    """Package data (templates, certificates, py.typed...) of third-party and app packages."""
    tops = {os.path.relpath(p, _under(p, app_paths) or "/").split("/")[0] for p in app_files}
    escapes = []
    for root in app_paths:
        real_root = os.path.realpath(root)
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
                    if _under(os.path.realpath(full), [real_root]) is None:
                        escapes.append(f"{full} -> {os.path.realpath(full)}")
                        continue
                    # by path: copied into the zip in chunks, never held in memory
                    entries.setdefault(os.path.relpath(full, root), Stored(full))
        for dist in dists:
            for meta in ("METADATA", "entry_points.txt", "top_level.txt"):
                for info in _dist_infos(root, dist):
                    full = os.path.join(root, info, meta)
                    if os.path.isfile(full):
                        with open(full, "rb") as f:
                            entries[f"{info}/{meta}"] = f.read()
    if escapes:
        raise BundleError(
            "package data symlinks lead outside the install tree, and their targets would be "
            "copied into the executable:\n" + "\n".join(f"  {e}" for e in escapes)
        )


def _top_name(path: str, app_paths: list[str]) -> str:
    """The top-level module an app file belongs to (its package, or the module itself)."""
    return os.path.relpath(path, _under(path, app_paths) or "/").split("/")[0].removesuffix(".py")


@dataclass(frozen=True, slots=True)
class Stored:
    """A file that goes into the zip as it is, streamed from ``path`` (package data can be
    large: holding it in memory cost about three times its size)."""

    path: str


#: The local header's extra field that pads a member so its bytes start at an aligned offset
#: (the ID Android's zipalign uses; its data: the alignment, then zeros).
ALIGNMENT_EXTRA_ID = 0xD935


def _alignment_extra(header_offset: int, name: bytes, align: int) -> bytes:
    """The extra field that puts the bytes of a member whose local header starts at
    ``header_offset`` at a multiple of ``align``."""
    start = header_offset + 30 + len(name) + 6
    pad = -start % align
    return (
        ALIGNMENT_EXTRA_ID.to_bytes(2, "little")
        + (2 + pad).to_bytes(2, "little")
        + align.to_bytes(2, "little")
        + bytes(pad)
    )


def _write_zip(
    output: str,
    entries: dict[str, bytes | Stored],
    compression: str,
    deflate: set[str],
    elf_align: int = 0,
) -> int:
    """Sorted, fixed dates and modes: the same modules give the same bytes. Members are
    deflated for compression "deflated", and those in ``deflate`` for "cold" and "bytecode";
    returns how many were (the executable links zlib when any was). With ``elf_align``, a
    stored ELF member's bytes start at a multiple of it (the loader maps its read-only segments
    from the executable's file; the central directory keeps no padding)."""
    tmp = output + ".part"
    deflated = 0
    with zipfile.ZipFile(tmp, "w") as zf:
        for arc in sorted(entries):
            packed = (compression == "deflated" or arc in deflate) and not arc.endswith("/")
            deflated += packed
            method = zipfile.ZIP_DEFLATED if packed else zipfile.ZIP_STORED
            level = 9 if packed else None
            zinfo = zipfile.ZipInfo(arc, ZIP_DATE)
            zinfo.create_system = 3
            if arc.endswith("/"):
                zinfo.external_attr = (0o40555 << 16) | 0x10
                zf.writestr(zinfo, b"")
                continue
            zinfo.compress_type = method
            zinfo.external_attr = 0o100444 << 16
            data = entries[arc]
            if isinstance(data, bytes):
                aligned = elf_align and not packed and data[:4] == b"\x7fELF"
                if aligned and zf.fp is not None:  # fp: open until the with block ends
                    zinfo.extra = _alignment_extra(zf.fp.tell(), arc.encode(), elf_align)
                zf.writestr(zinfo, data, compresslevel=level)
                if aligned:
                    zinfo.extra = b""  # for the central directory, written at the end
                continue
            zinfo.file_size = os.path.getsize(data.path)
            with open(data.path, "rb") as src, zf.open(zinfo, "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp, output)
    return deflated


def _sysconfigdata_name(multiarch: str | None = None) -> str:
    """The module sysconfig imports by a computed name (Debian's patch drops the platform);
    ``multiarch``: the target's, when the executable is for another machine than this one."""
    if multiarch is not None:
        return f"_sysconfigdata_{sys.abiflags}_{multiarch}"
    import sysconfig  # this interpreter's stdlib is the kit's

    return str(getattr(sysconfig, "_get_sysconfigdata_name")())  # noqa: B009 - private


def _sysconfigdata_source(multiarch: str | None = None) -> str:
    """A ``_sysconfigdata`` module for a kit that lacks the generated one (sysconfig, and so
    ``import zoneinfo``, fail without it): what a static runtime can say about itself (for
    ``multiarch``: a runtime of that other machine)."""
    own = getattr(sys.implementation, "_multiarch", "")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    if multiarch is not None:
        suffix = suffix.replace(own, multiarch)
    ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
    values = {
        "ABIFLAGS": sys.abiflags,
        "EXT_SUFFIX": suffix,
        "SOABI": suffix[1:].rsplit(".", 1)[0],
        "MULTIARCH": own if multiarch is None else multiarch,
        "MACHDEP": sys.platform,
        "VERSION": ver,
        "LDVERSION": ver + sys.abiflags,
        "Py_DEBUG": 0,
        "Py_ENABLE_SHARED": 0,
        "WITH_DOC_STRINGS": 0,
        "TZPATH": "/usr/share/zoneinfo:/usr/lib/zoneinfo:/usr/share/lib/zoneinfo:/etc/zoneinfo",
        "prefix": sys.prefix,
        "exec_prefix": sys.exec_prefix,
    }
    return f"build_time_vars = {values!r}\n"


def _add_named_codecs(finder: StdlibAwareFinder, stdlib: str, excludes: list[str]) -> list[str]:
    """Codecs are imported by name (``s.encode("punycode")``): bundle every codec whose name
    appears as a string literal in the app's or its dependencies' code, or that the stdlib
    passes to encode/decode/lookup (zipfile's "cp437", ssl's "idna")."""
    from encodings.aliases import aliases  # this interpreter's stdlib is the kit's

    encodings_dir = os.path.join(stdlib, "encodings")
    available = {f[:-3] for f in os.listdir(encodings_dir) if f.endswith(".py")}
    wanted: set[str] = set()
    for value in finder.app_strings | finder.codec_strings:
        norm = value.lower().replace("-", "_").replace(" ", "_")
        norm = aliases.get(norm, norm)
        if norm in available and norm not in ("__init__", "aliases"):
            wanted.add(norm)
    added = []
    for name in sorted(wanted):
        full = f"encodings.{name}"
        if full not in finder.modules and not _matches(full, excludes):
            with contextlib.suppress(ImportError):
                finder.import_hook(full)
                added.append(full)
    return added


def _submodules(mod: object) -> list[str]:
    """Every module under a package, at any depth (``pkg.*`` in include-modules): its .py files
    and its subpackages, regular or namespace (a directory named like a module that holds
    Python files). Compiled modules are not listed: the scan decides about those."""
    paths: list[str] = list(getattr(mod, "__path__", None) or [])
    name: str = getattr(mod, "__name__", "")
    out = []
    for d in paths:
        for fn in sorted(os.listdir(d)):
            full = os.path.join(d, fn)
            stem, ext = os.path.splitext(fn)
            if ext == ".py" and stem != "__init__" and _module_stem(stem):
                out.append(f"{name}.{stem}")
            elif fn.isidentifier() and os.path.isdir(full) and _holds_python(full):
                sub = types.SimpleNamespace(__name__=f"{name}.{fn}", __path__=[full])
                out += [f"{name}.{fn}", *_submodules(sub)]
    return sorted(set(out))


def _module_stem(stem: str) -> bool:
    """Whether a file name stem is a module ``import_module()`` can load: an identifier, or
    ASCII letters, digits and underscores starting with a digit (Django's ``0001_initial``
    migrations, imported by name, never by an import statement)."""
    return stem.isidentifier() or (stem.isascii() and stem.replace("_", "a").isalnum())


def _expand_includes(
    includes: list[str], app_paths: list[str], path: list[str]
) -> list[tuple[str, bool]]:
    """include-modules as (module, named): a name that is no importable module but an installed
    distribution's (``opentelemetry-sdk``, ``PyYAML``) stands for all of its top-level modules,
    recursively; those are bundled but, not named one by one, make no compiled module mandatory."""
    out = []
    for name in includes:
        base = name.removesuffix(".*")
        is_module = all(part.isidentifier() for part in base.split("."))
        top = base.split(".")[0]
        if is_module and (
            top in sys.builtin_module_names
            or importlib.machinery.PathFinder.find_spec(top, path) is not None
        ):
            out.append((name, True))
            continue
        tops = sorted({t for root in app_paths for t in _distribution_tops(root, base)})
        if not tops:
            if is_module:
                out.append((name, True))  # reported as not found
                continue
            raise BundleError(
                f"include-modules: {name!r} is neither a module nor an installed distribution"
            )
        out += [(f"{t}.*" if any(_is_package(r, t) for r in app_paths) else t, False) for t in tops]
    return out


def _distribution_tops(root: str, dist: str) -> list[str]:
    """The top-level modules a distribution installed into ``root`` (its RECORD)."""
    tops: set[str] = set()
    for info in _dist_infos(root, dist):
        record = os.path.join(root, info, "RECORD")
        if not os.path.isfile(record):
            continue
        with open(record, encoding="utf-8") as f:
            for line in f:
                first = line.split(",", 1)[0].split("/")
                if first[-1].endswith(".py") and first[0].isidentifier() and len(first) > 1:
                    tops.add(first[0])
                elif len(first) == 1 and first[0].endswith(".py"):
                    tops.add(first[0][:-3])
    return sorted(t for t in tops if t.isidentifier())


def _is_package(root: str, name: str) -> bool:
    return os.path.isdir(os.path.join(root, name))


def _holds_python(directory: str) -> bool:
    return any(fn.endswith(".py") for _dirpath, _dirs, files in os.walk(directory) for fn in files)


def _dist_infos(root: str, dist: str) -> list[str]:
    norm = dist.lower().replace("-", "_").replace(".", "_")
    out = []
    for fn in sorted(os.listdir(root)):
        if fn.endswith(".dist-info") and fn.split("-")[0].lower().replace(".", "_") == norm:
            out.append(fn)
    return out


if __name__ == "__main__":
    sys.exit(main())
