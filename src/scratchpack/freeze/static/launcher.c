/* scratchpack static launcher: runs the bytecode zip appended to this executable, in place.
 *
 * Why a custom main: the interpreter must find its modules inside its own file (no Python home,
 * no /tmp, no /proc needed), ignore PYTHON* variables like an isolated interpreter, and run the
 * entry point without runpy. The entry point's code is linked in as scratchpack_bootstrap, a
 * code object compiled and marshalled at build time (compiling its source cost ~1.5 ms a start).
 *
 * The same file is also the Python interpreter, in exactly two cases (python_mode): the command
 * lines multiprocessing gives its children (always), and SCRATCHPACK_PYTHON=1 (an explicit
 * opt-in: `app -c X` must stay the app's own -c, e.g. gunicorn's config file).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <marshal.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* link.py: the marshalled tuple (zipimport's get_filename patch, the bootstrap, the setup run
 * before it), code objects. */
extern const unsigned char scratchpack_bootstrap[];
extern const size_t scratchpack_bootstrap_size;

/* CPython's flag (pythonrun.c) for an exception that ended the program being KeyboardInterrupt:
 * Py_RunMain() then exits by SIGINT, as a shell expects of a program stopped by ^C. */
extern int _Py_UnhandledKeyboardInterrupt;

/* The setup code (the <exe>/ path hook, the extension finder) runs first, in its own namespace,
 * as the app and as Python: `-c` code and multiprocessing's children find what the app finds. */
static int run_setup(PyObject *code) {
    PyObject *globals = PyDict_New();
    PyObject *name = PyUnicode_FromString("_scratchpack_setup");
    PyObject *result = NULL;
    if (globals != NULL && name != NULL &&
        PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) == 0 &&
        PyDict_SetItemString(globals, "__name__", name) == 0) {
        result = PyEval_EvalCode(code, globals, globals);
    }
    Py_XDECREF(name);
    Py_XDECREF(globals);
    Py_XDECREF(result);
    return result != NULL ? 0 : -1;
}

/* The app: the bootstrap's code runs in __main__ as Py_RunMain() would run a -c command, but
 * with no command of its own, so a traceback starts at the entry point instead of at a
 * one-line `exec(...)` frame. Its ending is Py_RunMain()'s: SystemExit exits through
 * PyErr_Print(), another exception is printed and exits 1, an unhandled KeyboardInterrupt
 * exits by SIGINT (130 where SIGINT is ignored, as for PID 1), a failing finalisation 120. */
static int run_app(PyObject *code) {
    PyObject *main_module = PyImport_AddModule("__main__"); /* borrowed */
    int exitcode = 0;
    _Py_UnhandledKeyboardInterrupt = 0;
    PyObject *result = NULL;
    if (main_module != NULL) {
        PyObject *globals = PyModule_GetDict(main_module); /* borrowed */
        result = PyEval_EvalCode(code, globals, globals);
    }
    Py_DECREF(code);
    if (result == NULL) {
        if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
            _Py_UnhandledKeyboardInterrupt = 1;
        }
        PyErr_Print();
        exitcode = 1;
    }
    Py_XDECREF(result);
    if (Py_FinalizeEx() < 0) {
        exitcode = 120;
    }
    if (_Py_UnhandledKeyboardInterrupt) {
        signal(SIGINT, SIG_DFL);
        kill(getpid(), SIGINT);
        exitcode = 128 + SIGINT;
    }
    return exitcode;
}

/* selfdir.c: the executable's path as a read-only directory of its zip's members. */
void scratchpack_selfdir_init(const char *exe);
extern int scratchpack_selfdir_dirs;

/* zipdir.c: zipimport's table of contents read in C, installed before the first zip import. */
void scratchpack_zipdir_install(PyObject *get_filename);

/* calloc, for every caller in the executable (link.py: -Wl,--wrap=calloc): zig's libc (0.17)
 * zero-fills every calloc block with memset, and the kit's malloc serves each block above
 * 32 KiB (plus its 16-byte header) from its own fresh anonymous mmap, unmapped again on free,
 * which the kernel already gives zeroed. The memset made every page of such a block resident:
 * obmalloc's arena map alone (a 256 KiB and a 128 KiB calloc, of which a few pages are ever
 * used) was 384 KiB of every process's idle memory. Large blocks are taken as they come; the
 * 64 KiB bound leaves a margin above the allocator's largest reused size class. */
#define FRESH_MAP_MIN ((size_t)64 * 1024)

#ifdef SCRATCHPACK_KEEP_LARGE_BLOCKS
/* malloc and free, for an app whose start reads large modules (link.py: -Wl,--wrap=malloc,
 * -Wl,--wrap=free): the allocator maps each block above 32 KiB afresh and unmaps it on free, so
 * every large block costs a page fault per 4 KiB page written, again and again (FastAPI's start
 * reads 79 .pyc members over 32 KiB, 5 MB, one after the other: ~1,100 faults). The last
 * KEPT_BLOCKS freed blocks of 32 KiB to 1 MiB are kept, already faulted in, and malloc hands
 * one out again for a request it fits without wasting half of it. calloc takes fresh blocks
 * (__real_malloc below): a kept block is not zeroed. */
