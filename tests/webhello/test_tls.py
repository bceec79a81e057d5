"""Spec I (TLS, HTTP->HTTPS redirect) and deviations 2 (key never served), 4 (IPv6 Location),
7 (HTTP/1.1 over TLS required, h2 optional)."""
# ruff: noqa: N802  (tests are named after spec items)

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.webhello._server import (
    HTTP_DATE,
    RawConn,
    Server,
    http,
    open_conn,
    page_field,
    requests_count,
    run,
    serve,
    tls_conn,
    two_ports,
)


@pytest.fixture(scope="module")
def tls_root(tmp_path_factory: pytest.TempPathFactory, tls_files: tuple[Path, Path]) -> Path:
    d = tmp_path_factory.mktemp("tlsroot")
    for f in tls_files:
        shutil.copyfile(f, d / f.name)
    (d / "alias.pem").symlink_to("key.pem")
    (d / "hello.txt").write_bytes(b"hello\n")
    return d


@pytest.fixture(scope="module")
def tls_srv(tls_root: Path) -> Iterator[Server]:
    with serve(cwd=tls_root) as s:
        yield s


@pytest.fixture(scope="module")
def cafile(tls_files: tuple[Path, Path]) -> Path:
    return tls_files[0]


@pytest.mark.parametrize("present", ["key.pem", "cert.pem"])
def test_I1_tls_needs_both_files(
    tmp_path: Path, tls_files: tuple[Path, Path], present: str
) -> None:
    src = dict(zip(("cert.pem", "key.pem"), tls_files, strict=True))
    shutil.copyfile(src[present], tmp_path / present)
    res = run(["-version"], cwd=tmp_path)
    missing = "cert" if present == "key.pem" else "key"
    tls_lines = [m for m in res.messages() if m.startswith("TLS ")]
    assert tls_lines == [f"TLS {missing} file not found: {missing}.pem - disabling TLS"]


