"""The freezer against the real tools: pip, PyInstaller, staticx, patchelf, both Pythons.

Every fixture app is frozen once per session, sharing one build cache under the session tmp dir;
the executables then run in an empty root filesystem as uid 1000 (testsupport.rootfs).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scratchpack.errors import FreezeError, ProjectError
from scratchpack.freeze import FreezeSpec, FrozenApp, freeze, write_executable
from tests._fixtures import PROCESS_CHECKS
from tests.webhello._server import EarlySuites
from testsupport import rootfs
from testsupport.net import free_port, get_status

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
WEBHELLO = REPO / "examples" / "webhello"
DEBIAN_PYTHON = "/usr/bin/python3"
# None -> sys.executable: this venv's base, the pyenv-built 3.11.7 (absolute RUNPATH)
PYTHONS = {"pyenv": None, "debian": DEBIAN_PYTHON}


def _freeze(project: Path, cache: Path, python: str | None = None, **kw: object) -> FrozenApp:
    return freeze(FreezeSpec(project, python=python, cache_dir=cache, **kw))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def frozen_pure(freeze_cache: Path) -> FrozenApp:
    return _freeze(FIXTURES / "app_pure", freeze_cache)


@pytest.fixture(scope="session")
def frozen_cext(freeze_cache: Path) -> FrozenApp:
    return _freeze(FIXTURES / "app_cext", freeze_cache, DEBIAN_PYTHON)


@pytest.fixture(scope="session", params=sorted(PYTHONS))
def frozen_webhello(request: pytest.FixtureRequest, freeze_cache: Path) -> FrozenApp:
    if request.param == "pyenv":  # the behaviour suite's build: its run starts now
        request.getfixturevalue("webhello_suite_exe")
    return _freeze(WEBHELLO, freeze_cache, PYTHONS[request.param])


def _file_type(path: Path) -> str:
    proc = subprocess.run(["file", "-b", str(path)], check=True, capture_output=True, text=True)
    return proc.stdout


def test_fixture_with_pure_python_dependency(frozen_pure: FrozenApp, tmp_path: Path) -> None:
    assert "statically linked" in _file_type(frozen_pure.path)
    assert frozen_pure.path.stat().st_mode & 0o777 == 0o755
    exe = rootfs.make_rootfs(tmp_path / "root", frozen_pure.path)
    proc = rootfs.run(tmp_path / "root", [str(exe), "bücher.example"])
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.decode().splitlines() == ["idna 3.10: xn--bcher-kva.example", "uid 1000"]
    assert not os.listdir(tmp_path / "root" / "tmp")  # the extraction is cleaned up


def test_fixture_with_c_extension_dependency(frozen_cext: FrozenApp, tmp_path: Path) -> None:
    assert "statically linked" in _file_type(frozen_cext.path)
    assert frozen_cext.python_version == "3.11.2"  # Debian's interpreter
    exe = rootfs.make_rootfs(tmp_path / "root", frozen_cext.path)
    proc = rootfs.run(tmp_path / "root", [str(exe)])
    assert proc.returncode == 0, proc.stdout
    assert "via msgpack._cmsgpack:" in proc.stdout.decode()  # the C extension, not the fallback


# ---- child processes: multiprocessing, ProcessPoolExecutor, sys.executable as Python ---------

#: tests/fixtures/app_procs: each argument starts children one way; the expected line per check.


@pytest.fixture(scope="session")
def frozen_procs(freeze_cache: Path) -> FrozenApp:
    return _freeze(FIXTURES / "app_procs", freeze_cache)


def test_children_run_python_not_the_app(frozen_procs: FrozenApp, tmp_path: Path) -> None:
    """multiprocessing (spawn, fork, forkserver), ProcessPoolExecutor and sys.executable with
    SCRATCHPACK_PYTHON=1 all run Python; "main started" once proves no child re-ran the app.
    /dev/shm as every container has it: Pool and the executor need semaphores (sem_open)."""
    exe = rootfs.make_rootfs(tmp_path / "root", frozen_procs.path)
    proc = rootfs.run(tmp_path / "root", [str(exe), *PROCESS_CHECKS], shm=True, timeout=180)
    lines = proc.stdout.decode().splitlines()
    assert proc.returncode == 0, lines
    assert lines == ["main started", *PROCESS_CHECKS.values()]


def test_children_without_dev_shm(frozen_procs: FrozenApp, tmp_path: Path) -> None:
    """Without /dev/shm, Process and sys.executable still work; semaphores cannot."""
    exe = rootfs.make_rootfs(tmp_path / "root", frozen_procs.path)
    checks = ["fork", "spawn", "forkserver", "python-c", "pool-spawn"]
    proc = rootfs.run(tmp_path / "root", [str(exe), *checks], timeout=180)
    lines = proc.stdout.decode().splitlines()
    assert proc.returncode == 1, lines
    assert lines[:5] == ["main started", *(PROCESS_CHECKS[c] for c in checks[:4])]
    assert lines[5] == "pool-spawn: FAILED FileNotFoundError: [Errno 2] No such file or directory"


def test_app_option_dash_c_stays_the_apps(frozen_procs: FrozenApp, tmp_path: Path) -> None:
    """Without the opt-in, `app -c X` is the app's own option (gunicorn's -c CONFIG)."""
    exe = rootfs.make_rootfs(tmp_path / "root", frozen_procs.path)
    proc = rootfs.run(tmp_path / "root", [str(exe), "-c", "gunicorn.conf.py"])
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.decode().splitlines() == ["main started", "app option -c gunicorn.conf.py"]
    python = rootfs.run(
        tmp_path / "root", [str(exe), "-c", "print('as python')"], env={"SCRATCHPACK_PYTHON": "1"}
    )
    assert python.returncode == 0, python.stdout
    assert python.stdout.decode() == "as python\n"


def test_frozen_app_describes_its_contents(frozen_pure: FrozenApp) -> None:
    names = {d.name: d for d in frozen_pure.distributions}
    assert sorted(names) == ["app-pure", "idna"]
    assert names["idna"].version == "3.10"
    assert names["idna"].license
    assert names["app-pure"].source_url == "https://example.invalid/app-pure"
    assert frozen_pure.project.image.args == ("bücher.example",)
    assert frozen_pure.python_version == "3.11.7"
    assert frozen_pure.size == frozen_pure.path.stat().st_size


def test_warm_build_reuses_the_cache(frozen_pure: FrozenApp, freeze_cache: Path) -> None:
    again = _freeze(FIXTURES / "app_pure", freeze_cache)
    assert again.cached and not frozen_pure.cached
    assert (again.path, again.sha256) == (frozen_pure.path, frozen_pure.sha256)


def test_changed_options_miss_the_cache(
    frozen_pure: FrozenApp, freeze_cache: Path, tmp_path: Path
) -> None:
    xz = _freeze(FIXTURES / "app_pure", freeze_cache, compression="xz")
    assert not xz.cached
    assert xz.sha256 != frozen_pure.sha256
    assert xz.size < frozen_pure.size
    exe = rootfs.make_rootfs(tmp_path / "root", xz.path)
    proc = rootfs.run(tmp_path / "root", [str(exe)])
    assert proc.returncode == 0, proc.stdout


def test_exclusions_reach_pyinstaller_and_must_be_proven(
    frozen_pure: FrozenApp, freeze_cache: Path, tmp_path: Path
) -> None:
    """Excluding unicodedata shrinks the file and breaks idna: why every exclusion list has to
    pass the frozen app's own tests (here: running it)."""
    trimmed = _freeze(FIXTURES / "app_pure", freeze_cache, exclude_modules=("unicodedata",))
    assert trimmed.size < frozen_pure.size
    exe = rootfs.make_rootfs(tmp_path / "root", trimmed.path)
    proc = rootfs.run(tmp_path / "root", [str(exe)])
    assert proc.returncode != 0
    assert b"unicodedata" in proc.stdout


