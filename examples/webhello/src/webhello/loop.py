"""A small single-threaded event loop: fd readiness, timers, call_soon, signals, a worker pool.

Why not asyncio: `import asyncio` costs ~40 ms here (it eagerly imports ssl, concurrent.futures
with logging, inspect, subprocess, typing, re), which alone is over the 30 ms cold-start budget of
the static executable. webhello never needed coroutines or futures: its transport already ran on
add_reader/add_writer. This module provides those primitives and nothing else, on modules that
are built in or cheap to import (select, _signal, _thread, _queue, _heapq, os, time; no enum).

Limits, on purpose: callbacks only (no coroutines, futures or tasks); level-triggered epoll
(`select.poll` where epoll is missing); one loop per process, run in the main thread (signals);
a callback that raises is reported on stderr and the loop goes on, like asyncio.
"""

from __future__ import annotations

import os
import select
import time
from _heapq import heappop, heappush  # heapq.py only re-exports these (its 16 KB .pyc at start)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    import signal as _signal  # typed API; at run time the same functions from the C module
    from collections.abc import Callable
else:
    import _signal  # signal.py builds IntEnums at import (~5 ms of cold start)

_IN = select.POLLIN
_OUT = select.POLLOUT
_ERR = select.POLLERR | select.POLLHUP
_READ = _IN | _ERR  # an error or hang-up wakes both sides, as asyncio's selectors do
_WRITE = _OUT | _ERR


def _noop(signum: int, frame: object) -> None:
    """The Python-level handler: the C handler has already written signum to the wakeup fd."""


