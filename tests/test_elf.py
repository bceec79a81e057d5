"""Build-time ELF checks and the symbol table for the static route's in-process loader.

The objects are crafted here byte by byte (one PT_LOAD holding everything, a DT_HASH to count
the symbols), so each test states exactly which relocation, flag or symbol it is about. The
real musllinux wheels go through the same code in tests/test_static_native.py.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pytest

from scratchpack.freeze.static import elf

R_64, R_GLOB_DAT, R_JUMP_SLOT, R_RELATIVE, R_DTPMOD64, R_TPOFF64 = 1, 6, 7, 8, 16, 18
STB_GLOBAL, STB_WEAK = 1, 2
STT_FUNC, STT_TLS = 2, 6


def make_so(
    *,
    symbols: Sequence[tuple[str, bool, int, int]] = (),
    relocs: Sequence[tuple[int, int]] = (),
    needed: Sequence[str] = (),
    runpath: str = "",
    flags: int = 0,
    hidden: set[str] | None = None,
    machine: int = 62,
    textrel: bool = False,
) -> bytes:
    """An x86-64 ET_DYN object: ``symbols`` are (name, defined, binding, type) after the null
    symbol, ``relocs`` are (type, symbol index) RELA entries; ``hidden`` names get a hidden
    version (as libgcc_s's non-default duplicates)."""
    hidden = hidden or set()
    strtab = bytearray(b"\0")

    def add(s: str) -> int:
        strtab.extend(s.encode() + b"\0")
        return len(strtab) - len(s) - 1

    syms = [b"\0" * 24]
    for name, defined, bind, typ in symbols:
        syms.append(
            struct.pack("<IBBHQQ", add(name), bind << 4 | typ, 0, 7 if defined else 0, 0x10, 0)
        )
    needed_off = [add(n) for n in needed]
    runpath_off = add(runpath) if runpath else None
    versym = [0] + [0x8002 if s[0] in hidden else 1 for s in symbols]
    strtab_at, symtab_at, versym_at, hash_at, rela_at, dyn_at = (
        0x100, 0x400, 0x700, 0x780, 0x800, 0xC00,
    )  # fmt: skip
    rela = b"".join(struct.pack("<QQq", 0x10, idx << 32 | typ, 0) for typ, idx in relocs)
    dyn = [(5, strtab_at), (6, symtab_at), (10, len(strtab)), (11, 24), (4, hash_at)]
    dyn += [(0x6FFFFFF0, versym_at), (7, rela_at), (8, len(rela)), (9, 24)]
    dyn += [(1, off) for off in needed_off]
    if runpath_off is not None:
        dyn.append((29, runpath_off))
    if flags:
        dyn.append((30, flags))
    if textrel:
        dyn.append((22, 0))
    dyn.append((0, 0))
    dynamic = b"".join(struct.pack("<qQ", t, v) for t, v in dyn)
    size = dyn_at + len(dynamic)
    image = bytearray(size)
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    image[0:64] = ident + struct.pack(
        "<HHIQQQIHHHHHH", 3, machine, 1, 0, 64, 0, 0, 64, 56, 2, 64, 0, 0
    )
    image[64:120] = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, size, size, 0x1000)
    image[120:176] = struct.pack("<IIQQQQQQ", 2, 6, dyn_at, dyn_at, dyn_at, len(dynamic), 0, 8)
    image[strtab_at : strtab_at + len(strtab)] = strtab
    image[symtab_at : symtab_at + 24 * len(syms)] = b"".join(syms)
    image[versym_at : versym_at + 2 * len(versym)] = struct.pack(f"<{len(versym)}H", *versym)
    image[hash_at : hash_at + 12] = struct.pack("<III", 1, len(syms), 0)
    image[hash_at + 12 : hash_at + 12 + 4 * len(syms)] = b"\0" * 4 * len(syms)
    image[rela_at : rela_at + len(rela)] = rela
    image[dyn_at:] = dynamic
    return bytes(image)


