"""Multi-platform builds through the pipeline's freezer seam (fast tier: no freezer, no tools).

A fake freezer hands out one executable per platform with different bytes, so each sink's
output shows which platform's content went where. The settings side (``--platform``,
``[tool.scratchpack] platforms``) is checked through the CLI with the pipeline stopped at its
entry. The real tools read real builds' outputs in test_multiplatform_e2e.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from scratchpack import _types, cli, config, pipeline
from scratchpack.errors import ImageError, ProjectError, ScratchpackError
from scratchpack.freeze import FreezeSpec, FrozenApp
from scratchpack.oci.descriptor import Platform
from scratchpack.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from scratchpack.oci.validate import CheckedManifest, validate_layout, validate_tarball
from tests._fixtures import BASE, write_project

AMD64, ARM64 = Platform("linux", "amd64"), Platform("linux", "arm64")
HOST = pipeline.host_platform()
MACHINES = {AMD64: 62, ARM64: 183}  # ELF e_machine


def elf_header(machine: int) -> bytes:
    """A 64-byte ELF64 header with no program headers: enough for the builder's ELF checks."""
    return b"\x7fELF\x02\x01\x01" + bytes(11) + machine.to_bytes(2, "little") + bytes(44)


class FakeFreezer:
    """The freezer seam: one small executable per platform, and the specs it was asked for."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.specs: list[FreezeSpec] = []

    def __call__(self, spec: FreezeSpec) -> FrozenApp:
        self.specs.append(spec)
        target = spec.platform or HOST
        data = elf_header(MACHINES[target]) + f"executable for {target}\n".encode()
        path = self.directory / str(target).replace("/", "-")
        path.write_bytes(data)
        project = spec.project or config.read_project(spec.project_dir)
        return FrozenApp(
            path=path,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            project=project,
            distributions=(),
            python_version="3.11.2",
            cached=False,
            runtime="static",
        )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path, BASE + '[tool.scratchpack]\nentrypoint = "demo:main"\n')


@pytest.fixture
def freezer(tmp_path: Path) -> FakeFreezer:
    d = tmp_path / "frozen"
    d.mkdir()
    return FakeFreezer(d)


def _options(project: Path, out: Path, **kw: object) -> pipeline.BuildOptions:
    out.mkdir(parents=True, exist_ok=True)
    spec = FreezeSpec(project_dir=project, project=config.read_project(project))
    defaults: dict[str, object] = {
        "tarball": out / "app.tar",
        "oci_layout": out / "layout",
        "tags": ("demo:1.0",),
    }
    return pipeline.BuildOptions(freeze=spec, **{**defaults, **kw})  # type: ignore[arg-type]


def _app_bytes(layout: Path, manifest: CheckedManifest) -> bytes:
    """The /app file of an image, read from the layout's layer blob."""
    layer = manifest.manifest["layers"][0]["digest"].split(":")[1]
    with (
        gzip.open(layout / "blobs" / "sha256" / layer) as gz,
        tarfile.open(fileobj=io.BytesIO(gz.read())) as tar,
    ):
        member = tar.extractfile("app")
        assert member is not None
        return member.read()


