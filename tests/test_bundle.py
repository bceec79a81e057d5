"""The static runtime's module finder (freeze/static/_bundle.py) on small fixture trees.

It runs in-process with the host's Python and stdlib (a 3.11 like the kit's): what it puts in
the zip, what it leaves out and why, and that the zip imports (namespace packages) with the
host's zipimport. The real kit and real PyPI packages: test_static_e2e.py.
"""

from __future__ import annotations

import ast
import importlib.machinery
import json
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

from scratchpack.freeze.static import _bundle

STDLIB = sysconfig.get_paths()["stdlib"]
EXT = importlib.machinery.EXTENSION_SUFFIXES[0]  # a compiled module's file name ending


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def bundle_request(
    entry: str,
    stdlib: str | Path,
    app_paths: list[Path],
    output: Path,
    *,
    includes: tuple[str, ...] = (),
    excludes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """What the static freezer asks the bundler: ``app_paths`` searched after ``stdlib``."""
    paths = [str(p) for p in app_paths]
    return {
        "entry": entry,
        "run_main": False,
        "search_path": [str(stdlib), *paths],
        "app_paths": paths,
        "stdlib": str(stdlib),
        "excludes": list(excludes),
        "includes": list(includes),
        "distributions": [],
        "output": str(output),
        "compression": "stored",
        "optimize": 0,
    }


def _bundle_of(
    tmp_path: Path,
    files: dict[str, str],
    *,
    entry: str = "app",
    includes: tuple[str, ...] = (),
    excludes: tuple[str, ...] = (),
    extra_paths: tuple[Path, ...] = (),
    compression: str = "stored",
) -> tuple[dict[str, Any], zipfile.ZipFile]:
    site = _tree(tmp_path / "site", files)
    out = tmp_path / "modules.zip"
    request = bundle_request(
        entry, STDLIB, [site, *extra_paths], out, includes=includes, excludes=excludes
    ) | {"compression": compression}
    return _bundle.bundle(request), zipfile.ZipFile(out)


def _run_from_zip(zip_path: str, code: str) -> str:
    """Import from the zip alone (isolated, no site) with the host's zipimport."""
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {zip_path!r})\n{code}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# --- namespace packages ------------------------------------------------------------------------


def test_namespace_packages_are_bundled_with_their_directory_entries(tmp_path: Path) -> None:
    other = _tree(tmp_path / "other", {"ns/b.py": "B = 2\n"})  # a second portion of `ns`
    report, zf = _bundle_of(
        tmp_path,
        {
            "app.py": "import ns.sub.mod, ns.b\n",
            "ns/sub/mod.py": "from . import helper\nX = helper.Y\n",
            "ns/sub/helper.py": "Y = 1\n",
        },
        extra_paths=(other,),
    )
    names = set(zf.namelist())
    assert {"ns/", "ns/sub/", "ns/sub/mod.pyc", "ns/sub/helper.pyc", "ns/b.pyc"} <= names
    assert "ns/__init__.pyc" not in names  # stays a namespace package at run time
    out = _run_from_zip(
        zf.filename or "", "import ns.sub.mod, ns.b\nprint(ns.sub.mod.X + ns.b.B, ns.__file__)"
    )
    assert out.split() == ["3", "None"]
    assert report["extensions"] == []


# --- compiled modules: optional speedups, mypyc sources, refusals ------------------------------


def test_optional_speedup_is_left_out_and_its_fallback_bundled(tmp_path: Path) -> None:
    report, zf = _bundle_of(
        tmp_path,
        {
            "app.py": "import fast, flagged, viatry\n",
            # markupsafe: the speedup is tried, the pure-Python module is the fallback
            "fast/__init__.py": """
                try:
                    from ._speedups import f
                except ImportError:
                    from ._native import f
            """,
            f"fast/_speedups{EXT}": "",
            "fast/_native.py": "def f(): pass\n",
            # multidict: a probe under try sets a flag; the real import sits behind the flag
            "flagged/__init__.py": """
                from ._compat import USE_EXT
                if not USE_EXT:
                    from ._py import D
                else:
                    from ._c import D
            """,
            "flagged/_compat.py": """
                USE_EXT = True
                try:
                    from . import _c
                except ImportError:
                    USE_EXT = False
            """,
            f"flagged/_c{EXT}": "",
            "flagged/_py.py": "class D: pass\n",
            # PyYAML: the module importing the speedup is itself tried
            "viatry/__init__.py": """
                try:
                    from .cmod import *
                except ImportError:
                    pass
            """,
            "viatry/cmod.py": "from viatry._c import Parser\n",
            f"viatry/_c{EXT}": "",
        },
    )
    assert report["extensions"] == []
    left = {e["module"]: e["imported_by"] for e in report["left_out"]}
    assert left == {
        "fast._speedups": "fast",
        "flagged._c": "flagged._compat",
        "viatry._c": "viatry",
    }
    assert {"fast/_native.pyc", "flagged/_py.pyc"} <= set(zf.namelist())


