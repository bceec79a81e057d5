/* scratchpack static runtime: zipimport's table of contents, read in C.
 *
 * Why: the app's modules are members of the zip appended to the executable, and zipimport reads
 * that zip's central directory once per process with _read_directory(), a Python loop that
 * costs ~15 us per member (several reads, slices and unpacks each): 5 ms for an aiohttp server,
 * tens of ms for a Django site, all before the first app module is imported. The same table
 * built here costs well under a microsecond per member.
 *
 * Also, CPython 3.11's zipimporter reads and unmarshals every module TWICE: find_spec() asks
 * get_filename(), which loads the code only to return its path, then exec_module() loads it
 * again. For the executable's own zip (every .pyc compiled by this interpreter, so none is
 * rejected) link.py's ZIPIMPORT_PATCH answers from the table instead: ~13% of an aiohttp
 * server's import time (docs/benchmarks.md).
 *
 * How: scratchpack_zipdir_install() runs between the core and the main phase of the
 * interpreter's initialisation (before the first zip import: the encodings package) and
 * replaces zipimport._read_directory with read_directory() below. It returns exactly what the
 * Python function returns (name -> (path, compress, data_size, file_size, file_offset, time,
 * date, crc)) for a plain zip: end record last (no comment), no zip64, ASCII or UTF-8-flagged
 * names. For anything else (another zip on sys.path, a damaged one, -v) it calls the original
 * function, so errors and odd archives behave as CPython's own code makes them behave.
 *
 * It replaces zipimport._get_data too, which reads one member for every module imported: the
 * Python function opens the archive through io.open_code (a FileIO and a BufferedReader, nine
 * system calls) and seeks and reads through them; get_data() below makes one open, two preads
 * and a close, and hands a deflated member to the same zlib function. Same results, same
 * "open" audit event; any oddity (a method other than stored or deflated, a short read, a bad
 * local header) goes to the original, which raises what CPython raises.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static uint32_t u16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t u32(const unsigned char *p) { return u16(p) | u16(p + 2) << 16; }

/* The central directory and end record of the zip at the end of `fd`'s file, and where the
 * central directory starts in it; NULL if the file is not a plain zip (the caller falls back). */
