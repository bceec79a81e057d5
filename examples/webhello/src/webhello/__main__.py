"""`python -m webhello` / `webhello`: start-up in the reference's order, then serve.

The order of the start-up log lines, the exit codes (0 for -h/-version/quota, 2 for flag errors,
1 for listen/TLS failures) and the texts follow gowebhello (spec A, B, J).
"""

from __future__ import annotations

import os
import sys
import time

from . import __version__


def _b(s: str) -> str:
    """A Python str (argv/env, surrogateescape) as the latin-1 'byte string' used for output."""
    return os.fsencode(s).decode("latin-1")


def _arch() -> str:
    m = os.uname().machine
    return {
        "x86_64": "amd64",
        "aarch64": "arm64",
        "arm64": "arm64",
        "i386": "386",
        "i686": "386",
        "armv7l": "arm",
        "armv6l": "arm",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
    }.get(m, m)


def _user() -> tuple[str, str] | str:
    """os/user.Current() as pure Go does it: /etc/passwd, then $USER and $HOME."""
    uid = str(os.getuid())
    try:
        with open("/etc/passwd", "rb") as f:
            for line in f:
                parts = line.rstrip(b"\n").split(b":")
                if len(parts) >= 7 and parts[2].decode("latin-1") == uid:
                    return parts[0].decode("latin-1"), uid
    except OSError:
        pass
    user, home = os.environ.get("USER", ""), os.environ.get("HOME", "")
    if user and home:
        return _b(user), uid
    return "user: Current requires cgo or $USER, $HOME set in environment"


def _prog(argv0: str) -> str:
    if argv0.endswith("__main__.py") or not argv0:
        return "webhello"
    return argv0


