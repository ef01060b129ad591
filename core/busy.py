"""One at a time per server: a training run or a benchmark holds the machine while it runs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class Busy(RuntimeError):
    """Another session holds this one-at-a-time section; the page tells its reader to wait."""


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
