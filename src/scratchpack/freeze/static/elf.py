"""Reads the ELF shared objects of musllinux wheels ahead of time, for the in-process loader.

Why at build time: elfload.c handles a fixed set of relocation types, TLS models and dynamic
tags. Anything else must fail the build with the object and the feature named, never the run.
The same pass collects the symbols each object imports from the executable. link.py turns them
into a name -> address table linked into the executable, so the static link keeps exactly those
symbols alive, and a name the executable lacks fails the link.

Stdlib ``struct`` only: the loader needs a handful of tables, not a general ELF library.
"""

from __future__ import annotations

import itertools
import posixpath
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from scratchpack.errors import FreezeError

# ELF constants (System V gABI, x86-64 and AArch64 psABIs) the checks and the loader share.
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_TLS = 1, 2, 3, 7
DT_NEEDED, DT_HASH, DT_STRTAB, DT_SYMTAB, DT_RELA, DT_RELASZ = 1, 4, 5, 6, 7, 8
DT_STRSZ, DT_SONAME, DT_RPATH, DT_REL, DT_TEXTREL, DT_JMPREL = 10, 14, 15, 17, 22, 23
DT_PLTRELSZ, DT_PLTREL, DT_FLAGS, DT_PREINIT_ARRAY, DT_RUNPATH = 2, 20, 30, 32, 29
DT_RELR, DT_RELRSZ, DT_GNU_HASH, DT_VERSYM = 36, 35, 0x6FFFFEF5, 0x6FFFFFF0
DF_TEXTREL, DF_STATIC_TLS = 0x4, 0x10
SHT_DYNSYM = 11
STT_TLS = 6
STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 1, 2, 10
STV_DEFAULT, STV_PROTECTED = 0, 3
VERSYM_HIDDEN = 0x8000
PAGE = 4096  # elfload.c sets rights per page (4 KiB pages: x86-64, and arm64 as Debian's)
EM_X86_64, EM_AARCH64 = 62, 183

#: The relocation types elfload.c applies (R_X86_64_*).
HANDLED_RELOCATIONS = {
    0: "NONE",
    1: "64",
    6: "GLOB_DAT",
    7: "JUMP_SLOT",
    8: "RELATIVE",
    16: "DTPMOD64",
    17: "DTPOFF64",
}
#: Names for the types a shared object may carry that the loader refuses, for the message.
REFUSED_RELOCATIONS = {
    2: "PC32 (a text relocation)",
    5: "COPY",
    10: "32",
    11: "32S",
    18: "TPOFF64 (initial-exec TLS)",
    24: "PC64",
    37: "IRELATIVE (GNU indirect function)",
}
#: The same for AArch64 objects (R_AARCH64_*): the kinds keep the x86-64 names, so the loader's
#: checks and counts read alike.
HANDLED_AARCH64 = {
    0: "NONE",
    257: "64",  # ABS64
    1025: "GLOB_DAT",
    1026: "JUMP_SLOT",
    1027: "RELATIVE",
    1028: "DTPMOD64",  # TLS_DTPMOD64
    1029: "DTPOFF64",  # TLS_DTPREL64
    1031: "TLSDESC",  # dynamic TLS through elfload.c's descriptor resolver
}
REFUSED_AARCH64 = {
    1024: "COPY",
    1030: "TLS_TPREL64 (initial-exec TLS)",
    1032: "IRELATIVE (GNU indirect function)",
}
#: e_machine -> (name in messages, relocation prefix, handled types, refused types' names).
MACHINES = {
    EM_X86_64: ("x86-64", "R_X86_64_", HANDLED_RELOCATIONS, REFUSED_RELOCATIONS),
    EM_AARCH64: ("aarch64", "R_AARCH64_", HANDLED_AARCH64, REFUSED_AARCH64),
}

