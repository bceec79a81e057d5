"""SPDX 2.3 SBOM of what is inside a frozen executable.

The document is a pure function of its inputs (no clock, no random UUID): the namespace is
derived from the content, so two reproducible builds give byte-identical SBOMs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from scratchpack import __version__

_SPDX_ID_SAFE = re.compile(r"[^A-Za-z0-9.-]+")
# Only simple SPDX expressions are passed through; free-text licence fields become NOASSERTION.
_SPDX_EXPR = re.compile(
    r"[A-Za-z0-9.+-]+(?: (?:AND|OR|WITH) [A-Za-z0-9.+-]+)*|\([A-Za-z0-9.+ ()-]+\)"
)
_KNOWN_LICENSE_IDS = {
    "MIT", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0", "ISC", "MPL-2.0", "PSF-2.0",
    "Python-2.0", "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later",
    "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0-only", "LGPL-3.0-or-later", "Unlicense",
    "0BSD", "Zlib", "CC0-1.0", "Bootloader-exception",
    "blessing", "bzip2-1.0.6", "X11-distribute-modifications-variant",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Component:
    """One thing inside the executable: a Python distribution, the interpreter, a bootloader."""

    name: str
    version: str
    purl: str
    license: str = ""
    download_location: str = ""
    purpose: str = "LIBRARY"
    sha256: str = ""


def _spdx_id(prefix: str, name: str) -> str:
    return f"SPDXRef-{prefix}-{_SPDX_ID_SAFE.sub('-', name)}"


def _license(text: str) -> str:
    text = text.strip()
    if text and _SPDX_EXPR.fullmatch(text):
        ids = re.findall(r"[A-Za-z0-9.+-]+", text)
        if all(i in _KNOWN_LICENSE_IDS or i in {"AND", "OR", "WITH"} for i in ids):
            return text
    return "NOASSERTION"


def _package(spdx_id: str, c: Component) -> dict[str, object]:
    checksums = [{"algorithm": "SHA256", "checksumValue": c.sha256}] if c.sha256 else []
    return {
        **({"checksums": checksums} if checksums else {}),
        "SPDXID": spdx_id,
        "name": c.name,
        "versionInfo": c.version,
        "downloadLocation": c.download_location or "NOASSERTION",
        "filesAnalyzed": False,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": _license(c.license),
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": c.purpose,
        "externalRefs": [
            {
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": c.purl,
            }
        ],
    }


def spdx_document(
    app: Component, components: Sequence[Component], *, created: str, subject: str = ""
) -> bytes:
    """The SPDX 2.3 JSON bytes for ``app`` containing ``components``.

    ``created`` is an RFC 3339 time (the build's SOURCE_DATE_EPOCH); ``subject`` names the
    image or executable the SBOM describes (a digest), and becomes part of the namespace.
    """
    app_id = _spdx_id("Package", app.name)
    packages = [_package(app_id, app)]
    relationships: list[dict[str, str]] = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": app_id,
        }
    ]
    seen = {app_id}
    for comp in sorted(components, key=lambda c: (c.name.lower(), c.version)):
        cid = _spdx_id("Package", f"{comp.name}-{comp.version}")
        if cid in seen:
            continue
        seen.add(cid)
        packages.append(_package(cid, comp))
        relationships.append(
            {"spdxElementId": app_id, "relationshipType": "CONTAINS", "relatedSpdxElement": cid}
        )
    body: dict[str, object] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{app.name}-{app.version}",
        "creationInfo": {"created": created, "creators": [f"Tool: scratchpack-{__version__}"]},
        "packages": packages,
        "relationships": relationships,
    }
    if subject:
        body["comment"] = f"SBOM of {subject}"
    seed = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
    body["documentNamespace"] = f"https://scratchpack.invalid/spdx/{app.name}-{app.version}-{seed}"
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()