def test_a_compiled_module_the_app_needs_is_refused_by_name(tmp_path: Path) -> None:
    report, _zf = _bundle_of(
        tmp_path,
        {"app.py": "import needs\n", "needs/__init__.py": "from ._core import x\n"}
        | {f"needs/_core{EXT}": ""},
    )
    assert [e["module"] for e in report["extensions"]] == ["needs._core"]
    assert report["extensions"][0]["file"].endswith(f"needs/_core{EXT}")


# SQLAlchemy 2.0's util/_has_cy.py, reduced: the compiled modules are imported in a function
# that module-level code calls under `except ImportError`; elsewhere only behind the flag.
HAS_CY = textwrap.dedent(
    """
    def _import_cy_extensions():
        from ..cyext import fast
        return (fast,)

    try:
        _import_cy_extensions()
    except ImportError:
        HAS_CY = False
    else:
        HAS_CY = True
"""
)


def _probe_names(source: str) -> set[str]:
    return {f.name for f in _bundle.probe_functions(ast.parse(textwrap.dedent(source)))}


@pytest.mark.parametrize(
    ("source", "probes"),
    [
        (HAS_CY, {"_import_cy_extensions"}),
        # called once more with no guard: its import failing is not handled there
        (HAS_CY + "_import_cy_extensions()\n", set()),
        # passed around rather than called: it may run anywhere
        (HAS_CY + "LOADERS = [_import_cy_extensions]\n", set()),
        # public: another module may call it
        (HAS_CY.replace("_import_cy_extensions", "import_cy_extensions"), set()),
        # a broad handler hides the function's real work, not only a failing import
        (HAS_CY.replace("except ImportError", "except Exception"), set()),
        # never called in this module: another one may
        ("def _load():\n    import _c\n", set()),
        # a call inside a function defined in the `try` runs later, outside it
        (
            "def _load():\n    import _c\n"
            "try:\n    def later():\n        _load()\nexcept ImportError:\n    pass\n",
            set(),
        ),
        # nested in a `try` inside another function: still a guarded call
        (
            "def _load():\n    import _c\n"
            "def setup():\n    try:\n        _load()\n"
            "    except ModuleNotFoundError:\n        pass\n",
            {"_load"},
        ),
    ],
    ids=[
        "sqlalchemy",
        "also-unguarded",
        "passed-around",
        "public",
        "broad-handler",
        "not-called",
        "called-later",
        "nested",
    ],
)
def test_a_private_function_only_called_under_except_import_error_is_a_probe(
    source: str, probes: set[str]
) -> None:
    assert _probe_names(source) == probes


def _sites(source: str) -> dict[str, _bundle.Where]:
    tree = ast.parse(textwrap.dedent(source))
    rules = _bundle.ScanRules(lazy=True, main=False, probes=_bundle.probe_functions(tree))
    return {ast.unparse(site.node): site.where for site in _bundle.import_sites(tree.body, rules)}


def test_imports_in_a_probe_function_are_guarded() -> None:
    where = _sites(HAS_CY)["from ..cyext import fast"]
    assert where.guarded and where.lazy


def test_imports_in_the_else_of_a_guarded_try_run_after_the_tried_ones() -> None:
    sites = _sites(
        """
        try:
            import greenlet
        except ImportError:
            have = False
        else:
            from ._py3k import spawn
        try:
            import json
        finally:
            import os
        """
    )
    assert sites["import greenlet"].guarded
    after = sites["from ._py3k import spawn"]
    assert not after.guarded and after.conditional
    assert [ast.unparse(n) for n in after.after] == ["import greenlet"]
    assert sites["import os"] == _bundle.Where()  # a `finally:` runs either way


