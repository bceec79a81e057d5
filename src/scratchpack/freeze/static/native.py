"""Compiled extensions on the static route: musllinux wheels, checked and linked for elfload.c.

Why musllinux wheels: the executable is linked against musl, so the extension modules PyPI
builds for musl (with their own ``<dist>.libs/``) are the ones it can run; a glibc (manylinux)
build needs glibc's loader and is refused. Only the distributions that ship compiled files in
the build venv are fetched again for musl, at the exact version the venv resolved, so a
pure-Python dependency (an sdist even) is bundled exactly as before.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scratchpack._ctx import step
from scratchpack._types import Runner
from scratchpack.freeze.env import BuildEnv
from scratchpack.freeze.spec import Component
from scratchpack.freeze.static.elf import EM_X86_64, LoadPlan, SharedObject, plan, read_object

#: The x86-64 kit's pip platform filters (Target.musllinux gives every target's).
PLATFORMS = ("musllinux_1_1_x86_64", "musllinux_1_2_x86_64")


def pip_target(platforms: Sequence[str] = PLATFORMS) -> tuple[str, ...]:
    """pip's filters for musllinux CPython 3.11 wheels of these platform tags."""
    return (
        "--only-binary=:all:",
        *(f"--platform={p}" for p in platforms),
        "--python-version=3.11",
        "--implementation=cp",
        "--abi=cp311",
    )


PIP_TARGET = pip_target()


def extension_suffix(machine: str = "x86_64") -> str:
    """What musllinux CPython 3.11 names its extension modules (the kit's own says linux-gnu)."""
    return f".cpython-311-{machine}-linux-musl.so"


EXTENSION_SUFFIX = extension_suffix()

