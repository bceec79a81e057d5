"""The build pipeline: freeze -> layer -> image -> sinks.

The only module that joins ``freeze`` and ``oci``. A sink is a function that takes an image
and returns a Published; several outputs are just several sinks run over the same value.
"""

from __future__ import annotations

import importlib
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from scratchpack import _ctx, sbom
from scratchpack.errors import ImageError, ScratchpackError
from scratchpack.freeze import (
    FreezeSpec,
    FrozenApp,
    default_cache_dir,
    freeze,
    write_executable,
)
from scratchpack.freeze.spec import TOOL_PINS, Runtime
from scratchpack.oci import image as oci_image
from scratchpack.oci import mediatypes
from scratchpack.oci._io import write_bytes_atomic
from scratchpack.oci.artifact import Artifact, fallback_tag, make_artifact
from scratchpack.oci.config import ImageConfig, format_created, normalise_port
from scratchpack.oci.descriptor import Platform, Published
from scratchpack.oci.digest import Digest
from scratchpack.oci.layer import layer_from_entries
from scratchpack.oci.layout import add_artifact, write_layout
from scratchpack.oci.reference import Reference
from scratchpack.oci.rootfs import CA_BUNDLE_PATH, scratch_rootfs
from scratchpack.oci.tarball import write_tarball

Sink = Callable[[oci_image.Image], Published]

_USER = re.compile(r"([a-z_][a-z0-9_-]{0,31})(?::(\d+)(?::(\d+))?)?")
_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
SBOM_SUFFIX = "sbom"


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
            f"invalid --user {text!r}",
            hint="use NAME[:UID[:GID]] with a lowercase name, e.g. appuser:1000:1000",
        )
    uid = int(m.group(2)) if m.group(2) else 1000
    gid = int(m.group(3)) if m.group(3) else uid
    if uid == 0 or m.group(1) == "root":
        raise ImageError(
            "--user must not be root: the image exists to run as a non-root user",
            hint="pick a name and a UID above 0, e.g. appuser:1000",
        )
    if uid > 65534 or gid > 65534:
        raise ImageError(
            f"--user {text!r}: UID and GID must be at most 65534",
            hint="pick an ID between 1 and 65534, e.g. appuser:1000",
        )
    return UserSpec(m.group(1), uid, gid)


@dataclass(frozen=True, slots=True)
class ImageOptions:
    user: UserSpec = field(default_factory=UserSpec)
    ports: tuple[str, ...] = ()  # empty: the project's [tool.scratchpack].ports
    args: tuple[str, ...] = ()  # empty: the project's [tool.scratchpack].args
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    ca_certs: str | None = None  # "certifi", a file path, or None


@dataclass(frozen=True, slots=True)
class BuildOptions:
    freeze: FreezeSpec
    image: ImageOptions = field(default_factory=ImageOptions)
    tags: tuple[str, ...] = ()
    tarball: Path | None = None
    oci_layout: Path | None = None
    push: str | None = None  # "" means: $SCRATCHPACK_REPO/<project name>
    repo_env: str = ""
    insecure_registry: bool = False
    registry_ca: Path | None = None
    sbom: Literal["spdx", "none"] = "spdx"

    def __post_init__(self) -> None:
        if self.tarball is None and self.oci_layout is None and self.push is None:
            if not self.repo_env:
                raise ScratchpackError(
                    "no output chosen: nothing would be written",
                    hint="add --tarball FILE, --oci-layout DIR and/or --push REPO[:TAG] "
                    "(or set SCRATCHPACK_REPO, like ko's KO_DOCKER_REPO)",
                )
            object.__setattr__(self, "push", "")
        if self.push == "" and not self.repo_env:
            raise ScratchpackError(
                "--push without a repository and SCRATCHPACK_REPO is not set",
                hint="give --push REGISTRY/REPO[:TAG], or export SCRATCHPACK_REPO=REGISTRY/PREFIX",
            )
        for tag in self.tags:
            Reference.parse(tag)
        if self.push:
            Reference.parse(self.push)
        elif self.push == "":
            try:  # fail before the freeze, not after it
                Reference.parse(f"{self.repo_env.rstrip('/')}/app")
            except ImageError as err:
                raise ImageError(
                    f"SCRATCHPACK_REPO={self.repo_env!r} is not a repository prefix: {err.message}",
                    hint="use REGISTRY[/PATH], e.g. ghcr.io/me or localhost:5000/team",
                ) from None
        if self.insecure_registry and self.registry_ca is not None:
            raise ScratchpackError(
                "--insecure-registry and --registry-ca contradict each other",
                hint="use --registry-ca to verify TLS, or --insecure-registry to skip it",
            )