def test_probed_and_else_branch_compiled_modules_are_left_out(tmp_path: Path) -> None:
    report, zf = _bundle_of(
        tmp_path,
        {
            "app.py": "import sa\n",
            "sa/__init__.py": "from .util import _has_cy, concurrency\nfrom .engine import row\n",
            "sa/util/__init__.py": "",
            "sa/util/_has_cy.py": HAS_CY,
            "sa/engine/__init__.py": "",
            # the other imports of the compiled module sit behind the run-time flag
            "sa/engine/row.py": """
                from ..util._has_cy import HAS_CY
                if not HAS_CY:
                    from ._py_row import Row
                else:
                    from sa.cyext.fast import Row
            """,
            "sa/engine/_py_row.py": "class Row: pass\n",
            "sa/cyext/__init__.py": "",
            f"sa/cyext/fast{EXT}": "",
            # util/concurrency.py: greenlet's users are imported only once greenlet imported
            "sa/util/concurrency.py": """
                try:
                    import greenlet
                except ImportError:
                    have_greenlet = False
                else:
                    from ._py3k import spawn
            """,
            "sa/util/_py3k.py": "import greenlet\nfrom greenlet import getcurrent\n",
            "greenlet/__init__.py": "from ._greenlet import getcurrent\n",
            f"greenlet/_greenlet{EXT}": "",
        },
    )
    assert report["extensions"] == []
    left = {e["module"]: e["imported_by"] for e in report["left_out"]}
    assert left == {"sa.cyext.fast": "sa.util._has_cy", "greenlet._greenlet": "sa.util.concurrency"}
    assert {"sa/engine/_py_row.pyc", "sa/util/_py3k.pyc"} <= set(zf.namelist())


def test_modules_registered_by_name_for_a_later_import_are_bundled(tmp_path: Path) -> None:
    """SQLAlchemy's ``util.preloaded``: registered by a decorator, imported by name later."""
    _report, zf = _bundle_of(
        tmp_path,
        {
            "app.py": "import lib.core\n",
            "lib/__init__.py": "",
            "lib/registry.py": "def preload_module(*names):\n    return lambda f: f\n",
            "lib/core.py": """
                from . import registry

                @registry.preload_module("lib.later", "lib.sub.deep")
                def f():
                    pass
            """,
            "lib/later.py": "",
            "lib/sub/__init__.py": "",
            "lib/sub/deep.py": "",
            "lib/unused.py": "",
        },
    )
    names = set(zf.namelist())
    assert {"lib/later.pyc", "lib/sub/deep.pyc"} <= names
    assert "lib/unused.pyc" not in names


def test_a_compiled_module_imported_after_a_pure_python_one_is_refused(tmp_path: Path) -> None:
    """The `else:` runs whenever its `try` can succeed: here always, so `_core` is needed."""
    report, _zf = _bundle_of(
        tmp_path,
        {
            "app.py": """
                try:
                    import helper
                except ImportError:
                    pass
                else:
                    from needs import _core
            """,
            "helper.py": "",
            "needs/__init__.py": "",
            f"needs/_core{EXT}": "",
        },
    )
    assert [e["module"] for e in report["extensions"]] == ["needs._core"]
    assert report["left_out"] == []


def test_an_else_branch_reached_by_a_needed_compiled_module_is_needed(tmp_path: Path) -> None:
    """The tried module's compiled part is needed elsewhere (refused, or loaded once compiled
    modules load): then the `else:` runs, and the compiled module it imports is needed too."""
    report, _zf = _bundle_of(
        tmp_path,
        {
            "app.py": """
                import fastlib
                try:
                    import fastlib
                except ImportError:
                    pass
                else:
                    import other._c
            """,
            "fastlib/__init__.py": "from ._impl import x\n",
            f"fastlib/_impl{EXT}": "",
            "other/__init__.py": "",
            f"other/_c{EXT}": "",
        },
    )
    assert sorted(e["module"] for e in report["extensions"]) == ["fastlib._impl", "other._c"]


