"""The registry sink against the real CNCF distribution registry, read back by skopeo/podman.

Registries (anonymous HTTP, anonymous TLS, htpasswd TLS, token TLS) are session fixtures from
testsupport.registry_server; tests that kill a registry or need an odd setup start their own.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from scratchpack.cli import render_error
from scratchpack.errors import AuthError, DigestMismatchError, ImageError, RegistryError
from scratchpack.oci import mediatypes
from scratchpack.oci._http import Body, Headers, Response, StdlibTransport, TransportError
from scratchpack.oci.auth import Credentials, default_keychain
from scratchpack.oci.digest import Digest
from scratchpack.oci.reference import Reference
from scratchpack.oci.registry import Pusher, PushOptions, push, push_artifact
from scratchpack.oci.session import Session
from testsupport.net import free_port
from testsupport.registry_server import (
    SERVICE,
    USERS,
    BlobLayer,
    Fault,
    FaultProxy,
    Podman,
    Registry,
    StaticKeychain,
    TestImage,
    TLSFiles,
    TokenServer,
    make_htpasswd,
    make_image,
    make_layer,
    skopeo_copy_to_oci,
    skopeo_inspect_digest,
)

pytestmark = pytest.mark.e2e

ALICE = Credentials("alice", USERS["alice"], source="test")
NO_CREDS = StaticKeychain()


def _keychain(registry: Registry | FaultProxy, creds: Credentials = ALICE) -> StaticKeychain:
    return StaticKeychain.of({registry.host: creds})


class Recording:
    """A Transport wrapper that records every request (method, redacted-free URL, headers)."""

    def __init__(
        self,
        inner: StdlibTransport,
        rewrite: Callable[[str, str, Response], Response] | None = None,
    ) -> None:
        self.inner = inner
        self.rewrite = rewrite
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Body = None,
        *,
        timeout: float | None = None,
    ) -> Response:
        self.calls.append((method, url, dict(headers)))
        resp = self.inner.request(method, url, headers, body, timeout=timeout)
        return self.rewrite(method, url, resp) if self.rewrite else resp

    def close(self) -> None:
        self.inner.close()

    def uploads(self) -> list[str]:
        return [
            f"{m} {u}" for m, u, _ in self.calls if m in {"POST", "PATCH"} or "/blobs/uploads/" in u
        ]


# --- pushes that tools read back -------------------------------------------------------------


def test_push_plain_http_with_insecure(
    plain_registry: Registry, podman_store: Podman, tmp_path: Path
):
    image = make_image((3000, 50000), seed=1)
    ref = Reference.parse(f"{plain_registry.host}/e2e/plain:v1")
    published = push(image, ref, keychain=NO_CREDS, options=PushOptions(insecure=True))
    assert published.kind == "registry"
    assert published.digest == image.digest
    assert published.location == f"{plain_registry.host}/e2e/plain@{image.digest}"
    assert ("blobs_uploaded", "3") in published.extra
    assert skopeo_inspect_digest(str(ref)) == str(image.digest)
    assert skopeo_copy_to_oci(str(ref), tmp_path / "oci") == str(image.digest)
    assert podman_store.pull_digest(str(ref)) == str(image.digest)


def test_plain_http_without_insecure_is_refused_with_a_hint(plain_registry: Registry):
    ref = Reference.parse(f"{plain_registry.host}/e2e/refused:v1")
    with pytest.raises(RegistryError) as info:
        push(make_image(seed=2), ref, keychain=NO_CREDS)
    assert info.value.remedy == "insecure-registry" and plain_registry.host in str(info.value)
    assert "--insecure-registry" in render_error(info.value)  # only the CLI names the flag
    assert "--insecure-registry" not in str(info.value)


def test_push_tls_with_ca_file(
    tls_registry: Registry, registry_tls: TLSFiles, podman_store: Podman, tmp_path: Path
):
    image = make_image((10000,), seed=3)
    ref = Reference.parse(f"{tls_registry.host}/e2e/tls:v1")
    published = push(image, ref, keychain=NO_CREDS, options=PushOptions(ca_file=registry_tls.cert))
    assert published.digest == image.digest
    assert skopeo_copy_to_oci(str(ref), tmp_path / "oci", tls=registry_tls) == str(image.digest)
    assert podman_store.pull_digest(str(ref)) == str(image.digest)


def test_tls_without_the_ca_is_refused_and_insecure_skips_verification(tls_registry: Registry):
    image = make_image((1000,), seed=4)
    ref = Reference.parse(f"{tls_registry.host}/e2e/tls-insecure:v1")
    with pytest.raises(TransportError) as info:
        push(image, ref, keychain=NO_CREDS)
    assert info.value.tls and "not trusted" in str(info.value)
    published = push(image, ref, keychain=NO_CREDS, options=PushOptions(insecure=True))
    assert published.digest == image.digest


def test_push_basic_auth_over_tls(
    basic_registry: Registry, registry_tls: TLSFiles, podman_store: Podman, tmp_path: Path
):
    image = make_image((8000, 1000), seed=5)
    ref = Reference.parse(f"{basic_registry.host}/e2e/basic:v1")
    opts = PushOptions(ca_file=registry_tls.cert)
    published = push(image, ref, keychain=_keychain(basic_registry), options=opts)
    assert published.digest == image.digest
    creds = f"alice:{USERS['alice']}"
    assert skopeo_copy_to_oci(str(ref), tmp_path / "oci", tls=registry_tls, creds=creds) == str(
        image.digest
    )
    assert podman_store.pull_digest(str(ref), creds=creds) == str(image.digest)


def test_push_bearer_token_flow(
    token_registry: Registry,
    token_server: TokenServer,
    registry_tls: TLSFiles,
    podman_store: Podman,
    tmp_path: Path,
):
    image = make_image((5000, 7000), seed=6)
    ref = Reference.parse(f"{token_registry.host}/team/app:v1")
    before = len(token_server.requests)
    opts = PushOptions(ca_file=registry_tls.cert)
    published = push(image, ref, keychain=_keychain(token_registry), options=opts)
    assert published.digest == image.digest
    mine = token_server.requests[before:]
    assert len(mine) == 1, "one token per scope, cached for the whole push"
    query = mine[0]["query"]
    assert isinstance(query, dict)
    assert query["scope"] == ["repository:team/app:pull,push"]
    assert query["service"] == [SERVICE] and query["account"] == ["alice"]
    auth = mine[0]["authorization"]
    assert (
        isinstance(auth, str) and base64.b64decode(auth[6:]).decode() == f"alice:{USERS['alice']}"
    )
    creds = f"alice:{USERS['alice']}"
    assert skopeo_inspect_digest(str(ref), tls=registry_tls, creds=creds) == str(image.digest)
    assert podman_store.pull_digest(str(ref), creds=creds) == str(image.digest)


def test_token_service_answering_access_token(
    token_registry: Registry, token_server: TokenServer, registry_tls: TLSFiles
):
    token_server.access_token_only = True
    try:
        image = make_image((900,), seed=7)
        ref = Reference.parse(f"{token_registry.host}/team/oauth-style:v1")
        opts = PushOptions(ca_file=registry_tls.cert)
        assert (
            push(image, ref, keychain=_keychain(token_registry), options=opts).digest
            == image.digest
        )
    finally:
        token_server.access_token_only = False


def test_identity_token_uses_the_oauth_refresh_flow(
    token_registry: Registry, token_server: TokenServer, registry_tls: TLSFiles
):
    token_server.identity_tokens["refresh-xyz"] = "bob"
    image = make_image((1200,), seed=8)
    ref = Reference.parse(f"{token_registry.host}/team/idtoken:v1")
    before = len(token_server.requests)
    creds = Credentials(identity_token="refresh-xyz", source="test")
    opts = PushOptions(ca_file=registry_tls.cert)
    assert (
        push(image, ref, keychain=_keychain(token_registry, creds), options=opts).digest
        == image.digest
    )
    [req] = token_server.requests[before:]
    assert req["method"] == "POST"
    form = req["form"]
    assert isinstance(form, dict) and form["grant_type"] == ["refresh_token"]
    assert form["scope"] == ["repository:team/idtoken:pull,push"]


def test_registry_token_from_the_config_is_used_as_is(
    token_registry: Registry, token_server: TokenServer, registry_tls: TLSFiles
):
    ref = Reference.parse(f"{token_registry.host}/team/regtoken:v1")
    access = token_server.grant("alice", ["repository:team/regtoken:pull,push"])
    creds = Credentials(registry_token=token_server.sign("alice", access, SERVICE), source="test")
    before = len(token_server.requests)
    image = make_image((700,), seed=12)
    opts = PushOptions(ca_file=registry_tls.cert)
    assert (
        push(image, ref, keychain=_keychain(token_registry, creds), options=opts).digest
        == image.digest
    )
    assert token_server.requests[before:] == []


def test_second_push_uploads_no_blobs(plain_registry: Registry):
    image = make_image((4000, 60000), seed=9)
    ref = Reference.parse(f"{plain_registry.host}/e2e/again:v1")
    opts = PushOptions(insecure=True)
    push(image, ref, keychain=NO_CREDS, options=opts)
    recording = Recording(StdlibTransport())
    progress: list[str] = []
    published = push(
        image, ref, keychain=NO_CREDS, options=opts, transport=recording, progress=progress.append
    )
    recording.close()
    assert published.digest == image.digest
    assert recording.uploads() == []
    heads = [u for m, u, _ in recording.calls if m == "HEAD"]
    assert len(heads) == 3
    assert ("blobs_existing", "3") in published.extra and ("blobs_uploaded", "0") in published.extra
    assert sum("existing" in p for p in progress) == 3


def test_push_real_image_model(plain_registry: Registry, podman_store: Podman, tmp_path: Path):
    from scratchpack.oci import image as oci_image
    from scratchpack.oci.layer import FileEntry, layer_from_entries

    layer = layer_from_entries(
        [FileEntry("app/hello.txt", 0o644, data=b"hello from scratchpack\n")],
        mtime=0,
        workdir=tmp_path / "layers",
    )
    image = oci_image.append_layers(oci_image.empty(), layer)
    ref = Reference.parse(f"{plain_registry.host}/e2e/real-image:v1")
    published = push(image, ref, keychain=NO_CREDS, options=PushOptions(insecure=True))
    assert published.digest == image.digest
    assert podman_store.pull_digest(str(ref)) == str(image.digest)
    assert skopeo_copy_to_oci(str(ref), tmp_path / "oci") == str(image.digest)


def test_push_sbom_artifact_referring_to_the_image(plain_registry: Registry):
    from scratchpack.oci.artifact import fallback_tag, make_artifact
    from scratchpack.oci.descriptor import Descriptor

    image = make_image((2000,), seed=11)
    ref = Reference.parse(f"{plain_registry.host}/e2e/with-sbom:v1")
    opts = PushOptions(insecure=True)
    push(image, ref, keychain=NO_CREDS, options=opts)
    subject = Descriptor(image.manifest_media_type, image.digest, len(image.raw_manifest))
    artifact = make_artifact(
        subject, b'{"spdxVersion":"SPDX-2.3"}', artifact_type=mediatypes.SPDX_JSON
    )
    tag = fallback_tag(image.digest, "sbom")
    digest = push_artifact(artifact, ref, tag=tag, keychain=NO_CREDS, options=opts)
    assert digest == artifact.digest
    assert skopeo_inspect_digest(f"{ref.name}:{tag}") == str(artifact.digest)


# --- credentials from files and helpers ------------------------------------------------------


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _helper_bin(tmp_path: Path, name: str, user: str, password: str) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    script = bindir / f"docker-credential-{name}"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 2\n'
        "url=$(cat)\n"
        f'printf "%s\\n" "$url" >> {tmp_path}/helper-calls\n'
        f'printf \'{{"ServerURL":"%s","Username":"{user}","Secret":"{password}"}}\' "$url"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bindir


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "PATH": os.environ.get("PATH", os.defpath), **extra}


def _push_with(registry: Registry, tls: TLSFiles, env: dict[str, str], seed: int) -> None:
    image = make_image((1500,), seed=seed)
    ref = Reference.parse(f"{registry.host}/creds/app:{seed}")
    published = push(
        image, ref, keychain=default_keychain(env), options=PushOptions(ca_file=tls.cert)
    )
    assert published.digest == image.digest


def test_credentials_from_docker_config_auths(
    basic_registry: Registry, registry_tls: TLSFiles, tmp_path: Path
):
    cfg = tmp_path / "docker"
    cfg.mkdir()
    (cfg / "config.json").write_text(
        json.dumps(
            {"auths": {f"https://{basic_registry.host}": {"auth": _auth("bob", USERS["bob"])}}}
        )
    )
    _push_with(basic_registry, registry_tls, _env(tmp_path, DOCKER_CONFIG=str(cfg)), seed=20)


def test_credentials_from_cred_helpers(
    basic_registry: Registry, registry_tls: TLSFiles, tmp_path: Path
):
    bindir = _helper_bin(tmp_path, "test", "alice", USERS["alice"])
    cfg = tmp_path / "docker"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"credHelpers": {basic_registry.host: "test"}}))
    env = _env(tmp_path, DOCKER_CONFIG=str(cfg))
    env["PATH"] = f"{bindir}:{env['PATH']}"
    _push_with(basic_registry, registry_tls, env, seed=21)
    assert (tmp_path / "helper-calls").read_text().splitlines() == [basic_registry.host]


def test_credentials_from_creds_store(
    basic_registry: Registry, registry_tls: TLSFiles, tmp_path: Path
):
    bindir = _helper_bin(tmp_path, "store", "bob", USERS["bob"])
    cfg = tmp_path / "docker"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"credsStore": "store"}))
    env = _env(tmp_path, DOCKER_CONFIG=str(cfg))
    env["PATH"] = f"{bindir}:{env['PATH']}"
    _push_with(basic_registry, registry_tls, env, seed=22)


def test_credentials_from_registry_auth_file(
    basic_registry: Registry, registry_tls: TLSFiles, tmp_path: Path
):
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(
        json.dumps({"auths": {basic_registry.host: {"auth": _auth("alice", USERS["alice"])}}})
    )
    env = _env(tmp_path, DOCKER_CONFIG=str(tmp_path / "empty"), REGISTRY_AUTH_FILE=str(auth_file))
    _push_with(basic_registry, registry_tls, env, seed=23)


# --- errors a user can act on ----------------------------------------------------------------


def test_wrong_password_basic_reports_the_registry_message(
    basic_registry: Registry, registry_tls: TLSFiles
):
    creds = Credentials("alice", "not-the-password-77", source="/tmp/cfg.json")
    ref = Reference.parse(f"{basic_registry.host}/e2e/wrongpw:v1")
    with pytest.raises(AuthError) as info:
        push(
            make_image(seed=30),
            ref,
            keychain=_keychain(basic_registry, creds),
            options=PushOptions(ca_file=registry_tls.cert),
        )
    err = info.value
    text = str(err) + repr(err) + err.url
    assert err.status == 401 and "UNAUTHORIZED" in err.codes
    assert "authentication required" in str(err)  # the registry's own words
    assert "docker login" in str(err) and "/tmp/cfg.json" in str(err)
    assert "not-the-password-77" not in text


def test_no_credentials_for_a_basic_registry(basic_registry: Registry, registry_tls: TLSFiles):
    ref = Reference.parse(f"{basic_registry.host}/e2e/nocreds:v1")
    with pytest.raises(AuthError) as info:
        push(
            make_image(seed=31),
            ref,
            keychain=NO_CREDS,
            options=PushOptions(ca_file=registry_tls.cert),
        )
    assert info.value.status == 401
    assert "no credentials" in str(info.value) and f"docker login {basic_registry.host}" in str(
        info.value
    )


def test_wrong_password_token_reports_the_token_service_message(
    token_registry: Registry, registry_tls: TLSFiles
):
    creds = Credentials("alice", "wrong-wrong-wrong", source="test")
    ref = Reference.parse(f"{token_registry.host}/team/wrongpw:v1")
    with pytest.raises(AuthError) as info:
        push(
            make_image(seed=32),
            ref,
            keychain=_keychain(token_registry, creds),
            options=PushOptions(ca_file=registry_tls.cert),
        )
    assert "invalid username or password" in str(info.value) and info.value.status == 401
    assert "wrong-wrong-wrong" not in str(info.value) + repr(info.value)


def test_anonymous_push_to_token_registry_is_denied(
    token_registry: Registry, registry_tls: TLSFiles
):
    ref = Reference.parse(f"{token_registry.host}/team/anon:v1")
    with pytest.raises(AuthError) as info:
        push(
            make_image(seed=33),
            ref,
            keychain=NO_CREDS,
            options=PushOptions(ca_file=registry_tls.cert),
        )
    assert info.value.status == 401 and "UNAUTHORIZED" in info.value.codes
    assert "no credentials" in str(info.value)


def test_push_to_a_repository_without_push_permission(
    token_registry: Registry, registry_tls: TLSFiles
):
    ref = Reference.parse(f"{token_registry.host}/readonly/app:v1")
    with pytest.raises(AuthError) as info:
        push(
            make_image(seed=34),
            ref,
            keychain=_keychain(token_registry),
            options=PushOptions(ca_file=registry_tls.cert),
        )
    assert info.value.status in {401, 403}
    assert "readonly/app" in str(info.value) and "push permission" in str(info.value)


def test_manifest_rejected_with_the_registry_message(plain_registry: Registry):
    ref = Reference.parse(f"{plain_registry.host}/e2e/badmanifest:v1")
    with Session(ref, keychain=NO_CREDS, options=PushOptions(insecure=True)) as session:
        pusher = Pusher(session)
        with pytest.raises(RegistryError) as info:
            pusher.put_manifest("v1", b"{not json", mediatypes.OCI_MANIFEST)
        assert info.value.status == 400 and "MANIFEST_INVALID" in info.value.codes
        assert "manifest invalid" in str(info.value)
        missing = make_image(seed=35)  # never uploaded: its blobs are unknown
        with pytest.raises(RegistryError) as info:
            pusher.put_manifest("v1", missing.raw_manifest, missing.manifest_media_type)
        assert "MANIFEST_BLOB_UNKNOWN" in info.value.codes and not info.value.temporary


def test_registry_answering_another_manifest_digest_is_an_error(plain_registry: Registry):
    def lie(method: str, url: str, resp: Response) -> Response:
        if method == "PUT" and "/manifests/" in url:
            fake = "sha256:" + "0" * 64
            items = [(k, v) for k, v in resp.headers.items() if k != "docker-content-digest"]
            return dataclasses.replace(
                resp, headers=Headers([*items, ("Docker-Content-Digest", fake)])
            )
        return resp

    recording = Recording(StdlibTransport(), rewrite=lie)
    ref = Reference.parse(f"{plain_registry.host}/e2e/lying:v1")
    with pytest.raises(RegistryError, match="digest mismatch"):
        push(
            make_image(seed=36),
            ref,
            keychain=NO_CREDS,
            options=PushOptions(insecure=True),
            transport=recording,
        )
    recording.close()


def test_corrupt_local_layer_is_never_committed(plain_registry: Registry):
    good = make_image((5000,), seed=37)
    layer = good.layers[0]
    bad_layer = dataclasses.replace(layer, data=bytes(b ^ 0xFF for b in layer.data))
    image = dataclasses.replace(good, layers=(bad_layer,))
    ref = Reference.parse(f"{plain_registry.host}/e2e/corrupt:v1")
    with pytest.raises(DigestMismatchError):
        push(image, ref, keychain=NO_CREDS, options=PushOptions(insecure=True))
    with Session(ref, keychain=NO_CREDS, options=PushOptions(insecure=True)) as session:
        assert not Pusher(session).blob_exists(layer.digest)


def test_unreachable_registry_is_a_clear_temporary_error():
    port = free_port()
    sleeps: list[float] = []
    ref = Reference.parse(f"127.0.0.1:{port}/e2e/nowhere:v1")
    with pytest.raises(RegistryError) as info:
        push(
            make_image(seed=38),
            ref,
            keychain=NO_CREDS,
            options=PushOptions(retries=2, backoff=0.01),
            sleep=sleeps.append,
        )
    err = info.value
    assert f"127.0.0.1:{port}" in str(err) and "connection refused" in str(err)
    assert "gave up after 3 attempts" in str(err) and "registry is running" in str(err)
    assert err.temporary and len(sleeps) == 2


def test_pinned_digest_must_match_the_image(plain_registry: Registry):
    image = make_image(seed=39)
    other = make_image(seed=40)
    ref = Reference.parse(f"{plain_registry.host}/e2e/pinned@{other.digest}")
    with pytest.raises(ImageError, match="pins digest"):
        push(image, ref, keychain=NO_CREDS, options=PushOptions(insecure=True))
    ok = Reference.parse(f"{plain_registry.host}/e2e/pinned@{image.digest}")
    assert (
        push(image, ok, keychain=NO_CREDS, options=PushOptions(insecure=True)).digest
        == image.digest
    )


def test_options_reject_contradictions(tmp_path: Path):
    with pytest.raises(RegistryError, match="not both") as info:
        PushOptions(insecure=True, ca_file=tmp_path / "ca.pem")
    assert "--insecure-registry or --registry-ca" in render_error(info.value)
    with pytest.raises(ValueError):
        PushOptions(retries=-1)


# --- credentials never travel over plain HTTP --------------------------------------------------


class RawRecorder:
    """A TCP server that records what clients send and answers like a plain-HTTP server."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.received += conn.recv(65536)
                    conn.sendall(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n"
                    )
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_no_credentials_to_a_plain_http_registry_without_insecure():
    recorder = RawRecorder()
    try:
        ref = Reference.parse(f"127.0.0.1:{recorder.port}/e2e/plain:v1")
        creds = Credentials("alice", "never-in-clear-1", source="test")
        with pytest.raises(TransportError) as info:
            push(
                make_image(seed=41),
                ref,
                keychain=StaticKeychain.of({f"127.0.0.1:{recorder.port}": creds}),
            )
        assert info.value.remedy == "insecure-registry"
        assert "--insecure-registry" in render_error(info.value)
    finally:
        recorder.close()
    assert recorder.received.startswith(b"\x16\x03")  # a TLS ClientHello, nothing else
    assert b"never-in-clear" not in recorder.received and b"Authorization" not in recorder.received


