"""The build pipeline: freeze -> layer -> image (+ SBOM) -> publishers.

The only module that joins the freezer, the image model, the SBOM and the publishers. Several
outputs are one :class:`~scratchpack.publish.MultiPublisher` handed the same release.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from scratchpack import _ctx, _types, sbom
from scratchpack import config as project_config
from scratchpack._fs import owned_tempdir, sweep_stale
from scratchpack.config import Runtime, UserSpec, check_platforms, normalise_port, public_url
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
from scratchpack.oci.index import ImageIndex, index_of, with_index_annotations
from scratchpack.oci.layer import layer_from_entries
from scratchpack.oci.reference import Reference
from scratchpack.oci.rootfs import CA_BUNDLE_PATH, elf_info, scratch_rootfs
from scratchpack.publish import MultiPublisher, Publisher, Release
from scratchpack.publish.base import sbom_paths_beside
from scratchpack.publish.layout import LayoutPublisher
from scratchpack.publish.tarball import TarballPublisher

if TYPE_CHECKING:
    from scratchpack.oci.registry import PushOptions

#: The freeze step as the pipeline calls it: a spec (with its platform) -> the frozen app.
FreezeFn = Callable[[FreezeSpec], FrozenApp]


# FreezeSpec and Platform are re-exported: the CLI builds them without importing the freezer.
__all__ = [
    "BuildOptions",
    "BuildResult",
    "FreezeFn",
    "FreezeSpec",
    "ImageOptions",
    "Platform",
    "RunBuild",
    "assemble",
    "build",
    "build_for_run",
    "build_platforms",
    "freeze_for_platform",
    "host_platform",
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
    #: one image per platform (an image index when several); empty: [tool.scratchpack]
    #: platforms, else the host's
    platforms: tuple[Platform, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "platforms", check_platforms(self.platforms))
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
class PlatformImage:
    """One platform's image in a multi-platform build, and the executable inside it."""

    platform: Platform
    image_digest: Digest
    executable_sha256: str


