"""Image references: ``[registry/]repository[:tag][@digest]`` with Docker's defaults.

Parsing follows the distribution reference grammar: the first path component is a registry
only if it contains a '.' or ':' or is 'localhost'; otherwise the name lives on Docker Hub and
one-component names get the ``library/`` prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scratchpack.errors import ImageError
from scratchpack.oci.digest import Digest

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
#: Host names that all mean Docker Hub (the reference default, its v1 index, its v2 API).
DOCKER_HUB_ALIASES = frozenset({DEFAULT_REGISTRY, "index.docker.io", "registry-1.docker.io"})

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # ASCII: \w would take "café"
_HOST = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
)
_HINT = "use NAME[:TAG], e.g. 'localhost:5000/webhello:1.0' or 'ghcr.io/me/app:latest'"


def is_tag(text: str) -> bool:
    """The distribution tag grammar: 1-128 ASCII letters, digits, '_', '.' or '-', not led by
    '.' or '-' (podman and registries refuse anything else)."""
    return _TAG.fullmatch(text) is not None


def canonical_registry(host: str) -> str:
    """``index.docker.io`` and ``registry-1.docker.io`` -> ``docker.io``; others unchanged."""
    return DEFAULT_REGISTRY if host in DOCKER_HUB_ALIASES else host


@dataclass(frozen=True, slots=True)
class Reference:
    registry: str
    repository: str
    tag: str = ""
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str, *, default_tag: str = DEFAULT_TAG) -> Reference:
        """Parse and normalise; a reference with neither tag nor digest gets ``default_tag``."""
        if not text or text != text.strip():
            raise ImageError(f"invalid image reference {text!r}: empty or padded", hint=_HINT)
        rest = text
        digest: Digest | None = None
        if "@" in rest:
            rest, _, dtext = rest.partition("@")
            try:
                digest = Digest.parse(dtext)
            except ValueError as err:
                raise ImageError(f"invalid image reference {text!r}: {err}", hint=_HINT) from None
        tag = ""
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not is_tag(tag):
                raise ImageError(f"invalid tag {tag!r} in image reference {text!r}", hint=_HINT)
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, remainder
            if not _HOST.fullmatch(registry):
                raise ImageError(f"invalid registry host {registry!r} in {text!r}", hint=_HINT)
        else:
            registry, path = DEFAULT_REGISTRY, rest
        registry = canonical_registry(registry)
        if registry == DEFAULT_REGISTRY and "/" not in path:
            path = f"library/{path}"
        if not path or not all(_COMPONENT.fullmatch(c) for c in path.split("/")):
            raise ImageError(
                f"invalid repository name {path!r} in image reference {text!r}: "
                "components must be lowercase letters, digits and separators (. _ __ -)",
                hint=_HINT,
            )
        if len(path) + len(registry) + 1 > 255:
            raise ImageError(f"image reference {text!r} is longer than 255 characters")
        if not tag and digest is None:
            tag = default_tag
        return cls(registry, path, tag, digest)

    @property
    def name(self) -> str:
        """Fully qualified repository name, e.g. ``docker.io/library/webhello``."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar(self) -> str:
        """The short form Docker shows: ``webhello:latest``, ``localhost:5000/app:1``."""
        repo = self.repository
        if self.registry == DEFAULT_REGISTRY:
            repo = repo.removeprefix("library/")
        else:
            repo = f"{self.registry}/{repo}"
        return repo + self._suffix()

    @property
    def registry_host(self) -> str:
        """Where the API lives: Docker Hub's API host differs from its name."""
        return "registry-1.docker.io" if self.registry == DEFAULT_REGISTRY else self.registry

    def with_digest(self, digest: Digest) -> Reference:
        return Reference(self.registry, self.repository, "", digest)

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag else ""
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def __str__(self) -> str:
        return self.name + self._suffix()