def test_write_executable_copies_out_of_the_cache(frozen_pure: FrozenApp, tmp_path: Path) -> None:
    out = write_executable(frozen_pure, tmp_path / "app-pure")
    assert out.read_bytes() == frozen_pure.path.read_bytes()
    assert out.stat().st_mode & 0o777 == 0o755


def test_reproducible_from_two_clean_checkouts(freeze_cache: Path, tmp_path: Path) -> None:
    """Two checkouts in different directories, two caches: byte-identical executables. The
    first is the repository's webhello in the session's cache (built there once, as the
    behaviour suite's is); the second a copy elsewhere, built without a cache into an empty one."""
    first = _freeze(WEBHELLO, freeze_cache)
    src = tmp_path / "second" / "checkout" / "webhello"
    shutil.copytree(WEBHELLO, src, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    second = _freeze(src, tmp_path / "second" / "cache", use_cache=False)
    assert not second.cached
    assert first.path.parent.name == second.path.parent.name  # same cache key: same inputs
    assert first.sha256 == second.sha256
    assert first.path.read_bytes() == second.path.read_bytes()


# ---- what a frozen app loses easily: package data, metadata, dynamic imports, tzdata ---------


@pytest.fixture(scope="session")
def frozen_data(freeze_cache: Path) -> FrozenApp:
    return _freeze(FIXTURES / "app_data", freeze_cache)


def _without_includes(tmp_path: Path, includes: str = "") -> Path:
    """A copy of app_data whose include-modules line says ``includes`` (nothing: no line)."""
    project = _copy_fixture("app_data", tmp_path)
    toml = project / "pyproject.toml"
    lines = toml.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith("include-modules")]
    toml.write_text("".join(kept) + (f"include-modules = {includes}\n" if includes else ""))
    return project


