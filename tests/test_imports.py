"""Dependency rules (docs/design.md): the layout only shows the architecture if imports obey it.

Parsed with ast, so the rules hold for every code path, not just the ones a test happens to run.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
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


def test_cli_imports_only_the_pipeline_config_and_engine():
    allowed = {
        "scratchpack",  # __version__
        "scratchpack.__version__",
        "scratchpack._ctx",
        "scratchpack.errors",
        "scratchpack.pipeline",
        "scratchpack.config",
        "scratchpack.engine",
    }
    imports = _project_imports(SCRATCHPACK["scratchpack.cli"], "scratchpack")
    bad = {
        i
        for i in imports
        if i not in allowed and i.rpartition(".")[0] not in allowed - {"scratchpack"}
    }
    assert not bad, f"cli imports {sorted(bad)}"


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
    # the leaves only: errors, and _types for the Platform value it parses
    leaves = ("scratchpack.errors", "scratchpack._types")
    project = _project_imports(imports, "scratchpack")
    assert not {i for i in project if not any(_project_imports({i}, m) for m in leaves)}


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


# --- webhello's layers (docs/design/webhello.md) -------------------------------------------------
# Leaves <- parser (http) <- protocol <- server; the application (handlers, fileserver, gopath)
# returns response.py's result types and is reached by the protocol only through its Responder
# interface; __main__ wires the two together. Each module may import only the modules listed
# (type-only imports count too); "__init__" is the package itself.
WEBHELLO_RULES: dict[str, set[str]] = {
    "__init__": set(),
    "config": set(),
    "errors": set(),
    "goformat": set(),
    "gopath": set(),
    "loop": set(),
    "response": set(),
    "flags": {"goformat"},
    "log": {"goformat"},
    "http": {"config", "errors"},
    "transport": {"loop"},
    "fileserver": {"config", "goformat", "gopath", "http", "log", "response"},
    "handlers": {"config", "errors", "fileserver", "goformat", "gopath", "http", "log", "response"},
    "protocol": {"config", "errors", "http", "log", "loop", "response", "transport"},
    "server": {"config", "goformat", "log", "loop", "protocol", "transport"},
    "__main__": {"__init__", "config", "flags", "goformat", "handlers", "log", "server"},
}
WEBHELLO_APP = {"handlers", "fileserver", "gopath"}


def _webhello_short(name: str) -> str:
    return "__init__" if name == "webhello" else name.removeprefix("webhello.")


def _webhello_deps(module: str) -> set[str]:
    """The webhello modules `module` imports (`from .x import y` counts as x, not x.y)."""
    known = set(WEBHELLO)
    deps: set[str] = set()
    for imported in _project_imports(WEBHELLO[module], "webhello"):
        name = imported
        while name not in known:
            name = name.rpartition(".")[0]
        deps.add(_webhello_short(name))
    return deps - {_webhello_short(module)}


def test_webhello_rules_cover_every_module():
    assert {_webhello_short(m) for m in WEBHELLO} == set(WEBHELLO_RULES)


@pytest.mark.parametrize("module", sorted(WEBHELLO_RULES))
def test_webhello_imports_follow_the_layers(module):
    extra = _webhello_deps(f"webhello.{module}" if module != "__init__" else "webhello")
    extra -= WEBHELLO_RULES[module]
    assert not extra, f"webhello.{module} may not import {sorted(extra)}"


def test_webhello_below_the_app_never_imports_it():
    """The protocol, server and everything under them reach the app only via Responder."""
    for module in set(WEBHELLO_RULES) - WEBHELLO_APP - {"__main__"}:
        full = f"webhello.{module}" if module != "__init__" else "webhello"
        bad = _webhello_deps(full) & WEBHELLO_APP
        assert not bad, f"webhello.{module} imports the application modules {sorted(bad)}"


PUBLISHERS = {
    "scratchpack.publish.tarball",
    "scratchpack.publish.layout",
    "scratchpack.publish.registry",
}


@pytest.mark.parametrize("publisher", sorted(PUBLISHERS))
def test_publishers_never_import_each_other(publisher):
    assert publisher in SCRATCHPACK, f"{publisher} is missing"
    others = PUBLISHERS - {publisher}
    assert not {i for i in SCRATCHPACK[publisher] if any(i.startswith(o) for o in others)}


def test_multi_publisher_knows_no_concrete_publisher():
    assert not {i for i in SCRATCHPACK["scratchpack.publish.multi"] if i in PUBLISHERS}


def test_only_the_pipeline_joins_freezer_publishers_and_sbom():
    for module, imports in SCRATCHPACK.items():
        if module == "scratchpack.pipeline":
            continue
        for package in ("scratchpack.publish", "scratchpack.sbom", "scratchpack.freeze"):
            if module.startswith(package):
                continue
            assert not _project_imports(imports, package), f"{module} imports {package}"


def _cli_flags() -> set[str]:
    from scratchpack import cli

    flags: set[str] = set()
    parsers = [cli.build_parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            flags.update(s for s in action.option_strings if s.startswith("--"))
            if action.choices and isinstance(action.choices, dict):
                parsers.extend(action.choices.values())
    return flags - {"--help", "--version"}


def _callee(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _error_strings(path: Path) -> Iterator[tuple[int, str]]:
    """Every string literal in a ``raise`` or an ``...Error(...)`` call: what a user reads."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        raised = isinstance(node, ast.Raise) and node.exc is not None
        built = isinstance(node, ast.Call) and _callee(node).lower().endswith("error")
        if raised or built:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    yield sub.lineno, sub.value


