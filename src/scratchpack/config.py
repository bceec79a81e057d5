"""The project's settings: pyproject.toml's ``[project]`` and ``[tool.scratchpack]``, read once.

One parser for the whole program: the CLI reads a project here, applies its flags on top
(``ProjectConfig.with_overrides``) and hands the typed value down; the freezer and the image
builder only read its fields. Validation happens here, before any tool runs, so a user gets
"no entry point" in milliseconds rather than a PyInstaller traceback a minute later.

A value module: it imports only the leaves ``errors`` and ``_types`` (whose Platform it
parses), never ``freeze``, ``oci`` or ``pipeline``, which may all import it.
Also home of the one ``SOURCE_DATE_EPOCH`` parser.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from scratchpack._types import Platform
from scratchpack.errors import ImageError, ProjectError, ScratchpackError

__all__ = [
    "PLATFORMS",
    "RUNTIMES",
    "FreezeSettings",
    "ImageDefaults",
    "ProjectConfig",
    "Runtime",
    "check_platforms",
    "load_pyproject",
    "parse_platforms",
    "parse_pyproject",
    "project_config",
    "read_project",
    "resolve_entrypoint",
    "source_date_epoch",
    "unreadable",
]

#: The freezer routes (``--runtime``).
#: "pyinstaller": PyInstaller --onefile + staticx (any app, C extensions included).
#: "static": a fully static musl CPython with the app inside (pure-Python apps; no extraction).
Runtime = Literal["pyinstaller", "static"]
RUNTIMES: tuple[Runtime, ...] = ("pyinstaller", "static")

#: The platforms scratchpack builds for (``--platform``, ``[tool.scratchpack] platforms``), in
#: the order an image index lists them: the same set always gives the same index digest.
PLATFORMS: tuple[Platform, ...] = (Platform("linux", "amd64"), Platform("linux", "arm64"))

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*$")
#: a distribution's name as pip takes it (PEP 508): include-modules accepts those too
_DIST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_OBJECT_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$")
#: A console script name as pip installs one (a file name in bin/): no ":" and no spaces.
_SCRIPT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PORT = re.compile(r"([0-9]{1,5})(?:/(tcp|udp|sctp))?")
_USER = re.compile(r"([a-z_][a-z0-9_-]{0,31})(?::([0-9]+)(?::([0-9]+))?)?")
_URL_KEYS = ("source", "source code", "repository", "code", "homepage", "home")


@dataclass(frozen=True, slots=True)
class FreezeSettings:
    """What ``[tool.scratchpack]`` says about freezing."""

    runtime: Runtime | None = None  # runtime = "pyinstaller" | "static"; None: the default route
    exclude_modules: tuple[str, ...] = ()  # exclude-modules, proven by the app's tests
    include_modules: tuple[str, ...] = ()  # include-modules (dynamic imports; "pkg.*")
    #: strip-docstrings: the project's own modules compiled without docstrings (static route)
    strip_docstrings: bool = False
    #: compress-start-modules: the modules the app imports at start deflated too (static route)
    compress_start_modules: bool = False


@dataclass(frozen=True, slots=True)
class ImageDefaults:
    """What ``[tool.scratchpack]`` says about the image; flags given on the CLI win."""

    ports: tuple[str, ...] = ()  # normalised to "PORT/proto"
    args: tuple[str, ...] = ()  # the image's Cmd


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    """A validated pyproject.toml: the project, how to freeze it, the image defaults."""

    name: str
    version: str  # "" when dynamic: the freezer fills it in from the installed metadata
    #: "module:object" (a [project.scripts] name is resolved here), else a bare name that the
    #: build venv resolves: a dependency's console script, else a module
    entrypoint: str
    source_url: str = ""
    freeze: FreezeSettings = field(default_factory=FreezeSettings)
    image: ImageDefaults = field(default_factory=ImageDefaults)
    #: repr of [project] dependencies and [build-system]: with the lock files, this is what
    #: decides the third-party packages, so the build venv is keyed on it.
    dependency_declaration: str = ""
    #: push-timeout: the most seconds a whole push may take (None: the pusher's default)
    push_timeout: float | None = None
    #: platforms: what ``build`` makes an image for, in PLATFORMS order (empty: the host's)
    platforms: tuple[Platform, ...] = ()

    def with_overrides(
        self, *, runtime: Runtime | None = None, exclude_modules: tuple[str, ...] = ()
    ) -> ProjectConfig:
        """The caller's choices on top: a route wins over the table's, exclusions are merged
        (sorted, without duplicates, as the cache key wants them)."""
        merged = tuple(sorted(set(self.freeze.exclude_modules) | set(exclude_modules)))
        settings = replace(
            self.freeze, runtime=runtime or self.freeze.runtime, exclude_modules=merged
        )
        return replace(self, freeze=settings)


def parse_platforms(values: Iterable[str]) -> tuple[Platform, ...]:
    """``["linux/amd64,linux/arm64"]`` (comma-separated, repeatable) -> supported platforms,
    without duplicates, in PLATFORMS order; anything else is refused with the supported list.

    The one place the names are parsed: from here on a platform travels as a value."""
    parsed: list[Platform] = []
    for value in values:
        for item in value.split(","):
            try:
                parsed.append(Platform.parse(item))
            except ValueError:
                raise _unsupported(item.strip()) from None
    return check_platforms(parsed)


def check_platforms(platforms: Iterable[Platform]) -> tuple[Platform, ...]:
    """Platform values -> the same set in PLATFORMS order, without duplicates (so the same set
    always gives the same index digest); one scratchpack does not build for is refused."""
    chosen: set[Platform] = set()
    for platform in platforms:
        if platform not in PLATFORMS:
            raise _unsupported(str(platform))
        chosen.add(platform)
    return tuple(p for p in PLATFORMS if p in chosen)


def _unsupported(name: str) -> ScratchpackError:
    supported = ", ".join(map(str, PLATFORMS))
    return ScratchpackError(
        f"unsupported platform {name!r}: scratchpack builds for {supported}",
        hint=f"choose from {supported} (comma-separated for several)",
        remedy="platforms",
    )


def load_pyproject(project_dir: Path) -> dict[str, Any]:
    """The parsed pyproject.toml, or a ProjectError saying why the directory is not a project."""
    try:
        is_dir = stat.S_ISDIR(project_dir.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        raise ProjectError(
            f"project directory {project_dir} does not exist",
            hint="pass the directory that holds your pyproject.toml",
        ) from None
    except OSError as err:
        raise unreadable(err) from err
    if not is_dir:
        raise ProjectError(f"{project_dir} is not a directory", hint="pass the project directory")
    pyproject = project_dir / "pyproject.toml"
    try:
        raw = pyproject.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise ProjectError(
            f"{project_dir} is not a Python project: it has no pyproject.toml",
            hint="add a pyproject.toml with a [project] table (name, version, dependencies)",
        ) from None
    except OSError as err:
        if not os.access(project_dir, os.R_OK | os.X_OK):
            err.filename = str(project_dir)  # the directory is the one to fix, not its file
        raise unreadable(err) from err
    return parse_toml(raw, where=str(pyproject))


def unreadable(err: OSError) -> ProjectError:
    """A project file or directory that cannot be read, named, with what to check."""
    path = err.filename if err.filename is not None else "a project file"
    return ProjectError(
        f"cannot read {path}: {err.strerror or err}",
        hint="scratchpack reads every file of the project (except .git, build, dist, .venv "
        "and caches): give the user running it read permission on the files and read+execute "
        "on the directories (chmod/chown), or move what it must not read out of the project"
        if isinstance(err, PermissionError)
        else "check the file and the disk it is on",
    )


def parse_toml(raw: bytes, *, where: str = "pyproject.toml") -> dict[str, Any]:
    """TOML bytes -> tables, or a ProjectError naming ``where``."""
    try:
        return tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ProjectError(
            f"cannot read {where}: {err}", hint="fix the TOML syntax and try again"
        ) from err


def read_project(project_dir: Path, entrypoint: str | None = None) -> ProjectConfig:
    """Read and validate ``project_dir/pyproject.toml``; ``entrypoint`` overrides the table's.

    The entry point is applied here rather than on top, because it is resolved against
    ``[project.scripts]`` and decides whether "no entry point" is an error.
    """
    return project_config(load_pyproject(Path(project_dir)), entrypoint)


def public_url(url: str) -> str:
    """A URL fit to publish in labels and the SBOM (a git remote, a [project.urls] entry): no
    user or password, query or fragment (an access token hides in any of them), no local paths
    (they differ per checkout)."""
    if re.fullmatch(r"[\w.-]+@[\w.-]+:[^\s?#]*", url):  # scp-like git@host:path, no password
        return url
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return ""
    if parts.scheme not in {"http", "https", "ssh", "git"} or not host:
        return ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += "" if port is None else f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_pyproject(raw: bytes, entrypoint: str | None = None) -> ProjectConfig:
    """The bytes of a pyproject.toml -> a ProjectConfig (what ``read_project`` does after I/O)."""
    return project_config(parse_toml(raw), entrypoint)


def _str_list(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProjectError(
            f"{where} must be a list of strings in pyproject.toml, not {_toml_type(value)}",
            hint='write it as an array of quoted strings, e.g. ["a", "b"]',
        )
    return tuple(value)


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """``data[key]`` when it is a table, ``{}`` when absent; any other type names the key."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ProjectError(
            f"{where} must be a table in pyproject.toml, not {_toml_type(value)}",
            hint=f"write it as a [{where.strip('[]')}] section (or remove the key)",
        )
    return value


