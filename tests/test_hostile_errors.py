"""Hostile and unlucky conditions (issue 11, items 4 and 5), each against the real thing.

Every failure a user can reach is one ``error:`` line, a ``hint:`` and a non-zero exit, never a
traceback: a file name that is not UTF-8, files and directories the user cannot read (tested
as a non-root user: root reads anything), wrong TOML types, and a full disk (a real 1 MB
tmpfs) at the output, in TMPDIR and in the build cache. A build stopped by SIGTERM or SIGINT
stops PyInstaller and everything it started, removes its temporary files and says so in one
line; what a SIGKILLed build leaves behind is removed by the next run, and a live run's files
are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import scratchpack
from scratchpack._fs import OWNER_FILE

#: A uid/gid without privileges, for the permission tests.
NOBODY = 1000

_MAIN = 'def main() -> None:\n    print("{greeting}")\n'


def _project(root: Path, greeting: str = "hello") -> Path:
    """A small pure-Python project with a package directory and a data subdirectory."""
    proj = root / "proj"
    (proj / "src" / "demo" / "data").mkdir(parents=True)
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "1.0"\n'
        '[project.scripts]\ndemo = "demo:main"\n'
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    (proj / "src" / "demo" / "__init__.py").write_text(_MAIN.format(greeting=greeting))
    (proj / "src" / "demo" / "data" / "table.txt").write_text("1 2 3\n")
    return proj


def _cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scratchpack", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def _assert_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 1, an ``error:`` first line, a ``hint:``, the needles, and no traceback."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and lines[0].startswith("error: "), proc.stderr
    assert any(line.startswith("  hint: ") for line in lines), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


# --- item 4: no tracebacks ------------------------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    (proj / "src" / "demo" / os.fsdecode(b"caf\xe9.txt")).write_text("x")
    proc = _cli("exe", str(proj), "-o", str(tmp_path / "app"))
    _assert_error(proc, "caf\\xe9.txt", "not valid UTF-8", str(proj / "src" / "demo"))


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('tool = 5\n[project]\nname = "demo"\nversion = "1.0"\n', "[tool] must be a table"),
        ('[project]\nname = "demo"\ndynamic = 5\n', "[project] dynamic must be a list"),
        ('[project]\nname = "demo"\nversion = 1\n', "[project] version = 1 must be a string"),
    ],
    ids=["tool", "dynamic", "version"],
)
def test_wrong_toml_types_name_the_key(tmp_path: Path, body: str, named: str) -> None:
    proj = _project(tmp_path)
    (proj / "pyproject.toml").write_text(body)
    _assert_error(_cli("exe", str(proj), "-o", str(tmp_path / "app")), named)


def test_an_os_error_no_layer_words_is_still_error_and_hint(tmp_path: Path) -> None:
    """The CLI's last resort: an executable file that is no program (exec fails, ENOEXEC)."""
    proj = _project(tmp_path)
    python = tmp_path / "python3"
    python.write_bytes(b"\x00\x01 not a program")
    python.chmod(0o755)
    proc = _cli("exe", str(proj), "--python", str(python), "-o", str(tmp_path / "app"))
    _assert_error(proc, "Exec format error", str(python))
    proc = _cli("exe", str(proj), "--python", str(python), "--json")
    assert json.loads(proc.stdout)["error"].startswith("Exec format error")


#: The user can import scratchpack and start its own interpreter again (the build does).
_CAN_RUN = "import scratchpack, subprocess, sys; subprocess.run([sys.executable, '-V'], check=True)"


@pytest.fixture
def as_nobody() -> Iterator[tuple[Path, Callable[..., subprocess.CompletedProcess[str]]]]:
    """A directory owned by an unprivileged user, and a way to run the CLI as that user.

    The scratchpack package is copied in (the test's venv may sit under a home the user cannot
    enter), and the first interpreter that user can run (and re-run) is used.
    """
    base = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        base.chmod(0o755)
        lib = base / "lib"
        shutil.copytree(Path(scratchpack.__file__).parent, lib / "scratchpack")
        drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(base),
            "PYTHONPATH": str(lib),
            "SCRATCHPACK_CACHE_DIR": str(base / "cache"),
        }
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(base)], check=True)
        python = next(
            (
                py
                for py in (sys.executable, "/usr/bin/python3", shutil.which("python3"))
                if py
                and subprocess.run(
                    [*drop, py, "-c", _CAN_RUN],
                    env=env,
                    capture_output=True,
                    check=False,
                ).returncode
                == 0
            ),
            None,
        )
        assert python, f"no Python that uid {NOBODY} can run with scratchpack"

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*drop, python, "-m", "scratchpack", *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=900,
                check=False,
            )

        yield base, run
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("target", ["src/demo/data", "src/demo/__init__.py", ".", "pyproject.toml"])
def test_what_the_user_cannot_read_is_an_error_naming_it(
    as_nobody: tuple[Path, Callable[..., subprocess.CompletedProcess[str]]], target: str
) -> None:
    """Before: an unreadable subdirectory was silently left out of the build, an unreadable
    file or project directory gave a traceback."""
    base, run = as_nobody
    proj = _project(base)
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(proj)], check=True)
    locked = (proj / target).resolve()
    locked.chmod(0)
    proc = run("exe", str(proj), "-o", str(base / "app"))
    _assert_error(proc, f"cannot read {locked}: Permission denied", "permission")
    assert not (base / "app").exists()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MB tmpfs: writes beyond it fail with ENOSPC."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A project frozen once into a build cache (its build venv then serves every build here)."""
    root = tmp_path_factory.mktemp("built")
    proj, cache = _project(root), root / "cache"
    proc = _cli(
        "exe", str(proj), "-o", str(root / "app"), env={"SCRATCHPACK_CACHE_DIR": str(cache)}
    )
    assert proc.returncode == 0, proc.stderr
    return proj, cache


