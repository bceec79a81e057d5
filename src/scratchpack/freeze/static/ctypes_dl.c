/* scratchpack: the dynamic-loading calls of _ctypes in a fully static executable.
 *
 * musl's static libc has no dynamic loader: its dlopen() fails even for NULL, so
 * `import ctypes` (which opens the running program as `pythonapi`) would fail. Here
 * dlopen(NULL) returns a handle to the executable itself, whose dlsym() finds the C API
 * functions listed below; any other dlopen() fails with a message that says why.
 * The kit recipe (runtime.py) compiles _ctypes with -Ddlopen=scratchpack_dlopen (and dlsym,
 * dlerror, dlclose) and this file as Modules/_ctypes/scratchpack_dl.c.
 */
#include "Python.h"
#include "frameobject.h"  /* PyFrame_LocalsToFast */
#include <stdio.h>
#include <string.h>

static char scratchpack_self;
static char scratchpack_error[512];
static int scratchpack_has_error;

#define SCRATCHPACK_SYM(name) {#name, (void *)&name}
static const struct {
    const char *name;
    void *address;
} scratchpack_symbols[] = {
    SCRATCHPACK_SYM(Py_DecRef),
    SCRATCHPACK_SYM(Py_IncRef),
    SCRATCHPACK_SYM(PyBytes_FromStringAndSize),
    SCRATCHPACK_SYM(PyCapsule_GetName),
    SCRATCHPACK_SYM(PyCapsule_GetPointer),
    SCRATCHPACK_SYM(PyCapsule_IsValid),
    SCRATCHPACK_SYM(PyCapsule_New),
    SCRATCHPACK_SYM(PyErr_Clear),
    SCRATCHPACK_SYM(PyErr_Occurred),
    SCRATCHPACK_SYM(PyErr_SetString),
    SCRATCHPACK_SYM(PyEval_GetFrame),
    SCRATCHPACK_SYM(PyFrame_LocalsToFast),
    SCRATCHPACK_SYM(PyGILState_Ensure),
    SCRATCHPACK_SYM(PyGILState_Release),
    SCRATCHPACK_SYM(PyLong_AsLong),
    SCRATCHPACK_SYM(PyLong_FromLong),
    SCRATCHPACK_SYM(PyMem_Free),
    SCRATCHPACK_SYM(PyMem_Malloc),
    SCRATCHPACK_SYM(PyObject_GetAttrString),
    SCRATCHPACK_SYM(PyObject_Repr),
    SCRATCHPACK_SYM(PyObject_Str),
    SCRATCHPACK_SYM(PyThreadState_SetAsyncExc),
    SCRATCHPACK_SYM(PyUnicode_FromString),
    SCRATCHPACK_SYM(Py_GetVersion),
};

void *scratchpack_dlopen(const char *file, int mode)
{
    (void)mode;
    if (file == NULL) {
        return &scratchpack_self;
    }
    snprintf(scratchpack_error, sizeof(scratchpack_error),
             "%s: cannot load a shared library: this is a fully static executable "
             "(scratchpack --runtime static) with no dynamic loader", file);
    scratchpack_has_error = 1;
    return NULL;
}

void *scratchpack_dlsym(void *handle, const char *name)
{
    if (handle == &scratchpack_self || handle == NULL) {
        for (size_t i = 0; i < sizeof(scratchpack_symbols) / sizeof(scratchpack_symbols[0]); i++) {
            if (strcmp(scratchpack_symbols[i].name, name) == 0) {
                return scratchpack_symbols[i].address;
            }
        }
    }
    snprintf(scratchpack_error, sizeof(scratchpack_error),
             "symbol not found: %s (a static executable has no symbol table to search; "
             "ctypes.pythonapi holds only a few C API functions)", name);
    scratchpack_has_error = 1;
    return NULL;
}

char *scratchpack_dlerror(void)
{
    if (!scratchpack_has_error) {
        return NULL;
    }
    scratchpack_has_error = 0;
    return scratchpack_error;
}

int scratchpack_dlclose(void *handle)
{
    (void)handle;
    return 0;
}