def _toml_type(value: object) -> str:
    """How TOML calls the type of a parsed value, for messages."""
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), f"a {type(value).__name__}")


def resolve_entrypoint(value: str, scripts: Mapping[str, str]) -> str:
    """A CLI/pyproject entry point -> ``mod:func`` (an object reference, or a name in the
    project's ``[project.scripts]``, which comes first), else the bare name as given.

    A bare name (``http``, ``my-tool``) is resolved in the build venv, once the dependencies are
    installed: a console script of one of them, else a module (freeze/_scripts/
    check_entrypoint.py). So httpie's ``http`` runs httpie, not the stdlib package ``http``.
    """
    value = value.strip()
    if value in scripts:
        target = scripts[value].split("[", 1)[0].strip()
        if not _OBJECT_RE.match(target):
            raise ProjectError(
                f"[project.scripts] {value} = {scripts[value]!r} is not 'module:function'",
                hint='e.g. [project.scripts] app = "mypkg.__main__:main"',
            )
        return target
    if _OBJECT_RE.match(value) or _MODULE_RE.match(value) or _SCRIPT_RE.match(value):
        return value
    known = ", ".join(sorted(scripts)) or "none"
    raise ProjectError(
        f"entry point {value!r} is neither 'module:function', 'module', nor a console script "
        f"name ([project.scripts]: {known})",
        hint='e.g. [tool.scratchpack] entrypoint = "mypkg.__main__:main"',
    )