def test_no_credentials_to_a_plain_http_token_realm(
    tmp_path: Path, registry_tls: TLSFiles, token_server: TokenServer
):
    recorder = RawRecorder()
    registry = Registry(
        tmp_path / "registry",
        tls=registry_tls,
        token_realm=f"http://127.0.0.1:{recorder.port}/token",
        token_bundle=token_server.bundle,
    ).start()
    try:
        ref = Reference.parse(f"{registry.host}/team/app:v1")
        with pytest.raises(AuthError, match="plain HTTP") as info:
            push(
                make_image(seed=42),
                ref,
                keychain=_keychain(registry),
                options=PushOptions(ca_file=registry_tls.cert),
            )
        assert USERS["alice"] not in str(info.value)
    finally:
        registry.stop()
        recorder.close()
    assert recorder.received == b""


def test_secrets_stay_out_of_logs(
    basic_registry: Registry, registry_tls: TLSFiles, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="scratchpack")
    image = make_image((2000,), seed=43)
    ref = Reference.parse(f"{basic_registry.host}/e2e/logs:v1")
    progress: list[str] = []
    push(
        image,
        ref,
        keychain=_keychain(basic_registry),
        options=PushOptions(ca_file=registry_tls.cert),
        progress=progress.append,
    )
    text = caplog.text + "\n".join(progress)
    assert "/blobs/uploads/" in caplog.text  # the requests were logged ...
    assert USERS["alice"] not in text and "_state" not in text  # ... without secrets


