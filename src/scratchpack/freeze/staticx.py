"""Runs staticx on the PyInstaller executable to make it fully static.

staticx is run through a small wrapper (``_scripts/staticx_reproducible.py``, copied beside the
output and run by the build venv's Python) that normalises its tar archive (mtime from
SOURCE_DATE_EPOCH, uid/gid 0, no user names, fixed modes): staticx copies libraries into temp files
and stores their times, owners and umask-dependent modes, which breaks byte-for-byte builds.
"""

from __future__ import annotations

from pathlib import Path

from scratchpack._ctx import step
from scratchpack._types import Runner
from scratchpack.errors import FreezeError
from scratchpack.freeze._scripts import script_path
from scratchpack.freeze.env import BuildEnv
from scratchpack.freeze.spec import Compression


def run_staticx(
    env: BuildEnv,
    onefile: Path,
    output: Path,
    *,
    compression: Compression,
    source_date_epoch: int,
    runner: Runner,
) -> Path:
    """Bundle ``onefile`` with its libraries and a static loader into ``output`` (mode 0755)."""
    wrapper = output.parent / "staticx_reproducible.py"
    wrapper.write_bytes(script_path("staticx_reproducible").read_bytes())
    cmd = [str(env.python), str(wrapper), "--strip"]
    if compression == "none":
        cmd.append("--no-compress")
    cmd += [str(onefile), str(output)]
    extra = {"SOURCE_DATE_EPOCH": str(source_date_epoch), "TMPDIR": str(output.parent)}
    with step(f"making it static with staticx (compression: {compression})"):
        proc = runner(cmd, cwd=output.parent, env=env.environ(extra))
    if proc.returncode != 0 or not output.is_file():
        raise FreezeError(
            f"staticx failed (exit {proc.returncode})",
            tool="staticx",
            output=proc.stdout,
            hint="a bundled library may carry an RPATH/RUNPATH or an unsupported format",
        )
    output.chmod(0o755)  # staticx writes 0700; the image runs it as a non-root user
    return output
