"""The static route's musllinux wheels (freeze/static/native.py) and how _bundle.py stores their
extension modules, through the seams: wheels and site trees made here, a fake pip runner.
Real wheels from PyPI loaded by the real executable: test_static_e2e.py."""

from __future__ import annotations

import hashlib
import importlib.machinery
import subprocess
import sysconfig
import zipfile
from pathlib import Path

import pytest

from scratchpack._types import Platform
from scratchpack.cli import REMEDIES
from scratchpack.errors import FreezeError
from scratchpack.freeze.env import BuildEnv
from scratchpack.freeze.spec import Distribution
from scratchpack.freeze.static import (
    _bundle,
    _c_extension_error,
    _musllinux_site,
    _refusals_for,
    native,
)
from scratchpack.freeze.static.toolchain import target_for

STDLIB = sysconfig.get_paths()["stdlib"]
EXT = importlib.machinery.EXTENSION_SUFFIXES[0]

AMD64 = target_for(Platform.parse("linux/amd64"))


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def test_unpack_merges_purelib_and_skips_scripts_and_escapes(tmp_path: Path) -> None:
    whl = _wheel(
        tmp_path / "fast-1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
        {
            "fast/__init__.py": b"",
            "fast/_core.cpython-311-x86_64-linux-musl.so": b"\x7fELF",
            "fast.libs/libgcc_s-1a2b.so.1": b"\x7fELF",
            "fast-1.0.data/purelib/fast_extra.py": b"x = 1\n",
            "fast-1.0.data/scripts/fast-tool": b"#!python\n",
            "../escape.py": b"",
            "fast-1.0.dist-info/RECORD": b"fast/__init__.py,,\n",
        },
    )
    wheel = native.Wheel("fast", "1.0", "cp311-cp311-musllinux_1_2_x86_64", "0" * 64, whl)
    dest = tmp_path / "site"
    native.unpack([wheel], dest)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == [
        "fast-1.0.dist-info/RECORD",
        "fast.libs/libgcc_s-1a2b.so.1",
        "fast/__init__.py",
        "fast/_core.cpython-311-x86_64-linux-musl.so",
        "fast_extra.py",
    ]
    assert not (tmp_path / "escape.py").exists()


def test_compiled_distributions_come_from_the_records(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "fast-1.0.dist-info").mkdir(parents=True)
    (site / "fast-1.0.dist-info" / "RECORD").write_text(
        f"fast/__init__.py,,\nfast/_core{EXT},,\nfast.libs/libz-1.so.1.2.13,,\n"
    )
    (site / "pure-2.0.dist-info").mkdir()
    (site / "pure-2.0.dist-info" / "RECORD").write_text("pure/__init__.py,,\n")
    assert native.compiled_distributions([str(site)]) == {"fast": f"fast/_core{EXT}"}


