"""The build pipeline: freeze -> layer -> image (+ SBOM) -> publishers.

The only module that joins the freezer, the image model, the SBOM and the publishers. Several
outputs are one :class:`~scratchpack.publish.MultiPublisher` handed the same release.
"""

from __future__ import annotations

import importlib
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from scratchpack import _ctx, sbom
from scratchpack._fs import owned_tempdir, sweep_stale
from scratchpack.config import Runtime, UserSpec, normalise_port, public_url
from scratchpack.config import source_date_epoch as _environ_source_date_epoch
from scratchpack.errors import ImageError, ScratchpackError
from scratchpack.freeze import (
    FreezeSpec,
    FrozenApp,
    check_outputs,
    default_cache_dir,
    freeze,
    write_executable,
)
from scratchpack.oci import image as oci_image
from scratchpack.oci import mediatypes
from scratchpack.oci.artifact import Artifact, make_artifact
from scratchpack.oci.config import ImageConfig, check_env, check_label, format_created
from scratchpack.oci.descriptor import Platform, Published
from scratchpack.oci.digest import Digest
from scratchpack.oci.layer import layer_from_entries
from scratchpack.oci.reference import Reference
from scratchpack.oci.rootfs import CA_BUNDLE_PATH, scratch_rootfs
from scratchpack.publish import MultiPublisher, Publisher, Release
from scratchpack.publish.base import sbom_path_beside
from scratchpack.publish.layout import LayoutPublisher
from scratchpack.publish.tarball import TarballPublisher

if TYPE_CHECKING:
    from scratchpack.oci.registry import PushOptions

_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


# FreezeSpec is re-exported: the CLI builds one without importing the freezer.
__all__ = [
    "BuildOptions",
    "BuildResult",
    "FreezeSpec",
    "ImageOptions",
    "RunBuild",
    "assemble",
    "build",
    "build_for_run",
    "make_executable",
    "publisher_for",
    "push_reference",
    "sbom_bytes",
    "source_date_epoch",
]


@dataclass(frozen=True, slots=True)
class ImageOptions:
    user: UserSpec = field(default_factory=UserSpec)
    ports: tuple[str, ...] = ()  # empty: the project's [tool.scratchpack].ports
    args: tuple[str, ...] = ()  # empty: the project's [tool.scratchpack].args
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    ca_certs: str | None = None  # "certifi", a file path, or None

    def __post_init__(self) -> None:  # before the freeze, not a minute later in assemble()
        for name, value in self.env:
            check_env(name, value)
        for key, value in self.labels:
            check_label(key, value)


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
    push_timeout: float | None = None  # None: [tool.scratchpack] push-timeout, else default
    sbom: Literal["spdx", "none"] = "spdx"

    def __post_init__(self) -> None:
        if self.tarball is None and self.oci_layout is None and self.push is None:
            if not self.repo_env:
                raise ScratchpackError(
                    "no output chosen: nothing would be written",
                    hint="choose a tarball, an OCI layout directory and/or a repository to push "
                    "to (or set SCRATCHPACK_REPO, like ko's KO_DOCKER_REPO)",
                    remedy="no-output",
                )
            object.__setattr__(self, "push", "")
        if self.push == "" and not self.repo_env:
            raise ScratchpackError(
                "a push without a repository, and SCRATCHPACK_REPO is not set",
                hint="name the repository REGISTRY/REPO[:TAG], "
                "or export SCRATCHPACK_REPO=REGISTRY/PREFIX",
                remedy="push-repo",
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
        if self.insecure_registry or self.registry_ca is not None or self.push_timeout is not None:
            self.push_options()  # the session options hold the contradiction checks

    def push_options(self) -> PushOptions:
        from scratchpack.oci.registry import PushOptions  # only pushes need the HTTP stack

        options = PushOptions(insecure=self.insecure_registry, ca_file=self.registry_ca)
        project = self.freeze.project
        timeout = self.push_timeout
        if timeout is None and project is not None:
            timeout = project.push_timeout
        return options if timeout is None else replace(options, push_timeout=timeout)


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
    epoch = _environ_source_date_epoch(os.environ)
    return 0 if epoch is None else epoch


def host_platform() -> Platform:
    machine = platform.machine()
    arch = _GO_ARCH.get(machine)
    if arch is None:
        raise ImageError(f"unsupported machine architecture {machine!r}")
    return Platform("linux", arch)


def make_executable(spec: FreezeSpec, *, output: Path | None) -> FrozenApp:
    """``scratchpack exe``: freeze and copy the executable to ``output`` atomically."""
    # exe needs no work directory of its own, but it sweeps what killed builds left there as
    # `build` does: someone who only ever runs exe after a kill would keep that debris for good
    sweep_stale(Path(tempfile.gettempdir()), _WORKDIR_PREFIX)
    if output is not None:  # a directory gets the executable inside it
        check_outputs(spec.project_dir, [output / "app" if output.is_dir() else output])
    with _ctx.step("freezing"):
        app = freeze(spec)
    dest = output if output is not None else Path("dist") / app.project.name
    check_outputs(spec.project_dir, [dest / app.path.name if dest.is_dir() else dest])
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


def _ca_bundle(choice: str) -> Path:
    if choice != "certifi":
        path = Path(choice)
        if not path.is_file():
            raise ImageError(
                f"CA bundle {choice}: no such file",
                hint="give a PEM CA bundle",
                remedy="ca-certs-pem",
            )
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
        "no CA bundle to add: neither certifi nor a system CA bundle was found",
        hint="install certifi, or give the path of a PEM CA bundle",
        remedy="ca-certs",
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
    source = project.source_url or public_url(_git(project_dir, "remote", "get-url", "origin"))
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
        cmd=options.args or project.image.args,
        env=tuple(env),
        working_dir="/",
        exposed_ports=tuple(
            sorted({normalise_port(p) for p in options.ports or project.image.ports})
        ),
        labels=tuple(sorted(labels.items())),
    )
    image = oci_image.empty(host_platform())
    image = oci_image.append_layers(image, layer)
    image = oci_image.with_config(image, config)
    image = oci_image.with_created(image, created)
    return oci_image.with_annotations(image, annotations)