#define KEPT_BLOCKS 4
#define KEPT_MIN ((size_t)32 * 1024)
#define KEPT_MAX ((size_t)1024 * 1024)
static void *kept[KEPT_BLOCKS];
static unsigned next_kept;
void *__real_malloc(size_t size);
void __real_free(void *block);
#define FRESH_MALLOC __real_malloc

void *__wrap_malloc(size_t size) {
    if (size >= KEPT_MIN) {
        for (int i = 0; i < KEPT_BLOCKS; i++) {
            void *block = __atomic_exchange_n(&kept[i], NULL, __ATOMIC_ACQ_REL);
            if (block == NULL) {
                continue;
            }
            size_t usable = malloc_usable_size(block);
            if (usable >= size && usable / 2 <= size) {
                return block;
            }
            void *empty = NULL; /* not this one: back in its slot, or freed if it was taken */
            if (!__atomic_compare_exchange_n(&kept[i], &empty, block, 0, __ATOMIC_ACQ_REL,
                                             __ATOMIC_ACQUIRE)) {
                __real_free(block);
            }
        }
    }
    return __real_malloc(size);
}

void __wrap_free(void *block) {
    if (block != NULL) {
        size_t usable = malloc_usable_size(block);
        if (usable >= KEPT_MIN && usable <= KEPT_MAX) { /* in; the slot's last block out */
            unsigned slot = __atomic_fetch_add(&next_kept, 1, __ATOMIC_RELAXED) % KEPT_BLOCKS;
            block = __atomic_exchange_n(&kept[slot], block, __ATOMIC_ACQ_REL);
        }
    }
    __real_free(block);
}
#else
#define FRESH_MALLOC malloc
#endif

void *__real_calloc(size_t count, size_t size);
void *__wrap_calloc(size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total) || total < FRESH_MAP_MIN) {
        return __real_calloc(count, size);
    }
    return FRESH_MALLOC(total);
}

/* The executable's absolute path: argv[0] if it has a slash, else a $PATH search, else /proc. */
static int find_self(const char *argv0, char *out) {
    if (strchr(argv0, '/') != NULL) {
        return realpath(argv0, out) != NULL ? 0 : -1;
    }
    const char *path = getenv("PATH");
    if (path == NULL) {
        path = "/usr/local/bin:/usr/bin:/bin";
    }
    size_t name_len = strlen(argv0);
    char candidate[PATH_MAX];
    while (*argv0 != '\0' && *path != '\0') {
        const char *end = strchr(path, ':');
        size_t len = end != NULL ? (size_t)(end - path) : strlen(path);
        if (len > 0 && len + 1 + name_len < sizeof candidate) {
            memcpy(candidate, path, len);
            candidate[len] = '/';
            memcpy(candidate + len + 1, argv0, name_len + 1);
            if (access(candidate, X_OK) == 0 && realpath(candidate, out) != NULL) {
                return 0;
            }
        }
        if (end == NULL) {
            break;
        }
        path = end + 1;
    }
    return realpath("/proc/self/exe", out) != NULL ? 0 : -1;
}

/* What multiprocessing runs as `sys.executable` when sys.frozen is unset (CPython 3.11:
 * spawn.get_command_line, forkserver.ForkServer.ensure_running,
 * resource_tracker.ResourceTracker.ensure_running): [exe, *interpreter flags, "-c", one of these
 * commands, ...]. Only these exact commands count, so no app option can be taken for them. */
static const char *const MP_COMMANDS[] = {
    "from multiprocessing.spawn import spawn_main; spawn_main(",
    "from multiprocessing.forkserver import main; main(",
    "from multiprocessing.resource_tracker import main;main(",
};

/* How many argv entries one of subprocess._args_from_interpreter_flags()'s options takes
 * (-B, -S, -I, -s, -E, -P, -O, -OO, -d, -v, -b, -q, -Wx / -W x, -Xx / -X x); 0: not one. */
static int interpreter_flag(int argc, char **argv, int i) {
    const char *arg = argv[i];
    if (arg[0] != '-' || arg[1] == '\0') {
        return 0;
    }
    if (arg[1] == 'W' || arg[1] == 'X') {
        return arg[2] != '\0' ? 1 : (i + 1 < argc ? 2 : 0);
    }
    return strspn(arg + 1, "BSIsEPOdvbq") == strlen(arg + 1) ? 1 : 0;
}

