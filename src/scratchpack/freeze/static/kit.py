"""Builds the static CPython kit once: zlib, OpenSSL, the libraries of the optional
stdlib C modules (bzip2, liblzma, SQLite, libffi, ncurses) and CPython, compiled against musl.

The kit is what every ``--runtime static`` executable is linked from: ``libpython3.11.a`` with
every stdlib C module compiled in (the per-app link keeps only the ones the app imports), the
static libraries those modules need (OpenSSL, zlib, libmpdec and expat from CPython's tree, and
the ones above), the Python headers, the generated ``config.c`` (the built-in module
table to filter), the pure-Python stdlib, and a full static interpreter used at build time to
find and compile the app's modules with the exact bytecode the runtime runs.

It is cached under ``<cache>/runtime/<key>``, keyed on the recipe, the pinned source versions,
the toolchain and the target, and built under a lock in a temporary directory that is renamed
into place only when complete: a killed build never leaves a half-made kit.

A kit for another machine (linux/arm64 on an x86-64 host) is cross-compiled from the same
sources with the same zig: configure runs with ``--host``/``--build``, the host's own kit as the
build interpreter, and ``CROSS_CONFIG_SITE`` for what it cannot find out without running a target
program; the few target programs the build must run (ncurses' tic, the kit's self-check) run
under the target's qemu user-mode emulator.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.resources
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scratchpack._ctx import log, step
from scratchpack._fs import owned_tempdir, sweep_stale
from scratchpack._types import Runner
from scratchpack.errors import FreezeError
from scratchpack.freeze.static import docsig
from scratchpack.freeze.static.sources import PACKAGES, fetch_sources
from scratchpack.freeze.static.toolchain import (
    ZIG_PIN,
    Target,
    Toolchain,
    ensure_toolchain,
    host_target,
)

#: Bumped whenever the recipe below changes the kit's bytes.
RECIPE_VERSION = "9"
PYTHON_VERSION = "3.11"

#: Where configure believes things live; only strings inside the binary, never read at run time
#: except OpenSSL's certificate directory, which is the usual Debian one.
INSTALL_PREFIX = "/opt/scratchpack"
OPENSSL_DIR = "/etc/ssl"

#: Size flags for everything (zlib, OpenSSL, CPython, the launcher).
#: No unwind tables: nothing in a C-only static binary unwinds, and .eh_frame was 0.5 MB.
#: zig cc hands clang -Os for -Oz too; ``-Xclang=-Oz`` (one token, so OpenSSL's Configure and
#: every configure keep it whole) reaches clang's code generator past the driver.
SIZE_CFLAGS = (
    "-Os",
    "-Xclang=-Oz",
    "-ffunction-sections",
    "-fdata-sections",
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    "-Wno-error=date-time",
)

#: How every app executable is compiled and linked (link.py): the link runs
#: ``zcc *APP_CFLAGS *APP_LDFLAGS``. The link's optimisation flag (the last -O wins) selects the
#: build of zig's libc and compiler_rt that is linked: at -Os zig builds them ReleaseSmall, whose
#: memcpy and memset copy byte by byte (compiler_rt's memcpySmall and smallMemset: 4-6 % of
#: FastAPI's start in a profile); -O2 links the ReleaseFast build (+15 KB). The kit build links a
#: stub with these flags once, so zig compiles that libc during the one-time build instead of
#: during the first app's link (~30 s).
APP_CFLAGS = ("-Os", "-fwrapv", "-DNDEBUG", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables")
APP_LDFLAGS = ("-O2", "-static", "-s", "-Wl,--gc-sections")

#: The macro that selects the assembler P-256 implementation (crypto/ec/build.info's $ECDEF);
#: the kit build checks that ec_curve.c was compiled without it.
OPENSSL_NISTZ256_MACRO = "ECP_NISTZ256_ASM"

#: OpenSSL features a server/client TLS stack in a container does not need. Removing them shrinks
#: the runtime by ~1 MB; what stays is TLS 1.2/1.3, AES-GCM, ChaCha20-Poly1305, RSA, ECDSA/ECDHE,
#: X25519/X448, SHA-1/2/3, BLAKE2, scrypt and PBKDF2 (everything ssl and hashlib use by default).
#: P-256 runs on OpenSSL's constant-time 64-bit C code (ecp_nistp256.c, as Debian's own build
#: enables) instead of the assembler one, whose 150 KB precomputed table does not compress: the
#: assembler files are built either way, and -U after the per-directory -D (OpenSSL puts the
#: user's flags last) leaves them unreferenced (-176 KB raw, -186 KB gzip for webhello).
#: No source file names in error records (CPython's messages never show them), no AES-OCB (no TLS
#: cipher suite uses it and CPython exposes no cipher API).
OPENSSL_OPTIONS = (
    "no-shared",
    "no-tests",
    "no-engine",
    "no-dso",
    "no-module",
    "no-async",
    "threads",
    "no-autoload-config",
    "no-comp",
    "no-legacy",
    "no-ssl3",
    "no-tls1",
    "no-tls1_1",
    "no-dtls",
    "no-srp",
    "no-psk",
    "no-weak-ssl-ciphers",
    "no-ui-console",
    "no-cmp",
    "no-cms",
    "no-ts",
    "no-ct",
    "no-ocsp",
    "no-srtp",
    "no-sctp",
    "no-nextprotoneg",
    "no-ssl-trace",
    "no-rfc3779",
    "no-multiblock",
    "no-gost",
    "no-siphash",
    "no-siv",
    "no-sm2",
    "no-sm3",
    "no-sm4",
    "no-seed",
    "no-camellia",
    "no-aria",
    "no-bf",
    "no-cast",
    "no-idea",
    "no-mdc2",
    "no-rc2",
    "no-rc4",
    "no-rc5",
    "no-des",
    "no-dsa",
    "no-ec2m",
    "no-md4",
    "no-rmd160",
    "no-whirlpool",
    "no-ocb",
    "enable-ec_nistp_64_gcc_128",
    f"-U{OPENSSL_NISTZ256_MACRO}",
    "no-filenames",
)

#: Algorithms OpenSSL's providers register in dispatch tables (so --gc-sections keeps them all)
#: that neither libssl nor CPython's ``_ssl`` and ``_hashlib`` can reach:
#: - key encoders (DER/PEM/text writers of keys): libssl never writes a key, ``_ssl`` writes only
#:   certificates and sessions (i2d_X509, i2d_SSL_SESSION: ASN.1 templates, not encoders) and
#:   ``_hashlib`` no key at all; the encoders' callers (PEM_write_*, i2d_PUBKEY, X509_PUBKEY_set,
#:   EVP_PKEY2PKCS8, EVP_PKEY_print_*) are certificate, request and key writers none of them
#:   calls. Both the default and the base provider (never loaded here) list them. Decoders stay:
#:   reading certificates and (encrypted) PEM keys needs them.
#: - KDFs for other protocols: SSKDF and X963KDF (ECDH with a KDF, CMS), X942KDF (DH with a KDF,
#:   CMS), KBKDF (SP 800-108), KRB5KDF (Kerberos), SSHKDF (SSH), PKCS12KDF (PKCS#12 files and
#:   their PBE ciphers, all disabled above). TLS uses HKDF, TLS13-KDF and TLS1-PRF; hashlib
#:   PBKDF2 and scrypt; encrypted PEM keys PBKDF2 or scrypt.
#: (file, text, replacement)
OPENSSL_EDITS = (
    (
        "providers/defltprov.c",
        '#define ENCODER_PROVIDER "default"\n#include "encoders.inc"\n',
        "",
    ),
    (
        "providers/baseprov.c",
        '#define ENCODER_PROVIDER "base"\n#include "encoders.inc"\n',
        "",
    ),
    (
        "providers/defltprov.c",
        '    { PROV_NAMES_SSKDF, "provider=default", ossl_kdf_sskdf_functions },\n',
        "",
    ),
    (
        "providers/defltprov.c",
        '    { PROV_NAMES_PKCS12KDF, "provider=default", ossl_kdf_pkcs12_functions },\n'
        '    { PROV_NAMES_SSHKDF, "provider=default", ossl_kdf_sshkdf_functions },\n'
        '    { PROV_NAMES_X963KDF, "provider=default", ossl_kdf_x963_kdf_functions },\n',
        "",
    ),
    (
        "providers/defltprov.c",
        '    { PROV_NAMES_KBKDF, "provider=default", ossl_kdf_kbkdf_functions },\n'
        '    { PROV_NAMES_X942KDF_ASN1, "provider=default", ossl_kdf_x942_kdf_functions },\n',
        "",
    ),
    (
        "providers/defltprov.c",
        '    { PROV_NAMES_KRB5KDF, "provider=default", ossl_kdf_krb5kdf_functions },\n',
        "",
    ),
)

#: liblzma only: no command-line tools, translations or documentation.
XZ_OPTIONS = (
    "--disable-shared",
    "--enable-static",
    "--disable-xz",
    "--disable-xzdec",
    "--disable-lzmadec",
    "--disable-lzmainfo",
    "--disable-lzma-links",
    "--disable-scripts",
    "--disable-doc",
    "--disable-nls",
)

#: libffi keeps its default static trampolines (mapped from the executable file found through
#: /proc, else from a temporary file; without either, closures fall back to anonymous
#: read-write-execute memory, as every libffi before 3.4 did).
LIBFFI_OPTIONS = (
    "--disable-shared",
    "--enable-static",
    "--disable-docs",
    "--disable-multi-os-directory",
)
#: libffi 3.4.4's tramp.c calls open_temp_exec_file() before declaring it; clang 16+ errors.
LIBFFI_CFLAGS = ("-Wno-error=implicit-function-declaration",)

#: SQLite with the features Debian enables (debian/rules) that need no change to the generated
#: parser, without loadable extensions (a static executable cannot dlopen), and with temporary
#: tables and indices in memory by default: a scratch container may have no writable /tmp.
SQLITE_CFLAGS = (
    "-DNDEBUG",
    "-D_HAVE_SQLITE_CONFIG_H",
    "-DSQLITE_THREADSAFE=1",
    "-DSQLITE_OMIT_LOAD_EXTENSION",
    "-DSQLITE_ENABLE_MATH_FUNCTIONS",
    "-DSQLITE_ENABLE_FTS3",
    "-DSQLITE_ENABLE_FTS3_PARENTHESIS",
    "-DSQLITE_ENABLE_FTS4",
    "-DSQLITE_ENABLE_FTS5",
    "-DSQLITE_ENABLE_RTREE",
    "-DSQLITE_ENABLE_DBSTAT_VTAB",
    "-DSQLITE_ENABLE_COLUMN_METADATA",
    "-DSQLITE_SECURE_DELETE",
    "-DSQLITE_MAX_VARIABLE_NUMBER=250000",
    "-DSQLITE_TEMP_STORE=2",
)

#: ncursesw (wide characters) and its panel library only. A scratch image has no terminfo
#: database, so the common terminal types are compiled in as fallbacks; a database found at run
#: time ($TERMINFO, ~/.terminfo, /etc/terminfo, /lib/terminfo, /usr/share/terminfo) still wins.
NCURSES_OPTIONS = (
    "--without-shared",
    "--without-debug",
    "--without-ada",
    "--without-cxx",
    "--without-cxx-binding",
    "--without-tests",
    "--without-manpages",
    "--with-progs",  # tic and infocmp, run at build time to compile the fallbacks
    "--enable-widec",
    "--disable-db-install",
    "--without-gpm",
    "--without-dlsym",
    "--disable-stripping",
    "--with-default-terminfo-dir=/usr/share/terminfo",
    "--with-terminfo-dirs=/etc/terminfo:/lib/terminfo:/usr/share/terminfo",
)
#: configure picks `-curvU` (members keep their mtimes): archive deterministically instead.
NCURSES_MAKE = ("ARFLAGS=-curvD",)
NCURSES_FALLBACKS = (
    "xterm-256color",
    "xterm",
    "screen-256color",
    "screen",
    "tmux-256color",
    "tmux",
    "linux",
    "vt100",
    "vt220",
    "dumb",
)

#: Static libraries installed in the kit: the stdlib C module that needs each one (the link
#: adds an archive only when that module is linked in), in link order within each entry.
#: libmpdec and expat are built by CPython's own Makefile from its bundled copies, outside
#: libpython3.11.a.
MODULE_ARCHIVES: dict[str, tuple[str, ...]] = {
    "_decimal": ("libmpdec.a",),
    "pyexpat": ("libexpat.a",),
    "_bz2": ("libbz2.a",),
    "_lzma": ("liblzma.a",),
    "_sqlite3": ("libsqlite3.a",),
    "_ctypes": ("libffi.a",),
    "_curses_panel": ("libpanelw.a", "libncursesw.a"),  # before _curses: panelw needs ncursesw
    "_curses": ("libncursesw.a",),
}

#: Makefile variable (Setup.local lines may not contain "=") renaming _ctypes' dl* calls to
#: ctypes_dl.c's: musl's static dlopen() fails even for NULL, which `import ctypes` needs.
CTYPES_DL_CFLAGS = (
    "-Ddlopen=scratchpack_dlopen",
    "-Ddlsym=scratchpack_dlsym",
    "-Ddlerror=scratchpack_dlerror",
    "-Ddlclose=scratchpack_dlclose",
)

#: Replaces configure's default OPT (-g -O3 ...): the size flags in CFLAGS decide optimisation.
CPYTHON_OPT = "-DNDEBUG -fwrapv"

#: The interpreter's hot objects, compiled at HOT_OPT instead of -Os (make's EXTRA_CFLAGS comes
#: after CFLAGS): the files that held ~85 % of the samples of FastAPI's start in a profile (cyclic
#: GC, dicts, the eval loop, type and object machinery, obmalloc, marshal). Everything else
#: keeps -Os, where the bytes are (codecs, unicodedata, the parser, OpenSSL).
HOT_OPT = "-O2"
HOT_OBJECTS = (
    "Modules/gcmodule.o",
    "Python/ceval.o",
    "Python/marshal.o",
    "Python/frame.o",
    "Python/pyhash.o",
    "Python/specialize.o",
    "Python/errors.o",
    "Python/getargs.o",
    "Objects/abstract.o",
    "Objects/call.o",
    "Objects/codeobject.o",
    "Objects/descrobject.o",
    "Objects/dictobject.o",
    "Objects/funcobject.o",
    "Objects/listobject.o",
    "Objects/longobject.o",
    "Objects/methodobject.o",
    "Objects/object.o",
    "Objects/obmalloc.o",
    "Objects/setobject.o",
    "Objects/tupleobject.o",
    "Objects/typeobject.o",
    "Objects/unicodeobject.o",
)

#: With doc strings: docsig.py first cuts every C docstring to its signature
#: (``len($module, obj, /)\n--\n\n``), which ``inspect.signature`` reads for builtins (Django
#: calls it on ``hashlib.md5``).
CPYTHON_OPTIONS = (
    "--disable-shared",
    "--disable-test-modules",
    "--with-ensurepip=no",
    "--without-readline",
    "--with-doc-strings",
)

#: Stdlib modules CPython freezes (deep-freezes into the interpreter's data) that the kit does
#: not: a static executable starts without site (the
#: launcher sets site_import = 0) and without runpy (the entry point is linked in), and never
#: needs Windows paths to start. An app that imports one gets its .pyc in the zip like any
#: other stdlib module, instead of every executable carrying ~150 KB of them.
UNFROZEN = ("ntpath", "site", "_sitebuiltins", "importlib.util", "importlib.machinery", "runpy")

#: freeze_modules.py's sections the kit drops whole: CPython's own import tests (``__hello__``,
#: the ``__phello__`` package, ``frozen_only`` and their aliases), 4.3 KB of deep-frozen code no
#: app imports; ``import __hello__`` then finds Lib/__hello__.py like any stdlib module.
UNFROZEN_SECTIONS = ("Test module",)

#: Runs CPython's Tools/scripts/freeze_modules.py (which regenerates Makefile.pre.in's frozen
#: module rules and Python/frozen.c) with UNFROZEN and UNFROZEN_SECTIONS taken out of its list.
_FREEZE_LIST = """
import pathlib, sys
script = pathlib.Path("Tools/scripts/freeze_modules.py")
empty_ok = script.read_text().replace(  # a dropped section leaves its list of lines empty
    "        if not lines[0]:\\n", "        if lines and not lines[0]:\\n"
)
assert "if lines and not lines[0]" in empty_ok
script.write_text(empty_ok)
sys.path.insert(0, "Tools/scripts")
import freeze_modules as f
sections = set(sys.argv[1].split(","))
drop = set(sys.argv[2:])
assert sections <= {section for section, _specs in f.FROZEN}, sections
f.FROZEN = [
    (section, kept)
    for section, specs in f.FROZEN
    if section not in sections
    for kept in [[s for s in specs if s.split(":")[0].strip() not in drop]]
    if kept
]
left = {s.split(":")[0].strip() for _section, specs in f.FROZEN for s in specs}
assert not drop & left, drop & left
sys.argv[1:] = []
f.main()
"""

#: CPython's deep-frozen modules (importlib's bootstrap, zipimport, os, io, codecs, abc, ...:
#: ~650 KB of static objects in every executable) compiled as `-OO -X no_debug_ranges` would:
#: no docstrings, asserts or column positions; -26 % of their code. (file, text, replacement).
FROZEN_EDITS = (
    (
        "Programs/_freeze_module.c",
        "    config.site_import = 0;\n",
        "    config.site_import = 0;\n    config.code_debug_ranges = 0;\n",
    ),
    ("Programs/_freeze_module.c", "Py_file_input, NULL, 0);", "Py_file_input, NULL, 2);"),
    (
        "Programs/_bootstrap_python.c",
        "    config.parse_argv = 1;\n",
        "    config.parse_argv = 1;\n    config.code_debug_ranges = 0;\n",
    ),
    ("Programs/_freeze_module.py", '"exec", optimize=0,', '"exec", optimize=2,'),
)

#: A scratchpack executable initialises Python once per process. pystate.c keeps a second,
#: constant copy of the whole initial runtime state (166,688 B: the static objects (small ints,
#: one-byte bytes and strings, interned identifiers) and the main interpreter's zero-filled
#: state) to reset ``_PyRuntime`` when an embedding program calls Py_Initialize again after
#: Py_Finalize, and to fill each new thread state and sub-interpreter from. The edits drop the
#: copy: a second initialisation fails with an error saying so, and new thread states and
#: sub-interpreters are assigned the same initialisers (_PyThreadState_INIT,
#: _PyInterpreterState_INIT), which clang compiles to a memset and a few stores.
#: (file, text, replacement)
RUNTIME_EDITS = (
    (
        "Python/pystate.c",
        '/* We use "initial" if the runtime gets re-used\n'
        "   (e.g. Py_Finalize() followed by Py_Initialize(). */\n"
        "static const _PyRuntimeState initial = _PyRuntimeState_INIT;\n",
        "",
    ),
    (
        "Python/pystate.c",
        "        memcpy(runtime, &initial, sizeof(*runtime));\n",
        '        return _PyStatus_ERR("this static Python initialises once per process: '
        'Py_Initialize() after Py_Finalize() is not supported");\n',
    ),
    (
        "Python/pystate.c",
        "        memcpy(interp, &initial._main_interpreter,\n               sizeof(*interp));\n",
        "        *interp = (PyInterpreterState)_PyInterpreterState_INIT;\n",
    ),
    (
        "Python/pystate.c",
        "        memcpy(tstate,\n"
        "               &initial._main_interpreter._initial_thread,\n"
        "               sizeof(*tstate));\n",
        "        *tstate = (PyThreadState)_PyThreadState_INIT;\n",
    ),
)

# --- Size, fifth pass (issue 14): code no app of this executable can reach -------------------

#: compile() to and from AST objects (``compile(src, name, mode, ast.PyCF_ONLY_AST)``,
#: ``compile(tree, ...)``) goes through Python-ast.c's conversions (obj2ast_*, ast2obj_*, the
#: ~120 AST types' initialisation) and ast.c's validator: ~120 KB of every executable, which
#: only apps that make AST objects use. The edits route compile(), Py_CompileStringObject()
#: and the interpreter's finalisation to them through one table, ``_PyAST_ConversionsLinked``,
#: a weak pointer that only config.c defines, on the line it shares with ``_PyAST_Conversions``:
#: link.config_c drops that line when the app links no ``_ast`` module, so nothing references
#: the conversions and ``--gc-sections`` drops them. The bundle links ``_ast`` whenever a
#: module imports ``ast``/``_ast`` or can call compile() with flags (_bundle.makes_ast_objects),
#: and link.py whenever extension modules are bundled; without it, compile() with
#: ``PyCF_ONLY_AST`` raises ModuleNotFoundError for ``_ast`` (the kit's own interpreter, whose
#: config.c keeps the line, is unchanged).
#: (file, text, replacement)
AST_CONVERSIONS = "_PyAST_Conversions"
AST_EDITS = (
    (
        "Include/internal/pycore_ast.h",
        "int PyAST_Check(PyObject* obj);\n",
        "int PyAST_Check(PyObject* obj);\n"
        "\n"
        "/* scratchpack: compile() and Py_CompileStringObject() reach the AST object conversions\n"
        "   only through this table; an executable's config.c points _PyAST_ConversionsLinked at\n"
        "   it only when the executable links the _ast module (else the pointer is NULL and the\n"
        "   linker drops the conversions). */\n"
        "struct _PyAST_Conversions {\n"
        "    int (*check)(PyObject *);\n"
        "    mod_ty (*obj2mod)(PyObject *, PyArena *, int);\n"
        "    PyObject *(*mod2obj)(mod_ty);\n"
        "    int (*validate)(mod_ty);\n"
        "    void (*fini)(PyInterpreterState *);\n"
        "};\n"
        "extern const struct _PyAST_Conversions _PyAST_ConversionsTable;\n"
        "extern const struct _PyAST_Conversions *const _PyAST_ConversionsLinked\n"
        "    __attribute__((weak));\n"
        "static inline const struct _PyAST_Conversions *\n"
        "_PyAST_GetConversions(void)\n"
        "{\n"
        "    return &_PyAST_ConversionsLinked != NULL ? _PyAST_ConversionsLinked : NULL;\n"
        "}\n",
    ),
    (
        "Python/Python-ast.c",
        "int PyAST_Check(PyObject* obj)\n{\n",
        "const struct _PyAST_Conversions _PyAST_ConversionsTable = {\n"
        "    PyAST_Check, PyAST_obj2mod, PyAST_mod2obj, _PyAST_Validate, _PyAST_Fini,\n"
        "};\n"
        "\n"
        "int PyAST_Check(PyObject* obj)\n{\n",
    ),
    (
        "Modules/config.c.in",
        "extern PyObject* PyInit__ast(void);\n",
        "extern PyObject* PyInit__ast(void);\n"
        "extern const struct _PyAST_Conversions _PyAST_ConversionsTable; "
        "const struct _PyAST_Conversions *const _PyAST_ConversionsLinked = "
        "&_PyAST_ConversionsTable;\n",
    ),
    (
        "Python/bltinmodule.c",
        "    is_ast = PyAST_Check(source);\n",
        "    const struct _PyAST_Conversions *ast_conv = _PyAST_GetConversions();\n"
        "    is_ast = ast_conv != NULL ? ast_conv->check(source) : 0;\n",
    ),
    (
        "Python/bltinmodule.c",
        "            mod = PyAST_obj2mod(source, arena, compile_mode);\n"
        "            if (mod == NULL || !_PyAST_Validate(mod)) {\n",
        "            mod = ast_conv->obj2mod(source, arena, compile_mode);\n"
        "            if (mod == NULL || !ast_conv->validate(mod)) {\n",
    ),
    (
        "Python/pythonrun.c",
        "        PyObject *result = PyAST_mod2obj(mod);\n",
        "        const struct _PyAST_Conversions *ast_conv = _PyAST_GetConversions();\n"
        "        PyObject *result = NULL;\n"
        "        if (ast_conv != NULL) {\n"
        "            result = ast_conv->mod2obj(mod);\n"
        "        }\n"
        "        else {\n"
        "            PyObject *msg = PyUnicode_FromString(\n"
        '                "compile() to AST objects needs the _ast module, which this static "\n'
        '                "executable does not link: none of its modules imports ast");\n'
        '            PyObject *name = PyUnicode_FromString("_ast");\n'
        "            if (msg != NULL && name != NULL) {\n"
        "                PyErr_SetImportErrorSubclass("
        "PyExc_ModuleNotFoundError, msg, name, NULL);\n"
        "            }\n"
        "            Py_XDECREF(msg);\n"
        "            Py_XDECREF(name);\n"
        "        }\n",
    ),
    (
        "Python/pystate.c",
        '#include "pycore_ceval.h"\n',
        '#include "pycore_ast.h"           // _PyAST_GetConversions()\n#include "pycore_ceval.h"\n',
    ),
    (
        "Python/pystate.c",
        "    _PyAST_Fini(interp);\n",
        "    if (_PyAST_GetConversions() != NULL) {\n"
        "        _PyAST_GetConversions()->fini(interp);\n"
        "    }\n",
    ),
)

#: OpenSSL code that stays linked although no path of this build reaches it:
#: - DTLS: ``no-dtls`` drops the DTLS 1.0/1.2 methods, but DTLS_method(), DTLS_server_method()
#:   and DTLS_client_method() stay, and every record and state machine function branches on
#:   SSL_IS_DTLS() (a flag only those methods' enc data, DTLSv1_enc_data and DTLSv1_2_enc_data,
#:   carry) into the d1_*, rec_layer_d1 and statem_dtls code. CPython's ``_ssl`` makes its
#:   contexts from TLS_method(), TLS_client_method() and TLS_server_method() only (and the
#:   disabled SSLv3/TLSv1/TLSv1.1 methods), so SSL_IS_DTLS() is false in every executable:
#:   the edit says so to the compiler.
#: - P-224's 64-bit C implementation (ecp_nistp224.c): no TLS group of this build (X25519,
#:   P-256, X448, P-521, P-384, FFDHE) and no default signature algorithm uses P-224, so only
#:   a certificate or key on that curve reaches it; it then runs on the generic prime-field
#:   code that P-384 uses (same results; slower, like P-384).
#: - DTLS_method(), whose only caller left is statem_lib.c's version check, which compares its
#:   method's version field with it: that field is the constant DTLS_ANY_VERSION, so the edit
#:   compares with the constant and DTLS_method's d1_* and statem_dtls code is not linked.
#: - The MACs no path fetches: BLAKE2BMAC, BLAKE2SMAC, CMAC, GMAC, KMAC-128/256 and POLY1305 as
#:   EVP_MACs. libssl fetches HMAC only (its ChaCha20-Poly1305 calls Poly1305 directly), the
#:   KDFs that fetched CMAC and KMAC (KBKDF, SSKDF) are out (OPENSSL_EDITS), hashlib's hmac
#:   uses HMAC_* (digests, never EVP_MAC) and keyed BLAKE2 comes from CPython's ``_blake2``.
#: - The function names OpenSSL records with each error (``ERR_set_debug``'s ``__func__``):
#:   only ERR_get_error_all() and ERR_peek_*_func/_all() read them, and their one caller here
#:   is ERR_print_errors_cb() from UI_process() (a PEM pass phrase prompt) when the UI has
#:   UI_FLAG_PRINT_ERRORS, which only UI_ctrl() sets, and nothing calls UI_ctrl(); CPython
#:   reads an error's library and reason, never its function (ERR_func_error_string() is NULL
#:   in OpenSSL 3). The names are "" instead, as file names and lines already are
#:   (``no-filenames``).
#: (file, text, replacement)
OPENSSL_UNREACHED_EDITS = (
    (
        "ssl/ssl_local.h",
        "#define SSL_IS_DTLS(s) (s->method->ssl3_enc->enc_flags & SSL_ENC_FLAG_DTLS)\n",
        "#define SSL_IS_DTLS(s) 0 /* scratchpack: no-dtls, and _ssl makes TLS methods only */\n",
    ),
    (
        "crypto/ec/ec_curve.c",
        "    { NID_secp224r1, &_EC_NIST_PRIME_224.h, EC_GFp_nistp224_method,\n",
        "    { NID_secp224r1, &_EC_NIST_PRIME_224.h, 0,\n",
    ),
    (
        "ssl/statem/statem_lib.c",
        "    else if (s->ctx->method->version == DTLS_method()->version)\n",
        "    else if (s->ctx->method->version == DTLS_ANY_VERSION)\n",
    ),
    (
        "providers/defltprov.c",
        '    { PROV_NAMES_BLAKE2BMAC, "provider=default", ossl_blake2bmac_functions },\n'
        '    { PROV_NAMES_BLAKE2SMAC, "provider=default", ossl_blake2smac_functions },\n',
        "",
    ),
    (
        "providers/defltprov.c",
        '    { PROV_NAMES_CMAC, "provider=default", ossl_cmac_functions },\n',
        "",
    ),
    (
        "providers/defltprov.c",
        '    { PROV_NAMES_GMAC, "provider=default", ossl_gmac_functions },\n',
        "",
    ),
    (
        "providers/defltprov.c",
        '    { PROV_NAMES_KMAC_128, "provider=default", ossl_kmac128_functions },\n'
        '    { PROV_NAMES_KMAC_256, "provider=default", ossl_kmac256_functions },\n',
        "",
    ),
    (
        "providers/defltprov.c",
        '    { PROV_NAMES_POLY1305, "provider=default", ossl_poly1305_functions },\n',
        "",
    ),
    (
        "include/openssl/macros.h",
        "#ifndef OPENSSL_FUNC\n#if defined(__STDC_VERSION__)\n",
        '#ifndef OPENSSL_FUNC\n#define OPENSSL_FUNC "" /* scratchpack: nothing reads them */\n'
        "#endif\n"
        "#ifndef OPENSSL_FUNC\n#if defined(__STDC_VERSION__)\n",
    ),
)

# --- end of the fifth size pass ------------------------------------------------------------

#: Stdlib parts that never belong in a static container executable (GUI, IDE, tests, installers).
STDLIB_SKIP = frozenset(
    {
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "turtle.py",
        "ensurepip",
        "venv",
        "lib2to3",
        "pydoc_data",
        "site-packages",
        "__pycache__",
        "config-3.11-x86_64-linux-musl",
    }
)

#: Bumped whenever the cross-build steps change a cross kit's bytes (RECIPE_VERSION would move
#: the host kit's key too).
CROSS_RECIPE_VERSION = "1"

#: configure's answers for a cross build, which it cannot get by running a program: musl has
#: /dev/ptmx-style ptys (no AIX /dev/ptc) and a working getaddrinfo.
CROSS_CONFIG_SITE = (
    ("ac_cv_file__dev_ptmx", "yes"),
    ("ac_cv_file__dev_ptc", "no"),
    ("ac_cv_buggy_getaddrinfo", "no"),
)

#: Fixed build-time clock: __DATE__/__TIME__ in sys.version do not change between builds.
BUILD_EPOCH = "315532800"


@dataclass(frozen=True, slots=True)
class Kit:
    """A built kit on disk, read-only once made."""

    root: Path
    key: str
    python_version: str  # e.g. "3.11.2"
    builtins: tuple[str, ...]  # every built-in module libpython3.11.a can provide
    build_seconds: float
    toolchain: Toolchain
    #: The interpreter that analyses and compiles the app at build time: ``python`` itself, or
    #: for a kit of another machine the host kit's (same sources, same bytecode).
    build_python: Path | None = None

    @property
    def target(self) -> Target:
        return self.toolchain.target

    @property
    def python(self) -> Path:
        """The full static interpreter, for analysing and compiling the app at build time."""
        return self.root / "bin" / f"python{PYTHON_VERSION}"

    @property
    def stdlib(self) -> Path:
        return self.root / "lib" / f"python{PYTHON_VERSION}"

    @property
    def libdir(self) -> Path:
        return self.root / "lib"

    @property
    def include(self) -> Path:
        return self.root / "include" / f"python{PYTHON_VERSION}"

    @property
    def config_c(self) -> Path:
        return self.root / "share" / "config.c"


#: The kit's cache directory (``<cache>/runtime``) and its metadata file (``runtime.json``) keep
#: the names they had before the kit was called a kit: renaming them would orphan every built
#: kit and force a cold rebuild (~4-8 minutes on 2 cores) for no change in bytes.
CACHE_SUBDIR = "runtime"
META_FILE = "runtime.json"


def kit_key(target: Target | None = None) -> str:
    """What decides the kit's bytes: recipe, pinned sources, toolchain, target and options.

    A cross-built kit also depends on the build machine and its kit (the build interpreter
    generates the frozen modules): those enter the key only for a cross target, so the host's
    own kit keeps the key it always had.
    """
    host = host_target()
    target = target or host
    doc: dict[str, object] = {
        "recipe": RECIPE_VERSION,
        "sources": [p.pin for p in PACKAGES],
        "toolchain": ZIG_PIN,
        "target": target.triple,
        "openssl": OPENSSL_OPTIONS,
        "cpython": CPYTHON_OPTIONS,
        "cpython_opt": CPYTHON_OPT,
        "hot": (HOT_OPT, HOT_OBJECTS),
        "cflags": SIZE_CFLAGS,
        "app_flags": (APP_CFLAGS, APP_LDFLAGS),
        "xz": XZ_OPTIONS,
        "libffi": (LIBFFI_OPTIONS, LIBFFI_CFLAGS),
        "sqlite": SQLITE_CFLAGS,
        "ncurses": (NCURSES_OPTIONS, NCURSES_FALLBACKS, NCURSES_MAKE),
        "archives": MODULE_ARCHIVES,
        "ctypes_dl": (CTYPES_DL_CFLAGS, _ctypes_dl_source()),
        "docsig": _package_text("docsig.py"),
        "unfrozen": (UNFROZEN, UNFROZEN_SECTIONS, _FREEZE_LIST),
        "frozen_edits": FROZEN_EDITS,
        "runtime_edits": RUNTIME_EDITS,
        "openssl_edits": OPENSSL_EDITS,
        "ast_edits": AST_EDITS,
        "openssl_unreached_edits": OPENSSL_UNREACHED_EDITS,
    }
    if target != host:
        doc["cross"] = {
            "recipe": CROSS_RECIPE_VERSION,
            "build": host.gnu_triple,
            "build_kit": kit_key(host),
            "config_site": CROSS_CONFIG_SITE,
            "openssl_target": target.openssl,
        }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def _ctypes_dl_source() -> str:
    return _package_text("ctypes_dl.c")


def _package_text(name: str) -> str:
    return importlib.resources.files("scratchpack.freeze.static").joinpath(name).read_text()


def _load(root: Path, key: str, toolchain: Toolchain, build_python: Path | None) -> Kit | None:
    try:
        meta = json.loads((root / META_FILE).read_text())
        if meta["key"] != key or not (root / "lib" / "libpython3.11.a").is_file():
            return None
        return Kit(
            root=root,
            key=key,
            python_version=str(meta["python_version"]),
            builtins=tuple(meta["builtins"]),
            build_seconds=float(meta["build_seconds"]),
            toolchain=toolchain,
            build_python=build_python,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ensure_kit(cache_dir: Path, *, runner: Runner, target: Target | None = None) -> Kit:
    """The cached kit for ``target`` (default: this machine), building it first if needed
    (~5-8 minutes on 2 cores, once; a cross kit first needs the host's)."""
    host = host_target()
    target = target or host
    build_python = None if target == host else ensure_kit(cache_dir, runner=runner).python
    root = cache_dir / CACHE_SUBDIR
    try:
        (root / "tmp").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FreezeError(
            f"cannot create the static CPython kit cache {root}: {err.strerror}",
            hint="set SCRATCHPACK_CACHE_DIR to a writable directory",
        ) from err
    sweep_stale(root / "tmp", "build-")  # what killed kit builds left (~240 MB each)
    toolchain = ensure_toolchain(root, runner=runner, target=target)
    key = kit_key(target)
    kit_dir = root / key
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (kit := _load(kit_dir, key, toolchain, build_python)) is not None:
            return kit
        log(
            f"building the static CPython runtime for {target.platform} (zlib, OpenSSL, bzip2, "
            "xz, SQLite, libffi, ncurses, CPython with zig cc); "
            "this happens once per machine and target and takes a few minutes"
        )
        started = time.monotonic()
        with owned_tempdir("build-", root / "tmp") as work:
            stage = work / "kit"
            cross = _Cross(build_python, _qemu(target)) if build_python else None
            _build(root, work, stage, toolchain, cross, runner=runner)
            builtins = _builtin_names(stage / "share" / "config.c")
            elapsed = round(time.monotonic() - started, 1)
            meta = {
                "key": key,
                "python_version": _python_version(stage, cross, runner=runner),
                "builtins": builtins,
                "build_seconds": elapsed,
                "sources": [p.pin for p in PACKAGES],
                "toolchain": ZIG_PIN,
                "target": target.triple,
            }
            (stage / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
            shutil.rmtree(kit_dir, ignore_errors=True)
            os.replace(stage, kit_dir)
        log(f"static runtime built in {elapsed:.0f} s: {kit_dir}")
        kit = _load(kit_dir, key, toolchain, build_python)
        assert kit is not None
        return kit


@dataclass(frozen=True, slots=True)
class _Cross:
    """How a kit for another machine is built here: the host kit's interpreter runs the build's
    Python steps, and the target's own programs run under qemu."""

    build_python: Path
    qemu: str


def _qemu(target: Target) -> str:
    """The user-mode emulator that runs ``target``'s static programs on this machine."""
    for name in (f"{target.qemu}-static", target.qemu):
        if found := shutil.which(name):
            return found
    raise FreezeError(
        f"building the static runtime for {target.platform} runs a few of its programs "
        f"(ncurses' tic, the interpreter's self-check) on this machine, which needs "
        f"{target.qemu}-static",
        hint="apt-get install qemu-user-static (scripts/install-system-deps does)",
    )


def _builtin_names(config_c: Path) -> list[str]:
    return sorted(set(re.findall(r'^\s*\{"([A-Za-z0-9_]+)",', config_c.read_text(), re.M)))


#: Run by the fresh kit interpreter: builtins keep their signatures and lose their prose, the
#: UNFROZEN modules are not frozen, the frozen ones lost docstrings and columns (FROZEN_EDITS), and
#: a thread starts from the initialiser RUNTIME_EDITS put in place of the runtime's copy.
_PROBE = (
    "assert len.__text_signature__ == '($module, obj, /)' and len.__doc__ is None, len.__doc__; "
    f"import _imp; assert not any(map(_imp.is_frozen, {(*UNFROZEN, '__hello__')!r})), 'frozen'; "
    "assert _imp.is_frozen('posixpath'); import posixpath as p; "
    "assert p.__doc__ is None and all(c is None for _l, _e, c, _x in p.join.__code__.co_positions()"
    "), 'frozen code keeps its docstrings or column positions'; "
    "import _thread; done = _thread.allocate_lock(); done.acquire(); got = []; "
    "_thread.start_new_thread(lambda: (got.append(sum(range(10))), done.release()), ()); "
    "done.acquire(); assert got == [45], 'a new thread state (RUNTIME_EDITS) does not run'"
)


def _python_version(stage: Path, cross: _Cross | None, *, runner: Runner) -> str:
    """The fresh kit interpreter's version, once it has shown that the recipe's source changes
    (docsig.py, UNFROZEN, FROZEN_EDITS) took effect. A
    ``-c`` rather than a script from ``_scripts``: the kit's stdlib lacks the build-time
    sysconfig data the probe reads."""
    exe = stage / "bin" / f"python{PYTHON_VERSION}"
    code = f"{_PROBE}; import platform; print(platform.python_version())"
    emulator = [cross.qemu] if cross else []
    proc = runner([*emulator, str(exe), "-I", "-S", "-c", code])
    if proc.returncode != 0:
        raise FreezeError(
            "the freshly built static python does not run, or the recipe's changes to its "
            "sources (C docstrings cut to signatures, modules unfrozen) did not take effect",
            output=proc.stdout,
            hint="this is a bug in scratchpack's runtime recipe; please report it",
        )
    return proc.stdout.strip().splitlines()[-1]


def _sh(
    runner: Runner, args: list[str], *, cwd: Path, env: dict[str, str], what: str, tool: str
) -> None:
    proc = runner(args, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise FreezeError(
            f"building the static runtime failed while {what}",
            tool=tool,
            output=proc.stdout,
            hint="this is a bug or a missing build tool (make, perl); report it with this "
            "output, or use the pyinstaller runtime",
            remedy="kit-build-failed",
        )


def _edit_sources(root: Path, edits: tuple[tuple[str, str, str], ...]) -> None:
    """Apply the recipe's (file, text, replacement) edits; each text must occur exactly once, so
    a changed source fails the build instead of silently keeping what the edit removed."""
    for rel, text, replacement in edits:
        path = root / rel
        source = path.read_text()
        if source.count(text) != 1:
            raise FreezeError(
                f"{rel} does not hold {text.strip()!r} once",
                tool="the kit recipe",
                hint="this is a bug in scratchpack's runtime recipe; please report it",
            )
        path.write_text(source.replace(text, replacement))


#: Debian packages of the build tools whose package name differs from the tool's.
_TOOL_PACKAGES = {"tclsh": "tcl", "readelf": "binutils"}  # tclsh generates SQLite's amalgamation


def _build(
    root: Path,
    work: Path,
    stage: Path,
    toolchain: Toolchain,
    cross: _Cross | None = None,
    *,
    runner: Runner,
) -> None:
    target = toolchain.target
    # autoconf configures are told they cross-compile; otherwise they try to run what they build
    host = [f"--host={target.triple}", f"--build={host_target().gnu_triple}"] if cross else []
    for tool in ("make", "perl", "tclsh", *(("readelf",) if cross else ())):
        if shutil.which(tool) is None:
            raise FreezeError(
                f"{tool} is not installed; it is needed once to build the static runtime",
                hint=f"apt-get install {_TOOL_PACKAGES.get(tool, tool)} "
                "(scripts/install-system-deps does)",
            )
    srcs = fetch_sources(root, work, runner=runner)
    deps = work / "deps"  # zlib and OpenSSL headers + static libraries
    env = toolchain.environ()
    env["SOURCE_DATE_EPOCH"] = BUILD_EPOCH
    env["SCRATCHPACK_PREFIX_MAP"] = f"{work}=/build"
    env["PKG_CONFIG_LIBDIR"] = str(deps / "lib" / "pkgconfig")  # never the host's libraries
    env["PKG_CONFIG_PATH"] = ""
    for var in ("CFLAGS", "CPPFLAGS", "LDFLAGS", "LIBS", "MAKEFLAGS", "PYTHONPATH", "PYTHONHOME"):
        env.pop(var, None)
    jobs = f"-j{max(1, min(os.cpu_count() or 1, 8))}"
    size = " ".join(SIZE_CFLAGS)

    zlib = srcs["zlib"]
    with step("compiling zlib"):
        _sh(
            runner,
            ["./configure", "--static", f"--prefix={deps}"],
            cwd=zlib,
            env={**env, "CFLAGS": size},
            what="configuring zlib",
            tool="zlib configure",
        )
        _sh(runner, ["make", jobs, "libz.a"], cwd=zlib, env=env, what="compiling zlib", tool="make")
        _sh(runner, ["make", "install"], cwd=zlib, env=env, what="installing zlib", tool="make")

    ssl = srcs["openssl"]
    _edit_sources(ssl, (*OPENSSL_EDITS, *OPENSSL_UNREACHED_EDITS))
    with step("compiling OpenSSL (the longest step)"):
        _sh(
            runner,
            [
                "perl",
                "./Configure",
                target.openssl,
                *OPENSSL_OPTIONS,
                f"--prefix={INSTALL_PREFIX}",
                f"--openssldir={OPENSSL_DIR}",
                "--libdir=lib",
                *SIZE_CFLAGS,
            ],
            cwd=ssl,
            env=env,
            what="configuring OpenSSL",
            tool="OpenSSL Configure",
        )
        _sh(
            runner,
            ["make", jobs, "build_libs"],
            cwd=ssl,
            env=env,
            what="compiling OpenSSL",
            tool="make",
        )
        dest = work / "ssl-dest"
        _sh(
            runner,
            ["make", "install_dev", f"DESTDIR={dest}"],
            cwd=ssl,
            env=env,
            what="installing OpenSSL",
            tool="make",
        )
        _check_p256(ssl / "crypto" / "ec" / "libcrypto-lib-ec_curve.o")
        installed = dest / INSTALL_PREFIX.lstrip("/")
        (deps / "lib").mkdir(parents=True, exist_ok=True)
        for lib in ("libssl.a", "libcrypto.a"):
            shutil.copy2(installed / "lib" / lib, deps / "lib" / lib)
        shutil.copytree(installed / "include" / "openssl", deps / "include" / "openssl")
        for pc in (installed / "lib" / "pkgconfig").glob("*.pc"):
            text = pc.read_text().replace(f"prefix={INSTALL_PREFIX}", f"prefix={deps}")
            (deps / "lib" / "pkgconfig" / pc.name).write_text(text)

    _build_libraries(srcs, deps, env, jobs, host=host, cross=cross, runner=runner)

    py = srcs["python3.11"]
    with step("cutting CPython's C docstrings to their signatures"):
        docs = docsig.rewrite_tree(py)
        if docs.signatures == 0:
            raise FreezeError(
                "no C docstring signature was found in the CPython sources",
                tool="docsig.py",
                hint="this is a bug in scratchpack's runtime recipe; please report it",
            )
    with step("taking the modules a static executable does not start with off the frozen list"):
        _sh(
            runner,
            [sys.executable, "-I", "-c", _FREEZE_LIST, ",".join(UNFROZEN_SECTIONS), *UNFROZEN],
            cwd=py,
            env=env,
            what="regenerating the frozen module list",
            tool="Tools/scripts/freeze_modules.py",
        )
    with step(
        "compiling the frozen modules without docstrings or column positions, and "
        "without the runtime state's second copy"
    ):
        _edit_sources(py, (*FROZEN_EDITS, *RUNTIME_EDITS, *AST_EDITS))
    cross_env: dict[str, str] = {}
    if cross:
        site = work / "config.site"
        site.write_text("".join(f"{k}={v}\n" for k, v in CROSS_CONFIG_SITE))
        readelf = shutil.which("readelf")
        assert readelf is not None  # checked above
        cross_env = {"CONFIG_SITE": str(site), "READELF": readelf}
        host += [f"--with-build-python={cross.build_python}"]
    with step("configuring CPython"):
        _sh(
            runner,
            [
                "./configure",
                *host,
                *CPYTHON_OPTIONS,
                f"--with-openssl={deps}",
                f"--prefix={INSTALL_PREFIX}",
            ],
            cwd=py,
            env={
                **env,
                "MODULE_BUILDTYPE": "static",
                # zig enables UBSan when not optimising and -Werror=date-time by default
                "CFLAGS": f"{size} -fno-sanitize=undefined",
                "OPT": CPYTHON_OPT,
                "CPPFLAGS": f"-I{deps / 'include'} -I{deps / 'include' / 'ncursesw'}",
                "LDFLAGS": f"-static -L{deps / 'lib'}",
                **cross_env,
            },
            what="configuring CPython",
            tool="CPython configure",
        )
    # CPython 3.11 uses Setup.stdlib only for WASM; on Linux every module to build in must be
    # listed in Setup.local. configure has already resolved which ones this toolchain supports.
    lines = []
    for line in (py / "Modules" / "Setup.stdlib").read_text().splitlines():
        if line.strip() == "*shared*":
            break  # what follows are test modules, never built in
        if line.strip() and not line.startswith("#"):
            lines.append(line)
    lines += _extra_setup_lines(deps)
    (py / "Modules" / "_ctypes" / "scratchpack_dl.c").write_text(_ctypes_dl_source())
    setup_local = py / "Modules" / "Setup.local"
    setup_local.write_text("\n".join(lines) + "\n")
    # make regenerates Makefile and config.c from the Setup files only when one is newer than
    # the Makefile configure just wrote, possibly within the same second: say that it is.
    newer = (py / "Makefile").stat().st_mtime + 2
    os.utime(setup_local, (newer, newer))
    with step(f"compiling the interpreter's hot objects at {HOT_OPT}"):
        # before the rest: make then finds them up to date and keeps them
        _sh(
            runner,
            # -Xclang too: SIZE_CFLAGS' -Xclang=-Oz would otherwise override the driver's -O2
            ["make", jobs, f"EXTRA_CFLAGS={HOT_OPT} -Xclang={HOT_OPT}", *HOT_OBJECTS],
            cwd=py,
            env=env,
            what="compiling the interpreter's hot objects",
            tool="make",
        )
    with step("compiling CPython"):
        _sh(
            runner,
            ["make", jobs, "python", "LINKFORSHARED= "],
            cwd=py,
            # a cross build freezes with the build machine's kit interpreter (_freeze_module.py,
            # optimize=2 by FROZEN_EDITS): no column positions either, as _freeze_module gives
            env={**env, "PYTHONNODEBUGRANGES": "1"} if cross else env,
            what="compiling CPython",
            tool="make",
        )
    table = (py / "Modules" / "config.c").read_text()
    for required in ("_socket", "_ssl", "_hashlib", "zlib", "select", "math", *MODULE_ARCHIVES):
        if f"PyInit_{required}(" not in table:
            raise FreezeError(
                f"the static runtime was built without the {required} module",
                tool="Modules/Setup.local",
                output=setup_local.read_text(),
                hint="this is a bug in scratchpack's runtime recipe; please report it",
            )
    _install(py, deps, stage)
    with step("preparing zig's libc for app links"):
        stub = work / "stub.c"
        stub.write_text("int main(void) { return 0; }\n")
        _sh(
            runner,
            ["zcc", *APP_CFLAGS, *APP_LDFLAGS, "-o", str(work / "stub"), str(stub)],
            cwd=work,
            env=env,
            what="linking a test program",
            tool="zig cc",
        )


def _check_p256(ec_curve: Path) -> None:
    """OpenSSL's curve table must name the C P-256 code, not the assembler one: a later
    OpenSSL that put its own defines after the user's flags would silently bring the 150 KB
    table back."""
    symbols = ec_curve.read_bytes()
    if b"EC_GFp_nistz256_method" in symbols or b"EC_GFp_nistp256_method" not in symbols:
        raise FreezeError(
            f"OpenSSL's P-256 was not switched to its C implementation "
            f"(-U{OPENSSL_NISTZ256_MACRO} had no effect on {ec_curve.name})",
            tool="OpenSSL Configure",
            hint="this is a bug in scratchpack's runtime recipe; please report it",
        )


def _install(py: Path, deps: Path, stage: Path) -> None:
    version = PYTHON_VERSION
    (stage / "bin").mkdir(parents=True)
    (stage / "share").mkdir()
    libdir = stage / "lib"
    libdir.mkdir()
    exe = stage / "bin" / f"python{version}"
    shutil.copy2(py / "python", exe)
    shutil.copy2(py / f"libpython{version}.a", libdir / f"libpython{version}.a")
    for lib in ("libssl.a", "libcrypto.a", "libz.a"):
        shutil.copy2(deps / "lib" / lib, libdir / lib)
    shutil.copy2(py / "Modules" / "_decimal" / "libmpdec" / "libmpdec.a", libdir / "libmpdec.a")
    shutil.copy2(py / "Modules" / "expat" / "libexpat.a", libdir / "libexpat.a")
    for archives in MODULE_ARCHIVES.values():
        for lib in archives:
            if not (libdir / lib).is_file():
                shutil.copy2(deps / "lib" / lib, libdir / lib)
    shutil.copy2(py / "Modules" / "config.c", stage / "share" / "config.c")
    include = stage / "include" / f"python{version}"
    shutil.copytree(py / "Include", include)
    shutil.copy2(py / "pyconfig.h", include / "pyconfig.h")

    def skip(_dir: str, names: list[str]) -> list[str]:
        return [n for n in names if n in STDLIB_SKIP or n.endswith((".pyc", ".exe", ".bat"))]

    stdlib = libdir / f"python{version}"
    shutil.copytree(py / "Lib", stdlib, ignore=skip)
    # getpath's landmark for the build interpreter's prefix; the runtime itself never reads it
    (stdlib / "lib-dynload").mkdir(exist_ok=True)


def _extra_setup_lines(deps: Path) -> list[str]:
    """Setup.local lines for the C modules 3.11 builds only through setup.py (not Setup.stdlib).

    makesetup reads a line containing "=" as a Makefile variable, hence the bare ``-DNAME``s
    and the dl* renames passed through a variable.
    """
    inc, lib = deps / "include", deps / "lib"
    curses = f"-DHAVE_NCURSESW -I{inc / 'ncursesw'} -L{lib}"
    return [
        "SCRATCHPACK_DL_CFLAGS=" + " ".join(CTYPES_DL_CFLAGS),
        "_ctypes _ctypes/_ctypes.c _ctypes/callbacks.c _ctypes/callproc.c _ctypes/stgdict.c "
        "_ctypes/cfield.c _ctypes/scratchpack_dl.c -DHAVE_FFI_PREP_CIF_VAR "
        "-DHAVE_FFI_PREP_CLOSURE_LOC -DHAVE_FFI_CLOSURE_ALLOC $(SCRATCHPACK_DL_CFLAGS) "
        f"-I{inc} -L{lib} -lffi",
        f"_curses _cursesmodule.c {curses} -lncursesw",
        f"_curses_panel _curses_panel.c {curses} -lpanelw -lncursesw",
    ]


def _build_libraries(
    srcs: dict[str, Path],
    deps: Path,
    env: dict[str, str],
    jobs: str,
    *,
    host: list[str],
    cross: _Cross | None,
    runner: Runner,
) -> None:
    """bzip2, liblzma, SQLite, libffi and ncursesw: static, headers and archives into ``deps``.
    ``host`` is the cross build's --host/--build pair for the autoconf configures (else empty)."""
    size = " ".join(SIZE_CFLAGS)
    lib, inc = deps / "lib", deps / "include"
    lib.mkdir(parents=True, exist_ok=True)
    inc.mkdir(parents=True, exist_ok=True)

    def run(cwd: Path, *args: str, what: str, tool: str = "make", cflags: str = "") -> None:
        extra = {"CFLAGS": cflags} if cflags else {}
        _sh(runner, list(args), cwd=cwd, env={**env, **extra}, what=what, tool=tool)

    bz = srcs["bzip2"]
    with step("compiling bzip2"):
        # its Makefile hardcodes CC=gcc and CFLAGS: override both on the command line
        cc = ["CC=zcc", "AR=zar", "RANLIB=zranlib", f"CFLAGS={size} -D_FILE_OFFSET_BITS=64"]
        run(bz, "make", jobs, "libbz2.a", *cc, what="compiling bzip2")
        shutil.copy2(bz / "libbz2.a", lib / "libbz2.a")
        shutil.copy2(bz / "bzlib.h", inc / "bzlib.h")

    xz = srcs["xz-utils"]
    with step("compiling liblzma"):
        configure = ["./configure", *host, f"--prefix={deps}", *XZ_OPTIONS]
        run(xz, *configure, what="configuring xz", tool="xz configure", cflags=size)
        run(xz, "make", jobs, "-C", "src/liblzma", "install", what="compiling liblzma")

    sq = srcs["sqlite3"]
    with step("compiling SQLite"):
        configure = ["./configure", *host, "--disable-tcl", "--disable-readline"]
        configure += ["--disable-editline"]
        run(sq, *configure, what="configuring SQLite", tool="SQLite configure", cflags=size)
        if cross:  # Debian's Makefile links lemon for the target: use its build-machine rule
            run(sq, "make", "lemon-for-build", what="compiling SQLite's lemon for this machine")
            shutil.copy2(sq / "lemon-for-build", sq / "lemon")
        # the single-file amalgamation (generated with tclsh), compiled with our own flags
        run(sq, "make", "sqlite3.c", what="generating sqlite3.c")
        cc = ["zcc", *SIZE_CFLAGS, *SQLITE_CFLAGS, "-I.", "-c", "sqlite3.c", "-o", "sqlite3.o"]
        run(sq, *cc, what="compiling SQLite", tool="zig cc")
        run(sq, "zar", "rcs", str(lib / "libsqlite3.a"), "sqlite3.o", what="archiving SQLite")
        shutil.copy2(sq / "sqlite3.h", inc / "sqlite3.h")

    ffi = srcs["libffi"]
    with step("compiling libffi"):
        configure = ["./configure", *host, f"--prefix={deps}", *LIBFFI_OPTIONS]
        flags = " ".join((*SIZE_CFLAGS, *LIBFFI_CFLAGS))
        run(ffi, *configure, what="configuring libffi", tool="libffi configure", cflags=flags)
        run(ffi, "make", jobs, "install", what="compiling libffi")

    nc = srcs["ncurses"]
    with step("compiling ncurses"):
        tic, infocmp = nc / "progs" / "tic", nc / "progs" / "infocmp"
        if cross:  # this ncurses' own tic and infocmp are target programs: run them emulated
            for prog in (tic, infocmp):
                wrapper = nc / f"run-{prog.name}"
                wrapper.write_text(f'#!/bin/sh\nexec "{cross.qemu}" "{prog}" "$@"\n')
                wrapper.chmod(0o755)
            tic, infocmp = nc / "run-tic", nc / "run-infocmp"
        configure = [
            "./configure",
            *host,
            f"--prefix={deps}",
            *NCURSES_OPTIONS,
            f"--with-fallbacks={','.join(NCURSES_FALLBACKS)}",
            f"--with-tic-path={tic}",
            f"--with-infocmp-path={infocmp}",
        ]
        run(nc, *configure, what="configuring ncurses", tool="ncurses configure", cflags=size)
        # The fallbacks are compiled by this very ncurses' tic and infocmp, never the host's:
        # build the library with an empty fallback table, then tic and infocmp with it, then
        # the library again with the real table.
        make = ["make", jobs, *NCURSES_MAKE]
        run(nc, *make, "-C", "include", what="generating the ncurses headers")
        empty = "sh ncurses/tinfo/MKfallback.sh x x '' '' > ncurses/fallback.c"
        run(nc, "sh", "-c", empty, what="writing an empty fallback table", tool="sh")
        run(nc, *make, "-C", "ncurses", what="compiling ncurses")
        run(nc, *make, "-C", "progs", "tic", "infocmp", what="compiling tic")
        (nc / "ncurses" / "fallback.c").unlink()
        run(nc, *make, "-C", "ncurses", what="compiling ncurses with its fallbacks")
        run(nc, *make, "-C", "panel", what="compiling the ncurses panel library")
        for part in ("include", "panel"):
            run(nc, *make, "-C", part, "install.includes", what="installing ncurses headers")
        if "fallback entries for" not in (nc / "ncurses" / "fallback.c").read_text():
            raise FreezeError(
                "the ncurses build compiled no fallback terminal descriptions",
                tool="ncurses MKfallback.sh",
                hint="this is a bug in scratchpack's runtime recipe; please report it",
            )
        for name in ("libncursesw.a", "libpanelw.a"):
            shutil.copy2(nc / "lib" / name, lib / name)
