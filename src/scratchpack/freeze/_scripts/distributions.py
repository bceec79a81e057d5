"""Lists the distributions an app needs: the project (argv[1]) and its transitive requirements;
with ``--exact NAME...`` only the named ones (what the freezer bundled besides them).

Runs in the build venv, which has ``packaging`` installed for it. Prints a JSON list of
{name, version, license, source_url}, sorted by canonical name, for the SBOM.
"""

from __future__ import annotations

import json
import sys
from email.message import Message
from importlib import metadata
from typing import cast

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

_SOURCE_LABELS = ("source", "source code", "repository", "code")


def _field(md: metadata.PackageMetadata, key: str) -> str:
    """A header, "" when absent (``md[key]`` warns or raises on a missing key in new Pythons)."""
    value = cast("Message[str, str]", md).get(key)
    return str(value) if value else ""


def _license(md: metadata.PackageMetadata) -> str:
    lic = _field(md, "License-Expression")
    if not lic:
        raw = _field(md, "License").strip()
        lic = raw if raw and "\n" not in raw and len(raw) < 100 else ""
    if not lic:
        classifiers = md.get_all("Classifier") or []
        names = [c.split("::")[-1].strip() for c in classifiers if c.startswith("License ::")]
        lic = " AND ".join(names)
    return lic


def _source_url(md: metadata.PackageMetadata) -> str:
    for entry in md.get_all("Project-URL") or []:
        label, _, link = str(entry).partition(",")
        if label.strip().lower() in _SOURCE_LABELS:
            return link.strip()
    return _field(md, "Home-page")


def distributions(root: str, *, exact: list[str] | None = None) -> list[dict[str, str]]:
    """``root`` and its requirements, recursively; or only the names in ``exact``."""
    seen: set[str] = set()
    out: list[dict[str, str]] = []
    todo = [(root, "")] if exact is None else [(name, "") for name in exact]
    while todo:
        name, extra = todo.pop()
        key = canonicalize_name(name)
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(key)
        md = dist.metadata
        out.append(
            {
                "name": md["Name"],
                "version": dist.version,
                "license": _license(md),
                "source_url": _source_url(md),
            }
        )
        if exact is not None:
            continue
        for req in dist.requires or []:
            r = Requirement(req)
            if r.marker is None or r.marker.evaluate({"extra": extra}):
                todo.append((r.name, ""))
    return sorted(out, key=lambda d: canonicalize_name(d["name"]))


def main() -> None:
    if sys.argv[1] == "--exact":
        print(json.dumps(distributions("", exact=sys.argv[2:])))
    else:
        print(json.dumps(distributions(sys.argv[1])))


if __name__ == "__main__":
    main()
