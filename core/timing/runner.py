"""The run: check every variant at every size, then time them in interleaved rounds, within a budget.

Two passes over the sizes, each its own function. ``check_pass`` compares every variant with a
float64 reference of the same inputs (a wrong one is never timed) and learns its time per call;
``timing_pass`` shares what is left of the budget out among the sizes and times each size's
variants in rounds (core.timing.stats). ``Run`` holds what the two passes share: the settings,
the clock and its deadline, and the rows being filled.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import Tensor

from core.device import dtype_from_name, supported_dtypes, torch_threads
from core.timing.check import _reduced_accumulation, check_tolerance, float64_reference, rel_error
from core.timing.clock import BLOCK_MAX_S, BLOCK_MIN_S, _calibrate, _sync, _time_one_block, clock_for
from core.timing.machine import environment
from core.timing.gqa import gqa_inputs, make_gqa
from core.timing.memory import _minor_faults, estimated_bytes, extra_bytes, first_call, mib
from core.timing.stats import MIN_ROUNDS, NOISY_WIDTH, _quantile, _round_text, interleave, median_interval, paired_fractions, verdict
from core.timing.variants import (
    PROJECTION_VARIANTS, VARIANTS, Size, flops, forward_inputs, make_forward, make_variant, projection_inputs,
)

def _inputs_and_maker(kind: str) -> tuple[Callable, Callable]:
    """Inputs and callable makers by kind of variant, looked up at call time (tests replace them)."""
    return {"projection": (projection_inputs, make_variant), "forward": (forward_inputs, make_forward),
            "gqa": (gqa_inputs, make_gqa)}[kind]


def _input_kind(name: str) -> str:
    kind = VARIANTS[name].kind
    return kind if kind in ("forward", "gqa") else "projection"


TARGET_ROUNDS = 15  # blocks are sized so that about this many rounds fill a size's share
BASE_SHARE = 3.0  # the base size, which the headlines are about, gets this many shares of the budget

# The page's default run, which scripts/timing_repeatability.py repeats in fresh processes and
# core/timing/reference/ ships as measured. One thread: on the 2-core shared machine it gave the
# steadier ratios (docs/timing.md, "Repeatability"): a second thread waits for a core that another
# process holds.
DEFAULT_RUN = {"batch": 8, "seq": 128, "d_model": 512, "heads": 8, "sweep": "seq=16,32,64,128,256",
               "budget_s": 8, "max_bytes": 256 * 2**20, "threads": 1}

CSV_COLUMNS = [
    "variant", "device", "dtype", "batch", "seq", "d_model", "n_heads", "median_ms", "iqr_ms",
    "gflop_per_s", "fraction_of_gemm", "extra_bytes",
    # the interval around fraction_of_gemm (median over rounds) and where it lies against 1:
    "fraction_lo", "fraction_hi", "interval_coverage", "verdict",
    # beyond the required columns:
    "kind", "n_kv_heads", "d_head", "threads", "q1_ms", "q3_ms", "runs", "calls", "gflop", "extra_bytes_from", "alloc_bytes",
    "peak_bytes", "cuda_peak_bytes", "page_faults_per_call", "rel_error", "tolerance", "status", "note",
    "malloc", "device_name", "torch", "clock", "peak_rss_bytes", "round_ms",
]

Timer = Callable[[str, Callable[[], object], int], float]


def one_line(exc: BaseException, limit: int = 160) -> str:
    """An exception as one short line, for a table's note or a page's message."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass
