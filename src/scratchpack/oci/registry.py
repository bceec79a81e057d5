"""The registry sink: push an image to an OCI distribution-spec registry.

``push(image, ref)`` is the sink, ``push_index`` pushes a multi-platform image (its images,
then the index), and ``push_artifact`` pushes an artifact manifest (an SBOM
referring to the image). Both run a :class:`Pusher`, which only speaks the distribution
upload protocol; first contact, auth, retries and error hints belong to the
:class:`~scratchpack.oci.session.Session` it sends through (ggcr's ``remote/write.go`` on top
of ``remote/transport``). The protocol, in the order a push runs:

* For each blob: ``HEAD`` (skip it if present), ``POST`` an upload session, then one
  monolithic ``PUT ?digest=`` carrying the blob, whose bytes are verified while they are sent.
* ``PUT`` the manifest and check that ``Docker-Content-Digest`` is the local digest.

Every blob upload is one retryable unit: on a temporary failure (5xx, 429, a dropped
connection, an upload session the registry lost in a restart) it starts again from ``HEAD``
with a fresh stream from the blob's opener, so a registry restarted mid-push still ends in a
correct push (the ``HEAD`` makes it cheap when the lost answer was to a committed ``PUT``).
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Callable, Sequence
from typing import BinaryIO, Literal, Protocol
from urllib.parse import urljoin

from scratchpack.errors import DigestMismatchError, ImageError, RegistryError, printable
from scratchpack.oci._http import Body, Deadline, Response, Transport, redact_url, with_query
from scratchpack.oci._io import VerifyingReader
from scratchpack.oci.auth import Keychain
from scratchpack.oci.descriptor import Descriptor, Published
from scratchpack.oci.digest import Digest
from scratchpack.oci.reference import Reference, is_tag
from scratchpack.oci.session import Session, SessionOptions

__all__ = [
    "BlobOutcome",
    "Deadline",
    "PushOptions",
    "PushableArtifact",
    "PushableImage",
    "PushableIndex",
    "PushableLayer",
    "Pusher",
    "push",
    "push_artifact",
    "push_index",
]

_OCTET = "application/octet-stream"
_SESSION_LOST_CODES = frozenset({"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"})

BlobOutcome = Literal["existing", "uploaded"]

PushOptions = SessionOptions
"""The name the pipeline knows: a push has no options beyond the session's."""
_DEFAULT_OPTIONS = PushOptions()


class PushableLayer(Protocol):
    """What a push needs from a layer: a fresh stream of the compressed blob, and its identity."""

    @property
    def opener(self) -> Callable[[], BinaryIO]: ...
    @property
    def digest(self) -> Digest: ...
    @property
    def size(self) -> int: ...
    @property
    def media_type(self) -> str: ...


class PushableImage(Protocol):
    """What a push needs from an image: its blobs and the exact manifest bytes to PUT."""

    @property
    def layers(self) -> Sequence[PushableLayer]: ...
    @property
    def raw_config(self) -> bytes: ...
    @property
    def config_digest(self) -> Digest: ...
    @property
    def raw_manifest(self) -> bytes: ...
    @property
    def digest(self) -> Digest: ...
    @property
    def manifest_media_type(self) -> str: ...


class PushableIndex(Protocol):
    """What an index push needs: its images, and the exact index bytes to PUT after them."""

    @property
    def images(self) -> Sequence[PushableImage]: ...
    @property
    def raw_manifest(self) -> bytes: ...
    @property
    def digest(self) -> Digest: ...
    @property
    def media_type(self) -> str: ...


class PushableArtifact(Protocol):
    """An artifact manifest (e.g. an SBOM referring to an image) with its small blobs in memory."""

    @property
    def raw_manifest(self) -> bytes: ...
    @property
    def blobs(self) -> tuple[tuple[Descriptor, bytes], ...]: ...
    @property
    def media_type(self) -> str: ...
    @property
    def digest(self) -> Digest: ...