@dataclass(frozen=True, slots=True)
class BuildResult:
    image_digest: Digest
    published: tuple[Published, ...]
    executable_sha256: str
    tags: tuple[str, ...] = ()
    sbom_files: tuple[Path, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "image_digest": str(self.image_digest),
            "executable_sha256": self.executable_sha256,
            "outputs": [
                {"kind": p.kind, "location": p.location, "digest": str(p.digest), **dict(p.extra)}
                for p in self.published
            ],
            "tags": list(self.tags),
            "sbom_files": [str(p) for p in self.sbom_files],
        }


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH when set (validated), else 0: builds are reproducible by default."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise ScratchpackError(
            f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds",
            hint="unset it, or set it to e.g. $(git log -1 --format=%ct)",
        )
    return int(raw)


def host_platform() -> Platform:
    machine = platform.machine()
    arch = _GO_ARCH.get(machine)
    if arch is None:
        raise ImageError(f"unsupported machine architecture {machine!r}")
    return Platform("linux", arch)


def make_executable(spec: FreezeSpec, *, output: Path | None) -> FrozenApp:
    """``scratchpack exe``: freeze and copy the executable to ``output`` atomically."""
    with _ctx.step("freezing"):
        app = freeze(spec)
    dest = output if output is not None else Path("dist") / app.project.name
    path = write_executable(app, dest)
    return replace(app, path=path)