def test_two_platforms_give_an_index_of_two_images_each_with_its_executable(
    project, freezer, tmp_path
):
    out = tmp_path / "out"
    result = pipeline.build(_options(project, out, platforms=(ARM64, AMD64)), freezer=freezer)
    assert [s.platform for s in freezer.specs] == [AMD64, ARM64]  # PLATFORMS order
    assert {replace(s, platform=None) for s in freezer.specs} == {
        replace(freezer.specs[0], platform=None)
    }
    top, *sboms = validate_layout(out / "layout")
    assert (top.media_type, top.digest, top.ref_name) == (OCI_INDEX, result.image_digest, "1.0")
    assert [c.platform for c in top.children] == [AMD64, ARM64]
    for child in top.children:
        assert child.media_type == OCI_MANIFEST
        assert (
            child.config is not None and child.config["architecture"] == child.platform.architecture
        )
        assert child.platform is not None
        machine = MACHINES[child.platform]
        assert _app_bytes(out / "layout", child) == elf_header(machine) + (
            f"executable for {child.platform}\n".encode()
        )
    # the index says what every image says
    index = json.loads((out / "layout" / "blobs" / "sha256" / top.digest.hex).read_bytes())
    assert index["annotations"]["org.opencontainers.image.title"] == "demo"
    # one SBOM per image: an artifact in the layout, a file beside each output
    assert [s.manifest["subject"]["digest"] for s in sboms] == [str(c.digest) for c in top.children]
    assert sorted(p.name for p in out.iterdir()) == [
        "app.tar",
        "app.tar.linux-amd64.spdx.json",
        "app.tar.linux-arm64.spdx.json",
        "layout",
        "layout.linux-amd64.spdx.json",
        "layout.linux-arm64.spdx.json",
    ]
    for child in top.children:
        doc = json.loads(
            (out / f"app.tar.{str(child.platform).replace('/', '-')}.spdx.json").read_text()
        )
        assert str(child.digest) in json.dumps(doc)
    # the tarball: the same index, and docker load gets the host's image
    tar = validate_tarball(out / "app.tar")
    assert tar.image.digest == result.image_digest
    assert tar.docker_image is not None and tar.docker_image.platform == HOST
    # the result holds values; the report, the same as strings
    assert [p.platform for p in result.platforms] == [AMD64, ARM64]
    report = result.to_json()
    assert report["image_digest"] == str(top.digest)
    assert [p["platform"] for p in report["platforms"]] == ["linux/amd64", "linux/arm64"]
    assert [p["image_digest"] for p in report["platforms"]] == [str(c.digest) for c in top.children]
    host_sha = next(
        p["executable_sha256"] for p in report["platforms"] if p["platform"] == str(HOST)
    )
    assert report["executable_sha256"] == host_sha
    assert {o["digest"] for o in report["outputs"]} == {str(top.digest)}


def test_multi_platform_outputs_are_byte_reproducible(project, freezer, tmp_path):
    def build(n: int) -> dict[str, bytes]:
        out = tmp_path / f"out{n}"
        pipeline.build(_options(project, out, platforms=(AMD64, ARM64)), freezer=freezer)
        return {
            str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
        }

    first, second = build(1), build(2)
    assert first == second
    assert "app.tar" in first and "layout/index.json" in first


def test_one_platform_is_todays_single_image(project, freezer, tmp_path):
    """--platform with only the host's platform changes nothing: the same bytes as no flag."""
    plain = pipeline.build(_options(project, tmp_path / "a"), freezer=freezer)
    chosen = pipeline.build(_options(project, tmp_path / "b", platforms=(HOST,)), freezer=freezer)
    assert plain.image_digest == chosen.image_digest
    assert "platforms" not in plain.to_json()
    for name in ("app.tar", "app.tar.spdx.json", "layout/index.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    (top,) = [e for e in validate_layout(tmp_path / "a" / "layout") if e.ref_name]
    assert top.media_type == OCI_MANIFEST and top.digest == plain.image_digest


def test_a_foreign_single_platform_is_one_image_for_that_platform(project, freezer, tmp_path):
    other = ARM64 if HOST == AMD64 else AMD64
    result = pipeline.build(_options(project, tmp_path, platforms=(other,)), freezer=freezer)
    checked = validate_tarball(tmp_path / "app.tar")
    assert checked.image.media_type == OCI_MANIFEST and checked.image.digest == result.image_digest
    assert checked.image.config is not None
    assert f"linux/{checked.image.config['architecture']}" == str(other)


def test_project_platforms_apply_and_the_options_override_them(tmp_path, freezer):
    project = write_project(
        tmp_path,
        BASE + '[tool.scratchpack]\nentrypoint = "demo:main"\n'
        'platforms = ["linux/arm64", "linux/amd64"]\n',
    )
    assert config.read_project(project).platforms == (AMD64, ARM64)
    pipeline.build(_options(project, tmp_path / "a"), freezer=freezer)
    assert [s.platform for s in freezer.specs] == [AMD64, ARM64]
    freezer.specs.clear()
    pipeline.build(_options(project, tmp_path / "b", platforms=(ARM64,)), freezer=freezer)
    assert [s.platform for s in freezer.specs] == [ARM64]


# --- the platform names -----------------------------------------------------------------------


def test_parse_platforms_orders_dedupes_and_splits_commas():
    parsed = config.parse_platforms(["linux/arm64, linux/amd64", " LINUX/ARM64 "])
    assert parsed == (AMD64, ARM64) and all(isinstance(p, Platform) for p in parsed)
    assert config.parse_platforms(["linux/arm64"]) == (ARM64,)
    assert config.parse_platforms([]) == ()
    assert HOST in config.PLATFORMS  # the machines these tests run on


def test_platform_values_are_ordered_deduped_and_checked_once_more_in_the_options():
    """BuildOptions takes values (an API caller's too): the same set gives the same order."""
    assert config.check_platforms([ARM64, AMD64, ARM64]) == (AMD64, ARM64)
    spec = FreezeSpec(project_dir=Path("."))
    options = pipeline.BuildOptions(freeze=spec, tarball=Path("x.tar"), platforms=(ARM64, AMD64))
    assert options.platforms == (AMD64, ARM64)
    for bad in (Platform("linux", "arm64", "v8"), Platform("linux", "386")):
        with pytest.raises(ScratchpackError, match=f"unsupported platform '{bad}'") as err:
            pipeline.BuildOptions(freeze=spec, tarball=Path("x.tar"), platforms=(AMD64, bad))
        assert "builds for linux/amd64, linux/arm64" in err.value.message


@pytest.mark.parametrize(
    "bad", ["linux/386", "windows/amd64", "amd64", "linux/arm64,", "", "linux/arm64/v8", "a/b/c/d"]
)
def test_unsupported_platforms_are_refused_with_the_supported_list(bad):
    with pytest.raises(ScratchpackError) as err:
        config.parse_platforms([bad])
    assert "linux/amd64, linux/arm64" in err.value.message and err.value.remedy == "platforms"
    assert "--platform linux/amd64,linux/arm64" in cli.render_error(err.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('["linux/s390x"]', "unsupported platform 'linux/s390x'"),
        ('"linux/amd64"', "must be a list of strings"),
    ],
)
def test_pyproject_platforms_are_validated(tmp_path, value, message):
    project = write_project(
        tmp_path, BASE + f'[tool.scratchpack]\nentrypoint = "a:b"\nplatforms = {value}\n'
    )
    with pytest.raises(ProjectError, match=message):
        config.read_project(project)