def _entrypoint(name: str, chosen: object, scripts: Mapping[str, str], explicit: str | None) -> str:
    chosen = explicit or chosen
    if chosen is not None and not isinstance(chosen, str):
        raise ProjectError(
            f"[tool.scratchpack] entrypoint must be a string, not {_toml_type(chosen)}",
            hint='e.g. entrypoint = "mypkg.__main__:main"',
        )
    if not chosen:
        if len(scripts) == 1:
            chosen = next(iter(scripts))
        else:
            listed = f" (scripts: {', '.join(sorted(scripts))})" if scripts else ""
            raise ProjectError(
                f"project {name!r} has no entry point{listed}",
                hint='set [tool.scratchpack] entrypoint = "pkg.module:main" in pyproject.toml',
                remedy="entrypoint",
            )
    return resolve_entrypoint(chosen, scripts)


def normalise_port(port: str) -> str:
    """``8080`` -> ``8080/tcp``: the one PORT[/PROTO] grammar (flags, pyproject, image config)."""
    m = _PORT.fullmatch(port)
    if not m or not 0 < int(m.group(1)) < 65536:
        raise ImageError(f"invalid exposed port {port!r}", hint="use PORT or PORT/tcp|udp|sctp")
    return f"{int(m.group(1))}/{m.group(2) or 'tcp'}"


