"""GET the URL given as argument and print the status and body. The server's CA comes from
REQUESTS_CA_BUNDLE, as requests reads it; certifi's own bundle must be readable too."""

import sys
import types

import certifi
import charset_normalizer.md
import requests


def main() -> int:
    bundle = certifi.contents()
    where = certifi.where()
    with open(where, encoding="ascii") as f:
        same = f.read() == bundle
    count = bundle.count("-----BEGIN CERTIFICATE-----")
    print(f"certifi {certifi.__version__}: {count} CA certificates, where() readable: {same}")
    resp = requests.get(sys.argv[1], timeout=10)
    print(f"status {resp.status_code}")
    print(resp.text, end="")
    # charset_normalizer's binary wheels compile md.py with mypyc (the .py ships beside the
    # .so): compiled, its classes' methods are C method descriptors, not Python functions
    md = charset_normalizer.md
    compiled = md.__file__.endswith(".so") and not isinstance(
        md.MessDetectorPlugin.reset, types.FunctionType
    )
    print(f"charset_normalizer.md compiled: {compiled}")
    return 0 if resp.ok else 1


if __name__ == "__main__":
    sys.exit(main())
