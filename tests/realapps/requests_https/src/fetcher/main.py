"""GET the URL given as argument and print the status and body. The server's CA comes from
REQUESTS_CA_BUNDLE, as requests reads it; certifi's own bundle must be readable too."""

import sys

import certifi
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
    return 0 if resp.ok else 1


if __name__ == "__main__":
    sys.exit(main())
