"""HTTP-level errors raised by the parser; protocol.py turns each into a response and a close."""

from __future__ import annotations


class HttpError(Exception):
    """A request the server refuses before any handler runs.

    `status` and `reason` form the status line; `detail`, when set, follows the reason the way
    net/http writes `400 Bad Request: missing required Host header`.
    """

    status = 400
    reason = "Bad Request"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)
        self.detail = detail

    def response(self) -> bytes:
        """net/http's hand-written error answer: status line, plain text, Connection: close."""
        text = f"{self.status} {self.reason}"
        if self.detail:
            text += ": " + self.detail
        return (
            f"HTTP/1.1 {text}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Connection: close\r\n\r\n{text}"
        ).encode("latin-1", "replace")


class BadRequestError(HttpError):
    status = 400
    reason = "Bad Request"


class RequestTimeoutError(HttpError):
    status = 408
    reason = "Request Timeout"


class PayloadTooLargeError(HttpError):
    status = 413
    reason = "Request Entity Too Large"


class HeaderTooLargeError(HttpError):
    status = 431
    reason = "Request Header Fields Too Large"


class UnsupportedTEError(HttpError):
    status = 501
    reason = "Not Implemented"

    def response(self) -> bytes:
        return (
            b"HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Connection: close\r\n\r\nUnsupported transfer encoding"
        )


class VersionNotSupportedError(HttpError):
    status = 505
    reason = "HTTP Version Not Supported"