@pytest.mark.e2e
@pytest.mark.slow
def test_full_disk_at_the_executable_output(built: tuple[Path, Path], full_disk: Path) -> None:
    """Before: the -o advice ("choose a path in a writable directory") hid the full disk."""
    proj, cache = built
    out = full_disk / "app"
    proc = _cli("exe", str(proj), "-o", str(out), env={"SCRATCHPACK_CACHE_DIR": str(cache)})
    _assert_error(proc, f"cannot write {out}: No space left on device", "hint: the disk is full")
    assert "writable directory" not in proc.stderr
    assert list(full_disk.iterdir()) == []


@pytest.mark.e2e
@pytest.mark.slow
def test_full_disk_in_tmpdir_while_assembling_the_layer(
    built: tuple[Path, Path], full_disk: Path, tmp_path: Path
) -> None:
    """Before: a raw OSError traceback from the layer writer."""
    proj, cache = built
    out = tmp_path / "image.tar"
    env = {"SCRATCHPACK_CACHE_DIR": str(cache), "TMPDIR": str(full_disk)}
    proc = _cli("build", str(proj), "--tarball", str(out), env=env)
    _assert_error(proc, "cannot write the image layer", "No space left on device", "TMPDIR")
    assert not out.exists()
    assert list(full_disk.iterdir()) == []


@pytest.mark.e2e
@pytest.mark.slow
def test_full_disk_in_the_build_cache(full_disk: Path, tmp_path: Path) -> None:
    """Before: "on Debian install python3-venv" for a venv that did not fit."""
    proj = _project(tmp_path)
    proc = _cli("exe", str(proj), "-o", str(tmp_path / "app"), "--cache-dir", str(full_disk))
    _assert_error(proc, "out of disk space", str(full_disk), "hint: the disk is full")
    assert "python3-venv" not in proc.stderr
    assert not (tmp_path / "app").exists()


# --- item 5: signals and debris ---------------------------------------------------------------


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of the running processes (zombies are gone: they only
    wait to be reaped); the start time tells a pid from a reused one."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def _descendants(pid: int) -> dict[int, str]:
    table = _process_table()
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, start) in table.items():
            if ppid == parent and child not in found:
                found[child] = start
                todo.append(child)
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(procs: dict[int, str]) -> dict[int, str]:
    table = _process_table()
    return {pid: start for pid, start in procs.items() if table.get(pid, (0, ""))[1] == start}