def _short(digest: Digest) -> str:
    """For messages: the URL next to it already carries the full digest."""
    return f"{digest.algorithm}:{digest.hex[:12]}"


def _manifest_hint(resp: Response, media_type: str) -> str | None:
    text = resp.body.decode("utf-8", "replace")
    if "MANIFEST_BLOB_UNKNOWN" in text or "BLOB_UNKNOWN" in text:
        return (
            "a blob the manifest references is missing from the repository; push the whole "
            "image again (blobs are uploaded before the manifest)"
        )
    if "MANIFEST_INVALID" in text or "UNSUPPORTED" in text or resp.status == 415:
        return f"the registry may not accept manifests of type {media_type}"
    return None


class Pusher:
    """Blob uploads and manifest PUTs to the session's repository; nothing about auth.

    ``outcomes`` records, per blob digest, whether it was already there or uploaded.
    """

    def __init__(self, session: Session, *, progress: Callable[[str], None] | None = None) -> None:
        self.session = session
        self.ref = session.ref
        self._progress = progress or (lambda _msg: None)
        self.outcomes: dict[Digest, BlobOutcome] = {}

    def blob_exists(self, digest: Digest) -> bool:
        """``HEAD`` the blob: 200 means present, 404 absent, anything else is an error."""
        url = self.session.url(f"/v2/{self.ref.repository}/blobs/{digest}")
        resp = self.session.request("HEAD", url)
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        raise self.session.error(resp, "HEAD", f"cannot check for blob {_short(digest)}")

    def upload_blob(self, digest: Digest, size: int, opener: Callable[[], BinaryIO]) -> BlobOutcome:
        """Make the blob present in the repository; says whether it existed or was sent."""
        self.session.connect()

        def attempt() -> BlobOutcome:
            if self.blob_exists(digest):
                return "existing"
            self._upload(self._start_upload(digest), digest, size, opener)
            return "uploaded"

        outcome = self.session.retrying(attempt)
        self.outcomes[digest] = outcome
        self._progress(
            f"{digest}: {outcome}" + (f" ({size} bytes)" if outcome == "uploaded" else "")
        )
        return outcome

    def put_manifest(self, reference_or_tag: str, raw: bytes, media_type: str) -> Digest:
        """PUT a manifest by tag or digest; returns its digest, checked against the registry's."""
        local = Digest.of_bytes(raw)
        if "@" in reference_or_tag or ":" in reference_or_tag:
            try:
                wanted = Digest.parse(reference_or_tag.rpartition("@")[2])
            except ValueError:
                raise ImageError(f"invalid manifest reference {reference_or_tag!r}") from None
            if wanted != local:
                raise DigestMismatchError(
                    f"manifest bytes hash to {local}, not to the requested {wanted}"
                )
            target = str(wanted)
        elif is_tag(reference_or_tag):
            target = reference_or_tag
        else:
            raise ImageError(
                f"invalid tag {reference_or_tag!r}",
                hint="a tag is 1-128 letters, digits, '_', '.' or '-', not starting with . or -",
            )
        url = self.session.url(f"/v2/{self.ref.repository}/manifests/{target}")

        def attempt() -> Response:
            resp = self.session.request("PUT", url, {"Content-Type": media_type}, raw)
            if resp.status not in {200, 201}:
                raise self.session.error(
                    resp,
                    "PUT",
                    f"{self.ref.registry} rejected the manifest for {self.ref.repository}:{target}",
                    hint=_manifest_hint(resp, media_type),
                )
            return resp

        resp = self.session.retrying(attempt)
        returned = resp.headers.get("docker-content-digest", "")
        if returned:
            try:
                remote = Digest.parse(returned.strip())
            except ValueError:
                remote = None
            if remote != local:
                raise RegistryError(
                    f"digest mismatch: {self.ref.registry} stored the manifest for "
                    f"{self.ref.repository}:{target} as {printable(returned, 80)}, "
                    f"but its bytes hash to {local}",
                    status=resp.status,
                    method="PUT",
                    url=redact_url(url),
                    hint="the registry rewrote the manifest (or a proxy changed it); "
                    "reference the image by the registry's digest only after checking it",
                )
        self._progress(f"manifest {local}: pushed as {target}")
        return local

    # --- the upload protocol -------------------------------------------------------------------

    def _start_upload(self, digest: Digest) -> str:
        """``POST`` an upload session; returns its absolute ``Location``."""
        url = self.session.url(f"/v2/{self.ref.repository}/blobs/uploads/")
        resp = self.session.request("POST", url, {"Content-Length": "0"}, b"")
        if resp.status != 202:
            raise self.session.error(resp, "POST", f"cannot start the upload of {_short(digest)}")
        location = resp.headers.get("location", "")
        if not location:
            raise RegistryError(
                f"{self.ref.registry} gave no Location for the upload of {digest} ({resp.status})",
                status=resp.status,
                url=redact_url(resp.url),
            )
        return urljoin(resp.url, location)

    def _upload(
        self, location: str, digest: Digest, size: int, opener: Callable[[], BinaryIO]
    ) -> None:
        """One monolithic ``PUT LOCATION&digest=D`` with the blob, verified as it is sent."""
        url = with_query(location, [("digest", str(digest))])
        streams: list[BinaryIO] = []

        def body() -> Body:
            stream = opener()
            streams.append(stream)
            return VerifyingReader(stream, digest, size, what=f"blob {digest}", bounded=True)

        headers = {"Content-Type": _OCTET, "Content-Length": str(size)}
        try:
            resp = self.session.request("PUT", url, headers, body)
        finally:
            for stream in streams:
                stream.close()
        if resp.status not in {201, 204}:
            err = self.session.error(resp, "PUT", f"the upload of {_short(digest)} failed")
            if resp.status in {404, 416} or _SESSION_LOST_CODES & set(err.codes):
                # The registry lost the session (restart, expiry, load balancer): start over.
                err.temporary = True
            raise err
        returned = resp.headers.get("docker-content-digest", "").strip()
        if returned and returned != str(digest):
            raise RegistryError(
                f"digest mismatch: {self.ref.registry} stored blob {digest} as "
                f"{printable(returned, 80)}",
                status=resp.status,
                method="PUT",
                url=redact_url(resp.url),
                hint="a proxy between scratchpack and the registry may be altering uploads",
            )


