"""The command line: flags -> option dataclasses -> pipeline.

This is the only module that prints results or chooses exit codes: 0 success, 1 a
ScratchpackError (one ``error:`` line and a hint), 2 a usage error, 130 interrupted by SIGINT,
143 stopped by SIGTERM (128 + the signal, as shells report it).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scratchpack import __version__, _ctx
from scratchpack.errors import Interrupted, ScratchpackError

if TYPE_CHECKING:  # for annotations only: each command imports the pipeline when it runs
    from scratchpack.pipeline import Platform

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
#: The signals that stop a build cleanly, and the exit code each one gives.
_STOP_SIGNALS = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED}

_RUNTIME_NOTE = """\
run-time needs of the executable: with the default runtime (pyinstaller: PyInstaller+staticx,
any app) it unpacks itself into $TMPDIR or /tmp at every start (must be writable and not
mounted noexec) and reads /proc; `scratchpack build` images provide a 1777 /tmp, so give a
container --tmpfs /tmp when you run it with a read-only root filesystem. With --runtime static
(pure-Python apps; CPython 3.11 built against musl) it is one process that reads its modules
from its own file: nothing is written, a read-only root filesystem works as is."""


def _add_freeze_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "project_dir",
        nargs="?",
        default=".",
        type=Path,
        metavar="PROJECT_DIR",
        help="the Python project (a directory with pyproject.toml; default: .)",
    )
    p.add_argument(
        "--entrypoint",
        metavar="MOD[:FUNC]|SCRIPT",
        help="what to run: 'pkg.mod:func', 'pkg.mod', or a [project.scripts] name "
        "(default: [tool.scratchpack].entrypoint, else the only [project.scripts] entry)",
    )
    _add_runtime_flag(p)
    p.add_argument(
        "--python",
        metavar="PYTHON",
        help="interpreter to build with; it must have a shared libpython with the pyinstaller "
        "runtime, and be a 3.11 with the static one (default: this one)",
    )
    p.add_argument(
        "--compression",
        choices=("none", "xz"),
        default=None,
        help="staticx compression of the executable (default: none; xz is smaller but "
        "starts slower, see docs/benchmarks.md)",
    )
    p.add_argument(
        "--exclude-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="leave a module out of the executable (repeatable); prove it with your tests",
    )
    p.add_argument(
        "--no-cache", action="store_true", help="rebuild from scratch, ignoring the build cache"
    )
    p.add_argument("--cache-dir", type=Path, metavar="DIR", help="build cache location")


def _add_runtime_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runtime",
        choices=("pyinstaller", "static"),
        default=None,
        help="pyinstaller: PyInstaller+staticx, any app including C extensions; static: a "
        "fully static CPython 3.11 with the app inside, one process, nothing extracted, "
        "~10x faster start (compiled extensions from musllinux wheels, loaded in-process; the "
        "runtime is compiled once, a few minutes). "
        "Default: [tool.scratchpack] runtime, else pyinstaller",
    )


def _add_platform_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="OS/ARCH[,OS/ARCH]",
        help="the platform(s) to build for: linux/amd64, linux/arm64, or both comma-separated "
        "(repeatable); several give one image per platform under one OCI image index (default: "
        "[tool.scratchpack] platforms, else this machine's)",
    )


def _platforms(args: argparse.Namespace) -> tuple[Platform, ...]:
    from scratchpack.config import parse_platforms

    return parse_platforms(args.platform)


def _add_common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scratchpack",
        description="Python apps as one static executable in a FROM-scratch OCI image, "
        "built without a Docker daemon.",
    )
    parser.add_argument("--version", action="version", version=f"scratchpack {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    exe = sub.add_parser(
        "exe",
        help="freeze a project into one statically linked executable",
        description="Freeze a Python project into ONE statically linked executable.",
        epilog=_RUNTIME_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_freeze_flags(exe)
    exe.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="OUT",
        help="where to write the executable (default: ./dist/<project name>)",
    )
    exe.add_argument(
        "--platform",
        metavar="OS/ARCH",
        help="the machine the executable runs on: linux/amd64 or linux/arm64 (default: this "
        "one's); another machine's needs --runtime static, which cross-builds",
    )
    _add_common_flags(exe)

    build = sub.add_parser(
        "build",
        help="freeze a project and build a FROM-scratch OCI image",
        description="Freeze a project and assemble a FROM-scratch OCI image (no Docker "
        "daemon). Write it as a tarball for docker/podman load, an OCI layout, and/or push "
        "it to a registry. Arguments after -- become the image's Cmd: "
        "scratchpack build --tarball app.tar -- -quota 5",
        epilog=_RUNTIME_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_freeze_flags(build)
    _add_platform_flag(build)
    _add_image_flags(build)
    _add_output_flags(build)
    _add_common_flags(build)

    run = sub.add_parser(
        "run",
        help="build (if needed) and run the image with docker or podman",
        description="Build the image of PROJECT_DIR (or take an image tarball) and run it "
        "with docker or podman, host network, so the app's ports are on this machine. "
        "Arguments after -- go to the app: scratchpack run examples/webhello -- -quota 5",
    )
    run.add_argument(
        "target",
        nargs="?",
        default=".",
        type=Path,
        metavar="PROJECT_DIR|TARBALL",
        help="a project directory, or an image tarball written by `scratchpack build`",
    )
    run.add_argument(
        "--engine", choices=("auto", "docker", "podman"), default="auto", help="container tool"
    )
    _add_runtime_flag(run)
    _add_platform_flag(run)
    run.add_argument("--name", help="container name (default: scratchpack-<project>)")
    _add_image_flags(run, with_args=False)
    run.add_argument("--python", metavar="PYTHON", help="interpreter to build with")
    _add_common_flags(run)
    return parser


def _add_image_flags(p: argparse.ArgumentParser, *, with_args: bool = True) -> None:
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="NAME[:TAG]",
        help="name for the tarball image (repeatable; default: <project>:latest)",
    )
    if not with_args:
        return
    p.add_argument(
        "--user",
        default="appuser:1000:1000",
        metavar="NAME[:UID[:GID]]",
        help="the user the image runs as (default: appuser:1000:1000)",
    )
    p.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="PORT[/PROTO]",
        help="exposed port (repeatable; default: [tool.scratchpack].ports)",
    )
    p.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="ARG",
        help="default argument for the app, the image's Cmd (repeatable; write --arg=-flag "
        "for a value starting with '-', or put the arguments after --)",
    )
    p.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="environment variable"
    )
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="image label")
    p.add_argument(
        "--ca-certs",
        nargs="?",
        const="certifi",
        metavar="BUNDLE",
        help="add a CA bundle at /etc/ssl/certs/ca-certificates.crt and set SSL_CERT_FILE "
        "(default bundle: certifi's, else the system's)",
    )


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tarball",
        type=Path,
        metavar="FILE",
        help="write a tar that `docker load` and `podman load` accept",
    )
    p.add_argument("--oci-layout", type=Path, metavar="DIR", help="write an OCI image layout")
    p.add_argument(
        "--push",
        nargs="?",
        const="",
        metavar="REPO[:TAG]",
        help="push to a registry (without a value: $SCRATCHPACK_REPO/<project>)",
    )
    p.add_argument(
        "--insecure-registry",
        action="store_true",
        help="allow plain HTTP (and unverified TLS) to the registry",
    )
    p.add_argument(
        "--registry-ca",
        type=Path,
        metavar="FILE",
        help="extra CA certificate(s) to verify the registry with",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="the most a whole push may take, every request and retry included (default: "
        "[tool.scratchpack] push-timeout, else 300); a registry that stalls fails then",
    )
    p.add_argument(
        "--sbom",
        choices=("spdx", "none"),
        default="spdx",
        help="SPDX 2.3 SBOM of the Python distributions inside (default: spdx)",
    )


def _key_values(items: Sequence[str], flag: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        out.append((key, value))
    return tuple(out)


class _UsageError(Exception):
    pass


def _freeze_spec(args: argparse.Namespace) -> Any:
    """Read the project's settings once, with the flags applied on top."""
    from scratchpack import config
    from scratchpack.pipeline import FreezeSpec

    project = config.read_project(args.project_dir, args.entrypoint).with_overrides(
        runtime=args.runtime, exclude_modules=tuple(args.exclude_module)
    )
    kwargs: dict[str, Any] = {
        "project_dir": args.project_dir,
        "project": project,
        "python": args.python,
        "use_cache": not args.no_cache,
        "cache_dir": args.cache_dir,
    }
    if args.compression is not None:
        kwargs["compression"] = args.compression
    return FreezeSpec(**kwargs)


