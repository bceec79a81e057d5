"""Dependency rules (docs/design.md): the layout only shows the architecture if imports obey it.

Parsed with ast, so the rules hold for every code path, not just the ones a test happens to run.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
WEBHELLO_SRC = ROOT / "examples" / "webhello" / "src"
SINKS = {"scratchpack.oci.tarball", "scratchpack.oci.layout", "scratchpack.oci.registry"}
# Optional imports that are guarded by try/except ImportError in the code that uses them.
OPTIONAL = {"certifi"}
# Programs the freezer runs by path under another interpreter (the target Python, a build venv):
# not part of scratchpack at run time, so they may use what every build venv installs.
SCRIPTS = "scratchpack.freeze._scripts"
BUILD_VENV_PACKAGES = {"packaging"}


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, base: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    module = _module_name(path, base)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                prefix = ".".join(anchor)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _graph(base: Path, package: str) -> dict[str, set[str]]:
    return {
        _module_name(p, base): _imports(p, base) for p in sorted((base / package).rglob("*.py"))
    }


SCRATCHPACK = _graph(SRC, "scratchpack")
WEBHELLO = _graph(WEBHELLO_SRC, "webhello") if (WEBHELLO_SRC / "webhello").is_dir() else {}


def _project_imports(imports: set[str], package: str) -> set[str]:
    return {i for i in imports if i == package or i.startswith(package + ".")}


def test_graph_is_not_empty():
    assert "scratchpack.cli" in SCRATCHPACK
    assert "scratchpack.oci.reference" in SCRATCHPACK


@pytest.mark.parametrize("sink", sorted(SINKS))
def test_sinks_never_import_each_other(sink):
    if sink not in SCRATCHPACK:
        pytest.fail(f"{sink} is missing")
    others = SINKS - {sink}
    assert not {i for i in SCRATCHPACK[sink] if any(i.startswith(o) for o in others)}


def test_value_modules_never_import_a_sink():
    values = [
        m
        for m in SCRATCHPACK
        if m.startswith("scratchpack.oci.")
        and m not in SINKS
        and m.rpartition(".")[2] not in {"auth", "_http"}
    ]
    for module in values:
        bad = {i for i in SCRATCHPACK[module] if any(i.startswith(s) for s in SINKS)}
        assert not bad, f"{module} imports the sink(s) {bad}"


def test_freeze_and_oci_never_import_each_other():
    for module, imports in SCRATCHPACK.items():
        if module.startswith("scratchpack.freeze"):
            assert not _project_imports(imports, "scratchpack.oci"), module
        if module.startswith("scratchpack.oci"):
            assert not _project_imports(imports, "scratchpack.freeze"), module


def test_only_the_cli_sits_above_the_pipeline():
    for module, imports in SCRATCHPACK.items():
        if module in {"scratchpack.cli", "scratchpack.__main__"}:
            continue
        assert not _project_imports(imports, "scratchpack.cli"), module
        if module != "scratchpack.pipeline":
            assert not _project_imports(imports, "scratchpack.pipeline"), module


def test_library_modules_are_stdlib_only():
    """scratchpack runs from any Python with nothing else installed: stdlib-only at run time."""
    allowed = set(sys.stdlib_module_names) | {"scratchpack"} | OPTIONAL
    for module, imports in SCRATCHPACK.items():
        if module.startswith(SCRIPTS + "."):
            continue  # test_freezer_scripts_are_standalone
        bad = {i for i in imports if i.split(".")[0] not in allowed}
        assert not bad, f"{module} imports non-stdlib {bad}"


def test_freezer_scripts_are_standalone():
    """They run where scratchpack is not installed: stdlib (and packaging) only, nothing of ours."""
    scripts = {m: i for m, i in SCRATCHPACK.items() if m.startswith(SCRIPTS + ".")}
    assert {f"{SCRIPTS}.interpreter", f"{SCRIPTS}.distributions"} <= set(scripts)
    allowed = set(sys.stdlib_module_names) | BUILD_VENV_PACKAGES
    for module, imports in scripts.items():
        bad = {i for i in imports if i.split(".")[0] not in allowed}
        assert not bad, f"{module} imports {bad}: it runs under another interpreter"


def test_config_is_a_value_module():
    """config is read by the CLI, the freezer and the pipeline; it imports none of them."""
    imports = SCRATCHPACK["scratchpack.config"]
    for layer in ("freeze", "oci", "pipeline", "cli", "runtime", "engine", "sbom"):
        assert not _project_imports(imports, f"scratchpack.{layer}"), layer


def test_freezers_never_import_oci_or_the_sbom():
    """A freezer reports its SBOM parts as freeze values; only the pipeline joins them."""
    for module, imports in SCRATCHPACK.items():
        if module.startswith("scratchpack.freeze"):
            assert not _project_imports(imports, "scratchpack.oci"), module
            assert not _project_imports(imports, "scratchpack.sbom"), module
            assert not _project_imports(imports, "scratchpack.pipeline"), module


def test_the_pipeline_never_reaches_into_a_freezer_route():
    """The pipeline asks the frozen app for what it needs; it never imports a route's modules."""
    routes = ("scratchpack.freeze.static", "scratchpack.freeze.onefile")
    routes += ("scratchpack.freeze.pyinstaller", "scratchpack.freeze.staticx")
    for module in ("scratchpack.pipeline", "scratchpack.cli"):
        bad = {i for i in SCRATCHPACK[module] if i.startswith(routes)}
        assert not bad, f"{module} imports {bad}"


def test_webhello_is_stdlib_only_and_independent():
    assert WEBHELLO, "examples/webhello/src/webhello is missing"
    allowed = set(sys.stdlib_module_names) | {"webhello"}
    for module, imports in WEBHELLO.items():
        bad = {i for i in imports if i.split(".")[0] not in allowed}
        assert not bad, f"{module} imports {bad}: webhello must stay stdlib-only"
    for module, imports in SCRATCHPACK.items():
        assert not _project_imports(imports, "webhello"), module


def test_webhello_parser_does_no_io():
    """The parser is sans-IO (STYLE 11): bytes in, events out, testable without a loop."""
    http = WEBHELLO.get("webhello.http")
    assert http is not None, "webhello.http is missing"
    assert not {i for i in http if i.split(".")[0] in {"asyncio", "socket", "ssl", "selectors"}}
