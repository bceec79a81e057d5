"""docsig.py: CPython's C docstrings cut to their signatures, on C source text.

The rewritten sources are compiled into the kit (kit.py checks ``len.__text_signature__`` on the
fresh interpreter); here, C text goes in and the literals that come out are decoded again.
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

from scratchpack.freeze.static import docsig


def _rewrite(c_source: str) -> str:
    out, _count, _sigs = docsig.rewrite_source(textwrap.dedent(c_source).encode())
    return out.decode()


def _docs(c_source: str) -> list[bytes]:
    """Each run of adjacent C string literals in ``c_source``, decoded."""
    runs = re.findall(r'(?:"(?:[^"\\\n]|\\.|\\\n)*"\s*)+', c_source)
    return [
        b"".join(docsig.decode_literal(t.encode()) for t in re.findall(r'"(?:[^"\\]|\\.)*"', run))
        for run in runs
    ]


def test_a_clinic_docstring_keeps_its_signature_only() -> None:
    out = _rewrite(
        r"""
        PyDoc_STRVAR(bytes_split__doc__,
        "split($self, /, sep=None, maxsplit=-1)\n"
        "--\n"
        "\n"
        "Return a list of the sections in the bytes, using sep as the delimiter.\n"
        "\n"
        "  sep\n"
        "    The delimiter according which to split the bytes.");

        #define BYTES_SPLIT_METHODDEF    \
            {"split", (PyCFunction)bytes_split, METH_FASTCALL, bytes_split__doc__},
        """
    )
    assert _docs(out) == [b"split($self, /, sep=None, maxsplit=-1)\n--\n\n", b"split"]
    assert "#define BYTES_SPLIT_METHODDEF    \\\n" in out


def test_prose_without_a_signature_becomes_empty_as_without_doc_strings() -> None:
    out = _rewrite(
        r"""
        PyDoc_STRVAR(module_doc,
        "Bisection algorithms.\n\
        \n\
        This module provides support for maintaining a list in sorted order.\n");
        static PyGetSetDef getset[] = {
            {"__dict__", get, set, PyDoc_STR("dictionary for instance variables (if defined)")},
        };
        """
    )
    assert 'PyDoc_STRVAR(module_doc,\n"");' in out
    assert 'PyDoc_STR("")}' in out


def test_docstrings_passed_through_a_files_own_macros() -> None:
    """mathmodule.c's FUNC1, typeobject.c's slot tables, exceptions.c's exception types."""
    out = _rewrite(
        r"""
        #define FUNC1(funcname, func, can_overflow, docstring)                  \
            static PyObject * math_##funcname(PyObject *self, PyObject *args) { \
                return math_1(args, func, can_overflow);                        \
            }\
            PyDoc_STRVAR(math_##funcname##_doc, docstring);

        FUNC1(acos, acos, 0,
              "acos($module, x, /)\n--\n\n"
              "Return the arc cosine (measured in radians) of x.")

        #define ETSLOT(NAME, SLOT, FUNCTION, WRAPPER, DOC) \
            {NAME, offsetof(PyHeapTypeObject, SLOT), (void *)(FUNCTION), WRAPPER, \
             PyDoc_STR(DOC)}
        #define NBSLOT(NAME, SLOT, FUNCTION, WRAPPER, DOC) \
            ETSLOT(NAME, as_number.SLOT, FUNCTION, WRAPPER, DOC)
        #define BINSLOT(NAME, SLOT, FUNCTION, DOC) \
            ETSLOT(NAME, as_number.SLOT, FUNCTION, wrap_binaryfunc_l, \
                   NAME "($self, value, /)\n--\n\nReturn self" DOC "value.")

        static slotdef slotdefs[] = {
            NBSLOT("__pow__", nb_power, slot_nb_power, wrap_ternaryfunc,
                   "__pow__($self, value, mod=None, /)\n--\n\nReturn pow(self, value, mod)."),
            BINSLOT("__add__", nb_add, slot_nb_add, "+"),
        };

        SimpleExtendsException(PyExc_Exception, TypeError,
                               "Inappropriate argument type.");
        #define SimpleExtendsException(EXCBASE, EXCNAME, EXCDOC) \
            static PyTypeObject _PyExc_ ## EXCNAME = { \
            PyDoc_STR(EXCDOC), (traverseproc)BaseException_traverse, \
            }
        """
    )
    assert '"acos($module, x, /)\\n--\\n\\n")' in out
    assert "Return the arc cosine" not in out
    assert '"__pow__($self, value, mod=None, /)\\n--\\n\\n"),' in out
    # the composed doc loses the text after the signature; the continuation lines survive
    assert (
        "ETSLOT(NAME, as_number.SLOT, FUNCTION, wrap_binaryfunc_l, \\\n"
        '           NAME "($self, value, /)\\n--\\n\\n")\n'
    ) in out
    assert '"Inappropriate argument type."' not in out
    assert "SimpleExtendsException(PyExc_Exception, TypeError,\n" in out


