"""Prints the build venv's site-packages directories (purelib, platlib) as a sorted JSON list."""

from __future__ import annotations

import json
import sysconfig


def main() -> None:
    dirs = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    print(json.dumps(sorted(dirs)))


if __name__ == "__main__":
    main()
