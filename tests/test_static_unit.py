"""Unit tests of the static freezer's pure parts: import scanning, the built-in table, the
bootstrap and the kit key (its pyproject settings: test_project_config.py). The end-to-end proofs
(a real kit, real executables in a read-only rootfs and in podman) are in test_static_e2e.py."""

from __future__ import annotations

import ast
import gc
import importlib.resources
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from scratchpack.errors import FreezeError
from scratchpack.freeze import static as static_freezer
from scratchpack.freeze.static import _bundle
from scratchpack.freeze.static.kit import (
    CTYPES_DL_CFLAGS,
    MODULE_ARCHIVES,
    _extra_setup_lines,
    kit_key,
)
from scratchpack.freeze.static.link import (
    _SELFDIR,
    CORE_BUILTINS,
    GC_DEFERRED,
    HOT_TEXT,
    MISSING_NOTE,
    ZIPIMPORT_PATCH,
    archives,
    bootstrap_code,
    config_c,
    hot_text_names,
    hot_text_script,
    setup_code,
)
from scratchpack.freeze.static.sources import PACKAGES

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
    # linked when a module of the app imports their Python module (or can make AST objects)
    assert CORE_BUILTINS.isdisjoint({"_ast", "_tokenize", "_symtable", "_tracemalloc"})


AST_TEMPLATE = """#include "Python.h"
extern PyObject* PyInit__ast(void);
extern const struct _PyAST_Conversions _PyAST_ConversionsTable; \
const struct _PyAST_Conversions *const _PyAST_ConversionsLinked = &_PyAST_ConversionsTable;
struct _inittab _PyImport_Inittab[] = {
    {"_ast", PyInit__ast},
    {0, 0}
};
"""  # the conversions' line is one line (the backslash joins it), as in the kit's config.c


def test_config_c_points_at_the_ast_conversions_only_with_the_ast_module() -> None:
    """kit.AST_EDITS: without _ast nothing references compile()'s AST object conversions."""
    without = config_c(AST_TEMPLATE, {"posix"})
    assert "_PyAST_Conversions" not in without
    assert "PyInit__ast" not in without
    assert config_c(AST_TEMPLATE, {"_ast"}) == AST_TEMPLATE


@pytest.mark.parametrize(
    ("source", "expect"),
    [
        ("compile(src, 'f', 'exec')", False),
        ("compile(src, 'f', 'exec', 0, True)", False),
        ("compile(src, 'f', 'exec', dont_inherit=True, optimize=2)", False),
        ("compile(src, 'f', 'exec', 0x400)", True),
        ("compile(src, 'f', 'exec', flags=1024)", True),
        ("compile(src, 'f', 'exec', flags)", True),
        ("compile(*args)", True),
        ("compile(src, 'f', 'exec', **kw)", True),
        ("builtins.compile(src, 'f', 'exec', flags)", True),
        ("builtins.compile(src, 'f', 'exec')", False),
        ("run(compile, src)", True),
        ("f = builtins.compile", True),
        ("getattr(builtins, 'compile')", True),
        ("getattr(builtins, name)", False),  # a computed name: not seen, as imports by one
        ("re.compile(p, flags)", False),
        ("def compile(p, f=0): pass\ncompile(p, f, x, y)\nuse(compile)", False),  # re's own
        ("from re import compile\ncompile(p, flags)", False),
        ("from builtins import compile\ncompile(src, 'f', 'exec', flags)", True),
    ],
)
def test_scan_links_ast_when_compile_may_make_ast_objects(source: str, expect: bool) -> None:
    assert _bundle.makes_ast_objects(ast.parse(source)) is expect


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