def sbom_bytes(app: FrozenApp, *, epoch: int, subject: str) -> bytes:
    py = app.python_version
    components = [
        sbom.Component(
            d.name,
            d.version,
            f"pkg:pypi/{d.name.lower().replace('_', '-')}@{d.version}"
            + (f"?file_name={d.wheel}" if d.wheel else ""),
            license=d.license,
            download_location=d.source_url,
            sha256=d.sha256,
        )
        for d in app.distributions
        if d.name.lower() != app.project.name.lower()
    ]
    components.extend(  # what the freezer route embeds: a bootloader, a libc, C libraries
        sbom.Component(c.name, c.version, c.purl, c.license, c.download_location, sha256=c.sha256)
        for c in app.components
    )
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


#: ``$TMPDIR/scratchpack-*``: a build's work directory (the image layer, the SBOM).
_WORKDIR_PREFIX = "scratchpack-"


@contextmanager
def _workdir() -> Iterator[Path]:
    with owned_tempdir(_WORKDIR_PREFIX, space_remedy="tmpdir-space") as tmp:
        yield tmp


def publisher_for(options: BuildOptions, app: FrozenApp) -> MultiPublisher:
    """The chosen outputs as one publisher (ko's ``makePublisher``), in a fixed order."""
    publishers: list[Publisher] = []
    if options.tarball is not None:
        publishers.append(TarballPublisher(options.tarball))
    if options.oci_layout is not None:
        publishers.append(LayoutPublisher(options.oci_layout))
    if options.push is not None:
        from scratchpack.publish.registry import RegistryPublisher  # loads the HTTP stack

        ref = push_reference(options, app)
        publishers.append(RegistryPublisher(ref, options.push_options(), progress=_ctx.log))
    return MultiPublisher(publishers, step=_ctx.step)


def build(options: BuildOptions) -> BuildResult:
    """``scratchpack build``: freeze, assemble, then hand the release to every chosen output."""
    _check_file_outputs(options)
    with _ctx.step("freezing"):
        app = freeze(options.freeze)
    epoch = source_date_epoch()
    with _workdir() as workdir:
        image = assemble(
            app,
            options.image,
            project_dir=options.freeze.project_dir,
            epoch=epoch,
            workdir=workdir,
        )
        tags = _image_tags(options, app)
        sbom_artifact: Artifact | None = None
        if options.sbom == "spdx":
            data = sbom_bytes(app, epoch=epoch, subject=f"{app.project.name}@{image.digest}")
            sbom_artifact = make_artifact(
                image.manifest_descriptor(), data, artifact_type=mediatypes.SPDX_JSON
            )
        release = Release(image, tags, sbom_artifact)
        outcome = publisher_for(options, app).publish(release)
    return BuildResult(
        image.digest,
        outcome.published,
        app.sha256,
        tuple(t.familiar for t in tags),
        outcome.sbom_files,
    )


def _check_file_outputs(options: BuildOptions) -> None:
    """Outputs (and the SBOM files beside them) never in the sources, on an input or on each
    other."""
    outputs = [p for p in (options.tarball, options.oci_layout) if p is not None]
    if options.sbom == "spdx":
        outputs += [sbom_path_beside(p) for p in list(outputs)]
    ca = options.image.ca_certs
    inputs = [Path(p) for p in (ca if ca != "certifi" else None, options.registry_ca) if p]
    check_outputs(options.freeze.project_dir, outputs, inputs)


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
