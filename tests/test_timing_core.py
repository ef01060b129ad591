"""core.timing: every variant computes the same sum, the memory model matches what is allocated,
a wrong variant is never timed, the budget and caps hold, and the command line writes its CSV.

No assertion here is about how fast anything is.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core import timing
from core.attention import concat_then_project
from core.timing import Size, clock, fresh, runner

ROOT = timing.ROOT
REQUIRED = ["variant", "device", "dtype", "batch", "seq", "d_model", "n_heads", "median_ms", "iqr_ms",
            "gflop_per_s", "fraction_of_gemm", "extra_bytes"]


def sizes(max_heads: int = 4, max_d_head: int = 5):
    return st.builds(
        lambda b, s, h, l: Size(b, s, h * l, h),
        st.integers(1, 3), st.integers(1, 6), st.integers(1, max_heads), st.integers(1, max_d_head),
    )


# ---- each variant is the same sum ---------------------------------------------------------------


@settings(max_examples=15)
@given(size=sizes(), seed=st.integers(0, 2**16))
def test_every_projection_variant_equals_concat_in_float64(size, seed):
    z, W_O = timing.projection_inputs(size, torch.float64, seed=seed)  # [B, H, S, L], [H, L, D]
    expected = concat_then_project(z, W_O)  # [B, S, D]
    for name in timing.PROJECTION_VARIANTS:
        got = timing.make_variant(name, z, W_O)()
        assert got.shape == (size.batch, size.seq, size.d_model), name
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12, msg=name)


def test_every_forward_variant_matches_core_in_float64():
    size = Size(2, 5, 12, 3)
    x, weights = timing.forward_inputs(size, torch.float64, seed=3)
    with torch.no_grad():
        expected = timing.make_forward("forward_trace", x, weights)()  # [B, S, D]
        for name in timing.FORWARD_VARIANTS:
            torch.testing.assert_close(timing.make_forward(name, x, weights)(), expected, rtol=1e-10, atol=1e-10, msg=name)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "float64"])
def test_tolerance_passes_reordered_sums_and_fails_a_swapped_head(dtype):
    size = Size(2, 8, 64, 8)
    torch_dtype = getattr(torch, dtype)
    z, W_O = timing.projection_inputs(size, torch_dtype, seed=1)
    ref = timing.float64_reference("projection", (z, W_O))  # [B, S, D] float64
    tol = timing.check_tolerance(torch_dtype, size.d_model)
    for name in timing.PROJECTION_VARIANTS:
        assert timing.rel_error(timing.make_variant(name, z, W_O)(), ref) <= tol, name
    swapped = W_O[[1, 0, *range(2, size.n_heads)]]  # heads 0 and 1 trade slices of W_O: a classic bug
    assert timing.rel_error(concat_then_project(z, swapped), ref) > tol


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("size", [Size(2, 16, 64, 64), Size(1, 8, 512, 64), Size(1, 4, 2048, 64)], ids=str)
def test_one_head_missing_of_64_is_caught_in_every_dtype(dtype, size):
    """The old check (max-norm within 16 eps of concat in the same dtype, 0.125 in bfloat16) was
    as coarse as the error a missing head of 64 makes (about 1/√64 = 0.125)."""
    torch_dtype = getattr(torch, dtype)
    z, W_O = timing.projection_inputs(size, torch_dtype, seed=2)
    ref = timing.float64_reference("projection", (z, W_O))
    missing = W_O.clone()
    missing[5] = 0  # head 5 of 64 left out
    got = concat_then_project(z, missing)  # [B, S, D]
    tol = timing.check_tolerance(torch_dtype, size.d_model)
    assert timing.rel_error(got, ref) > tol
    # every correct variant, head_loop's 64 roundings of a running sum included, still passes
    for name in timing.PROJECTION_VARIANTS:
        if name != "broadcast" or size.bsd * size.d_model <= 2**22:
            assert timing.rel_error(timing.make_variant(name, z, W_O)(), ref) <= tol, name


def test_a_variant_missing_one_head_is_never_timed_in_bfloat16(monkeypatch):
    real = timing.make_variant

    def drops_a_head(name, z, W_O):
        if name != "einsum":
            return real(name, z, W_O)
        missing = W_O.clone()
        missing[63] = 0
        return real(name, z, missing)

    monkeypatch.setattr(runner, "make_variant", drops_a_head)
    table = timing.run_benchmark([Size(1, 8, 128, 64)], dtype="bfloat16", variants=["gemm", "concat", "einsum"],
                                 budget_s=2, threads=1)
    rows = table.set_index("variant")
    assert rows.loc["einsum", "status"] == "wrong" and "float64 reference" in rows.loc["einsum", "note"]
    assert rows.loc["einsum", "rel_error"] > rows.loc["einsum", "tolerance"]
    assert rows.loc["concat", "status"] == "ok" and rows.loc["concat", "rel_error"] <= rows.loc["concat", "tolerance"]


def test_the_tolerance_allows_more_where_cublas_may_accumulate_in_half_precision():
    plain = timing.check_tolerance(torch.bfloat16, 512)
    reduced = timing.check_tolerance(torch.bfloat16, 512, reduced_accumulation=True)
    assert plain < reduced < 1 / math.sqrt(64)  # still catches one head missing of 64
    assert timing.check_tolerance(torch.float32, 512, "forward") == 2 * timing.check_tolerance(torch.float32, 512)


def test_forward_reference_in_float64_agrees_with_every_forward_variant():
    size = Size(1, 6, 16, 4)
    for dtype in (torch.float32, torch.bfloat16):
        x, weights = timing.forward_inputs(size, dtype, seed=4)
        ref = timing.float64_reference("forward", (x, weights))
        assert ref.dtype == torch.float64
        with torch.no_grad():
            for name in timing.FORWARD_VARIANTS:
                got = timing.make_forward(name, x, weights)()
                assert timing.rel_error(got, ref) <= timing.check_tolerance(dtype, size.d_model, "forward"), (dtype, name)


def test_rel_error_counts_wrong_shapes_and_non_finite_values_as_infinitely_wrong():
    a = torch.ones(2, 3)
    assert timing.rel_error(a, a) == 0
    assert timing.rel_error(torch.ones(3, 2), a) == math.inf
    assert timing.rel_error(a * float("nan"), a) == math.inf
    assert timing.rel_error(a, torch.zeros(2, 3)) == math.inf


def test_unknown_variant_names_are_refused():
    z, W_O = timing.projection_inputs(Size(1, 2, 4, 2), torch.float32)
    with pytest.raises(ValueError, match="unknown projection variant"):
        timing.make_variant("nope", z, W_O)
    with pytest.raises(ValueError, match="unknown variant"):
        timing.run_benchmark([Size(1, 2, 4, 2)], variants=["concat", "nope"], budget_s=1)


# ---- memory: the shapes' account agrees with what is allocated -----------------------------------


@settings(max_examples=25)
@given(size=sizes(max_heads=5, max_d_head=4))
def test_extra_bytes_from_shapes_equals_measured_peak_minus_result(size):
    z, W_O = timing.projection_inputs(size, torch.float32)
    for name in timing.PROJECTION_VARIANTS:
        if name == "per_head_sum_out":
            continue  # its buffers are allocated once, outside the call (next test)
        alloc, peak, out_bytes = timing.count_allocations(timing.make_variant(name, z, W_O))
        assert peak - out_bytes == timing.extra_bytes(name, size, 4), name
        assert alloc >= peak


def test_preallocated_variant_allocates_nothing_per_call_and_per_head_sum_does():
    size = Size(2, 16, 64, 8)
    z, W_O = timing.projection_inputs(size, torch.float32)
    alloc_out, _, _ = timing.count_allocations(timing.make_variant("per_head_sum_out", z, W_O))
    alloc_sum, _, _ = timing.count_allocations(timing.make_variant("per_head_sum", z, W_O))
    assert alloc_out == 0
    assert alloc_sum == (size.n_heads + 2) * size.bsd * 4  # z copy, H results, the output
    # H + 1 outputs for the materialized sum (the heads-first copy of z is alive until the sum is
    # done, as per_head_sum_out's); D + H − 1 for broadcast (H·L = D)
    assert timing.extra_bytes("per_head_sum", size, 4) == (size.n_heads + 1) * size.bsd * 4
    assert timing.extra_bytes("per_head_sum", size, 4) == timing.extra_bytes("per_head_sum_out", size, 4)
    assert timing.extra_bytes("broadcast", size, 4) == (size.d_model + size.n_heads - 1) * size.bsd * 4


def test_memory_table_counts_pages_and_multiples():
    table = timing.memory_table(Size(8, 256, 512, 8), "float32").set_index("variant")
    assert table.loc["per_head_sum", "extra_bytes"] == 36 * 2**20
    assert table.loc["per_head_sum", "times_output"] == 9
    assert table.loc["per_head_sum", "pages"] == 36 * 2**20 // timing.PAGE_BYTES
    assert table.loc["gemm", "extra_bytes"] == 0


def test_cuda_peak_logic_with_a_stand_in_allocator():
    class Stats:  # what torch.cuda reports, played by hand: 1000 bytes live, 5000 at the peak
        def __init__(self):
            self.calls = []

        def synchronize(self):
            self.calls.append("sync")

        def memory_allocated(self):
            return 1000

        def reset_peak_memory_stats(self):
            self.calls.append("reset")

        def max_memory_allocated(self):
            return 5000

    stats = Stats()
    out, seconds, (alloc, peak, out_bytes), cuda_peak = timing.first_call(lambda: torch.zeros(3), "cuda", stats=stats)
    assert cuda_peak == 4000 and stats.calls == ["sync", "reset", "sync"]
    assert out_bytes == 12 and alloc == peak == 12 and seconds >= 0
    assert timing.first_call(lambda: torch.zeros(3), "cpu")[3] is None


# ---- the run: check first, budget, caps -------------------------------------------------------------


def test_run_checks_then_times_every_variant(tiny_run):
    table = tiny_run
    assert list(table.columns) == timing.CSV_COLUMNS
    assert set(table["variant"]) == set(timing.PROJECTION_VARIANTS)
    ok = table[table["status"] == "ok"]
    assert len(ok) == len(timing.PROJECTION_VARIANTS), table[["variant", "status", "note"]]
    assert (ok["median_ms"] > 0).all() and (ok["iqr_ms"] >= 0).all() and (ok["runs"] >= 1).all()
    assert (ok["q1_ms"] <= ok["median_ms"]).all() and (ok["median_ms"] <= ok["q3_ms"]).all()
    assert (ok["rel_error"] <= ok["tolerance"]).all()
    assert (ok["fraction_lo"] <= ok["fraction_of_gemm"]).all() and (ok["fraction_of_gemm"] <= ok["fraction_hi"]).all()
    assert (ok["runs"] >= timing.MIN_ROUNDS).all()
    assert (ok["round_ms"].str.split().str.len() == ok["runs"]).all()
    gemm = ok.set_index("variant").loc["gemm"]
    assert gemm["fraction_of_gemm"] == pytest.approx(1.0) and gemm["verdict"] == "reference"
    assert gemm["gflop_per_s"] == pytest.approx(2 * 2 * 8 * 32 * 32 / gemm["median_ms"] / 1e6)
    assert ok.set_index("variant").loc["per_head_sum_out", "alloc_bytes"] == 0
    if sys.platform.startswith("linux"):
        assert ok["page_faults_per_call"].notna().all()


@pytest.fixture(scope="module")
def tiny_run():
    return timing.run_benchmark([Size(2, 8, 32, 4)], budget_s=4, threads=1)


def test_a_wrong_variant_is_never_timed(monkeypatch):
    real = timing.make_variant
    timed = []

    def broken(name, z, W_O):
        fn = real(name, z, W_O)
        if name != "einsum":
            return fn

        def wrong():
            timed.append(1)
            return fn() + 1.0  # off by one everywhere

        return wrong

    monkeypatch.setattr(runner, "make_variant", broken)
    table = timing.run_benchmark([Size(1, 4, 8, 2)], variants=["concat", "einsum"], budget_s=1)
    row = table.set_index("variant").loc["einsum"]
    assert row["status"] == "wrong" and "not timed" in row["note"]
    assert math.isnan(row["median_ms"]) and row["runs"] == 0
    assert len(timed) == 1  # the check's single call, nothing more


def test_a_variant_that_raises_is_reported_not_fatal(monkeypatch):
    real = timing.make_variant

    def raising(name, z, W_O):
        if name == "head_loop":
            def boom():
                raise RuntimeError("no kernel for this dtype")
            return boom
        return real(name, z, W_O)

    monkeypatch.setattr(runner, "make_variant", raising)
    table = timing.run_benchmark([Size(1, 4, 8, 2)], variants=["concat", "head_loop"], budget_s=1)
    row = table.set_index("variant").loc["head_loop"]
    assert row["status"] == "failed" and "no kernel" in row["note"]


def test_an_exhausted_budget_skips_without_calling_anything(monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "make_variant", lambda *a: calls.append(a))
    table = timing.run_benchmark([Size(1, 4, 8, 2), Size(1, 8, 8, 2)], budget_s=0)
    assert (table["status"] == "skipped").all()
    assert table["note"].str.contains("budget").all()
    assert calls == []


def test_the_budget_is_shared_out_by_a_clock(monkeypatch):
    """With a clock that jumps 10 s per reading, the first variant uses up a 15 s budget."""
    ticks = iter(range(0, 10_000, 10))
    table = timing.run_benchmark([Size(1, 4, 8, 2)], variants=["gemm", "concat", "einsum"], budget_s=15,
                                 clock=lambda: float(next(ticks)))
    assert table.set_index("variant").loc["einsum", "status"] == "skipped"
    assert "budget" in table.set_index("variant").loc["einsum", "note"]


def test_memory_cap_skips_broadcast_with_the_reason():
    size = Size(2, 8, 64, 4)
    table = timing.run_benchmark([size], variants=["concat", "broadcast"], budget_s=1,
                                 max_bytes=timing.estimated_bytes("broadcast", size, 4) - 1)
    row = table.set_index("variant").loc["broadcast"]
    assert row["status"] == "skipped" and "would need" in row["note"] and "cap" in row["note"]
    assert table.set_index("variant").loc["concat", "status"] == "ok"


def test_refuses_devices_and_dtypes_it_cannot_run():
    with pytest.raises(ValueError):
        timing.run_benchmark([Size(1, 2, 4, 2)], device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError):
            timing.run_benchmark([Size(1, 2, 4, 2)], device="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_measures_peak_memory():
    table = timing.run_benchmark([Size(2, 64, 256, 8)], device="cuda", variants=["gemm", "concat", "per_head_sum"],
                                 budget_s=3)
    ok = table[table["status"] == "ok"].set_index("variant")
    assert ok.loc["per_head_sum", "cuda_peak_bytes"] >= ok.loc["per_head_sum", "extra_bytes"]


# ---- sizes, sweeps, summaries, sharing ----------------------------------------------------------------


def test_sizes_refuse_nonsense():
    with pytest.raises(ValueError, match="does not divide"):
        Size(1, 4, 10, 3)
    with pytest.raises(ValueError, match="positive"):
        Size(0, 4, 8, 2)


@pytest.mark.parametrize("text, expected", [
    ("seq=64,128,256", ("seq", [64, 128, 256])),
    ("heads=8, 2,2,4", ("heads", [2, 4, 8])),
    ("n_heads=4", ("heads", [4])),
    ("d-model=64,32", ("d_model", [32, 64])),
])
def test_parse_sweep_reads_axis_and_values(text, expected):
    assert timing.parse_sweep(text) == expected


@given(st.text(max_size=40))
@settings(max_examples=40)
def test_parse_sweep_never_fails_other_than_readably(text):
    try:
        axis, values = timing.parse_sweep(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert axis in timing.SWEEP_AXES and values == sorted(set(values)) and min(values) >= 1


def test_sweep_sizes_put_the_base_first_and_drop_heads_that_do_not_divide():
    base = Size(2, 16, 64, 4)
    got = timing.sweep_sizes(base, "heads", [3, 4, 8, 1])
    assert got == [base, Size(2, 16, 64, 1), Size(2, 16, 64, 8)]
    assert timing.sweep_sizes(base, None, [1, 2]) == [base]


def _row(variant, rounds_ms, *, seq=8, fraction=(float("nan"),) * 3, verdict="below", faults=0.0):
    mid, lo, hi = fraction
    return {"variant": variant, "batch": 1, "seq": seq, "d_model": 8, "n_heads": 2, "status": "ok",
            "median_ms": sorted(rounds_ms)[len(rounds_ms) // 2], "fraction_of_gemm": mid, "fraction_lo": lo,
            "fraction_hi": hi, "verdict": verdict, "page_faults_per_call": faults, "gflop_per_s": 1.0,
            "round_ms": " ".join(map(str, rounds_ms)), "kind": timing.VARIANTS[variant].kind}


def test_summarize_pairs_rounds_and_follows_the_intervals():
    rows = [
        _row("gemm", [1.0] * 7, fraction=(1, 1, 1), verdict="reference"),
        _row("concat", [1.1] * 7, fraction=(0.94, 0.91, 0.96), verdict="below"),
        _row("einsum", [1.0] * 7, fraction=(0.99, 0.95, 1.02), verdict="could not tell"),
        # round by round per_head_sum takes 4× concat's time, whatever the machine did
        _row("per_head_sum", [4.4, 8.8, 4.4, 4.4, 13.2, 4.4, 4.4], faults=100),
        # minus per_head_sum_out, round by round: −0.1 … +0.1 ms, straddling 0
        _row("per_head_sum_out", [4.5, 8.8, 4.3, 4.4, 13.2, 4.5, 4.3]),
        _row("head_loop", [0.9] * 7, fraction=(1.1, 1.05, 1.2), verdict="above"),
    ]
    rows[3]["round_ms"] = "4.4 8.8 4.4 4.4 13.2 4.4 4.4"
    rows[1]["round_ms"] = "1.1 2.2 1.1 1.1 3.3 1.1 1.1"
    rows.append({**rows[3], "seq": 16, "median_ms": 99.0})  # another size: ignored
    facts = timing.summarize(pd.DataFrame(rows))
    assert facts["concat_fraction_of_gemm"] == 0.94 and facts["concat_verdict"] == "below"
    assert facts["einsum_verdict"] == "could not tell"
    assert facts["per_head_sum_over_concat"] == pytest.approx(4.0)
    assert facts["per_head_sum_over_concat_lo"] == pytest.approx(4.0) and facts["per_head_sum_over_concat_verdict"] == "above"
    assert facts["allocation_verdict"] == "could not tell"
    assert facts["allocation_lo"] < 0 < facts["allocation_hi"]
    assert facts["per_head_sum_faults"] == 100
    assert facts["above_gemm"] == "head_loop"
    assert math.isnan(timing.summarize(pd.DataFrame(rows[:2]))["per_head_sum_over_concat"])


@pytest.mark.parametrize("values, expected", [
    (list(range(1, 10)), (5, 2, 8)),  # n = 9: 2nd and 8th of 9 hold the median with 96.1 %
    ([3, 1, 2, 6, 5, 4], (3.5, 1, 6)),  # n = 6: the extremes, 96.9 %
    ([5, 1, 4, 2, 3], (3, 1, 5)),  # n = 5: the extremes, only 93.75 %
    ([7.0], (7, 7, 7)),
])
def test_median_interval_uses_order_statistics(values, expected):
    mid, lo, hi, coverage = timing.median_interval(values)
    assert (mid, lo, hi) == pytest.approx(expected)
    n = len(values)
    k = sorted(values).index(lo) + 1
    assert coverage == pytest.approx(1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n)
    assert (coverage >= timing.CONFIDENCE) == (n >= timing.MIN_ROUNDS)


@given(st.lists(st.floats(0.01, 100, allow_nan=False), min_size=1, max_size=60))
@settings(max_examples=60)
def test_median_interval_brackets_the_median_with_two_of_the_values(values):
    mid, lo, hi, coverage = timing.median_interval(values)
    assert lo <= mid <= hi and lo in values and hi in values
    assert 0 <= coverage <= 1


def test_median_interval_of_nothing_is_nan():
    assert all(math.isnan(v) for v in timing.median_interval([]))


@pytest.mark.parametrize("lo, hi, expected", [
    (0.91, 0.96, "below"), (0.95, 1.02, "could not tell"), (1.0, 1.0, "could not tell"),
    (1.01, 1.10, "above"), (float("nan"), 1.0, "not measured"),
])
def test_a_verdict_follows_the_whole_interval(lo, hi, expected):
    assert timing.verdict(lo, hi) == expected


def test_interleave_times_every_variant_once_per_round_in_a_fresh_order():
    calls: list[str] = []
    times, orders = timing.interleave(["gemm", "a", "b", "c"], lambda n: calls.append(n) or 1.0,
                                      rng=random.Random(3), another_round=lambda done: done < 12)
    assert len(orders) == 12 and all(sorted(o) == ["a", "b", "c", "gemm"] for o in orders)
    assert calls == [n for o in orders for n in o]
    assert len({tuple(o) for o in orders}) > 1  # the order changes between rounds
    assert all(len(v) == 12 for v in times.values())
    again, orders_again = timing.interleave(["gemm", "a", "b", "c"], lambda n: 1.0, rng=random.Random(3),
                                            another_round=lambda done: done < 12)
    assert orders_again == orders  # seeded: the same orders again
    _, few = timing.interleave(["a"], lambda n: 1.0, rng=random.Random(0), max_rounds=4)
    assert len(few) == 4


def test_paired_ratios_cancel_a_slow_spell_that_hits_a_whole_round():
    slow = [1, 3, 1, 2, 1, 5, 1]  # the machine's speed, round by round
    times = {"gemm": [1.0 * s for s in slow], "concat": [1.25 * s for s in slow]}
    fractions = timing.paired_fractions(times, {"gemm": 10.0, "concat": 10.0})
    assert fractions["concat"] == pytest.approx([0.8] * 7)
    assert fractions["gemm"] == pytest.approx([1.0] * 7)
    # twice the work in the same time is twice the throughput
    assert timing.paired_fractions({"gemm": [1.0], "f": [1.0]}, {"gemm": 1.0, "f": 2.0})["f"] == [2.0]


def _fake_block(base_ms: dict[str, float], drift: list[float]):
    """Seconds per call: each variant's own time × the machine's speed in that round.

    A variant's k-th block is in round k − 1 (its first call is the warm-up), so every variant
    of a round sees the same drift, as on a real machine whose slow spell outlasts a round.
    """
    seen: dict[str, int] = {}

    def time_block(name, fn, number):
        k = seen.get(name, 0)
        seen[name] = k + 1
        return base_ms[name] / 1e3 * drift[(k - 1) % len(drift)] if k else base_ms[name] / 1e3

    return time_block


def test_run_benchmark_reports_the_paired_ratio_whatever_the_drift():
    base_ms = {"gemm": 1.0, "concat": 1.25, "per_head_sum": 4.0, "head_loop": 0.8}
    table = timing.run_benchmark([Size(1, 4, 8, 2)], variants=list(base_ms), budget_s=5, threads=1,
                                 time_block=_fake_block(base_ms, [1, 4, 1, 1, 7, 2, 1, 1, 3]))
    rows = table.set_index("variant")
    assert (rows["status"] == "ok").all() and (rows["runs"] >= timing.MIN_ROUNDS).all()
    assert rows.loc["concat", "fraction_of_gemm"] == pytest.approx(0.8)
    assert rows.loc["concat", "fraction_lo"] == pytest.approx(0.8) == rows.loc["concat", "fraction_hi"]
    assert rows.loc["concat", "verdict"] == "below" and rows.loc["per_head_sum", "verdict"] == "below"
    # a variant that does more than the GEMM reported faster than it: flagged as noise
    assert rows.loc["head_loop", "verdict"] == "above" and rows.loc["head_loop", "note"].startswith("noise")
    # the median time itself does feel the drift; only the ratio is immune to it
    assert rows.loc["gemm", "median_ms"] >= 1.0


def test_rounds_run_in_a_seeded_random_order(monkeypatch):
    seen: list[list[str]] = []
    real = timing.interleave

    def spy(names, time_block, **kw):
        times, orders = real(names, time_block, **kw)
        seen.append(orders)
        return times, orders

    monkeypatch.setattr(runner, "interleave", spy)
    fake = {"gemm": 1.0, "concat": 1.0, "einsum": 1.0}
    timing.run_benchmark([Size(1, 4, 8, 2)], variants=list(fake), budget_s=5, threads=1, order_seed=7,
                         time_block=_fake_block(fake, [1]))
    orders = seen[0]
    assert len(orders) >= timing.MIN_ROUNDS and len({tuple(o) for o in orders}) > 1


def test_every_size_of_a_sweep_gets_its_rounds_and_the_base_more_time(monkeypatch):
    ticks = [0.0]

    def clock():  # a clock that only moves when something is "timed"
        return ticks[0]

    def time_block(name, fn, number):
        ticks[0] += 1e-3 * number
        return 1e-3

    sizes = [Size(1, 8, 8, 2), Size(1, 2, 8, 2), Size(1, 4, 8, 2)]
    table = timing.run_benchmark(sizes, variants=["gemm", "concat"], budget_s=1.0, threads=1, clock=clock,
                                 time_block=time_block)
    ok = table[table["status"] == "ok"]
    assert len(ok) == 6 and (ok["runs"] >= timing.MIN_ROUNDS).all()
    calls = ok.groupby("seq")["calls"].sum()  # every call "takes" 1 ms here, so calls count time
    assert calls[8] > 1.5 * calls[2] and calls[8] > 1.5 * calls[4]  # the base gets BASE_SHARE times the others' share
    assert ticks[0] <= 1.0 + 0.05  # and the whole run stayed within the budget


def test_growth_says_which_variant_rose_most_from_the_numbers():
    rows = []
    for h, times in [(1, {"concat": 3.4, "per_head_sum": 8.5, "head_loop": 9.1}),
                     (64, {"concat": 3.7, "per_head_sum": 112.0, "head_loop": 18.0})]:
        for v, ms in times.items():
            rows.append({"variant": v, "n_heads": h, "median_ms": ms, "status": "ok", "kind": "projection"})
    rows.append({"variant": "forward_mha", "n_heads": 1, "median_ms": 1.0, "status": "ok", "kind": "forward"})
    g = timing.growth(pd.DataFrame(rows), "heads")
    assert list(g["variant"]) == ["per_head_sum", "head_loop", "concat"]  # the issue's measurement, not a guess
    assert g.loc[0, "factor"] == pytest.approx(112 / 8.5) and g.loc[0, "from"] == 1 and g.loc[0, "to"] == 64


def _fake_root(tmp_path, available_kib: int, limit: str | None = None, current: int | None = None):
    (tmp_path / "proc").mkdir(parents=True, exist_ok=True)
    (tmp_path / "proc/meminfo").write_text(f"MemTotal: 99999999 kB\nMemAvailable: {available_kib} kB\n")
    cg = tmp_path / "sys/fs/cgroup"
    cg.mkdir(parents=True, exist_ok=True)
    if limit is not None:
        (cg / "memory.max").write_text(limit + "\n")
        (cg / "memory.current").write_text(f"{current}\n")
    return tmp_path


def test_available_memory_is_the_smaller_of_the_host_and_the_cgroup(tmp_path):
    host_only = timing.available_memory(_fake_root(tmp_path / "a", 4 * 2**20))
    assert host_only["available"] == 4 * 2**30 and host_only["cgroup_limit"] is None
    unlimited = timing.available_memory(_fake_root(tmp_path / "b", 4 * 2**20, "max", 10))
    assert unlimited["available"] == 4 * 2**30
    boxed = timing.available_memory(_fake_root(tmp_path / "c", 4 * 2**20, str(2**30), 900 * 2**20))
    assert boxed["available"] == 2**30 - 900 * 2**20


def test_a_fresh_process_is_refused_when_its_memory_is_not_there():
    size = Size(8, 128, 512, 8)
    variants = ("gemm", "concat", "per_head_sum", "per_head_sum_out")
    need = timing.fresh_process_bytes(size, "float32", variants)
    assert need > timing.FRESH_CHILD_BASE_BYTES + timing.estimated_bytes("per_head_sum_out", size, 4)
    problem = timing.fresh_process_problem(size, "float32", variants, memory={"available": need})
    assert problem and "MiB" in problem  # just enough is not enough: headroom is required
    assert timing.fresh_process_problem(size, "float32", variants, memory={"available": 2 * need}) is None
    assert timing.fresh_process_problem(size, "float32", variants, memory={"available": None}) is None


def test_environment_names_the_machine_and_the_malloc_setting(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert timing.malloc_setting() == "default"
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1024")
    env = timing.environment("cpu", threads=3)
    assert env["malloc"] == "MALLOC_MMAP_THRESHOLD_=1024" and env["threads"] == "3"
    for key in ("torch", "name", "cpu_capability", "libc"):
        assert env[key]


# ---- the command line ------------------------------------------------------------------------------------


def test_cli_writes_a_csv_with_the_required_columns(tmp_path, capsys):
    csv = tmp_path / "t.csv"
    code = timing.main(["--batch", "1", "--seq", "4", "--d-model", "8", "--heads", "2", "--sweep", "seq=2,4,8",
                        "--variants", "gemm,concat,per_head_sum", "--budget", "1", "--threads", "1", "--csv", str(csv)])
    assert code == 0
    table = pd.read_csv(csv)
    assert set(REQUIRED) <= set(table.columns)
    assert list(table.columns[: len(REQUIRED)]) == REQUIRED  # the issue's columns, first and in order
    assert {"fraction_lo", "fraction_hi", "interval_coverage", "verdict"} <= set(table.columns)
    assert (table["peak_rss_bytes"] > 0).all()
    assert sorted(table["seq"].unique()) == [2, 4, 8]
    assert set(table["variant"]) == {"gemm", "concat", "per_head_sum"}
    printed = capsys.readouterr().out
    assert "median_ms" in printed and "wrote" in printed


@pytest.mark.parametrize("argv", [
    ["--heads", "3"],  # does not divide 512
    ["--batch", "0"],
    ["--sweep", "time=1,2"],
    ["--sweep", "seq=a,b"],
    ["--variants", "concat,nope"],
    ["--dtype", "float8"],
])
def test_cli_refuses_bad_arguments_with_a_message(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        timing.main(argv)
    assert exit_.value.code == 2
    assert "error" in capsys.readouterr().err


def test_cli_runs_as_a_module_without_streamlit(tmp_path):
    """`python -m core.timing` in a process where importing streamlit would fail, malloc tuned."""
    csv = tmp_path / "t.csv"
    code = (
        "import sys, runpy; sys.modules['streamlit'] = None; sys.argv = ['core.timing'] + sys.argv[1:]; "
        "runpy.run_module('core.timing', run_name='__main__')"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_MMAP_THRESHOLD_": str(2**30)}
    done = subprocess.run(
        [sys.executable, "-c", code, "--batch", "1", "--seq", "4", "--d-model", "8", "--heads", "2",
         "--variants", "concat,einsum", "--budget", "1", "--threads", "1", "--csv", str(csv), "--quiet"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(csv)
    assert (table["status"] == "ok").all()
    assert (table["malloc"] == f"MALLOC_MMAP_THRESHOLD_={2**30}").all()


def test_fresh_process_carries_the_malloc_setting():
    table = timing.run_in_fresh_process(
        Size(1, 4, 8, 2), dtype="float32", device="cpu", variants=["concat", "per_head_sum"], budget_s=1,
        max_bytes=2**20, threads=1, malloc="thresholds raised",
    )
    assert set(table["variant"]) == {"concat", "per_head_sum"}
    assert table["malloc"].str.contains("MALLOC_MMAP_THRESHOLD_=1073741824").all()
    assert (table["peak_rss_bytes"] > 2**20).all()  # the child measured itself
    with pytest.raises(ValueError):
        timing.run_in_fresh_process(Size(1, 4, 8, 2), dtype="float32", device="cpu", variants=["concat"],
                                    budget_s=1, max_bytes=2**20, threads=1, malloc="jemalloc")


def test_fresh_process_failures_become_one_line_reasons(monkeypatch):
    size = Size(1, 4, 8, 2)
    kwargs = dict(dtype="float32", device="cpu", variants=["concat"], budget_s=1, max_bytes=2**20, threads=1)

    def failing(cmd, **_):
        return subprocess.CompletedProcess(cmd, 1, "", "Traceback (most recent call last):\n  File \"x\"\nValueError: boom\n")

    monkeypatch.setattr(fresh.subprocess, "run", failing)
    with pytest.raises(RuntimeError, match="boom") as failed:
        timing.run_in_fresh_process(size, **kwargs)
    assert "Traceback" not in str(failed.value)

    def hanging(cmd, **kw):
        raise subprocess.TimeoutExpired(cmd, kw["timeout"])

    monkeypatch.setattr(fresh.subprocess, "run", hanging)
    with pytest.raises(RuntimeError, match="did not finish within 7 s"):
        timing.run_in_fresh_process(size, timeout_s=7, **kwargs)


def test_one_cpu_thread_is_timed_by_its_own_cpu_time_and_anything_else_by_the_wall_clock():
    assert timing.clock_for("cpu", 1) == "thread cpu"
    assert timing.clock_for("cpu", 2) == "wall" and timing.clock_for("cuda", 1) == "wall"
    # a call that sleeps waits without working: the CPU clock leaves the wait out, the wall clock does not
    import time as time_

    def waits():
        time_.sleep(0.003)

    assert clock._time_one_block(waits, 2, "thread cpu") < 0.002
    assert clock._time_one_block(waits, 2, "wall") >= 0.003


def _ticking(monkeypatch, durations_s):
    """A callable whose k-th call "takes" durations_s[k] (the last one from then on) on a fake wall clock."""
    now, calls = [0.0], [0]
    monkeypatch.setattr(clock, "bench_clock", lambda: now[0])

    def fn():
        now[0] += durations_s[min(calls[0], len(durations_s) - 1)]
        calls[0] += 1

    return fn, calls, now


def test_a_block_goes_on_while_its_calls_speed_up_and_keeps_the_settled_time(monkeypatch):
    """A variant slow for its first calls after a switch is timed at its own speed, not at the switch's."""
    fn, calls, _ = _ticking(monkeypatch, [0.012, 0.010, 0.008, 0.006, 0.004])
    made: list[int] = []
    best = clock._time_one_block(fn, 1, "wall", settle_s=0.2, calls=made)
    assert best == pytest.approx(0.004)  # the settled 4 ms, not the first call's 12 ms
    assert made == [calls[0]] == [5 + timing.SETTLE_CALLS]  # the speed-up, then calls that did not gain


