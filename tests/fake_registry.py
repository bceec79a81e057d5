"""An in-process fake registry behind the Transport protocol: no sockets, no threads.

It speaks just enough of the distribution spec (ping, Basic and Bearer auth with a token
realm, blob HEAD/POST/PUT, manifest PUT) for the session and the pusher to be tested in
milliseconds, and records every request. Faults are scripted per request; the clock is a
plain attribute that tests move forward. The real registry runs in test_registry.py.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from scratchpack.oci._http import Body, Headers, Response, TransportError

REGISTRY = "registry.example"
REALM = "https://auth.example/token"
SERVICE = "fake-registry"

AuthMode = Literal["none", "basic", "bearer"]


@dataclass
class Call:
    """One request as the transport saw it (the body read to the end, if it could be)."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    timeout: float | None = None  # what the caller allowed the whole exchange

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.url).query)


@dataclass
class Fault:
    """Answer the next ``times`` requests matching ``method`` and ``path`` with ``action``.

    ``action`` is a status code (answered with an error document) or an exception to raise.
    """

    method: str
    path: str
    action: int | Exception
    times: int = 1
    code: str = ""
    fired: int = 0


@dataclass
class FakeRegistry:
    """The Transport: ``request(method, url, headers, body)`` -> Response."""

    auth: AuthMode = "none"
    users: dict[str, str] = field(default_factory=lambda: {"alice": "s3cret"})
    scheme: Literal["https", "http"] = "https"
    realm: str = REALM
    token_lifetime: int = 300
    now: float = 1000.0
    faults: list[Fault] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    tokens: dict[str, tuple[frozenset[str], float]] = field(default_factory=dict)
    required_scopes: Callable[[str], set[str]] | None = None
    rewrite: Callable[[Call, Response], Response] | None = None
    _uploads: dict[str, str] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def clock(self) -> float:
        return self.now

    def close(self) -> None:
        pass

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Body = None,
        *,
        timeout: float | None = None,
    ) -> Response:
        parts = urlsplit(url)
        data = _read_body(body)
        call = Call(method, url, dict(headers), data, timeout)
        self.calls.append(call)
        if parts.netloc == REGISTRY and parts.scheme != self.scheme:
            if self.scheme == "http":
                raise TransportError(
                    f"TLS handshake with {REGISTRY} failed: it answers in plain HTTP, not HTTPS",
                    method=method,
                    url=url,
                    tls=True,
                    remedy="insecure-registry",
                )
            raise TransportError("connection refused", method=method, url=url, temporary=True)
        for fault in self.faults:
            matches = fault.method == method and re.search(fault.path, parts.path)
            if fault.fired < fault.times and matches:
                fault.fired += 1
                if isinstance(fault.action, Exception):
                    raise fault.action
                return self._error(url, fault.action, fault.code or "UNAVAILABLE")
        if url.startswith(self.realm.split("?")[0]) and parts.netloc != REGISTRY:
            resp = self._token(call)
        else:
            resp = self._registry(call)
        return self.rewrite(call, resp) if self.rewrite else resp

    # --- the token service ---------------------------------------------------------------------

    def _token(self, call: Call) -> Response:
        if call.method == "POST":
            form = parse_qs(call.body.decode())
            scopes = form.get("scope", [""])[0].split(" ")
        else:
            scopes = call.query.get("scope", [])
            auth = call.headers.get("Authorization", "")
            if auth and not self._basic_ok(auth):
                return self._error(call.url, 401, "UNAUTHORIZED", "invalid username or password")
        token = f"token-{next(self._ids)}"
        self.tokens[token] = (frozenset(scopes), self.now + self.token_lifetime)
        doc = {"token": token, "expires_in": self.token_lifetime}
        return _json(call.url, 200, doc)

    def token_calls(self) -> list[Call]:
        return [c for c in self.calls if urlsplit(c.url).netloc != REGISTRY]

    # --- the registry --------------------------------------------------------------------------

    def _basic_ok(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return self.users.get(user) == password

    def _challenge(self, scope: str) -> str:
        if self.auth == "basic":
            return f'Basic realm="{REGISTRY}"'
        text = f'Bearer realm="{self.realm}",service="{SERVICE}"'
        return text + (f',scope="{scope}"' if scope else "")

    def _authorized(self, call: Call, scope: str) -> bool:
        header = call.headers.get("Authorization", "")
        if self.auth == "none":
            return True
        if self.auth == "basic":
            return self._basic_ok(header)
        granted = self.tokens.get(header.removeprefix("Bearer "))
        if granted is None or granted[1] <= self.now:
            return False
        wanted = {scope} if scope else set()
        if self.required_scopes is not None:
            wanted |= self.required_scopes(call.path)
        return wanted <= granted[0]

    def _registry(self, call: Call) -> Response:
        path = call.path
        if path == "/v2/":
            scope = ""
        else:
            repo = re.match(r"/v2/(.+?)/(blobs|manifests)/", path)
            scope = f"repository:{repo.group(1) if repo else ''}:pull,push"
        if not self._authorized(call, scope):
            doc = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
            wanted = {scope} if scope else set()
            if self.required_scopes is not None:
                wanted |= self.required_scopes(path)
            headers = [("WWW-Authenticate", self._challenge(" ".join(sorted(wanted))))]
            return _json(call.url, 401, doc, headers)
        if path == "/v2/":
            return _json(call.url, 200, {})
        route = f"{call.method} {path}"
        if m := re.fullmatch(r"HEAD /v2/(.+)/blobs/(sha256:[0-9a-f]{64})", route):
            status = 200 if m.group(2) in self.blobs else 404
            return Response(status, "", Headers(), b"", url=call.url)
        if m := re.fullmatch(r"POST /v2/(.+)/blobs/uploads/", route):
            upload = f"u{next(self._ids)}"
            self._uploads[upload] = m.group(1)
            location = f"/v2/{m.group(1)}/blobs/uploads/{upload}?_state=SECRET-{upload}"
            return Response(202, "Accepted", Headers([("Location", location)]), url=call.url)
        if m := re.fullmatch(r"PUT /v2/(.+)/blobs/uploads/(u\d+)", route):
            if self._uploads.pop(m.group(2), None) is None:
                return self._error(call.url, 404, "BLOB_UPLOAD_UNKNOWN")
            digest = call.query.get("digest", [""])[0]
            if "sha256:" + hashlib.sha256(call.body).hexdigest() != digest:
                return self._error(call.url, 400, "DIGEST_INVALID")
            self.blobs[digest] = call.body
            headers = Headers([("Docker-Content-Digest", digest)])
            return Response(201, "Created", headers, url=call.url)
        if m := re.fullmatch(r"PUT /v2/(.+)/manifests/([^/]+)", route):
            self.manifests[m.group(2)] = call.body
            digest = "sha256:" + hashlib.sha256(call.body).hexdigest()
            headers = Headers([("Docker-Content-Digest", digest)])
            return Response(201, "Created", headers, url=call.url)
        return self._error(call.url, 404, "NAME_UNKNOWN")

    def _error(self, url: str, status: int, code: str, message: str = "") -> Response:
        doc = {"errors": [{"code": code, "message": message or code.lower()}]}
        return _json(url, status, doc)

    def registry_calls(self) -> list[str]:
        """``METHOD path`` of each request to the registry, for asserting the protocol."""
        return [f"{c.method} {c.path}" for c in self.calls if urlsplit(c.url).netloc == REGISTRY]


def _read_body(body: Body) -> bytes:
    """Read a body as http.client does: ``read(blocksize)`` until it returns b''."""
    if body is None or isinstance(body, bytes):
        return body or b""
    parts = []
    while chunk := body.read(8192):
        parts.append(chunk)
    return b"".join(parts)


def _json(
    url: str, status: int, doc: object, headers: list[tuple[str, str]] | None = None
) -> Response:
    data = json.dumps(doc).encode()
    items = [("Content-Type", "application/json"), *(headers or [])]
    return Response(status, "", Headers(items), data, url=url)