class Run:
    """What the check pass and the timing pass share: settings, clock, deadline, and the rows they fill."""

    sizes: Sequence[Size]
    dtype: str
    device: str
    order: list[str]  # the variants, gemm (the reference) first
    budget_s: float
    max_bytes: int
    threads: int
    seed: int
    clock: Callable[[], float]
    progress: Callable[[float, str], None] | None
    timer: Timer = None  # type: ignore[assignment]  # set in __post_init__ unless a test passes one
    rng: random.Random = field(default_factory=random.Random)
    made: dict[str, list[int]] = field(default_factory=dict)  # calls each block of a variant made
    rows: list[dict] = field(default_factory=list)
    size_rows: list[dict[str, dict]] = field(default_factory=list)  # per size: variant → its row
    per_call: list[dict[str, float]] = field(default_factory=list)  # per size: seconds per call of every variant that passed
    least: list[dict[str, float]] = field(default_factory=list)  # per size: seconds its shortest (settled) block took

    def __post_init__(self) -> None:
        self.torch_dtype = dtype_from_name(self.dtype)
        self.element_size = torch.empty((), dtype=self.torch_dtype).element_size()
        self.clock_name = clock_for(self.device, self.threads)
        if self.timer is None:
            self.timer = lambda name, fn, number: _time_one_block(
                fn, number, self.clock_name, calls=self.made.setdefault(name, []))
        self.env = environment(self.device, self.threads)
        self.reduced = _reduced_accumulation(self.device, self.torch_dtype)
        self.deadline = self.clock() + self.budget_s
        self.jobs_total = 2 * len(self.sizes) * len(self.order)

    def report(self, done: int, message: str) -> None:
        if self.progress is not None:
            self.progress(min(done / max(self.jobs_total, 1), 1.0), message)

    def build(self, size: Size, name: str, inputs: dict) -> Callable[[], Tensor]:
        """The variant's zero-argument callable at this size; inputs made once per kind and shared."""
        kind = _input_kind(name)
        make_inputs, maker = _inputs_and_maker(kind)
        if kind not in inputs:
            inputs[kind] = make_inputs(size, self.torch_dtype, self.device, self.seed)
        return maker(name, *inputs[kind])

    def round_costs(self) -> list[float]:
        """Per size: the least one round of it takes (settled blocks of one call of every variant left)."""
        return [sum(self.least[i][n] for n in known) for i, known in enumerate(self.per_call)]


