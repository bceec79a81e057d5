"""Unit tests of the static freezer's pure parts: import scanning, the built-in table, the
bootstrap, the runtime key and the pyproject settings. The end-to-end proofs (a real kit, real
executables in a read-only rootfs and in podman) are in test_static_e2e.py."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

import pytest

from scratchpack.errors import ProjectError
from scratchpack.freeze import static as static_freezer
from scratchpack.freeze.project import project_info
from scratchpack.freeze.spec import ProjectInfo
from scratchpack.freeze.static import _bundle
from scratchpack.freeze.static.link import CORE_BUILTINS, MISSING_NOTE, bootstrap_code, config_c
from scratchpack.freeze.static.runtime import runtime_key

SOURCE = textwrap.dedent(
    """
    import os
    from typing import TYPE_CHECKING
    if TYPE_CHECKING:
        import ssl
    try:
        import json
    except ImportError:
        json = None
    class A:
        import base64
    def f():
        import pdb
    if __name__ == "__main__":
        import doctest
    else:
        import heapq
    """
)


def _names(*, lazy: bool, main: bool) -> list[str]:
    out = []
    for node in _bundle._imports(ast.parse(SOURCE).body, lazy=lazy, main=main):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        else:
            assert isinstance(node, ast.ImportFrom)
            out.append(str(node.module))
    return sorted(out)


def test_stdlib_scan_keeps_import_time_imports_only() -> None:
    assert _names(lazy=False, main=False) == ["base64", "heapq", "json", "os", "typing"]


def test_app_scan_follows_functions_and_its_main_block_but_never_type_checking() -> None:
    got = _names(lazy=True, main=True)
    assert got == ["base64", "doctest", "heapq", "json", "os", "pdb", "typing"]
    assert "ssl" not in got


TEMPLATE = """#include "Python.h"
extern PyObject* PyInit_posix(void);
extern PyObject* PyInit__ssl(void);
extern PyObject* PyInit_math(void);
struct _inittab _PyImport_Inittab[] = {
    {"posix", PyInit_posix},
    {"_ssl", PyInit__ssl},
    {"math", PyInit_math},
    {"marshal", PyMarshal_Init},
    {0, 0}
};
"""


def test_config_c_keeps_only_the_wanted_modules() -> None:
    out = config_c(TEMPLATE, {"posix", "math"})
    assert "PyInit__ssl" not in out
    assert '{"posix", PyInit_posix},' in out
    assert "extern PyObject* PyInit_math(void);" in out
    assert '{"marshal", PyMarshal_Init},' in out  # non-PyInit entries are never touched
    assert "{0, 0}" in out


def test_core_builtins_include_what_the_interpreter_needs_to_start() -> None:
    assert {"posix", "_io", "_codecs", "_signal", "_thread", "marshal"} <= CORE_BUILTINS


@pytest.mark.parametrize(
    ("entrypoint", "expect"),
    [
        ("pkg.cli:main", "from pkg.cli import main as _scratchpack_entry"),
        ("pkg.cli:App.run", "sys.exit(_scratchpack_entry.run())"),
        ("pkg", "runpy._run_module_as_main('pkg', alter_argv=False)"),
    ],
)
def test_bootstrap_calls_the_entry_point(entrypoint: str, expect: str) -> None:
    code = bootstrap_code(entrypoint)
    compile(code, "<bootstrap>", "exec")
    assert expect in code
    assert MISSING_NOTE in code


def test_bootstrap_exits_143_on_sigterm_only_as_pid_1() -> None:
    """Run the bootstrap's SIGTERM part as PID 1 of a new PID namespace and as a normal child."""
    code = bootstrap_code("json:dumps").split("try:")[0]
    probe = code + "import os\nos.kill(os.getpid(), 15)\nimport time\ntime.sleep(5)\n"
    as_pid1 = subprocess.run(
        ["unshare", "-p", "-f", "--mount-proc", sys.executable, "-c", probe],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert as_pid1.returncode == 143, as_pid1.stderr
    normal = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, timeout=30, check=False
    )
    assert normal.returncode == -15


def _info(tool: dict[str, object]) -> ProjectInfo:
    return project_info(
        {"project": {"name": "x", "version": "1"}, "tool": {"scratchpack": tool}}, "x:main"
    )


def test_runtime_and_include_modules_from_pyproject() -> None:
    info = _info({"runtime": "static", "include-modules": ["encodings.cp1252", "email.*"]})
    assert info.runtime == "static"
    assert info.include_modules == ("encodings.cp1252", "email.*")


def test_include_modules_accepts_distribution_names() -> None:
    info = _info({"include-modules": ["opentelemetry-sdk", "PyYAML", "zope.interface"]})
    assert info.include_modules == ("opentelemetry-sdk", "PyYAML", "zope.interface")


def test_build_notes_print_without_a_tty(capsys: pytest.CaptureFixture[str]) -> None:
    """Progress is TTY-only (PROGRESS is off here); left-out modules and warnings are not."""
    report = {
        "left_out": [{"module": "m._speedups", "file": "/x/_speedups.so", "imported_by": "m"}],
        "sources_for_extensions": [{"module": "c.md", "file": "/x/md.so"}],
        "missing_c": [{"module": "bz2", "c_module": "_bz2", "imported_by": ["app"]}],
    }
    static_freezer._warn_about(report)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    assert "left out the optional C speedup m._speedups (_speedups.so)" in lines[0]
    assert "c.md runs from its pure-Python source" in lines[1]
    assert "bz2 needs the C module _bz2" in lines[2]


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        ({"runtime": "go"}, "must be 'pyinstaller' or 'static'"),
        ({"include-modules": ["not a module"]}, "is not a module name"),
        ({"include-modules": "json"}, "must be a list of strings"),
    ],
)
def test_bad_static_settings_are_project_errors(tool: dict[str, object], message: str) -> None:
    with pytest.raises(ProjectError, match=message):
        _info(tool)


def test_runtime_key_is_stable_and_short() -> None:
    assert runtime_key() == runtime_key()
    assert len(runtime_key()) == 24
