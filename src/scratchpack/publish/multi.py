"""Several publishers as one (ko's ``MultiPublisher``): each gets the same release, in order,
all or nothing: when one fails, the outputs written before it are put back as they were."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

from scratchpack.publish.base import Outcome, Publisher, Release

Step = Callable[[str], AbstractContextManager[object]]


class MultiPublisher:
    """Runs publishers in order; ``step`` wraps each one in a progress line."""

    def __init__(self, publishers: Sequence[Publisher], *, step: Step | None = None) -> None:
        self.publishers = tuple(publishers)
        self._step: Step = step or (lambda _what: nullcontext())

    def describe(self) -> str:
        return ", ".join(p.describe() for p in self.publishers)

    def publish(self, release: Release) -> Outcome:
        outcome = Outcome()
        undos = []
        try:
            for publisher in self.publishers:
                undos.append(publisher.undo_point())  # before it writes: its own partial output
                with self._step(publisher.describe()):
                    outcome += publisher.publish(release)
        except BaseException:
            for undo in reversed(undos):
                undo.restore()
            raise
        for undo in undos:
            undo.discard()
        return outcome