def _image_options(args: argparse.Namespace) -> Any:
    from scratchpack.config import parse_user
    from scratchpack.pipeline import ImageOptions

    if args.arg and args.app_args:
        raise _UsageError("give the app's arguments either with --arg or after --, not both")
    return ImageOptions(
        user=parse_user(args.user),
        ports=tuple(args.port),
        args=tuple(args.arg or args.app_args),
        env=_key_values(args.env, "--env"),
        labels=_key_values(args.label, "--label"),
        ca_certs=args.ca_certs,
    )


def _platform(text: str | None) -> Platform | None:
    """``--platform``'s value, or None (this machine)."""
    from scratchpack.pipeline import Platform

    if text is None:
        return None
    try:
        return Platform.parse(text)
    except ValueError as err:
        raise _UsageError(f"--platform: {err}") from None


def _cmd_exe(args: argparse.Namespace) -> dict[str, Any]:
    import dataclasses

    from scratchpack import pipeline

    spec = dataclasses.replace(_freeze_spec(args), platform=_platform(args.platform))
    result = pipeline.make_executable(spec, output=args.output)
    if not args.json:
        print(result.path)
    return {
        "executable": str(result.path),
        "sha256": result.sha256,
        "size": result.size,
        "cached": result.cached,
        "platform": str(result.platform) if result.platform else None,
    }


