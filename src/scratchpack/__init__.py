"""scratchpack: Python apps as one static executable in a FROM-scratch OCI image."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