def run_benchmark(
    sizes: Sequence[Size],
    *,
    dtype: str = "float32",
    device: str = "cpu",
    variants: Sequence[str] = PROJECTION_VARIANTS,
    budget_s: float = 10.0,
    max_bytes: int = 2**31,
    threads: int | None = None,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    time_block: Timer | None = None,
    order_seed: int = 0,
) -> pd.DataFrame:
    """Check every variant at every size, then time them in interleaved rounds, within ``budget_s``.

    One row per (size, variant), in CSV_COLUMNS order: the median and IQR over rounds of the
    time per call, and ``fraction_of_gemm``: the median over rounds of the throughput ratio to
    gemm *within the same round*, with its interval (median_interval) and verdict. ``status``:
    ok, skipped (memory cap or time budget; ``note`` says which), wrong, failed (torch raised).
    How the budget is shared: ``timing_pass``.

    ``time_block(name, fn, number)`` (seconds per call) and ``clock`` can be replaced in tests.
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose cpu or cuda")
    if dtype not in supported_dtypes(device):
        raise ValueError(f"{dtype} does not run on {device} here")
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    run = Run(
        sizes=list(sizes), dtype=dtype, device=device,
        order=[v for v in ("gemm",) if v in variants] + [v for v in variants if v != "gemm"],
        budget_s=budget_s, max_bytes=max_bytes, threads=int(threads or torch.get_num_threads()), seed=seed,
        clock=clock, progress=progress, timer=time_block, rng=random.Random(order_seed),
    )
    check_pass(run)
    timing_pass(run)
    run.report(run.jobs_total, "done")
    return pd.DataFrame(run.rows, columns=CSV_COLUMNS)


# ---- first pass: check, and learn each variant's time per call --------------------------------------


def check_pass(run: Run) -> None:
    """Per size, each variant: skipped if over the memory cap or the budget, else checked against
    a float64 reference of the same inputs (off by more than check_tolerance: ``wrong``, never
    timed), then called once more, untraced, to learn its time per call."""
    flops_per_s = _calibrate(run.device, run.torch_dtype, run.threads)
    for i, size in enumerate(run.sizes):
        by_name: dict[str, dict] = {}
        known: dict[str, float] = {}
        shortest: dict[str, float] = {}
        inputs: dict[str, tuple] = {}
        references: dict[str, Tensor] = {}
        seconds_per_flop = [1 / flops_per_s]  # refined by this size's gemm
        for j, name in enumerate(run.order):
            row = _empty_row(name, size, run)
            by_name[name] = row
            run.rows.append(row)
            run.report(i * len(run.order) + j, f"checking {name} at {_where(size)}")
            _check_one(run, size, name, row, inputs, references, known, shortest, seconds_per_flop)
        del inputs, references
        run.size_rows.append(by_name)
        run.per_call.append(known)
        run.least.append(shortest)


def _check_one(run: Run, size: Size, name: str, row: dict, inputs: dict, references: dict,
               known: dict[str, float], shortest: dict[str, float], seconds_per_flop: list[float]) -> None:
    """One variant at one size through the check; fills its row, and ``known``/``shortest`` if it passed."""
    variant = VARIANTS[name]
    need = estimated_bytes(name, size, run.element_size)
    if need > run.max_bytes:
        row.update(status="skipped", note=f"would need {mib(need)} for its intermediates; the cap is {mib(run.max_bytes)}")
        return
    remaining = run.deadline - run.clock()
    predicted = flops(name, size) * seconds_per_flop[0]
    if remaining <= 0:
        row.update(status="skipped", note=f"time budget of {run.budget_s:g} s used up")
        return
    if (MIN_ROUNDS + 2) * predicted > remaining:
        row.update(status="skipped", note=f"one call would take about {predicted:.2g} s; a check and "
                   f"{MIN_ROUNDS} rounds would not fit the {remaining:.1f} s left of the budget")
        return
    try:
        with torch.no_grad(), torch_threads(run.threads):
            fn = run.build(size, name, inputs)
            out, _, (alloc, peak, out_bytes), cuda_peak = first_call(fn, run.device, run.clock)
            kind = _input_kind(name)
            if kind not in references:  # the grouped layer's reference is core's forward on its weights
                references[kind] = float64_reference("projection" if kind == "projection" else "forward",
                                                     inputs[kind])  # [B, S, D] float64
            error = rel_error(out, references[kind])
            del out
        row.update(alloc_bytes=alloc, peak_bytes=peak, cuda_peak_bytes=cuda_peak, rel_error=error)
        if variant.kind in ("forward", "gqa"):
            row.update(extra_bytes=max(peak - out_bytes, 0), extra_bytes_from="measured")
        if not error <= row["tolerance"]:
            row.update(status="wrong", note=f"differs from the float64 reference by {error:.2e} (relative RMS; "
                       f"the {run.dtype} tolerance is {row['tolerance']:.2e}); not timed")
            return
        with torch.no_grad(), torch_threads(run.threads):
            started = run.clock()
            known[name] = run.timer(name, fn, 1)  # the checked call ran under the allocation counter
            shortest[name] = max(run.clock() - started, known[name])  # a block of one call, settled
        if name == "gemm":
            seconds_per_flop[0] = known[name] / flops(name, size)
    except (RuntimeError, NotImplementedError, TypeError) as exc:  # e.g. a kernel missing for a dtype
        row.update(status="failed", note=one_line(exc))


# ---- second pass: interleaved rounds, size by size ----------------------------------------------------


def timing_pass(run: Run) -> None:
    """Rounds at every size, each timing one block of every variant in a fresh random order.

    Shares of what is left of the budget follow each size's cost of one round, so every size gets
    about as many rounds; the base size (the first) gets BASE_SHARE times more and is timed last,
    so a size whose rounds run over their plan eats into the base's extra rounds, and what a size
    leaves unused passes on. Every size timed gets at least MIN_ROUNDS rounds: while they can't
    all fit, the slowest variant (never gemm) is left out, saying so.
    """
    while MIN_ROUNDS * sum(run.round_costs()) > run.deadline - run.clock():
        slow = [(run.least[i][n], i, n) for i, known in enumerate(run.per_call) for n in known if n != "gemm"]
        if not slow:
            break
        seconds, i, name = max(slow)
        run.size_rows[i][name].update(status="skipped", note=(
            f"one block takes {seconds * 1e3:,.1f} ms; with it, {MIN_ROUNDS} interleaved rounds at every size would "
            f"not fit the {max(run.deadline - run.clock(), 0):.1f} s left of the budget"))
        del run.per_call[i][name]
    costs = run.round_costs()
    shares = [cost * (BASE_SHARE if i == 0 else 1.0) for i, cost in enumerate(costs)]
    timing_order = list(range(1, len(run.sizes))) + [0]
    for step, i in enumerate(timing_order):
        size = run.sizes[i]
        run.report(len(run.sizes) * len(run.order) + step * len(run.order), f"timing at {_where(size)}")
        if not run.per_call[i]:
            continue
        later = timing_order[step + 1:]
        remaining = max(run.deadline - run.clock(), 0.0)
        share = remaining * shares[i] / max(shares[i] + sum(shares[j] for j in later), 1e-12)
        room = remaining - MIN_ROUNDS * sum(costs[j] for j in later)  # the most this size's MIN_ROUNDS may take
        _time_size(run, i, share, room)


def _time_size(run: Run, i: int, share: float, room: float) -> None:
    """One size's rounds within ``share`` seconds, after dropping what MIN_ROUNDS cannot fit in ``room``."""
    size, known, by_name, shortest = run.sizes[i], run.per_call[i], run.size_rows[i], run.least[i]
    size_deadline = run.clock() + share
    while MIN_ROUNDS * sum(shortest[n] for n in known) > room:  # drop the slowest (never gemm) until MIN_ROUNDS fit
        slowest = max((n for n in known if n != "gemm"), key=shortest.get, default=None)
        if slowest is None:
            break
        by_name[slowest].update(status="skipped", note=(
            f"one block takes {shortest[slowest] * 1e3:,.1f} ms; {MIN_ROUNDS} interleaved rounds with it would "
            f"not fit the {max(room, 0):.2f} s the budget leaves this size"))
        del known[slowest]
    if MIN_ROUNDS * sum(shortest[n] for n in known) > room:
        for name in known:
            by_name[name].update(status="skipped", note=f"time budget of {run.budget_s:g} s used up")
        return
    names = list(known)
    block = min(max(share / (TARGET_ROUNDS * len(names)), BLOCK_MIN_S), BLOCK_MAX_S)
    number = {n: max(1, int(block / max(known[n], 1e-9))) for n in names}
    faults = {n: 0 for n in names}
    counting = _minor_faults() is not None
    run.made.clear()  # from here on, the calls of this size's rounds
    try:
        with torch.no_grad(), torch_threads(run.threads):
            inputs: dict = {}
            fns = {n: run.build(size, n, inputs) for n in names}
            for fn in fns.values():  # untimed (not through the timer), settled: buffers allocated, each up to speed
                _time_one_block(fn, 1, run.clock_name)
            _sync(run.device)

            def one_block(name: str) -> float:
                before = _minor_faults() if counting else 0
                seconds = run.timer(name, fns[name], number[name])
                if counting:
                    faults[name] += _minor_faults() - before
                return seconds

            mark = [run.clock()]

            def another_round(done: int) -> bool:
                now = run.clock()
                estimate = now - mark[0] if done else sum(max(number[n] * known[n], shortest[n]) for n in names)
                mark[0] = now
                return done < MIN_ROUNDS or now + estimate <= size_deadline  # MIN_ROUNDS were planned to fit

            times, _ = interleave(names, one_block, rng=run.rng, another_round=another_round)
            fns.clear()  # free this size's buffers before the next size builds its own
            inputs.clear()
    except (RuntimeError, NotImplementedError, TypeError) as exc:  # pragma: no cover - each was checked
        for name in names:
            by_name[name].update(status="failed", note=one_line(exc))
        return
    _fill_rows(run, size, by_name, times, number, faults if counting else None)


