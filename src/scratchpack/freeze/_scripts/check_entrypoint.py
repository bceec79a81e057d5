"""Imports an entry point (argv[1], ``mod:attr`` or ``mod``) the way the frozen launcher will.

Exit 0: it imports (and ``attr`` is callable, or ``mod`` can run as a program). Exit 3: a line
``ScratchpackCheck: <why>``. Exit 2: the traceback of the failed import.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback


def _fail(why: str) -> None:
    print(f"ScratchpackCheck: {why}")
    sys.exit(3)


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
        check(sys.argv[1])
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        sys.exit(2)


if __name__ == "__main__":
    main()