def test_a_block_that_never_settles_stops_at_its_settling_time(monkeypatch):
    fn, calls, now = _ticking(monkeypatch, [0.004 * 0.9 ** k for k in range(200)])  # faster every call, forever
    clock._time_one_block(fn, 1, "wall", settle_s=0.03)
    assert now[0] <= 0.03  # it never starts a call that the limit would not cover
    assert calls[0] >= 3


def test_a_block_makes_its_own_number_of_calls_however_settled(monkeypatch):
    fn, calls, _ = _ticking(monkeypatch, [0.001])
    made: list[int] = []
    clock._time_one_block(fn, 12, "wall", settle_s=0.0, calls=made)
    assert calls[0] == 12 == made[0]


def test_the_base_size_is_timed_last_so_overruns_come_out_of_its_extra_rounds():
    """Rounds that take three times their plan at the sweep sizes still leave the base its MIN_ROUNDS."""
    ticks = [0.0]
    timing_now = {"on": False}
    messages: list[str] = []

    def progress(fraction, message):
        messages.append(message)
        timing_now["on"] = message.startswith("timing")

    def time_block(name, fn, number):
        ticks[0] += (3e-3 if timing_now["on"] else 1e-3) * number  # rounds run over what the first pass learned
        return 1e-3

    sizes = [Size(1, 8, 8, 2), Size(1, 2, 8, 2), Size(1, 4, 8, 2)]
    table = timing.run_benchmark(sizes, variants=["gemm", "concat", "einsum"], budget_s=1.0, threads=1,
                                 clock=lambda: ticks[0], time_block=time_block, progress=progress)
    timed = [m for m in messages if m.startswith("timing")]
    assert timed[-1].startswith("timing at B=1 S=8 ")  # the base size, last
    ok = table[table["status"] == "ok"]
    assert len(ok) == 9 and (ok["runs"] >= timing.MIN_ROUNDS).all()


