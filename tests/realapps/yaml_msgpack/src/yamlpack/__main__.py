"""Parse YAML, pack it with msgpack, unpack it and dump it back: the round trip must be exact."""

import sys

import msgpack
import yaml

DOC = """\
service: yamlpack
replicas: 3
ports: [8080, 8443]
labels:
  tier: backend
  owner: "café"
enabled: true
ratio: 0.25
"""


def main() -> int:
    data = yaml.safe_load(DOC)
    packed = msgpack.packb(data)
    back = msgpack.unpackb(packed)
    assert back == data, (back, data)
    print(f"msgpack: {len(packed)} bytes")
    print(yaml.safe_dump(back, sort_keys=True, allow_unicode=True), end="")
    print("round trip: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
