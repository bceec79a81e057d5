"""Credentials: Docker/Podman config files, credential helpers (faked and real), challenges."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from scratchpack.errors import AuthError
from scratchpack.oci.auth import (
    ConfigFileKeychain,
    Credentials,
    MultiKeychain,
    basic_authorization,
    default_keychain,
    normalize_registry,
    parse_challenges,
    parse_token_response,
    run_helper,
)
from testsupport.registry_server import StaticKeychain


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _write(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


class FakeHelper:
    """Records calls; answers like docker-credential-* would."""

    def __init__(self, answers: Mapping[str, tuple[int, str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[list[str], str]] = []

    def __call__(
        self, argv: Sequence[str], stdin: str, env: Mapping[str, str]
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(argv), stdin))
        if argv[0] not in self.answers:
            raise FileNotFoundError(argv[0])
        code, out = self.answers[argv[0]]
        return subprocess.CompletedProcess(list(argv), code, out, "")


# --- values ------------------------------------------------------------------------------------


def test_credentials_repr_hides_secrets():
    creds = Credentials("alice", "hunter2", "idtok", "regtok", source="/x/config.json")
    text = repr(creds) + str(creds) + creds.describe()
    for secret in ("hunter2", "idtok", "regtok"):
        assert secret not in text
    assert "alice" in text and "/x/config.json" in creds.describe()
    assert Credentials().anonymous and not creds.anonymous


def test_basic_authorization():
    assert basic_authorization(Credentials("u", "p:w")) == "Basic " + _b64("u:p:w")


@pytest.mark.parametrize(
    ("key", "host"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("http://LocalHost:5000/v2/", "localhost:5000"),
        ("ghcr.io", "ghcr.io"),
    ],
)
def test_normalize_registry(key, host):
    assert normalize_registry(key) == host


# --- challenges and tokens ---------------------------------------------------------------------


def test_parse_bearer_challenge_with_commas_in_scope():
    [ch] = parse_challenges(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:team/app:pull,push",error="insufficient_scope"'
    )
    assert ch.scheme == "bearer"
    assert ch.get("realm") == "https://auth.example/token"
    assert ch.get("scope") == "repository:team/app:pull,push"
    assert ch.get("error") == "insufficient_scope" and ch.get("nope") == ""


def test_parse_several_challenges_and_escapes():
    chs = parse_challenges('Basic realm="a \\"b\\"", Bearer realm=https://x/t , Negotiate')
    assert [c.scheme for c in chs] == ["basic", "bearer", "negotiate"]
    assert chs[0].get("realm") == 'a "b"'
    assert chs[1].get("realm") == "https://x/t"


def test_parse_token_response_variants():
    assert parse_token_response(b'{"token":"t1","expires_in":300}') == ("t1", 300)
    assert parse_token_response(b'{"access_token":"t2"}') == ("t2", None)
    assert parse_token_response(b'{"token":"","access_token":"t3","expires_in":-1}') == ("t3", None)
    for bad in (b"<html>", b"[]", b'{"expires_in":3}'):
        with pytest.raises(ValueError):
            parse_token_response(bad)


# --- config files ------------------------------------------------------------------------------


def test_auths_entries_base64_and_plain_fields(tmp_path: Path):
    cfg = _write(
        tmp_path / "config.json",
        {
            "auths": {
                "https://registry.example:5000/v2/": {"auth": _b64("alice:pa:ss")},
                "plain.example": {"username": "bob", "password": "pw"},
                "oauth.example": {"identitytoken": "refresh-me"},
                "https://index.docker.io/v1/": {"auth": _b64("hubber:hubpw")},
            }
        },
    )
    kc = ConfigFileKeychain(cfg, {})
    creds = kc.resolve("registry.example:5000")
    assert creds is not None and (creds.username, creds.password) == ("alice", "pa:ss")
    assert creds.source == str(cfg)
    plain = kc.resolve("plain.example")
    assert plain is not None and (plain.username, plain.password) == ("bob", "pw")
    oauth = kc.resolve("oauth.example")
    assert oauth is not None and oauth.identity_token == "refresh-me"
    hub = kc.resolve("docker.io")
    assert hub is not None and hub.username == "hubber"
    assert kc.resolve("other.example") is None


def test_missing_file_resolves_nothing(tmp_path: Path):
    assert ConfigFileKeychain(tmp_path / "nope.json", {}).resolve("x.example") is None


def test_malformed_files_are_errors_that_name_the_file(tmp_path: Path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(AuthError, match="not valid JSON") as info:
        ConfigFileKeychain(bad, {}).resolve("x.example")
    assert str(bad) in str(info.value)
    _write(bad, {"auths": {"x.example": {"auth": "%%%secret%%%"}}})
    with pytest.raises(AuthError, match="not base64") as info:
        ConfigFileKeychain(bad, {}).resolve("x.example")
    assert "secret" not in str(info.value)
    _write(bad, {"auths": {"x.example": {"auth": _b64("nocolon")}}})
    with pytest.raises(AuthError, match="no ':'") as info:
        ConfigFileKeychain(bad, {}).resolve("x.example")
    assert "nocolon" not in str(info.value)


def test_cred_helpers_win_over_store_and_auths(tmp_path: Path):
    cfg = _write(
        tmp_path / "config.json",
        {
            "auths": {"reg.example": {"auth": _b64("file:filepw")}},
            "credsStore": "store",
            "credHelpers": {"reg.example": "special"},
        },
    )
    helper = FakeHelper(
        {
            "docker-credential-special": (0, '{"Username":"sp","Secret":"sp-pw"}'),
            "docker-credential-store": (0, '{"Username":"st","Secret":"st-pw"}'),
        }
    )
    kc = ConfigFileKeychain(cfg, {"PATH": "/nowhere"}, helper)
    creds = kc.resolve("reg.example")
    assert creds is not None and (creds.username, creds.password) == ("sp", "sp-pw")
    assert "docker-credential-special" in creds.source
    other = kc.resolve("other.example")
    assert other is not None and other.username == "st"
    assert helper.calls == [
        (["docker-credential-special", "get"], "reg.example"),
        (["docker-credential-store", "get"], "other.example"),
    ]


def test_store_without_credentials_falls_back_to_auths(tmp_path: Path):
    cfg = _write(
        tmp_path / "config.json",
        {"auths": {"reg.example": {"auth": _b64("file:filepw")}}, "credsStore": "store"},
    )
    helper = FakeHelper({"docker-credential-store": (1, "credentials not found in keychain")})
    creds = ConfigFileKeychain(cfg, {}, helper).resolve("reg.example")
    assert creds is not None and creds.username == "file"


def test_helper_token_username_means_identity_token_and_hub_server_url(tmp_path: Path):
    cfg = _write(tmp_path / "config.json", {"credHelpers": {"docker.io": "hub"}})
    helper = FakeHelper({"docker-credential-hub": (0, '{"Username":"<token>","Secret":"rt"}')})
    creds = ConfigFileKeychain(cfg, {}, helper).resolve("docker.io")
    assert creds is not None and creds.identity_token == "rt" and creds.username == ""
    assert helper.calls[0][1] == "https://index.docker.io/v1/"


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (None, "not on PATH"),
        # stdout is never quoted: a helper that fails halfway may have printed its Secret there
        ((3, "boom: keychain locked"), "exited with status 3: nothing on stderr"),
        ((0, "garbage"), "printed no JSON"),
        ((0, '{"Username":"u"}'), "printed no JSON"),
    ],
)
def test_helper_failures_are_auth_errors(tmp_path: Path, answer, match):
    cfg = _write(tmp_path / "config.json", {"credHelpers": {"reg.example": "broken"}})
    answers = {} if answer is None else {"docker-credential-broken": answer}
    with pytest.raises(AuthError, match=match) as info:
        ConfigFileKeychain(cfg, {}, FakeHelper(answers)).resolve("reg.example")
    assert str(cfg) in str(info.value)


def test_real_helper_process_via_path(tmp_path: Path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "docker-credential-test"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 2\n'
        "url=$(cat)\n"
        f'printf "%s" "$url" > {tmp_path}/seen\n'
        'printf \'{"ServerURL":"%s","Username":"helper-user","Secret":"helper-pw"}\' "$url"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    cfg = _write(tmp_path / "config.json", {"credHelpers": {"localhost:5000": "test"}})
    env = {"PATH": f"{bindir}:{os.defpath}"}
    creds = ConfigFileKeychain(cfg, env, run_helper).resolve("localhost:5000")
    assert creds is not None and (creds.username, creds.password) == ("helper-user", "helper-pw")
    assert (tmp_path / "seen").read_text() == "localhost:5000"


# --- the default chain -------------------------------------------------------------------------


def test_default_keychain_order(tmp_path: Path):
    docker = _write(
        tmp_path / "docker" / "config.json",
        {"auths": {"both.example": {"auth": _b64("docker:d")}}},
    )
    podman = _write(
        tmp_path / "podman-auth.json",
        {
            "auths": {
                "both.example": {"auth": _b64("podman:p")},
                "podman.example": {"auth": _b64("ponly:p")},
            }
        },
    )
    env = {"DOCKER_CONFIG": str(docker.parent), "REGISTRY_AUTH_FILE": str(podman)}
    kc = default_keychain(env)
    both, ponly = kc.resolve("both.example"), kc.resolve("podman.example")
    assert both is not None and both.username == "docker"
    assert ponly is not None and ponly.username == "ponly" and ponly.source == str(podman)
    assert kc.resolve("none.example") is None


def test_default_keychain_podman_locations(tmp_path: Path):
    run = _write(
        tmp_path / "run" / "containers" / "auth.json",
        {"auths": {"a.example": {"auth": _b64("from-run:x")}}},
    )
    home_cfg = _write(
        tmp_path / "home" / ".config" / "containers" / "auth.json",
        {"auths": {"b.example": {"auth": _b64("from-home:x")}}},
    )
    env = {"HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    kc = default_keychain(env)
    a, b = kc.resolve("a.example"), kc.resolve("b.example")
    assert a is not None and a.source == str(run)
    assert b is not None and b.source == str(home_cfg)
    # REGISTRY_AUTH_FILE replaces the default Podman locations, as in Podman.
    only = _write(tmp_path / "only.json", {"auths": {}})
    kc = default_keychain({**env, "REGISTRY_AUTH_FILE": str(only)})
    assert kc.resolve("a.example") is None


def test_multi_keychain_first_non_anonymous_wins():
    anon = StaticKeychain.of({"r.example": Credentials()})
    real = StaticKeychain.of({"https://r.example": Credentials("u", "p")})
    creds = MultiKeychain((anon, real)).resolve("r.example")
    assert creds is not None and creds.username == "u"
    assert MultiKeychain(()).resolve("r.example") is None