def test_reads_imports_exports_and_relocation_counts() -> None:
    data = make_so(
        symbols=[
            ("PyInit_fast", True, STB_GLOBAL, STT_FUNC),
            ("PyLong_FromLong", False, STB_GLOBAL, STT_FUNC),
            ("__cxa_finalize", False, STB_WEAK, STT_FUNC),
            ("__multc3", True, STB_GLOBAL, STT_FUNC),
        ],
        relocs=[(R_RELATIVE, 0), (R_GLOB_DAT, 2), (R_JUMP_SLOT, 3), (R_64, 1)],
        needed=["libc.so"],
        hidden={"__multc3"},
    )
    obj = elf.read_object(data, "fast/_fast.so")
    assert obj.imports == {"PyLong_FromLong": False, "__cxa_finalize": True}
    assert obj.defined == {"PyInit_fast"}  # the hidden-version duplicate is no export
    assert obj.relocations == {"RELATIVE": 1, "GLOB_DAT": 1, "JUMP_SLOT": 1, "64": 1}
    assert obj.needed == ("libc.so",)


def test_reads_aarch64_objects_with_their_own_relocation_numbers() -> None:
    """R_AARCH64_ABS64/GLOB_DAT/JUMP_SLOT/RELATIVE/TLS_DTPMOD64/TLS_DTPREL64 count under the
    kinds elfload.c applies, TLSDESC too (its resolver); TPREL64 (initial-exec) is refused."""
    data = make_so(
        symbols=[("PyInit_fast", True, STB_GLOBAL, STT_FUNC), ("PyErr_Occurred", False, 1, 2)],
        relocs=[(1027, 0), (1025, 2), (1026, 2), (257, 2), (1028, 0), (1029, 0), (1031, 0)],
        needed=["libc.musl-aarch64.so.1"],
        machine=elf.EM_AARCH64,
    )
    obj = elf.read_object(data, "fast/_fast.so", elf.EM_AARCH64)
    assert obj.imports == {"PyErr_Occurred": False}
    assert obj.relocations == {
        "RELATIVE": 1, "GLOB_DAT": 1, "JUMP_SLOT": 1, "64": 1, "DTPMOD64": 1, "DTPOFF64": 1,
        "TLSDESC": 1,
    }  # fmt: skip
    assert elf.plan({"fast/_fast.so": obj}).needed == {"fast/_fast.so": ()}  # musl: the exe
    for rtype, feature in ((1030, "R_AARCH64_TLS_TPREL64"), (1032, "R_AARCH64_IRELATIVE")):
        bad = make_so(relocs=[(rtype, 0)], machine=elf.EM_AARCH64)
        with pytest.raises(elf.ElfError, match=feature):
            elf.read_object(bad, "pkg/_x.so", elf.EM_AARCH64)
    with pytest.raises(elf.ElfError, match="machine 62 is not aarch64"):
        elf.read_object(make_so(), "pkg/_x.so", elf.EM_AARCH64)


@pytest.mark.parametrize(
    ("kwargs", "feature"),
    [
        ({"relocs": [(R_TPOFF64, 0)]}, "relocation R_X86_64_TPOFF64 (initial-exec TLS)"),
        ({"relocs": [(37, 0)]}, "relocation R_X86_64_IRELATIVE"),
        ({"relocs": [(99, 0)]}, "relocation R_X86_64_type 99"),
        ({"flags": 0x10}, "static TLS (DF_STATIC_TLS"),
        ({"textrel": True}, "text relocations (DT_TEXTREL)"),
        ({"machine": 183}, "machine 183 is not x86-64"),
        (
            {"symbols": [("errno_tls", False, STB_GLOBAL, STT_TLS)], "relocs": [(R_DTPMOD64, 1)]},
            "thread-local symbol errno_tls imported from elsewhere",
        ),
    ],
)
def test_refuses_what_the_loader_does_not_handle_naming_object_and_feature(
    kwargs: dict[str, object], feature: str
) -> None:
    with pytest.raises(elf.ElfError) as err:
        elf.read_object(make_so(**kwargs), "pkg.libs/libx.so.1")  # type: ignore[arg-type]
    assert "pkg.libs/libx.so.1" in err.value.message
    assert feature in err.value.message


def test_refuses_bytes_that_are_not_elf() -> None:
    with pytest.raises(elf.ElfError, match="not an ELF file"):
        elf.read_object(b"#!/bin/sh\n", "pkg/_x.so")


