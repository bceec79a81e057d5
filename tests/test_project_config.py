"""scratchpack.config: pyproject.toml -> typed, validated settings, read once.

(tests/test_config.py is the image config, scratchpack.oci.config.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scratchpack.config import (
    FreezeSettings,
    ImageDefaults,
    ProjectConfig,
    parse_pyproject,
    project_config,
    public_url,
    read_project,
    source_date_epoch,
)
from scratchpack.errors import ProjectError, ScratchpackError
from tests._fixtures import BASE, FIXTURES, write_project


def test_read_project_webhello_style(tmp_path: Path) -> None:
    d = write_project(
        tmp_path,
        BASE
        + '[project.scripts]\ndemo = "demo.cli:main"\n'
        + '[project.urls]\nRepository = "https://example.invalid/demo"\n'
        + '[tool.scratchpack]\nentrypoint = "demo.__main__:main"\n'
        + 'ports = ["8080/tcp", "8443"]\nargs = ["-quota", "3"]\n'
        + 'exclude-modules = ["_decimal", "xml.dom"]\n',
    )
    info = read_project(d)
    assert info == ProjectConfig(
        name="demo",
        version="1.0",
        entrypoint="demo.__main__:main",
        source_url="https://example.invalid/demo",
        freeze=FreezeSettings(exclude_modules=("_decimal", "xml.dom")),
        image=ImageDefaults(ports=("8080/tcp", "8443/tcp"), args=("-quota", "3")),
        dependency_declaration="[]{}",
    )


def test_entrypoint_from_scripts_name_and_override(tmp_path: Path) -> None:
    d = write_project(
        tmp_path,
        BASE + '[project.scripts]\nrun-demo = "demo.cli:main"\nother = "demo.other:go"\n'
        '[tool.scratchpack]\nentrypoint = "run-demo"\n',
    )
    assert read_project(d).entrypoint == "demo.cli:main"
    assert read_project(d, "other").entrypoint == "demo.other:go"
    assert read_project(d, "demo.mod").entrypoint == "demo.mod"
    assert read_project(d, "demo.mod:obj.method").entrypoint == "demo.mod:obj.method"
    # not a [project.scripts] name: left for the build venv (a dependency's console script)
    assert read_project(d, "http").entrypoint == "http"
    assert read_project(d, "my-tool").entrypoint == "my-tool"


def test_single_script_is_the_default_entrypoint(tmp_path: Path) -> None:
    d = write_project(tmp_path, BASE + '[project.scripts]\ndemo = "demo.cli:main [extra]"\n')
    assert read_project(d).entrypoint == "demo.cli:main"


def test_fixture_projects_read() -> None:
    assert read_project(FIXTURES / "app_pure").entrypoint == "app_pure.cli:main"
    assert read_project(FIXTURES / "app_cext").entrypoint == "app_cext"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "does not exist"),
        ("not_a_project", "is not a Python project: it has no pyproject.toml"),
        ("no_entrypoint", "has no entry point"),
    ],
)
def test_project_errors(case: str, message: str) -> None:
    with pytest.raises(ProjectError, match=message) as err:
        read_project(FIXTURES / case)
    assert err.value.hint


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[project\n", "cannot read"),
        ("[tool.x]\na = 1\n", "no \\[project\\] table"),
        ('[project]\nname = "x"\n', "no version"),
        (BASE + '[tool.scratchpack]\nentrypoint = "not a module!"\n', "neither"),
        (BASE + '[tool.scratchpack]\nentrypoint = "m:f"\nports = ["http"]\n', "ports"),
        (BASE + '[tool.scratchpack]\nentrypoint = "m:f"\nports = ["70000"]\n', "ports"),
        (BASE + '[tool.scratchpack]\nentrypoint = "m:f"\nargs = "x"\n', "args"),
        (
            BASE + '[tool.scratchpack]\nentrypoint = "m:f"\nexclude-modules = ["a b"]\n',
            "exclude-modules",
        ),
        (BASE + '[project.scripts]\na = "m:f"\nb = "m:g"\n', "no entry point \\(scripts: a, b\\)"),
    ],
)
def test_invalid_pyproject(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ProjectError, match=message):
        read_project(write_project(tmp_path, body))


def test_dynamic_version_is_accepted(tmp_path: Path) -> None:
    d = write_project(
        tmp_path,
        '[project]\nname = "x"\ndynamic = ["version"]\n[tool.scratchpack]\nentrypoint = "x:main"\n',
    )
    assert read_project(d).version == ""


def test_no_entrypoint_hint_is_neutral_and_names_a_remedy(tmp_path: Path) -> None:
    with pytest.raises(ProjectError) as err:
        read_project(FIXTURES / "no_entrypoint")
    assert err.value.remedy == "entrypoint"
    assert "--" not in (err.value.hint or "")  # the CLI words the flag (cli.REMEDIES)


@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("https://github.com/me/app.git", "https://github.com/me/app.git"),
        ("https://user:token@github.com/me/app", "https://github.com/me/app"),
        ("git@github.com:me/app.git", "git@github.com:me/app.git"),
        ("/work/main", ""),
        ("../other", ""),
        ("https://example.invalid/app?token=s3cret#readme", "https://example.invalid/app"),
        ("ssh://git:pw@[::1]:2222/app.git", "ssh://[::1]:2222/app.git"),
        ("file:///srv/app", ""),
    ],
)
def test_public_url_drops_credentials_and_local_paths(url, public):
    assert public_url(url) == public


def test_project_urls_source_loses_userinfo_query_and_fragment() -> None:
    raw = (
        BASE
        + "[project.urls]\n"
        + 'Source = "https://bot:ghp_s3cret@example.invalid/me/demo?private_token=x#top"\n'
        + '[tool.scratchpack]\nentrypoint = "demo"\n'
    ).encode()
    assert parse_pyproject(raw).source_url == "https://example.invalid/me/demo"


def test_bytes_to_typed_values() -> None:
    raw = (
        BASE
        + 'dependencies = ["idna==3.10"]\n'
        + '[project.urls]\nHomepage = "https://example.invalid/home"\n'
        + '[build-system]\nrequires = ["setuptools"]\n'
        + '[tool.scratchpack]\nentrypoint = "demo"\nruntime = "static"\n'
        + 'include-modules = ["email.*"]\nports = ["053/udp"]\n'
    ).encode()
    cfg = parse_pyproject(raw)
    assert cfg.entrypoint == "demo"
    assert cfg.source_url == "https://example.invalid/home"
    assert cfg.freeze == FreezeSettings(runtime="static", include_modules=("email.*",))
    assert cfg.image == ImageDefaults(ports=("53/udp",))
    assert cfg.dependency_declaration == "['idna==3.10']{'requires': ['setuptools']}"
    assert parse_pyproject(raw, "other.mod:main").entrypoint == "other.mod:main"


def test_bad_toml_bytes_are_a_project_error() -> None:
    with pytest.raises(ProjectError, match=r"cannot read pyproject\.toml"):
        parse_pyproject(b"[project\n")
    with pytest.raises(ProjectError, match="cannot read"):
        parse_pyproject(b"\xff\xfe")


def test_overrides_win_and_exclusions_merge_sorted() -> None:
    cfg = parse_pyproject(
        (BASE + '[tool.scratchpack]\nentrypoint = "m:f"\nruntime = "static"\n'
         'exclude-modules = ["b", "a"]\n').encode()
    )  # fmt: skip
    assert cfg.freeze.exclude_modules == ("b", "a")  # as written
    same = cfg.with_overrides()
    assert same.freeze == FreezeSettings(runtime="static", exclude_modules=("a", "b"))
    both = cfg.with_overrides(runtime="pyinstaller", exclude_modules=("c", "a"))
    assert both.freeze.runtime == "pyinstaller"
    assert both.freeze.exclude_modules == ("a", "b", "c")
    assert both.image == cfg.image and both.entrypoint == cfg.entrypoint


def _info(tool: dict[str, object]) -> ProjectConfig:
    return project_config(
        {"project": {"name": "x", "version": "1"}, "tool": {"scratchpack": tool}}, "x:main"
    )


def test_include_modules_accepts_distribution_names() -> None:
    info = _info({"include-modules": ["opentelemetry-sdk", "PyYAML", "zope.interface"]})
    assert info.freeze.include_modules == ("opentelemetry-sdk", "PyYAML", "zope.interface")


def test_runtime_and_include_modules_from_pyproject() -> None:
    info = _info({"runtime": "static", "include-modules": ["encodings.cp1252", "email.*"]})
    assert info.freeze.runtime == "static"
    assert info.freeze.include_modules == ("encodings.cp1252", "email.*")
    assert info.freeze.strip_docstrings is False
    assert _info({"strip-docstrings": True}).freeze.strip_docstrings is True
    assert info.freeze.compress_start_modules is False
    assert _info({"compress-start-modules": True}).freeze.compress_start_modules is True


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        ({"runtime": "go"}, "must be 'pyinstaller' or 'static'"),
        ({"include-modules": ["not a module"]}, "is not a module name"),
        ({"include-modules": "json"}, "must be a list of strings"),
        ({"strip-docstrings": "yes"}, "strip-docstrings = 'yes': must be true or false"),
        ({"compress-start-modules": 1}, "compress-start-modules = 1: must be true or false"),
    ],
)
def test_bad_static_settings_are_project_errors(tool: dict[str, object], message: str) -> None:
    with pytest.raises(ProjectError, match=message):
        _info(tool)


def test_source_date_epoch_is_parsed_once_here() -> None:
    assert source_date_epoch({}) is None
    assert source_date_epoch({"SOURCE_DATE_EPOCH": " "}) is None
    assert source_date_epoch({"SOURCE_DATE_EPOCH": "0"}) == 0
    assert source_date_epoch({"SOURCE_DATE_EPOCH": " 1700000000\n"}) == 1700000000
    for bad in ("yesterday", "-5", "1.5", "1_000", "\u00b2"):
        with pytest.raises(ScratchpackError, match="is not a whole number of seconds") as err:
            source_date_epoch({"SOURCE_DATE_EPOCH": bad})
        assert err.value.hint