def test_host_platform_names_the_machine(monkeypatch):
    monkeypatch.setattr(_types.platform, "machine", lambda: "aarch64")
    assert pipeline.host_platform() == ARM64
    monkeypatch.setattr(_types.platform, "machine", lambda: "x86_64")
    assert pipeline.host_platform() == AMD64
    monkeypatch.setattr(_types.platform, "machine", lambda: "ppc64le")
    assert str(pipeline.host_platform()) == "linux/ppc64le"
    spec = FreezeSpec(project_dir=Path("."))
    with pytest.raises(ScratchpackError, match="unsupported platform 'linux/ppc64le'"):
        pipeline.build_platforms(pipeline.BuildOptions(freeze=spec, tarball=Path("x.tar")))


# --- the executable must be for the platform it is labelled with -------------------------------


@pytest.mark.parametrize(("machine", "platform"), [(62, AMD64), (183, ARM64)])
def test_freeze_for_platform_accepts_an_executable_for_the_platform(
    monkeypatch, freezer, project, tmp_path, machine, platform
):
    exe = tmp_path / "exe"
    exe.write_bytes(elf_header(machine))
    monkeypatch.setattr(pipeline, "freeze", lambda spec: replace(freezer(spec), path=exe))
    spec = FreezeSpec(project_dir=project, platform=platform)
    assert pipeline.freeze_for_platform(spec).path == exe


@pytest.mark.parametrize(
    ("data", "found"),
    [(elf_header(62), "is for amd64, not arm64"), (elf_header(3), "is for 386, not arm64")],
)
def test_freeze_for_platform_refuses_an_executable_for_another_machine(
    monkeypatch, freezer, project, tmp_path, data, found
):
    exe = tmp_path / "exe"
    exe.write_bytes(data)
    monkeypatch.setattr(pipeline, "freeze", lambda spec: replace(freezer(spec), path=exe))
    with pytest.raises(ImageError, match=f"frozen for linux/arm64 {found}") as err:
        pipeline.freeze_for_platform(FreezeSpec(project_dir=project, platform=ARM64))
    assert "--runtime static" in cli.render_error(err.value)