static unsigned char *read_tail(int fd, size_t *len, uint64_t *cd_pos, uint32_t *cd_offset) {
    struct stat st;
    unsigned char end[22];
    if (fstat(fd, &st) != 0 || st.st_size < 22 ||
        pread(fd, end, sizeof end, st.st_size - 22) != (ssize_t)sizeof end ||
        memcmp(end, "PK\005\006", 4) != 0) {
        return NULL;
    }
    uint64_t end_pos = (uint64_t)st.st_size - 22;
    uint32_t cd_size = u32(end + 12);
    *cd_offset = u32(end + 16);
    if (end_pos < cd_size || end_pos < *cd_offset || end_pos - cd_size < *cd_offset) {
        return NULL;
    }
    *cd_pos = end_pos - cd_size;
    *len = cd_size + sizeof end;
    unsigned char *buf = malloc(*len);
    if (buf == NULL || pread(fd, buf, *len, (off_t)*cd_pos) != (ssize_t)*len) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* zipimport's _path_join(archive, name) on POSIX: '/'.join(p.rstrip('/') for p in parts if p). */
static PyObject *join(PyObject *prefix, PyObject *archive_stripped, const char *name, size_t n) {
    size_t stripped = n;
    while (stripped > 0 && name[stripped - 1] == '/') {
        stripped--;
    }
    if (n == 0) {
        Py_INCREF(archive_stripped);
        return archive_stripped;
    }
    PyObject *tail = PyUnicode_DecodeUTF8(name, (Py_ssize_t)stripped, NULL);
    if (tail == NULL || prefix == NULL) {
        return tail;
    }
    PyObject *path = PyUnicode_Concat(prefix, tail);
    Py_DECREF(tail);
    return path;
}

/* The archive opened for reading, or -1 with no exception set. */
static int open_archive(PyObject *archive) {
    PyObject *encoded = PyUnicode_EncodeFSDefault(archive);
    if (encoded == NULL) {
        PyErr_Clear();
        return -1;
    }
    int fd = open(PyBytes_AS_STRING(encoded), O_RDONLY | O_CLOEXEC);
    Py_DECREF(encoded);
    return fd;
}

/* The table, or NULL with no exception set when the archive needs CPython's own reader. */
static PyObject *table(PyObject *archive) {
    if (Py_VerboseFlag) { /* the Python reader prints "zipimport: found N names" */
        return NULL;
    }
    int fd = open_archive(archive);
    if (fd < 0) {
        return NULL;
    }
    size_t len;
    uint64_t cd_pos;
    uint32_t cd_offset;
    unsigned char *buf = read_tail(fd, &len, &cd_pos, &cd_offset);
    close(fd);
    if (buf == NULL) {
        return NULL;
    }
    uint64_t arc_offset = cd_pos - cd_offset;
    PyObject *files = PyDict_New();
    PyObject *archive_stripped = PyObject_CallMethod(archive, "rstrip", "s", "/");
    PyObject *prefix = NULL;
    int ok = files != NULL && archive_stripped != NULL;
    if (ok && PyUnicode_GET_LENGTH(archive) > 0) {
        prefix = PyUnicode_FromFormat("%U/", archive_stripped);
        ok = prefix != NULL;
    }
    size_t pos = 0;
    while (ok) {
        if (len - pos < 4) {
            ok = 0; /* the Python reader raises EOFError: let it */
            break;
        }
        const unsigned char *h = buf + pos;
        if (memcmp(h, "PK\001\002", 4) != 0) {
            break; /* the end record: done, as in the Python reader */
        }
        if (len - pos < 46) {
            ok = 0;
            break;
        }
        uint32_t flags = u16(h + 8), name_size = u16(h + 28);
        uint32_t rest = u16(h + 30) + u16(h + 32), file_offset = u32(h + 42);
        uint32_t data_size = u32(h + 20), file_size = u32(h + 24);
        if (file_offset > cd_offset || len - pos - 46 < (size_t)name_size + rest ||
            data_size == 0xFFFFFFFFu || file_size == 0xFFFFFFFFu || file_offset == 0xFFFFFFFFu) {
            ok = 0;
            break;
        }
        const char *name = (const char *)h + 46;
        if (!(flags & 0x800)) { /* not UTF-8: ASCII here, cp437 is the Python reader's job */
            for (uint32_t i = 0; i < name_size; i++) {
                if ((unsigned char)name[i] >= 0x80) {
                    ok = 0;
                    break;
                }
            }
            if (!ok) {
                break;
            }
        }
        PyObject *key = PyUnicode_DecodeUTF8(name, name_size, NULL);
        PyObject *path = key != NULL ? join(prefix, archive_stripped, name, name_size) : NULL;
        PyObject *entry = path != NULL
            ? Py_BuildValue("(NIIIKIII)", path, u16(h + 10), data_size, file_size,
                            (unsigned long long)(file_offset + arc_offset), u16(h + 12),
                            u16(h + 14), u32(h + 16))
            : NULL;
        if (entry == NULL || PyDict_SetItem(files, key, entry) != 0) {
            Py_XDECREF(key);
            Py_XDECREF(entry);
            PyErr_Clear(); /* a name that is not valid UTF-8: the Python reader's error */
            ok = 0;
            break;
        }
        Py_DECREF(key);
        Py_DECREF(entry);
        pos += 46 + (size_t)name_size + rest;
    }
    free(buf);
    Py_XDECREF(prefix);
    Py_XDECREF(archive_stripped);
    if (!ok) {
        Py_XDECREF(files);
        PyErr_Clear();
        return NULL;
    }
    return files;
}

/* zipimport._read_directory's replacement; `original` is the function it replaces. */
static PyObject *read_directory(PyObject *original, PyObject *archive) {
    PyObject *files = PyUnicode_Check(archive) ? table(archive) : NULL;
    if (files != NULL) {
        return files;
    }
    return PyObject_CallOneArg(original, archive);
}

/* const: read-only data, so the executable's data segment (and file size) does not grow;
 * CPython only reads a PyMethodDef. */
static const PyMethodDef read_directory_def = {
    "_read_directory", (PyCFunction)read_directory, METH_O, NULL};

/* pread all of `len` bytes at `pos`, or fail (-1); the GIL is released as io's reads do. */
static int read_at(int fd, void *buf, size_t len, uint64_t pos) {
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n;
        Py_BEGIN_ALLOW_THREADS
        n = pread(fd, p, len, (off_t)pos);
        Py_END_ALLOW_THREADS
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        p += n;
        pos += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

/* zlib.decompress as zipimport._get_decompress_func() returns it, fetched once. */
static PyObject *decompress;

/* A member's bytes (inflated when deflated), or NULL with no exception set when the original
 * should handle the call. `entry` is a table entry: (path, compress, data_size, file_size,
 * file_offset, time, date, crc). */
static PyObject *member(PyObject *archive, PyObject *entry) {
    if (!PyUnicode_Check(archive) || !PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 8) {
        return NULL;
    }
    long compress = PyLong_AsLong(PyTuple_GET_ITEM(entry, 1));
    Py_ssize_t data_size = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 2));
    Py_ssize_t file_size = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 3));
    unsigned long long offset = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(entry, 4));
    if (PyErr_Occurred() || (compress != 0 && compress != 8) || data_size < 0 || file_size < 0 ||
        file_size == PY_SSIZE_T_MAX) {
        PyErr_Clear();
        return NULL;
    }
    if (compress == 8 && decompress == NULL) {
        PyObject *zipimport = PyImport_ImportModule("zipimport");
        decompress = zipimport != NULL
            ? PyObject_CallMethod(zipimport, "_get_decompress_func", NULL)
            : NULL;
        Py_XDECREF(zipimport);
        if (decompress == NULL) {
            PyErr_Clear();
            return NULL;
        }
    }
    /* what io.open_code reports, as the Python reader's open does */
    if (PySys_Audit("open", "Osi", archive, "rb", 0) < 0) {
        return NULL; /* the hook's exception, as the Python reader's open would raise it */
    }
    int fd = open_archive(archive);
    if (fd < 0) {
        return NULL;
    }
    unsigned char header[30];
    PyObject *data = NULL;
    if (read_at(fd, header, sizeof header, offset) == 0 && memcmp(header, "PK\003\004", 4) == 0) {
        data = PyBytes_FromStringAndSize(NULL, data_size);
        uint64_t start = offset + sizeof header + u16(header + 26) + u16(header + 28);
        if (data != NULL && read_at(fd, PyBytes_AS_STRING(data), (size_t)data_size, start) != 0) {
            Py_CLEAR(data);
        }
    }
    close(fd);
    if (data == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (compress == 0) {
        return data;
    }
    /* Room for one byte more than the member holds: zlib then reads the end of the stream
     * within the first output block. With exactly the size, or zlib.decompress's 16 KiB
     * default, it grows the output by a fresh 32 KiB+ block (a mapping of its own here) and
     * copies the blocks together: -18 % inflate time for webhello's modules. A size no
     * deflate stream of data_size bytes could reach (1032:1 at most) is not believed. */
    PyObject *wbits = PyLong_FromLong(-15);
    PyObject *room = PyLong_FromSsize_t(file_size / 1032 <= data_size ? file_size + 1 : 16384);
    PyObject *inflated = wbits != NULL && room != NULL
        ? PyObject_CallFunctionObjArgs(decompress, data, wbits, room, NULL)
        : NULL;
    Py_XDECREF(wbits);
    Py_XDECREF(room);
    Py_DECREF(data);
    return inflated; /* zlib's own error, if the data is damaged, as the original raises it */
}

