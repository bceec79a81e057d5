"""The pusher (distribution upload protocol) against an in-process fake transport.

Fast tier (no sockets): the request sequence of a push, HEAD-skips, the monolithic upload,
digest checks on both sides and the retry of a blob from HEAD. The same flows run against
the real registry in test_registry.py.
"""

from __future__ import annotations

import dataclasses
import io
import re

import pytest

from scratchpack.errors import DigestMismatchError, ImageError, RegistryError
from scratchpack.oci._http import Headers, Response, TransportError
from scratchpack.oci.artifact import make_artifact
from scratchpack.oci.descriptor import Descriptor
from scratchpack.oci.digest import Digest
from scratchpack.oci.mediatypes import SPDX_JSON
from scratchpack.oci.reference import Reference
from scratchpack.oci.registry import Pusher, PushOptions, push, push_artifact
from scratchpack.oci.session import Session
from tests.fake_registry import REGISTRY, Call, FakeRegistry, Fault
from testsupport.registry_server import StaticKeychain, make_image, make_layer

REF = Reference.parse(f"{REGISTRY}/team/app:v1")
ANON = StaticKeychain()
FAST = PushOptions(retries=3, backoff=0.01)


def _push(fake: FakeRegistry, image: object, ref: Reference = REF, **kw: object):
    sleeps: list[float] = []
    return push(
        image,  # type: ignore[arg-type]
        ref,
        keychain=ANON,
        options=FAST,
        transport=fake,
        sleep=sleeps.append,
        **kw,  # type: ignore[arg-type]
    )


def test_push_speaks_the_monolithic_upload_protocol():
    fake = FakeRegistry()
    image = make_image((3000, 5000), seed=1)
    progress: list[str] = []
    published = _push(fake, image, progress=progress.append)
    blobs = [*(layer.digest for layer in image.layers), image.config_digest]
    expected = ["GET /v2/"]
    for digest in blobs:
        expected += [
            f"HEAD /v2/team/app/blobs/{digest}",
            "POST /v2/team/app/blobs/uploads/",
            "PUT /v2/team/app/blobs/uploads/<id>",
        ]
    expected.append("PUT /v2/team/app/manifests/v1")
    calls = [re.sub(r"/uploads/u\d+$", "/uploads/<id>", c) for c in fake.registry_calls()]
    assert calls == expected
    # One PUT per blob with ?digest=, the upload's own query (_state) kept, exact length.
    puts = [c for c in fake.calls if c.method == "PUT" and "/uploads/" in c.path]
    for call, digest in zip(puts, blobs, strict=True):
        assert call.query["digest"] == [str(digest)] and "_state" in call.query
        assert call.headers["Content-Length"] == str(len(call.body))
        assert call.headers["Content-Type"] == "application/octet-stream"
    assert fake.blobs[str(image.layers[0].digest)] == image.layers[0].data
    assert fake.manifests["v1"] == image.raw_manifest
    manifest_put = fake.calls[-1]
    assert manifest_put.headers["Content-Type"] == image.manifest_media_type
    assert published.digest == image.digest
    assert published.location == f"{REGISTRY}/team/app@{image.digest}"
    assert published.extra == (
        ("tag", "v1"),
        ("blobs_existing", "0"),
        ("blobs_mounted", "0"),
        ("blobs_uploaded", "3"),
    )
    assert progress[-1] == f"manifest {image.digest}: pushed as v1"


def test_blobs_the_registry_has_are_skipped_after_a_head():
    fake = FakeRegistry()
    image = make_image((3000, 5000), seed=2)
    _push(fake, image)
    fake.calls.clear()
    published = _push(fake, image)
    methods = [c.split(" ")[0] for c in fake.registry_calls()]
    assert methods == ["GET", "HEAD", "HEAD", "HEAD", "PUT"]
    assert ("blobs_existing", "3") in published.extra
    assert ("blobs_uploaded", "0") in published.extra


def test_a_layer_repeated_in_the_image_is_sent_once():
    fake = FakeRegistry()
    image = make_image((3000,), seed=3)
    doubled = dataclasses.replace(image, layers=image.layers * 2)
    # The manifest still lists one layer; push only looks at the blobs to send.
    _push(fake, doubled)
    assert fake.registry_calls().count("POST /v2/team/app/blobs/uploads/") == 2  # layer + config


def test_a_corrupt_local_layer_is_never_committed():
    fake = FakeRegistry()
    good = make_image((5000,), seed=4)
    layer = good.layers[0]
    flipped = dataclasses.replace(layer, data=bytes(b ^ 0xFF for b in layer.data))
    with pytest.raises(DigestMismatchError):
        _push(fake, dataclasses.replace(good, layers=(flipped,)))
    assert fake.blobs == {} and fake.manifests == {}
    short = dataclasses.replace(layer, data=layer.data[:-10])
    with pytest.raises(DigestMismatchError, match="ended after"):
        _push(fake, dataclasses.replace(good, layers=(short,)))
    longer = dataclasses.replace(layer, data=layer.data + b"tail")
    with pytest.raises(DigestMismatchError):
        _push(fake, dataclasses.replace(good, layers=(longer,)))
    assert fake.blobs == {}
    # The bounded reader never sent more than the announced Content-Length.
    puts = [c for c in fake.calls if c.method == "PUT"]
    assert all(len(c.body) <= int(c.headers["Content-Length"]) for c in puts)


def _lie_about(kind: str):
    def rewrite(call: Call, resp: Response) -> Response:
        if call.method == "PUT" and kind in call.path:
            lie = Headers([("Docker-Content-Digest", "sha256:" + "0" * 64)])
            return dataclasses.replace(resp, headers=lie)
        return resp

    return rewrite


