"""The registry sink: push an image to an OCI distribution-spec registry.

``push(image, ref)`` is the sink; :class:`Pusher` is the lower level it is built on (blob
uploads and manifest PUTs), also used to push artifact manifests such as an SBOM.

The protocol, in the order a push runs:

* ``GET /v2/`` (the ping) picks the scheme and learns the auth challenge. HTTPS only, unless
  ``insecure`` (then HTTPS without verification, falling back to plain HTTP).
* Basic: credentials are checked once on ``/v2/``, so a wrong password fails with the
  registry's own message before any upload. Bearer: a token for ``repository:NAME:pull,push``
  comes from the realm, with Basic credentials when there are any; tokens are cached per scope.
* For each blob: ``HEAD`` (skip it if present), ``POST`` an upload session (optionally a
  cross-repository mount), then one monolithic ``PUT ?digest=`` or ``PATCH`` chunks + ``PUT``.
* ``PUT`` the manifest and check that ``Docker-Content-Digest`` is the local digest.

Every blob upload is one retryable unit: on a temporary failure (5xx, 429, a dropped
connection, an upload session the registry lost in a restart) it starts again from ``HEAD``
with a fresh stream from the blob's opener, so a registry restarted mid-push still ends in a
correct push. Credentials are only ever sent to the registry host (and to the token realm it
names), and never over plain HTTP unless ``insecure`` was chosen.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, TypeVar
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from scratchpack import __version__
from scratchpack.errors import AuthError, DigestMismatchError, ImageError, RegistryError
from scratchpack.oci._http import (
    Body,
    Response,
    RetryPolicy,
    StdlibTransport,
    Transport,
    TransportError,
    redact_url,
    retrying,
    status_error,
)
from scratchpack.oci.auth import (
    Challenge,
    Credentials,
    Keychain,
    basic_authorization,
    default_keychain,
    parse_challenges,
    parse_token_response,
)
from scratchpack.oci.descriptor import Descriptor, Published
from scratchpack.oci.digest import Digest
from scratchpack.oci.reference import Reference

__all__ = [
    "BlobOutcome",
    "PushOptions",
    "PushableArtifact",
    "PushableImage",
    "PushableLayer",
    "Pusher",
    "push",
    "push_artifact",
]

log = logging.getLogger(__name__)

_OCTET = "application/octet-stream"
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_TOKEN_MARGIN = 10.0
_DEFAULT_TOKEN_LIFETIME = 60
_SESSION_LOST_CODES = frozenset({"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"})

BlobOutcome = Literal["existing", "mounted", "uploaded"]
T = TypeVar("T")


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


@dataclass(frozen=True, slots=True)
class PushOptions:
    """How to talk to the registry; contradictory settings raise here, not halfway through.

    ``insecure`` allows plain HTTP and unverified TLS (and so credentials over them); it is
    opt-in for every host, localhost included. ``chunk_size`` 0 uploads each blob in one
    ``PUT``; a positive value sends ``PATCH`` chunks of that many bytes.
    """

    insecure: bool = False
    ca_file: Path | None = None
    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    timeout: float = 60.0
    chunk_size: int = 0
    user_agent: str = f"scratchpack/{__version__}"

    def __post_init__(self) -> None:
        if self.insecure and self.ca_file is not None:
            raise RegistryError(
                "insecure and a CA file contradict each other: insecure skips TLS verification",
                hint="use either --insecure-registry or --registry-ca, not both",
            )
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("retries, backoff and max_backoff must not be negative")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.chunk_size < 0:
            raise ValueError("chunk_size must be 0 (monolithic) or a positive byte count")


class _VerifyingReader:
    """Reads exactly ``size`` bytes of a blob, hashing them; a short, long or wrong stream fails.

    The check runs when the last byte has been handed out, before the request can complete,
    so a corrupt local blob is never committed under its claimed digest.
    """

    def __init__(self, stream: BinaryIO, digest: Digest, size: int) -> None:
        self._stream = stream
        self._digest = digest
        self._size = size
        self._hash = hashlib.new(digest.algorithm)
        self.offset = 0

    def read(self, n: int = -1, /) -> bytes:
        remaining = self._size - self.offset
        if remaining <= 0:
            self._finish()
            return b""
        want = remaining if n is None or n < 0 else min(n, remaining)
        data = self._stream.read(want)
        if not data:
            raise DigestMismatchError(
                f"blob {self._digest} ended after {self.offset} of its {self._size} bytes",
                hint="the layer changed on disk since it was built; rebuild the image",
            )
        self._hash.update(data)
        self.offset += len(data)
        return data

    def read_exact(self, n: int) -> bytes:
        parts: list[bytes] = []
        while n > 0:
            data = self.read(n)
            parts.append(data)
            n -= len(data)
        return b"".join(parts)

    def _finish(self) -> None:
        if self._stream.read(1):
            raise DigestMismatchError(
                f"blob {self._digest} is longer than its recorded {self._size} bytes",
                hint="the layer changed on disk since it was built; rebuild the image",
            )
        actual = Digest(self._digest.algorithm, self._hash.hexdigest())
        if actual != self._digest:
            raise DigestMismatchError(
                f"blob bytes hash to {actual}, not to their recorded digest {self._digest}",
                hint="the layer changed on disk since it was built; rebuild the image",
            )

    def finish(self) -> None:
        """Assert the whole blob was read and matched (for the chunked path)."""
        if self.offset != self._size:
            raise DigestMismatchError(f"blob {self._digest} was not fully read")
        self._finish()


def _with_query(url: str, params: Sequence[tuple[str, str]]) -> str:
    """``url`` with ``params`` appended to whatever query it already has (e.g. ``_state``)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


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


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


