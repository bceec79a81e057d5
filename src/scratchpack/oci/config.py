"""The image configuration (what runs, as whom) and its canonical JSON encoding.

The config blob's digest is the image ID that docker and podman show, so its bytes must not
depend on dict order or whitespace: ``to_bytes`` sorts keys and uses compact separators.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scratchpack.config import normalise_port
from scratchpack.errors import ImageError
from scratchpack.oci.digest import Digest

EPOCH = "1970-01-01T00:00:00Z"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTROL = frozenset({"Cc", "Cf", "Zl", "Zp"})  # controls, format (bidi) and line separators
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, ASCII only: one value has exactly one encoding."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def format_created(value: datetime | str | int) -> str:
    """An RFC 3339 UTC timestamp; ints are seconds since the epoch (SOURCE_DATE_EPOCH)."""
    if isinstance(value, int):
        if value < 0:
            raise ImageError(f"creation time {value} is before 1970")
        value = datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        if not _RFC3339.fullmatch(value):
            raise ImageError(
                f"creation time {value!r} is not RFC 3339",
                hint="use e.g. 2024-01-31T12:00:00Z, or pass seconds since the epoch",
            )
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ImageError(f"creation time {value} has no time zone; pass an aware datetime")
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def _control(text: str) -> str:
    """The first control, format or line-separator character in ``text``, escaped; or ''."""
    bad = next((c for c in text if unicodedata.category(c) in _CONTROL), "")
    return ascii(bad)[1:-1] if bad else ""


def check_env(name: str, value: str) -> None:
    """An environment variable a process can be given: a POSIX-style name, a one-line value.

    A newline in a value would be stored as given and split by tools that print ``NAME=VALUE``
    lines; the value itself is never quoted back (it may be a secret).
    """
    if not _ENV_NAME.fullmatch(name):
        raise ImageError(
            f"environment variable name {name!r} is not valid",
            hint="use letters, digits and '_', not starting with a digit (e.g. APP_MODE)",
        )
    if bad := _control(value):
        raise ImageError(
            f"the value of environment variable {name} contains the control character {bad}",
            hint="environment values are one line of text; pass files for anything else",
        )


def check_label(key: str, value: str) -> None:
    """A label: a non-empty key and a value, both one line without control characters."""
    if not key or (bad := _control(key)):
        raise ImageError(
            f"label key {key!r} is not valid: empty, or it contains a control character",
            hint="use e.g. org.opencontainers.image.description or team",
        )
    if bad := _control(value):
        raise ImageError(
            f"the value of label {key} contains the control character {bad}",
            hint="label values are one line of text",
        )


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The runtime part of the config (``config`` in the JSON): entrypoint, user, env ..."""

    user: str = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    exposed_ports: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    stop_signal: str = ""

    def __post_init__(self) -> None:
        for name in ("entrypoint", "cmd", "env", "exposed_ports", "labels"):
            if not isinstance(getattr(self, name), tuple):
                raise ImageError(f"ImageConfig.{name} must be a tuple (images are immutable)")
        for item in self.env:
            if "=" not in item or item.startswith("="):
                raise ImageError(f"environment entry {item!r} is not NAME=VALUE")
            check_env(*item.split("=", 1))
        for port in self.exposed_ports:
            normalise_port(port)
        if self.working_dir and not self.working_dir.startswith("/"):
            raise ImageError(f"working directory {self.working_dir!r} must be absolute")
        if any(c.isspace() for c in self.user):
            raise ImageError(f"user {self.user!r} contains whitespace", hint="use NAME or UID:GID")
        keys = [k for k, _ in self.labels]
        if len(set(keys)) != len(keys) or "" in keys:
            raise ImageError("label keys must be unique and non-empty")
        for key, value in self.labels:
            check_label(key, value)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.exposed_ports:
            out["ExposedPorts"] = {normalise_port(p): {} for p in self.exposed_ports}
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        return out


@dataclass(frozen=True, slots=True)
class History:
    """One history entry; docker shows these in ``docker history``."""

    created: str = EPOCH
    created_by: str = ""
    comment: str = ""
    empty_layer: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"created": self.created}
        if self.created_by:
            out["created_by"] = self.created_by
        if self.comment:
            out["comment"] = self.comment
        if self.empty_layer:
            out["empty_layer"] = True
        return out


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """The whole config blob: platform, creation time, runtime config, rootfs diff_ids, history."""

    architecture: str
    os: str
    created: str
    config: ImageConfig
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[History, ...] = ()
    variant: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.diff_ids, tuple) or not isinstance(self.history, tuple):
            raise ImageError("ConfigFile.diff_ids and .history must be tuples")
        format_created(self.created)  # validates

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "architecture": self.architecture,
            "os": self.os,
            "created": self.created,
            "config": self.config.to_json(),
            "rootfs": {"type": "layers", "diff_ids": [str(d) for d in self.diff_ids]},
            "history": [h.to_json() for h in self.history],
        }
        if self.variant:
            out["variant"] = self.variant
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())


__all__ = [
    "EPOCH",
    "ConfigFile",
    "History",
    "ImageConfig",
    "canonical_json",
    "format_created",
    "normalise_port",
]
