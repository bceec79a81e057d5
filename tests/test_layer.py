from __future__ import annotations

import gc
import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from scratchpack.errors import ImageError
from scratchpack.oci.digest import Digest
from scratchpack.oci.layer import (
    FileEntry,
    layer_from_bytes,
    layer_from_entries,
    layer_from_file,
)
from scratchpack.oci.mediatypes import OCI_LAYER_GZIP, OCI_LAYER_TAR


def _entries(exe: Path) -> list[FileEntry]:
    return [
        FileEntry("tmp", 0o1777, "dir"),
        FileEntry("/app", 0o555, source=exe),
        FileEntry("etc/passwd", 0o644, data=b"root:x:0:0::/:/sbin/nologin\n"),
        FileEntry("etc/ssl/certs/ca.crt", 0o444, data=b"cert"),
        FileEntry("bin/sh", 0o777, "symlink", linkname="/app"),
        FileEntry("home/u", 0o700, "dir", uid=1000, gid=1000),
    ]


def _blob(layer) -> bytes:
    with layer.opener() as f:
        return f.read()


def _members(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob)), mode="r:") as tar:
        return tar.getmembers()


@pytest.fixture
def exe(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "server"
    path.parent.mkdir()
    path.write_bytes(os.urandom(300_000) + b"tail")
    return path


def test_digest_and_diff_id_are_the_hashes_of_the_blob_and_the_tar(exe, tmp_path):
    layer = layer_from_entries(_entries(exe), mtime=0, workdir=tmp_path / "w")
    blob = _blob(layer)
    assert layer.size == len(blob)
    assert layer.digest == Digest("sha256", hashlib.sha256(blob).hexdigest())
    assert layer.diff_id == Digest("sha256", hashlib.sha256(gzip.decompress(blob)).hexdigest())
    assert layer.media_type == OCI_LAYER_GZIP
    assert layer.descriptor().to_json() == {
        "mediaType": OCI_LAYER_GZIP,
        "digest": str(layer.digest),
        "size": layer.size,
    }
    # Content-addressed file in the workdir, reopened fresh on every call.
    assert (tmp_path / "w" / f"sha256-{layer.digest.hex}.tar.gz").is_file()
    assert _blob(layer) == blob
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [
        f"sha256-{layer.digest.hex}.tar.gz"
    ]


def test_tar_is_sorted_with_parents_first_and_fixed_metadata(exe, tmp_path):
    layer = layer_from_entries(_entries(exe), mtime=1_700_000_000, workdir=tmp_path)
    members = _members(_blob(layer))
    names = [m.name for m in members]
    assert names == [
        "app",
        "bin",
        "bin/sh",
        "etc",
        "etc/passwd",
        "etc/ssl",
        "etc/ssl/certs",
        "etc/ssl/certs/ca.crt",
        "home",
        "home/u",
        "tmp",
    ]
    by_name = {m.name: m for m in members}
    assert {m.mtime for m in members} == {1_700_000_000}
    assert {(m.uname, m.gname) for m in members} == {("", "")}
    assert {(m.devmajor, m.devminor) for m in members} == {(0, 0)}
    assert by_name["app"].mode == 0o555 and by_name["app"].isfile()
    assert by_name["app"].size == exe.stat().st_size
    assert by_name["tmp"].mode == 0o1777 and by_name["tmp"].isdir()
    assert by_name["etc/ssl"].mode == 0o755 and by_name["etc/ssl"].isdir()  # added parent
    assert by_name["bin/sh"].issym() and by_name["bin/sh"].linkname == "/app"
    assert (by_name["home/u"].uid, by_name["home/u"].gid) == (1000, 1000)
    assert (by_name["app"].uid, by_name["app"].gid) == (0, 0)


def test_gzip_header_has_no_time_and_no_file_name(exe, tmp_path):
    blob = _blob(layer_from_entries(_entries(exe), mtime=0, workdir=tmp_path))
    assert blob[:3] == b"\x1f\x8b\x08"
    assert blob[3] == 0  # FLG: no FNAME, no FCOMMENT, no FEXTRA
    assert blob[4:8] == b"\0\0\0\0"  # MTIME


def test_same_entries_give_the_same_bytes_whatever_the_dir_umask_or_source_times(exe, tmp_path):
    first = layer_from_entries(_entries(exe), mtime=0, workdir=tmp_path / "a")
    copy = tmp_path / "elsewhere" / "deeper" / "server"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(exe.read_bytes())
    os.chmod(copy, 0o700)
    os.utime(copy, (123456789, 123456789))
    old = os.umask(0o077)
    try:
        second = layer_from_entries(list(reversed(_entries(copy))), mtime=0, workdir=tmp_path / "b")
    finally:
        os.umask(old)
    assert (second.digest, second.diff_id, second.size) == (
        first.digest,
        first.diff_id,
        first.size,
    )
    assert _blob(second) == _blob(first)


def test_mtime_and_level_are_part_of_the_identity(exe, tmp_path):
    base = layer_from_entries(_entries(exe), mtime=0, workdir=tmp_path)
    later = layer_from_entries(_entries(exe), mtime=1, workdir=tmp_path)
    level9 = layer_from_entries(_entries(exe), mtime=0, workdir=tmp_path, compresslevel=9)
    assert later.diff_id != base.diff_id
    assert level9.diff_id == base.diff_id
    assert level9.digest != base.digest


def test_long_and_non_ascii_names_use_pax_records_deterministically(tmp_path):
    long = "d/" + "x" * 150 + "/é-ü"
    entries = [FileEntry(long, 0o644, data=b"hi")]
    a = layer_from_entries(entries, mtime=0, workdir=tmp_path)
    b = layer_from_entries(entries, mtime=0, workdir=tmp_path / "again")
    assert a.digest == b.digest
    names = [m.name for m in _members(_blob(a))]
    assert names == ["d", "d/" + "x" * 150, long]
    raw = gzip.decompress(_blob(a))
    assert b"mtime=" not in raw and b"atime=" not in raw  # no clock in the PAX records


def test_temporary_blob_lives_as_long_as_the_layer(exe):
    layer = layer_from_entries(_entries(exe), mtime=0)
    path = Path(layer.opener.path)  # type: ignore[attr-defined]
    assert path.is_file()
    directory = path.parent
    del layer
    gc.collect()
    assert not path.exists()
    assert not directory.exists()


def test_layer_from_bytes_and_file_agree_with_the_builder(exe, tmp_path):
    built = layer_from_entries(_entries(exe), mtime=0, workdir=tmp_path)
    blob = _blob(built)
    from_bytes = layer_from_bytes(blob)
    blob_file = tmp_path / "copy.tar.gz"
    blob_file.write_bytes(blob)
    from_file = layer_from_file(blob_file)
    for layer in (from_bytes, from_file):
        assert (layer.digest, layer.diff_id, layer.size) == (
            built.digest,
            built.diff_id,
            built.size,
        )
        assert _blob(layer) == blob
    plain = gzip.decompress(blob)
    tar_layer = layer_from_bytes(plain, media_type=OCI_LAYER_TAR)
    assert tar_layer.digest == tar_layer.diff_id == built.diff_id


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([FileEntry("a", 0o644, data=b""), FileEntry("/a/", 0o644, data=b"")], "duplicate"),
        ([FileEntry("../etc/passwd", 0o644, data=b"")], "invalid layer path"),
        ([FileEntry("/", 0o755, "dir")], "invalid layer path"),
        ([FileEntry("a", 0o644, data=b""), FileEntry("a/b", 0o644, data=b"")], "not a directory"),
        ([FileEntry("a", 0o644)], "exactly one of"),
        ([FileEntry("a", 0o644, data=b"", source=Path("/x"))], "exactly one of"),
        ([FileEntry("a", 0o100644, data=b"")], "beyond"),
        ([FileEntry("l", 0o777, "symlink")], "linkname"),
        ([FileEntry("a", 0o644, data=b"", uid=-1)], "out of range"),
    ],
)
def test_bad_entries_are_rejected_with_a_reason(entries, message, tmp_path):
    with pytest.raises(ImageError, match=message):
        layer_from_entries(entries, mtime=0, workdir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no partial blob left behind


def test_missing_source_names_the_file_and_leaves_nothing(tmp_path):
    missing = tmp_path / "nope"
    work = tmp_path / "w"
    with pytest.raises(ImageError, match=r"cannot read .*nope for /app"):
        layer_from_entries([FileEntry("app", 0o555, source=missing)], mtime=0, workdir=work)
    assert list(work.iterdir()) == []


def test_negative_mtime_is_rejected(tmp_path):
    with pytest.raises(ImageError, match="mtime"):
        layer_from_entries([], mtime=-1, workdir=tmp_path)
