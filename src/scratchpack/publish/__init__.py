"""Publishers: where a built image goes (tarball, OCI layout, registry), and several at once.

Each sink is one module adapting an ``oci`` writer; they never import one another. The pipeline
builds a :class:`MultiPublisher` from the chosen outputs (ko's ``makePublisher``).
"""

from scratchpack.publish.base import Outcome, Publisher, Release
from scratchpack.publish.multi import MultiPublisher

__all__ = ["MultiPublisher", "Outcome", "Publisher", "Release"]
