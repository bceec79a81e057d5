"""A registry session: any Transport, plus first contact, auth, retries and error hints.

The model is go-containerregistry's ``pkg/v1/remote/transport``: ping, Basic, Bearer and
retry composed around a plain HTTP transport, so that the code speaking the distribution
protocol (``registry.Pusher``) sends requests and reads answers without knowing how the
registry wants to be authenticated. What a session does, in the order a push meets it:

* **First contact** (``GET /v2/``, the ping) picks the scheme and learns the challenge.
  HTTPS only, unless ``insecure`` (then HTTPS without verification, falling back to plain
  HTTP when the TLS handshake fails). The ping fails fast: a registry that refuses the very
  first connection is down or mistyped, so it gets at most two retries.
* **Basic**: the credentials are checked once on ``/v2/``, so a wrong password fails with the
  registry's own message before any upload.
* **Bearer**: a token for the session's scopes (``repository:NAME:pull,push``) comes from the
  realm, with Basic credentials when there are any (or an identity token through the OAuth2
  refresh flow, or a ``registrytoken`` used as is). Tokens are cached per scope set until
  ``expires_in`` minus a margin, by an injectable clock. A later 401 is answered once: the
  token is renewed for the union of the session's scopes and the challenge's ``scope``, or
  Basic is started when the ping was anonymous.
* **Where credentials go**: only to the registry's own host:port and to a token realm over
  verified HTTPS on another host. ``insecure`` allows plain HTTP and unverified TLS to the
  registry's host:port only, so an insecure registry never sends its password to another
  host (a different port is a different host: any local user can listen on one). A request
  to another origin goes out without ``Authorization`` and its 401 is not answered.
* **Retries**: :meth:`Session.retrying` runs a unit of work under the backoff policy and
  reports each retry through ``progress``; the ping and the token requests use it inside.
  The caller chooses the unit (a whole blob upload, from ``HEAD``), because only the caller
  knows what is safe to repeat.
* **Deadlines**: the whole push (every request, token and retry, across the sessions that
  share a :class:`~scratchpack.oci._http.Deadline`) must end by ``push_timeout``; each
  request is sent with the time left, no retry sleeps past it, and a push out of time fails
  with :class:`~scratchpack.oci._http.DeadlineExceededError` naming the last thing it waited
  for. The transport bounds each request's whole answer on top (``timeout``).
* **Error hints**: :meth:`Session.error` turns a failed answer into a typed error that says
  what to try (log in, check the permission or the repository name, try later).

Messages name no CLI flag: an error a front end can fix with one of its options carries a
``remedy`` key (``insecure-registry``, ``registry-ca``, ...) that the CLI words.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlencode, urlsplit

from scratchpack import __version__
from scratchpack.errors import AuthError, RegistryError
from scratchpack.oci._http import (
    Body,
    Deadline,
    DeadlineExceededError,
    Response,
    RetryPolicy,
    StdlibTransport,
    Transport,
    TransportError,
    redact_url,
    retrying,
    status_error,
    with_query,
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
from scratchpack.oci.reference import Reference

__all__ = ["RequestBody", "Session", "SessionOptions", "repository_scope"]

log = logging.getLogger(__name__)

_TOKEN_MARGIN = 10.0
#: The ping answers ``/v2/`` from memory: a server silent this long is not a working registry,
#: and retrying it only multiplies the wait (a refused connection is still retried).
_PING_TIMEOUT = 20.0
_DEFAULT_TOKEN_LIFETIME = 60

T = TypeVar("T")

RequestBody = bytes | Callable[[], Body] | None
"""A request body that can be sent again: bytes, or a factory called once per send."""


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """How to talk to a registry; contradictory settings raise here, not halfway through.

    ``insecure`` allows plain HTTP and unverified TLS (and so credentials over them); it is
    opt-in for every host, localhost included. ``ca_file`` adds a CA to the system store.
    """

    insecure: bool = False
    ca_file: Path | None = None
    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    timeout: float = 60.0  # per request: connect, each send, the whole answer
    push_timeout: float = 300.0  # the whole push, retries included
    user_agent: str = f"scratchpack/{__version__}"

    def __post_init__(self) -> None:
        if self.insecure and self.ca_file is not None:
            raise RegistryError(
                "insecure and a CA file contradict each other: insecure skips TLS verification",
                hint="choose either insecure (no TLS verification) or a CA file, not both",
                remedy="insecure-or-ca",
            )
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("retries, backoff and max_backoff must not be negative")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if not self.push_timeout > 0:
            raise RegistryError(
                f"a push timeout must be a positive number of seconds, not {self.push_timeout}",
                hint="give the most seconds a whole push may take, e.g. 300",
                remedy="push-timeout-value",
            )


def repository_scope(repository: str, actions: str = "pull,push") -> str:
    """The token scope for ``actions`` on one repository (distribution's token spec)."""
    return f"repository:{repository}:{actions}"


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _host_port(url: str) -> tuple[str, int]:
    """Who receives a request, whatever the scheme: ``(host, port)`` with the scheme's default."""
    parts = urlsplit(url)
    port = parts.port or (80 if parts.scheme == "http" else 443)
    return (parts.hostname or "").lower(), port


class Session:
    """Authenticated requests to one registry, on behalf of one repository.

    Not thread-safe; one session per push. ``close()`` (or ``with``) closes the transport it
    created (an injected transport is left to its owner).
    """

    def __init__(
        self,
        ref: Reference,
        *,
        keychain: Keychain | None = None,
        options: SessionOptions = SessionOptions(),
        transport: Transport | None = None,
        scopes: Iterable[str] | None = None,
        progress: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        deadline: Deadline | None = None,
    ) -> None:
        self.ref = ref
        self.options = options
        self._keychain = keychain
        self._own_transport = transport is None
        self._transport: Transport = transport or StdlibTransport(
            ca_file=options.ca_file,
            insecure_hosts=[_host_port(f"https://{ref.registry_host}")] if options.insecure else (),
            timeout=options.timeout,
        )
        self._progress = progress or (lambda _msg: None)
        self._policy = RetryPolicy(
            options.retries, options.backoff, options.max_backoff, sleep=sleep
        )
        self._clock = clock
        self._deadline = deadline or Deadline.after(options.push_timeout, clock)
        self._base = ""
        self._challenge: Challenge | None = None
        self._creds: Credentials | None = None
        self._creds_resolved = False
        self._authorization = ""
        wanted = [repository_scope(ref.repository)] if scopes is None else scopes
        self._scopes: frozenset[str] = frozenset(wanted)
        self._tokens: dict[frozenset[str], tuple[str, float]] = {}

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        if self._own_transport:
            self._transport.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what callers use --------------------------------------------------------------------

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes the next token will cover (grows when a registry asks for more)."""
        return self._scopes

    def connect(self) -> str:
        """Ping once (scheme, challenge, login); later calls only refresh an expired token.

        Returns the base URL (``https://host:port``). Callers run it before their retry
        units, so that a registry that cannot be reached or logged into fails once, with its
        own message, rather than once per blob.
        """
        if self._base:
            if self._challenge is not None and self._challenge.scheme == "bearer":
                self._authorization = "Bearer " + self._token(self._scopes)
            return self._base
        self._ping()
        return self._base

    def url(self, path: str) -> str:
        """``path`` (``/v2/...``) on the registry, connecting first if needed."""
        return self.connect() + path

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: RequestBody = None,
    ) -> Response:
        """One request with auth; a 401 from the registry is answered once and resent.

        ``Authorization`` goes only to the registry's own origin. An answer is returned
        whatever its status: turning it into an error is the caller's business (with
        :meth:`error` for the hints).
        """
        self.connect()
        make_body: Callable[[], Body] = body if callable(body) else functools.partial(_same, body)
        resp: Response | None = None
        for renewed in (False, True):
            same_origin = _origin(url) == _origin(self._base)
            if not same_origin and urlsplit(url).scheme == "http" and not self.options.insecure:
                raise RegistryError(
                    f"{self.ref.registry} redirected {method} to plain HTTP ({redact_url(url)})",
                    method=method,
                    url=redact_url(url),
                    hint="a registry served over HTTPS must not send uploads to plain HTTP",
                )
            sent = self._headers(authorized=same_origin)
            sent.update(headers or {})
            resp = self._send(method, url, sent, make_body())
            if resp.status != 401 or renewed or not same_origin:
                return resp
            if not self._reauthenticate(resp):
                return resp
        assert resp is not None
        return resp

    def retrying(self, op: Callable[[], T]) -> T:
        """Run ``op``; on a temporary RegistryError back off and run it again.

        Temporary: no answer at all (refused, reset, timed out), 408/429/5xx, the
        ``UNAVAILABLE``/``TOOMANYREQUESTS`` codes, or whatever the caller marks temporary.
        """
        return retrying(self._policy, op, on_retry=self._on_retry, time_left=self._deadline.left)

    def error(
        self,
        resp: Response,
        method: str,
        what: str,
        *,
        cls: type[RegistryError] = RegistryError,
        hint: str | None = None,
    ) -> RegistryError:
        """The registry's own words for a failed answer, typed, with a hint that fits it."""
        if resp.status in {401, 403}:
            cls = AuthError
            hint = hint or self._auth_hint()
            if method == "HEAD" and not resp.body and _origin(resp.url) == _origin(self._base):
                # HEAD answers have no body; ask again with GET for the registry's own words.
                headers = self._headers(authorized=True)
                try:
                    again = self._send("GET", resp.url, headers)
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

    # --- the one way out ---------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Body = None,
        *,
        limit: float | None = None,
    ) -> Response:
        """The transport's request, given the push's time left (or ``limit`` if shorter);
        out of time is final."""
        left = self._deadline.left()
        if left <= 0:
            raise self._out_of_time(f"{method} {redact_url(url)} was not sent")
        try:
            return self._transport.request(
                method, url, headers, body, timeout=left if limit is None else min(left, limit)
            )
        except TransportError as err:
            if self._deadline.left() <= 0:
                raise self._out_of_time(err.message) from None
            raise

    def _out_of_time(self, last: str) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"the push to {self.ref.registry} did not finish within "
            f"{self._deadline.seconds:g} s: {last}",
            hint="the registry is too slow or does not answer; check that it is a working "
            "registry and the network path to it, or allow the push more time",
            remedy="push-timeout",
        )

    # --- first contact -----------------------------------------------------------------------

    def _on_retry(self, err: RegistryError, attempt: int, delay: float) -> None:
        self._progress(f"retry {attempt}/{self._policy.retries} in {delay:.1f}s: {err.message}")

    def _credentials(self) -> Credentials | None:
        """Resolved lazily, only when a registry asks: helpers are processes, maybe prompts."""
        if not self._creds_resolved:
            keychain = self._keychain if self._keychain is not None else default_keychain()
            self._creds = keychain.resolve(self.ref.registry)
            self._creds_resolved = True
        return self._creds

    def _headers(self, *, authorized: bool = False) -> dict[str, str]:
        headers = {"User-Agent": self.options.user_agent}
        if authorized and self._authorization:
            headers["Authorization"] = self._authorization
        return headers

    def _ping(self) -> None:
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
                    functools.partial(self._send, "GET", url, self._headers(), limit=_PING_TIMEOUT),
                    is_retryable=lambda e: e.temporary and not getattr(e, "timed_out", False),
                    on_retry=self._on_retry,
                    time_left=self._deadline.left,
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
            raise self.error(
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
            raise self.error(resp, "GET", f"{self.ref.registry} requires a login", cls=AuthError)
        self._authorization = basic_authorization(creds)
        self._check_plain_http(self._base)
        url = f"{self._base}/v2/"
        check = self.retrying(lambda: self._send("GET", url, self._headers(authorized=True)))
        if check.status != 200:
            raise self.error(check, "GET", f"{self.ref.registry} rejected the login", cls=AuthError)

    # --- credentials and tokens --------------------------------------------------------------

    def _check_plain_http(self, url: str) -> None:
        """Credentials never travel in clear unless the caller chose ``insecure``."""
        if urlsplit(url).scheme == "http" and not self.options.insecure:
            raise AuthError(
                f"refusing to send credentials for {self.ref.registry} over plain HTTP "
                f"({redact_url(url)})",
                url=redact_url(url),
                hint="the registry sends credentials to a plain-HTTP address; allow insecure "
                "registries only if you trust the network path to it",
                remedy="credentials-plain-http",
            )

    def _check_realm(self, realm: str) -> None:
        """A token realm gets credentials on the registry's own host:port, or over HTTPS.

        ``insecure`` is a choice about one registry; a realm elsewhere over plain HTTP would
        hand the password to whoever listens on that path, so it is refused even then (the
        realm's TLS is verified: the transport skips verification only for the registry).
        """
        if _host_port(realm) == _host_port(self._base):
            self._check_plain_http(realm)
            return
        if urlsplit(realm).scheme != "https":
            raise AuthError(
                f"refusing to send credentials for {self.ref.registry} to the token service "
                f"{redact_url(realm)}: it is plain HTTP to another host",
                url=redact_url(realm),
                hint="credentials go only to the registry itself or to a token service over "
                "HTTPS; serve the token service over HTTPS (or from the registry's own "
                "host:port), or push without credentials if the registry allows it",
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
        ordered = sorted(scopes)
        headers = self._headers()
        if creds is not None and creds.identity_token:
            self._check_realm(realm)
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
                self._check_realm(realm)
                query.append(("account", creds.username))
                headers["Authorization"] = basic_authorization(creds)
            method, url, body = "GET", with_query(realm, query), None

        def fetch() -> Response:
            resp = self._send(method, url, headers, body)
            if resp.status >= 500 or resp.status == 429:
                raise self.error(resp, method, "the token service failed")
            return resp

        resp = self.retrying(fetch)
        if resp.status in {401, 403}:
            who = creds.describe() if creds is not None and not creds.anonymous else "anonymous"
            raise self.error(
                resp,
                method,
                f"the token service for {self.ref.registry} refused {who}",
                cls=AuthError,
            )
        if resp.status != 200:
            raise self.error(resp, method, "the token service failed")
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

    def _reauthenticate(self, resp: Response) -> bool:
        """Answer a 401 from the registry once: renew the Bearer token or start sending Basic.

        A registry may name the scope it wants (a token that expired, an insufficient scope,
        a registry whose ping was anonymous): the new token covers the union of scopes.
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


def _same(body: bytes | None) -> Body:
    return body