def _start_build(
    proj: Path, out: Path, cache: Path, tmpdir: Path
) -> tuple[subprocess.Popen[str], dict[int, str]]:
    """Start ``scratchpack exe`` and wait until PyInstaller runs; returns its process tree."""
    env = {**os.environ, "SCRATCHPACK_CACHE_DIR": str(cache), "TMPDIR": str(tmpdir)}
    cli = subprocess.Popen(
        [sys.executable, "-m", "scratchpack", "exe", str(proj), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        tree = _descendants(cli.pid)
        if any(b"PyInstaller" in _cmdline(pid) for pid in tree):
            time.sleep(2)  # well inside the analysis, with its own children started
            return cli, _descendants(cli.pid)
        if cli.poll() is not None:
            pytest.fail(f"the build ended before PyInstaller ran: {cli.communicate()}")
        time.sleep(0.2)
    cli.kill()
    pytest.fail("PyInstaller did not start within 10 minutes")


def _wait_gone(procs: dict[int, str], seconds: float) -> dict[int, str]:
    deadline = time.monotonic() + seconds
    while (left := _alive(procs)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_build_stops_pyinstaller_and_leaves_nothing(
    built: tuple[Path, Path], tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """Before: SIGTERM exited 143 silently, PyInstaller ran on under PID 1, and the build dir
    stayed in the cache."""
    _, cache = built
    proj = _project(tmp_path, greeting=f"stopped by {sig.name}")  # a cache miss, same venv
    tmpdir, outdir = tmp_path / "tmp", tmp_path / "out"
    tmpdir.mkdir()
    outdir.mkdir()
    before = set((cache / "tmp").iterdir())  # another test's debris, on the old code
    cli, tree = _start_build(proj, outdir / "app", cache, tmpdir)
    os.kill(cli.pid, sig)
    try:
        _, stderr = cli.communicate(timeout=60)
    finally:
        left = _wait_gone(tree, 2)
        for pid in left:  # ours to end, so a failure does not leave them running
            os.kill(pid, signal.SIGKILL)
    assert not left, {pid: _cmdline(pid) for pid in left}
    assert set((cache / "tmp").iterdir()) <= before
    assert list(tmpdir.iterdir()) == []
    assert list(outdir.iterdir()) == []
    assert cli.returncode == code, stderr
    assert stderr.splitlines() == [
        f"error: interrupted by {sig.name}: child processes stopped, temporary files removed"
    ]


@pytest.mark.e2e
@pytest.mark.slow
def test_the_next_run_sweeps_what_a_killed_build_left(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    """Before: every SIGKILLed build left its directory (67 MB here) in <cache>/tmp for good."""
    _, cache = built
    proj = _project(tmp_path, greeting="killed")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    cli, tree = _start_build(proj, tmp_path / "app", cache, tmpdir)
    debris = set((cache / "tmp").iterdir())
    assert debris, "the build has no directory in the cache"
    os.kill(cli.pid, signal.SIGKILL)
    cli.communicate(timeout=60)
    left = _wait_gone(tree, 30)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "the tools outlived the killed build"
    assert debris <= set((cache / "tmp").iterdir())
    # and a killed `build`'s work directory: its lock file is free, as a dead owner's is
    workdir = Path(tempfile.mkdtemp(prefix="scratchpack-", dir=tmpdir))
    (workdir / OWNER_FILE).write_text("4194304\n")
    (workdir / "layer.tar.gz").write_bytes(b"x" * 4096)

    proc = _cli(
        "exe",
        str(proj),
        "-o",
        str(tmp_path / "app"),
        env={"SCRATCHPACK_CACHE_DIR": str(cache), "TMPDIR": str(tmpdir)},
    )
    assert proc.returncode == 0, proc.stderr
    assert list((cache / "tmp").iterdir()) == []
    assert not workdir.exists()
    out = subprocess.run([str(tmp_path / "app")], capture_output=True, text=True, check=True)
    assert out.stdout == "killed\n"


def test_only_directories_named_as_owned_tempdir_names_them_are_swept(tmp_path: Path) -> None:
    """Before: `exe` removed an empty, minute-old /tmp/scratchpack-static-* directory that a
    test had made for its outputs (a user's scratchpack-output would have gone too)."""
    from scratchpack._fs import sweep_stale  # the seam under test

    old = time.time() - 120
    theirs = [tmp_path / "scratchpack-static-eplc56c1", tmp_path / "scratchpack-output"]
    locked_name = tmp_path / "scratchpack-mine"
    for d in (*theirs, locked_name):
        d.mkdir()
    (locked_name / OWNER_FILE).write_text("4194304\n")  # free: its owner is gone
    ours = Path(tempfile.mkdtemp(prefix="scratchpack-", dir=tmp_path))  # killed before its lock
    killed = Path(tempfile.mkdtemp(prefix="scratchpack-", dir=tmp_path))
    (killed / OWNER_FILE).write_text("4194304\n")
    for d in (*theirs, locked_name, ours, killed):
        os.utime(d, (old, old))

    sweep_stale(tmp_path, "scratchpack-")

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (*theirs, locked_name)
    )


_HOLDER = """\
import os, signal, sys
from pathlib import Path
from scratchpack._fs import atomic_output, owned_tempdir

base = Path(sys.argv[1])
with owned_tempdir("scratchpack-", base) as work, atomic_output(base / "image.tar") as out:
    (work / "layer.tar.gz").write_bytes(b"x" * 4096)
    out.write(b"half an image")
    print(work, flush=True)
    if sys.argv[2] == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.read()
"""


def test_debris_of_killed_runs_is_swept_and_live_runs_are_left_alone(tmp_path: Path) -> None:
    """Temp directories and half-written outputs whose process was SIGKILLed go on the next
    run; those of a process still running stay (their lock is held)."""
    from scratchpack._fs import owned_tempdir, write_bytes_atomic  # the seam under test

    holder = tmp_path / "holder.py"
    holder.write_text(_HOLDER)

    def start(mode: str) -> tuple[subprocess.Popen[str], Path]:
        proc = subprocess.Popen(
            [sys.executable, str(holder), str(tmp_path), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        return proc, Path(proc.stdout.readline().strip())

    live, live_dir = start("live")  # first: starting sweeps, and the killed one's is debris
    killed, killed_dir = start("die")
    killed.communicate(timeout=30)
    assert killed.returncode == -signal.SIGKILL
    try:
        partial = sorted(tmp_path.glob(".image.tar.*.tmp"))
        assert killed_dir.is_dir() and live_dir.is_dir() and len(partial) == 2

        with owned_tempdir("scratchpack-", tmp_path) as mine:
            assert mine.is_dir()
        write_bytes_atomic(tmp_path / "image.tar", b"a whole image")

        assert not killed_dir.exists()
        assert live_dir.is_dir()
        assert len(sorted(tmp_path.glob(".image.tar.*.tmp"))) == 1
        assert (tmp_path / "image.tar").read_bytes() == b"a whole image"
    finally:
        live.communicate("", timeout=30)
    assert not live_dir.exists()
