"""Registry credentials: Docker and Podman config files, credential helpers, auth challenges.

The keychain is a chain of small resolvers, as in ggcr's ``authn``: the Docker config
(``auths``, ``credsStore``, ``credHelpers``), then Podman's ``auth.json``, then anonymous.
Nothing here does HTTP: ``session.py`` runs the Basic/Bearer exchange with the pieces
below (challenge parsing, token-request parameters, token-response parsing), so this module
stays a pure function of files, environment and the helper processes it is given.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from scratchpack.errors import AuthError, printable
from scratchpack.oci.reference import DEFAULT_REGISTRY, canonical_registry

__all__ = [
    "Challenge",
    "ConfigFileKeychain",
    "Credentials",
    "HelperRunner",
    "Keychain",
    "MultiKeychain",
    "basic_authorization",
    "default_keychain",
    "parse_challenges",
    "parse_token_response",
    "run_helper",
]

_HUB_SERVER_URL = "https://index.docker.io/v1/"
_HELPER_TIMEOUT = 60.0
_MAX_FILE = 4 << 20


@dataclass(frozen=True, slots=True)
class Credentials:
    """What to authenticate with; secrets never appear in repr(). ``source`` names the origin."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)
    source: str = ""

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def describe(self) -> str:
        """For messages: who and from where, never the secret."""
        who = f"user {self.username!r}" if self.username else "an identity token"
        return f"{who} from {self.source}" if self.source else who


class Keychain(Protocol):
    """Finds credentials for a registry host (``localhost:5000``, ``docker.io``), or None."""

    def resolve(self, registry: str) -> Credentials | None: ...


class HelperRunner(Protocol):
    """Runs ``docker-credential-NAME get`` with the server URL on stdin; injected for tests."""

    def __call__(
        self, argv: Sequence[str], stdin: str, env: Mapping[str, str]
    ) -> subprocess.CompletedProcess[str]: ...