#: Libraries the executable itself stands for: musl's libc holds libm, libpthread, libdl...
EXECUTABLE_SONAMES = frozenset(
    {
        "libc.so",
        "libc.musl-x86_64.so.1",
        "ld-musl-x86_64.so.1",
        "libc.musl-aarch64.so.1",
        "ld-musl-aarch64.so.1",
        "libm.so",
        "libpthread.so",
        "libdl.so",
        "librt.so",
        "libutil.so",
        "libcrypt.so",
        "libxnet.so",
        "libresolv.so",
    }
)

#: Names elfload.c answers itself for loaded objects rather than the executable's own:
#: TLS for their modules, and their program headers for the unwinders they carry.
LOADER_SYMBOLS = frozenset({"__tls_get_addr", "dl_iterate_phdr"})


_SYMBOL = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$]*")


class ElfError(FreezeError):
    """A bundled object uses an ELF feature the in-process loader does not handle."""


def _refuse(name: str, feature: str) -> ElfError:
    return ElfError(
        f"the static runtime cannot load {name}: {feature}",
        hint="this compiled extension needs the pyinstaller runtime; please report the "
        "wheel so the loader can learn the feature",
        remedy="static-c-extension",
    )


@dataclass(frozen=True, slots=True)
class SharedObject:
    """What the loader and the symbol table need to know of one object."""

    name: str  # path inside the bundle
    soname: str
    needed: tuple[str, ...]
    runpath: tuple[str, ...]
    defined: frozenset[str]  # exported: global/weak, default visibility, default version
    imports: Mapping[str, bool]  # undefined symbols its relocations use -> weak
    relocations: Mapping[str, int]  # relocation type name -> count
    tls: bool
    relr: bool


class _Reader:
    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name
        self.loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)

    def unpack(self, fmt: str, offset: int) -> tuple[int, ...]:
        try:
            return struct.unpack_from(fmt, self.data, offset)
        except struct.error:
            raise _refuse(self.name, f"truncated ELF data at offset {offset}") from None

    def offset(self, vaddr: int) -> int:
        """File offset of a virtual address inside a PT_LOAD segment's file bytes."""
        for start, off, size in self.loads:
            if start <= vaddr < start + size:
                return off + vaddr - start
        raise _refuse(self.name, f"address {vaddr:#x} is outside every loaded segment")

    def cstr(self, offset: int) -> str:
        end = self.data.find(b"\0", offset)
        if offset >= len(self.data) or end < 0:
            raise _refuse(self.name, f"bad string offset {offset}")
        return self.data[offset:end].decode("utf-8", "replace")


