"""YAML in, msgpack through, YAML out."""
