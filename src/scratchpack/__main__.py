"""``python -m scratchpack``."""

from __future__ import annotations

import sys

from scratchpack.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