def _git(project_dir: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(project_dir), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _public_url(url: str) -> str:
    """A remote URL fit to publish: no credentials, no local paths (they differ per checkout)."""
    url = re.sub(r"^(https?://)[^/@]+@", r"\1", url)
    return url if re.match(r"(https?|ssh|git)://|[\w.-]+@[\w.-]+:", url) else ""


def _ca_bundle(choice: str) -> Path:
    if choice != "certifi":
        path = Path(choice)
        if not path.is_file():
            raise ImageError(f"--ca-certs {choice}: no such file", hint="give a PEM CA bundle")
        return path
    try:
        certifi = importlib.import_module("certifi")  # optional, only for --ca-certs
        return Path(certifi.where())
    except ImportError:
        for candidate in (
            Path("/etc/ssl/certs/ca-certificates.crt"),
            Path("/etc/pki/tls/cert.pem"),
        ):
            if candidate.is_file():
                return candidate
    raise ImageError(
        "--ca-certs: neither certifi nor a system CA bundle was found",
        hint="pip install certifi, or pass --ca-certs /path/to/bundle.pem",
    )


def assemble(
    app: FrozenApp, options: ImageOptions, *, project_dir: Path, epoch: int, workdir: Path
) -> oci_image.Image:
    """The FROM-scratch image for a frozen app: one layer, a non-root user, labels."""
    project = app.project
    ca = _ca_bundle(options.ca_certs) if options.ca_certs else None
    entries = scratch_rootfs(
        app.path,
        user=options.user.name,
        uid=options.user.uid,
        gid=options.user.gid,
        ca_bundle=ca,
    )
    with _ctx.step("assembling image layer"):
        layer = layer_from_entries(entries, mtime=epoch, workdir=workdir)
    env = [f"{k}={v}" for k, v in options.env]
    if ca is not None and not any(k == "SSL_CERT_FILE" for k, _ in options.env):
        env.append(f"SSL_CERT_FILE={CA_BUNDLE_PATH}")
    created = format_created(epoch)
    annotations = {
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.title": project.name,
        "org.opencontainers.image.version": project.version,
    }
    source = project.source_url or _public_url(_git(project_dir, "remote", "get-url", "origin"))
    if source:
        annotations["org.opencontainers.image.source"] = source
    revision = _git(project_dir, "rev-parse", "HEAD")
    if revision:
        annotations["org.opencontainers.image.revision"] = revision
    labels = dict(annotations)
    labels.update(options.labels)
    config = ImageConfig(
        user=f"{options.user.uid}:{options.user.gid}",
        entrypoint=("/app",),
        cmd=options.args or project.args,
        env=tuple(env),
        working_dir="/",
        exposed_ports=tuple(sorted({normalise_port(p) for p in options.ports or project.ports})),
        labels=tuple(sorted(labels.items())),
    )
    image = oci_image.empty(host_platform())
    image = oci_image.append_layers(image, layer)
    image = oci_image.with_config(image, config)
    image = oci_image.with_created(image, created)
    return oci_image.with_annotations(image, annotations)


# Tools whose run-time parts end up inside every executable: PyInstaller's bootloader and
# pyimod* modules, and staticx's loader (the ELF entry point).
_EMBEDDED_TOOLS = {
    "pyinstaller": ("GPL-2.0-or-later WITH Bootloader-exception", "https://pyinstaller.org/"),
    "staticx": ("", "https://github.com/JonathonReinhart/staticx"),
}


def _embedded_tools() -> list[sbom.Component]:
    out = []
    for pin in TOOL_PINS:
        name, _, version = pin.partition("==")
        if name in _EMBEDDED_TOOLS:
            license_, url = _EMBEDDED_TOOLS[name]
            out.append(
                sbom.Component(
                    name,
                    version,
                    f"pkg:pypi/{name}@{version}",
                    license=license_,
                    download_location=url,
                )
            )
    return out


def _static_runtime_parts() -> list[sbom.Component]:
    """What --runtime static links into the executable: Debian sources and zig's musl."""
    from scratchpack.freeze.static.sources import PACKAGES
    from scratchpack.freeze.static.toolchain import MUSL_VERSION, ZIG_PIN

    # From each package's debian/copyright. liblzma 5.4 is public domain, which has no SPDX id
    # (NOASSERTION); ncurses' licence is the X11 variant that allows "distribute with
    # modifications"; SQLite's is its blessing.
    licenses = {
        "python3.11": "Python-2.0",
        "openssl": "Apache-2.0",
        "zlib": "Zlib",
        "bzip2": "bzip2-1.0.6",
        "sqlite3": "blessing",
        "libffi": "MIT",
        "ncurses": "X11-distribute-modifications-variant",
    }
    out = [
        sbom.Component(
            p.name,
            p.version,
            f"pkg:deb/debian/{p.name}@{p.version}?arch=source&distro=debian-12",
            license=licenses.get(p.name, ""),
            download_location="https://deb.debian.org/debian/",
        )
        for p in PACKAGES  # python3.11 too: its Debian version names the security patches
    ]
    zig = ZIG_PIN.partition("==")[2]
    out.append(
        sbom.Component(
            "musl",
            MUSL_VERSION,
            f"pkg:generic/musl@{MUSL_VERSION}?vcs_url=ziglang@{zig}",
            license="MIT",
            download_location="https://musl.libc.org/",
        )
    )
    return out


def sbom_bytes(app: FrozenApp, *, epoch: int, subject: str) -> bytes:
    py = app.python_version
    components = [
        sbom.Component(
            d.name,
            d.version,
            f"pkg:pypi/{d.name.lower().replace('_', '-')}@{d.version}",
            license=d.license,
            download_location=d.source_url,
        )
        for d in app.distributions
        if d.name.lower() != app.project.name.lower()
    ]
    components.extend(_static_runtime_parts() if app.runtime == "static" else _embedded_tools())
    components.append(
        sbom.Component(
            "cpython",
            py,
            f"pkg:generic/cpython@{py}",
            license="Python-2.0",
            download_location="https://www.python.org/",
            purpose="FRAMEWORK",
        )
    )
    root = sbom.Component(
        app.project.name,
        app.project.version,
        f"pkg:pypi/{app.project.name.lower()}@{app.project.version}",
        download_location=app.project.source_url,
        purpose="APPLICATION",
    )
    return sbom.spdx_document(root, components, created=format_created(epoch), subject=subject)


def _image_tags(options: BuildOptions, app: FrozenApp) -> tuple[Reference, ...]:
    if options.tags:
        return tuple(Reference.parse(t) for t in options.tags)
    return (Reference.parse(f"{_repo_name(app.project.name)}:latest"),)


def _repo_name(project_name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", project_name.lower()).strip("-") or "app"


def push_reference(options: BuildOptions, app: FrozenApp) -> Reference:
    if options.push:
        return Reference.parse(options.push)
    return Reference.parse(f"{options.repo_env.rstrip('/')}/{_repo_name(app.project.name)}")


@contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="scratchpack-") as tmp:
        yield Path(tmp)


def build(options: BuildOptions) -> BuildResult:
    """``scratchpack build``: freeze, assemble, then run every chosen sink."""
    with _ctx.step("freezing"):
        app = freeze(options.freeze)
    epoch = source_date_epoch()
    published: list[Published] = []
    sbom_files: list[Path] = []
    with _workdir() as workdir:
        image = assemble(
            app,
            options.image,
            project_dir=options.freeze.project_dir,
            epoch=epoch,
            workdir=workdir,
        )
        tags = _image_tags(options, app)
        subject = image.manifest_descriptor()
        artifact: Artifact | None = None
        if options.sbom == "spdx":
            data = sbom_bytes(app, epoch=epoch, subject=f"{app.project.name}@{image.digest}")
            artifact = make_artifact(subject, data, artifact_type=mediatypes.SPDX_JSON)
        if options.tarball is not None:
            with _ctx.step(f"writing tarball {options.tarball}"):
                published.append(write_tarball(image, options.tarball, tags=tags))
            if artifact is not None:
                sbom_files.append(_write_sbom_beside(options.tarball, artifact))
        if options.oci_layout is not None:
            with _ctx.step(f"writing OCI layout {options.oci_layout}"):
                ref_name = tags[0].tag or "latest"
                published.append(write_layout(image, options.oci_layout, ref_name=ref_name))
                if artifact is not None:
                    add_artifact(options.oci_layout, artifact)
                    sbom_files.append(_write_sbom_beside(options.oci_layout, artifact))
        if options.push is not None:
            published.extend(_push(image, artifact, options, app))
    return BuildResult(
        image.digest,
        tuple(published),
        app.sha256,
        tuple(t.familiar for t in tags),
        tuple(sbom_files),
    )


def _write_sbom_beside(output: Path, artifact: Artifact) -> Path:
    data = artifact.blobs[-1][1]
    path = output.with_name(output.name + ".spdx.json")
    write_bytes_atomic(path, data)
    return path


def _push(
    image: oci_image.Image, artifact: Artifact | None, options: BuildOptions, app: FrozenApp
) -> list[Published]:
    from scratchpack.oci import registry  # only pushes need the HTTP stack

    ref = push_reference(options, app)
    push_options = registry.PushOptions(
        insecure=options.insecure_registry, ca_file=options.registry_ca
    )
    with _ctx.step(f"pushing {ref}"):
        result = registry.push(image, ref, options=push_options, progress=_ctx.log)
    out = [result]
    if artifact is not None:
        tag = fallback_tag(image.digest, SBOM_SUFFIX)
        with _ctx.step(f"pushing SBOM as {ref.name}:{tag}"):
            digest = registry.push_artifact(artifact, ref, tag=tag, options=push_options)
        out.append(Published("registry-sbom", f"{ref.name}:{tag}@{digest}", digest))
    return out


@dataclass(frozen=True, slots=True)
class RunBuild:
    tarball: Path
    tags: tuple[str, ...]


def build_for_run(
    project_dir: Path,
    *,
    tags: Sequence[str] = (),
    python: str | None = None,
    runtime: Runtime | None = None,
) -> RunBuild:
    """Build a project's image into a cached tarball for ``scratchpack run``."""
    spec = FreezeSpec(project_dir=project_dir, python=python, runtime=runtime)
    cache = _run_cache_dir()
    name = _repo_name(project_dir.resolve().name)
    tarball = cache / f"{name}-{runtime or 'default'}.tar"
    options = BuildOptions(freeze=spec, tags=tuple(tags), tarball=tarball, sbom="none")
    return RunBuild(tarball, build(options).tags)


def _run_cache_dir() -> Path:
    path = default_cache_dir() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path