def _fill_rows(run: Run, size: Size, by_name: dict[str, dict], times: dict[str, list[float]],
               number: dict[str, int], faults: dict[str, int] | None) -> None:
    """Each timed variant's row: median and IQR over rounds, and its paired ratio to gemm with interval."""
    work = {n: float(flops(n, size)) for n in times}
    fractions = paired_fractions(times, work) if "gemm" in times else {}
    for name, ts in times.items():
        row = by_name[name]
        calls = sum(run.made[name]) if run.made.get(name) else number[name] * len(ts)
        median, q1, q3 = (_quantile(ts, q) for q in (0.5, 0.25, 0.75))
        row.update(
            status="ok", median_ms=median * 1e3, iqr_ms=(q3 - q1) * 1e3, q1_ms=q1 * 1e3, q3_ms=q3 * 1e3,
            runs=len(ts), calls=calls, gflop_per_s=work[name] / median / 1e9,
            page_faults_per_call=faults[name] / calls if faults is not None else float("nan"),
            round_ms=_round_text(ts),
        )
        if name in fractions:
            mid, lo, hi, cover = median_interval(fractions[name])
            row.update(fraction_of_gemm=mid, fraction_lo=lo, fraction_hi=hi, interval_coverage=cover,
                       verdict="reference" if name == "gemm" else verdict(lo, hi))
            if name != "gemm" and VARIANTS[name].kind == "projection" and lo > 1:
                row["note"] = ("noise: measured faster than the bare GEMM, whose work it contains (plus a copy or "
                               "more); the machine changed speed within rounds")
            elif name != "gemm" and mid > 0 and (hi - lo) / mid > NOISY_WIDTH:
                row["note"] = f"noisy: its interval spans {(hi - lo) / mid:.0%} of the median"