def test_I1_only_key_serves_plain_http(tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    shutil.copyfile(tls_files[1], tmp_path / "key.pem")
    with serve(cwd=tmp_path) as srv:
        msgs = srv.messages()
        assert "TLS cert file not found: cert.pem - disabling TLS" in msgs
        assert f"using TCP ports HTTP={srv.addr} HTTPS={srv.https_addr} TLS=false" in msgs
        assert msgs[-1] == f"serving HTTP on TCP {srv.addr}"
        assert http(srv, "GET", "/").status == 200


def test_I1_custom_key_and_cert_paths(
    tmp_path: Path, tls_files: tuple[Path, Path], cafile: Path
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    shutil.copyfile(tls_files[0], keys / "c2.pem")
    shutil.copyfile(tls_files[1], keys / "k2.pem")
    args = ["-key", str(keys / "k2.pem"), "-cert", str(keys / "c2.pem")]
    with serve(args, cwd=cwd) as srv:
        assert srv.messages()[-1] == f"serving HTTPS on TCP {srv.https_addr}"
        with tls_conn(srv, cafile) as conn:
            assert conn.request("GET", "/", host="localhost").status == 200


def test_I2_main_mux_served_over_tls(tls_srv: Server, cafile: Path, tls_root: Path) -> None:
    host = f"127.0.0.1:{tls_srv.https_port}"
    with tls_conn(tls_srv, cafile) as conn:
        assert getattr(conn.sock, "version")() == "TLSv1.3"  # noqa: B009
        page = conn.request("GET", "/", host=host)
        static = conn.request("GET", "/www/hello.txt", host=host)
        cert = conn.request("GET", "/www/cert.pem", host=host)
    assert page.status == 200
    assert f"\tRequest method=GET host={host} path=[/] query=[]<br>\n" in page.text
    assert page_field(page.body, "Listen") == f"HTTP={tls_srv.addr} HTTPS={tls_srv.https_addr}"
    assert (static.status, static.body) == (200, b"hello\n")
    assert (cert.status, cert.body) == (200, (tls_root / "cert.pem").read_bytes())


def test_I2_I3_default_ports_in_private_netns(tls_dir: Path, cafile: Path) -> None:
    with Server(cwd=tls_dir, netns=True).start() as srv:
        msgs = srv.messages()
        assert msgs[-3:] == [
            "using TCP ports HTTP=:8080 HTTPS=:8443 TLS=true",
            "installing redirect from HTTP=:8080 to HTTPS=8443",
            "serving HTTPS on TCP :8443",
        ]
        with RawConn(srv.connect(8080)) as conn:
            resp = conn.request("GET", "/p?q=1", host="127.0.0.1:8080")
        assert (resp.status, resp.header("Location")) == (302, "https://127.0.0.1:8443/p?q=1")
        with tls_conn(srv, cafile, port=8443) as conn:
            page = conn.request("GET", "/", host="127.0.0.1:8443")
        assert page_field(page.body, "Listen") == "HTTP=:8080 HTTPS=:8443"
        assert "\tRequest method=GET host=127.0.0.1:8443 path=[/] query=[]<br>\n" in page.text


def test_I3_equal_ports_mean_no_http_listener(tls_dir: Path, cafile: Path) -> None:
    with Server(["-addr", ":8443", "-httpsAddr", ":8443"], cwd=tls_dir, netns=True).start() as srv:
        msgs = srv.messages()
        assert not any(m.startswith("installing redirect") for m in msgs)
        assert msgs[-2:] == [
            "using TCP ports HTTP=:8443 HTTPS=:8443 TLS=true",
            "serving HTTPS on TCP :8443",
        ]
        with pytest.raises(ConnectionRefusedError):
            srv.connect(8080).close()
        with tls_conn(srv, cafile, port=8443) as conn:
            assert conn.request("GET", "/", host="localhost").status == 200


def test_I4_redirect_exact(tls_srv: Server) -> None:
    q = tls_srv.https_port
    resp = http(tls_srv, "GET", "/some/path?q=1")
    location = f"https://127.0.0.1:{q}/some/path?q=1"
    body = f'<a href="{location}">Found</a>.\n\n'.encode()
    assert (resp.version, resp.status, resp.reason) == ("HTTP/1.1", 302, "Found")
    assert sorted(resp.names()) == ["Content-Length", "Content-Type", "Date", "Location"]
    assert resp.header("Location") == location
    assert resp.header("Content-Type") == "text/html; charset=utf-8"
    assert resp.header("Content-Length") == str(len(body))
    assert re.fullmatch(HTTP_DATE, resp.header("Date") or "")
    assert resp.body == body


def test_I4_redirect_any_method(tls_srv: Server) -> None:
    q = tls_srv.https_port
    with open_conn(tls_srv) as conn:
        conn.send(
            b"HEAD /h HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            b"POST /p HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabc"
            b"BREW /b?x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        head = conn.read_response("HEAD")
        post = conn.read_response("POST")
        brew = conn.read_response("BREW")
    assert (head.status, head.header("Location")) == (302, f"https://127.0.0.1:{q}/h")
    assert head.header("Content-Type") == "text/html; charset=utf-8"
    assert (post.status, post.header("Location")) == (302, f"https://127.0.0.1:{q}/p")
    assert post.header("Content-Type") is None
    assert (post.header("Content-Length"), post.body) == ("0", b"")
    assert (brew.status, brew.header("Location")) == (302, f"https://127.0.0.1:{q}/b?x")


@pytest.mark.parametrize(
    ("host", "target", "location"),
    [
        ("example.test", "/", "https://example.test:{q}/"),
        ("example.test:1234", "/a", "https://example.test:{q}/a"),
        ("127.0.0.1:{p}", "/x%20y?z=%41", "https://127.0.0.1:{q}/x%20y?z=%41"),
    ],
)
def test_I4_location_uses_host_name_and_https_port(
    tls_srv: Server, host: str, target: str, location: str
) -> None:
    p, q = tls_srv.port, tls_srv.https_port
    resp = http(tls_srv, "GET", target, host=host.format(p=p))
    assert (resp.status, resp.header("Location")) == (302, location.format(q=q))


@pytest.mark.parametrize("host", ["[::1]:{p}", "[::1]"])
def test_dev4_ipv6_redirect_location(tls_srv: Server, host: str) -> None:
    p, q = tls_srv.port, tls_srv.https_port
    resp = http(tls_srv, "GET", "/v6", host=host.format(p=p))
    assert (resp.status, resp.header("Location")) == (302, f"https://[::1]:{q}/v6")


def test_I4_redirects_not_counted_or_logged(tls_dir: Path, cafile: Path) -> None:
    with serve(cwd=tls_dir) as srv:
        start = len(srv.lines())
        for target in ("/", "/a", "/www/", "/www/cert.pem", "/b?x=1", "/c", "/d"):
            assert http(srv, "GET", target).status == 302
        with tls_conn(srv, cafile) as conn:
            page = conn.request("GET", "/", host="localhost").body
        assert requests_count(page) == 1
        srv.wait_for_log("^rootHandler: req=1 from=", start=start)
        # The first line after start-up is the HTTPS request's: redirects log nothing.
        assert srv.messages()[start].startswith("rootHandler: req=1 from="), srv.messages()


def test_H2_tls_redirect_and_page_close_without_keepalive(tls_dir: Path, cafile: Path) -> None:
    with serve(["-disableKeepalive"], cwd=tls_dir) as srv:
        with open_conn(srv) as conn:
            resp = conn.request("GET", "/r")
            assert resp.status == 302
            assert resp.header_all("Connection") == ["close"]
            assert conn.closed_by_peer()
        with tls_conn(srv, cafile) as conn:
            resp = conn.request("GET", "/", host="localhost")
            assert resp.status == 200
            assert resp.header_all("Connection") == ["close"]
            assert conn.closed_by_peer()


def test_I5_plain_http_to_https_port(tls_srv: Server) -> None:
    start = len(tls_srv.lines())
    with open_conn(tls_srv, tls_srv.https_port) as conn:
        me = conn.local_addr
        conn.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        raw = conn.read_all()
    assert (
        raw == b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    )
    tls_srv.wait_for_log(
        "^"
        + re.escape(
            f"http: TLS handshake error from {me}: client sent an HTTP request to an HTTPS server"
        )
        + "$",
        start=start,
    )


def test_I6_unparsable_key_and_cert_exit_1(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_bytes(b"not a certificate\n")
    (tmp_path / "key.pem").write_bytes(b"not a key\n")
    p, q = two_ports()
    addr, https_addr = f"127.0.0.1:{p}", f"127.0.0.1:{q}"
    args = ["-addr", addr, "-httpsAddr", https_addr]
    with Server(args, cwd=tmp_path).start(ready=False) as srv:
        assert srv.wait() == 1
        msgs = srv.messages()
        assert f"serving HTTPS on TCP {https_addr}" in msgs
        assert msgs[-1] == (
            f"listenAndServeTLS: {https_addr}: "
            "tls: failed to find any PEM data in certificate input"
        )


# --- deviation 2: the TLS key file is never served -------------------------------------------


def test_dev2_key_file_is_403_under_www(tls_srv: Server, cafile: Path, tls_root: Path) -> None:
    key = (tls_root / "key.pem").read_bytes()
    with tls_conn(tls_srv, cafile) as conn:
        for target in ("/www/key.pem", "/www/%6bey.pem", "/www/alias.pem", "/www/./key.pem"):
            resp = conn.request("GET", target, host="localhost")
            if target == "/www/./key.pem":  # mux-cleaned first
                assert (resp.status, resp.header("Location")) == (301, "/www/key.pem")
                continue
            assert (resp.status, resp.body) == (403, b"403 Forbidden\n"), target
            assert key not in resp.body
        cert = conn.request("GET", "/www/cert.pem", host="localhost")
        assert cert.status == 200


def test_dev2_configured_key_path_in_subdir(
    tmp_path: Path, tls_files: tuple[Path, Path], cafile: Path
) -> None:
    (tmp_path / "sub").mkdir()
    shutil.copyfile(tls_files[0], tmp_path / "sub" / "c.pem")
    shutil.copyfile(tls_files[1], tmp_path / "sub" / "k.pem")
    with serve(["-key", "sub/k.pem", "-cert", "sub/c.pem"], cwd=tmp_path) as srv:
        with tls_conn(srv, cafile) as conn:
            resp = conn.request("GET", "/www/sub/k.pem", host="localhost")
            assert (resp.status, resp.body) == (403, b"403 Forbidden\n")
            assert conn.request("GET", "/www/sub/c.pem", host="localhost").status == 200
        # Also over the plain-HTTP port: it only redirects.
        assert http(srv, "GET", "/www/sub/k.pem").status == 302


# --- deviation 7: HTTP/1.1 over TLS is required, h2 optional ----------------------------------


@pytest.mark.parametrize("alpn", [None, ("http/1.1",), ("h2", "http/1.1")], ids=str)
def test_dev7_http11_over_tls(tls_srv: Server, cafile: Path, alpn: tuple[str, ...] | None) -> None:
    if alpn == ("h2", "http/1.1"):
        # Whatever the server picks must be one we offered; HTTP/1.1 must be spoken when
        # selected. (curl below exercises h2 end to end when the server offers it.)
        with tls_conn(tls_srv, cafile, alpn=alpn) as conn:
            chosen = getattr(conn.sock, "selected_alpn_protocol")()  # noqa: B009
            assert chosen in {"h2", "http/1.1", None}
            if chosen != "h2":
                assert conn.request("GET", "/", host="localhost").status == 200
        return
    with tls_conn(tls_srv, cafile, alpn=alpn) as conn:
        chosen = getattr(conn.sock, "selected_alpn_protocol")()  # noqa: B009
        assert chosen in {"http/1.1", None}
        resp = conn.request("GET", "/", host="localhost")
        assert (resp.version, resp.status) == ("HTTP/1.1", 200)


@pytest.mark.parametrize("mode", ["--http1.1", "--http2"])
def test_dev7_curl_over_tls(tls_srv: Server, cafile: Path, mode: str) -> None:
    q = tls_srv.https_port
    res = subprocess.run(
        [
            "curl", "-sS", mode, "--cacert", str(cafile), "--resolve", f"localhost:{q}:127.0.0.1",
            "-o", "-", "-w", "\n%{http_version} %{http_code}", f"https://localhost:{q}/c",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )  # fmt: skip
    body, _, status = res.stdout.rpartition("\n")
    version, code = status.split()
    assert code == "200"
    assert version == "1.1" if mode == "--http1.1" else version in {"1.1", "2"}
    assert "Path not found: [/c]<br>" in body
