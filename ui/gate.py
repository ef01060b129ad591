"""A gate for heavy computations: at most as many run at once as this process has cores.

Thirty students who open distinct links at once start thirty script threads, and each one builds
its forward pass, its tables and its chart specs at the same time. On one core that buys nothing:
the work is the same, only interleaved, and meanwhile every thread holds its intermediates, so the
server's memory peaks at thirty views' worth and glibc grows an arena per thread to hold them
(docs/class-load.md). Behind the gate, the rest wait in line holding nothing but their place; the
class is served in about the same total time, the first readers much sooner, and the peak is a
few views' worth.

Put it on the *cache-miss* side of a cached view (``@st.cache_data`` outside, ``@gated`` inside),
so a cache hit never waits. A thread that already holds a slot passes straight through, so one
gated view may call another (a view that reads ``sequence_view`` inside its own body) without
deadlocking on a one-core server. Never gate work that runs for long on purpose (a training run,
a benchmark): those have their own one-at-a-time locks (``core.busy``) and would hold up every
other reader.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def cores() -> int:
    """The cores this process may run on (its CPU affinity: `taskset`, a container's cpuset),
    not the machine's count, which a container does not narrow."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS)
        return max(1, os.cpu_count() or 1)


class Gate:
    """A counting semaphore with per-thread reentrancy and counters a test or a log can read."""

    def __init__(self, slots: int):
        self.slots = slots
        self._sem = threading.BoundedSemaphore(slots)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.running = 0  # computations inside the gate now
        self.waiting = 0  # threads queued at it now
        self.most_running = 0  # the largest ``running`` seen: never above ``slots``
        self.passed = 0  # computations that went through, in all

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Wait for a slot (unless this thread holds one already), run the body, give it back."""
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        with self._lock:
            self.waiting += 1
        self._sem.acquire()
        with self._lock:
            self.waiting -= 1
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            with self._lock:
                self.running -= 1
                self.passed += 1
            self._sem.release()

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorator form: ``@gate`` runs every call of ``fn`` inside ``hold()``."""

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with self.hold():
                return fn(*args, **kwargs)

        return wrapper


# One gate per server process, sized when this module is first imported. HEAVY_SLOTS overrides the
# core count (a deploy that measures otherwise, or 0 < n for an experiment); it is read once.
def _slots_from_env() -> int:
    raw = os.environ.get("HEAVY_SLOTS", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else cores()


heavy = Gate(_slots_from_env())
gated = heavy  # ``@gated`` on a cached view's body; ``with heavy.hold():`` around a block
