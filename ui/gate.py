"""A gate for heavy computations: at most as many run at once as this process has cores.

Thirty students who open distinct links at once start thirty script threads, and each one builds
its forward pass, its tables and its chart specs at the same time. On one core that buys nothing:
the work is the same, only interleaved, and meanwhile every thread holds its intermediates, so the
server's memory peaks at thirty views' worth and glibc grows an arena per thread to hold them
(docs/class-load.md). Behind the gate, the rest wait in line holding nothing but their place; the
class is served in about the same total time, the first readers much sooner, and the peak is a
few views' worth.

Where it is taken (docs/class-load.md, patch 5):

- Around a whole page run (``with heavy.hold(): navigation.run()`` in streamlit_app.py), before
  any cache lock, so it cannot deadlock: a thread waiting for a slot holds nothing another run
  could want. Work that is long on purpose (a training run, a benchmark) steps out with
  ``heavy.released()``, which ``ui.jobs.run_job`` does for every job, or it would hold up every
  other reader for minutes.
- At the top of a heavy fragment (``@st.fragment`` outside, ``@heavy`` inside). A fragment rerun
  runs the fragment's function alone, not the entry script, so the page gate does not cover it;
  taken first thing in the fragment, before any cache lock, it is as safe as the page gate, and in
  a full run it is a pass-through (this thread holds the page's slot already).

Never on the inside of a cached view (``@st.cache_data`` around ``@heavy``) in this app: a miss
holds Streamlit's per-key lock while it computes, and waiting for a slot while holding one could
deadlock with a page run inside the gate that wants the same key (patch 1 of the note did that,
with no page gate). A thread that already holds a slot passes straight through. As a safety net,
a thread that has waited ``WAIT_LIMIT_S`` goes ahead without a slot (counted in ``overflowed``): a
wait cycle nobody foresaw costs that long once, never the server. Pages run alone (AppTest, the
pages-folder cold start) run outside the gate, where ``released()`` just runs its body.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def cores(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The cores this process can use: its CPU affinity (`taskset`, a container's cpuset), narrowed
    by a cgroup CPU quota where one is set (a container limited to one core's time may still see
    every core of its host: its affinity lists them all, `os.cpu_count()` too)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS)
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """The CPU time the container may use, in cores (cgroup v2 ``cpu.max``, v1 ``cfs_quota_us``),
    or None where there is no limit or no cgroup to read."""
    base = Path(root)
    try:
        quota, period = (base / "cpu.max").read_text().split()[:2]  # v2: "max 100000" or "50000 100000"
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((base / "cpu" / "cpu.cfs_quota_us").read_text())  # v1: -1 for no limit
        period_us = int((base / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


WAIT_LIMIT_S = 60.0  # longer than a class of 30 distinct views on one core takes (~15 s)


class Gate:
    """A counting semaphore with per-thread reentrancy and counters a test or a log can read."""

    def __init__(self, slots: int, wait_limit_s: float = WAIT_LIMIT_S):
        self.slots = slots
        self.wait_limit_s = wait_limit_s
        self.overflowed = 0  # threads that went ahead without a slot after waiting wait_limit_s
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
        got = self._wait_for_slot()
        if not got:  # waited too long: run without a slot (and hold none, so nothing to give back)
            yield
            return
        self._local.depth = 1
        self._local.slotless = False
        try:
            yield
        finally:
            self._local.depth = 0
            slotless, self._local.slotless = self._local.slotless, False
            with self._lock:
                self.passed += 1
                if not slotless:  # a released() that came back without a slot holds none to give
                    self.running -= 1
            if not slotless:
                self._sem.release()

    def _wait_for_slot(self) -> bool:
        """Wait up to ``wait_limit_s`` for a slot, keeping the counters; False if none came."""
        with self._lock:
            self.waiting += 1
        got = self._sem.acquire(timeout=self.wait_limit_s)
        with self._lock:
            self.waiting -= 1
            if got:
                self.running += 1
                self.most_running = max(self.most_running, self.running)
            else:
                self.overflowed += 1
        return got

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Step out of the gate for work that is long on purpose (a training run, a benchmark):
        this thread's slot goes back for the body and is waited for again after it. A thread
        outside the gate just runs the body.

        Waiting to come back in holds nothing (the body has finished, and ``ui.jobs.run_job`` has
        let go of its lock), so it cannot deadlock; like ``hold``, it goes on without a slot after
        ``wait_limit_s``, and then the enclosing ``hold`` has none to give back.
        """
        depth = getattr(self._local, "depth", 0)
        if not depth:
            yield
            return
        self._local.depth = 0
        with self._lock:
            self.running -= 1
        self._sem.release()
        try:
            yield
        finally:
            got = self._wait_for_slot()
            self._local.depth = depth
            if not got:
                self._local.slotless = True

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
gated = heavy  # ``@gated`` under ``@st.fragment`` on a heavy fragment; ``with heavy.hold():`` around a block