def test_package_data_metadata_dynamic_imports_and_time_zones_in_empty_rootfs(
    frozen_data: FrozenApp, tmp_path: Path
) -> None:
    """No /usr/share/zoneinfo, no site-packages: everything comes from the executable."""
    exe = rootfs.make_rootfs(tmp_path / "root", frozen_data.path)
    assert not (tmp_path / "root" / "usr").exists()
    proc = rootfs.run(tmp_path / "root", [str(exe)])
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.decode().splitlines() == [
        "hello from package data",  # importlib.resources, the app's own data
        "app-data 2.5.0, certifi 2026.10.19.post1",  # importlib.metadata, app and dependency
        "ca bundle: True",  # a dependency's data (certifi's hook)
        "by name: extra inner",  # include-modules: a module, and pkg.* two levels down
        "Europe/Paris +0100 +0200",  # the bundled tzdata package
        "uid 1000",
    ]
    assert not os.listdir(tmp_path / "root" / "tmp")


def test_bundled_tzdata_is_in_the_sbom_and_absent_where_zoneinfo_is_not_reached(
    frozen_data: FrozenApp, frozen_pure: FrozenApp
) -> None:
    names = {d.name: d for d in frozen_data.distributions}
    assert sorted(names) == ["app-data", "certifi", "tzdata"]
    assert names["tzdata"].version == "2026.6"
    assert names["tzdata"].license == "Apache-2.0"
    assert "tzdata" not in {d.name for d in frozen_pure.distributions}  # idna: no zoneinfo


def test_locale_from_the_environment_in_empty_rootfs(freeze_cache: Path, tmp_path: Path) -> None:
    """LANG=C.UTF-8 and no /usr/lib/locale: the bundled glibc reads the C.utf8 locale bundled
    with the app (the launcher points LOCPATH at it)."""
    frozen = _freeze(FIXTURES / "app_locale", freeze_cache)
    exe = rootfs.make_rootfs(tmp_path / "root", frozen.path)
    assert not (tmp_path / "root" / "usr").exists()
    proc = rootfs.run(tmp_path / "root", [str(exe)], env={"LANG": "C.UTF-8"})
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.decode().splitlines() == [
        "setlocale: C.UTF-8",
        "encoding: UTF-8",
        "strcoll: True",
    ]
    # the control: a LOCPATH of the user's own is kept, and without the locale the call fails
    env = {"LANG": "C.UTF-8", "LOCPATH": "/nowhere"}
    failed = rootfs.run(tmp_path / "root", [str(exe)], env=env)
    assert failed.returncode == 1, failed.stdout
    assert b"setlocale failed: unsupported locale setting" in failed.stdout
    assert not os.listdir(tmp_path / "root" / "tmp")