def test_cli_writes_a_reference_run_that_reads_back(tmp_path):
    path = tmp_path / "ref.json"
    argv = ["--batch", "1", "--seq", "4", "--d-model", "8", "--heads", "2", "--variants", "gemm,concat,per_head_sum",
            "--budget", "1", "--threads", "1", "--json", str(path), "--quiet"]
    assert timing.main(argv) == 0
    ref = timing.read_json(path)
    assert ref["command"] == "python -m core.timing " + " ".join(argv)
    for key in ("cpu_model", "threads", "torch", "load_average_before", "load_average_after", "cpu_count"):
        assert key in ref["machine"], key
    assert ref["machine"]["threads"] == "1" and ref["date"][:2] == "20"
    table = ref["table"]
    assert list(table.columns) == timing.CSV_COLUMNS and set(table["variant"]) == {"gemm", "concat", "per_head_sum"}
    assert pd.api.types.is_numeric_dtype(table["median_ms"]) and pd.api.types.is_numeric_dtype(table["fraction_lo"])
    facts = timing.summarize(table)  # what the page computes from it
    assert facts["concat_verdict"] in ("below", "above", "could not tell")


def test_the_shipped_reference_run_is_the_pages_default_run_with_its_machine():
    ref = timing.read_json(timing.reference_path("cpu"))
    assert ref["command"].startswith("python -m core.timing ") and "--json core/timing/reference/cpu.json" in ref["command"]
    base = ref["table"].iloc[0]
    run = timing.DEFAULT_RUN
    assert (int(base["batch"]), int(base["seq"]), int(base["d_model"]), int(base["n_heads"])) == (
        run["batch"], run["seq"], run["d_model"], run["heads"])
    assert sorted(ref["table"]["seq"].unique()) == sorted({run["seq"], *timing.parse_sweep(run["sweep"])[1]})
    for key in ("cpu_model", "threads", "torch", "load_average_before"):
        assert ref["machine"][key], key
    at_base = timing.at_base(ref["table"]).set_index("variant")
    assert (at_base.loc[["gemm", "concat", "einsum", "per_head_sum"], "status"] == "ok").all()