def _where(size: Size) -> str:
    kv = f" H_kv={size.n_kv_heads}" if size.n_kv_heads != size.n_heads else ""
    return f"B={size.batch} S={size.seq} D={size.d_model} H={size.n_heads}{kv}"


def _empty_row(name: str, size: Size, run: Run) -> dict:
    """A variant's row before it is checked: sizes, expected memory and work filled, times NaN."""
    extra = extra_bytes(name, size, run.element_size)
    nan = float("nan")
    env = run.env
    return {
        "variant": name, "device": run.device, "dtype": run.dtype, "batch": size.batch, "seq": size.seq,
        "d_model": size.d_model, "n_heads": size.n_heads, "n_kv_heads": size.n_kv_heads, "median_ms": nan, "iqr_ms": nan,
        "gflop_per_s": nan, "fraction_of_gemm": nan, "extra_bytes": nan if extra is None else extra,
        "fraction_lo": nan, "fraction_hi": nan, "interval_coverage": nan, "verdict": "not measured",
        "kind": VARIANTS[name].kind, "d_head": size.d_head, "threads": run.threads, "q1_ms": nan, "q3_ms": nan,
        "runs": 0, "calls": 0,
        "gflop": flops(name, size) / 1e9, "extra_bytes_from": "shapes" if extra is not None else "measured",
        "alloc_bytes": nan, "peak_bytes": nan, "cuda_peak_bytes": nan, "page_faults_per_call": nan,
        "rel_error": nan,
        "tolerance": check_tolerance(run.torch_dtype, size.d_model, VARIANTS[name].kind, reduced_accumulation=run.reduced),
        "status": "skipped", "note": "", "malloc": env["malloc"],
        "device_name": env.get("name", ""), "torch": env["torch"], "peak_rss_bytes": nan, "round_ms": "",
        "clock": env.get("clock", ""),
    }