def _cmd_build(args: argparse.Namespace) -> dict[str, Any]:
    from scratchpack import pipeline

    options = pipeline.BuildOptions(
        freeze=_freeze_spec(args),
        image=_image_options(args),
        tags=tuple(args.tag),
        tarball=args.tarball,
        oci_layout=args.oci_layout,
        push=args.push,
        repo_env=os.environ.get("SCRATCHPACK_REPO", ""),
        insecure_registry=args.insecure_registry,
        registry_ca=args.registry_ca,
        push_timeout=args.timeout,
        sbom=args.sbom,
        platforms=_platforms(args),
    )
    result = pipeline.build(options)
    if not args.json:
        for published in result.published:
            if published.kind == "registry":
                print(published.location)
            else:
                print(
                    f"{published.kind}: {published.location} ({published.digest})", file=sys.stderr
                )
    return result.to_json()


def _cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    from scratchpack import engine, pipeline

    app_args: list[str] = args.app_args
    target: Path = args.target
    if target.is_file():
        if args.platform:
            raise _UsageError("--platform chooses what to build: give a project directory")
        tarball = target
        tags = tuple(args.tag) or engine.tarball_tags(target)
    else:
        built = pipeline.build_for_run(
            target,
            tags=tuple(args.tag),
            python=args.python,
            runtime=args.runtime,
            platforms=_platforms(args),
        )
        tarball, tags = built.tarball, built.tags
        host = pipeline.host_platform()
        if built.platform != host:
            _ctx.warn(
                f"running the {built.platform} image on this {host} machine: it needs "
                "emulation (qemu-user-static registered with binfmt_misc)"
            )
        elif len(built.platforms) > 1:
            names = ", ".join(map(str, built.platforms))
            _ctx.warn(f"built {names}; running the {host} image (this machine's)")
    code = engine.run_tarball(
        tarball,
        tags=tags,
        tool=args.engine,
        name=args.name,
        app_args=tuple(app_args),
    )
    return {"exit_code": code}


#: The CLI's wording for each ``ScratchpackError.remedy`` key: the one place that names flags.
REMEDIES: dict[str, str] = {
    "no-output": "add --tarball FILE, --oci-layout DIR and/or --push REPO[:TAG] "
    "(or set SCRATCHPACK_REPO, like ko's KO_DOCKER_REPO)",
    "push-repo": "give --push REGISTRY/REPO[:TAG], or export SCRATCHPACK_REPO=REGISTRY/PREFIX",
    "ca-certs": "pip install certifi, or pass --ca-certs /path/to/bundle.pem",
    "ca-certs-pem": "pass --ca-certs with a PEM file of CA certificates (e.g. "
    "/etc/ssl/certs/ca-certificates.crt), or --ca-certs alone for certifi's bundle",
    "run-target": "pass a file written by `scratchpack build --tarball`, or a project directory",
    "run-tag": "pass --tag NAME[:TAG]",
    "platforms": "pass --platform linux/amd64, linux/arm64 or both: --platform "
    "linux/amd64,linux/arm64",
    "platform-runtime": "the default runtime (pyinstaller) builds for this machine only; "
    "--runtime static cross-builds, or leave that platform out of --platform",
    # registry (oci/_http.py, oci/session.py)
    "insecure-registry": "scratchpack uses HTTPS for every registry, localhost included; "
    "for a plain-HTTP registry you trust, use --insecure-registry",
    "registry-ca": "pass the registry's CA certificate (--registry-ca FILE), "
    "or use --insecure-registry to skip verification for a registry you trust",
    "registry-tls": "check the registry's TLS setup; --insecure-registry skips verification",
    "credentials-plain-http": "the registry sends credentials to a plain-HTTP address; use "
    "--insecure-registry only if you trust the network path to it",
    "insecure-or-ca": "use either --insecure-registry or --registry-ca, not both",
    "push-timeout": "check that the server is a working registry and the network path to it; "
    "a slow registry may need more time: --timeout SECONDS (the whole push; default 300)",
    "push-timeout-value": "pass --timeout SECONDS with a positive number",
    # freezer and project settings
    "entrypoint": 'set [tool.scratchpack] entrypoint = "pkg.module:main" in pyproject.toml '
    "or pass --entrypoint",
    "python": "pass --python with the path of a CPython 3 interpreter",
    "static-python": "pass --python with a Python 3.11 interpreter "
    "(e.g. /usr/bin/python3 on Debian 12)",
    "static-c-extension": "build with the default runtime instead (drop --runtime static, or "
    "pass --runtime pyinstaller), or use a pure-Python alternative of those packages",
    "static-c-extension-platform": "use a pure-Python alternative of those packages, or build "
    "for this machine (drop --platform; then --runtime pyinstaller also works)",
    "foreign-platform": "add --runtime static: it cross-builds (scratchpack exe --runtime static "
    "--platform linux/arm64)",
    "platform": "pass --platform linux/amd64 or --platform linux/arm64",
    "kit-build-failed": "this is a bug or a missing build tool (make, perl); report it with "
    "this output, or use --runtime pyinstaller",
    "exe-output": "choose an output path in an existing, writable directory (-o PATH)",
    "cache-dir": "choose a writable build cache: --cache-dir DIR, or export "
    "SCRATCHPACK_CACHE_DIR=DIR",
    "cache-space": "the disk is full or over quota: free some space in the build cache and "
    "the temporary directory, or move them to a larger file system (--cache-dir DIR or "
    "SCRATCHPACK_CACHE_DIR, and TMPDIR)",
    "tmpdir-space": "the file system of the temporary directory is full: free some space "
    "there, or export TMPDIR=DIR with a directory on a larger one",
    "exe-output-space": "the disk is full or over quota: free some space there, or write the "
    "executable to another file system (-o PATH)",
    "output-in-project": "write -o, --tarball and --oci-layout outside the project directory "
    "(or under its dist/ or build/, which are not sources)",
    "output-overwrites-input": "choose an output path (-o, --tarball, --oci-layout) that is not "
    "one of the build's inputs (--ca-certs, --registry-ca)",
}


