"""webhello: a faithful, fast, stdlib-only Python port of gowebhello."""

__version__ = "0.1.0"