def main(argv: list[str] | None = None) -> int:
    start_mono = time.monotonic_ns()
    from .log import Clock, Logger

    clock = Clock()
    log = Logger(clock)
    args = list(sys.argv if argv is None else argv)
    prog = _prog(args[0] if args else "")
    args_shown = [prog, *args[1:]]
    impl = sys.implementation
    v = impl.version
    runtime = f"{impl.name}{v.major}.{v.minor}.{v.micro}"
    if v.releaselevel != "final":
        runtime += f"{v.releaselevel[0]}{v.serial}"
    try:
        ncpu = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        ncpu = os.cpu_count() or 1
    pid = os.getpid()
    hostname = _b(os.uname().nodename)
    goos = sys.platform if sys.platform != "darwin" else "darwin"
    version_line = (
        f"version={__version__} runtime={runtime} pid={pid} host={hostname} "
        f"GOMAXPROCS={ncpu} OS={goos} ARCH={_arch()}"
    )
    log.log(version_line)
    env_banner = os.environ.get("GWH_BANNER", "")
    env_port = os.environ.get("PORT", "")
    log.log(f"GWH_BANNER='{_b(env_banner)}' PORT='{_b(env_port)}'")
    who = _user()
    if isinstance(who, str):
        log.log(f"current user error: {who}")
        user, uid = "?", "?"
    else:
        user, uid = who
        log.log(f"user: {user} (uid: {uid})")

    from .flags import FlagError, defaults, parse, usage

    defs = defaults(env_port, env_banner)
    try:
        opts = parse(args[1:], defs)
    except FlagError as err:
        log.flush()
        text = (err.message + "\n" if err.message else "") + usage(prog, defs)
        os.write(2, text.encode("utf-8", "surrogateescape"))
        return err.code

    if opts.touch:
        touch = _b(opts.touch)
        log.log(f"dumpVersion: writing to touch={touch}")
        try:
            fd = os.open(opts.touch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
            try:
                os.write(fd, version_line.encode("latin-1"))
            finally:
                os.close(fd)
        except OSError as err:
            from .goformat import errno_text

            log.log(f"dumpVersion: touch={touch}: open {touch}: {errno_text(err)}")

    from .goformat import duration, parse_duration

    quota_time = 0
    if opts.quota_time:
        s = opts.quota_time
        if s[-1].isascii() and s[-1].isdigit():
            s += "s"
        try:
            quota_time = parse_duration(s)
        except ValueError as err:
            log.log(f"quotaTime: {_b(str(err))}")
    keepalive = not opts.disable_keepalive
    log.log(f"banner: {_b(opts.banner)}")
    log.log(f"keepalive: {'true' if keepalive else 'false'}")
    log.log(f"burnCpu={'true' if opts.burn_cpu else 'false'}")
    log.log(f"quotaTime={duration(quota_time)}")
    log.log(
        f"requests quota={opts.quota} (0=unlimited) "
        f"exitOnQuota={'true' if opts.exit_on_quota else 'false'} quotaStatus={opts.quota_status}"
    )
    tls = True
    if not os.path.exists(opts.key):
        log.log(f"TLS key file not found: {_b(opts.key)} - disabling TLS")
        tls = False
    if not os.path.exists(opts.cert):
        log.log(f"TLS cert file not found: {_b(opts.cert)} - disabling TLS")
        tls = False
    if opts.version:
        log.flush()
        return 0

    return _serve(
        opts=opts,
        log=log,
        clock=clock,
        start_mono=start_mono,
        args_shown=args_shown,
        runtime=runtime,
        pid=pid,
        user=user,
        uid=uid,
        quota_time=quota_time,
        tls=tls,
    )


def _serve(
    *,
    opts: object,
    log: object,
    clock: object,
    start_mono: int,
    args_shown: list[str],
    runtime: str,
    pid: int,
    user: str,
    uid: str,
    quota_time: int,
    tls: bool,
) -> int:
    from .config import ServerConfig
    from .flags import Options
    from .handlers import App, AppInfo, RedirectApp
    from .log import Clock, Logger
    from .server import Listener, ListenError, Server, exit_process, listen, load_tls, ports

    assert isinstance(opts, Options)
    assert isinstance(log, Logger)
    assert isinstance(clock, Clock)
    if opts.burn_cpu:
        log.log("burnCpu: enabling path /burncpu")
    cwd = os.getcwdb()
    log.log(f"mapping www path /www/ to directory {cwd.decode('latin-1')}")
    addr, https_addr = _b(opts.addr), _b(opts.https_addr)
    log.log(f"using TCP ports HTTP={addr} HTTPS={https_addr} TLS={'true' if tls else 'false'}")
    cfg = ServerConfig.from_env()
    exit_now = exit_process(log)
    info = AppInfo(
        version=__version__,
        runtime=runtime,
        goos=sys.platform,
        goarch=_arch(),
        argv=[_b(a) for a in args_shown],
        pid=pid,
        user=user,
        uid=uid,
        addr=addr,
        https_addr=https_addr,
        banner=_b(opts.banner),
        keepalive=not opts.disable_keepalive,
        burn_cpu=opts.burn_cpu,
        quota=opts.quota,
        quota_status=opts.quota_status,
        exit_on_quota=opts.exit_on_quota,
        quota_time_ns=quota_time,
        www_root=cwd,
        key_path=os.path.abspath(os.fsencode(opts.key)),
        start_mono_ns=start_mono,
    )
    app = App(info, cfg, log, clock, exit_now)
    listeners: list[Listener] = []
    if not tls:
        log.log(f"serving HTTP on TCP {addr}")
        try:
            listeners.append(Listener(listen(opts.addr), app))
        except ListenError as err:
            log.log(f"listenAndServe: {addr}: {_b(str(err))}")
            log.flush()
            return 1
    else:
        http_port = ports(opts.addr, "80")
        https_port = ports(opts.https_addr, "443")
        redirect = http_port != https_port
        if redirect:
            log.log(f"installing redirect from HTTP={addr} to HTTPS={_b(https_port)}")
        log.log(f"serving HTTPS on TCP {https_addr}")
        try:
            sock = listen(opts.https_addr)
            ctx = load_tls(opts.cert, opts.key)
            listeners.append(Listener(sock, app, ctx))
        except ListenError as err:
            log.log(f"listenAndServeTLS: {https_addr}: {_b(str(err))}")
            log.flush()
            return 1
        if redirect:
            try:
                rapp = RedirectApp(_b(https_port), clock, not opts.disable_keepalive)
                listeners.append(Listener(listen(opts.addr), rapp))
            except ListenError as err:
                log.log(f"redirect: listenAndServe: {addr}: {_b(str(err))}")
                log.flush()
                return 1
    server = Server(cfg, log, exit_now)
    server.run(listeners)
    log.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
