from __future__ import annotations

import json

from scratchpack import sbom


def _doc(components, **kw):
    app = sbom.Component("webhello", "0.1.0", "pkg:pypi/webhello@0.1.0", purpose="APPLICATION")
    raw = sbom.spdx_document(app, components, created="1970-01-01T00:00:00Z", **kw)
    return raw, json.loads(raw)


def test_spdx_23_document_lists_every_component_once():
    comps = [
        sbom.Component("msgpack", "1.1.0", "pkg:pypi/msgpack@1.1.0", license="Apache-2.0"),
        sbom.Component("cpython", "3.11.7", "pkg:generic/cpython@3.11.7", license="Python-2.0"),
        sbom.Component("msgpack", "1.1.0", "pkg:pypi/msgpack@1.1.0"),
    ]
    _, doc = _doc(comps, subject="webhello@sha256:" + "0" * 64)
    assert doc["spdxVersion"] == "SPDX-2.3"
    assert doc["dataLicense"] == "CC0-1.0"
    assert doc["creationInfo"]["created"] == "1970-01-01T00:00:00Z"
    names = sorted(p["name"] for p in doc["packages"])
    assert names == ["cpython", "msgpack", "webhello"]
    ids = {p["SPDXID"] for p in doc["packages"]}
    assert len(ids) == 3
    rels = {
        (r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"])
        for r in doc["relationships"]
    }
    assert ("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Package-webhello") in rels
    assert sum(1 for r in rels if r[1] == "CONTAINS") == 2
    msgpack = next(p for p in doc["packages"] if p["name"] == "msgpack")
    assert msgpack["licenseDeclared"] == "Apache-2.0"
    assert msgpack["externalRefs"][0]["referenceLocator"] == "pkg:pypi/msgpack@1.1.0"


def test_free_text_licences_become_noassertion():
    comps = [sbom.Component("x", "1", "pkg:pypi/x@1", license="BSD-like, see LICENSE file")]
    _, doc = _doc(comps)
    x = next(p for p in doc["packages"] if p["name"] == "x")
    assert x["licenseDeclared"] == "NOASSERTION"


def test_document_is_reproducible_and_namespace_tracks_content():
    comps = [sbom.Component("a", "1", "pkg:pypi/a@1")]
    raw1, doc1 = _doc(comps, subject="s1")
    raw2, _ = _doc(list(reversed(comps)), subject="s1")
    raw3, doc3 = _doc(comps, subject="s2")
    assert raw1 == raw2
    assert doc1["documentNamespace"] != doc3["documentNamespace"]
    assert raw1 != raw3


def test_spdx_with_exception_expression_passes_through():
    comps = [
        sbom.Component(
            "pyinstaller", "6", "pkg:pypi/pyinstaller@6",
            license="GPL-2.0-or-later WITH Bootloader-exception",
        )
    ]  # fmt: skip
    _, doc = _doc(comps)
    p = next(p for p in doc["packages"] if p["name"] == "pyinstaller")
    assert p["licenseDeclared"] == "GPL-2.0-or-later WITH Bootloader-exception"


def test_a_wheel_or_library_hash_becomes_an_spdx_checksum():
    digest = "ab" * 32
    comps = [
        sbom.Component(
            "orjson",
            "3.10.12",
            "pkg:pypi/orjson@3.10.12?file_name=orjson-3.10.12-cp311-cp311-musllinux_1_2_x86_64.whl",
            sha256=digest,
        ),
        sbom.Component("cpython", "3.11.2", "pkg:generic/cpython@3.11.2"),
    ]
    _, doc = _doc(comps)
    by_name = {p["name"]: p for p in doc["packages"]}
    assert by_name["orjson"]["checksums"] == [{"algorithm": "SHA256", "checksumValue": digest}]
    assert "checksums" not in by_name["cpython"]