# --- failures during the push ----------------------------------------------------------------


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(tmp_path / "registry").start()
    try:
        yield registry
    finally:
        registry.stop()


class _Tripwire(io.BytesIO):
    """A layer stream that calls ``hook`` once, when ``at`` bytes have been read."""

    def __init__(self, data: bytes, at: int, hook: Callable[[], None]) -> None:
        super().__init__(data)
        self.at, self.hook = at, hook

    def read(self, n: int | None = -1, /) -> bytes:
        chunk = super().read(n)
        if self.tell() >= self.at:
            self.hook()
        return chunk


@pytest.mark.slow
def test_registry_restarted_mid_push(own_registry: Registry, tmp_path: Path):
    """A crash mid-upload loses the session; the push starts that blob again and completes."""
    image = make_image((6 * 1024 * 1024, 3000), seed=50)
    big = image.layers[0]
    ref = Reference.parse(f"{own_registry.host}/e2e/restart:v1")
    restarted, killed = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def restart_later() -> None:
        try:
            time.sleep(1.0)
            own_registry.start()
        except BaseException as err:
            errors.append(err)
        finally:
            restarted.set()

    def crash() -> None:
        if not killed.is_set():
            killed.set()
            own_registry.kill()  # mid-upload: the rest of this blob hits a dead registry
            threading.Thread(target=restart_later, daemon=True).start()

    # The first attempt's stream trips the crash after 1 MiB; retries get plain streams.
    opened: list[int] = []

    def opener() -> io.BytesIO:
        opened.append(1)
        return _Tripwire(big.data, 1 << 20, crash) if len(opened) == 1 else io.BytesIO(big.data)

    tripping = dataclasses.replace(image, layers=(_OpenerLayer(big, opener), *image.layers[1:]))
    progress: list[str] = []
    opts = PushOptions(insecure=True, retries=8, backoff=0.25)
    published = push(tripping, ref, keychain=NO_CREDS, options=opts, progress=progress.append)
    assert restarted.wait(30) and not errors and killed.is_set()
    assert published.digest == image.digest
    assert any(p.startswith("retry ") for p in progress), progress
    assert len(opened) >= 2, "the blob was uploaded again from a fresh stream"
    assert skopeo_copy_to_oci(str(ref), tmp_path / "oci") == str(image.digest)


