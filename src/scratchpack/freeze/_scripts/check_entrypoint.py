"""Resolves an entry point (argv[1]) in the build venv and imports it as the frozen launcher will.

argv[1] is ``mod:attr``, or a bare name: a console script of one of the app's distributions
(argv[2:], the project and its requirements; never the build tools'), else a module. The
project's own ``[project.scripts]`` were resolved before, from pyproject.toml: a console script
of a dependency is only known once it is installed, hence here.

Exit 0: it imports (and ``attr`` is callable, or ``mod`` can run as a program); the last line is
``ScratchpackEntry: {"entrypoint": "mod[:attr]", "how": "..."}``. Exit 3: a line
``ScratchpackCheck: <why>``. Exit 2: the traceback of the failed import.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
import traceback
from importlib import metadata

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _fail(why: str) -> None:
    print(f"ScratchpackCheck: {why}")
    sys.exit(3)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(value: str, distributions: list[str]) -> tuple[str, str]:
    """``value`` -> (``mod[:attr]``, which rule won, in words for the build log)."""
    if ":" in value:
        return value, "an object reference"
    wanted = {_norm(d) for d in distributions}
    found = sorted(
        (_norm(ep.dist.name) if ep.dist else "", ep.dist.name if ep.dist else "?", ep.value)
        for ep in metadata.entry_points(group="console_scripts", name=value)
        if ep.dist is not None and _norm(ep.dist.name) in wanted
    )
    if found:
        _, dist, target = found[0]
        target = target.split("[", 1)[0].strip()
        others = ", ".join(d for _, d, _ in found[1:])
        also = f"; also a console script of {others}, not used" if others else ""
        return target, f"the console script {value} of the {dist} distribution{also}"
    if _MODULE.match(value):
        return (
            value,
            f"the module {value} (no console script of the app has that name)",
        )
    _fail(f"{value!r} is neither a console script of the app's distributions nor a module name")
    raise AssertionError  # not reached


def check(target: str) -> None:
    mod, _, attr = target.partition(":")
    if attr:
        obj: object = importlib.import_module(mod)
        for part in attr.split("."):
            obj = getattr(obj, part)
        if not callable(obj):
            _fail(f"{target} is not callable")
        return
    spec = importlib.util.find_spec(mod)
    if spec is None:
        raise ModuleNotFoundError(f"No module named {mod!r}", name=mod)
    if spec.submodule_search_locations is not None:
        spec = importlib.util.find_spec(mod + ".__main__")
        if spec is None:
            _fail(f"package {mod} has no __main__ module to run")
            return
    spec.loader.get_code(spec.name)  # type: ignore[union-attr]  # a SyntaxError surfaces here


def main() -> None:
    try:
        target, how = resolve(sys.argv[1], sys.argv[2:])
        check(target)
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        sys.exit(2)
    print("ScratchpackEntry: " + json.dumps({"entrypoint": target, "how": how}))


if __name__ == "__main__":
    main()