def test_library_errors_never_name_a_cli_flag():
    """Errors carry data (``remedy``); only cli.REMEDIES words hints that name flags."""
    flags = _cli_flags()
    assert "--tarball" in flags and "--runtime" in flags
    pattern = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
    found = set()
    for path in sorted((SRC / "scratchpack").rglob("*.py")):
        if path.name == "cli.py":
            continue
        for line, text in _error_strings(path):
            named = {m for m in pattern.findall(text) if m in flags}
            if named:
                found.add(f"{path.relative_to(ROOT)}:{line}: {sorted(named)}")
    assert not found, "library errors name CLI flags:\n" + "\n".join(sorted(found))


def test_every_remedy_key_raised_has_cli_wording():
    from scratchpack import cli

    keys: set[str] = set()
    for path in sorted((SRC / "scratchpack").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.keyword)
                and node.arg == "remedy"
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                keys.add(node.value.value)
    assert keys, "no error carries a remedy key"
    assert keys <= set(cli.REMEDIES), sorted(keys - set(cli.REMEDIES))


def test_registry_layers_point_one_way():
    """pusher (registry) -> session -> auth, _http: the session never knows the upload protocol."""
    graph = {m: _project_imports(i, "scratchpack.oci") for m, i in SCRATCHPACK.items()}
    assert not {
        i for i in graph["scratchpack.oci.session"] if i.startswith("scratchpack.oci.registry")
    }
    for leaf in ("scratchpack.oci.auth", "scratchpack.oci._http"):
        above = ("scratchpack.oci.session", "scratchpack.oci.registry")
        assert not {i for i in graph[leaf] if i.startswith(above)}, leaf


def test_atomic_writes_live_in_one_leaf():
    """Every user-visible file goes through scratchpack._fs, which imports only errors."""
    assert _project_imports(SCRATCHPACK["scratchpack._fs"], "scratchpack") <= {
        "scratchpack.errors",
        "scratchpack.errors.SinkError",
    }
    for path in sorted((SRC / "scratchpack").rglob("*.py")):
        if path.name in {"_fs.py", "_bundle.py", "layer.py"} or "_scripts" in path.parts:
            # _bundle and _scripts run in another interpreter, without scratchpack; a layer's
            # file is named by its digest, known only once written, in a private work dir.
            continue
        text = path.read_text()
        assert "mkstemp(" not in text, f"{path}: use scratchpack._fs.atomic_output"