@dataclasses.dataclass(frozen=True)
class _OpenerLayer:
    """A test layer with a custom opener (PushableLayer)."""

    inner: BlobLayer
    opener: Callable[[], io.BytesIO]

    @property
    def digest(self) -> Digest:
        return self.inner.digest

    @property
    def size(self) -> int:
        return self.inner.size

    @property
    def media_type(self) -> str:
        return self.inner.media_type


def test_faults_injected_by_a_proxy_are_survived(plain_registry: Registry, tmp_path: Path):
    proxy = FaultProxy(
        plain_registry.port,
        faults=[
            Fault("GET", r"^/v2/$", "drop"),
            Fault("HEAD", r"/blobs/sha256:", "503"),
            Fault("POST", r"/blobs/uploads/", "503"),
            Fault("PUT", r"/blobs/uploads/", "drop"),
            Fault("PUT", r"/blobs/uploads/", "drop_after"),
            Fault("PUT", r"/manifests/", "503"),
        ],
    ).start()
    try:
        image = make_image((40000, 2000), seed=51)
        ref = Reference.parse(f"{proxy.host}/e2e/faulty:v1")
        progress: list[str] = []
        published = push(
            image,
            ref,
            keychain=NO_CREDS,
            options=PushOptions(insecure=True, retries=6, backoff=0.05),
            progress=progress.append,
        )
    finally:
        proxy.stop()
    assert published.digest == image.digest
    assert [f.fired for f in proxy.faults] == [1] * len(proxy.faults)
    assert sum(p.startswith("retry ") for p in progress) == len(proxy.faults)
    direct = f"{plain_registry.host}/e2e/faulty:v1"
    assert skopeo_copy_to_oci(direct, tmp_path / "oci") == str(image.digest)