def test_the_pure_python_source_beside_a_compiled_module_is_used(tmp_path: Path) -> None:
    report, zf = _bundle_of(
        tmp_path,
        {
            "app.py": "import cn.md\n",
            "cn/__init__.py": "",
            "cn/md.py": "X = 1\n",
            f"cn/md{EXT}": "",
        },
    )
    assert report["extensions"] == []
    assert [e["module"] for e in report["sources_for_extensions"]] == ["cn.md"]
    assert "cn/md.pyc" in zf.namelist()


# --- modules that read their own source ---------------------------------------------------------


def test_a_module_that_reads_its_own_source_keeps_it_beside_its_bytecode(tmp_path: Path) -> None:
    """anyio's lazy importer reads its caller's source: the callers keep their .py (the .pyc,
    hash-based, is still what runs), everything else stays bytecode only."""
    lazy = "def install_lazy_importer():\n    return _src(sys._getframe(1).f_globals)\n"
    _report, zf = _bundle_of(
        tmp_path,
        {
            "app.py": "import anyio, anyio.abc\n",
            "anyio/__init__.py": "from ._lazyimport import install_lazy_importer\nN = 1\n"
            "SRC = install_lazy_importer()\n",
            "anyio/abc/__init__.py": "from .._lazyimport import install_lazy_importer as i\n"
            "SRC = i()\n",
            "anyio/_lazyimport.py": "import inspect, sys\n"
            "def _src(g):\n    return inspect.getsource(sys.modules[g['__name__']])\n" + lazy,
        },
    )
    names = set(zf.namelist())
    assert {"anyio/__init__.py", "anyio/abc/__init__.py"} <= names
    assert not {"app.py", "anyio/_lazyimport.py"} & names
    out = _run_from_zip(
        zf.filename or "",
        "import anyio, anyio.abc, json\n"
        "print(json.dumps([anyio.__file__, anyio.SRC, anyio.abc.SRC.splitlines()[-1]]))",
    )
    file, source, abc_last = json.loads(out)
    assert file.endswith("anyio/__init__.pyc")  # the bytecode ran: zipimport took the .pyc
    assert source == zf.read("anyio/__init__.py").decode()
    assert abc_last == "SRC = i()"


@pytest.mark.parametrize(
    ("name", "is_pkg", "line", "reads"),
    [
        ("anyio", True, "from ._lazyimport import install_lazy_importer", True),
        ("anyio.abc", True, "from .._lazyimport import x, install_lazy_importer", True),
        ("anyio.mod", False, "from ._lazyimport import install_lazy_importer", True),
        ("other", False, "from anyio._lazyimport import install_lazy_importer", True),
        ("anyio", True, "from ._lazyimport import set_deprecated_aliases", False),
        ("anyio.abc", True, "from ._lazyimport import install_lazy_importer", False),
        ("anyio", True, "import anyio._lazyimport", False),
    ],
)
def test_which_modules_read_their_own_source(
    name: str, is_pkg: bool, line: str, reads: bool
) -> None:
    assert _bundle.reads_own_source(ast.parse(line), name, is_pkg) is reads


# --- the stdlib: complete for what the app reaches, without dev tools --------------------------


def test_stdlib_function_level_imports_are_followed(tmp_path: Path) -> None:
    report, zf = _bundle_of(
        tmp_path,
        {
            "app.py": """
                import importlib.resources, zipfile, concurrent.futures, email, zoneinfo, time
                import multiprocessing, socket
            """
        },
    )
    names = set(zf.namelist())
    expected = {
        "importlib/readers.pyc",  # zipimport's resource reader (importlib.resources.files)
        "encodings/cp437.pyc",  # zipfile decodes names with it
        "concurrent/futures/process.pyc",  # concurrent.futures.__getattr__
        "email/generator.pyc",  # Message.as_string()
        "email/parser.pyc",  # email.message_from_string()
        "_strptime.pyc",  # time.strptime(), from C
        "encodings/idna.pyc",  # socket.getaddrinfo(), from C
        "multiprocessing/popen_spawn_posix.pyc",
        "multiprocessing/popen_forkserver.pyc",
        f"{_bundle._sysconfigdata_name()}.pyc",  # sysconfig, so zoneinfo.TZPATH
    }
    assert expected <= names, expected - names
    assert not {"multiprocessing/popen_spawn_win32.pyc", "asyncio/windows_events.pyc"} & names
    out = _run_from_zip(
        zf.filename or "",
        "import zoneinfo, time, email\n"
        "print(len(zoneinfo.TZPATH) > 0, time.strptime('2024', '%Y').tm_year,\n"
        "      email.message_from_string('Subject: x\\n\\nb').as_string().count('x'))",
    )
    assert out.split() == ["True", "2024", "1"]
    assert report["extensions"] == []


