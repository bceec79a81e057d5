"""Serialize and parse a document with orjson; prints what it did."""

import datetime
import sys

import orjson


def main() -> int:
    doc = {"app": "orjcli", "when": datetime.date(2024, 1, 2), "items": [1, 2.5, None, "é"]}
    raw = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    back = orjson.loads(raw)
    print(raw.decode())
    same = back["items"] == doc["items"]
    print(f"orjson {orjson.__version__}: round trip {'ok' if same else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