def test_compare_by_size_pairs_rounds_size_by_size():
    rows = []
    for seq, ratio in ((8, 2.0), (16, 1.0)):
        for name, ms in (("concat", 1.0), ("einsum", ratio)):
            rows.append({"variant": name, "batch": 1, "seq": seq, "d_model": 8, "n_heads": 2, "status": "ok",
                         "round_ms": " ".join([str(ms)] * 7)})
    got = timing.compare_by_size(pd.DataFrame(rows), "einsum", "concat")
    assert list(got["seq"]) == [8, 16] and list(got["ratio"]) == [2.0, 1.0]
    assert list(got["verdict"]) == ["above", "could not tell"]
    assert timing.compare_by_size(pd.DataFrame(rows), "einsum", "head_loop").empty


@pytest.mark.parametrize("size", [Size(1, 4, 8, 2), Size(2, 1, 8, 2), Size(2, 4, 8, 1), Size(1, 4, 2, 2), Size(2, 3, 8, 2)])
def test_holds_names_a_view_exactly_where_extra_bytes_counts_none(size):
    views = timing.copy_is_view(size)
    concat_copy = timing.extra_bytes("concat", size, 4) > 0
    assert concat_copy == (views["side_by_side"] is None)
    assert ("is a view" in timing.holds("concat", size)) == (not concat_copy)
    heads_copy = timing.extra_bytes("per_head_sum", size, 4) > size.n_heads * size.bsd * 4
    assert heads_copy == (views["heads_first"] is None)
    assert ("is a view" in timing.holds("per_head_sum", size)) == (not heads_copy)
