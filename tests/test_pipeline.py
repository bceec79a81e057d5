"""Option validation in the pipeline: contradictions fail up front with actionable messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from scratchpack import cli, config, pipeline
from scratchpack.errors import ImageError, ScratchpackError
from scratchpack.freeze import FreezeSpec

SPEC = FreezeSpec(project_dir=Path("examples/webhello"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("appuser", config.UserSpec("appuser", 1000, 1000)),
        ("web:2000", config.UserSpec("web", 2000, 2000)),
        ("web:2000:3000", config.UserSpec("web", 2000, 3000)),
    ],
)
def test_parse_user(text, expected):
    assert config.parse_user(text) == expected


@pytest.mark.parametrize("text", ["root", "app:0", "Bad", "a:b", "a:70000", "", "x:1:2:3"])
def test_parse_user_rejects(text):
    with pytest.raises(ImageError) as err:
        config.parse_user(text)
    assert err.value.hint or "root" in str(err.value)


def test_build_needs_an_output():
    with pytest.raises(ScratchpackError, match="no output chosen") as err:
        pipeline.BuildOptions(freeze=SPEC)
    assert "--tarball" in cli.render_error(err.value)


def test_scratchpack_repo_alone_means_push():
    options = pipeline.BuildOptions(freeze=SPEC, repo_env="localhost:5000/me")
    assert options.push == ""


def test_push_without_repo_is_refused():
    with pytest.raises(ScratchpackError, match="SCRATCHPACK_REPO"):
        pipeline.BuildOptions(freeze=SPEC, push="")


@pytest.mark.parametrize("bad", ["UPPER/case", "a:b:c", "x@sha256:zz"])
def test_bad_push_reference_is_refused_before_any_work(bad):
    with pytest.raises(ImageError, match="invalid"):
        pipeline.BuildOptions(freeze=SPEC, push=bad)


def test_bad_tag_is_refused():
    with pytest.raises(ImageError):
        pipeline.BuildOptions(freeze=SPEC, tarball=Path("x.tar"), tags=("Not Valid",))


def test_insecure_and_ca_contradict():
    with pytest.raises(ScratchpackError, match="contradict"):
        pipeline.BuildOptions(
            freeze=SPEC, push="localhost:5000/a", insecure_registry=True, registry_ca=Path("ca")
        )


def test_source_date_epoch(monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert pipeline.source_date_epoch() == 0
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert pipeline.source_date_epoch() == 1700000000
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ScratchpackError, match="SOURCE_DATE_EPOCH"):
        pipeline.source_date_epoch()


def test_bad_scratchpack_repo_is_refused_before_any_work():
    with pytest.raises(ImageError, match="SCRATCHPACK_REPO") as err:
        pipeline.BuildOptions(freeze=SPEC, repo_env="Not A/Repo")
    assert err.value.hint