def read_object(data: bytes, name: str, machine: int = EM_X86_64) -> SharedObject:
    """Parse and check one ELF shared object for ``machine`` (x86-64 or aarch64); raise
    ElfError naming what is refused."""
    r = _Reader(data, name)
    if data[:4] != b"\x7fELF":
        raise _refuse(name, "not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise _refuse(name, "not a 64-bit little-endian ELF object")
    e_type, e_machine = r.unpack("<HH", 16)
    arch, prefix, handled, refused = MACHINES[machine]
    if e_machine != machine:
        raise _refuse(name, f"machine {e_machine} is not {arch}")
    if e_type != 3:
        raise _refuse(name, f"ELF type {e_type} is not a shared object (ET_DYN)")
    phoff, shoff = r.unpack("<QQ", 32)
    phentsize, phnum, shentsize, shnum = r.unpack("<HHHH", 54)
    dynamic = None
    tls = False
    pages: list[tuple[int, int, int]] = []
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz, _memsz, _align = r.unpack(
            "<IIQQQQQQ", phoff + i * phentsize
        )
        if p_type == PT_LOAD:
            r.loads.append((p_vaddr, p_offset, p_filesz))
            pages.append((p_vaddr // PAGE, (p_vaddr + max(_memsz, 1) - 1) // PAGE, _flags))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
        elif p_type == PT_TLS:
            tls = True
    pages.sort()
    for (_a, last, flags), (first, _b, flags2) in itertools.pairwise(pages):
        if first <= last and flags != flags2:
            raise _refuse(name, "two loadable segments with different rights share a page")
    if not r.loads or dynamic is None:
        raise _refuse(name, "no loadable segments or no dynamic section")
    tags: dict[int, list[int]] = {}
    for pos in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = r.unpack("<qQ", pos)
        if tag == 0:
            break
        tags.setdefault(tag, []).append(value)

    def one(tag: int, default: int = 0) -> int:
        return tags.get(tag, [default])[0]

    if DT_TEXTREL in tags or one(DT_FLAGS) & DF_TEXTREL:
        raise _refuse(name, "text relocations (DT_TEXTREL)")
    if one(DT_FLAGS) & DF_STATIC_TLS:
        raise _refuse(name, "static TLS (DF_STATIC_TLS, the initial-exec model)")
    if DT_PREINIT_ARRAY in tags:
        raise _refuse(name, "a pre-init array (DT_PREINIT_ARRAY)")
    if DT_REL in tags:
        raise _refuse(name, f"REL relocations ({arch} objects use RELA)")
    if DT_JMPREL in tags and one(DT_PLTREL, DT_RELA) != DT_RELA:
        raise _refuse(name, "PLT relocations that are not RELA")
    if DT_GNU_HASH not in tags and DT_HASH not in tags:
        raise _refuse(name, "no symbol hash table (DT_GNU_HASH or DT_HASH)")
    strtab = r.offset(one(DT_STRTAB))
    symtab = r.offset(one(DT_SYMTAB))
    versym = r.offset(tags[DT_VERSYM][0]) if DT_VERSYM in tags else None

    def dynstr(offset: int) -> str:
        return r.cstr(strtab + offset)

    nsyms = _symbol_count(r, shoff, shentsize, shnum, tags)
    symbols = []
    for i in range(nsyms):
        st_name, st_info, st_other, st_shndx, _value, _size = r.unpack("<IBBHQQ", symtab + i * 24)
        hidden = versym is not None and r.unpack("<H", versym + i * 2)[0] & VERSYM_HIDDEN
        symbols.append((dynstr(st_name), st_info, st_other & 3, st_shndx, bool(hidden)))
    defined = frozenset(
        sym
        for sym, info, vis, shndx, hidden in symbols
        if sym
        and shndx != 0
        and info >> 4 in (STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE)
        and vis in (STV_DEFAULT, STV_PROTECTED)
        and not hidden
    )
    imports: dict[str, bool] = {}
    counts: dict[str, int] = {}
    relocs = [(one(DT_RELA), one(DT_RELASZ)), (one(DT_JMPREL), one(DT_PLTRELSZ))]
    for start, size in relocs:
        if not size:
            continue
        base = r.offset(start)
        for pos in range(base, base + size, 24):
            _off, info, _addend = r.unpack("<QQq", pos)
            rtype, index = info & 0xFFFFFFFF, info >> 32
            kind = handled.get(rtype)
            if kind is None:
                what = refused.get(rtype, f"type {rtype}")
                raise _refuse(name, f"relocation {prefix}{what}")
            counts[kind] = counts.get(kind, 0) + 1
            if index == 0 or index >= len(symbols):
                continue
            sym, info8, _vis, shndx, _hidden = symbols[index]
            if shndx == 0 and sym:
                if info8 & 0xF == STT_TLS:
                    raise _refuse(name, f"thread-local symbol {sym} imported from elsewhere")
                bare = sym.partition("@")[0]
                weak = info8 >> 4 == STB_WEAK
                imports[bare] = imports.get(bare, True) and weak
    if DT_RELR in tags:
        counts["RELR"] = one(DT_RELRSZ) // 8
    runpath = tags.get(DT_RUNPATH) or tags.get(DT_RPATH) or []
    return SharedObject(
        name=name,
        soname=dynstr(tags[DT_SONAME][0]) if DT_SONAME in tags else "",
        needed=tuple(dynstr(v) for v in tags.get(DT_NEEDED, [])),
        runpath=tuple(p for v in runpath for p in dynstr(v).split(":") if p),
        defined=defined,
        imports=imports,
        relocations=counts,
        tls=tls,
        relr=DT_RELR in tags,
    )


def _symbol_count(r: _Reader, shoff: int, shentsize: int, shnum: int, tags: dict) -> int:  # type: ignore[type-arg]
    """How many dynamic symbols: from the .dynsym section header, else DT_HASH's nchain."""
    for i in range(shnum if shoff else 0):
        sh_type, _flags, _addr, _off, size, _link, _info, _align, entsize = r.unpack(
            "<4xIQQQQIIQQ", shoff + i * shentsize
        )
        if sh_type == SHT_DYNSYM and entsize:
            return int(size // entsize)
    if DT_HASH in tags:
        return int(r.unpack("<II", r.offset(tags[DT_HASH][0]))[1])
    raise _refuse(r.name, "no section headers and no DT_HASH to count its symbols")


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """The bundle's objects, what each loads first, and what the executable must export."""

    objects: Mapping[str, SharedObject]
    needed: Mapping[str, tuple[str, ...]]  # object -> bundled objects it needs, in DT order
    imports: Mapping[str, bool]  # name -> weak: the executable's table


def plan(objects: Mapping[str, SharedObject]) -> LoadPlan:
    """Resolve every DT_NEEDED inside the bundle (RUNPATH with $ORIGIN, then the object's own
    directory) or to the executable, and collect the names the executable must provide: each
    object's imports that its own dependency closure does not define."""
    needed: dict[str, tuple[str, ...]] = {}
    for name, obj in objects.items():
        deps = []
        here = posixpath.dirname(name)
        for soname in obj.needed:
            if soname in EXECUTABLE_SONAMES:
                continue
            dirs = [p.replace("$ORIGIN", here).replace("${ORIGIN}", here) for p in obj.runpath]
            found = [
                c
                for c in (posixpath.normpath(posixpath.join(d, soname)) for d in [*dirs, here])
                if c in objects
            ]
            if not found:
                raise _refuse(
                    name,
                    f"it needs {soname}, which neither its wheel's bundled libraries nor the "
                    "executable provide",
                )
            deps.append(found[0])
        needed[name] = tuple(deps)
    imports: dict[str, bool] = {}
    for name, obj in objects.items():
        scope = closure(name, needed)
        have = set().union(*(objects[o].defined for o in scope))
        for sym, weak in obj.imports.items():
            if sym in have or sym in LOADER_SYMBOLS:
                continue
            imports[sym] = imports.get(sym, True) and weak
    return LoadPlan(objects=objects, needed=needed, imports=imports)


def closure(name: str, needed: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The object and its dependencies, breadth first: its symbol lookup scope."""
    order = [name]
    for obj in order:
        order += [d for d in needed.get(obj, ()) if d not in order]
    return order


def symbol_table_c(imports: Mapping[str, bool]) -> str:
    """C source of the sorted name -> address table elfload.c searches.

    Each name is declared with an asm label (any symbol spelling works, nothing collides with a
    header) and as a weak reference when every importer imports it weakly: absent from the
    static link, its address is NULL, as a dynamic loader gives a weak undefined symbol.
    """
    names = sorted(imports, key=lambda s: s.encode())
    for sym in names:
        if not _SYMBOL.fullmatch(sym):
            raise ElfError(
                f"a bundled object imports a symbol name the loader cannot table: {sym!r}"
            )
    decls = []
    rows = []
    for i, sym in enumerate(names):
        weak = " __attribute__((weak))" if imports[sym] else ""
        decls.append(f'extern char scratchpack_sym{i} __asm__("{sym}"){weak};')
        rows.append(f'    {{"{sym}", &scratchpack_sym{i}}},')
    return (
        "/* Generated by scratchpack: the symbols the bundled extension modules import. */\n"
        "#include <stddef.h>\n"
        "struct scratchpack_symbol { const char *name; void *address; };\n"
        + "\n".join(decls)
        + "\nconst struct scratchpack_symbol scratchpack_symbols[] = {\n"
        + "\n".join(rows)
        + ("\n" if rows else "    {0, 0},\n")
        + "};\n"
        + f"const size_t scratchpack_nsymbols = {len(names)};\n"
    )
