"""The clock: how one block of calls of one variant is timed, and which clock times it.

A block keeps its fastest call once its calls have stopped getting faster; with one CPU thread the
clock is that thread's CPU time (waiting for a core held by another program is left out),
otherwise torch.utils.benchmark's wall clock, which synchronizes CUDA.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.benchmark.utils.timer import timer as bench_clock

from core.device import torch_threads

BLOCK_MIN_S = 0.002  # a block shorter than this is mostly clock and loop overhead
PER_CALL_MIN_S = 20e-6  # calls shorter than this are timed as a block, not one by one
BLOCK_MAX_S = 0.025  # longer blocks would pair a variant with gemm across a longer spell: more rounds instead
# A block keeps calling until its calls stop speeding up (_time_one_block): settled once
# SETTLE_CALLS calls in a row were none more than SETTLE_GAIN faster than the best so far, or the
# block has taken SETTLE_MAX_S (or its own number of calls, if that is longer). Memory-heavy
# variants need it: on the development machine their first calls after other work or a pause ran
# up to twice as slow, speeding up over tens of milliseconds (docs/timing.md, "Ramping up").
SETTLE_GAIN = 0.01
SETTLE_CALLS = 3
SETTLE_MAX_S = 0.06


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


CLOCKS = {
    "wall": "wall time, torch.utils.benchmark's clock (synchronizes CUDA)",
    "thread cpu": "CPU time of the one thread doing the work (time.thread_time)",
}


def clock_for(device: str, threads: int) -> str:
    """Which clock times the blocks: the work's own CPU time where that is the whole call.

    With one intra-op thread on the CPU, torch runs every op in the calling thread, so that
    thread's CPU time (user + kernel, page faults included) is the call's cost, and time spent
    waiting for a core that another process holds is not in it: on a shared machine, the
    difference between a ratio of the code and a ratio of the neighbours. With more threads, or
    on a GPU, part of the work happens elsewhere, and only wall time on torch.utils.benchmark's
    clock (which synchronizes CUDA first) covers it.
    """
    return "thread cpu" if str(device) == "cpu" and threads == 1 else "wall"


def _time_one_block(
    fn: Callable[[], object], number: int, clock_name: str = "wall", *,
    settle_s: float = SETTLE_MAX_S, calls: list[int] | None = None,
) -> float:
    """Seconds per call of ``fn`` in one block: its fastest call, once the calls have settled.

    Each call is timed on its own (clock_for says which clock). The fastest is the cost of the
    code while it has the processor; on a shared machine a slower call is mostly a preemption
    or another process evicting caches. A block makes ``number`` calls and then goes on while its
    calls are still speeding up: until SETTLE_CALLS calls in a row were none more than
    SETTLE_GAIN faster than the best so far, while the block has taken less than ``settle_s``.
    Without that, a variant whose first calls after a switch are slow (memory-heavy ones, on the
    machines measured) is timed before it reaches its own speed, by an amount that differs from
    process to process. Calls under PER_CALL_MIN_S are too short to time one by one against the
    clock's own overhead: one call warms up, then the block is timed whole and divided.
    ``calls``, if given, gets the number of calls made appended (for page faults per call).
    """
    read = time.thread_time if clock_name == "thread cpu" else bench_clock
    start = read()
    fn()
    best = read() - start
    if best < PER_CALL_MIN_S and number > 1:
        start = read()
        for _ in range(number - 1):
            fn()
        if calls is not None:
            calls.append(number)
        return max(min(best, (read() - start) / (number - 1)), 1e-9)
    made, quiet, spent = 1, 0, best
    last = best
    while made < number or (quiet < SETTLE_CALLS and spent + last <= settle_s):
        start = read()
        fn()
        last = read() - start
        spent += last
        made += 1
        quiet = 0 if last < best * (1 - SETTLE_GAIN) else quiet + 1
        best = min(best, last)
    if calls is not None:
        calls.append(made)
    return max(best, 1e-9)


def _calibrate(device: str, dtype: torch.dtype, threads: int) -> float:
    """A pessimistic FLOP/s for (device, dtype): one small GEMM, used only to skip hopeless sizes."""
    a = torch.randn(64, 256, device=device).to(dtype)  # [64, 256]
    b = torch.randn(256, 256, device=device).to(dtype)  # [256, 256]
    with torch_threads(threads):
        a @ b
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        elapsed = max(time.perf_counter() - start, 1e-7)
    return 2 * 64 * 256 * 256 / elapsed