def test_stdlib_docstrings_are_dropped_and_the_apps_kept(tmp_path: Path) -> None:
    """The stdlib is bundled as -OO would compile it, but with its asserts; the app's own
    docstrings stay (click, argparse descriptions and FastAPI read them)."""
    _report, zf = _bundle_of(
        tmp_path, {"app.py": '"""App."""\nimport textwrap\ndef f():\n    """Doc."""\n'}
    )
    out = _run_from_zip(
        zf.filename or "",
        "import app, textwrap\n"
        "print(app.__doc__, app.f.__doc__, textwrap.__doc__, textwrap.dedent.__doc__,\n"
        "      textwrap.TextWrapper.__doc__, '/'.join(textwrap.wrap('aa bb', 2)))",
    )
    assert out.split() == ["App.", "Doc.", "None", "None", "None", "aa/bb"]


def test_strip_docstrings_drops_only_the_named_distributions_docstrings(tmp_path: Path) -> None:
    """``strip-docstrings``: the project's own modules (its RECORD's top-level packages) are
    compiled without docstrings, asserts kept; a dependency's keep theirs (it may read them)."""
    files = {
        "app/__init__.py": '"""App."""\nfrom . import cli\nimport dep\n',
        "app/cli.py": 'class C:\n    """C."""\ndef f(x):\n    """Fdoc."""\n    assert x, "kept"\n',
        "app-1.0.dist-info/RECORD": "app/__init__.py,,\napp/cli.py,,\n",
        "dep.py": '"""Dep."""\ndef g():\n    """G."""\n',
        "dep-2.0.dist-info/RECORD": "dep.py,,\n",
    }
    site = _tree(tmp_path / "site", files)
    out = tmp_path / "modules.zip"
    request = bundle_request("app", STDLIB, [site], out) | {"strip_docstrings": ["app"]}
    _bundle.bundle(request)
    plain = _bundle_of(tmp_path / "plain", files)[1]
    check = (
        "import app, app.cli, dep\n"
        "print(app.__doc__, app.cli.C.__doc__, app.cli.f.__doc__, dep.__doc__, dep.g.__doc__)"
    )
    assert _run_from_zip(str(out), check).split() == ["None", "None", "None", "Dep.", "G."]
    assert _run_from_zip(plain.filename or "", check).split() == [
        "App.",
        "C.",
        "Fdoc.",
        "Dep.",
        "G.",
    ]
    stripped = zipfile.ZipFile(out).read("app/cli.pyc")
    assert b"Fdoc." not in stripped and b"kept" in stripped
    assert len(stripped) < len(plain.read("app/cli.pyc"))


def test_cold_compression_deflates_only_what_functions_import(tmp_path: Path) -> None:
    """Stdlib modules reached only through function-level imports are deflated; the app, its
    module-level imports and the interpreter's start-up codecs stay stored."""
    report, zf = _bundle_of(
        tmp_path,
        {
            "app/__init__.py": "import json\nfrom . import late\n",
            "app/late.py": "def f():\n    import textwrap\n    return textwrap.dedent('  x')\n",
        },
        compression="cold",
    )
    kind = {i.filename: i.compress_type for i in zf.infolist()}
    stored = ["app/__init__.pyc", "app/late.pyc", "json/__init__.pyc", "json/decoder.pyc",
              "encodings/utf_8.pyc"]  # fmt: skip
    assert {a: kind[a] for a in stored} == dict.fromkeys(stored, zipfile.ZIP_STORED)
    assert kind["textwrap.pyc"] == zipfile.ZIP_DEFLATED
    assert report["deflated"] == sum(k == zipfile.ZIP_DEFLATED for k in kind.values()) > 0
    assert _run_from_zip(zf.filename or "", "import app.late; print(app.late.f())") == "x\n"