def test_a_registry_answering_another_manifest_digest_is_an_error():
    fake = FakeRegistry(rewrite=_lie_about("/manifests/"))
    with pytest.raises(RegistryError, match=r"digest mismatch: .* stored the manifest"):
        _push(fake, make_image((1000,), seed=5))


def test_a_registry_answering_another_blob_digest_is_an_error():
    fake = FakeRegistry(rewrite=_lie_about("/blobs/uploads/"))
    with pytest.raises(RegistryError, match=r"digest mismatch: .* stored blob") as info:
        _push(fake, make_image((1000,), seed=6))
    assert not info.value.temporary


def test_image_bytes_must_hash_to_their_digests():
    image = make_image((1000,), seed=7)
    with pytest.raises(DigestMismatchError, match="manifest bytes"):
        _push(FakeRegistry(), dataclasses.replace(image, raw_manifest=image.raw_manifest + b" "))
    with pytest.raises(DigestMismatchError, match="config bytes"):
        _push(FakeRegistry(), dataclasses.replace(image, raw_config=image.raw_config + b" "))


def test_pinned_digest_must_be_the_images():
    image, other = make_image((1000,), seed=8), make_image((1000,), seed=9)
    with pytest.raises(ImageError, match="pins digest"):
        _push(FakeRegistry(), image, Reference.parse(f"{REGISTRY}/team/app@{other.digest}"))
    fake = FakeRegistry()
    published = _push(fake, image, Reference.parse(f"{REGISTRY}/team/app@{image.digest}"))
    assert published.digest == image.digest and str(image.digest) in fake.manifests


def test_a_lost_upload_session_restarts_the_blob_from_head_with_a_fresh_stream():
    fake = FakeRegistry(faults=[Fault("PUT", "/blobs/uploads/", 404, code="BLOB_UPLOAD_UNKNOWN")])
    layer = make_layer(4000, seed=10)
    opened: list[int] = []

    def opener() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(layer.data)

    progress: list[str] = []
    with Session(REF, keychain=ANON, options=FAST, transport=fake, sleep=lambda _s: None,
                 progress=progress.append) as session:  # fmt: skip
        assert Pusher(session).upload_blob(layer.digest, layer.size, opener) == "uploaded"
    heads = [c for c in fake.registry_calls() if c.startswith("HEAD")]
    assert len(heads) == 2 and len(opened) == 2
    assert progress[0].startswith("retry 1/3") and "BLOB_UPLOAD_UNKNOWN" in progress[0]


def test_a_dropped_put_whose_blob_landed_is_found_by_the_next_head():
    """The committed-but-unanswered PUT: the retry's HEAD sees the blob and sends nothing."""
    layer = make_layer(4000, seed=11)
    fake = FakeRegistry()

    def commit_then_drop(call: Call, resp: Response) -> Response:
        if call.method == "PUT" and resp.status == 201 and not getattr(fake, "_dropped", False):
            fake._dropped = True  # type: ignore[attr-defined]
            raise TransportError("connection dropped", method="PUT", url="", temporary=True)
        return resp

    fake.rewrite = commit_then_drop
    with Session(REF, keychain=ANON, options=FAST, transport=fake, sleep=lambda _s: None) as s:
        assert Pusher(s).upload_blob(layer.digest, layer.size, layer.opener) == "existing"
    assert fake.blobs[str(layer.digest)] == layer.data


def test_permanent_upload_errors_are_not_retried():
    fake = FakeRegistry(faults=[Fault("POST", "/blobs/uploads/", 403, code="DENIED", times=9)])
    with pytest.raises(RegistryError, match="cannot start the upload") as info:
        _push(fake, make_image((1000,), seed=12))
    assert (
        info.value.status == 403
        and fake.registry_calls().count("POST /v2/team/app/blobs/uploads/") == 1
    )


def test_manifest_tags_are_checked_before_sending():
    with Session(REF, keychain=ANON, options=FAST, transport=FakeRegistry()) as session:
        pusher = Pusher(session)
        with pytest.raises(ImageError, match="invalid tag"):
            pusher.put_manifest("-bad", b"{}", "application/json")
        with pytest.raises(DigestMismatchError, match="not to the requested"):
            pusher.put_manifest("sha256:" + "1" * 64, b"{}", "application/json")


def test_a_rejected_manifest_carries_the_registrys_words_and_a_hint():
    fake = FakeRegistry(faults=[Fault("PUT", "/manifests/", 400, code="MANIFEST_BLOB_UNKNOWN")])
    with pytest.raises(RegistryError) as info:
        _push(fake, make_image((1000,), seed=13))
    assert "MANIFEST_BLOB_UNKNOWN" in info.value.codes and not info.value.temporary
    assert "push the whole image again" in (info.value.hint or "")


def test_push_artifact_sends_its_blobs_and_manifest_under_the_tag():
    fake = FakeRegistry()
    image = make_image((1000,), seed=14)
    subject = Descriptor(image.manifest_media_type, image.digest, len(image.raw_manifest))
    artifact = make_artifact(subject, b'{"spdxVersion":"SPDX-2.3"}', artifact_type=SPDX_JSON)
    digest = push_artifact(artifact, REF, tag="sha256-abc.sbom", keychain=ANON, transport=fake)
    assert digest == artifact.digest == Digest.of_bytes(fake.manifests["sha256-abc.sbom"])
    for desc, data in artifact.blobs:
        assert fake.blobs[str(desc.digest)] == data
