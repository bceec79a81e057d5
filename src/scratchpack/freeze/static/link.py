"""Links one app's executable from the runtime kit: only the built-in modules it imports.

libpython3.11.a holds every stdlib C module; the inittab (``_PyImport_Inittab`` in config.c)
decides which ones the linker pulls in. Writing our own config.c with just the app's modules
means the rest (and OpenSSL, when nothing imports ssl or hashlib) never reaches the binary.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from scratchpack._types import Runner
from scratchpack.errors import FreezeError
from scratchpack.freeze.static.kit import (
    APP_CFLAGS,
    APP_LDFLAGS,
    AST_CONVERSIONS,
    MODULE_ARCHIVES,
    Kit,
)

if TYPE_CHECKING:
    from scratchpack.freeze.static.native import NativeLink

#: Built-ins CPython itself needs to start (Modules/Setup.bootstrap and Python/), always linked.
#: Not ``_ast``, ``_tokenize``, ``_symtable`` or ``_tracemalloc``: only their Python modules
#: (ast, tokenize, symtable, tracemalloc) import them, so the scan links them with those
#: (``-X tracemalloc`` starts tracing from C, without the module).
CORE_BUILTINS = frozenset(
    {
        "marshal",
        "_imp",
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
    }
)

MISSING_NOTE = (
    "scratchpack: this --runtime static executable holds only the modules the app's imports "
    "reach (a module imported by a computed name is not seen); add the missing module to "
    "[tool.scratchpack] include-modules, or build with --runtime pyinstaller"
)

#: Printed when the app exits non-zero after imports failed that it may have caught itself
#: (``except ImportError: sys.exit(...)``); ``{status}`` and ``{names}`` are filled in at exit.
EXIT_NOTE = (
    "scratchpack: exit status {status}; these imports failed in this --runtime static "
    "executable, which holds only the modules found at build time: {names}. If the app needs "
    "one of them, add it to [tool.scratchpack] include-modules, or build with --runtime "
    "pyinstaller"
)

#: How many missed module names the exit note lists (the latest first).
EXIT_NOTE_NAMES = 8

#: Top-level names the stdlib probes inside try/except, never worth naming in the exit note:
#: other platforms' modules (Windows, Jython, VMS), and ``encodings``, whose search function
#: imports ``encodings.<codec>`` for every codec lookup and turns a miss into the LookupError
#: the caller handles (webhello's "no such host" for an -addr the idna codec would reject).
PROBED = (
    "encodings",
    "org",
    "java",
    "msvcrt",
    "nt",
    "winreg",
    "_winapi",
    "_overlapped",
    "vms_lib",
)

#: The libc calls selfdir.c answers for paths under the executable's own (``<exe>/pkg/data``),
#: wrapped at link time so libpython, OpenSSL and the built-ins all reach them. On musl 1.2.5
#: these are the names they call (no ``open64``/``stat64`` symbols; ``fopen`` opens with a
#: syscall of its own, so it is wrapped too).
SELFDIR_WRAPS = tuple(
    f"-Wl,--wrap={name}"
    for name in (
        *("open", "openat", "fopen", "stat", "lstat", "fstatat", "access", "faccessat"),
        *("opendir", "readdir", "closedir"),
    )
)

#: launcher.c's calloc: large blocks come zeroed from the allocator's fresh mmap, so their
#: pages stay out of memory until written (zig's libc memsets them all).
ALLOC_WRAPS = ("-Wl,--wrap=calloc",)

#: launcher.c's malloc and free keeping the last few freed blocks of 32 KiB to 1 MiB, for an
#: app whose start reads members that large (``large_start_reads``): reading each one into a
#: fresh mapping cost FastAPI ~1,100 page faults, 4 % of its start. Other apps (webhello has no
#: such member) link as before: the kept blocks would only add to their idle memory.
KEEP_LARGE_BLOCKS = ("-DSCRATCHPACK_KEEP_LARGE_BLOCKS",)
LARGE_BLOCK_WRAPS = ("-Wl,--wrap=malloc", "-Wl,--wrap=free")
#: The allocator's largest block served from its own heap; anything larger is mapped afresh.
LARGE_BLOCK = 32 * 1024


def large_start_reads(zip_path: Path) -> bool:
    """Whether the app's start may read a member over LARGE_BLOCK into a block of its own size:
    a stored member, or, when no bytecode is stored (compress-start-modules deflates it all),
    a module whose inflated size is over it (zipdir.c inflates into a block of that size)."""
    with zipfile.ZipFile(zip_path) as archive:
        members = archive.infolist()
    pyc = [i for i in members if i.filename.endswith(".pyc")]
    all_deflated = not any(i.compress_type == zipfile.ZIP_STORED for i in pyc)
    return any(
        i.file_size > LARGE_BLOCK
        and (
            i.compress_type == zipfile.ZIP_STORED or (all_deflated and i.filename.endswith(".pyc"))
        )
        for i in members
    )


#: The functions an app's start and first requests run (hot_text.txt, made by
#: bench/hot_text.py), which the link gathers ahead of the rest of the code, in their order.
#: Scattered among the 3.3 MB of code, they made ~1.9 MB of it resident: every page fault maps
#: the 64 KiB around it, cold neighbours too. Gathered (0.65 MB), webhello's idle resident code
#: is 0.76 MB. Functions an app runs that are not listed stay where they were.
HOT_TEXT = "hot_text.txt"
#: A name the list may hold (bench/hot_text.py keeps only these from the symbol table).
FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def hot_text_names(text: str) -> list[str]:
    """The names of a hot-text list: one per line, ``#`` comments and blank lines skipped."""
    names = [line.strip() for line in text.splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    for name in names:
        if not FUNCTION_NAME.fullmatch(name):
            raise FreezeError(
                f"{HOT_TEXT}: not a C function name: {name!r}",
                hint="this is a bug in scratchpack's static runtime; please report it",
            )
    return list(dict.fromkeys(names))


def hot_text_script(names: list[str]) -> str:
    """An lld script that adds one output section ahead of ``.text`` holding these functions
    (the kit compiles with ``-ffunction-sections``: function f is section ``.text.f``), in
    this order; INSERT keeps the default layout for everything else."""
    patterns = "".join(f"    *(.text.{name})\n" for name in names)
    return f"SECTIONS {{\n  .text.hot : {{\n{patterns}  }}\n}} INSERT BEFORE .text;\n"


_ENTRY = re.compile(r'^\s*\{"([A-Za-z0-9_]+)", (PyInit_\w+)\},\s*$')
_EXTERN = re.compile(r"^extern PyObject\* PyInit_(\w+)\(void\);\s*$")


def config_c(template: str, keep: set[str], extra: dict[str, str] | None = None) -> str:
    """The kit's config.c with every inittab entry (and its extern) not in ``keep`` removed,
    the AST object conversions' pointer with ``_ast``, and the ``extra`` built-ins (module ->
    init function) added before the sentinel."""
    out = []
    for line in template.splitlines(keepends=True):
        if AST_CONVERSIONS in line and "_ast" not in keep:
            continue  # compile()'s AST objects come with the _ast module (kit.AST_EDITS)
        if extra and line.strip() == "/* Sentinel */":
            out += [f'    {{"{m}", {f}}},\n' for m, f in sorted(extra.items())]
        if extra and line.startswith("struct _inittab _PyImport_Inittab[]"):
            out += [f"extern PyObject* {f}(void);\n" for _m, f in sorted(extra.items())]
        m = _ENTRY.match(line)
        if m and m.group(1) not in keep:
            continue
        m = _EXTERN.match(line)
        if m and m.group(1) not in keep:
            continue
        out.append(line)
    return "".join(out)


#: The run-time half of the bootstrap, after the SIGTERM part; ``{body}`` runs the entry point.
#: - ``--multiprocessing-fork`` first: multiprocessing's spawn command line when ``sys.frozen``
#:   is set (the launcher itself answers the unfrozen ``-c`` shapes by running as Python).
#: - A finder LAST on ``sys.meta_path`` is asked only for modules no other finder has: it
#:   remembers them, so a non-zero exit can name them even when the app caught the
#:   ModuleNotFoundError (``except ImportError: sys.exit(...)``). Probing optional modules is
#:   normal, so nothing is printed on a zero exit, nor on a signal's (128 and up: SIGTERM's
#:   143 is how a server stops).
_RUN = """\
if sys.argv[1:2] == ['--multiprocessing-fork']:
    from multiprocessing.spawn import freeze_support as _scratchpack_mp
    _scratchpack_mp()
class _ScratchpackMissed:
    names = []
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name not in cls.names:
            cls.names.append(name)
        return None
sys.meta_path.append(_ScratchpackMissed)
def _scratchpack_note(status):
    missed = [n for n in reversed(_ScratchpackMissed.names)
              if n not in sys.modules and n.partition('.')[0] not in {platforms!r}]
    if not missed or not 0 < status < 128:
        return None
    more = len(missed) - {limit}
    shown = ', '.join(missed[:{limit}]) + (f' and {{more}} more' if more > 0 else '')
    return {note!r}.format(status=status, names=shown)
try:
{body}
except SystemExit as _scratchpack_exit:
    _scratchpack_code = _scratchpack_exit.code
    if _scratchpack_code is not None and not isinstance(_scratchpack_code, int):
        print(_scratchpack_code, file=sys.stderr)
        _scratchpack_exit.code = _scratchpack_code = 1
    _scratchpack_text = _scratchpack_note(_scratchpack_code or 0)
    if _scratchpack_text:
        print(_scratchpack_text, file=sys.stderr, flush=True)
    raise
except ModuleNotFoundError as _scratchpack_err:
    _scratchpack_err.add_note({missing!r})
    raise
except Exception as _scratchpack_err:
    _scratchpack_text = _scratchpack_note(1)
    if _scratchpack_text:
        _scratchpack_err.add_note(_scratchpack_text)
    raise
"""


#: The Python half of selfdir.c, run first. zipimport finds its archive by stat()-ing up from
#: ``<exe>/pkg`` to a regular file; once selfdir.c shows ``<exe>/pkg`` as a directory, this path
#: hook answers those paths with the importer zipimport would have made (the archive's, with
#: ``pkg/`` as prefix). Two stdlib modules are patched as they are first imported:
#: - ``importlib.resources.as_file()`` on a member of the executable's zip gives the member's own
#:   path (selfdir.c serves it) instead of copying it to a temporary file (no writable /tmp);
#: - ``importlib.metadata`` lists the executable's sys.path entry as the directory ``<exe>/``
#:   (selfdir.c lists the zip's top level in C) where it would open it with ``zipfile.Path``:
#:   that parses the whole central directory in Python, ~15 ms of FastAPI's start at the
#:   first ``entry_points()`` (pydantic's plugin loader calls it). The distributions are then the
#:   ``PathDistribution`` of ``<exe>/<name>.dist-info`` a venv gives for site-packages.
#: ``_FORWARD_REFS`` adds a third patch, for apps that bundle ``typing``.
_SELFDIR = """\
def _scratchpack_selfdir(exe=sys.executable):
    import zipimport
    base = zipimport.zipimporter
    def hook(path):
        if not path.startswith(exe + '/'):
            return base(path)
        importer = base(exe)
        prefix = '/'.join(p for p in path[len(exe) + 1:].split('/') if p not in ('', '.'))
        importer.prefix = prefix + '/' if prefix else ''
        return importer
    sys.path_hooks[:] = [hook if h is base else h for h in sys.path_hooks]
    def resources(module):
        copy = module.as_file.dispatch(object)
        def as_file(path):
            if getattr(getattr(path, 'root', None), 'filename', None) == exe:
                return module.contextlib.nullcontext(module.pathlib.Path(exe, path.at))
            return copy(path)
        module.as_file.register(object, as_file)
    def metadata(module):
        children = module.FastPath.children
        def listed(self):
            if self.root == exe:
                with module.suppress(OSError):
                    return module.os.listdir(exe + '/')
            return children(self)
        module.FastPath.children = listed
    patches = {'importlib.resources._common': resources, 'importlib.metadata': metadata}
# forward refs
    class Loader:
        def __init__(self, loader, patch):
            self.loader = loader
            self.patch = patch
        def create_module(self, spec):
            return None
        def exec_module(self, module):
            self.loader.exec_module(module)
            self.patch(module)
    class Patches:
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            patch = patches.get(name)
            if patch is None:
                return None
            for finder in sys.meta_path:
                spec = None if finder is cls else finder.find_spec(name, path, target)
                if spec is not None:
                    spec.loader = Loader(spec.loader, patch)
                    return spec
            return None
    sys.meta_path.insert(0, Patches)
_scratchpack_selfdir()
"""


#: ``typing.ForwardRef("int")`` compiles its string at every construction (typing.py's only
#: ``compile()`` call), and annotations under ``from __future__ import annotations`` make one per
#: annotation: FastAPI's import compiles 869 of them, only 263 distinct (``bool`` 138 times,
#: ``str`` 109), each a full parser and compiler run. Given a ``compile`` of its own, typing
#: reuses the code object of a string it compiled before (code objects are immutable; a
#: ForwardRef only evaluates its code). Up to FORWARD_REFS_KEPT strings are kept; the ``compile``
#: audit event then fires once per distinct string. Linked only when the app bundles typing
#: (its C half, the ``_typing`` built-in, is then linked), so other executables do not carry it.
_FORWARD_REFS = """\
    def forward_refs(module, compile=compile, FORWARD=('<string>', 'eval')):
        codes = {{}}
        def compiled(source, filename, mode, *args, **kwargs):
            if args or kwargs or type(source) is not str or (filename, mode) != FORWARD:
                return compile(source, filename, mode, *args, **kwargs)
            code = codes.get(source)
            if code is None:
                code = compile(source, filename, mode)
                if len(codes) < {kept}:
                    codes[source] = code
            return code
        module.compile = compiled
    patches['typing'] = forward_refs
"""
FORWARD_REFS_KEPT = 4096


def archives(keep: set[str]) -> list[str]:
    """The kit's static libraries the kept built-ins need, after libpython3.11.a, in link order.

    Only these reach the link line, so an app that imports none of those modules links exactly
    as before (and an unused archive could not add bytes anyway: nothing would reference it).
    """
    out: list[str] = []
    if keep & {"_ssl", "_hashlib"}:
        out += ["libssl.a", "libcrypto.a"]
    for module, libs in MODULE_ARCHIVES.items():
        if module in keep:
            out += [lib for lib in libs if lib not in out]
    return [*out, "libz.a"]


#: The cyclic GC's generation-0 threshold while the entry point's module is imported (CPython's
#: is 700): importing an app allocates tens of thousands of long-lived objects (FastAPI's: ~40,000
#: in ~100 young collections, 6-8 % of its start) that the young generations scan again and again
#: only to promote them. After the import they all go to the oldest generation unscanned
#: (``gc.freeze()`` then ``gc.unfreeze()``), where the next full collection sees them as it would
#: have. High, not off: an import that never returns (a server started at module level) still
#: gets young collections, every 100,000 net allocations. The app's own threshold, or its own
#: frozen objects, if it set any while importing, are left alone. (An import that fails ends the
#: run, so no try/finally: it would hold the restoring code twice.)
GC_DEFERRED = 100_000


def bootstrap_code(entrypoint: str) -> str:
    """The Python the launcher runs in ``__main__`` after ``setup_code()``'s: the entry point as
    a console script would call it.

    As PID 1 (a container without --init) SIGTERM's default action is ignored by the kernel, so
    an app that installs no handler would never stop on ``docker stop``: exit with 143 instead.
    A ``module:attr`` entry point's module is imported with the cyclic GC deferred
    (``GC_DEFERRED``); a bare module runs through runpy, import and run in one.
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
            "import gc as _scratchpack_gc",
            "_scratchpack_threshold = _scratchpack_gc.get_threshold()",
            f"_scratchpack_gc.set_threshold({GC_DEFERRED})",
            f"from {module} import {head} as _scratchpack_entry",
            f"if _scratchpack_gc.get_threshold()[0] == {GC_DEFERRED}:",
            "    if not _scratchpack_gc.get_freeze_count():",
            "        _scratchpack_gc.freeze()",
            "        _scratchpack_gc.unfreeze()",
            "    _scratchpack_gc.set_threshold(*_scratchpack_threshold)",
            "sys.exit(_scratchpack_entry" + (f".{rest}" if rest else "") + "())",
        ]
    else:
        body = ["import runpy", f"runpy._run_module_as_main({module!r}, alter_argv=False)"]
    run = _RUN.format(
        body="\n".join(f"    {line}" for line in body),
        limit=EXIT_NOTE_NAMES,
        platforms=tuple(sorted(PROBED)),  # a frozenset repr would vary per run
        note=EXIT_NOTE,
        missing=MISSING_NOTE,
    )
    return "\n".join(lines) + "\n" + run


def setup_code(prelude: str = "", *, typing: bool = False) -> str:
    """What the executable installs before anything else runs, as the app and as Python
    (SCRATCHPACK_PYTHON=1, and multiprocessing's spawn and forkserver children, which import the
    app's modules): the ``<exe>/`` path hook and patches, and ``prelude`` (the finder of the
    bundled extension modules; without it a spawned child of an app with compiled dependencies
    cannot import them). One code object for both, so the executable holds it once.
    ``typing``: the app bundles typing, whose forward references then reuse their code."""
    refs = _FORWARD_REFS.format(kept=FORWARD_REFS_KEPT) if typing else ""
    return "import sys\n" + _SELFDIR.replace("# forward refs\n", refs) + prelude


#: zipimporter.get_filename for modules of the executable's own zip (zipdir.c installs it before
#: the first zip import, in zipimport's namespace): the path of the first entry
#: ``_get_module_code()`` would try, when that is a .pyc with no .py beside it (so no source
#: timestamp can reject it). CPython 3.11's own get_filename reads and unmarshals the module's
#: code only to return its path, and find_spec() asks it for every module; anything else goes
#: to the original, which loads the code.
#: And ``_unmarshal_code`` gets the member's bytes as a memoryview: it unmarshals ``data[16:]``,
#: a copy of the whole .pyc per module where importlib's own loader slices a memoryview (FastAPI
#: imports 5 MB of .pyc over 32 KiB, which zig's malloc maps and unmaps per block: ~1,200 page
#: faults).
ZIPIMPORT_PATCH = """\
def _scratchpack_get_filename(original):
    import sys
    def get_filename(self, fullname):
        if self.archive == sys.executable:
            path = _get_module_path(self, fullname)
            for suffix, isbytecode, ispackage in _zip_searchorder:
                entry = self._files.get(path + suffix)
                if entry is not None:
                    if isbytecode and (path + suffix)[:-1] not in self._files:
                        return entry[0]
                    break
        return original(self, fullname)
    get_filename.__doc__ = original.__doc__
    get_filename.__qualname__ = original.__qualname__
    return get_filename
zipimporter.get_filename = _scratchpack_get_filename(zipimporter.get_filename)
def _scratchpack_unmarshal(original):
    def unmarshal(self, pathname, fullpath, fullname, data):
        return original(self, pathname, fullpath, fullname, memoryview(data))
    return unmarshal
_unmarshal_code = _scratchpack_unmarshal(_unmarshal_code)
del _scratchpack_get_filename, _scratchpack_unmarshal
"""

#: The file names the launcher's code objects carry, as tracebacks show them (in the tuple's
#: order). Names in angle brackets: linecache does not look for source files by them.
CODE_NAMES = ("<scratchpack zipimport patch>", "<scratchpack entry point>", "<scratchpack setup>")

#: Run by the kit's interpreter: compile the [source, file name] pairs in argv[1] (JSON) as the
#: launcher would run them and write the tuple of code objects, marshalled, to argv[2].
_COMPILE = (
    "import json, marshal, sys\n"
    "with open(sys.argv[1], encoding='utf-8') as f:\n"
    "    sources = json.load(f)\n"
    "codes = tuple(compile(s, n, 'exec', dont_inherit=True) for s, n in sources)\n"
    "with open(sys.argv[2], 'wb') as f:\n"
    "    f.write(marshal.dumps(codes))\n"
)


def compiled_bootstrap(
    kit: Kit, bootstrap: str, setup: str, workdir: Path, *, runner: Runner
) -> bytes:
    """The launcher's Python, compiled and marshalled by the kit's interpreter at build time:
    the tuple (``ZIPIMPORT_PATCH``'s code, ``bootstrap``'s code, ``setup``'s code (run first,
    as the app and as Python)).

    Parsing and compiling them at every start (the parser's and compiler's first use in the
    process) cost ~1.5 ms of a webhello start's ~11 ms of CPU; unmarshalling the code objects
    costs microseconds. The kit's interpreter makes the bytecode the executable's own
    interpreter runs (same sources, as for the bundle's .pyc).
    """
    src, out = workdir / "bootstrap.json", workdir / "bootstrap.marshal"
    sources = zip((ZIPIMPORT_PATCH, bootstrap, setup), CODE_NAMES, strict=True)
    src.write_text(json.dumps(list(sources)), encoding="utf-8")
    python = kit.build_python or kit.python
    argv = [str(python), "-I", "-S", "-X", "no_debug_ranges", "-c", _COMPILE, str(src), str(out)]
    proc = runner(argv, cwd=workdir)
    if proc.returncode != 0 or not out.is_file():
        raise FreezeError(
            "compiling the static launcher's bootstrap failed",
            tool="static python",
            output=proc.stdout,
            hint=f"delete {kit.root} to rebuild the kit; if it persists, report a bug",
        )
    return out.read_bytes()


def _c_bytes(data: bytes) -> str:
    """C definitions of the marshalled code and its size (the launcher unmarshals it)."""
    rows = (", ".join(str(b) for b in data[i : i + 24]) for i in range(0, len(data), 24))
    return (
        "#include <stddef.h>\n"
        "const unsigned char scratchpack_bootstrap[] = {\n"
        + ",\n".join(rows)
        + f"\n}};\nconst size_t scratchpack_bootstrap_size = {len(data)};\n"
    )


def link_executable(
    kit: Kit,
    builtins: set[str],
    entrypoint: str,
    out: Path,
    workdir: Path,
    *,
    runner: Runner,
    native: NativeLink | None = None,
    keep_large_blocks: bool = False,
) -> None:
    """Compile the launcher and link ``out`` with the wanted built-ins the kit has (and, for
    bundled extension modules, ``native``'s loader, symbol table, built-in and finder;
    ``keep_large_blocks``: launcher.c's malloc and free, KEEP_LARGE_BLOCKS)."""
    # extension modules may compile to AST objects from C (Py_CompileStringObject with
    # PyCF_ONLY_AST), which the bundle's scan of Python code cannot see
    ast = {"_ast"} if native is not None else set()
    keep = (builtins | CORE_BUILTINS | ast) & set(kit.builtins)
    extra = dict(native.inittab) if native else None
    (workdir / "config.c").write_text(config_c(kit.config_c.read_text(), keep, extra))
    prelude = native.bootstrap if native else ""
    boot = compiled_bootstrap(
        kit,
        bootstrap_code(entrypoint),
        setup_code(prelude, typing="_typing" in keep),
        workdir,
        runner=runner,
    )
    (workdir / "bootstrap.c").write_text(_c_bytes(boot))
    sources = importlib.resources.files("scratchpack.freeze.static")
    for name in ("launcher.c", "selfdir.c", "zipdir.c"):
        (workdir / name).write_text(sources.joinpath(name).read_text())
    hot = workdir / "hot.ld"
    hot.write_text(hot_text_script(hot_text_names(sources.joinpath(HOT_TEXT).read_text())))
    for name, text in native.sources.items() if native else ():
        (workdir / name).write_text(text)
    env = kit.toolchain.environ()
    env["SCRATCHPACK_PREFIX_MAP"] = f"{workdir}=/app"
    cflags = [*APP_CFLAGS, f"-I{kit.include}"]
    objects = []
    units = ["launcher", "selfdir", "zipdir", "config", "bootstrap"]
    units += [name.removesuffix(".c") for name in (native.sources if native else ())]
    for name in units:
        obj = workdir / f"{name}.o"
        defines = KEEP_LARGE_BLOCKS if keep_large_blocks and name == "launcher" else ()
        proc = runner(
            ["zcc", *cflags, *defines, "-c", str(workdir / f"{name}.c"), "-o", str(obj)],
            cwd=workdir,
            env=env,
        )
        if proc.returncode != 0:
            raise FreezeError(
                f"compiling the static launcher ({name}.c) failed",
                tool="zig cc",
                output=proc.stdout,
                hint=f"delete {kit.root} to rebuild the kit; if it persists, report a bug",
            )
        objects.append(str(obj))
    libs = [str(kit.libdir / name) for name in ("libpython3.11.a", *archives(keep))] + ["-lm"]
    proc = runner(
        [
            "zcc",
            *APP_CFLAGS,
            *APP_LDFLAGS,
            *SELFDIR_WRAPS,
            *ALLOC_WRAPS,
            *(LARGE_BLOCK_WRAPS if keep_large_blocks else ()),
            f"-Wl,-T,{hot}",
            "-o",
            str(out),
            *objects,
            *libs,
        ],
        cwd=workdir,
        env=env,
    )
    missing = sorted(set(re.findall(r"undefined symbol: (\S+)", proc.stdout))) if native else []
    if proc.returncode != 0 and missing:
        raise FreezeError(
            "the bundled extension modules import symbols this static executable does not "
            f"have: {', '.join(missing)}",
            hint="these compiled extensions need the pyinstaller runtime",
            remedy="static-c-extension",
        )
    if proc.returncode != 0 or not out.is_file():
        raise FreezeError(
            "linking the static executable failed",
            tool="zig cc",
            output=proc.stdout,
            hint="this is a bug in scratchpack's static runtime; please report it with this output",
        )