def test_bytecode_compression_deflates_the_start_modules_too(tmp_path: Path) -> None:
    """compress-start-modules: every module deflated, the app's and the interpreter's start-up
    codecs included; package data stays stored, and the app still runs from the zip."""
    report, zf = _bundle_of(
        tmp_path,
        {"app/__init__.py": "import json\n", "app/data.txt": "x" * 1000},
        compression="bytecode",
    )
    kind = {i.filename: i.compress_type for i in zf.infolist()}
    code = [a for a in kind if a.endswith(".pyc")]
    assert {"app/__init__.pyc", "json/__init__.pyc", "encodings/utf_8.pyc"} <= set(code)
    assert {kind[a] for a in code} == {zipfile.ZIP_DEFLATED}
    assert kind["app/data.txt"] == zipfile.ZIP_STORED
    assert report["deflated"] == len(code)
    assert _run_from_zip(zf.filename or "", "import app; print(app.json.dumps(1))") == "1\n"


def test_docstring_only_bodies_keep_a_statement_and_asserts_stay() -> None:
    tree = _bundle.without_docstrings(
        ast.parse('"""m"""\nclass C:\n    "c"\ndef f():\n    "f"\n    assert 0, "kept"\n')
    )
    assert ast.unparse(tree) == "class C:\n    pass\n\ndef f():\n    assert 0, 'kept'"


def test_stdlib_dev_tools_and_command_lines_are_not_followed(tmp_path: Path) -> None:
    _report, zf = _bundle_of(
        tmp_path, {"app.py": "import heapq, inspect, logging, zipfile, traceback, base64\n"}
    )
    names = set(zf.namelist())
    for tool in ("doctest", "pdb", "pydoc", "argparse", "unittest/__init__", "webbrowser"):
        assert f"{tool}.pyc" not in names, tool
    assert "importlib/_bootstrap_external.pyc" not in names  # the frozen copy runs


def test_unfollowed_stdlib_edges_stay_out(tmp_path: Path) -> None:
    _report, zf = _bundle_of(tmp_path, {"app.py": "import asyncio\n"})
    names = set(zf.namelist())
    assert "concurrent/futures/process.pyc" in names  # asyncio -> concurrent.futures -> ...
    assert "multiprocessing/connection.pyc" in names
    assert "xmlrpc/client.pyc" not in names  # XmlListener/XmlClient: not an API
    _report, zf = _bundle_of(tmp_path / "tb", {"app.py": "import traceback\n"})
    assert "ast.pyc" not in zf.namelist()  # traceback's carets need source the zip lacks
    _report, zf = _bundle_of(tmp_path / "hash", {"app.py": "import hashlib\n"})
    names = set(zf.namelist())
    assert "logging/__init__.pyc" not in names  # hashlib logs only a digest OpenSSL lacks
    assert "pickle.pyc" not in names


def test_app_imports_reach_dev_tools_when_the_app_asks(tmp_path: Path) -> None:
    _report, zf = _bundle_of(tmp_path, {"app.py": "def debug():\n    import pdb\n"})
    assert "pdb.pyc" in zf.namelist()


def test_a_fallback_for_an_import_that_works_is_not_followed(tmp_path: Path) -> None:
    _report, zf = _bundle_of(
        tmp_path,
        {
            "app.py": """
                try:
                    import json
                except ImportError:
                    import slowjson
                try:
                    import nosuchfast
                except ImportError:
                    import slowpath
            """,
            "slowjson.py": "",
            "slowpath.py": "",
        },
    )
    names = set(zf.namelist())
    assert "slowpath.pyc" in names
    assert "slowjson.pyc" not in names


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ('sys.platform == "win32"', False),
        ('sys.platform != "win32"', True),
        ('_sys.platform.startswith("linux")', True),
        ('sys.platform in ("darwin", "ios")', False),
        ('os.name == "nt" or _mswindows', False),
        ('not (os.name == "posix")', False),
        ("_mswindows", False),
        ('sys.platform == "win32" and other', False),
        ('sys.platform == "linux" and other', None),
        ("sys.version_info >= (3, 11)", None),
    ],
)
def test_platform_tests_are_decided_for_the_target(expr: str, value: bool | None) -> None:
    consts = _bundle.platform_constants(ast.parse('_mswindows = sys.platform == "win32"').body)
    assert consts == {"_mswindows": False}
    test = ast.parse(expr, mode="eval").body
    assert _bundle.static_truth(test, consts) is value


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ('"nt" in _names', False),
        ('"posix" in _names', True),
        ('"posix" not in sys.builtin_module_names', False),
        ('"_ssl" in _names', None),  # whether it is there depends on the app's link
        ('"nt" in other', None),
    ],
)
def test_os_interface_module_tests_are_decided_for_the_target(
    expr: str, value: bool | None
) -> None:
    aliases = _bundle.module_names_aliases(
        ast.parse("import sys\n_names = sys.builtin_module_names\n").body
    )
    assert aliases == {"_names"}
    assert _bundle.static_truth(ast.parse(expr, mode="eval").body, {}, aliases) is value