def run_helper(
    argv: Sequence[str], stdin: str, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """The production HelperRunner: the helper found on ``env['PATH']``, bounded in time."""
    exe = shutil.which(argv[0], path=env.get("PATH", os.defpath))
    if exe is None:
        raise FileNotFoundError(argv[0])
    return subprocess.run(  # noqa: PLW1510 - the caller reads returncode
        [exe, *argv[1:]],
        input=stdin,
        capture_output=True,
        text=True,
        errors="replace",
        env=dict(env),
        timeout=_HELPER_TIMEOUT,
    )


def normalize_registry(key: str) -> str:
    """Config-file key to host: ``https://index.docker.io/v1/`` -> ``docker.io``."""
    text = key.strip()
    for prefix in ("https://", "http://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
            break
    host = text.split("/", 1)[0].lower()
    return canonical_registry(host)


def _server_url(registry: str) -> str:
    """What Docker passes to a credential helper for this registry."""
    return _HUB_SERVER_URL if normalize_registry(registry) == DEFAULT_REGISTRY else registry


@dataclass(frozen=True, slots=True)
class MultiKeychain:
    """Tries keychains in order; the first non-anonymous answer wins (ggcr multikeychain)."""

    keychains: tuple[Keychain, ...]

    def resolve(self, registry: str) -> Credentials | None:
        for keychain in self.keychains:
            creds = keychain.resolve(registry)
            if creds is not None and not creds.anonymous:
                return creds
        return None


@dataclass(frozen=True, slots=True)
class ConfigFileKeychain:
    """A Docker ``config.json`` or Podman ``auth.json``: same ``auths``/helper schema.

    Docker's precedence: ``credHelpers[host]``, else ``credsStore``, else the ``auths`` entry.
    A missing file resolves nothing; a malformed one is an error (silently pushing anonymously
    with a broken config would hide the real problem behind a 401).
    """

    path: Path
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    runner: HelperRunner = field(default=run_helper, repr=False)

    def _load(self) -> dict[str, object] | None:
        try:
            with self.path.open("rb") as fh:
                raw = fh.read(_MAX_FILE)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise AuthError(
                f"cannot read the registry credentials file {self.path}: {err.strerror}",
                hint="fix its permissions, or point DOCKER_CONFIG/REGISTRY_AUTH_FILE elsewhere",
            ) from None
        try:
            doc = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError) as err:
            raise AuthError(
                f"the registry credentials file {self.path} is not valid JSON: {err}",
                hint="fix or remove it (`docker login` rewrites it)",
            ) from None
        if not isinstance(doc, dict):
            raise AuthError(f"the registry credentials file {self.path} is not a JSON object")
        return doc

    def resolve(self, registry: str) -> Credentials | None:
        doc = self._load()
        if doc is None:
            return None
        want = normalize_registry(registry)
        helpers = doc.get("credHelpers")
        if isinstance(helpers, dict):
            for key, name in helpers.items():
                if normalize_registry(key) == want and isinstance(name, str) and name:
                    return self._from_helper(name, registry, f"credHelpers in {self.path}")
        store = doc.get("credsStore")
        if isinstance(store, str) and store:
            creds = self._from_helper(store, registry, f"credsStore in {self.path}")
            if creds is not None:
                return creds
        auths = doc.get("auths")
        if isinstance(auths, dict):
            for key, entry in auths.items():
                if normalize_registry(key) == want and isinstance(entry, dict):
                    creds = self._from_entry(key, entry)
                    if not creds.anonymous:
                        return creds
        return None

    def _from_entry(self, key: str, entry: dict[str, object]) -> Credentials:
        def text(name: str) -> str:
            value = entry.get(name)
            return value if isinstance(value, str) else ""

        username, password = text("username"), text("password")
        encoded = text("auth")
        if encoded:
            try:
                decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise AuthError(
                    f"the 'auth' value for {key!r} in {self.path} is not base64 of USER:PASSWORD",
                    hint=f"run `docker login {key}` again, or fix the entry",
                ) from None
            username, sep, password = decoded.partition(":")
            if not sep:
                raise AuthError(
                    f"the 'auth' value for {key!r} in {self.path} has no ':' between user "
                    "and password",
                    hint=f"run `docker login {key}` again, or fix the entry",
                )
        return Credentials(
            username=username,
            password=password,
            identity_token=text("identitytoken"),
            registry_token=text("registrytoken"),
            source=str(self.path),
        )

    def _from_helper(self, name: str, registry: str, origin: str) -> Credentials | None:
        program = f"docker-credential-{name}"
        try:
            proc = self.runner([program, "get"], _server_url(registry), self.env)
        except FileNotFoundError:
            raise AuthError(
                f"credential helper {program} (named by {origin}) is not on PATH",
                hint=f"install {program}, or remove '{name}' from that file",
            ) from None
        except (OSError, subprocess.SubprocessError) as err:
            raise AuthError(f"credential helper {program} (from {origin}) failed: {err}") from None
        out = (proc.stdout or "").strip()
        if proc.returncode != 0:
            if (
                "credentials not found" in out.lower()
                or "credentials not found" in (proc.stderr or "").lower()
            ):
                return None
            # Only stderr is quoted: stdout is where a helper prints secrets, and a helper
            # that fails halfway may already have printed its Secret there.
            tail = " ".join((proc.stderr or "").strip().splitlines()[-3:])
            said = (
                printable(tail, 300)
                or "nothing on stderr (stdout is not shown: it may hold a secret)"
            )
            raise AuthError(
                f"credential helper {program} (from {origin}) exited with status "
                f"{proc.returncode}: {said}",
                hint=f"check `echo {_server_url(registry)} | {program} get` by hand",
            )
        try:
            doc = json.loads(out)
            username, secret = doc["Username"], doc["Secret"]
            if not isinstance(username, str) or not isinstance(secret, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise AuthError(
                f"credential helper {program} (from {origin}) printed no JSON "
                "with Username and Secret",
                hint=f"check `echo {_server_url(registry)} | {program} get` by hand",
            ) from None
        source = f"{program} ({origin})"
        if username == "<token>":
            return Credentials(identity_token=secret, source=source)
        return Credentials(username=username, password=secret, source=source)


def docker_config_path(env: Mapping[str, str]) -> Path | None:
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    home = env.get("HOME")
    return Path(home) / ".docker" / "config.json" if home else None


def podman_auth_paths(env: Mapping[str, str]) -> list[Path]:
    """Podman's order: REGISTRY_AUTH_FILE alone if set, else the runtime then the config file."""
    if env.get("REGISTRY_AUTH_FILE"):
        return [Path(env["REGISTRY_AUTH_FILE"])]
    paths: list[Path] = []
    if env.get("XDG_RUNTIME_DIR"):
        paths.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    config_home = env.get("XDG_CONFIG_HOME") or (
        str(Path(env["HOME"]) / ".config") if env.get("HOME") else ""
    )
    if config_home:
        paths.append(Path(config_home) / "containers" / "auth.json")
    return paths


def default_keychain(
    env: Mapping[str, str] | None = None, *, runner: HelperRunner = run_helper
) -> Keychain:
    """Docker config (DOCKER_CONFIG or ~/.docker), then Podman auth files, then anonymous."""
    env = dict(os.environ if env is None else env)
    files: list[Path] = []
    docker = docker_config_path(env)
    if docker is not None:
        files.append(docker)
    files.extend(podman_auth_paths(env))
    return MultiKeychain(tuple(ConfigFileKeychain(p, env, runner) for p in files))


# --- challenges and tokens -------------------------------------------------------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# Unquoted values are RFC tokens, but realms like https://host/token are sent unquoted by
# some servers: accept anything up to the next comma or space.
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))\s*(?:,|$)')
_SCHEME = re.compile(rf"\s*,?\s*({_TOKEN})(?:\s+|$)")


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: scheme (lower-cased) and its parameters."""

    scheme: str
    params: tuple[tuple[str, str], ...] = ()

    def get(self, name: str, default: str = "") -> str:
        for key, value in self.params:
            if key == name:
                return value
        return default


def parse_challenges(header: str) -> list[Challenge]:
    """RFC 7235 challenges, e.g. ``Bearer realm="...",service="...",scope="a:b:pull,push"``."""
    out: list[Challenge] = []
    pos = 0
    while pos < len(header):
        m = _SCHEME.match(header, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: list[tuple[str, str]] = []
        while pos < len(header):
            p = _PARAM.match(header, pos)
            if not p:
                break
            value = p.group(2)
            value = re.sub(r"\\(.)", r"\1", value) if value is not None else p.group(3)
            params.append((p.group(1).lower(), value))
            pos = p.end()
        out.append(Challenge(scheme, tuple(params)))
    return out


def basic_authorization(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def parse_token_response(body: bytes) -> tuple[str, int | None]:
    """``token`` (or ``access_token``) and ``expires_in`` from a token endpoint's JSON."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the token response is not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError("the token response is not a JSON object")
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValueError("the token response has neither 'token' nor 'access_token'")
    expires = doc.get("expires_in")
    return token, expires if isinstance(expires, int) and expires > 0 else None
