"""The isolated, cached build environment: a venv made from the chosen Python with the route's
pinned tools and the project's dependencies, never the user's environment.

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
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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
    """A ready build venv; ``environ`` is what every tool runs with."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def bindir(self) -> Path:
        return self.root / "bin"

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Host environment minus anything that would leak the user's Python into the build."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "PIP_REQUIRE", "CONDA", "__PYVENV"))
            and k not in {"VIRTUAL_ENV", "PYINSTALLER_CONFIG_DIR"}
        }
        env["PATH"] = f"{self.bindir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env["VIRTUAL_ENV"] = str(self.root)
        env["PYTHONHASHSEED"] = "0"
        env["PYTHONNOUSERSITE"] = "1"
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["PIP_NO_INPUT"] = "1"
        env["PYINSTALLER_CONFIG_DIR"] = str(self.root / ".pyinstaller")
        if extra:
            env.update(extra)
        return env

    def run(
        self, runner: Runner, args: list[str], *, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return runner([str(self.python), *args], cwd=cwd, env=self.environ())


def site_packages(env: BuildEnv, *, runner: Runner) -> list[str]:
    """The venv's purelib and platlib directories."""
    proc = env.run(runner, ["-I", str(script_path("site_packages"))])
    if proc.returncode != 0:
        raise FreezeError("cannot locate the build venv's site-packages", output=proc.stdout)
    return [str(p) for p in json.loads(proc.stdout.strip().splitlines()[-1])]


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
    """A locked venv keyed on Python + the route's tool pins + declared dependencies.

    Yields (env, fresh). With ``reuse`` false the venv is rebuilt from scratch. A venv is marked
    complete only after its tools and dependencies installed, so a failed build never leaves a
    half-made env for the next run. Each route installs only its own tools, so each route has
    its own venvs.
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
            proc = runner([str(py.executable), "-m", "venv", str(root)], env=env.environ())
            if proc.returncode != 0:
                raise FreezeError(
                    f"cannot create a venv with {py.executable}",
                    tool="venv",
                    output=proc.stdout,
                    hint="on Debian install python3-venv",
                )
        with step(f"installing {tools.label}"):
            proc = env.run(runner, ["-m", "pip", "install", "-q", *tools.pins])
            if proc.returncode != 0:
                raise _pip_error("installing the build tools", proc, "check that PyPI is reachable")
        yield env, True


def mark_ready(env: BuildEnv) -> None:
    (env.root / ".scratchpack-ready").write_text("ok\n")


def install_project(env: BuildEnv, stage: Path, *, with_deps: bool, runner: Runner) -> None:
    """pip install the staged project (and its dependencies when the venv is fresh)."""
    args = ["-m", "pip", "install", "-q", "--no-warn-script-location"]
    if not with_deps:
        args += ["--no-deps", "--force-reinstall"]
    with step(
        "installing the project and its dependencies" if with_deps else "installing the project"
    ):
        proc = env.run(runner, [*args, str(stage)], cwd=stage.parent)
    if proc.returncode != 0:
        raise _pip_error(
            "installing the project and its dependencies into the build environment",
            proc,
            "check the [project] dependencies in pyproject.toml (names, versions) and that "
            "each one installs with pip",
        )


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
