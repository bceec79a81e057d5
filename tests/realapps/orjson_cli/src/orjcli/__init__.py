"""orjson round trip."""