def _ports(tool: Mapping[str, Any]) -> tuple[str, ...]:
    normalized: list[str] = []
    for port in _str_list(tool.get("ports", []), "[tool.scratchpack] ports"):
        try:
            normalized.append(normalise_port(port))
        except ImageError:
            raise ProjectError(
                f"[tool.scratchpack] ports: {port!r} is not PORT[/tcp|udp|sctp]",
                hint='e.g. ports = ["8080/tcp"]',
            ) from None
    return tuple(normalized)


@dataclass(frozen=True, slots=True)
class UserSpec:
    name: str = "appuser"
    uid: int = 1000
    gid: int = 1000


def parse_user(text: str) -> UserSpec:
    """``NAME[:UID[:GID]]``; the GID defaults to the UID, the UID to 1000."""
    m = _USER.fullmatch(text)
    if not m:
        raise ImageError(
            f"invalid user {text!r}",
            hint="use NAME[:UID[:GID]] with a lowercase name, e.g. appuser:1000:1000",
        )
    uid = int(m.group(2)) if m.group(2) else 1000
    gid = int(m.group(3)) if m.group(3) else uid
    if uid == 0 or m.group(1) == "root":
        raise ImageError(
            "the image user must not be root: the image exists to run as a non-root user",
            hint="pick a name and a UID above 0, e.g. appuser:1000",
        )
    if uid > 65534 or gid > 65534:
        raise ImageError(
            f"user {text!r}: UID and GID must be at most 65534",
            hint="pick an ID between 1 and 65534, e.g. appuser:1000",
        )
    return UserSpec(m.group(1), uid, gid)


def _flag(tool: Mapping[str, Any], key: str, hint: str) -> bool:
    """A true/false setting of [tool.scratchpack] (false when absent); anything else is refused
    rather than read by truthiness."""
    value = tool.get(key, False)
    if not isinstance(value, bool):
        raise ProjectError(
            f"[tool.scratchpack] {key} = {value!r}: must be true or false", hint=hint
        )
    return value


def _freeze_settings(tool: Mapping[str, Any]) -> FreezeSettings:
    excludes = _str_list(tool.get("exclude-modules", []), "[tool.scratchpack] exclude-modules")
    for module in excludes:
        if not _MODULE_RE.match(module):
            raise ProjectError(
                f"[tool.scratchpack] exclude-modules: {module!r} is not a module name",
                hint='use dotted module names, e.g. exclude-modules = ["tkinter"]',
            )
    includes = _str_list(tool.get("include-modules", []), "[tool.scratchpack] include-modules")
    for module in includes:
        if not (_MODULE_RE.match(module.removesuffix(".*")) or _DIST_RE.match(module)):
            raise ProjectError(
                f"[tool.scratchpack] include-modules: {module!r} is not a module name "
                "(or package.* for all of its submodules, or a distribution's name)",
                hint='e.g. include-modules = ["mypkg.plugins.*", "PyYAML"]',
            )
    runtime = tool.get("runtime")
    if runtime is not None and runtime not in RUNTIMES:
        raise ProjectError(
            f"[tool.scratchpack] runtime = {runtime!r}: must be 'pyinstaller' or 'static'",
            hint="static needs a pure-Python app; pyinstaller freezes anything",
        )
    strip = _flag(
        tool,
        "strip-docstrings",
        "strip-docstrings = true drops the app's docstrings; leave it out if the app reads __doc__",
    )
    compress = _flag(
        tool,
        "compress-start-modules",
        "compress-start-modules = true makes the executable smaller and every start slower "
        "(it inflates the modules it imports)",
    )
    return FreezeSettings(
        runtime=runtime,
        exclude_modules=excludes,
        include_modules=includes,
        strip_docstrings=strip,
        compress_start_modules=compress,
    )


