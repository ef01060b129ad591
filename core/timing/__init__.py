"""What the additive view of attention costs on the hardware at hand, measured.

Seven ways of writing the same sum over heads (core.timing.variants) turn z [B, H, S, L] and
W_O [H, L, D] into out [B, S, D]; they differ only in what they put in memory on the way. The
package, one job per module:

    variants   Size, the variants and their inputs, sweeps            (what is measured)
    memory     extra bytes from shapes, allocations counted per call  (what it holds)
    check      the float64 reference and the per-dtype tolerance      (is it right)
    clock      one block of calls, and which clock times it           (how long one call takes)
    stats      medians over rounds, intervals, verdicts, headlines    (what the rounds say)
    runner     run_benchmark: check_pass, then timing_pass            (the run)
    machine    CPU, threads, torch, malloc settings                   (where it ran)
    gqa        shared keys and values: the grouped forward, KV cache     (what sharing saves)
    fresh      the same run in a fresh Python process                 (allocation history)
    reference  reference runs stored as JSON in core/timing/reference/
    cli        ``python -m core.timing`` (also --csv and --json)

Method (runner.run_benchmark): every variant is first checked against a float64 reference of
the same inputs, to a tolerance set per dtype (check_tolerance; a wrong variant is never timed).
Then the variants are timed in interleaved rounds: each round times one block of every variant,
in a fresh random order, and keeps the block's fastest call once its calls have stopped getting
faster (clock_for: with one CPU thread, that thread's CPU time; otherwise torch.utils.benchmark's
wall clock, which synchronizes CUDA). A slow spell of a shared machine then lands on every
variant alike; each variant's ratio to the bare GEMM is taken within a round and reported as the
median over rounds with a distribution-free interval (median_interval), and the headlines follow
the interval (verdict), saying "could not tell" where it straddles the claim. Also reported per
variant: the median and interquartile range of its time per call over rounds, GFLOP/s, the extra
bytes its intermediates need (from the shapes), the bytes it allocates per call and its peak
(counted by intercepting every aten op), on CUDA the peak from torch.cuda.max_memory_allocated,
and on Linux the minor page faults per call (docs/timing.md, "The allocator").

Server-side matters (one benchmark at a time, finished runs shared between sessions, page caps)
live in ui.jobs and the page, not here: this package needs only torch, numpy and pandas.
"""

from __future__ import annotations

from pathlib import Path

from core.timing.check import check_tolerance, float64_reference, rel_error
from core.timing.cli import main
from core.timing.clock import CLOCKS, SETTLE_CALLS, SETTLE_GAIN, SETTLE_MAX_S, clock_for
from core.timing.fresh import (
    FRESH_CHILD_BASE_BYTES, FRESH_HEADROOM, GLIBC_MMAP_THRESHOLD_MAX, GLIBC_MMAP_THRESHOLD_START, MALLOC_SETTINGS,
    available_memory, fresh_process_bytes, fresh_process_problem, run_in_fresh_process,
)
from core.timing.gqa import gqa_comparison, gqa_inputs, kv_cache_table, make_gqa, score_counts
from core.timing.machine import environment, malloc_setting
from core.timing.memory import (
    HOLDS, PAGE_BYTES, copy_is_view, count_allocations, element_size, estimated_bytes, extra_bytes, first_call, memory_table,
    holds, peak_rss_bytes,
)
from core.timing.reference import read_json, reference_path
from core.timing.runner import BASE_SHARE, CSV_COLUMNS, DEFAULT_RUN, TARGET_ROUNDS, check_pass, run_benchmark, timing_pass
from core.timing.stats import (
    CONFIDENCE, MAX_ROUNDS, MIN_ROUNDS, NOISY_WIDTH, at_base, compare_by_size, growth, interleave, median_interval, paired,
    paired_fractions, round_times, summarize, verdict,
)
from core.timing.variants import (
    FORWARD_VARIANTS, GQA_COMPARISON, GQA_VARIANTS, PROJECTION_KINDS, PROJECTION_VARIANTS, SWEEP_AXES, VARIANTS, Size, Variant, flops, forward_inputs, make_forward,
    make_variant, parse_sweep, projection_inputs, sweep_sizes,
)

ROOT = Path(__file__).resolve().parents[2]

__all__ = [
    "Size", "Variant", "VARIANTS", "PROJECTION_VARIANTS", "FORWARD_VARIANTS", "GQA_VARIANTS", "GQA_COMPARISON",
    "PROJECTION_KINDS", "gqa_comparison", "gqa_inputs", "kv_cache_table", "make_gqa", "score_counts", "SWEEP_AXES", "CSV_COLUMNS",
    "CONFIDENCE", "MIN_ROUNDS", "MAX_ROUNDS", "TARGET_ROUNDS", "BASE_SHARE", "NOISY_WIDTH", "DEFAULT_RUN",
    "SETTLE_GAIN", "SETTLE_CALLS", "SETTLE_MAX_S", "ROOT",
    "HOLDS", "holds", "copy_is_view", "MALLOC_SETTINGS", "PAGE_BYTES", "GLIBC_MMAP_THRESHOLD_START", "GLIBC_MMAP_THRESHOLD_MAX",
    "FRESH_CHILD_BASE_BYTES", "FRESH_HEADROOM",
    "flops", "extra_bytes", "estimated_bytes", "element_size", "memory_table",
    "projection_inputs", "make_variant", "forward_inputs", "make_forward", "check_tolerance", "rel_error",
    "float64_reference", "first_call", "count_allocations", "median_interval", "verdict", "interleave",
    "paired_fractions", "round_times", "CLOCKS", "clock_for", "run_benchmark", "check_pass", "timing_pass",
    "at_base", "paired", "compare_by_size", "summarize", "growth",
    "parse_sweep", "sweep_sizes", "environment", "malloc_setting", "run_in_fresh_process", "peak_rss_bytes",
    "available_memory", "fresh_process_bytes", "fresh_process_problem", "read_json", "reference_path", "main",
]
