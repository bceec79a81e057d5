"""Go `flag` package semantics for webhello's command line (usage text, syntax, errors).

Why not argparse: the reference's flag syntax (`-f v`, `-f=v`, `--f`, bools only as `-f=false`,
stop at the first non-flag), its usage text and its error messages are part of the contract.
"""

from __future__ import annotations

from .goformat import quote

_BOOL_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_BOOL_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1


class FlagError(Exception):
    """A Go flag-package failure: `message` (may be empty) then usage, exit `code` (0 or 2)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Options:
    """Parsed flag values (strings keep their raw text; Go keeps them as typed).

    A plain slotted class rather than a NamedTuple: `typing` is not imported at start-up.
    """

    __slots__ = (
        "addr",
        "banner",
        "burn_cpu",
        "cert",
        "disable_keepalive",
        "exit_on_quota",
        "https_addr",
        "key",
        "quota",
        "quota_status",
        "quota_time",
        "touch",
        "version",
    )

    def __init__(
        self,
        *,
        addr: str,
        banner: str,
        burn_cpu: bool,
        cert: str,
        disable_keepalive: bool,
        exit_on_quota: bool,
        https_addr: str,
        key: str,
        quota: int,
        quota_status: int,
        quota_time: str,
        touch: str,
        version: bool,
    ) -> None:
        self.addr = addr
        self.banner = banner
        self.burn_cpu = burn_cpu
        self.cert = cert
        self.disable_keepalive = disable_keepalive
        self.exit_on_quota = exit_on_quota
        self.https_addr = https_addr
        self.key = key
        self.quota = quota
        self.quota_status = quota_status
        self.quota_time = quota_time
        self.touch = touch
        self.version = version


# name -> (kind, usage); kinds: "string", "bool", "int"
_FLAGS: dict[str, tuple[str, str]] = {
    "addr": ("string", "HTTP listen address (env var PORT sets default port)"),
    "banner": ("string", "banner will be displayed (env var GWH_BANNER sets default banner)"),
    "burnCpu": ("bool", "enable /burncpu path"),
    "cert": ("string", "TLS cert file"),
    "disableKeepalive": ("bool", "disable keepalive"),
    "exitOnQuota": ("bool", "exit if quota reached"),
    "httpsAddr": ("string", "HTTPS listen address"),
    "key": ("string", "TLS key file"),
    "quota": (
        "int",
        "if defined, service is terminated after serving that amount of requests",
    ),
    "quotaStatus": ("int", "http status code for quota reached"),
    "quotaTime": ("string", "if defined, service is terminated after serving that amount of time"),
    "touch": ("string", "write version info into this file, if specified"),
    "version": ("bool", "does not actually run"),
}


def defaults(env_port: str, env_banner: str) -> dict[str, object]:
    """Flag defaults; PORT and GWH_BANNER (when non-empty) change those of -addr and -banner."""
    return {
        "addr": ":" + env_port if env_port else ":8080",
        "banner": env_banner if env_banner else "banner default",
        "burnCpu": False,
        "cert": "cert.pem",
        "disableKeepalive": False,
        "exitOnQuota": False,
        "httpsAddr": ":8443",
        "key": "key.pem",
        "quota": 0,
        "quotaStatus": 500,
        "quotaTime": "",
        "touch": "",
        "version": False,
    }


def usage(prog: str, defs: dict[str, object]) -> str:
    """flag.Usage output: `Usage of <prog>:` then PrintDefaults, flags sorted by name."""
    out = [f"Usage of {prog}:\n"]
    for name in sorted(_FLAGS):
        kind, text = _FLAGS[name]
        line = f"  -{name}"
        if kind != "bool":
            line += " " + kind
        line += "\n    \t" + text
        d = defs[name]
        if kind == "string" and d != "":
            line += f" (default {quote(str(d))})"
        elif kind == "int" and d != 0:
            line += f" (default {d})"
        elif kind == "bool" and d:
            line += " (default true)"
        out.append(line + "\n")
    return "".join(out)


def parse_int(s: str) -> int:
    """strconv.ParseInt(s, 0, 64): raises ValueError("parse error"/"value out of range")."""
    body = s[1:] if s[:1] in ("+", "-") else s
    neg = s[:1] == "-"
    base = 10
    digits = body
    low = body.lower()
    if low.startswith("0x"):
        base, digits = 16, body[2:]
    elif low.startswith("0b"):
        base, digits = 2, body[2:]
    elif low.startswith("0o"):
        base, digits = 8, body[2:]
    elif body.startswith("0") and len(body) > 1:
        base, digits = 8, body[1:]
    if "_" in digits:
        # underscores only with a base prefix (base 0), between digits
        if base == 10 or digits.startswith("_") or digits.endswith("_") or "__" in digits:
            raise ValueError("parse error")
        if base == 8 and not low.startswith("0o") and digits.startswith("_"):
            raise ValueError("parse error")
        digits = digits.replace("_", "")
    if not digits or not all(c.isascii() and c.isalnum() for c in digits):
        raise ValueError("parse error")
    try:
        v = int(digits, base)
    except ValueError:
        raise ValueError("parse error") from None
    v = -v if neg else v
    if not _I64_MIN <= v <= _I64_MAX:
        raise ValueError("value out of range")
    return v


def parse(args: list[str], defs: dict[str, object]) -> Options:
    """FlagSet.Parse with ExitOnError semantics expressed as FlagError."""
    vals = dict(defs)
    i = 0
    while i < len(args):
        s = args[i]
        if len(s) < 2 or s[0] != "-":
            break
        minuses = 1
        if s[1] == "-":
            minuses = 2
            if len(s) == 2:  # "--" terminates the flags
                break
        name = s[minuses:]
        if not name or name[0] in "-=":
            raise FlagError(f"bad flag syntax: {s}", 2)
        i += 1
        has_value = False
        value = ""
        eq = name.find("=", 1)
        if eq > 0:
            name, value, has_value = name[:eq], name[eq + 1 :], True
        spec = _FLAGS.get(name)
        if spec is None:
            if name in ("help", "h"):
                raise FlagError("", 0)
            raise FlagError(f"flag provided but not defined: -{name}", 2)
        kind = spec[0]
        if kind == "bool":
            if not has_value:
                value = "true"
            if value in _BOOL_TRUE:
                vals[name] = True
            elif value in _BOOL_FALSE:
                vals[name] = False
            else:
                raise FlagError(f"invalid boolean value {quote(value)} for -{name}: parse error", 2)
            continue
        if not has_value:
            if i >= len(args):
                raise FlagError(f"flag needs an argument: -{name}", 2)
            value = args[i]
            i += 1
        if kind == "int":
            try:
                n = parse_int(value)
            except ValueError as err:
                raise FlagError(
                    f"invalid value {quote(value)} for flag -{name}: {err}", 2
                ) from None
            if name == "quotaStatus" and not 100 <= n <= 999:
                # Deviation 3: net/http would panic on every quota response instead.
                raise FlagError(
                    f"invalid value {quote(value)} for flag -{name}: "
                    "http status code must be in 100..999",
                    2,
                )
            vals[name] = n
        else:
            vals[name] = value
    return Options(
        addr=str(vals["addr"]),
        banner=str(vals["banner"]),
        burn_cpu=bool(vals["burnCpu"]),
        cert=str(vals["cert"]),
        disable_keepalive=bool(vals["disableKeepalive"]),
        exit_on_quota=bool(vals["exitOnQuota"]),
        https_addr=str(vals["httpsAddr"]),
        key=str(vals["key"]),
        quota=int(str(vals["quota"])),
        quota_status=int(str(vals["quotaStatus"])),
        quota_time=str(vals["quotaTime"]),
        touch=str(vals["touch"]),
        version=bool(vals["version"]),
    )