@dataclass(frozen=True, slots=True)
class BuildResult:
    image_digest: Digest  # the image's, or the image index's when there are several platforms
    published: tuple[Published, ...]
    executable_sha256: str  # of the host's platform's executable (else the first one's)
    tags: tuple[str, ...] = ()
    sbom_files: tuple[Path, ...] = ()
    platforms: tuple[PlatformImage, ...] = ()  # one per platform when there are several

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "image_digest": str(self.image_digest),
            "executable_sha256": self.executable_sha256,
            "outputs": [
                {"kind": p.kind, "location": p.location, "digest": str(p.digest), **dict(p.extra)}
                for p in self.published
            ],
            "tags": list(self.tags),
            "sbom_files": [str(p) for p in self.sbom_files],
        }
        if self.platforms:
            out["platforms"] = [
                {
                    "platform": str(p.platform),
                    "image_digest": str(p.image_digest),
                    "executable_sha256": p.executable_sha256,
                }
                for p in self.platforms
            ]
        return out


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH when set (validated), else 0: builds are reproducible by default."""
    epoch = _environ_source_date_epoch(os.environ)
    return 0 if epoch is None else epoch


def host_platform() -> Platform:
    """This machine's platform: the one a single-platform build is for, the one ``docker load``
    of a multi-platform tarball gets, the one ``scratchpack run`` runs."""
    return _types.host_platform()


def build_platforms(options: BuildOptions) -> tuple[Platform, ...]:
    """The platforms of a build: the options', else the project's, else the host's (refused,
    with the supported list, when the host is not one scratchpack builds for)."""
    project = options.freeze.project
    chosen = options.platforms or (project.platforms if project is not None else ())
    return chosen or check_platforms([host_platform()])


def freeze_for_platform(spec: FreezeSpec) -> FrozenApp:
    """Freeze, then check that the executable is for ``spec.platform`` (None: this machine):
    an image must never claim an architecture its executable is not built for."""
    app = freeze(spec)
    wanted = spec.platform or host_platform()
    found, _ = elf_info(app.path)
    if found != wanted.architecture:
        raise ImageError(
            f"the executable frozen for {wanted} is for {found}, not {wanted.architecture}",
            hint=f"the {app.runtime} runtime did not build for {wanted}; build that platform "
            "with a runtime that cross-builds, or leave it out",
            remedy="platform-runtime",
        )
    return app


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
    app: FrozenApp,
    options: ImageOptions,
    *,
    project_dir: Path,
    epoch: int,
    workdir: Path,
    platform: Platform | None = None,
) -> oci_image.Image:
    """The FROM-scratch image for a frozen app: one layer, a non-root user, labels.

    ``platform`` is what the executable is built for (default: this machine's).
    """
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
    image = oci_image.empty(platform or host_platform())
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


def publisher_for(
    options: BuildOptions, app: FrozenApp, platforms: Sequence[Platform] = ()
) -> MultiPublisher:
    """The chosen outputs as one publisher (ko's ``makePublisher``), in a fixed order.

    ``platforms``: the release's, when there are several (they name the SBOM files).
    """
    publishers: list[Publisher] = []
    several = tuple(platforms) if len(platforms) > 1 else ()
    if options.tarball is not None:
        publishers.append(TarballPublisher(options.tarball, host_platform(), several))
    if options.oci_layout is not None:
        publishers.append(LayoutPublisher(options.oci_layout, several))
    if options.push is not None:
        from scratchpack.publish.registry import RegistryPublisher  # loads the HTTP stack

        ref = push_reference(options, app)
        publishers.append(RegistryPublisher(ref, options.push_options(), progress=_ctx.log))
    return MultiPublisher(publishers, step=_ctx.step)


@dataclass(frozen=True, slots=True)
class _Built:
    app: FrozenApp
    image: oci_image.Image
    sbom: Artifact | None


def _build_one(
    options: BuildOptions,
    platform: Platform,
    freezer: FreezeFn,
    *,
    epoch: int,
    workdir: Path,
    label: str,
) -> _Built:
    with _ctx.step(f"freezing{label}"):
        app = freezer(replace(options.freeze, platform=platform))
    image = assemble(
        app,
        options.image,
        project_dir=options.freeze.project_dir,
        epoch=epoch,
        workdir=workdir,
        platform=platform,
    )
    sbom_artifact: Artifact | None = None
    if options.sbom == "spdx":
        data = sbom_bytes(app, epoch=epoch, subject=f"{app.project.name}@{image.digest}")
        sbom_artifact = make_artifact(
            image.manifest_descriptor(), data, artifact_type=mediatypes.SPDX_JSON
        )
    return _Built(app, image, sbom_artifact)


def _index(images: Sequence[oci_image.Image]) -> ImageIndex:
    """The images' index, annotated with what all of them say (created, title, version...)."""
    common = set(images[0].annotations).intersection(*(i.annotations for i in images[1:]))
    return with_index_annotations(index_of(*images), sorted(common))


def build(options: BuildOptions, *, freezer: FreezeFn = freeze_for_platform) -> BuildResult:
    """``scratchpack build``: freeze and assemble one image per platform, then hand the release
    (the image, or the index of all of them) to every chosen output.

    ``freezer`` is the seam tests replace to supply each platform's executable.
    """
    _check_file_outputs(options)
    platforms = build_platforms(options)
    epoch = source_date_epoch()
    with _workdir() as workdir:
        built = [
            _build_one(
                options,
                p,
                freezer,
                epoch=epoch,
                workdir=workdir,
                label=f" for {p}" if len(platforms) > 1 else "",
            )
            for p in platforms
        ]
        images = [b.image for b in built]
        top: oci_image.Image | ImageIndex = images[0] if len(images) == 1 else _index(images)
        sboms = tuple(b.sbom for b in built if b.sbom is not None)
        host = host_platform()
        main = next((b for b, p in zip(built, platforms, strict=True) if p == host), built[0])
        tags = _image_tags(options, main.app)
        release = Release(top, tags, sboms)
        outcome = publisher_for(options, main.app, platforms).publish(release)
    per_platform = tuple(
        PlatformImage(p, b.image.digest, b.app.sha256)
        for p, b in zip(platforms, built, strict=True)
    )
    return BuildResult(
        top.digest,
        outcome.published,
        main.app.sha256,
        tuple(t.familiar for t in tags),
        outcome.sbom_files,
        per_platform if len(per_platform) > 1 else (),
    )


def _check_file_outputs(options: BuildOptions) -> None:
    """Outputs (and the SBOM files beside them) never in the sources, on an input or on each
    other."""
    outputs = [p for p in (options.tarball, options.oci_layout) if p is not None]
    if options.sbom == "spdx":
        platforms = build_platforms(options)
        outputs += [s for p in list(outputs) for s in sbom_paths_beside(p, platforms)]
    ca = options.image.ca_certs
    inputs = [Path(p) for p in (ca if ca != "certifi" else None, options.registry_ca) if p]
    check_outputs(options.freeze.project_dir, outputs, inputs)


@dataclass(frozen=True, slots=True)
class RunBuild:
    tarball: Path
    tags: tuple[str, ...]
    platforms: tuple[Platform, ...]  # what was built
    platform: Platform  # the one ``docker load`` gets and the engine runs


def build_for_run(
    project_dir: Path,
    *,
    tags: Sequence[str] = (),
    python: str | None = None,
    runtime: Runtime | None = None,
    platforms: Sequence[Platform] = (),
    freezer: FreezeFn = freeze_for_platform,
) -> RunBuild:
    """Build a project's image into a cached tarball for ``scratchpack run``.

    With several platforms the tarball holds all of them, and docker or podman load the
    host's (or, without it among them, the first).
    """
    project = project_config.read_project(project_dir)
    spec = FreezeSpec(project_dir=project_dir, python=python, runtime=runtime, project=project)
    cache = _run_cache_dir()
    name = _repo_name(project_dir.resolve().name)
    tarball = cache / f"{name}-{runtime or 'default'}.tar"
    options = BuildOptions(
        freeze=spec, tags=tuple(tags), tarball=tarball, sbom="none", platforms=tuple(platforms)
    )
    chosen = build_platforms(options)
    host = host_platform()
    result = build(options, freezer=freezer)
    return RunBuild(tarball, result.tags, chosen, host if host in chosen else chosen[0])


def _run_cache_dir() -> Path:
    path = default_cache_dir() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path
