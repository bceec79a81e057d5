"""The registry session against an in-process fake transport: auth, realm rules, retries.

Fast tier (no sockets): every exchange the session has with a registry and its token
service is scripted by tests/fake_registry.py; the real registry is test_registry.py's.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from scratchpack.cli import render_error
from scratchpack.errors import AuthError, RegistryError
from scratchpack.oci._http import TransportError
from scratchpack.oci.auth import Credentials
from scratchpack.oci.reference import Reference
from scratchpack.oci.session import Session, SessionOptions
from tests.fake_registry import REGISTRY, SERVICE, FakeRegistry, Fault
from testsupport.registry_server import StaticKeychain

REF = Reference.parse(f"{REGISTRY}/team/app:v1")
ALICE = Credentials("alice", "s3cret", source="test config")
APP_SCOPE = "repository:team/app:pull,push"


def _keychain(creds: Credentials | None = ALICE) -> StaticKeychain:
    return StaticKeychain.of({REGISTRY: creds} if creds else {})


class Harness:
    """A session on a fake registry, with the sleeps and progress lines it produced."""

    def __init__(
        self,
        fake: FakeRegistry,
        *,
        creds: Credentials | None = ALICE,
        options: SessionOptions | None = None,
    ) -> None:
        self.fake = fake
        self.sleeps: list[float] = []
        self.progress: list[str] = []
        self.session = Session(
            REF,
            keychain=_keychain(creds),
            options=options or SessionOptions(),
            transport=fake,
            progress=self.progress.append,
            sleep=self.sleeps.append,
            clock=fake.clock,
        )

    def get(self, path: str) -> int:
        return self.session.request("GET", self.session.url(path)).status


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    yield FakeRegistry()


def _auth_headers(fake: FakeRegistry) -> list[str]:
    return [c.headers.get("Authorization", "") for c in fake.calls]


# --- first contact -----------------------------------------------------------------------------


def test_anonymous_registry_needs_no_credentials(fake: FakeRegistry):
    h = Harness(fake, creds=None)
    assert h.session.connect() == f"https://{REGISTRY}"
    assert h.get("/v2/team/app/manifests/v1") == 404
    assert fake.registry_calls() == ["GET /v2/", "GET /v2/team/app/manifests/v1"]
    assert not any(_auth_headers(fake))
    assert all(c.headers["User-Agent"].startswith("scratchpack/") for c in fake.calls)


def test_https_only_unless_insecure():
    plain = FakeRegistry(scheme="http")
    with pytest.raises(TransportError) as info:
        Harness(plain).session.connect()
    assert info.value.tls and info.value.remedy == "insecure-registry"
    assert "--insecure-registry" in render_error(info.value)
    assert [c.url for c in plain.calls] == [f"https://{REGISTRY}/v2/"]

    plain = FakeRegistry(scheme="http", auth="basic")
    h = Harness(plain, options=SessionOptions(insecure=True))
    assert h.session.connect() == f"http://{REGISTRY}"
    # https (unverified) first, then plain HTTP; Basic over HTTP only because insecure.
    assert [c.url.split(":")[0] for c in plain.calls] == ["https", "http", "http"]
    assert _auth_headers(plain)[-1].startswith("Basic ")


def test_a_server_that_is_no_registry_is_named():
    fake = FakeRegistry(faults=[Fault("GET", r"^/v2/$", 404, code="NOT_FOUND")])
    with pytest.raises(RegistryError, match="does not answer like an OCI registry") as info:
        Harness(fake).session.connect()
    assert "host:port" in (info.value.hint or "")


# --- Basic ---------------------------------------------------------------------------------------


def test_basic_login_is_checked_once_and_then_sent(fake: FakeRegistry):
    fake.auth = "basic"
    h = Harness(fake)
    assert h.get("/v2/team/app/blobs/uploads/") == 404  # any authorized request
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert fake.registry_calls() == ["GET /v2/", "GET /v2/", "GET /v2/team/app/blobs/uploads/"]
    assert _auth_headers(fake) == ["", expected, expected]


def test_basic_wrong_password_fails_before_any_upload(fake: FakeRegistry):
    fake.auth = "basic"
    h = Harness(fake, creds=Credentials("alice", "nope-nope", source="/tmp/cfg.json"))
    with pytest.raises(AuthError) as info:
        h.session.connect()
    err = info.value
    assert "rejected the login" in str(err) and "authentication required" in str(err)
    assert "docker login registry.example" in str(err) and "/tmp/cfg.json" in str(err)
    assert "nope-nope" not in str(err) + repr(err)


def test_basic_without_credentials_says_how_to_log_in(fake: FakeRegistry):
    fake.auth = "basic"
    with pytest.raises(AuthError, match="requires a login") as info:
        Harness(fake, creds=None).session.connect()
    assert "no credentials for registry.example" in str(info.value)


def test_basic_demanded_after_an_anonymous_ping(fake: FakeRegistry):
    fake.auth = "basic"
    fake.faults.append(Fault("GET", r"^/v2/$", 200))  # /v2/ open, repositories not
    h = Harness(fake)
    assert h.get("/v2/team/app/blobs/uploads/") == 404
    uploads = "GET /v2/team/app/blobs/uploads/"
    assert fake.registry_calls() == ["GET /v2/", uploads, uploads]  # the 401, then Basic
    first, second = _auth_headers(fake)[1:]
    assert first == "" and second.startswith("Basic ")


# --- Bearer --------------------------------------------------------------------------------------


def test_bearer_token_from_the_realm_with_basic_credentials(fake: FakeRegistry):
    fake.auth = "bearer"
    h = Harness(fake)
    assert h.get("/v2/team/app/blobs/uploads/") == 404
    [token_call] = fake.token_calls()
    assert token_call.query == {"service": [SERVICE], "scope": [APP_SCOPE], "account": ["alice"]}
    assert token_call.headers["Authorization"].startswith("Basic ")
    assert _auth_headers(fake)[-1] == "Bearer token-0"
    assert h.get("/v2/team/app/blobs/uploads/") == 404
    assert len(fake.token_calls()) == 1, "the token is cached for its lifetime"


def test_bearer_scope_merge_on_a_401_that_names_more(fake: FakeRegistry):
    fake.auth = "bearer"
    base = "repository:base/img:pull"
    fake.required_scopes = lambda path: {base} if "/manifests/" in path else set()
    h = Harness(fake)
    assert h.get("/v2/team/app/manifests/v1") == 404
    first, second = fake.token_calls()
    assert first.query["scope"] == [APP_SCOPE]
    assert second.query["scope"] == sorted([APP_SCOPE, base])  # the union, not a replacement
    assert h.session.scopes == {APP_SCOPE, base}
    manifest = "GET /v2/team/app/manifests/v1"
    assert fake.registry_calls() == ["GET /v2/", manifest, manifest]  # one 401, one resend


def test_bearer_token_expiry_follows_the_injected_clock(fake: FakeRegistry):
    fake.auth = "bearer"
    fake.token_lifetime = 60  # the session renews 10 s early
    h = Harness(fake)
    assert h.get("/v2/team/app/blobs/uploads/") == 404
    fake.now += 45
    assert h.get("/v2/team/app/blobs/uploads/") == 404
    assert len(fake.token_calls()) == 1
    fake.now += 10  # 55 s: within the margin
    assert h.get("/v2/team/app/blobs/uploads/") == 404
    assert len(fake.token_calls()) == 2
    assert fake.calls[-1].headers["Authorization"] == "Bearer token-1"
    assert fake.registry_calls().count("GET /v2/team/app/blobs/uploads/") == 3  # never a 401


def test_a_token_the_registry_no_longer_accepts_is_renewed_once(fake: FakeRegistry):
    fake.auth = "bearer"
    h = Harness(fake)
    h.session.connect()
    fake.tokens.clear()  # e.g. the token service restarted with a new key
    assert h.get("/v2/team/app/blobs/uploads/") == 404
    assert len(fake.token_calls()) == 2
    to_registry = [c for c in fake.calls if c.url.startswith(f"https://{REGISTRY}/")]
    assert [c.headers.get("Authorization", "") for c in to_registry[-2:]] == [
        "Bearer token-0",
        "Bearer token-1",
    ]


def test_identity_token_uses_the_oauth2_refresh_form(fake: FakeRegistry):
    fake.auth = "bearer"
    h = Harness(fake, creds=Credentials(identity_token="refresh-xyz", source="test"))
    h.session.connect()
    [call] = fake.token_calls()
    assert call.method == "POST" and b"grant_type=refresh_token" in call.body
    assert b"refresh_token=refresh-xyz" in call.body


def test_registry_token_is_sent_as_is(fake: FakeRegistry):
    fake.auth = "bearer"
    fake.tokens["given"] = (frozenset({APP_SCOPE}), 10**9)
    h = Harness(fake, creds=Credentials(registry_token="given", source="test"))
    assert h.get("/v2/team/app/blobs/uploads/") == 404
    assert fake.token_calls() == [] and _auth_headers(fake)[-1] == "Bearer given"


def test_token_service_refusal_names_who(fake: FakeRegistry):
    fake.auth = "bearer"
    h = Harness(fake, creds=Credentials("alice", "wrong-wrong", source="test"))
    with pytest.raises(AuthError) as info:
        h.session.connect()
    assert "refused user 'alice' from test" in str(info.value)
    assert "invalid username or password" in str(info.value)
    assert "wrong-wrong" not in str(info.value) + repr(info.value)


# --- where credentials go ------------------------------------------------------------------------


def test_no_credentials_to_a_plain_http_realm(fake: FakeRegistry):
    fake.auth = "bearer"
    fake.realm = "http://auth.example/token"
    with pytest.raises(AuthError, match="plain HTTP to another host") as info:
        Harness(fake).session.connect()
    assert "--insecure-registry" not in render_error(info.value), "insecure would not help"
    assert fake.token_calls() == [], "nothing was sent to the realm"


def test_anonymous_token_from_a_plain_http_realm_carries_no_secret(fake: FakeRegistry):
    fake.auth = "bearer"
    fake.realm = "http://auth.example/token"
    Harness(fake, creds=None).session.connect()
    [call] = fake.token_calls()
    assert "Authorization" not in call.headers and "account" not in call.query


def test_insecure_sends_no_credentials_to_a_plain_http_realm_on_another_host(fake: FakeRegistry):
    fake.auth = "bearer"
    fake.realm = "http://auth.example/token"
    with pytest.raises(AuthError, match="plain HTTP to another host"):
        Harness(fake, options=SessionOptions(insecure=True)).session.connect()
    assert fake.token_calls() == []


def test_other_origins_get_no_authorization_and_no_answer_to_their_401(fake: FakeRegistry):
    fake.auth = "basic"
    h = Harness(fake)
    h.session.connect()
    resp = h.session.request("GET", "https://elsewhere.example/v2/")
    assert resp.status == 401
    assert "Authorization" not in fake.calls[-1].headers
    assert fake.calls[-1].url.startswith("https://elsewhere.example/")
    assert len([c for c in fake.calls if "elsewhere" in c.url]) == 1


def test_a_redirect_to_plain_http_is_refused_before_sending(fake: FakeRegistry):
    h = Harness(fake)
    h.session.connect()
    before = len(fake.calls)
    with pytest.raises(RegistryError, match="redirected PUT to plain HTTP"):
        h.session.request("PUT", "http://storage.example/upload?_state=x", body=b"data")
    assert len(fake.calls) == before


# --- retries -------------------------------------------------------------------------------------


def test_first_contact_retries_twice_then_gives_up():
    drop = TransportError("connection dropped", method="GET", url="", temporary=True)
    fake = FakeRegistry(faults=[Fault("GET", r"^/v2/$", drop, times=2)])
    h = Harness(fake)
    h.session.connect()
    assert len(h.sleeps) == 2 and [p[:9] for p in h.progress] == ["retry 1/5", "retry 2/5"]

    fake = FakeRegistry(faults=[Fault("GET", r"^/v2/$", drop, times=3)])
    h = Harness(fake)
    with pytest.raises(TransportError, match="gave up after 3 attempts") as info:
        h.session.connect()
    assert info.value.temporary and len(h.sleeps) == 2


def test_token_service_failures_are_retried(fake: FakeRegistry):
    fake.auth = "bearer"
    fake.faults.append(Fault("GET", r"^/token$", 503))
    h = Harness(fake)
    h.session.connect()
    assert len(fake.token_calls()) == 2 and len(h.sleeps) == 1


def test_retrying_reruns_temporary_errors_only(fake: FakeRegistry):
    h = Harness(fake, options=SessionOptions(retries=3, backoff=0.01))
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RegistryError("busy", status=503, temporary=True)
        return "done"

    assert h.session.retrying(flaky) == "done" and len(h.sleeps) == 2

    def denied() -> str:
        raise AuthError("denied", status=403)

    with pytest.raises(AuthError):
        h.session.retrying(denied)
    assert len(h.sleeps) == 2


# --- error hints ---------------------------------------------------------------------------------


def test_error_hints_fit_the_answer(fake: FakeRegistry):
    h = Harness(fake, creds=None)
    h.session.connect()
    missing = h.session.request("GET", h.session.url("/v2/nope/x/manifests/v1"))
    err = h.session.error(missing, "GET", "cannot read")
    assert err.codes == ("NAME_UNKNOWN",) and "check the repository name" in (err.hint or "")
    fake.faults.append(Fault("GET", "/manifests/", 503))
    busy = h.session.request("GET", h.session.url("/v2/team/app/manifests/v1"))
    err = h.session.error(busy, "GET", "cannot read")
    assert err.temporary and "try again later" in (err.hint or "")


def test_a_bodiless_head_401_is_explained_with_the_registrys_words(fake: FakeRegistry):
    fake.auth = "basic"
    h = Harness(fake, creds=None)
    fake.faults.append(Fault("GET", r"^/v2/$", 200))
    h.session.connect()
    head = h.session.request("HEAD", h.session.url("/v2/team/app/blobs/sha256:" + "a" * 64))
    head = type(head)(head.status, head.reason, head.headers, b"", url=head.url)
    err = h.session.error(head, "HEAD", "cannot check")
    assert isinstance(err, AuthError) and err.method == "GET"
    assert "authentication required" in str(err) and "no credentials" in str(err)


def test_contradicting_options_carry_a_remedy(tmp_path):
    with pytest.raises(RegistryError, match="not both") as info:
        SessionOptions(insecure=True, ca_file=tmp_path / "ca.pem")
    assert info.value.remedy == "insecure-or-ca" and "--" not in str(info.value)
    assert "--insecure-registry or --registry-ca" in render_error(info.value)