class TimerHandle:
    """What call_later returns: cancel() stops a callback that has not run yet."""

    __slots__ = ("args", "callback", "cancelled")

    def __init__(self, callback: Callable[..., object], args: tuple[object, ...]) -> None:
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """Runs callbacks when fds are ready, when timers are due, and soon; until stop()."""

    def __init__(self) -> None:
        if hasattr(select, "epoll"):
            self._poller: select.epoll | select.poll = select.epoll()
            self._ms = False
        else:  # pragma: no cover - non-Linux fallback
            self._poller = select.poll()
            self._ms = True
        self._readers: dict[int, Callable[[], object]] = {}
        self._writers: dict[int, Callable[[], object]] = {}
        self._ready: list[tuple[Callable[..., object], tuple[object, ...]]] = []
        # Appended to by other threads (list.append and pop(0) are atomic under the GIL).
        self._pending: list[tuple[Callable[..., object], tuple[object, ...]]] = []
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._seq = 0
        self._signals: dict[int, tuple[Callable[..., object], tuple[object, ...]]] = {}
        self._wake_r = -1
        self._wake_w = -1
        self._pool: _Pool | None = None
        self._running = False
        self.time = time.monotonic
        # Where a callback's exception is reported (the server points this at its logger).
        self.report: Callable[[str], object] = _stderr

    # --- readiness ----------------------------------------------------------------------------

    def _update(self, fd: int, old: int, new: int) -> None:
        p = self._poller
        try:
            if not new:
                p.unregister(fd)
            elif not old:
                p.register(fd, new)
            else:
                p.modify(fd, new)
        except OSError:
            if new:
                raise
            # Unregistering an fd that is already closed: nothing left to remove.

    def _mask(self, fd: int) -> int:
        return (_IN if fd in self._readers else 0) | (_OUT if fd in self._writers else 0)

    def add_reader(self, fd: int, callback: Callable[[], object]) -> None:
        """Call `callback()` whenever fd is readable (replaces an earlier reader of fd)."""
        old = self._mask(fd)
        self._readers[fd] = callback
        if not old & _IN:
            self._update(fd, old, old | _IN)

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._update(fd, _IN | self._mask(fd), self._mask(fd))

    def add_writer(self, fd: int, callback: Callable[[], object]) -> None:
        """Call `callback()` whenever fd is writable (replaces an earlier writer of fd)."""
        old = self._mask(fd)
        self._writers[fd] = callback
        if not old & _OUT:
            self._update(fd, old, old | _OUT)

    def remove_writer(self, fd: int) -> None:
        if self._writers.pop(fd, None) is not None:
            self._update(fd, _OUT | self._mask(fd), self._mask(fd))

    # --- callbacks and timers -----------------------------------------------------------------

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        """Run `callback(*args)` after the current round of I/O callbacks."""
        self._ready.append((callback, args))

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: object) -> None:
        """call_soon from another thread: queued, then the loop is woken up."""
        self._pending.append((callback, args))
        try:  # noqa: SIM105 (contextlib costs ~5 ms of cold start)
            os.write(self._wakeup_fd(), b"\0")
        except OSError:  # pipe full (the loop is awake anyway) or closed at exit
            pass

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: object
    ) -> TimerHandle:
        """Run `callback(*args)` once, `delay` seconds from now (loop.time())."""
        h = TimerHandle(callback, args)
        self._seq += 1
        heappush(self._timers, (self.time() + delay, self._seq, h))
        return h

    # --- signals ------------------------------------------------------------------------------

    def _wakeup_fd(self) -> int:
        """The write end of the self-pipe, created on first use (signals, other threads)."""
        if self._wake_w < 0:
            r, w = os.pipe()
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            self._wake_r, self._wake_w = r, w
            self.add_reader(r, self._on_wakeup)
        return self._wake_w

    def _on_wakeup(self) -> None:
        try:
            data = os.read(self._wake_r, 4096)
        except (BlockingIOError, InterruptedError):
            data = b""
        for signum in data:
            if signum:  # 0 is a thread's wake-up byte; anything else a signal number
                handler = self._signals.get(signum)
                if handler is not None:
                    self._ready.append(handler)
        pending = self._pending
        while pending:
            self._ready.append(pending.pop(0))

    def add_signal_handler(self, sig: int, callback: Callable[..., object], *args: object) -> None:
        """Run `callback(*args)` on the loop when `sig` arrives (main thread only)."""
        _signal.set_wakeup_fd(self._wakeup_fd(), warn_on_full_buffer=False)
        self._signals[sig] = (callback, args)
        _signal.signal(sig, _noop)

    # --- blocking work ------------------------------------------------------------------------

    def run_in_thread(self, work: Callable[[], object], done: Callable[[], object]) -> None:
        """Run `work()` in a worker thread, then `done()` on the loop (even if work raised)."""
        if self._pool is None:
            self._pool = _Pool(self)
        self._pool.submit(work, done)

    # --- running ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Make run_forever return after the current round."""
        self._running = False

    def run_forever(self) -> None:
        self._running = True
        poll = self._poller.poll
        readers = self._readers
        writers = self._writers
        timers = self._timers
        ms = self._ms
        while self._running:
            if self._ready:
                timeout: float = 0
            elif timers:
                timeout = max(0.0, timers[0][0] - self.time())
            else:
                timeout = -1
            if ms and timeout > 0:
                timeout = int(timeout * 1000) + 1
            for fd, ev in poll(timeout):
                if ev & _READ:
                    cb = readers.get(fd)
                    if cb is not None:
                        try:
                            cb()
                        except Exception as exc:
                            self._error(cb, exc)
                if ev & _WRITE:
                    cb = writers.get(fd)
                    if cb is not None:
                        try:
                            cb()
                        except Exception as exc:
                            self._error(cb, exc)
            if timers:
                now = self.time()
                while timers and timers[0][0] <= now:
                    h = heappop(timers)[2]
                    if not h.cancelled:
                        try:
                            h.callback(*h.args)
                        except Exception as exc:
                            self._error(h.callback, exc)
            ready = self._ready
            if ready:
                self._ready = []
                for callback, args in ready:
                    try:
                        callback(*args)
                    except Exception as exc:
                        self._error(callback, exc)

    def _error(self, callback: object, exc: BaseException) -> None:
        import traceback

        text = "".join(traceback.format_exception(exc))
        self.report(f"webhello: exception in callback {callback!r}\n{text}")


def _stderr(text: str) -> None:
    os.write(2, text.encode("utf-8", "replace"))


class _Pool:
    """Worker threads started on demand (up to asyncio's default size); `_thread` + `_queue`.

    All bookkeeping happens on the loop thread; workers only take jobs and post completions.
    """

    def __init__(self, loop: Loop) -> None:
        import _queue

        self._loop = loop
        loop._wakeup_fd()  # made here, on the loop thread, not lazily by a worker
        self._jobs: _queue.SimpleQueue[tuple[Callable[[], object], Callable[[], object]]] = (
            _queue.SimpleQueue()
        )
        self._max = min(32, (os.cpu_count() or 1) + 4)
        self._threads = 0
        self._busy = 0

    def submit(self, work: Callable[[], object], done: Callable[[], object]) -> None:
        self._busy += 1
        if self._busy > self._threads and self._threads < self._max:
            import _thread

            _thread.start_new_thread(self._worker, ())
            self._threads += 1
        self._jobs.put((work, done))

    def _finished(self, done: Callable[[], object]) -> None:
        self._busy -= 1
        done()

    def _worker(self) -> None:
        loop = self._loop
        get = self._jobs.get
        while True:
            work, done = get()
            try:
                work()
            except Exception as exc:
                loop.call_soon_threadsafe(loop._error, work, exc)
            loop.call_soon_threadsafe(self._finished, done)
