"""Long jobs on a shared server: one lock, one store of finished results, one way to run them.

A benchmark, a repeat in fresh processes or a training run takes seconds to minutes and uses the
whole machine. Three rules, kept here once for every page:

- **One at a time per server.** Two benchmarks at once would time each other, and a training run
  beside a benchmark would slow both; a second reader is told to wait (``Busy``), never queued.
- **Out of the page gate while it runs** (``ui.gate``): a job holds the server's job lock, not one
  of the few page-run slots, so other readers' pages are served meanwhile.
- **Never started by opening a link.** ``st.cache_data`` cannot be asked "do you have this?"
  without computing on a miss; ``stored(key)`` can, so a page only shows what a button made.
- **Kept for every reader of the same settings.** A finished result is stored server-side under
  a key of plain values (the settings that made it), so a shared link shows it without running
  again; every reader gets a deep copy, so no session can change another's table.

    item = run_job(("timing", dtype, batch, …), lambda progress: run(…, progress=progress))
    item = stored(("timing", dtype, batch, …))  # {"result", "finished", "wall_s"} or None
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import streamlit as st

from ui.gate import heavy

__all__ = ["Busy", "OneAtATime", "ResultStore", "exclusive", "result_store", "stored", "run_job", "STORED_RESULTS"]

STORED_RESULTS = 48  # finished results kept per server process, least recently viewed dropped first
BUSY_MESSAGE = ("Another reader's long job (a benchmark or a training run) is running on this server right now, and "
                "two at once would slow each other down. Press the button again in a few seconds.")
Progress = Callable[[float, str], None]



class Busy(RuntimeError):
    """Another session holds the one-at-a-time section; the page tells its reader to wait."""


class OneAtATime:
    """A process-wide lock that refuses (raises Busy) instead of queueing readers indefinitely."""

    def __init__(self, message: str):
        self._lock = threading.Lock()
        self.message = message

    @contextlib.contextmanager
    def hold(self, timeout_s: float = 0.0) -> Iterator[None]:
        """Hold the lock, or raise Busy after ``timeout_s`` seconds (at once when 0)."""
        acquired = self._lock.acquire(timeout=timeout_s) if timeout_s > 0 else self._lock.acquire(blocking=False)
        if not acquired:
            raise Busy(self.message)
        try:
            yield
        finally:
            self._lock.release()


# One long job at a time per server process, whatever page started it.
exclusive = OneAtATime("another long job is running on this server").hold


class ResultStore:
    """A small least-recently-used map from a job's key to its finished result, copied in and out."""

    def __init__(self, capacity: int = STORED_RESULTS):
        self.capacity = capacity
        self._items: OrderedDict[tuple, dict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> dict | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return copy.deepcopy(item)

    def put(self, key: tuple, item: dict) -> None:
        item = copy.deepcopy(item)
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def discard(self, key: tuple) -> None:
        """Forget the result under ``key``, if any (a test that must start from nothing stored)."""
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


@st.cache_resource(show_spinner=False)
def result_store() -> ResultStore:
    """The server's one store of finished jobs, shared by every session (it copies on get and put)."""
    return ResultStore()


def _check_key(key: tuple) -> tuple:
    """Keys are tuples of plain values (str, int, float, bool, None, nested tuples): settings, not objects."""
    if not isinstance(key, tuple):
        raise TypeError(f"a job key is a tuple of plain values, got {type(key).__name__}")
    for part in key:
        if isinstance(part, tuple):
            _check_key(part)
        elif not (part is None or isinstance(part, (str, int, float, bool))):
            raise TypeError(f"a job key holds plain values only, got {type(part).__name__}")
    return key


def stored(key: tuple) -> dict | None:
    """The finished job under ``key``, {"result", "finished", "wall_s"}, or None; never runs anything."""
    return result_store().get(_check_key(key))


def run_job(key: tuple, fn: Callable[[Progress], Any], *, busy_message: str = BUSY_MESSAGE,
            waiting_text: str = "Waiting for the machine…", timeout_s: float = 2.0) -> dict | None:
    """Run ``fn(progress)`` alone on this server with a progress bar; store and return its result.

    ``progress(fraction, message)`` moves the bar. If another session holds the server's lock for
    ``timeout_s``, the reader sees ``busy_message`` and None comes back. What ``fn`` raises passes
    through (the page words it); nothing is stored then. The page run steps out of ``ui.gate``'s
    page gate first (before waiting for the lock, so a waiting reader holds no slot either) and
    comes back in when the job is done.
    """
    _check_key(key)
    bar = st.progress(0.0, text=waiting_text)

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message[:1].upper() + message[1:])

    try:
        with heavy.released(), exclusive(timeout_s=timeout_s):
            started = time.time()
            result = fn(progress)
            item = {"result": result, "finished": time.time(), "wall_s": time.time() - started}
            result_store().put(key, item)
            return item
    except Busy:
        st.warning(busy_message, icon=":material/hourglass_top:")
        return None
    finally:
        bar.empty()