def test_module_loaded_by_name_needs_include_modules(freeze_cache: Path, tmp_path: Path) -> None:
    """The negative control: without include-modules the name-built import fails at run time."""
    app = _freeze(_without_includes(tmp_path), freeze_cache)
    exe = rootfs.make_rootfs(tmp_path / "root", app.path)
    proc = rootfs.run(tmp_path / "root", [str(exe)])
    assert proc.returncode != 0
    assert b"No module named 'app_data.extra'" in proc.stdout


def test_include_modules_that_do_not_exist_are_named(freeze_cache: Path, tmp_path: Path) -> None:
    project = _without_includes(tmp_path, '["app_data.extra", "app_data.nope", "nowhere.*"]')
    with pytest.raises(FreezeError, match=r"not found .*: app_data\.nope, nowhere\n") as err:
        _freeze(project, freeze_cache)
    assert "[tool.scratchpack] include-modules" in str(err.value)


# ---- webhello in the empty rootfs -------------------------------------------------------------


def _make_cert(directory: Path) -> tuple[bytes, bytes]:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return (directory / "cert.pem").read_bytes(), (directory / "key.pem").read_bytes()


@pytest.fixture
def webhello_root(frozen_webhello: FrozenApp, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    cert, key = _make_cert(tmp_path)
    root = tmp_path / "root"
    exe = rootfs.make_rootfs(
        root, frozen_webhello.path, files={"certs/cert.pem": cert, "certs/key.pem": key}
    )
    yield root, exe


def _serve_and_stop(root: Path, argv: list[str], probe: int, ctx: ssl.SSLContext | None) -> str:
    with rootfs.running(root, argv) as proc:
        up = rootfs.wait_for(lambda: proc.poll() is not None or get_status(probe, ctx) == 200, 30)
        status = get_status(probe, ctx)
        code = rootfs.stop(proc, signal.SIGTERM)
        assert proc.stdout is not None
        out = proc.stdout.read().decode(errors="replace")
    assert up and status == 200, out
    assert code == 0, f"exit {code} after SIGTERM:\n{out}"
    return out


def test_webhello_serves_http_in_empty_rootfs(webhello_root: tuple[Path, Path]) -> None:
    root, exe = webhello_root
    assert "statically linked" in _file_type(root / exe.name)
    http_port, https_port = free_port(), free_port()
    out = _serve_and_stop(
        root,
        [str(exe), "-addr", f"127.0.0.1:{http_port}", "-httpsAddr", f"127.0.0.1:{https_port}"],
        http_port,
        None,
    )
    assert "user: appuser (uid: 1000)" in out
    assert not os.listdir(root / "tmp")


def test_webhello_serves_https_in_empty_rootfs(webhello_root: tuple[Path, Path]) -> None:
    root, exe = webhello_root
    ctx = ssl.create_default_context(cafile=str(root / "certs" / "cert.pem"))
    http_port, https_port = free_port(), free_port()
    out = _serve_and_stop(
        root,
        [str(exe), "-addr", f"127.0.0.1:{http_port}", "-httpsAddr", f"127.0.0.1:{https_port}",
         "-cert", "/certs/cert.pem", "-key", "/certs/key.pem"],
        https_port,
        ctx,
    )  # fmt: skip
    assert "user: appuser (uid: 1000)" in out
    assert re.search(r"TLS=true", out), out


# ---- errors a user can act on -----------------------------------------------------------------


def _copy_fixture(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(FIXTURES / name, dest)
    for broken in dest.rglob("*.py.broken"):
        broken.rename(broken.with_suffix(""))  # kept renamed so the linters skip it
    return dest


def _assert_no_output(cache: Path) -> None:
    out = cache / "out"
    assert not out.exists() or not os.listdir(out)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("bad_syntax", r"entry point 'bad_syntax.cli:main' does not import: SyntaxError"),
        (
            "missing_module",
            r"entry point 'missing_module.nowhere:main' does not import: ModuleNotFoundError",
        ),
    ],
)
def test_entrypoint_that_does_not_import(
    case: str, message: str, freeze_cache: Path, tmp_path: Path
) -> None:
    project = _copy_fixture(case, tmp_path)
    with pytest.raises(ProjectError, match=message) as err:
        _freeze(project, freeze_cache)
    assert err.value.hint
    assert not list((freeze_cache / "out").glob("*/bad-syntax"))
    assert not list((freeze_cache / "out").glob("*/missing-module"))


