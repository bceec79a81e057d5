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


def _bundle_of(
    tmp_path: Path,
    files: dict[str, str],
    *,
    entry: str = "app",
    includes: tuple[str, ...] = (),
    excludes: tuple[str, ...] = (),
    extra_paths: tuple[Path, ...] = (),
) -> tuple[dict[str, Any], zipfile.ZipFile]:
    site = _tree(tmp_path / "site", files)
    paths = [str(site), *map(str, extra_paths)]
    out = tmp_path / "modules.zip"
    report = _bundle.bundle(
        {
            "entry": entry,
            "run_main": False,
            "search_path": [STDLIB, *paths],
            "app_paths": paths,
            "stdlib": STDLIB,
            "excludes": list(excludes),
            "includes": list(includes),
            "distributions": [],
            "output": str(out),
            "compression": "stored",
            "optimize": 0,
        }
    )
    return report, zipfile.ZipFile(out)


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
        },
        includes=("pkg.*",),
    )
    names = set(zf.namelist())
    assert {"pkg/a.pyc", "pkg/sub/__init__.pyc", "pkg/sub/deep/x.pyc", "pkg/nsdir/y.pyc"} <= names
    assert "pkg/templates/page.html" in names  # package data, not a module


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
    request = {
        "entry": "app",
        "search_path": [STDLIB, str(site)],
        "app_paths": [str(site)],
        "stdlib": STDLIB,
        "excludes": [],
        "includes": ["nosuch.module"],
        "distributions": [],
        "output": str(tmp_path / "m.zip"),
        "compression": "stored",
        "optimize": 0,
    }
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
