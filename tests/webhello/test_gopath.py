"""gopath.py against Go's own tables (src/path/path_test.go, net/http's cleanPath and escaping)."""

from __future__ import annotations

import pytest

from webhello.gopath import (
    clean_abs,
    clean_path,
    escape_path,
    go_base,
    go_clean,
    hex_escape_non_ascii,
)

# Go's cleantests.
CLEAN = [
    ("", "."),
    ("abc", "abc"),
    ("abc/def", "abc/def"),
    ("a/b/c", "a/b/c"),
    (".", "."),
    ("..", ".."),
    ("../..", "../.."),
    ("../../abc", "../../abc"),
    ("/abc", "/abc"),
    ("/", "/"),
    ("abc/", "abc"),
    ("abc/def/", "abc/def"),
    ("a/b/c/", "a/b/c"),
    ("./", "."),
    ("../", ".."),
    ("../../", "../.."),
    ("/abc/", "/abc"),
    ("abc//def//ghi", "abc/def/ghi"),
    ("//abc", "/abc"),
    ("///abc", "/abc"),
    ("//abc//", "/abc"),
    ("abc//", "abc"),
    ("abc/./def", "abc/def"),
    ("/./abc/def", "/abc/def"),
    ("abc/.", "abc"),
    ("abc/def/ghi/../jkl", "abc/def/jkl"),
    ("abc/def/../ghi/../jkl", "abc/jkl"),
    ("abc/def/..", "abc"),
    ("abc/def/../..", "."),
    ("/abc/def/../..", "/"),
    ("abc/def/../../..", ".."),
    ("/abc/def/../../..", "/"),
    ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
    ("abc/./../def", "def"),
    ("abc//./../def", "def"),
    ("abc/../../././../def", "../../def"),
]


@pytest.mark.parametrize(("path", "want"), CLEAN)
def test_go_clean(path: str, want: str):
    assert go_clean(path) == want


@pytest.mark.parametrize(("path", "want"), [(p, w) for p, w in CLEAN if p.startswith("/")])
def test_clean_abs_fast_path_agrees(path: str, want: str):
    assert clean_abs(path) == want


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("", "."),
        (".", "."),
        ("/.", "."),
        ("/", "/"),
        ("////", "/"),
        ("x/", "x"),
        ("abc", "abc"),
        ("abc/def", "def"),
        ("a/b/.x", ".x"),
        ("a/b/c.", "c."),
        ("a/b/c.x", "c.x"),
    ],
)
def test_go_base(path: str, want: str):
    assert go_base(path) == want


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("", "/"),
        ("a", "/a"),
        ("/www", "/www"),
        ("/a//b/", "/a/b/"),
        ("/a/../../b", "/b"),
        ("/www/./x", "/www/x"),
        ("/./", "/"),
        ("/www/../www/", "/www/"),
    ],
)
def test_servemux_clean_path_keeps_a_trailing_slash(path: str, want: str):
    assert clean_path(path) == want


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("plain-name_1.~txt", "plain-name_1.~txt"),
        ("a b", "a%20b"),
        ("a&b <c>.html", "a&b%20%3Cc%3E.html"),
        ("q?#%", "q%3F%23%25"),
        ("latin1-\xe9", "latin1-%E9"),
        ("c:d/e;f=g@h", "c:d/e;f=g@h"),
    ],
)
def test_escape_path_is_url_escaped_path(name: str, want: str):
    assert escape_path(name) == want


def test_redirect_location_escapes_only_non_ascii():
    assert hex_escape_non_ascii("/www/a b/\xe9?q=\xff") == "/www/a b/%E9?q=%FF"
    assert hex_escape_non_ascii("/plain") == "/plain"