def _check_image(image: PushableImage) -> None:
    if Digest.of_bytes(image.raw_manifest) != image.digest:
        raise DigestMismatchError(f"the image's manifest bytes do not hash to {image.digest}")
    if Digest.of_bytes(image.raw_config) != image.config_digest:
        raise DigestMismatchError(f"the image's config bytes do not hash to {image.config_digest}")


def _check_pinned(ref: Reference, digest: Digest, what: str) -> None:
    if ref.digest is not None and ref.digest != digest:
        raise ImageError(
            f"the reference {ref} pins digest {ref.digest}, but the {what} is {digest}",
            hint=f"push by tag, or use the {what}'s own digest",
        )


def _put_image(pusher: Pusher, image: PushableImage, target: str) -> Digest:
    """The image's layers and config, then its manifest under ``target`` (a tag or digest)."""
    seen: set[Digest] = set()
    for layer in image.layers:
        if layer.digest not in seen:
            seen.add(layer.digest)
            pusher.upload_blob(layer.digest, layer.size, layer.opener)
    raw_config = image.raw_config
    pusher.upload_blob(image.config_digest, len(raw_config), lambda: io.BytesIO(raw_config))
    return pusher.put_manifest(target, image.raw_manifest, image.manifest_media_type)


def _published(ref: Reference, digest: Digest, pusher: Pusher) -> Published:
    counts = {k: sum(1 for v in pusher.outcomes.values() if v == k) for k in _OUTCOMES}
    extra: tuple[tuple[str, str], ...] = (("tag", ref.tag),) if ref.tag else ()
    extra += tuple((f"blobs_{k}", str(n)) for k, n in counts.items())
    return Published("registry", f"{ref.name}@{digest}", digest, extra)


