"""Unit tests of the static freezer's pure parts: import scanning, the built-in table, the
bootstrap and the kit key (its pyproject settings: test_project_config.py). The end-to-end proofs
(a real kit, real executables in a read-only rootfs and in podman) are in test_static_e2e.py."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scratchpack.freeze.static import _bundle
from scratchpack.freeze.static.kit import kit_key
from scratchpack.freeze.static.link import CORE_BUILTINS, MISSING_NOTE, bootstrap_code, config_c

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


APP = """\
import contextlib, importlib, sys
def main():
    with contextlib.suppress(ImportError):
        import optional_speedup_xyz
    if sys.argv[1:] == ['ok']:
        return 0
    if sys.argv[1:] == ['raise']:
        raise RuntimeError('no fallback')
    try:
        importlib.import_module('needed_by_name_xyz')
    except ImportError:
        return 3
"""


@pytest.mark.parametrize(
    ("arg", "status", "note"),
    [
        ("ok", 0, False),  # probing an optional module is normal: quiet
        ("caught", 3, True),  # the app caught the ModuleNotFoundError and exited non-zero
        ("raise", 1, True),  # an uncaught error after the miss: the note is on the traceback
    ],
)
def test_bootstrap_names_failed_imports_at_a_non_zero_exit(
    tmp_path: Path, arg: str, status: int, note: bool
) -> None:
    (tmp_path / "fixture_app.py").write_text(APP)
    code = bootstrap_code("fixture_app:main")
    proc = subprocess.run(
        [sys.executable, "-c", code, arg],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == status, proc.stderr
    line = next((x for x in proc.stderr.splitlines() if x.startswith("scratchpack:")), "")
    if note:
        assert line.startswith(f"scratchpack: exit status {status};"), proc.stderr
    else:
        assert line == "", proc.stderr
    if note and arg == "caught":
        assert ": needed_by_name_xyz, optional_speedup_xyz." in line, line


def test_kit_key_is_stable_and_short() -> None:
    assert kit_key() == kit_key()
    assert len(kit_key()) == 24


def test_kit_key_is_unchanged_by_the_rename() -> None:
    """The kit was "the runtime" in code until the rename; its key and cache directory stayed,
    so kits built before it are still found (a cold build is minutes)."""
    from scratchpack.freeze.static import kit

    assert kit.CACHE_SUBDIR == "runtime"
    assert kit.META_FILE == "runtime.json"
