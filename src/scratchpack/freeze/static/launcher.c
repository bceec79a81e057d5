/* scratchpack static launcher: runs the bytecode zip appended to this executable, in place.
 *
 * Why a custom main: the interpreter must find its modules inside its own file (no Python home,
 * no /tmp, no /proc needed), ignore PYTHON* variables like an isolated interpreter, and run the
 * entry point without runpy. The entry point's code is linked in as scratchpack_bootstrap.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern const char scratchpack_bootstrap[];

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
    status = PyConfig_SetBytesString(&config, &config.run_command, scratchpack_bootstrap);
    if (PyStatus_Exception(status)) {
        return stop(&config, status);
    }
    status = Py_InitializeFromConfig(&config);
    if (PyStatus_Exception(status)) {
        return stop(&config, status);
    }
    PyConfig_Clear(&config);
    return Py_RunMain();
}