_COMPILED = re.compile(r"\.so(\.[0-9.]+)?$|\.abi3\.so$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True, slots=True)
class Wheel:
    """A musllinux wheel put into the executable, for the SBOM and the build log."""

    name: str
    version: str
    tag: str  # e.g. cp311-cp311-musllinux_1_2_x86_64
    sha256: str
    path: Path


def installed_files(site_dirs: Sequence[str]) -> Iterator[tuple[str, str, str]]:
    """(site dir, distribution name, file as its RECORD names it) for every installed file."""
    for site in site_dirs:
        for info in sorted(Path(site).glob("*.dist-info")):
            record = info / "RECORD"
            if not record.is_file():
                continue
            name = info.name.removesuffix(".dist-info").rsplit("-", 1)[0]
            with record.open(newline="") as f:
                for row in csv.reader(f):
                    if row:
                        yield site, name, row[0]


def compiled_distributions(site_dirs: Sequence[str]) -> dict[str, str]:
    """Distribution name -> one compiled file it installed (from each dist-info RECORD)."""
    out: dict[str, str] = {}
    for _site, name, file in installed_files(site_dirs):
        if _COMPILED.search(file):
            out.setdefault(name, file)
    return out


def _cached(cache: Path, name: str, version: str, platforms: Sequence[str]) -> Path | None:
    for whl in sorted(cache.glob("*.whl")):
        parts = whl.name[:-4].split("-")
        if (
            len(parts) >= 5
            and canonical(parts[0]) == canonical(name)
            and parts[1] == version
            and any(p in parts[-1].split(".") for p in platforms)
        ):
            return whl
    return None


def fetch_wheels(
    env: BuildEnv,
    wanted: Mapping[str, str],
    cache: Path,
    *,
    runner: Runner,
    platforms: Sequence[str] = PLATFORMS,
) -> tuple[list[Wheel], dict[str, str]]:
    """The musllinux wheel (of these platform tags) of each ``name -> version``, from ``cache``
    or downloaded into it by pip. Returns (wheels, name -> why none is usable)."""
    cache.mkdir(parents=True, exist_ok=True)
    wheels: list[Wheel] = []
    missing: dict[str, str] = {}
    for name, version in sorted(wanted.items()):
        found = _cached(cache, name, version, platforms)
        if found is None:
            with step(f"fetching the musllinux wheel of {name} {version}"):
                proc = env.run(
                    runner,
                    [
                        "-m",
                        "pip",
                        "download",
                        "-q",
                        "--no-deps",
                        *pip_target(platforms),
                        "-d",
                        str(cache),
                        f"{name}=={version}",
                    ],
                )
            found = _cached(cache, name, version, platforms)
            if proc.returncode != 0 or found is None:
                last = [x for x in proc.stdout.splitlines() if x.strip().startswith("ERROR")]
                missing[name] = last[0].strip() if last else f"pip exit {proc.returncode}"
                continue
        digest = hashlib.sha256(found.read_bytes()).hexdigest()
        tag = "-".join(found.name[:-4].split("-")[-3:])
        wheels.append(Wheel(name, version, tag, digest, found))
    return wheels, missing


def unpack(wheels: Iterable[Wheel], dest: Path) -> None:
    """Install the wheels' files into ``dest`` as pip would (``.data/purelib|platlib`` merged)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel.path) as zf:
            for info in zf.infolist():
                name = info.filename
                parts = name.split("/")
                if ".." in parts or name.startswith("/") or info.is_dir():
                    continue
                if parts[0].endswith(".data"):
                    if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                        continue
                    parts = parts[2:]
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))


def check_objects(root: Path, members: Iterable[str], machine: int = EM_X86_64) -> LoadPlan:
    """Read every bundled ELF object (extensions and their libraries, for ``machine``) and plan
    their loading; raises naming the object and the feature the loader does not handle."""
    objects: dict[str, SharedObject] = {}
    for member in sorted(set(members)):
        objects[member] = read_object((root / member).read_bytes(), member, machine)
    return plan(objects)


def _record_files(record: Path) -> list[str]:
    """The paths a dist-info RECORD lists."""
    return [row[0] for row in csv.reader(record.read_text().splitlines()) if row]


def library_members(root: Path, extensions: Iterable[str]) -> list[str]:
    """The ``<dist>.libs/`` members _bundle.py added beside these extension members."""
    out: set[str] = set()
    for ext in extensions:
        for info in root.glob("*.dist-info"):
            record = info / "RECORD"
            if not record.is_file():
                continue
            files = _record_files(record)
            if ext in files:
                out.update(
                    f for f in files if f.split("/")[0].endswith(".libs") and f.count("/") == 1
                )
    return sorted(x for x in out if ".so" in x)


def library_components(root: Path, members: Iterable[str]) -> tuple[Component, ...]:
    """SBOM entries for the wheels' bundled libraries: file name, its wheel's version, hash."""
    owners: dict[str, str] = {}
    for info in sorted(root.glob("*.dist-info")):
        record = info / "RECORD"
        if record.is_file():
            version = info.name.removesuffix(".dist-info").rsplit("-", 1)[-1]
            owners.update((f, version) for f in _record_files(record))
    out = []
    for member in sorted(members):
        base = member.rsplit("/", 1)[-1]
        version = owners.get(member, "")
        digest = hashlib.sha256((root / member).read_bytes()).hexdigest()
        out.append(
            Component(
                base,
                version,
                f"pkg:generic/{base.split('.so', 1)[0]}@{version}?file_name={base}",
                sha256=digest,
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class NativeLink:
    """What link.py adds for an app with bundled extensions: the loader, the symbol table, the
    built-in module and the finder the bootstrap installs before the app runs."""

    sources: Mapping[str, str]  # file name -> C source
    inittab: Mapping[str, str] = field(default_factory=dict)  # module -> PyInit function
    bootstrap: str = ""


#: The meta-path finder for the bundled extension modules (``modules``: name -> member;
#: ``needed``: member -> its bundled libraries). The loader is an ExtensionFileLoader, so
#: ``importlib`` and tools that look at ``spec.loader`` see an ordinary extension module whose
#: ``__file__`` lies inside the executable.
_FINDER = """\
def _scratchpack_native(exe=sys.executable, modules={modules!r}, needed={needed!r}):
    import _scratchpack_ext
    from importlib.machinery import ExtensionFileLoader, ModuleSpec, PathFinder
    handles = {{}}
    def load(member):
        handle = handles.get(member)
        if handle is None:
            deps = tuple(load(dep) for dep in needed.get(member, ()))
            handle = handles[member] = _scratchpack_ext.load(exe, member, deps)
        return handle
    class Loader(ExtensionFileLoader):
        def create_module(self, spec):
            return _scratchpack_ext.create(spec, load(modules[spec.name]))
        def exec_module(self, module):
            _scratchpack_ext.exec(module)
    class Finder:
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            member = modules.get(name)
            if member is None:
                return None
            origin = exe + '/' + member
            spec = ModuleSpec(name, Loader(name, origin), origin=origin)
            spec.has_location = True
            return spec
    at = sys.meta_path.index(PathFinder) if PathFinder in sys.meta_path else 0
    sys.meta_path.insert(at, Finder)
_scratchpack_native()
"""


def native_link(load_plan: LoadPlan, modules: Mapping[str, str], loader_c: str) -> NativeLink:
    """The link inputs for these extension modules (module name -> member) and their plan."""
    from scratchpack.freeze.static.elf import symbol_table_c

    needed = {k: list(v) for k, v in sorted(load_plan.needed.items()) if v}
    return NativeLink(
        sources={"elfload.c": loader_c, "elfsyms.c": symbol_table_c(load_plan.imports)},
        inittab={"_scratchpack_ext": "PyInit__scratchpack_ext"},
        bootstrap=_FINDER.format(modules=dict(sorted(modules.items())), needed=needed),
    )


def wheels_json(wheels: Iterable[Wheel]) -> str:
    """The wheels as JSON, for the build's record."""
    return json.dumps(
        [{"name": w.name, "version": w.version, "tag": w.tag, "sha256": w.sha256} for w in wheels]
    )