class FakePip:
    """Stands for ``pip download``: records the calls, writes what it is told to."""

    def __init__(self, result: tuple[int, str], writes: str = "") -> None:
        self.calls: list[list[str]] = []
        self.result = result
        self.writes = writes

    def __call__(self, args: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        if self.writes:
            dest = Path(args[args.index("-d") + 1])
            _wheel(dest / self.writes, {"x/__init__.py": b""})
        return subprocess.CompletedProcess(args, self.result[0], self.result[1], "")


def test_fetch_uses_the_cache_then_pip_with_the_musllinux_target(tmp_path: Path) -> None:
    cache = tmp_path / "wheels"
    env = BuildEnv(tmp_path / "venv")
    pip = FakePip((0, ""), writes="Fast_Lib-2.1-cp311-cp311-musllinux_1_2_x86_64.whl")
    wheels, missing = native.fetch_wheels(env, {"fast-lib": "2.1"}, cache, runner=pip)
    assert missing == {}
    assert [(w.name, w.version, w.tag) for w in wheels] == [
        ("fast-lib", "2.1", "cp311-cp311-musllinux_1_2_x86_64")
    ]
    (call,) = pip.calls
    assert call[1:5] == ["-m", "pip", "download", "-q"]
    assert "--platform=musllinux_1_1_x86_64" in call
    assert "--abi=cp311" in call
    assert call[-1] == "fast-lib==2.1"
    again, _ = native.fetch_wheels(env, {"fast-lib": "2.1"}, cache, runner=pip)
    assert len(pip.calls) == 1  # cached: no second pip call
    assert again == wheels


def test_fetch_reports_pips_reason_when_there_is_no_musllinux_wheel(tmp_path: Path) -> None:
    pip = FakePip((1, "Looking in indexes\nERROR: No matching distribution found for old==1.0\n"))
    wheels, missing = native.fetch_wheels(
        BuildEnv(tmp_path / "venv"), {"old": "1.0"}, tmp_path / "wheels", runner=pip
    )
    assert wheels == []
    assert missing == {"old": "ERROR: No matching distribution found for old==1.0"}


def test_a_glibc_only_distribution_is_refused_naming_it_and_the_missing_wheel(
    tmp_path: Path,
) -> None:
    """A distribution whose only build is compiled for glibc (psutil 5.9.4: manylinux wheels,
    no pure-Python code): no musllinux site is made, and the refusal names the module, its
    file, the distribution, the wheel pip could not find and pip's reason; its remedy key
    tells the CLI to offer the default route."""
    site = tmp_path / "site"
    (site / "psutil").mkdir(parents=True)
    so = site / "psutil" / "_psutil_linux.abi3.so"
    so.write_bytes(b"\x7fELF glibc")
    (site / "psutil-5.9.4.dist-info").mkdir()
    (site / "psutil-5.9.4.dist-info" / "RECORD").write_text(
        "psutil/__init__.py,,\npsutil/_psutil_linux.abi3.so,,\n"
    )
    reason = "ERROR: No matching distribution found for psutil==5.9.4"
    pip = FakePip((1, f"Looking in indexes: https://pypi.org/simple\n{reason}\n"))
    musl_site, wheels, no_wheel = _musllinux_site(
        BuildEnv(tmp_path / "venv"), (Distribution("psutil", "5.9.4"),), [str(site)], AMD64,
        workdir=tmp_path / "work", cache_dir=tmp_path / "cache", runner=pip,
    )  # fmt: skip
    assert (musl_site, wheels, no_wheel) == (None, [], {"psutil": reason})
    assert pip.calls[0][-1] == "psutil==5.9.4"
    err = _c_extension_error(
        [{"module": "psutil._psutil_linux", "file": str(so)}], [str(site)], no_wheel, AMD64
    )
    assert (
        "  psutil._psutil_linux (_psutil_linux.abi3.so, from the psutil distribution): no "
        f"musllinux wheel of psutil for CPython 3.11 x86-64 ({reason})"
    ) in str(err)
    assert err.remedy == "static-c-extension"
    assert "--runtime pyinstaller" in REMEDIES[err.remedy]


def test_a_refused_extension_for_another_platform_gets_that_platforms_remedy():
    """--runtime pyinstaller cannot build for arm64, so that hint must not be the one offered;
    errors of other kinds pass through untouched (not chained to themselves)."""
    refused = FreezeError("relocation type 99 in fast/_core.so", remedy="static-c-extension")
    with pytest.raises(FreezeError) as info, _refusals_for(target_for(Platform("linux", "arm64"))):
        raise refused
    assert info.value.remedy == "static-c-extension-platform"
    assert info.value.message.endswith("(building for linux/arm64)")
    assert info.value.__cause__ is refused
    assert "drop --platform" in REMEDIES[info.value.remedy]

    other = FreezeError("the linker failed", remedy="static-kit")
    with pytest.raises(FreezeError) as info, _refusals_for(target_for(Platform("linux", "arm64"))):
        raise other
    assert info.value is other and other.__cause__ is None
    with pytest.raises(FreezeError) as info, _refusals_for(target_for(Platform("linux", "amd64"))):
        raise refused
    assert info.value is refused


def _site(tmp_path: Path, init: str) -> Path:
    site = tmp_path / "musl"
    (site / "fast").mkdir(parents=True)
    (site / "fast" / "__init__.py").write_text(init)
    (site / "fast" / f"_core{EXT}").write_bytes(b"\x7fELF core")
    (site / "fast.libs").mkdir()
    (site / "fast.libs" / "libgcc_s-1a2b.so.1").write_bytes(b"\x7fELF gcc")
    (site / "fast-1.0.dist-info").mkdir()
    (site / "fast-1.0.dist-info" / "RECORD").write_text(
        f"fast/__init__.py,,\nfast/_core{EXT},,\nfast.libs/libgcc_s-1a2b.so.1,,\n"
    )
    (site / "app.py").write_text("import fast\n")
    return site


def _bundle_native(tmp_path: Path, site: Path) -> tuple[dict[str, object], zipfile.ZipFile]:
    out = tmp_path / "modules.zip"
    report = _bundle.bundle(
        {
            "entry": "app",
            "run_main": False,
            "search_path": [STDLIB, str(site)],
            "app_paths": [str(site)],
            "stdlib": STDLIB,
            "excludes": [],
            "includes": [],
            "distributions": [],
            "output": str(out),
            "compression": "stored",
            "optimize": 0,
            "native_roots": [str(site)],
            "elf_align": 4096,
        }
    )
    return report, zipfile.ZipFile(out)


def _data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Where a member's bytes start: after its local header, name and extra field."""
    with path.open("rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
    return (
        info.header_offset
        + 30
        + int.from_bytes(local[26:28], "little")
        + int.from_bytes(local[28:30], "little")
    )


def test_bundle_stores_a_musllinux_extension_and_its_wheels_libraries(tmp_path: Path) -> None:
    site = _site(tmp_path, "from fast import _core\n")
    report, zf = _bundle_native(tmp_path, site)
    assert report["extensions"] == []
    assert report["native"] == [{"module": "fast._core", "member": f"fast/_core{EXT}"}]
    assert zf.read(f"fast/_core{EXT}") == b"\x7fELF core"
    assert zf.read("fast.libs/libgcc_s-1a2b.so.1") == b"\x7fELF gcc"
    assert zf.getinfo(f"fast/_core{EXT}").compress_type == zipfile.ZIP_STORED  # loaded in place
    # the ELF members' bytes start at page boundaries (the loader maps them from the file); the
    # padding is in the local header only; other members are not padded
    path = tmp_path / "modules.zip"
    for member in (f"fast/_core{EXT}", "fast.libs/libgcc_s-1a2b.so.1"):
        info = zf.getinfo(member)
        assert _data_offset(path, info) % 4096 == 0
        assert info.extra == b""
    init = zf.getinfo("fast/__init__.pyc")
    assert _data_offset(path, init) == init.header_offset + 30 + len(init.filename)


def test_bundle_keeps_an_optional_speedup_that_loads(tmp_path: Path) -> None:
    site = _site(
        tmp_path, "try:\n    from fast import _core\nexcept ImportError:\n    _core = None\n"
    )
    report, _zf = _bundle_native(tmp_path, site)
    assert report["left_out"] == []
    assert report["native"] == [{"module": "fast._core", "member": f"fast/_core{EXT}"}]


def test_bundle_loads_a_musllinux_mypyc_module_instead_of_the_source_beside_it(
    tmp_path: Path,
) -> None:
    """mypyc's wheels ship ``md.py`` beside the compiled shim ``md.so``, which imports the
    shared ``<hash>__mypyc`` module by name from C: both compiled modules go in, not the .py."""
    site = _site(tmp_path, "from fast import md\n")
    (site / "fast" / "md.py").write_text("X = 1\n")
    (site / "fast" / f"md{EXT}").write_bytes(b"\x7fELF\x0081d2c5__mypyc\x00")
    (site / f"81d2c5__mypyc{EXT}").write_bytes(b"\x7fELF mypyc")
    report, zf = _bundle_native(tmp_path, site)
    assert report["sources_for_extensions"] == []
    assert report["native"] == [
        {"module": "81d2c5__mypyc", "member": f"81d2c5__mypyc{EXT}"},
        {"module": "fast.md", "member": f"fast/md{EXT}"},
    ]
    assert "fast/md.pyc" not in zf.namelist()


def test_c_imports_are_stdlib_or_installed_names_among_the_c_strings(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / f"_cffi_backend{EXT}").write_bytes(b"")
    so = tmp_path / "x.so"
    so.write_bytes(b"\0uuid\0dataclasses\0not_a_module\0test\0_cffi_backend\0xml.etree\0ab\0")
    assert _bundle.c_imports(str(so), [str(site)]) == [
        "_cffi_backend",
        "dataclasses",
        "uuid",
        "xml.etree",
    ]


def test_library_components_name_each_bundled_library_with_its_wheel_and_hash(
    tmp_path: Path,
) -> None:
    site = _site(tmp_path, "")
    (comp,) = native.library_components(site, ["fast.libs/libgcc_s-1a2b.so.1"])
    assert comp.name == "libgcc_s-1a2b.so.1"
    assert comp.version == "1.0"  # its wheel's (fast-1.0.dist-info)
    assert comp.purl == "pkg:generic/libgcc_s-1a2b@1.0?file_name=libgcc_s-1a2b.so.1"
    assert comp.sha256 == hashlib.sha256(b"\x7fELF gcc").hexdigest()


CONFIG_C = """\
extern PyObject* PyInit_posix(void);

struct _inittab _PyImport_Inittab[] = {
    {"posix", PyInit_posix},
    /* Sentinel */
    {0, 0}
};
"""


class FakeZig:
    """Stands for zcc (and the kit's python compiling the bootstrap): compiles succeed; the link
    fails as ld.lld does on a missing symbol."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        if args[0].endswith("python3.11"):  # the bootstrap's compile: a marshalled code object
            Path(args[-1]).write_bytes(b"c")
            return subprocess.CompletedProcess(args, 0, "", "")
        if "-c" in args:
            Path(args[args.index("-o") + 1]).write_bytes(b"")
            return subprocess.CompletedProcess(args, 0, "", "")
        out = "ld.lld: error: undefined symbol: PyFoo_Missing\n>>> referenced by elfsyms.c\n"
        return subprocess.CompletedProcess(args, 1, out, "")


def test_link_adds_loader_table_builtin_and_finder_and_names_a_missing_symbol(
    tmp_path: Path,
) -> None:
    from scratchpack.errors import FreezeError
    from scratchpack.freeze.static import elf, link
    from scratchpack.freeze.static.kit import Kit
    from scratchpack.freeze.static.toolchain import Toolchain

    root = tmp_path / "kit"
    (root / "share").mkdir(parents=True)
    # the kit's config.c also lists _ast with the AST object conversions' pointer (kit.AST_EDITS)
    ast_lines = (
        "extern PyObject* PyInit__ast(void);\n"
        "const struct _PyAST_Conversions *const _PyAST_ConversionsLinked = 0;\n"
    )
    template = ast_lines + CONFIG_C.replace(
        "    /* Sentinel */", '    {"_ast", PyInit__ast},\n    /* Sentinel */'
    )
    (root / "share" / "config.c").write_text(template)
    kit = Kit(root, "k", "3.11.2", ("posix", "_ast"), 0.0, Toolchain(tmp_path, tmp_path, tmp_path))
    load_plan = elf.LoadPlan(
        objects={}, needed={"a/_x.so": ("a.libs/liby.so.1",)}, imports={"PyFoo_Missing": False}
    )
    native_part = native.native_link(load_plan, {"a._x": "a/_x.so"}, "/* loader */")
    work = tmp_path / "link"
    work.mkdir()
    zig = FakeZig()
    try:
        link.link_executable(
            kit, set(), "app", tmp_path / "app", work, runner=zig, native=native_part
        )
    except FreezeError as err:
        assert "PyFoo_Missing" in err.message
    else:
        raise AssertionError("a missing symbol must fail the link")
    compiled = {Path(c[c.index("-c") + 1]).name for c in zig.calls if "-c" in c}
    assert {"elfload.c", "elfsyms.c"} <= compiled
    config = (work / "config.c").read_text()
    assert '{"_scratchpack_ext", PyInit__scratchpack_ext},' in config
    # C code may ask Py_CompileStringObject for AST objects: an app with extensions links _ast
    assert '{"_ast", PyInit__ast},' in config
    assert "_PyAST_ConversionsLinked" in config
    assert config.index("extern PyObject* PyInit__scratchpack_ext(void);") < config.index(
        "struct _inittab"
    )
    # the finder is in the setup the launcher runs before the bootstrap imports the app
    assert link.setup_code(native_part.bootstrap).endswith(native_part.bootstrap)
    assert "_scratchpack_native()" in native_part.bootstrap
    assert "_scratchpack_native" not in link.bootstrap_code("app:main")
    assert "{'a._x': 'a/_x.so'}" in native_part.bootstrap
    assert "{'a/_x.so': ['a.libs/liby.so.1']}" in native_part.bootstrap


def test_an_app_without_extensions_links_as_before() -> None:
    from scratchpack.freeze.static import link

    assert link.config_c(CONFIG_C, {"posix"}) == link.config_c(CONFIG_C, {"posix"}, None)
    assert link.config_c(CONFIG_C, {"posix"}) == CONFIG_C
    assert link.setup_code() == link.setup_code("")
