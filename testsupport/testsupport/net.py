"""Network helpers shared by tests and benchmarks."""

from __future__ import annotations

import http.client
import socket
import ssl


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago; callers must still cope with losing a race."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def get_status(
    port: int, context: ssl.SSLContext | None = None, *, timeout: float = 2
) -> int | None:
    """Status of ``GET /`` on 127.0.0.1:port (HTTPS with ``context``); None if it failed."""
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return None
    finally:
        conn.close()