def render_error(err: ScratchpackError) -> str:
    """``str(err)`` with the hint worded for this CLI when the error names a remedy."""
    return err.render(REMEDIES.get(err.remedy or "", err.hint))


def _stop(signum: int, frame: object) -> None:
    """Turn SIGINT/SIGTERM into ``Interrupted`` once; the clean-up it starts is not interrupted
    by a second signal (it is bounded: child groups get a few seconds, then SIGKILL)."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def _stopping_cleanly() -> Iterator[None]:
    """SIGINT and SIGTERM unwind the build (stopping children, removing temp files) for the
    duration; the previous handlers come back afterwards (main() may run inside a test)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; a caller's thread keeps the caller's
        return
    previous = {sig: signal.signal(sig, _stop) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


#: What to do about an OSError no layer below turned into a ScratchpackError.
_OS_HINTS = {
    errno.ENOSPC: "the disk is full or over quota: free some space and try again",
    errno.EDQUOT: "the disk is full or over quota: free some space and try again",
    errno.EACCES: "check the permissions of the file named above",
    errno.EPERM: "check the permissions of the file named above",
    errno.EROFS: "the file system is read-only; point scratchpack at a writable location",
}


def _os_error(err: OSError) -> ScratchpackError:
    where = f": {err.filename}" if err.filename is not None else ""
    hint = _OS_HINTS.get(err.errno or 0, "run again with -v for the details")
    return ScratchpackError(f"{err.strerror or err}{where}", hint=hint)


def main(argv: Sequence[str] | None = None) -> int:
    with _stopping_cleanly():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    app_args: list[str] = []
    if argv[:1] in (["run"], ["build"]) and "--" in argv:
        cut = argv.index("--")
        argv, app_args = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    args.app_args = app_args
    _ctx.VERBOSITY.set(args.verbose)
    _ctx.PROGRESS.set(not args.quiet and not args.json and sys.stderr.isatty())
    handlers = {"exe": _cmd_exe, "build": _cmd_build, "run": _cmd_run}
    try:
        try:
            result = handlers[args.command](args)
        except OSError as err:  # no layer below worded it: still error + hint, not a traceback
            raise _os_error(err) from err
    except _UsageError as err:
        parser.error(str(err))
    except ScratchpackError as err:
        if args.verbose:
            traceback.print_exc()
        hint = REMEDIES.get(err.remedy or "", err.hint)
        print(f"error: {render_error(err)}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": err.message, "hint": hint or ""}))
        return EXIT_ERROR
    except KeyboardInterrupt as err:
        signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        print(
            f"error: interrupted by {name}: child processes stopped, temporary files removed",
            file=sys.stderr,
        )
        return _STOP_SIGNALS.get(signal.Signals(signum), EXIT_INTERRUPTED)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    if args.command == "run":
        return int(result["exit_code"])
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