GC_APP = """\
import gc, json, sys
collections = []
gc.callbacks.append(lambda phase, info: collections.append(phase))
threshold_at_import = gc.get_threshold()
kept = [[i] for i in range(20000)]  # far beyond generation 0's threshold
marker = kept[-1]
if sys.argv[1:] == ['own-threshold']:
    gc.set_threshold(500, 5, 5)
if sys.argv[1:] == ['own-freeze']:
    gc.freeze()
if sys.argv[1:] == ['cycles']:  # as an import that never returns would make them
    for _ in range(threshold_at_import[0] + 1000):
        cycle = []
        cycle.append(cycle)
def main():
    in_import = len(collections)
    young = gc.get_objects(0) + gc.get_objects(1)
    print(json.dumps({
        'deferred': threshold_at_import[0],
        'collections_in_import': in_import,
        'threshold': gc.get_threshold(),
        'marker_in_oldest': any(o is marker for o in gc.get_objects(2)),
        'marker_young': any(o is marker for o in young),
        'frozen': gc.get_freeze_count(),
    }))
"""


@pytest.mark.parametrize("arg", ["plain", "own-threshold", "own-freeze", "cycles"])
def test_bootstrap_defers_the_cyclic_gc_while_the_entry_module_imports(
    tmp_path: Path, arg: str
) -> None:
    """No collection during the import, the import's objects go to the oldest generation
    (still seen by the collector and by gc.get_objects()), and the threshold is back; an app
    that set its own threshold or froze objects while importing keeps them; an import that
    makes garbage beyond the deferred threshold (one that never returns) is still collected."""
    (tmp_path / "fixture_app.py").write_text(GC_APP)
    proc = subprocess.run(
        [sys.executable, "-c", bootstrap_code("fixture_app:main"), arg],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["deferred"] == GC_DEFERRED
    assert (got["collections_in_import"] == 0) is (arg not in ("own-threshold", "cycles"))
    if arg in ("plain", "cycles"):
        assert got["threshold"] == list(gc.get_threshold())
        assert got["marker_in_oldest"] and not got["marker_young"]
        assert got["frozen"] == 0
    elif arg == "own-threshold":
        assert got["threshold"] == [500, 5, 5]
    else:
        assert got["threshold"] == list(gc.get_threshold())
        assert got["frozen"] > 20000 and not got["marker_in_oldest"]


ZIPIMPORT_PROBE = """\
import importlib.util, json, marshal, sys, zipfile, zipimport
archive = sys.argv[1]
sys.executable = archive  # the patch's get_filename answers for the executable's own zip
exec(PATCH, vars(zipimport))
seen = []
def loads(data, original=marshal.loads):
    seen.append(type(data).__name__)
    return original(data)
zipimport.marshal = type(sys)('marshal')
zipimport.marshal.loads = loads
importer = zipimport.zipimporter(archive)
spec = importer.find_spec('mod')
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps({'value': module.VALUE, 'file': module.__file__, 'loads': seen}))
"""


def test_zipimport_patch_names_the_pyc_and_unmarshals_without_copying(tmp_path: Path) -> None:
    """get_filename answers from the table (no unmarshal), and the one unmarshal per module
    reads a memoryview of the member, not a copy of it; the module is the same."""
    import py_compile
    import zipfile

    (tmp_path / "mod.py").write_text("VALUE = 42\n")
    pyc = py_compile.compile(str(tmp_path / "mod.py"), cfile=str(tmp_path / "mod.pyc"))
    archive = tmp_path / "app.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(pyc, "mod.pyc")
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"PATCH = {ZIPIMPORT_PATCH!r}\n" + ZIPIMPORT_PROBE,
            str(archive),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "value": 42,
        "file": f"{archive}/mod.pyc",
        "loads": ["memoryview"],
    }


SELFDIR_PROBE = """\
import importlib.resources, json, sys, zipimport
sys.path.insert(0, ARCHIVE)
import pkg.sub.mod
hook = sys.path_hooks[0]
made = [hook(ARCHIVE + p) for p in ('/pkg', '/pkg/sub', '//pkg/./sub/')]
with importlib.resources.as_file(importlib.resources.files('pkg') / 'data.txt') as path:
    data = str(path)
with importlib.resources.as_file(importlib.resources.files('json') / '__init__.py') as path:
    other = str(path)
print(json.dumps({
    'made': [[type(m) is zipimport.zipimporter, m.archive, m.prefix] for m in made],
    'expected': [zipimport.zipimporter(ARCHIVE + '/pkg/sub').prefix],
    'mod': pkg.sub.mod.VALUE,
    'data': data,
    'other': other,
}))
"""


