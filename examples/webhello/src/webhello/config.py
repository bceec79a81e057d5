"""ServerConfig: every limit and timeout in one place, each with its default.

Why: the reference has no limits at all; these bound what one client can make the server hold
(STYLE convention 10) and are documented in README.md.
"""

from __future__ import annotations

import os
from typing import NamedTuple


class ServerConfig(NamedTuple):
    """Limits and timeouts; values in bytes and seconds."""

    max_request_line: int = 8 * 1024
    max_header_field: int = 8 * 1024
    max_headers: int = 100
    max_head: int = 16 * 1024
    max_body: int = 1024 * 1024  # deviation 5; env WEBHELLO_MAX_BODY
    max_chunk_line: int = 4096
    head_timeout: float = 10.0  # first byte of a request -> its full head (408)
    body_timeout: float = 30.0  # end of head -> end of body (408)
    keepalive_timeout: float = 60.0  # idle time between requests on one connection
    write_timeout: float = 60.0  # a response the client does not read for this long is dropped
    shutdown_grace: float = 5.0  # SIGTERM/SIGINT: in-flight requests get this long
    file_cache_max: int = 1024 * 1024  # static files up to this size are kept in memory
    file_cache_entries: int = 256
    read_chunk: int = 256 * 1024  # streaming size for files above the cache limit

    @classmethod
    def from_env(cls) -> ServerConfig:
        """Defaults, with WEBHELLO_MAX_BODY (bytes, > 0) overriding the body cap."""
        raw = os.environ.get("WEBHELLO_MAX_BODY", "")
        if raw.strip().isdigit() and int(raw) > 0:
            return cls(max_body=int(raw))
        return cls()