class Pusher:
    """Pushes blobs and manifests to one repository; owns the auth state and the retries.

    Not thread-safe; one Pusher per push. ``close()`` (or ``with``) closes the transport it
    created (an injected transport is left to its owner).
    """

    def __init__(
        self,
        ref: Reference,
        *,
        keychain: Keychain | None = None,
        options: PushOptions = PushOptions(),
        transport: Transport | None = None,
        progress: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ref = ref
        self.options = options
        self._keychain = keychain
        self._own_transport = transport is None
        self._transport: Transport = transport or StdlibTransport(
            ca_file=options.ca_file, verify=not options.insecure, timeout=options.timeout
        )
        self._progress = progress or (lambda _msg: None)
        self._policy = RetryPolicy(
            options.retries, options.backoff, options.max_backoff, sleep=sleep
        )
        self._clock = clock
        self._base = ""
        self._challenge: Challenge | None = None
        self._creds: Credentials | None = None
        self._creds_resolved = False
        self._authorization = ""
        self._scopes: frozenset[str] = frozenset({self._scope(ref.repository, "pull,push")})
        self._tokens: dict[frozenset[str], tuple[str, float]] = {}
        self._min_chunk = 0
        self.outcomes: dict[Digest, BlobOutcome] = {}

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        if self._own_transport:
            self._transport.close()

    def __enter__(self) -> Pusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- public operations -------------------------------------------------------------------

    def upload_blob(
        self,
        digest: Digest,
        size: int,
        opener: Callable[[], BinaryIO],
        *,
        mount_from: str | None = None,
    ) -> BlobOutcome:
        """Make the blob present in the repository; says whether it existed, was mounted or sent.

        ``mount_from`` names another repository on the same registry to mount the blob from
        (the registry falls back to an upload when it cannot mount).
        """
        if mount_from:
            self._scopes |= {self._scope(mount_from, "pull")}
        self._ensure_ready()

        def attempt() -> BlobOutcome:
            if self._blob_exists(digest):
                return "existing"
            location = self._start_upload(digest, mount_from)
            if location is None:
                return "mounted"
            if self.options.chunk_size:
                self._upload_chunked(location, digest, size, opener)
            else:
                self._upload_monolithic(location, digest, size, opener)
            return "uploaded"

        outcome = self._retrying(attempt)
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
        elif _TAG.fullmatch(reference_or_tag):
            target = reference_or_tag
        else:
            raise ImageError(
                f"invalid tag {reference_or_tag!r}",
                hint="a tag is 1-128 letters, digits, '_', '.' or '-', not starting with . or -",
            )
        self._ensure_ready()
        url = f"{self._base}/v2/{self.ref.repository}/manifests/{target}"

        def attempt() -> Response:
            resp = self._call("PUT", url, {"Content-Type": media_type}, lambda: raw)
            if resp.status not in {200, 201}:
                raise self._error(
                    resp,
                    "PUT",
                    f"{self.ref.registry} rejected the manifest for {self.ref.repository}:{target}",
                    hint=_manifest_hint(resp, media_type),
                )
            return resp

        resp = self._retrying(attempt)
        returned = resp.headers.get("docker-content-digest", "")
        if returned:
            try:
                remote = Digest.parse(returned.strip())
            except ValueError:
                remote = None
            if remote != local:
                raise RegistryError(
                    f"digest mismatch: {self.ref.registry} stored the manifest for "
                    f"{self.ref.repository}:{target} as {returned.strip()[:80]}, "
                    f"but its bytes hash to {local}",
                    status=resp.status,
                    method="PUT",
                    url=redact_url(url),
                    hint="the registry rewrote the manifest (or a proxy changed it); "
                    "reference the image by the registry's digest only after checking it",
                )
        self._progress(f"manifest {local}: pushed as {target}")
        return local

    # --- connection and auth ---------------------------------------------------------------

    @staticmethod
    def _scope(repository: str, actions: str) -> str:
        return f"repository:{repository}:{actions}"

    def _retrying(self, op: Callable[[], T]) -> T:
        return retrying(self._policy, op, on_retry=self._on_retry)

    def _on_retry(self, err: RegistryError, attempt: int, delay: float) -> None:
        self._progress(f"retry {attempt}/{self._policy.retries} in {delay:.1f}s: {err.message}")

    def _credentials(self) -> Credentials | None:
        if not self._creds_resolved:
            keychain = self._keychain if self._keychain is not None else default_keychain()
            self._creds = keychain.resolve(self.ref.registry)
            self._creds_resolved = True
        return self._creds

    def _ensure_ready(self) -> None:
        """Ping once: choose the scheme and set up auth; later calls only refresh tokens."""
        if self._base:
            if self._challenge is not None and self._challenge.scheme == "bearer":
                self._authorization = "Bearer " + self._token(self._scopes)
            return
        host = self.ref.registry_host
        schemes = ("https", "http") if self.options.insecure else ("https",)
        resp: Response | None = None
        # The first contact fails fast (~1.5 s, not ~18 s): a registry that refuses the very
        # first connection is down or mistyped. Later requests keep the full retry budget,
        # which is what rides out a registry restarted mid-push.
        first_contact = replace(self._policy, retries=min(self._policy.retries, 2))
        for scheme in schemes:
            url = f"{scheme}://{host}/v2/"
            try:
                resp = retrying(
                    first_contact,
                    functools.partial(self._transport.request, "GET", url, self._headers()),
                    on_retry=self._on_retry,
                )
            except TransportError as err:
                if err.tls and scheme == "https" and self.options.insecure:
                    log.debug("TLS to %s failed (%s); trying plain HTTP", host, err.message)
                    continue
                raise
            self._base = f"{scheme}://{host}"
            break
        assert resp is not None
        if resp.status == 200:
            return
        if resp.status != 401:
            raise self._error(
                resp,
                "GET",
                f"{host} does not answer like an OCI registry",
                hint="check the registry host:port in the image reference",
            )
        challenges = parse_challenges(", ".join(resp.headers.get_all("www-authenticate")))
        self._authenticate(challenges, resp)

    def _authenticate(self, challenges: list[Challenge], resp: Response) -> None:
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        creds = self._credentials()
        if bearer is not None:
            self._challenge = bearer
            self._authorization = "Bearer " + self._token(self._scopes)
            return
        if basic is None:
            raise AuthError(
                f"{self.ref.registry} asks for an authentication scheme scratchpack does not "
                f"support: {', '.join(c.scheme for c in challenges) or 'none given'}",
                status=401,
                method="GET",
                url=redact_url(resp.url),
                hint="scratchpack supports Basic and Bearer (token) authentication",
            )
        self._challenge = basic
        if creds is None or creds.anonymous or not creds.username:
            raise self._error(resp, "GET", f"{self.ref.registry} requires a login", cls=AuthError)
        self._authorization = basic_authorization(creds)
        self._check_plain_http(self._base)
        url = f"{self._base}/v2/"
        check = retrying(
            self._policy,
            lambda: self._transport.request("GET", url, self._headers(authorized=True)),
            on_retry=self._on_retry,
        )
        if check.status != 200:
            raise self._error(
                check, "GET", f"{self.ref.registry} rejected the login", cls=AuthError
            )

    def _check_plain_http(self, url: str) -> None:
        if urlsplit(url).scheme == "http" and not self.options.insecure:
            raise AuthError(
                f"refusing to send credentials for {self.ref.registry} over plain HTTP "
                f"({redact_url(url)})",
                url=redact_url(url),
                hint="the registry sends credentials to a plain-HTTP address; use "
                "--insecure-registry only if you trust the network path to it",
            )

    def _token(self, scopes: frozenset[str]) -> str:
        """A Bearer token for ``scopes``: the config's ``registrytoken``, cached, or fetched."""
        creds = self._credentials()
        if creds is not None and creds.registry_token:
            return creds.registry_token
        cached = self._tokens.get(scopes)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        assert self._challenge is not None
        realm = self._challenge.get("realm")
        if urlsplit(realm).scheme not in {"http", "https"} or not urlsplit(realm).netloc:
            raise AuthError(
                f"{self.ref.registry} names an unusable token service realm {redact_url(realm)!r}",
                hint="the registry's auth configuration is broken; ask its operator",
            )
        service = self._challenge.get("service")
        creds = self._credentials()
        ordered = sorted(scopes)
        headers = self._headers()
        if creds is not None and creds.identity_token:
            self._check_plain_http(realm)
            form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", creds.identity_token),
                ("client_id", "scratchpack"),
                ("service", service),
                ("scope", " ".join(ordered)),
            ]
            method, url = "POST", realm
            body: bytes | None = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            query = [("service", service)] if service else []
            query += [("scope", s) for s in ordered]
            if creds is not None and creds.username:
                self._check_plain_http(realm)
                query.append(("account", creds.username))
                headers["Authorization"] = basic_authorization(creds)
            method, url, body = "GET", _with_query(realm, query), None

        def fetch() -> Response:
            resp = self._transport.request(method, url, headers, body)
            if resp.status >= 500 or resp.status == 429:
                raise self._error(resp, method, "the token service failed")
            return resp

        resp = retrying(self._policy, fetch, on_retry=self._on_retry)
        if resp.status in {401, 403}:
            who = creds.describe() if creds is not None and not creds.anonymous else "anonymous"
            raise self._error(
                resp,
                method,
                f"the token service for {self.ref.registry} refused {who}",
                cls=AuthError,
            )
        if resp.status != 200:
            raise self._error(resp, method, "the token service failed")
        try:
            token, expires_in = parse_token_response(resp.body)
        except ValueError as err:
            raise AuthError(
                f"the token service for {self.ref.registry} ({redact_url(realm)}) sent an "
                f"unusable answer: {err}",
                status=resp.status,
                method=method,
                url=redact_url(realm),
            ) from None
        lifetime = expires_in or _DEFAULT_TOKEN_LIFETIME
        self._tokens[scopes] = (token, self._clock() + max(1.0, lifetime - _TOKEN_MARGIN))
        return token

    def _headers(self, *, authorized: bool = False) -> dict[str, str]:
        headers = {"User-Agent": self.options.user_agent}
        if authorized and self._authorization:
            headers["Authorization"] = self._authorization
        return headers

    def _call(
        self,
        method: str,
        url: str,
        extra: Mapping[str, str],
        body: Callable[[], Body],
    ) -> Response:
        """One registry request with auth; a 401 renews a Bearer token once and resends."""
        for renewed in (False, True):
            same_origin = _origin(url) == _origin(self._base)
            if not same_origin and urlsplit(url).scheme == "http" and not self.options.insecure:
                raise RegistryError(
                    f"{self.ref.registry} redirected {method} to plain HTTP ({redact_url(url)})",
                    method=method,
                    url=redact_url(url),
                    hint="a registry served over HTTPS must not send uploads to plain HTTP",
                )
            headers = self._headers(authorized=same_origin)
            headers.update(extra)
            resp = self._transport.request(method, url, headers, body())
            if resp.status != 401 or renewed or not same_origin:
                return resp
            if not self._reauthenticate(resp):
                return resp
        return resp

    def _reauthenticate(self, resp: Response) -> bool:
        """Answer a 401 from the registry once: renew the Bearer token or start sending Basic.

        A registry may name the scope it wants (a token that expired, a mount source, a
        registry whose ping was anonymous): the new token covers the union of scopes.
        """
        challenges = parse_challenges(", ".join(resp.headers.get_all("www-authenticate")))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            self._challenge = bearer
            wanted = bearer.get("scope")
            if wanted:
                self._scopes |= set(wanted.split(" "))
            self._tokens.pop(self._scopes, None)
            self._authorization = "Bearer " + self._token(self._scopes)
            return True
        if basic is not None and not self._authorization.startswith("Basic "):
            creds = self._credentials()
            if creds is None or not creds.username:
                return False
            self._check_plain_http(self._base)
            self._challenge = basic
            self._authorization = basic_authorization(creds)
            return True
        return False

    def _auth_hint(self) -> str:
        host = self.ref.registry
        creds = self._creds
        if creds is None or creds.anonymous:
            return (
                f"no credentials for {host} were found ($DOCKER_CONFIG/config.json or "
                "~/.docker/config.json with credential helpers, then Podman's auth.json); "
                f"run `docker login {host}` or `podman login {host}`"
            )
        return (
            f"{host} did not accept {creds.describe()} for pushing to {self.ref.repository}: "
            f"check the password with `docker login {host}`, the account's push permission, "
            "and the repository name"
        )

    def _error(
        self,
        resp: Response,
        method: str,
        what: str,
        *,
        cls: type[RegistryError] = RegistryError,
        hint: str | None = None,
    ) -> RegistryError:
        if resp.status in {401, 403}:
            cls = AuthError
            hint = hint or self._auth_hint()
            if method == "HEAD" and not resp.body and _origin(resp.url) == _origin(self._base):
                # HEAD answers have no body; ask again with GET for the registry's own words.
                headers = self._headers(authorized=True)
                try:
                    again = self._transport.request("GET", resp.url, headers)
                    if again.status in {401, 403}:
                        resp, method = again, "GET"
                except RegistryError:
                    pass  # keep the HEAD answer
        elif resp.status == 404 and "NAME_UNKNOWN" in resp.body.decode("utf-8", "replace"):
            hint = hint or (
                f"check the repository name {self.ref.repository!r}; some registries only "
                "accept pushes to repositories created beforehand"
            )
        elif resp.status >= 500:
            hint = hint or "the registry is failing; try again later or ask its operator"
        return status_error(resp, method, what, cls=cls, hint=hint)

    # --- blobs -------------------------------------------------------------------------------

    def _blob_exists(self, digest: Digest) -> bool:
        url = f"{self._base}/v2/{self.ref.repository}/blobs/{digest}"
        resp = self._call("HEAD", url, {}, lambda: None)
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        raise self._error(resp, "HEAD", f"cannot check for blob {_short(digest)}")

    def _start_upload(self, digest: Digest, mount_from: str | None) -> str | None:
        url = f"{self._base}/v2/{self.ref.repository}/blobs/uploads/"
        if mount_from:
            url += "?" + urlencode({"mount": str(digest), "from": mount_from})
        resp = self._call("POST", url, {"Content-Length": "0"}, lambda: b"")
        if resp.status == 201 and mount_from:
            return None
        if resp.status != 202:
            raise self._error(resp, "POST", f"cannot start the upload of {_short(digest)}")
        min_chunk = resp.headers.get("oci-chunk-min-length", "")
        if min_chunk.isdigit():
            self._min_chunk = int(min_chunk)
        return self._location(resp, f"the upload of {digest}")

    def _location(self, resp: Response, what: str) -> str:
        location = resp.headers.get("location", "")
        if not location:
            raise RegistryError(
                f"{self.ref.registry} gave no Location for {what} ({resp.status})",
                status=resp.status,
                url=redact_url(resp.url),
            )
        return urljoin(resp.url, location)

    def _session_error(self, resp: Response, method: str, digest: Digest) -> RegistryError:
        err = self._error(resp, method, f"the upload of {_short(digest)} failed")
        if resp.status in {404, 416} or _SESSION_LOST_CODES & set(err.codes):
            # The registry lost the session (restart, expiry, load balancer): start over.
            err.temporary = True
        return err

    def _upload_monolithic(
        self, location: str, digest: Digest, size: int, opener: Callable[[], BinaryIO]
    ) -> None:
        url = _with_query(location, [("digest", str(digest))])
        streams: list[BinaryIO] = []

        def body() -> Body:
            stream = opener()
            streams.append(stream)
            return _VerifyingReader(stream, digest, size)

        headers = {"Content-Type": _OCTET, "Content-Length": str(size)}
        try:
            resp = self._call("PUT", url, headers, body)
        finally:
            for stream in streams:
                stream.close()
        self._finish_upload(resp, digest)

    def _upload_chunked(
        self, location: str, digest: Digest, size: int, opener: Callable[[], BinaryIO]
    ) -> None:
        chunk = max(self.options.chunk_size, self._min_chunk)
        with opener() as stream:
            reader = _VerifyingReader(stream, digest, size)
            offset = 0
            while offset < size:
                data = reader.read_exact(min(chunk, size - offset))
                end = offset + len(data) - 1
                headers = {
                    "Content-Type": _OCTET,
                    "Content-Range": f"{offset}-{end}",
                    "Content-Length": str(len(data)),
                }
                resp = self._call("PATCH", location, headers, functools.partial(bytes, data))
                if resp.status != 202:
                    raise self._session_error(resp, "PATCH", digest)
                got = resp.headers.get("range", "")
                if got and got.strip().removeprefix("bytes=") != f"0-{end}":
                    raise RegistryError(
                        f"the upload of {digest} is out of step: the registry has {got}, "
                        f"scratchpack sent 0-{end}",
                        status=resp.status,
                        method="PATCH",
                        url=redact_url(location),
                        temporary=True,
                    )
                location = self._location(resp, f"the upload of {digest}")
                offset = end + 1
                self._progress(f"{digest}: {offset}/{size} bytes")
            reader.finish()
        url = _with_query(location, [("digest", str(digest))])
        resp = self._call("PUT", url, {"Content-Length": "0"}, lambda: b"")
        self._finish_upload(resp, digest)

    def _finish_upload(self, resp: Response, digest: Digest) -> None:
        if resp.status not in {201, 204}:
            raise self._session_error(resp, "PUT", digest)
        returned = resp.headers.get("docker-content-digest", "").strip()
        if returned and returned != str(digest):
            raise RegistryError(
                f"digest mismatch: {self.ref.registry} stored blob {digest} as {returned[:80]}",
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


def push(
    image: PushableImage,
    ref: Reference,
    *,
    keychain: Keychain | None = None,
    options: PushOptions = PushOptions(),
    transport: Transport | None = None,
    progress: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Published:
    """Push ``image`` to ``ref`` (tag, or digest) and return ``REPO@sha256:...``.

    Blobs the registry already has are skipped; the returned digest is the one the registry
    confirmed, equal to ``image.digest``.
    """
    _check_image(image)
    if ref.digest is not None and ref.digest != image.digest:
        raise ImageError(
            f"the reference {ref} pins digest {ref.digest}, but the image is {image.digest}",
            hint="push by tag, or use the image's own digest",
        )
    with Pusher(
        ref,
        keychain=keychain,
        options=options,
        transport=transport,
        progress=progress,
        sleep=sleep,
    ) as pusher:
        seen: set[Digest] = set()
        for layer in image.layers:
            if layer.digest not in seen:
                seen.add(layer.digest)
                pusher.upload_blob(layer.digest, layer.size, layer.opener)
        raw_config = image.raw_config
        pusher.upload_blob(image.config_digest, len(raw_config), lambda: io.BytesIO(raw_config))
        target = ref.tag or str(image.digest)
        digest = pusher.put_manifest(target, image.raw_manifest, image.manifest_media_type)
        counts = {k: sum(1 for v in pusher.outcomes.values() if v == k) for k in _OUTCOMES}
    extra: tuple[tuple[str, str], ...] = (("tag", ref.tag),) if ref.tag else ()
    extra += tuple((f"blobs_{k}", str(n)) for k, n in counts.items())
    return Published("registry", f"{ref.name}@{digest}", digest, extra)


_OUTCOMES: tuple[BlobOutcome, ...] = ("existing", "mounted", "uploaded")


def push_artifact(
    artifact: PushableArtifact,
    ref: Reference,
    *,
    tag: str,
    keychain: Keychain | None = None,
    options: PushOptions = PushOptions(),
    transport: Transport | None = None,
    progress: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Digest:
    """Push an artifact manifest (e.g. an SBOM with a ``subject``) and its blobs under ``tag``."""
    with Pusher(
        ref,
        keychain=keychain,
        options=options,
        transport=transport,
        progress=progress,
        sleep=sleep,
    ) as pusher:
        for desc, data in artifact.blobs:
            if Digest.of_bytes(data) != desc.digest or len(data) != desc.size:
                raise DigestMismatchError(
                    f"artifact blob does not match its descriptor {desc.digest}"
                )
            pusher.upload_blob(desc.digest, desc.size, functools.partial(io.BytesIO, data))
        return pusher.put_manifest(tag, artifact.raw_manifest, artifact.media_type)