def test_a_script_is_not_an_executable_for_any_platform(monkeypatch, freezer, project, tmp_path):
    exe = tmp_path / "exe"
    exe.write_bytes(b"#!/bin/sh\n" + bytes(64))
    monkeypatch.setattr(pipeline, "freeze", lambda spec: replace(freezer(spec), path=exe))
    with pytest.raises(ImageError, match="is not an ELF executable"):
        pipeline.freeze_for_platform(FreezeSpec(project_dir=project))


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_platform_flag_reaches_the_options_and_overrides_the_project(
    tmp_path, monkeypatch, capsys
):
    project = write_project(
        tmp_path,
        BASE + '[tool.scratchpack]\nentrypoint = "demo:main"\nplatforms = ["linux/arm64"]\n',
    )
    seen: list[pipeline.BuildOptions] = []

    def fake_build(options: pipeline.BuildOptions) -> pipeline.BuildResult:
        seen.append(options)
        raise ImageError("stop here")

    monkeypatch.setattr(pipeline, "build", fake_build)
    argv = ["build", str(project), "--tarball", str(tmp_path / "t.tar")]
    assert cli.main(argv) == 1
    assert cli.main([*argv, "--platform", "linux/arm64,linux/amd64"]) == 1
    assert cli.main([*argv, "--platform", "linux/amd64", "--platform", "linux/arm64"]) == 1
    assert [pipeline.build_platforms(o) for o in seen] == [(ARM64,), (AMD64, ARM64), (AMD64, ARM64)]
    capsys.readouterr()
    assert cli.main([*argv, "--platform", "linux/riscv64"]) == 1
    err = capsys.readouterr().err
    assert "error: unsupported platform 'linux/riscv64': scratchpack builds for " in err
    assert "builds for linux/amd64, linux/arm64" in err
    assert "hint: pass --platform" in err and len(seen) == 3  # refused before the build


def test_cli_run_builds_every_platform_and_says_it_runs_the_hosts(tmp_path, monkeypatch, capsys):
    from scratchpack import engine

    project = write_project(tmp_path, BASE + '[tool.scratchpack]\nentrypoint = "demo:main"\n')
    calls: list[dict[str, object]] = []

    def fake_build_for_run(target: Path, **kw: object) -> pipeline.RunBuild:
        calls.append(kw)
        chosen = pipeline.build_platforms(
            pipeline.BuildOptions(
                freeze=FreezeSpec(project_dir=target),
                tarball=tmp_path / "t.tar",
                platforms=kw["platforms"],  # type: ignore[arg-type]
            )
        )
        ran = HOST if HOST in chosen else chosen[0]
        return pipeline.RunBuild(tmp_path / "t.tar", ("demo:latest",), chosen, ran)

    monkeypatch.setattr(pipeline, "build_for_run", fake_build_for_run)
    monkeypatch.setattr(engine, "run_tarball", lambda tarball, **kw: 0)
    assert cli.main(["run", str(project), "--platform", "linux/amd64,linux/arm64"]) == 0
    assert calls[-1]["platforms"] == (AMD64, ARM64)
    err = capsys.readouterr().err
    assert f"built linux/amd64, linux/arm64; running the {HOST} image (this machine's)" in err
    other = ARM64 if HOST == AMD64 else AMD64
    assert cli.main(["run", str(project), "--platform", str(other)]) == 0
    assert (
        f"running the {other} image on this {HOST} machine: it needs emulation"
        in capsys.readouterr().err
    )
    assert calls[-1]["platforms"] == (other,)
    tarball = tmp_path / "given.tar"
    tarball.write_bytes(b"")
    with pytest.raises(SystemExit):
        cli.main(["run", str(tarball), "--platform", "linux/amd64"])
    assert "give a project directory" in capsys.readouterr().err


def test_sbom_files_of_several_platforms_are_checked_as_outputs(project, tmp_path):
    """The per-platform SBOM names are outputs too: one that is an input is refused up front."""
    ca = tmp_path / "app.tar.linux-arm64.spdx.json"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    options = replace(
        _options(project, tmp_path, platforms=(AMD64, ARM64), oci_layout=None),
        image=pipeline.ImageOptions(ca_certs=str(ca)),
    )
    with pytest.raises(ScratchpackError, match="spdx"):
        pipeline.build(options, freezer=lambda spec: pytest.fail("froze before checking"))


def test_platform_value_round_trips():
    assert [Platform.parse(str(p)) for p in config.PLATFORMS] == list(config.PLATFORMS)
    assert [str(p) for p in config.PLATFORMS] == ["linux/amd64", "linux/arm64"]  # the messages'


def test_build_for_run_loads_the_hosts_image_else_the_first(
    project, freezer, tmp_path, monkeypatch
):
    monkeypatch.setattr(pipeline, "_run_cache_dir", lambda: tmp_path)
    both = pipeline.build_for_run(project, platforms=(ARM64, AMD64, ARM64), freezer=freezer)
    assert (both.platforms, both.platform) == ((AMD64, ARM64), HOST)
    other = ARM64 if HOST == AMD64 else AMD64
    foreign = pipeline.build_for_run(project, platforms=(other,), freezer=freezer)
    assert (foreign.platforms, foreign.platform) == ((other,), other)
    assert pipeline.build_for_run(project, freezer=freezer).platforms == (HOST,)