def project_config(data: Mapping[str, Any], entrypoint: str | None = None) -> ProjectConfig:
    """Validate parsed pyproject tables into a ProjectConfig."""
    project = data.get("project")
    if not isinstance(project, dict) or not isinstance(project.get("name"), str):
        raise ProjectError(
            "pyproject.toml has no [project] table with a name",
            hint='add [project] name = "..." and version = "..."',
        )
    name = project["name"]
    version = project.get("version")
    dynamic = _str_list(project.get("dynamic", []), "[project] dynamic")
    _str_list(project.get("dependencies", []), "[project] dependencies")
    if not isinstance(version, str):
        if version is not None:
            raise ProjectError(
                f"[project] version = {version!r} must be a string",
                hint='quote it: version = "1.0"',
            )
        if "version" not in dynamic:
            raise ProjectError(
                "pyproject.toml [project] has no version (static or dynamic)",
                hint='add [project] version = "1.0", or list "version" in [project] dynamic',
            )
        version = ""  # filled in from the installed metadata after the build
    tool = _table(_table(data, "tool", "[tool]"), "scratchpack", "[tool.scratchpack]")
    scripts = project.get("scripts", {})
    if not isinstance(scripts, dict) or not all(isinstance(v, str) for v in scripts.values()):
        raise ProjectError(
            "[project.scripts] must map names to 'module:function' strings",
            hint='e.g. [project.scripts] app = "mypkg.__main__:main"',
        )
    resolved = _entrypoint(name, tool.get("entrypoint"), scripts, entrypoint)
    ports = _ports(tool)
    args = _str_list(tool.get("args", []), "[tool.scratchpack] args")
    settings = _freeze_settings(tool)
    urls = project.get("urls", {})
    source_url = ""
    if isinstance(urls, dict):
        by_key = {str(k).lower(): v for k, v in urls.items() if isinstance(v, str)}
        source_url = public_url(next((by_key[k] for k in _URL_KEYS if k in by_key), ""))
    declaration = repr(project.get("dependencies", [])) + repr(data.get("build-system", {}))
    push_timeout = tool.get("push-timeout")
    if push_timeout is not None and (
        isinstance(push_timeout, bool)
        or not isinstance(push_timeout, int | float)
        or not push_timeout > 0
    ):
        raise ProjectError(
            f"[tool.scratchpack] push-timeout = {push_timeout!r}: must be a positive number "
            "of seconds",
            hint="e.g. push-timeout = 600",
        )
    platforms = _str_list(tool.get("platforms", []), "[tool.scratchpack] platforms")
    try:
        chosen_platforms = parse_platforms(platforms)
    except ScratchpackError as err:
        raise ProjectError(
            f"[tool.scratchpack] platforms: {err.message}",
            hint=f'e.g. platforms = ["{PLATFORMS[0]}", "{PLATFORMS[1]}"]',
        ) from None
    return ProjectConfig(
        name=name,
        version=version,
        entrypoint=resolved,
        source_url=source_url,
        freeze=settings,
        image=ImageDefaults(ports=ports, args=args),
        dependency_declaration=declaration,
        push_timeout=None if push_timeout is None else float(push_timeout),
        platforms=chosen_platforms,
    )


def source_date_epoch(environ: Mapping[str, str]) -> int | None:
    """``SOURCE_DATE_EPOCH`` from ``environ``: None when unset or empty, else whole seconds.

    The one parser: each consumer applies its own default (the image: 0; the freezer: 1980,
    the earliest time a zip archive can store).
    """
    raw = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise ScratchpackError(
            f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds",
            hint="unset it, or set it to e.g. $(git log -1 --format=%ct)",
        )
    return int(raw)