static int multiprocessing_child(int argc, char **argv) {
    int i = 1;
    int taken;
    while (i < argc && (taken = interpreter_flag(argc, argv, i)) > 0) {
        i += taken;
    }
    if (i + 1 >= argc || strcmp(argv[i], "-c") != 0) {
        return 0;
    }
    for (size_t k = 0; k < sizeof MP_COMMANDS / sizeof MP_COMMANDS[0]; k++) {
        if (strncmp(argv[i + 1], MP_COMMANDS[k], strlen(MP_COMMANDS[k])) == 0) {
            return 1;
        }
    }
    return 0;
}

static int stop(PyConfig *config, PyStatus status) {
    PyConfig_Clear(config);
    if (PyStatus_IsExit(status)) {
        return status.exitcode;
    }
    Py_ExitStatusException(status);
}

static int flag(const char *name) {
    const char *value = getenv(name);
    return value != NULL && value[0] != '\0';
}

int main(int argc, char **argv) {
    char self[PATH_MAX];
    if (argc < 1 || find_self(argv[0], self) != 0) {
        fputs("scratchpack: cannot find this executable's own path from argv[0], $PATH or "
              "/proc/self/exe; run it by its path\n", stderr);
        return 127;
    }
    scratchpack_selfdir_init(self);
    /* UTF-8 mode, whatever the locale: a scratch container has no locales and usually no LANG,
     * and an isolated pre-configuration would otherwise leave argv, file names and stdio ASCII. */
    PyPreConfig preconfig;
    PyPreConfig_InitIsolatedConfig(&preconfig);
    preconfig.utf8_mode = 1;
    PyStatus prestatus = Py_PreInitialize(&preconfig);
    if (PyStatus_Exception(prestatus)) {
        Py_ExitStatusException(prestatus);
    }
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.site_import = 0;
    config.write_bytecode = 0;
    config.pathconfig_warnings = 0;
    config.install_signal_handlers = 1;
    /* As Python: CPython parses the command line itself (-c, -m, a script, -I/-S/-B/-u...);
     * isolated still, but with the script's directory on sys.path as `python script.py` has
     * it, unless -I/-P say otherwise. */
    const char *python = getenv("SCRATCHPACK_PYTHON");
    int python_mode =
        (python != NULL && strcmp(python, "1") == 0) || multiprocessing_child(argc, argv);
    if (python_mode) {
        config.parse_argv = 1;
        config.safe_path = 0;
    }
    /* The two PYTHON* switches container users rely on; everything else stays isolated. */
    if (flag("PYTHONUNBUFFERED")) {
        config.buffered_stdio = 0;
    }
    if (flag("PYTHONPROFILEIMPORTTIME")) {
        config.import_time = 1;
    }
    PyStatus status = PyConfig_SetBytesArgv(&config, argc, argv);
    if (PyStatus_Exception(status)) {
        return stop(&config, status);
    }
    status = PyConfig_SetBytesString(&config, &config.executable, self);
    if (PyStatus_Exception(status)) {
        return stop(&config, status);
    }
    status = PyConfig_SetBytesString(&config, &config.program_name, self);
    if (PyStatus_Exception(status)) {
        return stop(&config, status);
    }
    wchar_t *wself = Py_DecodeLocale(self, NULL);
    if (wself == NULL) {
        return stop(&config, PyStatus_NoMemory());
    }
    config.module_search_paths_set = 1;
    status = PyWideStringList_Append(&config.module_search_paths, wself);
    PyMem_RawFree(wself);
    if (PyStatus_Exception(status)) {
        return stop(&config, status);
    }
    /* Two phases: zipimport gets its C directory reader before the main phase imports
     * encodings, the first module read from the zip. */
    config._init_main = 0;
    status = Py_InitializeFromConfig(&config);
    if (PyStatus_Exception(status)) {
        return stop(&config, status);
    }
    PyConfig_Clear(&config);
    PyObject *codes = PyMarshal_ReadObjectFromString((const char *)scratchpack_bootstrap,
                                                     (Py_ssize_t)scratchpack_bootstrap_size);
    if (codes == NULL || !PyTuple_Check(codes) || PyTuple_GET_SIZE(codes) != 3) {
        PyErr_Print();
        fputs("scratchpack: this executable's bootstrap code is damaged\n", stderr);
        return 1;
    }
    scratchpack_zipdir_install(PyTuple_GET_ITEM(codes, 0));
    status = _Py_InitializeMain();
    if (PyStatus_Exception(status)) {
        Py_ExitStatusException(status);
    }
    /* From here the bootstrap's path hook answers <exe>/<pkg> import paths, so those may be
     * directories to stat() (zipimport's own search needed them not to be). */
    scratchpack_selfdir_dirs = 1;
    PyObject *bootstrap = Py_NewRef(PyTuple_GET_ITEM(codes, 1));
    int failed = run_setup(PyTuple_GET_ITEM(codes, 2)) != 0;
    Py_DECREF(codes);
    if (failed) {
        Py_DECREF(bootstrap);
        PyErr_Print();
        Py_Finalize();
        return 1;
    }
    if (python_mode) {
        Py_DECREF(bootstrap);
        return Py_RunMain();
    }
    return run_app(bootstrap);
}
