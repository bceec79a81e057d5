"""webhello's sans-IO parser (http.py) fed bytes directly: no server, no socket, no loop.

The fast tier of the parser rules (STYLE 11): framing, pipelining, partial input, the limits of
ServerConfig (STYLE 10) and net/http's refusals. The behaviour suite (test_hostile.py) sends the
same kinds of input to a real server; these pin the parser's own answers in milliseconds.
"""

from __future__ import annotations

import pytest

from webhello.config import ServerConfig
from webhello.errors import (
    BadRequestError,
    HeaderTooLargeError,
    HttpError,
    PayloadTooLargeError,
    UnsupportedTEError,
    VersionNotSupportedError,
)
from webhello.http import Parser, Request

CFG = ServerConfig()


def parse_all(data: bytes, cfg: ServerConfig = CFG) -> tuple[list[Request], Parser]:
    """Feed `data` at once and drain every complete request."""
    parser = Parser(cfg)
    parser.feed(data)
    out: list[Request] = []
    while (req := parser.next()) is not None:
        out.append(req)
    return out, parser


def parse_one(data: bytes, cfg: ServerConfig = CFG) -> Request:
    reqs, parser = parse_all(data, cfg)
    assert len(reqs) == 1
    assert parser.idle()
    return reqs[0]


def refusal(data: bytes, cfg: ServerConfig = CFG) -> HttpError:
    """The HttpError the parser raises for `data` (fed at once)."""
    parser = Parser(cfg)
    parser.feed(data)
    with pytest.raises(HttpError) as info:
        while parser.next() is not None:
            pass
    return info.value


# --- requests ------------------------------------------------------------------------------------


def test_get_fields():
    req = parse_one(
        b"GET /www/a%20b?x=1&y HTTP/1.1\r\nHost: example:8080\r\nx-lower: v \r\nAccept: */*\r\n\r\n"
    )
    assert (req.method, req.minor, req.target) == ("GET", 1, "/www/a%20b?x=1&y")
    assert (req.raw_path, req.path, req.query) == ("/www/a%20b", "/www/a b", "x=1&y")
    assert req.host == "example:8080"
    # Host lives in req.host only (Go's r.Host); keys are canonical, values trimmed.
    assert req.headers == [("X-Lower", "v"), ("Accept", "*/*")]
    assert req.hmap == {"X-Lower": "v", "Accept": "*/*"}
    assert req.body == b""
    assert not req.wants_close and not req.wants10ka and not req.expect_fail


def test_http10_without_host_and_keep_alive():
    req = parse_one(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert (req.minor, req.host, req.wants10ka) == (0, "", True)


@pytest.mark.parametrize(
    "values",
    [["close"], ["keep-alive, Close"], ["keep-alive", "close"]],
    ids=["close", "token-list", "second-field"],
)
def test_connection_close_in_any_value(values: list[str]):
    head = "".join(f"Connection: {v}\r\n" for v in values).encode()
    req = parse_one(b"GET / HTTP/1.1\r\nHost: t\r\n" + head + b"\r\n")
    assert req.wants_close


def test_options_star_and_absolute_form():
    star = parse_one(b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (star.raw_path, star.path) == ("*", "*")
    absolute = parse_one(b"GET http://other:81/www/x?q HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (absolute.host, absolute.path, absolute.query) == ("other:81", "/www/x", "q")


def test_bare_lf_head_is_accepted():
    req = parse_one(b"GET /x HTTP/1.1\nHost: t\nA: 1\n\n")
    assert (req.path, req.headers) == ("/x", [("A", "1")])


# --- pipelining and partial input ----------------------------------------------------------------


def test_pipelined_requests_come_out_in_order():
    data = (
        b"GET /1 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /3 HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    reqs, parser = parse_all(data)
    assert [(r.method, r.path, r.body) for r in reqs] == [
        ("GET", "/1", b""),
        ("POST", "/2", b"abc"),
        ("GET", "/3", b""),
    ]
    assert parser.idle() and parser.buffered() == 0


def test_one_byte_at_a_time():
    data = b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
    parser = Parser(CFG)
    got: list[Request] = []
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        req = parser.next()
        if req is not None:
            got.append(req)
        else:
            assert not parser.idle()  # a request is under way: the head/body deadline applies
    assert [(r.path, r.body) for r in got] == [("/p", b"hello")]
    assert parser.idle()


def test_in_body_while_waiting_for_the_body():
    parser = Parser(CFG)
    parser.feed(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab")
    assert parser.next() is None
    assert parser.in_body()
    parser.feed(b"cd")
    req = parser.next()
    assert req is not None and req.body == b"abcd"
    assert not parser.in_body()


def test_chunked_body_with_extension_and_trailer_split_anywhere():
    data = (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n"
        b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    for cut in range(1, len(data)):
        parser = Parser(CFG)
        got: list[Request] = []
        for part in (data[:cut], data[cut:]):
            parser.feed(part)
            while (req := parser.next()) is not None:
                got.append(req)
        assert [r.body for r in got] == [b"abc0123456789abcdef", b""], cut
        # The framing header is consumed by the parser, not shown to handlers.
        assert "Transfer-Encoding" not in got[0].hmap


def test_expect_100_continue():
    parser = Parser(CFG)
    parser.feed(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert parser.next() is None
    assert parser.want_continue
    parser.feed(b"ok")
    req = parser.next()
    assert req is not None and req.body == b"ok" and not parser.want_continue
    other = parse_one(b"GET / HTTP/1.1\r\nHost: t\r\nExpect: magic\r\n\r\n")
    assert other.expect_fail


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"GET /\r\nHost: t\r\n\r\n", BadRequestError),
        (b"GET / HTTP/1.1\r\nHost: t\r\nNo colon\r\n\r\n", BadRequestError),
        (b"G@T / HTTP/1.1\r\nHost: t\r\n\r\n", BadRequestError),
        (b"GET / HTTP/1.1\r\nHost: t\r\nA: \x01\r\n\r\n", BadRequestError),
        (b"GET / HTTP/1.1\r\nHost: t\rA: 1\r\n\r\n", BadRequestError),
        (b"GET /%zz HTTP/1.1\r\nHost: t\r\n\r\n", BadRequestError),
        (b"GET / HTTP/1.x\r\nHost: t\r\n\r\n", BadRequestError),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", VersionNotSupportedError),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            BadRequestError,
        ),
        (b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", BadRequestError),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            BadRequestError,
        ),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", UnsupportedTEError),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", BadRequestError),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            BadRequestError,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n",
            BadRequestError,
        ),
    ],
    ids=[
        "no-version",
        "header-without-colon",
        "method-not-a-token",
        "control-byte",
        "lone-cr",
        "bad-percent-escape",
        "bad-minor-version",
        "http2",
        "conflicting-content-length",
        "negative-content-length",
        "cl-and-te",
        "unknown-te",
        "te-on-http10",
        "bad-chunk-size",
        "chunk-line-bare-lf",
    ],
)
def test_malformed_input_is_refused(data: bytes, error: type[HttpError]):
    assert type(refusal(data)) is error


@pytest.mark.parametrize(
    ("head", "detail"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "missing required Host header"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "too many Host headers"),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "malformed Host header"),
    ],
)
def test_host_rules_give_net_http_texts(head: bytes, detail: str):
    err = refusal(head)
    text = f"400 Bad Request: {detail}"
    expected = f"HTTP/1.1 {text}\r\nContent-Type: text/plain; charset=utf-8\r\n"
    expected += f"Connection: close\r\n\r\n{text}"
    assert err.response() == expected.encode()


