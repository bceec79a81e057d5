"""fileserver.py in-process: Go's parseRange table, then FileServer answers for parsed requests.

The behaviour suite (test_static.py) checks the same rules over sockets against a real server;
these pin the file server's decisions (ranges, conditions, redirects, confinement, streaming)
as plain calls with a fixed clock.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from webhello.config import ServerConfig
from webhello.fileserver import FileServer, parse_range
from webhello.gopath import clean_abs
from webhello.http import Parser
from webhello.response import FileStream

DATE = b"Sat, 05 Dec 2026 01:00:00 GMT"
MTIME = 946684800  # Sat, 01 Jan 2000 00:00:00 GMT
LASTMOD = "Sat, 01 Jan 2000 00:00:00 GMT"
CONTENT = b"0123456789abcdefghijklmnop"  # 26 bytes

# Go's ParseRangeTests (net/http/range_test.go); None: an error or no range at all.
RANGES: list[tuple[str, int, list[tuple[int, int]] | None]] = [
    ("foo", 0, None),
    ("bytes=", 0, None),
    ("bytes=7", 10, None),
    ("bytes= 7 ", 10, None),
    ("bytes=1-", 0, None),
    ("bytes=5-4", 10, None),
    ("bytes=0-2,5-4", 10, None),
    ("bytes=2-5,4-3", 10, None),
    ("bytes=--5,4--3", 10, None),
    ("bytes=A-", 10, None),
    ("bytes=A- ", 10, None),
    ("bytes=A-Z", 10, None),
    ("bytes= -Z", 10, None),
    ("bytes=5-Z", 10, None),
    ("bytes=Ran-dom, garbage", 10, None),
    ("bytes=0x01-0x02", 10, None),
    ("bytes=         ", 10, None),
    ("bytes= , , ,   ", 10, None),
    ("bytes=0-9", 10, [(0, 10)]),
    ("bytes=0-", 10, [(0, 10)]),
    ("bytes=5-", 10, [(5, 5)]),
    ("bytes=0-20", 10, [(0, 10)]),
    ("bytes=15-,0-5", 10, [(0, 6)]),
    ("bytes=1-2,5-", 10, [(1, 2), (5, 5)]),
    ("bytes=-2 , 7-", 11, [(9, 2), (7, 4)]),
    ("bytes=0-0 ,2-2, 7-", 11, [(0, 1), (2, 1), (7, 4)]),
    ("bytes=-5", 10, [(5, 5)]),
    ("bytes=-15", 10, [(0, 10)]),
    ("bytes=0-499", 10000, [(0, 500)]),
    ("bytes=500-999", 10000, [(500, 500)]),
    ("bytes=-500", 10000, [(9500, 500)]),
    ("bytes=9500-", 10000, [(9500, 500)]),
    ("bytes=0-0,-1", 10000, [(0, 1), (9999, 1)]),
    ("bytes=500-600,601-999", 10000, [(500, 101), (601, 399)]),
    ("bytes=500-700,601-999", 10000, [(500, 201), (601, 399)]),
    ("bytes=   1 -2   ,  4- 5, 7 - 8 , ,,", 11, [(1, 2), (4, 2), (7, 2)]),
]


@pytest.mark.parametrize(("header", "size", "want"), RANGES)
def test_parse_range_matches_go(header: str, size: int, want: list[tuple[int, int]] | None):
    got = parse_range(header, size)
    if want is None:
        assert isinstance(got, str) or got == []
    else:
        assert got == want


def test_parse_range_error_texts():
    assert parse_range("items=0-1", 10) == "invalid range"
    assert parse_range("bytes=20-", 10) == "invalid range: failed to overlap"


# --- FileServer ----------------------------------------------------------------------------------


class FixedClock:
    sec = 1_796_432_400
    prefix = "2026/12/05 01:00:00 "
    date = DATE

    def tick(self) -> int:
        return self.sec


@pytest.fixture
def root(tmp_path: Path) -> Path:
    web = tmp_path / "root"
    (web / "etc").mkdir(parents=True)
    (web / "etc" / "data.txt").write_bytes(CONTENT)
    (web / "etc" / "big.bin").write_bytes(CONTENT * 10)
    (web / "key.pem").write_bytes(b"secret key\n")
    (tmp_path / "outside.txt").write_bytes(b"outside\n")
    (web / "out").symlink_to(tmp_path / "outside.txt")
    for p in (web / "etc" / "data.txt", web / "etc" / "big.bin", web / "etc", web):
        os.utime(p, (MTIME, MTIME))
    return web


def server(root: Path, **cfg: int) -> FileServer:
    config = ServerConfig(**cfg)
    return FileServer(os.fsencode(root), os.fsencode(root / "key.pem"), config, FixedClock(), True)


def serve(fs: FileServer, path: str, *headers: str) -> tuple[bytes, FileStream | None]:
    head = "\r\n".join([f"GET {path} HTTP/1.1", "Host: t", *headers]) + "\r\n\r\n"
    parser = Parser(ServerConfig())
    parser.feed(head.encode())
    req = parser.next()
    assert req is not None
    upath = req.path[4:]
    result = fs.serve_file(req, upath, clean_abs(upath))
    assert isinstance(result, tuple)
    data, close, stream = result
    assert not close
    return data, stream


def test_full_file_and_cache_entry(root: Path):
    fs = server(root)
    data, stream = serve(fs, "/www/etc/data.txt")
    head = (
        "HTTP/1.1 200 OK\r\nAccept-Ranges: bytes\r\nContent-Length: 26\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nLast-Modified: {LASTMOD}\r\nDate: "
    ).encode()
    assert data == head + DATE + b"\r\n\r\n" + CONTENT
    assert stream is None
    entry = fs.cache["/www/etc/data.txt"]
    assert entry.prefix == head and entry.content == CONTENT  # what App.static answers hits with


def test_non_canonical_urls_are_not_cached(root: Path):
    fs = server(root)
    serve(fs, "/www/etc//data.txt")
    assert fs.cache == {}


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (f"If-Modified-Since: {LASTMOD}", b"304 Not Modified"),
        ("If-Modified-Since: Fri, 31 Dec 1999 23:59:59 GMT", b"200 OK"),
        ("If-Unmodified-Since: Fri, 31 Dec 1999 23:59:59 GMT", b"412 Precondition Failed"),
        (f"If-Unmodified-Since: {LASTMOD}", b"200 OK"),
        ("If-None-Match: *", b"304 Not Modified"),
        ('If-Match: "x"', b"412 Precondition Failed"),
        ("If-Match: *", b"200 OK"),
    ],
)
def test_conditional_requests(root: Path, header: str, status: bytes):
    data, _ = serve(server(root), "/www/etc/data.txt", header)
    assert data.startswith(b"HTTP/1.1 " + status + b"\r\n")
    if status == b"304 Not Modified":
        assert data.endswith(b"\r\n\r\n") and b"Content-Length" not in data


def test_single_range(root: Path):
    data, _ = serve(server(root), "/www/etc/data.txt", "Range: bytes=1-2")
    assert data.startswith(b"HTTP/1.1 206 Partial Content\r\n")
    assert b"\r\nContent-Range: bytes 1-2/26\r\n" in data and b"\r\nContent-Length: 2\r\n" in data
    assert data.endswith(b"\r\n\r\n12")


def test_multiple_ranges_are_multipart(root: Path):
    data, _ = serve(server(root), "/www/etc/data.txt", "Range: bytes=0-0,-1")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206 Partial Content\r\n")
    ctype = next(h for h in head.split(b"\r\n") if h.startswith(b"Content-Type: "))
    boundary = ctype.split(b"boundary=")[1]
    assert len(boundary) == 60
    assert body == (
        b"--%s\r\nContent-Range: bytes 0-0/26\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n0"
        b"\r\n--%s\r\nContent-Range: bytes 25-25/26\r\nContent-Type: text/plain; charset=utf-8"
        b"\r\n\r\np\r\n--%s--\r\n" % (boundary, boundary, boundary)
    )
    assert b"\r\nContent-Length: %d\r\n" % len(body) in head


def test_unsatisfiable_range_is_416(root: Path):
    data, _ = serve(server(root), "/www/etc/data.txt", "Range: bytes=30-")
    assert data.startswith(b"HTTP/1.1 416 Requested Range Not Satisfiable\r\n")
    assert b"\r\nContent-Range: bytes */26\r\n" in data


def test_if_range_with_another_date_sends_the_whole_file(root: Path):
    data, _ = serve(
        server(root),
        "/www/etc/data.txt",
        "Range: bytes=1-2",
        "If-Range: Fri, 31 Dec 1999 23:59:59 GMT",
    )
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(CONTENT)


def test_directory_redirects_and_listing(root: Path):
    fs = server(root)
    data, _ = serve(fs, "/www/etc")
    assert data.startswith(b"HTTP/1.1 301 Moved Permanently\r\nLocation: etc/\r\n")
    data, _ = serve(fs, "/www/etc/data.txt/")
    assert b"\r\nLocation: ../data.txt\r\n" in data
    data, _ = serve(fs, "/www/etc/")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(
        b'<pre>\n<a href="big.bin">big.bin</a>\n<a href="data.txt">data.txt</a>\n</pre>\n'
    )


def test_confinement(root: Path):
    fs = server(root)
    out, _ = serve(fs, "/www/out")
    assert out.startswith(b"HTTP/1.1 404 Not Found\r\n") and b"outside" not in out
    key, _ = serve(fs, "/www/key.pem")
    assert key.startswith(b"HTTP/1.1 403 Forbidden\r\n") and b"secret" not in key


def test_a_file_over_the_cache_limit_is_streamed(root: Path):
    fs = server(root, file_cache_max=100)
    data, stream = serve(fs, "/www/etc/big.bin", "Range: bytes=5-9")
    assert stream is not None
    try:
        assert data.startswith(b"HTTP/1.1 206 Partial Content\r\n") and data.endswith(b"\r\n\r\n")
        assert stream.segments == [(5, 5)]
        assert os.pread(stream.fd, 5, 5) == CONTENT[5:10]
    finally:
        stream.close()
    assert fs.cache == {}