def test_auth_demanded_after_an_anonymous_ping(tmp_path: Path):
    """A registry whose /v2/ is open but whose repositories need Basic: log in on the 401."""
    work = tmp_path / "registry"
    work.mkdir()
    registry = Registry(work, htpasswd=make_htpasswd(work / "htpasswd", USERS)).start()
    proxy = FaultProxy(registry.port, faults=[Fault("GET", r"^/v2/$", "ok200", times=99)]).start()
    try:
        image = make_image((3000,), seed=53)
        ref = Reference.parse(f"{proxy.host}/e2e/late-auth:v1")
        opts = PushOptions(insecure=True, retries=6, backoff=0.05)
        assert push(image, ref, keychain=_keychain(proxy), options=opts).digest == image.digest
        with pytest.raises(AuthError) as info:
            push(image, ref, keychain=NO_CREDS, options=opts)
        assert "no credentials" in str(info.value)
        assert proxy.faults[0].fired >= 2
        direct = f"{registry.host}/e2e/late-auth:v1"
        creds = f"alice:{USERS['alice']}"
        assert skopeo_inspect_digest(direct, creds=creds) == str(image.digest)
    finally:
        proxy.stop()
        registry.stop()


def test_layer_streams_are_reopened_for_each_attempt(plain_registry: Registry):
    layer = make_layer(30000, seed=52)
    opened: list[int] = []

    def opener() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(layer.data)

    proxy = FaultProxy(
        plain_registry.port, faults=[Fault("PUT", r"/blobs/uploads/", "drop", times=2)]
    ).start()
    try:
        ref = Reference.parse(f"{proxy.host}/e2e/reopen:v1")
        with Session(
            ref, keychain=NO_CREDS, options=PushOptions(insecure=True, retries=6, backoff=0.05)
        ) as session:
            assert Pusher(session).upload_blob(layer.digest, layer.size, opener) == "uploaded"
    finally:
        proxy.stop()
    assert len(opened) == 3


_ = TestImage  # re-exported type for readers of this module