def test_plan_resolves_needed_through_origin_and_keeps_the_table_minimal() -> None:
    ext = make_so(
        symbols=[
            ("_Unwind_Resume", False, STB_GLOBAL, STT_FUNC),
            ("PyFloat_Type", False, STB_GLOBAL, 1),
            ("__tls_get_addr", False, STB_GLOBAL, STT_FUNC),
            ("_ITM_registerTMCloneTable", False, STB_WEAK, 0),
        ],
        relocs=[(R_GLOB_DAT, 1), (R_GLOB_DAT, 2), (R_JUMP_SLOT, 3), (R_GLOB_DAT, 4)],
        needed=["libgcc_s-1234.so.1", "libc.so"],
        runpath="$ORIGIN/../pkg.libs",
    )
    gcc = make_so(
        symbols=[
            ("_Unwind_Resume", True, STB_GLOBAL, STT_FUNC),
            ("dl_iterate_phdr", False, STB_GLOBAL, STT_FUNC),
            ("malloc", False, STB_GLOBAL, STT_FUNC),
        ],
        relocs=[(R_JUMP_SLOT, 2), (R_JUMP_SLOT, 3)],
        needed=["libc.so"],
    )
    objects = {
        "pkg/_core.so": elf.read_object(ext, "pkg/_core.so"),
        "pkg.libs/libgcc_s-1234.so.1": elf.read_object(gcc, "pkg.libs/libgcc_s-1234.so.1"),
    }
    plan = elf.plan(objects)
    assert plan.needed == {
        "pkg/_core.so": ("pkg.libs/libgcc_s-1234.so.1",),
        "pkg.libs/libgcc_s-1234.so.1": (),
    }
    # _Unwind_Resume comes from the bundled libgcc_s; __tls_get_addr and dl_iterate_phdr from
    # the loader itself; libc.so is the executable
    assert plan.imports == {
        "PyFloat_Type": False,
        "_ITM_registerTMCloneTable": True,
        "malloc": False,
    }
    assert elf.closure("pkg/_core.so", plan.needed) == [
        "pkg/_core.so",
        "pkg.libs/libgcc_s-1234.so.1",
    ]


def test_plan_refuses_a_needed_library_nobody_provides() -> None:
    ext = make_so(needed=["libstdc++.so.6"])
    with pytest.raises(elf.ElfError, match=r"pkg/_x\.so: it needs libstdc\+\+\.so\.6"):
        elf.plan({"pkg/_x.so": elf.read_object(ext, "pkg/_x.so")})


def test_symbol_table_c_is_sorted_and_weak_where_every_importer_is_weak() -> None:
    source = elf.symbol_table_c({"malloc": False, "PyBool_Type": False, "_ITM_RU1": True})
    lines = source.splitlines()
    assert 'extern char scratchpack_sym0 __asm__("PyBool_Type");' in lines
    assert 'extern char scratchpack_sym1 __asm__("_ITM_RU1") __attribute__((weak));' in lines
    assert 'extern char scratchpack_sym2 __asm__("malloc");' in lines
    rows = [line.strip() for line in lines if line.strip().startswith('{"')]
    assert rows == [
        '{"PyBool_Type", &scratchpack_sym0},',
        '{"_ITM_RU1", &scratchpack_sym1},',
        '{"malloc", &scratchpack_sym2},',
    ]
    assert "const size_t scratchpack_nsymbols = 3;" in lines


def test_symbol_table_c_refuses_a_name_it_cannot_spell() -> None:
    with pytest.raises(elf.ElfError, match="symbol name"):
        elf.symbol_table_c({'bad"name': False})


def test_refuses_segments_of_different_rights_sharing_a_page() -> None:
    data = bytearray(make_so())
    # a second PT_LOAD (read-write) starting inside the first one's last page (read-execute)
    struct.pack_into("<H", data, 56, 3)  # e_phnum: the PT_DYNAMIC entry moves to index 2
    data[176:232] = data[120:176]
    struct.pack_into("<IIQQQQQQ", data, 120, 1, 6, 0, 0x800, 0x800, 0x10, 0x10, 0x1000)
    struct.pack_into("<Q", data, 64 + 40, 0x400)  # the first segment's memsz ends at 0x400
    with pytest.raises(elf.ElfError, match="different rights share a page"):
        elf.read_object(bytes(data), "pkg/_x.so")