def test_dependency_that_fails_to_install(tmp_path: Path) -> None:
    with pytest.raises(FreezeError, match=r"the project's dependencies failed") as err:
        _freeze(FIXTURES / "bad_dependency", tmp_path / "cache")
    assert err.value.tool == "pip"
    assert "msgpack==0.0.0.dev0" in str(err.value)
    _assert_no_output(tmp_path / "cache")


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("missing", ProjectError, "does not exist"),
        ("not_a_project", ProjectError, "no pyproject.toml"),
        ("no_entrypoint", ProjectError, "has no entry point"),
    ],
)
def test_project_errors_before_any_tool(
    case: str, error: type[Exception], message: str, tmp_path: Path
) -> None:
    with pytest.raises(error, match=message):
        _freeze(FIXTURES / case, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def _static_only_python(tmp_path: Path) -> Path:
    """Debian's interpreter with a build config that says "no shared libpython" (as a
    --disable-shared build does): its own prefix, stdlib linked back, sysconfigdata patched."""
    prefix = tmp_path / "static-python"
    lib = prefix / "lib" / "python3.11"
    lib.mkdir(parents=True)
    (prefix / "bin").mkdir()
    shutil.copy2("/usr/bin/python3.11", prefix / "bin" / "python3.11")
    for entry in Path("/usr/lib/python3.11").iterdir():
        if entry.name.startswith("_sysconfigdata_"):
            text = entry.read_text().replace("'Py_ENABLE_SHARED': 1", "'Py_ENABLE_SHARED': 0")
            (lib / entry.name).write_text(text)
        else:
            (lib / entry.name).symlink_to(entry)
    return prefix / "bin" / "python3.11"


def test_python_without_shared_libpython(tmp_path: Path) -> None:
    python = _static_only_python(tmp_path)
    with pytest.raises(FreezeError, match="has no shared libpython") as err:
        _freeze(FIXTURES / "app_pure", tmp_path / "cache", str(python))
    assert "--enable-shared" in str(err.value)
    _assert_no_output(tmp_path / "cache")


#: The behaviour suite's test below, whose run webhello_suite_exe starts (EarlySuites).
SUITE_TEST = (Path(__file__), "test_webhello_behaviour_suite_passes_against_the_frozen_binary")


@pytest.fixture(scope="session")
def webhello_suite_exe(freeze_cache: Path, behaviour_suites: EarlySuites) -> Iterator[Path]:
    """webhello frozen (pyenv build) into a 0755 directory whose ancestors are traversable: the
    suite runs the binary as uid 1000, and pytest's tmp_path lives under a 0700 directory. The
    suite's run starts here (frozen_webhello asks early), beside the tests before its own."""
    d = Path(tempfile.mkdtemp(prefix="scratchpack-frozen-", dir="/tmp"))
    d.chmod(0o755)
    exe = write_executable(_freeze(WEBHELLO, freeze_cache), d / "webhello")
    behaviour_suites.start(SUITE_TEST, {"WEBHELLO_CMD": str(exe)}, "tests/webhello")
    yield exe
    shutil.rmtree(d, ignore_errors=True)


def test_webhello_behaviour_suite_passes_against_the_frozen_binary(
    webhello_suite_exe: Path, behaviour_suites: EarlySuites
) -> None:
    """The whole tests/webhello suite, with WEBHELLO_CMD = the frozen executable (pyenv build)."""
    env = {"WEBHELLO_CMD": str(webhello_suite_exe)}
    result = behaviour_suites.run(SUITE_TEST, env, "tests/webhello")
    assert result.returncode == 0, result.tail()
    assert result.counts.get("passed", 0) > 0, result.tail()
    assert result.complete, result.tail()