def _host_python(source: str) -> subprocess.CompletedProcess[str]:
    """``source`` run by this interpreter, isolated (the setup code runs on the host's
    CPython like it runs on the kit's)."""
    return subprocess.run(
        [sys.executable, "-I", "-c", source],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _selfdir_probe(archive: Path, members: dict[str, str], probe: str) -> Any:
    """Write ``members`` as the executable's zip at ``archive``, then run the setup's
    ``_SELFDIR`` for it and ``probe`` (ARCHIVE: the archive's path) in a fresh interpreter; the
    JSON the probe prints."""
    import zipfile

    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    code = _SELFDIR.replace("_scratchpack_selfdir()\n", f"_scratchpack_selfdir({str(archive)!r})\n")
    assert code != _SELFDIR
    source = "import sys\n" + code + probe.replace("ARCHIVE", repr(str(archive)))
    proc = _host_python(source)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_bootstrap_selfdir_path_hook_and_as_file(tmp_path: Path) -> None:
    """The bootstrap's zipimport path hook makes the importers zipimport makes, and as_file()
    on a member of the executable's zip gives its path there (selfdir.c serves it), while other
    resources keep the copying default."""
    archive = tmp_path / "exe"
    members = {
        "pkg/__init__.py": "",
        "pkg/data.txt": "data",
        "pkg/sub/__init__.py": "",
        "pkg/sub/mod.py": "VALUE = 7",
    }
    got = _selfdir_probe(archive, members, SELFDIR_PROBE)
    assert got["made"] == [
        [True, str(archive), "pkg/"],
        [True, str(archive), "pkg/sub/"],
        [True, str(archive), "pkg/sub/"],
    ]
    assert got["expected"] == ["pkg/sub/"]
    assert got["mod"] == 7
    assert got["data"] == f"{archive}/pkg/data.txt"
    assert got["other"].endswith("json/__init__.py") and not got["other"].startswith(str(archive))


FORWARD_REF_PROBE = """\
import json, sys
compiled = []
sys.addaudithook(lambda event, args: event == 'compile' and compiled.append(args[0]))
import typing
first, again, other = typing.ForwardRef('int'), typing.ForwardRef('int'), typing.ForwardRef('str')
class Box:
    size: 'int'
errors = []
for _ in range(2):
    try:
        typing.ForwardRef('1 +')
    except SyntaxError as err:
        errors.append(str(err))
print(json.dumps({
    'shared': first.__forward_code__ is again.__forward_code__,
    'distinct': first.__forward_code__ is not other.__forward_code__,
    'hints': str(typing.get_type_hints(Box)),
    'equal': first == again,
    'compiled': [s.decode() if isinstance(s, bytes) else repr(s) for s in compiled],
    'errors': errors,
}))
"""


@pytest.mark.parametrize("bundled", [True, False])
def test_setup_reuses_forward_reference_code_only_where_typing_is_bundled(bundled: bool) -> None:
    """With typing bundled, a ForwardRef of a string compiled before reuses its code object (one
    ``compile`` per distinct string); a syntax error is still raised every time; without typing
    the setup is the same as before."""
    source = setup_code(typing=bundled) + FORWARD_REF_PROBE
    proc = _host_python(source)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["shared"] is bundled
    assert got["distinct"] is True
    assert got["hints"] == "{'size': <class 'int'>}"
    assert got["equal"] is True
    strings = [s for s in got["compiled"] if s in ("int", "str", "1 +")]
    # the audit event carries the source as bytes; get_type_hints' 'int' comes last
    once, every = ["int", "str", "1 +", "1 +"], ["int", "int", "str", "1 +", "1 +", "int"]
    assert strings == (once if bundled else every)
    assert got["errors"] == ["Forward reference must be an expression -- got '1 +'"] * 2
    assert ("forward_refs" in setup_code(typing=bundled)) is bundled


def _linked_setup(tmp_path: Path, builtins: set[str]) -> str:
    """The setup source link_executable hands the kit's python to compile, for an app whose
    imports need ``builtins`` (zcc and the kit's python faked: every step succeeds)."""
    from scratchpack.freeze.static import link
    from scratchpack.freeze.static.kit import Kit
    from scratchpack.freeze.static.toolchain import Toolchain

    def runner(args: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        out = args[-1] if args[0].endswith("python3.11") else args[args.index("-o") + 1]
        Path(out).write_bytes(b"c")
        return subprocess.CompletedProcess(args, 0, "", "")

    root = tmp_path / "kit"
    (root / "share").mkdir(parents=True)
    entries = "".join(f'    {{"{m}", PyInit_{m}}},\n' for m in ("posix", "_typing"))
    (root / "share" / "config.c").write_text(
        "struct _inittab _PyImport_Inittab[] = {\n" + entries + "    /* Sentinel */\n};\n"
    )
    kit = Kit(root, "k", "3.11.2", ("posix", "_typing"), 0.0, Toolchain(root, root, root))
    work = tmp_path / "link"
    work.mkdir()
    link.link_executable(kit, builtins, "app:main", work / "app", work, runner=runner)
    sources = json.loads((work / "bootstrap.json").read_text())
    return str(sources[2][0])


def test_large_start_reads_are_stored_members_or_all_deflated_bytecode_over_the_fresh_map_size(
    tmp_path: Path,
) -> None:
    import zipfile

    from scratchpack.freeze.static.link import LARGE_BLOCK, large_start_reads

    def zip_of(**members: tuple[int, int]) -> Path:
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for name, (size, method) in members.items():
                zf.writestr(name.replace("_", "."), b"x" * size, compress_type=method)
        return path

    stored, deflated = zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED
    big, small = LARGE_BLOCK + 1, LARGE_BLOCK
    assert large_start_reads(zip_of(a_bin=(big, stored)))
    assert not large_start_reads(zip_of(a_pyc=(small, stored), b_bin=(10, stored)))
    # the start's bytecode stored (the default): a large deflated module is read later, if ever
    assert not large_start_reads(zip_of(a_pyc=(big, deflated), b_pyc=(10, stored)))
    # compress-start-modules: no bytecode stored, so a large module may be the start's
    assert large_start_reads(zip_of(a_pyc=(big, deflated), b_pyc=(10, deflated)))
    assert not large_start_reads(zip_of(a_pyc=(small, deflated), b_bin=(big, deflated)))


def test_link_wraps_malloc_and_free_only_when_asked_to_keep_large_blocks(
    tmp_path: Path,
) -> None:
    from scratchpack.freeze.static import link
    from scratchpack.freeze.static.kit import Kit
    from scratchpack.freeze.static.toolchain import Toolchain

    calls: list[list[str]] = []

    def runner(args: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        out = args[-1] if args[0].endswith("python3.11") else args[args.index("-o") + 1]
        Path(out).write_bytes(b"c")
        return subprocess.CompletedProcess(args, 0, "", "")

    root = tmp_path / "kit"
    (root / "share").mkdir(parents=True)
    (root / "share" / "config.c").write_text("struct _inittab _PyImport_Inittab[] = {};\n")
    kit = Kit(root, "k", "3.11.2", (), 0.0, Toolchain(root, root, root))
    for keep in (False, True):
        calls.clear()
        work = tmp_path / f"link-{keep}"
        work.mkdir()
        link.link_executable(
            kit, set(), "app:main", work / "app", work, runner=runner, keep_large_blocks=keep
        )
        zcc = [c for c in calls if c[0] == "zcc"]
        compiles = {Path(c[c.index("-c") + 1]).name: c for c in zcc if "-c" in c}
        linked = next(c for c in calls if "-static" in c)
        defined = [n for n, c in compiles.items() if "-DSCRATCHPACK_KEEP_LARGE_BLOCKS" in c]
        assert defined == (["launcher.c"] if keep else [])
        assert ("-Wl,--wrap=malloc" in linked and "-Wl,--wrap=free" in linked) is keep
        assert "-Wl,--wrap=calloc" in linked


def test_link_gives_the_forward_reference_patch_only_to_apps_that_bundle_typing(
    tmp_path: Path,
) -> None:
    with_typing = _linked_setup(tmp_path / "a", {"_typing"})
    without = _linked_setup(tmp_path / "b", set())
    assert "patches['typing'] = forward_refs" in with_typing
    assert without == setup_code() and "forward" not in without


METADATA_PROBE = """\
import importlib.metadata as md, json, os, sys, zipfile
sys.path[:] = [ARCHIVE]
real_listdir, listed = os.listdir, []
def listdir(path='.'):
    if SERVE and path == ARCHIVE + '/':  # selfdir.c lists the zip's top level in C
        listed.append(path)
        return sorted({n.split('/')[0] for n in zipfile.ZipFile(ARCHIVE).namelist()})
    return real_listdir(path)
os.listdir = listdir
dists = list(md.distributions())
out = {
    'listed': listed,
    'paths': sorted([type(d._path).__name__, str(d._path)] for d in dists),
    'named': str(md.distribution('Demo.Pkg')._path),
}
if not SERVE:  # the host cannot open <exe>/...: only the zipfile fallback reads here
    out['version'] = md.version('demo_pkg')
    out['groups'] = sorted(md.entry_points().groups)
print(json.dumps(out))
"""


@pytest.mark.parametrize("serve", [True, False])
def test_bootstrap_lists_metadata_through_the_executable_directory(
    tmp_path: Path, serve: bool
) -> None:
    """importlib.metadata finds the dist-info directories by listing ``<exe>/`` (selfdir.c
    answers it in C) and reads them as ``<exe>/<name>.dist-info/...`` paths, never opening
    ``zipfile.Path``; where the listing fails (no selfdir view, as on this host) it falls back
    to CPython's zip reading, which still answers."""
    archive = tmp_path / "exe"
    members = {
        "demo/__init__.py": "",
        "Demo.Pkg-1.0.dist-info/METADATA": "Name: Demo.Pkg\nVersion: 1.0\n",
        "Demo.Pkg-1.0.dist-info/entry_points.txt": "[demo.plugins]\nx = demo:x\n",
        "other-2.0.dist-info/METADATA": "Name: other\nVersion: 2.0\n",
    }
    got = _selfdir_probe(archive, members, METADATA_PROBE.replace("SERVE", str(serve)))
    dist = f"{archive}/Demo.Pkg-1.0.dist-info"
    if serve:
        assert got["listed"] == [f"{archive}/"]
        other = f"{archive}/other-2.0.dist-info"
        assert got["paths"] == [["PosixPath", dist], ["PosixPath", other]]
    else:
        assert got["listed"] == []
        assert [kind for kind, _path in got["paths"]] == ["Path", "Path"]  # zipfile.Path
        assert (got["version"], got["groups"]) == ("1.0", ["demo.plugins"])
    assert got["named"] == dist + ("" if serve else "/")  # PEP 503: Demo.Pkg is demo_pkg


def test_kit_key_is_stable_and_short() -> None:
    assert kit_key() == kit_key()
    assert len(kit_key()) == 24


def test_kit_key_is_unchanged_by_the_rename() -> None:
    """The kit was "the runtime" in code until the rename; its key and cache directory stayed,
    so kits built before it are still found (a cold build is minutes)."""
    from scratchpack.freeze.static import kit

    assert kit.CACHE_SUBDIR == "runtime"
    assert kit.META_FILE == "runtime.json"


def test_kit_build_fails_when_openssl_kept_its_assembler_p256(tmp_path: Path) -> None:
    """The -U in OPENSSL_OPTIONS works only while OpenSSL puts the user's flags after its own
    defines: the kit build reads ec_curve.o's symbol names to know."""
    from scratchpack.errors import FreezeError
    from scratchpack.freeze.static import kit

    assert f"-U{kit.OPENSSL_NISTZ256_MACRO}" in kit.OPENSSL_OPTIONS
    obj = tmp_path / "libcrypto-lib-ec_curve.o"
    obj.write_bytes(b"\0EC_GFp_mont_method\0EC_GFp_nistp256_method\0")
    kit._check_p256(obj)
    for names in (
        b"\0EC_GFp_nistz256_method\0",
        b"\0EC_GFp_nistz256_method\0EC_GFp_nistp256_method\0",
    ):
        obj.write_bytes(names)
        with pytest.raises(FreezeError, match="P-256"):
            kit._check_p256(obj)


# ---- the kit's optional libraries -------------------------------------------------------------


def test_link_adds_a_library_only_for_a_module_that_needs_it() -> None:
    assert archives(set(CORE_BUILTINS)) == ["libz.a"]  # what webhello's line had before
    assert archives({"_socket", "_ssl"}) == ["libssl.a", "libcrypto.a", "libz.a"]
    assert archives({"_decimal", "pyexpat", "_elementtree"}) == [
        "libmpdec.a",
        "libexpat.a",
        "libz.a",
    ]
    assert archives({"_curses"}) == ["libncursesw.a", "libz.a"]
    assert archives({"_curses", "_curses_panel"}) == ["libpanelw.a", "libncursesw.a", "libz.a"]
    everything = archives(set(MODULE_ARCHIVES) | {"_hashlib"})
    assert len(everything) == len(set(everything)) == 11


def test_hot_text_script_gathers_the_listed_functions_ahead_of_text_in_order() -> None:
    names = hot_text_names("# comment\nmain\n\n  Py_Initialize \nmain\nc.malloc.malloc\n")
    assert names == ["main", "Py_Initialize", "c.malloc.malloc"]
    assert hot_text_script(names) == (
        "SECTIONS {\n  .text.hot : {\n"
        "    *(.text.main)\n    *(.text.Py_Initialize)\n    *(.text.c.malloc.malloc)\n"
        "  }\n} INSERT BEFORE .text;\n"
    )
    with pytest.raises(FreezeError, match="not a C function name"):
        hot_text_names("main\n*(.data)\n")


def test_packaged_hot_text_lists_the_interpreters_start() -> None:
    text = importlib.resources.files("scratchpack.freeze.static").joinpath(HOT_TEXT).read_text()
    names = hot_text_names(text)
    assert len(names) > 1000
    core = {"_start", "main", "Py_InitializeFromConfig", "_PyEval_EvalFrameDefault"}
    assert core | {"PyObject_Malloc", "PyInit__socket", "PyInit_select"} <= set(names)


def test_setup_lines_of_the_setup_py_modules_are_read_as_modules_by_makesetup() -> None:
    var, *modules = _extra_setup_lines(Path("/deps"))
    assert var == "SCRATCHPACK_DL_CFLAGS=" + " ".join(CTYPES_DL_CFLAGS)
    assert [line.split()[0] for line in modules] == ["_ctypes", "_curses", "_curses_panel"]
    for line in modules:
        assert "=" not in line, line  # makesetup would take the line for a Makefile variable
    ctypes_line, curses_line, panel_line = modules
    assert "_ctypes/scratchpack_dl.c" in ctypes_line and "$(SCRATCHPACK_DL_CFLAGS)" in ctypes_line
    assert ctypes_line.endswith("-I/deps/include -L/deps/lib -lffi")
    assert "-DHAVE_NCURSESW -I/deps/include/ncursesw" in curses_line
    assert panel_line.endswith("-lpanelw -lncursesw")


def test_ctypes_dl_shim_defines_every_renamed_function() -> None:
    source = (
        importlib.resources.files("scratchpack.freeze.static").joinpath("ctypes_dl.c").read_text()
    )
    for flag in CTYPES_DL_CFLAGS:
        original, _, ours = flag.removeprefix("-D").partition("=")
        assert original in {"dlopen", "dlsym", "dlerror", "dlclose"}
        assert re.search(rf"^\S.* \*?{ours}\(", source, re.M), ours


def test_kit_sources_are_pinned_bookworm_versions() -> None:
    assert {p.name: p.version for p in PACKAGES} == {
        "zlib": "1:1.2.13.dfsg-1",
        "openssl": "3.0.20-1~deb12u2",
        "python3.11": "3.11.2-6+deb12u8",
        "bzip2": "1.0.8-5",
        "xz-utils": "5.4.1-1+deb12u1",
        "sqlite3": "3.40.1-2+deb12u2",
        "libffi": "3.4.4-1",
        "ncurses": "6.4-4",
    }


def test_sbom_names_a_licence_for_every_kit_source_but_public_domain_liblzma() -> None:
    from scratchpack import sbom
    from scratchpack.freeze.static import StaticFreezer

    parts = {c.name: c for c in StaticFreezer().components()}
    assert set(parts) == {p.name for p in PACKAGES} | {"musl"}
    for name, part in parts.items():
        expected = "NOASSERTION" if name == "xz-utils" else part.license
        assert sbom._license(part.license) == expected != "", name


def test_modules_the_kit_now_has_raise_no_missing_module_warning() -> None:
    assert set(_bundle.UNAVAILABLE).isdisjoint(MODULE_ARCHIVES)
    assert "readline" in _bundle.UNAVAILABLE  # GPL-3: left out on purpose


def test_the_host_kit_key_has_no_cross_part_and_each_target_its_own_key() -> None:
    """Adding targets must not move the x86-64 kit (every seeded cache is keyed on it): the
    cross settings enter the key only for a kit of another machine."""
    from scratchpack._types import Platform
    from scratchpack.freeze.static import kit
    from scratchpack.freeze.static.toolchain import TARGETS, host_target, target_for

    assert kit.kit_key() == kit.kit_key(host_target())
    keys = {kit.kit_key(t) for t in TARGETS.values()}
    assert len(keys) == len(TARGETS)
    arm = target_for(Platform("linux", "arm64", "v8"))
    assert (arm.triple, arm.openssl, arm.musllinux[-1]) == (
        "aarch64-linux-musl",
        "linux-aarch64",
        "musllinux_1_2_aarch64",
    )
    before = kit.kit_key(arm)
    try:
        kit.CROSS_CONFIG_SITE += (("ac_cv_x", "yes"),)
        assert kit.kit_key(arm) != before
        assert kit.kit_key(host_target()) in keys
    finally:
        kit.CROSS_CONFIG_SITE = kit.CROSS_CONFIG_SITE[:-1]


def test_source_edits_need_their_text_exactly_once(tmp_path: Path) -> None:
    """A changed upstream source fails the kit build instead of keeping what an edit removed
    (kit.OPENSSL_EDITS: the key encoders and the KDFs no TLS or hashlib path uses)."""
    from scratchpack.freeze.static import kit

    table = '{ "HKDF" },\n{ "SSKDF" },\n'
    (tmp_path / "p.c").write_text(table)
    kit._edit_sources(tmp_path, (("p.c", '{ "SSKDF" },\n', ""),))
    assert (tmp_path / "p.c").read_text() == '{ "HKDF" },\n'
    for text in ('{ "SSKDF" },\n', '"'):  # gone now / not unique
        with pytest.raises(FreezeError, match="does not hold"):
            kit._edit_sources(tmp_path, (("p.c", text, ""),))
    assert any("encoders.inc" in text for _rel, text, _new in kit.OPENSSL_EDITS)