# --- limits (ServerConfig) -----------------------------------------------------------------------
# An over-long request line is answered 431, not 414: net/http counts the request line into its
# header limit and never sends 414, and webhello keeps its status codes (README: limits).


def test_request_line_limit_on_a_complete_head():
    line = b"GET /" + b"a" * (CFG.max_request_line - 14) + b" HTTP/1.1"
    assert len(line) == CFG.max_request_line
    parse_one(line + b"\r\nHost: t\r\n\r\n")
    err = refusal(line.replace(b"/", b"/a", 1) + b"\r\nHost: t\r\n\r\n")
    assert type(err) is HeaderTooLargeError
    assert err.response().startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def test_request_line_that_never_ends_is_refused_before_it_ends():
    parser = Parser(CFG)
    parser.feed(b"GET /" + b"a" * (CFG.max_request_line - 5))
    assert parser.next() is None  # exactly at the limit: still waiting
    parser.feed(b"a")
    with pytest.raises(HeaderTooLargeError):
        parser.next()


def test_header_line_limit_complete_and_incomplete():
    long_value = b"v" * CFG.max_header_field
    err = refusal(b"GET / HTTP/1.1\r\nHost: t\r\nX: " + long_value + b"\r\n\r\n")
    assert type(err) is HeaderTooLargeError
    parser = Parser(CFG)
    parser.feed(b"GET / HTTP/1.1\r\nHost: t\r\nX: " + long_value)  # no line end yet
    with pytest.raises(HeaderTooLargeError):
        parser.next()


def test_header_count_limit():
    fields = b"".join(b"H%d: v\r\n" % i for i in range(CFG.max_headers - 1))
    parse_one(b"GET / HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n")  # 100 fields with Host
    err = refusal(b"GET / HTTP/1.1\r\nHost: t\r\n" + fields + b"Extra: 1\r\n\r\n")
    assert type(err) is HeaderTooLargeError


def test_whole_head_limit_complete_and_incomplete():
    field = b"X: " + b"v" * 4000 + b"\r\n"
    err = refusal(b"GET / HTTP/1.1\r\nHost: t\r\n" + field * 5 + b"\r\n")
    assert type(err) is HeaderTooLargeError
    parser = Parser(CFG)
    parser.feed(b"GET / HTTP/1.1\r\nHost: t\r\n" + field * 5)  # no blank line yet
    with pytest.raises(HeaderTooLargeError):
        parser.next()


def test_body_cap_for_both_framings():
    cfg = ServerConfig(max_body=10)
    parse_one(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n" + b"x" * 10, cfg)
    err = refusal(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n", cfg)
    assert type(err) is PayloadTooLargeError
    chunked = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    err = refusal(chunked + b"6\r\nxxxxxx\r\n6\r\n", cfg)
    assert type(err) is PayloadTooLargeError
    assert err.response().startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")


def test_chunk_line_limit():
    cfg = ServerConfig(max_chunk_line=8)
    chunked = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    err = refusal(chunked + b"1;" + b"e" * 10, cfg)
    assert type(err) is BadRequestError
