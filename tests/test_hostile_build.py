"""Hostile and unlucky inputs to the build (issue 11): each test drives the real thing.

Real builds with the real tools (the static route's kit from the session cache, PyInstaller and
staticx on the default route), real files and the real CLI in a subprocess; fast in-process
checks where a seam exists (the fake tool runner of test_freezers).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scratchpack._fs import Undo
from scratchpack.errors import ProjectError, SinkError
from scratchpack.freeze import FreezeSpec, freeze
from scratchpack.freeze.hostlibs import debian_components
from scratchpack.freeze.project import source_digest, stage_sources
from scratchpack.freeze.static import _bundle
from scratchpack.oci.reference import Reference
from scratchpack.publish import MultiPublisher, Outcome, Release
from scratchpack.publish.layout import LayoutPublisher
from scratchpack.publish.tarball import TarballPublisher
from tests._fixtures import write_project
from tests.test_bundle import bundle_request
from tests.test_freezers import FakeTools
from testsupport.engines import build_static_server, scratch_image

REPO = Path(__file__).resolve().parent.parent
DEBIAN_PYTHON = "/usr/bin/python3"

WEBHELLO = REPO / "examples" / "webhello"


def _small_app(tmp_path: Path, name: str = "tiny", body: str = "", extra: str = "") -> Path:
    """A one-module project with a console script ``NAME`` printing ``hello from NAME``."""
    project = write_project(
        tmp_path,
        f'[project]\nname = "{name}"\nversion = "1.0"\n'
        f'[project.scripts]\n{name} = "{name}_app:main"\n'
        # webhello's build system and (no) dependencies: the same build-venv key as webhello's
        '[build-system]\nrequires = ["setuptools>=68"]\n'
        f'build-backend = "setuptools.build_meta"\n{extra}',
        name=name,
    )
    pkg = project / "src" / f"{name}_app"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        f"{body}\n\ndef main() -> None:\n    print('hello from {name}')\n"
    )
    return project


def scratchpack(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: a fresh process, its exit code, stdout and stderr."""
    env = {k: v for k, v in os.environ.items() if k != "SCRATCHPACK_CACHE_DIR"}
    return subprocess.run(
        [sys.executable, "-m", "scratchpack", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- 3. a corrupted cache entry is rebuilt, never shipped ---------------------------------------


def test_corrupt_cache_entry_is_rebuilt_fast(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Through the fake tools: a flipped byte of a same-size cached executable is noticed."""
    project = _small_app(tmp_path)
    spec = FreezeSpec(project, cache_dir=tmp_path / "cache", python=sys.executable)
    first = freeze(spec, runner=FakeTools())
    data = bytearray(first.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.path.write_bytes(bytes(data))
    capfd.readouterr()
    again = freeze(spec, runner=FakeTools())
    assert not again.cached
    assert _sha256(again.path) == again.sha256 == first.sha256
    err = capfd.readouterr().err
    assert err.count("does not match its recorded sha256") == 1, err


@pytest.mark.e2e
@pytest.mark.slow
def test_corrupt_cached_executable_is_rebuilt(static_cache: Path, tmp_path: Path) -> None:
    """A real static-route build, a flipped byte in its cache entry: the next build says so,
    rebuilds, and the sha256 it reports is the one of the executable it wrote."""
    project = _small_app(tmp_path)
    out = tmp_path / "tiny.exe"
    args = ("exe", project, "--runtime", "static", "--cache-dir", static_cache, "--json")
    first = scratchpack(*args, "-o", out)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    meta_files = [
        m
        for m in (static_cache / "out").glob("*/meta.json")
        if json.loads(m.read_text())["sha256"] == result["sha256"]
    ]
    assert len(meta_files) == 1
    cached = meta_files[0].parent / "tiny"
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0x01
    cached.write_bytes(bytes(data))

    again = scratchpack(*args, "-o", out)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    lines = [x for x in again.stderr.splitlines() if "does not match its recorded sha256" in x]
    assert len(lines) == 1, again.stderr
    assert second["cached"] is False
    assert second["sha256"] == _sha256(out) == _sha256(cached) == result["sha256"]
    run = subprocess.run([out], capture_output=True, text=True, check=False)
    assert run.stdout == "hello from tiny\n"


# ---- 1. each build sees only its own project and its declared dependencies -------------------


def test_project_goes_only_into_the_builds_own_venv(tmp_path: Path) -> None:
    """Through the fake tools: the shared venv gets the resolved dependencies, never the
    project; the project is installed alone (--no-deps) into a venv inside the build's temp
    directory, which is gone afterwards."""
    project = _small_app(tmp_path)
    tools = FakeTools()
    spec = FreezeSpec(project, cache_dir=tmp_path / "cache", python=sys.executable)
    freeze(spec, runner=tools)
    pip = [c for c in tools.calls if c[1:4] == ["-m", "pip", "install"]]
    base = [c for c in pip if "--dry-run" not in c and str(tmp_path / "cache" / "envs") in c[0]]
    own = [c for c in pip if c[0].endswith("/venv/bin/python")]
    assert [c[-1] for c in base[1:]] == ["idna==3.10"]  # base[0]: the tool pins
    assert len(own) == 1 and "--no-deps" in own[0]
    assert Path(own[0][-1]).name == "tiny"  # the staged project
    assert not Path(own[0][0]).exists()  # the build's venv went with its temp directory


@pytest.fixture(params=["static", "pyinstaller"])
def route_cache(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """Each route with the session's cache of that route (the kit's, or the default route's):
    other projects' builds, webhello's among them, already sit in it."""
    route: str = request.param
    return route, request.getfixturevalue("static_cache" if route == "static" else "freeze_cache")


@pytest.mark.e2e
@pytest.mark.slow
def test_undeclared_import_of_another_project_fails(
    route_cache: tuple[str, Path], tmp_path: Path
) -> None:
    """webhello and another project are built with one cache; a project that declares no
    dependencies and imports their packages must fail to build, naming the missing module."""
    route, cache = route_cache
    common = ("--runtime", route, "--cache-dir", cache)
    python = ("--python", DEBIAN_PYTHON) if route == "static" else ()
    other = _small_app(tmp_path, "other")
    for built in (WEBHELLO, other):
        proc = scratchpack("exe", built, *common, *python, "-o", tmp_path / f"{built.name}.exe")
        assert proc.returncode == 0, proc.stderr
    for module in ("other_app", "webhello"):
        thief = _small_app(tmp_path, f"uses_{module.replace('_', '')}", f"import {module}")
        out = tmp_path / f"{thief.name}.exe"
        proc = scratchpack("exe", thief, *common, *python, "-o", out)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"No module named '{module}'" in proc.stderr
        assert proc.stderr.startswith("error: entry point"), proc.stderr
        assert not out.exists()


# ---- 8. outputs never overwrite the sources or an input; several outputs are all or nothing --


@pytest.mark.e2e
@pytest.mark.slow
def test_outputs_in_the_sources_are_refused(static_cache: Path, tmp_path: Path) -> None:
    """``exe -o PROJ/pyproject.toml`` and ``--tarball PROJ/src/pkg/__init__.py`` stop with an
    error and a hint, before anything is built, and leave the sources as they were."""
    project = _small_app(tmp_path)
    common = ("--runtime", "static", "--cache-dir", static_cache)
    pyproject, init = project / "pyproject.toml", project / "src" / "tiny_app" / "__init__.py"
    before = {p: p.read_bytes() for p in (pyproject, init)}
    cases = [
        ("exe", project, *common, "-o", pyproject),
        ("exe", project, *common, "-o", project / "src" / "tiny_app"),
        ("build", project, *common, "--tarball", init),
        ("build", project, *common, "--oci-layout", project / "layout"),
    ]
    for argv in cases:
        proc = scratchpack(*argv)
        assert proc.returncode == 1, (argv, proc.stderr)
        lines = proc.stderr.splitlines()
        assert lines[0].startswith("error: output ") and "inside the project's sources" in lines[0]
        assert any(x.strip().startswith("hint: ") and "outside the project" in x for x in lines)
        assert {p: p.read_bytes() for p in (pyproject, init)} == before
    assert sorted(p.name for p in project.iterdir()) == ["pyproject.toml", "src"]
    # dist/ inside the project is no source: that output is fine
    (project / "dist").mkdir()
    proc = scratchpack("exe", project, *common, "-o", project / "dist" / "tiny")
    assert proc.returncode == 0, proc.stderr
    # an output on an input
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"not a bundle")
    proc = scratchpack("build", project, *common, "--ca-certs", ca, "--tarball", ca)
    assert proc.returncode == 1 and "would overwrite the input" in proc.stderr, proc.stderr
    assert ca.read_bytes() == b"not a bundle"


@pytest.mark.e2e
@pytest.mark.slow
def test_a_failing_later_output_leaves_no_earlier_one(static_cache: Path, tmp_path: Path) -> None:
    """``build --tarball T --oci-layout L`` where L cannot be written: the new tarball and its
    SBOM are gone, an old tarball keeps its bytes, and no temporary file is left beside them."""
    project = _small_app(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    blocker = out / "a-file"
    blocker.write_text("a file where the layout's parent should be")
    common = ("build", project, "--runtime", "static", "--cache-dir", static_cache)
    tarball = out / "app.tar"
    proc = scratchpack(*common, "--tarball", tarball, "--oci-layout", blocker / "layout")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: "), proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a-file"]

    tarball.write_bytes(b"the old tarball")
    layout = out / "layout"  # a new layout dir (and its parent) made, then taken back
    proc = scratchpack(
        *common, "--tarball", tarball, "--oci-layout", layout, "--push", "127.0.0.1:9/x"
    )
    assert proc.returncode == 1, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a-file", "app.tar"]
    assert tarball.read_bytes() == b"the old tarball"

    proc = scratchpack(*common, "--tarball", tarball, "--oci-layout", layout)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "a-file",
        "app.tar",
        "app.tar.spdx.json",
        "layout",
        "layout.spdx.json",
    ]


class _FailingOutput:
    """A later output that fails (a registry that refuses the push, a full disk)."""

    def describe(self) -> str:
        return "failing"

    def publish(self, release: Release) -> Outcome:
        raise SinkError("the last output failed")

    def undo_point(self) -> Undo:
        return Undo()


def test_multi_output_puts_earlier_outputs_back(tmp_path: Path) -> None:
    """Through the publisher seam, with the real tarball and layout writers: a new tarball and
    a new layout go, an old tarball and an existing layout's index come back byte for byte."""
    exe = build_static_server(tmp_path / "exe")  # a small static ELF; the image is not run
    first = scratch_image(exe, tmp_path / "w1", cmd=("one",))
    second = scratch_image(exe, tmp_path / "w2", cmd=("two",))
    tags = (Reference.parse("demo:1"),)
    out = tmp_path / "out"
    out.mkdir()
    old_layout = out / "old-layout"
    LayoutPublisher(old_layout).publish(Release(first, tags))
    before = {p: p.read_bytes() for p in sorted(old_layout.rglob("*")) if p.is_file()}
    tarball = out / "app.tar"
    tarball.write_bytes(b"the old tarball")
    outputs = [
        TarballPublisher(tarball),
        TarballPublisher(out / "new.tar"),
        LayoutPublisher(out / "new" / "layout"),
        LayoutPublisher(old_layout),
        _FailingOutput(),
    ]
    with pytest.raises(SinkError, match="the last output failed"):
        MultiPublisher(outputs).publish(Release(second, tags))
    assert sorted(p.name for p in out.iterdir()) == ["app.tar", "old-layout"]
    assert tarball.read_bytes() == b"the old tarball"
    after = {p: p.read_bytes() for p in sorted(old_layout.rglob("*")) if p.is_file()}
    assert after == before


# ---- 6a. symlinks that leave the project or an install tree are refused, by name --------------

#: package data read at run time: a symlink to a file outside the project would bring its bytes
_READS_DATA = (
    "import importlib.resources\n"
    "DATA = importlib.resources.files(__name__).joinpath('notes.txt').read_text()\n"
)
_PACKAGE_DATA = '[tool.setuptools.package-data]\ntiny_app = ["*.txt"]\n'


def _leaky_app(tmp_path: Path) -> tuple[Path, bytes]:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"SECRET-OUTSIDE-THE-PROJECT")
    project = _small_app(tmp_path, body=_READS_DATA, extra=_PACKAGE_DATA)
    pkg = project / "src" / "tiny_app"
    (pkg / "notes.txt").symlink_to(secret)
    (pkg / "shadow.txt").symlink_to("/etc/shadow")
    return project, secret.read_bytes()


def test_escaping_symlinks_are_named_before_any_tool(tmp_path: Path) -> None:
    project, _ = _leaky_app(tmp_path)
    for check in (source_digest, lambda p: stage_sources(p, tmp_path / "stage")):
        with pytest.raises(ProjectError) as err:
            check(project)
        assert "2 symlink(s)" in err.value.message
        assert "src/tiny_app/notes.txt -> " + str(tmp_path / "secret.txt") in err.value.message
        assert "src/tiny_app/shadow.txt -> /etc/shadow" in err.value.message


def test_install_tree_symlink_out_is_refused_by_the_static_bundler(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    (site / "dep").mkdir(parents=True)
    (site / "dep" / "__init__.py").write_text("")
    (site / "dep" / "ok.txt").write_text("inside")
    (site / "dep" / "key.pem").symlink_to("/etc/shadow")
    entries: dict[str, bytes] = {}
    with pytest.raises(_bundle.BundleError, match=r"dep/key.pem -> /etc/shadow"):
        _bundle._add_package_data(entries, [str(site / "dep" / "__init__.py")], [str(site)], [])
    assert "dep/key.pem" not in entries


@pytest.mark.e2e
@pytest.mark.slow
def test_package_data_symlink_out_of_the_project_is_refused(
    route_cache: tuple[str, Path], tmp_path: Path
) -> None:
    route, cache = route_cache
    project, secret = _leaky_app(tmp_path)
    out = tmp_path / "app"
    proc = scratchpack("exe", project, "--runtime", route, "--cache-dir", cache, "-o", out)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: 2 symlink(s) in "), proc.stderr
    assert "src/tiny_app/notes.txt -> " in proc.stderr
    assert "src/tiny_app/shadow.txt -> /etc/shadow" in proc.stderr
    assert not out.exists()
    built = [p.read_bytes() for p in Path(cache, "out").glob("*/tiny")]
    assert not any(secret in b for b in built)


# ---- 10. a symlinked package directory inside the project is built like pip builds it -------


@pytest.mark.e2e
@pytest.mark.slow
def test_symlinked_package_directory_is_staged(static_cache: Path, tmp_path: Path) -> None:
    project = _small_app(tmp_path, "linked")
    real = project / "lib" / "linked_app"
    real.parent.mkdir()
    (project / "src" / "linked_app").rename(real)
    (project / "src" / "linked_app").symlink_to(Path("..") / "lib" / "linked_app")
    stage = tmp_path / "stage"
    stage_sources(project, stage)
    assert (stage / "src" / "linked_app" / "__init__.py").is_file()
    out = tmp_path / "linked.exe"
    common = ("--runtime", "static", "--cache-dir", static_cache)
    proc = scratchpack("exe", project, *common, "-o", out)
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([out], capture_output=True, text=True, check=False)
    assert run.stdout == "hello from linked\n"


#: Run by the frozen app itself (SCRATCHPACK_PYTHON=1): every bundled file that holds ``needle``.
_SCAN = """
import os, sys
needle = sys.argv[1].encode()
for root, _, files in os.walk(sys._MEIPASS):
    for name in files:
        with open(os.path.join(root, name), 'rb') as f:
            if needle in f.read():
                print(os.path.relpath(os.path.join(root, name), sys._MEIPASS))
"""


@dataclass(frozen=True)
class DefaultBuild:
    executable: Path
    sbom: dict[str, Any]


@pytest.fixture(scope="module")
def default_build(tmp_path_factory: pytest.TempPathFactory) -> DefaultBuild:
    """The small app built once on the default route with this venv's (pyenv) Python."""
    tmp = tmp_path_factory.mktemp("default-route")
    project = _small_app(tmp)
    tarball = tmp / "tiny.tar"
    proc = scratchpack("build", project, "--cache-dir", tmp / "cache", "--tarball", tarball)
    assert proc.returncode == 0, proc.stderr
    (exe,) = (tmp / "cache" / "out").glob("*/tiny")
    sbom = json.loads(Path(f"{tarball}.spdx.json").read_text())
    return DefaultBuild(exe, sbom)


@pytest.mark.e2e
@pytest.mark.slow
def test_default_route_embeds_no_path_under_the_build_home(default_build: DefaultBuild) -> None:
    """This venv's Python is pyenv's, under the build user's home: its prefix is compiled into
    libpython and left in the extension modules' removed RUNPATH strings. None of it ships."""
    home = os.path.expanduser("~").rstrip("/")
    assert len(home) > 1 and sys.base_prefix.startswith(home + "/"), sys.base_prefix
    out = default_build.executable
    env = {**os.environ, "SCRATCHPACK_PYTHON": "1"}
    scan = subprocess.run(
        [out, "-c", _SCAN, home + "/"], capture_output=True, text=True, env=env, check=False
    )
    assert scan.returncode == 0, scan.stderr
    assert scan.stdout == "", f"bundled files naming {home}/:\n{scan.stdout}"
    run = subprocess.run([out], capture_output=True, text=True, check=False)
    assert run.stdout == "hello from tiny\n"


def _dpkg_version(package: str) -> str:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


@pytest.mark.e2e
@pytest.mark.slow
def test_default_route_sbom_lists_the_bundled_c_libraries(default_build: DefaultBuild) -> None:
    """glibc (staticx bundles it), OpenSSL and zlib (PyInstaller does), with the host's dpkg
    versions."""
    packages = {p["name"]: p for p in default_build.sbom["packages"]}
    for name in ("libc6", "libssl3", "zlib1g"):
        assert name in packages, sorted(packages)
        assert packages[name]["versionInfo"] == _dpkg_version(name)
        refs = [r["referenceLocator"] for r in packages[name].get("externalRefs", [])]
        assert any(r.startswith(f"pkg:deb/debian/{name}@") for r in refs), refs


def test_host_libraries_map_to_dpkg_packages(tmp_path: Path) -> None:
    """Across the /usr merge: dpkg lists /lib/..., ldd may say /usr/lib/... (or the reverse)."""
    dpkg = tmp_path / "dpkg"
    (dpkg / "info").mkdir(parents=True)
    (dpkg / "info" / "libc6:amd64.list").write_text("/.\n/lib/x86_64-linux-gnu/libc.so.6\n")
    (dpkg / "info" / "zlib1g:amd64.list").write_text("/usr/lib/x86_64-linux-gnu/libz.so.1\n")
    (dpkg / "info" / "other.list").write_text("/usr/lib/libother.so\n")
    (dpkg / "status").write_text(
        "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n"
        "Version: 2.36-9+deb12u13\n\n"
        "Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\n"
        "Version: 1:1.2.13.dfsg-1\n"
    )
    release = tmp_path / "os-release"
    release.write_text('ID=debian\nVERSION_ID="12"\n')
    found = debian_components(
        ["/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libz.so.1", "/opt/x.so"],
        dpkg=dpkg,
        os_release=release,
    )
    assert [(c.name, c.version, c.purl) for c in found] == [
        (
            "libc6",
            "2.36-9+deb12u13",
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u13?arch=amd64&distro=debian-12",
        ),
        (
            "zlib1g",
            "1:1.2.13.dfsg-1",
            "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12",
        ),
    ]


@pytest.mark.e2e
@pytest.mark.slow
def test_static_package_data_is_streamed_not_held(static_cache: Path, tmp_path: Path) -> None:
    """The static route's bundler, run by the kit's interpreter as a build runs it, on 160 MB of
    package data: it never holds the data in memory (it cost ~3x its size). Measured on the
    bundler alone: pip's wheel build, which scratchpack does not control, reads files whole."""
    from scratchpack._ctx import run_subprocess
    from scratchpack.freeze.static.kit import ensure_kit

    size = 160 << 20
    kit = ensure_kit(static_cache, runner=run_subprocess)
    site = tmp_path / "site-packages"
    (site / "tiny_app").mkdir(parents=True)
    (site / "tiny_app" / "__init__.py").write_text(_READS_DATA)
    with (site / "tiny_app" / "notes.txt").open("wb") as f:
        f.truncate(size)
    zip_path = tmp_path / "modules.zip"
    request = bundle_request("tiny_app", kit.stdlib, [site], zip_path)
    (tmp_path / "request.json").write_text(json.dumps(request))
    bundler = Path(_bundle.__file__)
    measure = (
        "import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss << 10)\n"
    )
    argv = [kit.python, "-I", "-S", bundler, tmp_path / "request.json"]
    proc = subprocess.run(
        [sys.executable, "-c", measure, *map(str, argv)],
        capture_output=True,
        text=True,
        check=False,
    )
    code, peak = map(int, proc.stdout.split())
    assert code == 0, proc.stderr
    assert zipfile.ZipFile(zip_path).getinfo("tiny_app/notes.txt").file_size == size
    assert peak < size // 2, f"the bundler peaked at {peak >> 20} MB"
