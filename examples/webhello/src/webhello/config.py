"""ServerConfig: every limit and timeout in one place, each with its default.

Why: the reference has no limits at all; these bound what one client can make the server hold
(STYLE convention 10) and are documented in README.md.
"""

from __future__ import annotations

import os


class ServerConfig:
    """Limits and timeouts; values in bytes and seconds.

    A plain slotted class, not a NamedTuple or dataclass: those cost `typing`/`dataclasses`
    imports and class-creation time at start-up, and only attribute access is needed.
    """

    __slots__ = (
        "body_timeout",
        "file_cache_entries",
        "file_cache_max",
        "head_timeout",
        "keepalive_timeout",
        "max_body",
        "max_chunk_line",
        "max_head",
        "max_header_field",
        "max_headers",
        "max_request_line",
        "read_chunk",
        "shutdown_grace",
        "write_timeout",
    )

    def __init__(
        self,
        *,
        max_request_line: int = 8 * 1024,
        max_header_field: int = 8 * 1024,
        max_headers: int = 100,
        max_head: int = 16 * 1024,
        max_body: int = 1024 * 1024,  # deviation 5; env WEBHELLO_MAX_BODY
        max_chunk_line: int = 4096,
        head_timeout: float = 10.0,  # first byte of a request -> its full head (408)
        body_timeout: float = 30.0,  # end of head -> end of body (408)
        keepalive_timeout: float = 60.0,  # idle time between requests on one connection
        write_timeout: float = 60.0,  # a response the client does not read for this long: drop
        shutdown_grace: float = 5.0,  # SIGTERM/SIGINT: in-flight requests get this long
        file_cache_max: int = 1024 * 1024,  # static files up to this size are kept in memory
        file_cache_entries: int = 256,
        read_chunk: int = 256 * 1024,  # streaming size for files above the cache limit
    ) -> None:
        self.max_request_line = max_request_line
        self.max_header_field = max_header_field
        self.max_headers = max_headers
        self.max_head = max_head
        self.max_body = max_body
        self.max_chunk_line = max_chunk_line
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.keepalive_timeout = keepalive_timeout
        self.write_timeout = write_timeout
        self.shutdown_grace = shutdown_grace
        self.file_cache_max = file_cache_max
        self.file_cache_entries = file_cache_entries
        self.read_chunk = read_chunk

    @classmethod
    def from_env(cls) -> ServerConfig:
        """Defaults, with WEBHELLO_MAX_BODY (bytes, > 0) overriding the body cap."""
        raw = os.environ.get("WEBHELLO_MAX_BODY", "")
        if raw.strip().isdigit() and int(raw) > 0:
            return cls(max_body=int(raw))
        return cls()
