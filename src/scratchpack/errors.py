"""The scratchpack exception hierarchy.

Every message is written for the person at the terminal: what failed, why, and what to try.
Only ``cli`` turns these into output and exit codes; library code raises and never prints.
"""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r" {2,}")


def printable(text: str, limit: int = 500) -> str:
    """Text from a server or a helper process, made safe to print on one terminal line.

    Such text can carry ANSI escapes, a carriage return that overwrites the line before it, or
    a newline followed by a forged ``hint:`` line. Whitespace of any kind becomes one space (so
    the text cannot start a line of its own), other control and format characters (C0, C1,
    bidi overrides) are shown escaped (``\\x1b``), and the result is cut at ``limit``.
    """
    out: list[str] = []
    for ch in text:
        if ch.isspace():
            out.append(" ")
        elif unicodedata.category(ch)[0] == "C":
            out.append(ascii(ch)[1:-1])  # '\\x1b', '\\u202e': visible, inert
        else:
            out.append(ch)
    clean = _SPACES.sub(" ", "".join(out)).strip()
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


class Interrupted(KeyboardInterrupt):
    """A signal (SIGINT, SIGTERM) asked scratchpack to stop.

    Raised from the signal handler, so every ``with`` and ``finally`` on the way up runs: child
    process groups are stopped and temporary files removed. A KeyboardInterrupt, so no
    ``except Exception`` on the way swallows it; not a ScratchpackError, for the same reason.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class ScratchpackError(Exception):
    """The build cannot proceed; ``str()`` is the user-facing message.

    ``hint`` says what to do in words that fit any caller. ``remedy`` is data: a stable key
    (e.g. ``"registry-ca"``) that a front end maps to its own wording, so only the CLI names
    CLI flags (``cli.REMEDIES``).
    """

    def __init__(self, message: str, *, hint: str | None = None, remedy: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.remedy = remedy

    def __str__(self) -> str:
        return self.render(self.hint)

    def render(self, hint: str | None) -> str:
        """The message with ``hint`` in place of the neutral one (the CLI's wording)."""
        return self.message if not hint else f"{self.message}\n  hint: {hint}"


class ProjectError(ScratchpackError):
    """The project directory, its pyproject or its entry point is unusable."""


class FreezeError(ScratchpackError):
    """An external freezing tool failed; keeps the tool name and the tail of its output."""

    def __init__(
        self,
        message: str,
        *,
        tool: str = "",
        output: str = "",
        hint: str | None = None,
        remedy: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, remedy=remedy)
        self.tool = tool
        self.output = output

    def render(self, hint: str | None) -> str:
        text = super().render(hint)
        if self.output:
            tail = "\n".join(self.output.rstrip().splitlines()[-25:])
            text += f"\n--- last lines of {self.tool or 'tool'} output ---\n{tail}"
        return text


class ImageError(ScratchpackError):
    """The image model was given inconsistent input (bad reference, bad config value)."""


class DigestMismatchError(ImageError):
    """Bytes read back do not hash to the digest they were recorded under."""


class SinkError(ScratchpackError):
    """Writing an output (tarball, layout directory, ...) failed."""


class RegistryError(ScratchpackError):
    """A registry answered with an error, or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        codes: tuple[str, ...] = (),
        method: str = "",
        url: str = "",
        temporary: bool = False,
        hint: str | None = None,
        remedy: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, remedy=remedy)
        self.status = status
        self.codes = codes
        self.method = method
        self.url = url
        self.temporary = temporary


class AuthError(RegistryError):
    """Credentials were missing, rejected, or could not be obtained from a helper."""


class EngineError(ScratchpackError):
    """No working container engine (docker/podman) to run an image with."""