def _session(  # noqa: PLR0917 - the three push functions pass their own same-named arguments through
    ref: Reference,
    keychain: Keychain | None,
    options: PushOptions,
    transport: Transport | None,
    progress: Callable[[str], None] | None,
    sleep: Callable[[float], None],
    deadline: Deadline | None,
) -> Session:
    """The session every push opens (image, index, artifact): same auth, retries, deadline."""
    return Session(
        ref,
        keychain=keychain,
        options=options,
        transport=transport,
        progress=progress,
        sleep=sleep,
        deadline=deadline,
    )


def push(
    image: PushableImage,
    ref: Reference,
    *,
    keychain: Keychain | None = None,
    options: PushOptions = _DEFAULT_OPTIONS,
    transport: Transport | None = None,
    progress: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
) -> Published:
    """Push ``image`` to ``ref`` (tag, or digest) and return ``REPO@sha256:...``.

    Blobs the registry already has are skipped; the returned digest is the one the registry
    confirmed, equal to ``image.digest``. ``deadline`` (shared with an SBOM push, say) bounds
    the whole push; without one it gets ``options.push_timeout`` of its own.
    """
    _check_image(image)
    _check_pinned(ref, image.digest, "image")
    with _session(ref, keychain, options, transport, progress, sleep, deadline) as session:
        pusher = Pusher(session, progress=progress)
        digest = _put_image(pusher, image, ref.tag or str(image.digest))
    return _published(ref, digest, pusher)


def push_index(
    index: PushableIndex,
    ref: Reference,
    *,
    keychain: Keychain | None = None,
    options: PushOptions = _DEFAULT_OPTIONS,
    transport: Transport | None = None,
    progress: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
) -> Published:
    """Push a multi-platform image: each image by its digest, then the index under ``ref``.

    The index goes last, so a registry (which checks that an index's manifests exist) accepts
    it, and the tag never names a half-pushed image. Returns ``REPO@<index digest>``.
    """
    for image in index.images:
        _check_image(image)
    if Digest.of_bytes(index.raw_manifest) != index.digest:
        raise DigestMismatchError(f"the index's bytes do not hash to {index.digest}")
    _check_pinned(ref, index.digest, "index")
    with _session(ref, keychain, options, transport, progress, sleep, deadline) as session:
        pusher = Pusher(session, progress=progress)
        for image in index.images:
            _put_image(pusher, image, str(image.digest))
        target = ref.tag or str(index.digest)
        digest = pusher.put_manifest(target, index.raw_manifest, index.media_type)
    return _published(ref, digest, pusher)


# "mounted" stays in the report, always 0, because the JSON build report has carried the key
# since cross-repository mounts existed; dropping it would change the output.
_OUTCOMES: tuple[str, ...] = ("existing", "mounted", "uploaded")


def push_artifact(
    artifact: PushableArtifact,
    ref: Reference,
    *,
    tag: str,
    keychain: Keychain | None = None,
    options: PushOptions = _DEFAULT_OPTIONS,
    transport: Transport | None = None,
    progress: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
) -> Digest:
    """Push an artifact manifest (e.g. an SBOM with a ``subject``) and its blobs under ``tag``."""
    with _session(ref, keychain, options, transport, progress, sleep, deadline) as session:
        pusher = Pusher(session, progress=progress)
        for desc, data in artifact.blobs:
            if Digest.of_bytes(data) != desc.digest or len(data) != desc.size:
                raise DigestMismatchError(
                    f"artifact blob does not match its descriptor {desc.digest}"
                )
            pusher.upload_blob(desc.digest, desc.size, functools.partial(io.BytesIO, data))
        return pusher.put_manifest(tag, artifact.raw_manifest, artifact.media_type)