/* zipimport._get_data's replacement; `original` is the function it replaces. */
static PyObject *get_data(PyObject *original, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *data = nargs == 2 ? member(args[0], args[1]) : NULL;
    if (data != NULL || PyErr_Occurred()) {
        return data;
    }
    return PyObject_Vectorcall(original, args, (size_t)nargs, NULL);
}

static const PyMethodDef get_data_def = {
    "_get_data", (PyCFunction)(void (*)(void))get_data, METH_FASTCALL, NULL};

/* Replace zipimport's function of `def`'s name by `def`, bound to the original; a failure
 * leaves it. */
static void replace(PyObject *zipimport, const PyMethodDef *def) {
    PyObject *original = PyObject_GetAttrString(zipimport, def->ml_name);
    PyObject *fast = original != NULL ? PyCFunction_New((PyMethodDef *)def, original) : NULL;
    if (fast == NULL || PyObject_SetAttrString(zipimport, def->ml_name, fast) != 0) {
        PyErr_Clear();
    }
    Py_XDECREF(fast);
    Py_XDECREF(original);
}

/* Called between the core and main initialisation phases; a failure leaves zipimport as is.
 * `get_filename` is link.py's ZIPIMPORT_PATCH, compiled at build time (NULL: not installed). */
void scratchpack_zipdir_install(PyObject *get_filename) {
    PyObject *zipimport = PyImport_ImportModule("zipimport");
    if (zipimport == NULL) {
        PyErr_Clear();
        return;
    }
    replace(zipimport, &read_directory_def);
    replace(zipimport, &get_data_def);
    PyObject *ns = PyModule_GetDict(zipimport); /* borrowed */
    PyObject *done = get_filename != NULL ? PyEval_EvalCode(get_filename, ns, ns) : NULL;
    if (done == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(done);
    Py_DECREF(zipimport);
}
