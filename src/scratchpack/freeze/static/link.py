"""Links one app's executable from the runtime kit: only the built-in modules it imports.

libpython3.11.a holds every stdlib C module; the inittab (``_PyImport_Inittab`` in config.c)
decides which ones the linker pulls in. Writing our own config.c with just the app's modules
means the rest (and OpenSSL, when nothing imports ssl or hashlib) never reaches the binary.
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

from scratchpack._types import Runner
from scratchpack.errors import FreezeError
from scratchpack.freeze.static.runtime import APP_CFLAGS, APP_LDFLAGS, RuntimeKit

#: Built-ins CPython itself needs to start (Modules/Setup.bootstrap and Python/), always linked.
CORE_BUILTINS = frozenset(
    {
        "marshal",
        "_imp",
        "_ast",
        "_tokenize",
        "builtins",
        "sys",
        "gc",
        "_warnings",
        "_string",
        "posix",
        "errno",
        "pwd",
        "_io",
        "_thread",
        "_signal",
        "_codecs",
        "_weakref",
        "_abc",
        "_functools",
        "_collections",
        "_operator",
        "_sre",
        "_stat",
        "time",
        "itertools",
        "_locale",
        "atexit",
        "faulthandler",
        "_tracemalloc",
        "_symtable",
    }
)

MISSING_NOTE = (
    "scratchpack: this --runtime static executable holds only the modules the app's imports "
    "reach (a module imported by a computed name is not seen); add the missing module to "
    "[tool.scratchpack] include-modules, or build with --runtime pyinstaller"
)

_ENTRY = re.compile(r'^\s*\{"([A-Za-z0-9_]+)", (PyInit_\w+)\},\s*$')
_EXTERN = re.compile(r"^extern PyObject\* PyInit_(\w+)\(void\);\s*$")


def config_c(template: str, keep: set[str]) -> str:
    """The kit's config.c with every inittab entry (and its extern) not in ``keep`` removed."""
    out = []
    for line in template.splitlines(keepends=True):
        m = _ENTRY.match(line)
        if m and m.group(1) not in keep:
            continue
        m = _EXTERN.match(line)
        if m and m.group(1) not in keep:
            continue
        out.append(line)
    return "".join(out)


def bootstrap_code(entrypoint: str) -> str:
    """The Python the launcher runs: the entry point as a console script would call it.

    As PID 1 (a container without --init) SIGTERM's default action is ignored by the kernel, so
    an app that installs no handler would never stop on ``docker stop``: exit with 143 instead.
    """
    module, _, attr = entrypoint.partition(":")
    lines = [
        "import sys",
        "import _signal",
        "if __import__('posix').getpid() == 1 and "
        "_signal.getsignal(_signal.SIGTERM) == _signal.SIG_DFL:",
        "    def _scratchpack_sigterm(signum, frame):",
        "        raise SystemExit(128 + signum)",
        "    _signal.signal(_signal.SIGTERM, _scratchpack_sigterm)",
    ]
    if attr:
        head, _, rest = attr.partition(".")
        body = [
            f"from {module} import {head} as _scratchpack_entry",
            "sys.exit(_scratchpack_entry" + (f".{rest}" if rest else "") + "())",
        ]
    else:
        body = ["import runpy", f"runpy._run_module_as_main({module!r}, alter_argv=False)"]
    lines += [
        "try:",
        *(f"    {line}" for line in body),
        "except ModuleNotFoundError as _scratchpack_err:",
        f"    _scratchpack_err.add_note({MISSING_NOTE!r})",
        "    raise",
    ]
    return "\n".join(lines) + "\n"


def _c_string(text: str) -> str:
    """A C definition of ``text`` as UTF-8 bytes: no escaping rules to get wrong."""
    data = text.encode() + b"\0"
    rows = (", ".join(str(b) for b in data[i : i + 24]) for i in range(0, len(data), 24))
    return "const char scratchpack_bootstrap[] = {\n" + ",\n".join(rows) + "\n};\n"


def link_executable(
    kit: RuntimeKit,
    builtins: set[str],
    entrypoint: str,
    out: Path,
    workdir: Path,
    *,
    runner: Runner,
) -> None:
    """Compile the launcher and link ``out`` with the wanted built-ins the kit has."""
    keep = (builtins | CORE_BUILTINS) & set(kit.builtins)
    (workdir / "config.c").write_text(config_c(kit.config_c.read_text(), keep))
    (workdir / "bootstrap.c").write_text(_c_string(bootstrap_code(entrypoint)))
    launcher = importlib.resources.files("scratchpack.freeze.static").joinpath("launcher.c")
    (workdir / "launcher.c").write_text(launcher.read_text())
    env = kit.toolchain.environ()
    env["SCRATCHPACK_PREFIX_MAP"] = f"{workdir}=/app"
    cflags = [*APP_CFLAGS, f"-I{kit.include}"]
    objects = []
    for name in ("launcher", "config", "bootstrap"):
        obj = workdir / f"{name}.o"
        proc = runner(
            ["zcc", *cflags, "-c", str(workdir / f"{name}.c"), "-o", str(obj)],
            cwd=workdir,
            env=env,
        )
        if proc.returncode != 0:
            raise FreezeError(
                f"compiling the static launcher ({name}.c) failed",
                tool="zig cc",
                output=proc.stdout,
                hint=f"delete {kit.root} to rebuild the runtime; if it persists, report a bug",
            )
        objects.append(str(obj))
    libs = [str(kit.libdir / "libpython3.11.a")]
    if keep & {"_ssl", "_hashlib"}:
        libs += [str(kit.libdir / "libssl.a"), str(kit.libdir / "libcrypto.a")]
    libs += [str(kit.libdir / "libz.a"), "-lm"]
    proc = runner(
        ["zcc", *APP_CFLAGS, *APP_LDFLAGS, "-o", str(out), *objects, *libs],
        cwd=workdir,
        env=env,
    )
    if proc.returncode != 0 or not out.is_file():
        raise FreezeError(
            "linking the static executable failed",
            tool="zig cc",
            output=proc.stdout,
            hint=f"delete {kit.root} to rebuild the runtime; if it persists, report a bug",
        )