def test_text_joined_with_a_macro_name() -> None:
    out = _rewrite(
        r"""
        PyDoc_STRVAR(strftime_doc,
        "strftime(format[, tuple]) -> string\n\
        \n\
        Convert a time tuple to a string according to a format specification.\n" FORMAT_CODES);
        PyDoc_STRVAR(version_doc, "frobnicate" SUFFIX);
        PyDoc_STRVAR(warnings__doc__,
        MODULE_NAME " provides basic warning filtering support.\n");
        """
    )
    # the text before the name already rules out a signature: all of it goes
    assert 'PyDoc_STRVAR(strftime_doc,\n"");' in out
    # the name could still complete a signature, or a name comes first: left alone
    assert 'PyDoc_STRVAR(version_doc, "frobnicate" SUFFIX);' in out
    assert 'MODULE_NAME " provides basic warning filtering support.\\n");' in out


def test_macro_definitions_and_non_literal_arguments_are_left_alone() -> None:
    source = textwrap.dedent(
        """
        #define PyDoc_STRVAR(name,str) PyDoc_VAR(name) = PyDoc_STR(str)
        #define PyDoc_STR(str) str
        {"ham", NULL, 0, PyDoc_STR(comerror_doc)},
        """
    )
    assert _rewrite(source) == source


@pytest.mark.parametrize(
    ("doc", "kept"),
    [
        (
            b"len($module, obj, /)\n--\n\nReturn the number of items.",
            b"len($module, obj, /)\n--\n\n",
        ),
        (b"f($self,\n  x)\n--\n\nprose", b"f($self,\n  x)\n--\n\n"),
        (b"object()\n--\n\n", b"object()\n--\n\n"),
        (b"f(x)\n\nprose f(y)\n--\n\n", b""),  # a blank line ends the search (skip_signature)
        (b"Return f(x)\n--\n\n", b""),  # not opening with a name and "("
        (b"abs(x) -> number", b""),  # an old-style first line, no "--" marker
        (b"", b""),
    ],
)
def test_signature_only_mirrors_cpythons_reading(doc: bytes, kept: bytes) -> None:
    assert docsig.signature_only(doc) == kept


def test_literals_round_trip_through_their_escapes() -> None:
    text = b'q"b\\ t\t n\n ? \xc3\xa9 \x00 \x7f'
    encoded = docsig.encode_literal(text)
    assert docsig.decode_literal(encoded) == text
    assert b"??" not in encoded and b"\n" not in encoded
    assert docsig.decode_literal(b'"a\\x41\\101\\\n\\"b"') == b'aAA"b'


def test_rewrite_tree_keeps_mtimes_and_touches_only_c_sources(tmp_path: Path) -> None:
    clinic = tmp_path / "Objects" / "clinic" / "x.c.h"
    clinic.parent.mkdir(parents=True)
    clinic.write_text('PyDoc_STRVAR(f__doc__,\n"f($module)\\n--\\n\\nProse.");\n')
    prose = tmp_path / "Modules" / "m.c"
    prose.parent.mkdir()
    prose.write_text('PyDoc_STRVAR(doc, "Prose.");\n')
    other = tmp_path / "Lib" / "x.c"  # not a directory of C sources with docstrings
    other.parent.mkdir()
    other.write_text('PyDoc_STRVAR(doc, "Prose.");\n')
    script = tmp_path / "Modules" / "gen.py"
    script.write_text('PyDoc_STRVAR(doc, "Prose.")\n')
    for path in (clinic, prose, other, script):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))

    result = docsig.rewrite_tree(tmp_path)

    assert result == docsig.Rewrite(files=2, docstrings=2, signatures=1)
    assert clinic.read_text() == 'PyDoc_STRVAR(f__doc__,\n"f($module)\\n--\\n\\n");\n'
    assert prose.read_text() == 'PyDoc_STRVAR(doc, "");\n'
    assert "Prose." in other.read_text() and "Prose." in script.read_text()
    assert {p.stat().st_mtime_ns for p in (clinic, prose)} == {1_000_000_000}
