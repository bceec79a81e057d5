"""Probes the interpreter that will be frozen or that installs the app's dependencies.

Prints one JSON object: implementation, version, real executable, shared libpython (if any),
and an identity string (version + size/mtime of the executable and libpython) for cache keys.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import sysconfig


def _var(name: str) -> str:
    value = sysconfig.get_config_var(name)
    return str(value) if value else ""


def _libpython(soname: str) -> str:
    dirs = [_var("LIBDIR"), os.path.join(sys.base_prefix, "lib")]
    if _var("MULTIARCH"):
        dirs.append(os.path.join("/usr/lib", _var("MULTIARCH")))
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and soname.startswith("libpython"):
        for d in dirs:
            path = os.path.join(d, soname)
            if d and os.path.isfile(path):
                return os.path.realpath(path)
    return ""


def _ident(path: str) -> str:
    if not path:
        return ""
    st = os.stat(path)
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def main() -> None:
    soname = _var("INSTSONAME")
    lib = _libpython(soname)
    exe = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    identity = [platform.python_version(), _ident(exe), _ident(lib), sys.platform]
    identity.append(platform.machine())
    info = {
        "implementation": platform.python_implementation(),
        "version": platform.python_version(),
        "executable": exe,
        "libpython": lib,
        "shared": bool(sysconfig.get_config_var("Py_ENABLE_SHARED")),
        "soname": soname,
        "identity": "|".join(identity),
    }
    print(json.dumps(info))


if __name__ == "__main__":
    main()
