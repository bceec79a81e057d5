"""Helpers shared by scratchpack's tests and benchmarks: real servers, sandboxes, engines.

An installed package (``scripts/dev-env`` installs it into .venv) so that ``bench/`` scripts
import it like any library, with no ``sys.path`` edits. Modules:

- ``net``: free ports and a small HTTP GET for probes.
- ``rootfs``: run an executable in an empty root filesystem as uid 1000 (unshare + chroot).
- ``static_sandbox``: a script that execs a program in an empty read-only root (no /tmp, /proc).
- ``engines``: drive docker (a private dockerd) and podman as the tests need them.
- ``registry_server``: the CNCF distribution registry and test images for push tests.
"""
