"""Exercises the standard library the way apps do; one line per item."""