def test_imports_for_another_os_interface_module_stay_out(tmp_path: Path) -> None:
    _report, zf = _bundle_of(
        tmp_path,
        {
            "app.py": """
                import sys
                _names = sys.builtin_module_names
                if 'posix' in _names:
                    import forposix
                elif 'nt' in _names:
                    import fornt
            """,
            "forposix.py": "",
            "fornt.py": "",
        },
    )
    names = set(zf.namelist())
    assert "forposix.pyc" in names
    assert "fornt.pyc" not in names


# --- include-modules ---------------------------------------------------------------------------


def test_include_star_is_recursive_with_namespace_subpackages(tmp_path: Path) -> None:
    _report, zf = _bundle_of(
        tmp_path,
        {
            "app.py": "",
            "pkg/__init__.py": "",
            "pkg/a.py": "",
            "pkg/sub/__init__.py": "",
            "pkg/sub/deep/x.py": "",
            "pkg/nsdir/y.py": "",
            "pkg/templates/page.html": "<p>",
            # Django's migrations: importable by name (import_module), though no identifier
            "pkg/migrations/__init__.py": "",
            "pkg/migrations/0001_initial.py": "",
            "pkg/migrations/not-a-module.py": "",
        },
        includes=("pkg.*",),
    )
    names = set(zf.namelist())
    assert {"pkg/a.pyc", "pkg/sub/__init__.pyc", "pkg/sub/deep/x.pyc", "pkg/nsdir/y.pyc"} <= names
    assert "pkg/migrations/0001_initial.pyc" in names
    assert "pkg/templates/page.html" in names  # package data, not a module
    assert not any("not-a-module" in n for n in names)  # no import can name it


def test_include_accepts_a_distribution_name(tmp_path: Path) -> None:
    files = {
        "app.py": "",
        "my_top/__init__.py": "",
        "my_top/impl.py": "",
        "single.py": "",
        "my_dist-1.0.dist-info/RECORD": "my_top/__init__.py,,\nmy_top/impl.py,,\nsingle.py,,\n",
    }
    _report, zf = _bundle_of(tmp_path, files, includes=("my-dist",))
    assert {"my_top/__init__.pyc", "my_top/impl.pyc", "single.pyc"} <= set(zf.namelist())
    with pytest.raises(_bundle.BundleError, match="neither a module nor an installed distribution"):
        _bundle_of(tmp_path / "again", files, includes=("no-such-dist",))


def test_main_prints_one_json_report(tmp_path: Path) -> None:
    site = _tree(tmp_path / "site", {"app.py": "import json\n"})
    request = bundle_request("app", STDLIB, [site], tmp_path / "m.zip", includes=("nosuch.module",))
    (tmp_path / "req.json").write_text(json.dumps(request))
    proc = subprocess.run(
        [sys.executable, "-I", "-S", _bundle.__file__, str(tmp_path / "req.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "include-modules: cannot find nosuch.module" in json.loads(proc.stdout)["error"]


def test_a_sysconfigdata_stand_in_for_a_kit_without_one() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(_bundle._sysconfigdata_source(), "<sysconfigdata>", "exec"), namespace)
    values = namespace["build_time_vars"]
    assert values["TZPATH"].startswith("/usr/share/zoneinfo")
    assert values["EXT_SUFFIX"] == EXT
