"""Grouped-query timing in core.timing and the timing page's checkpoints (core.checkpoints.timing).

The grouped forms compute the grouped layer (checked against core's float64 forward), their work and
memory follow the sizes, a run carries H_kv and pairs each grouped form with the unshared layer,
the KV cache and score counts are derived, and every checkpoint has distinct options with exactly
one right, the one the page's figure shows.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core import timing
from core.attention import multi_head_attention
from core.checkpoints import timing as cps
from core.presets import kv_cache_bytes
from core.sizes import divisors
from core.timing.cli import main

ROUNDS = 12


@st.composite
def sizes(draw, max_heads: int = 16) -> timing.Size:
    heads = draw(st.integers(1, max_heads))
    d_model = heads * draw(st.integers(1, 8))
    kv = draw(st.sampled_from(divisors(heads)))
    return timing.Size(draw(st.integers(1, 4)), draw(st.integers(1, 24)), d_model, heads, kv)


# ---- the size type ---------------------------------------------------------------------------------


def test_size_without_kv_heads_is_plain_multi_head_and_compares_equal():
    assert timing.Size(8, 128, 512, 8) == timing.Size(8, 128, 512, 8, 8)
    assert timing.Size(8, 128, 512, 8, 2).group_size == 4
    for bad in (0, 3, 16):
        with pytest.raises(ValueError):
            timing.Size(8, 128, 512, 8, bad)


def test_a_heads_sweep_keeps_the_group_size_where_it_can():
    swept = timing.sweep_sizes(timing.Size(2, 8, 64, 8, 2), "heads", [1, 2, 4, 16, 32])
    assert [(s.n_heads, s.n_kv_heads) for s in swept] == [(8, 2), (1, 1), (2, 1), (4, 1), (16, 4), (32, 8)]


# ---- the grouped forms compute the grouped layer ------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(size=sizes(max_heads=8))
def test_grouped_forms_match_cores_forward_in_float64(size):
    x, weights = timing.gqa_inputs(size, torch.float64)
    reference = multi_head_attention(x, weights).out_concat  # [B, S, D]
    for name in timing.GQA_VARIANTS:
        out = timing.make_gqa(name, x, weights)()
        assert out.shape == reference.shape
        assert torch.allclose(out, reference, rtol=1e-10, atol=1e-10), name


def test_without_sharing_the_grouped_forms_are_the_unshared_layer():
    size = timing.Size(2, 6, 32, 4)
    x, weights = timing.gqa_inputs(size, torch.float64)
    x_mha, weights_mha = timing.forward_inputs(size, torch.float64)
    unshared = timing.make_forward("forward_sdpa", x_mha, weights_mha)()
    for name in timing.GQA_VARIANTS:
        assert torch.allclose(timing.make_gqa(name, x, weights)(), unshared, rtol=1e-12, atol=1e-12)


def test_the_grouped_weights_are_the_unshared_ones_with_keys_and_values_shared():
    size = timing.Size(1, 4, 32, 8, 2)
    _, grouped = timing.gqa_inputs(size, torch.float64)
    _, unshared = timing.forward_inputs(size, torch.float64)
    assert torch.equal(grouped.W_Q, unshared.W_Q) and torch.equal(grouped.W_O, unshared.W_O)
    assert torch.equal(grouped.W_K, unshared.W_K[::4])  # key/value head g keeps head g·G's


@given(size=sizes())
def test_flops_shrink_only_the_key_value_projections(size):
    B, S, D, H, H_kv, L = size.batch, size.seq, size.d_model, size.n_heads, size.n_kv_heads, size.d_head
    unshared = timing.flops("forward_sdpa", size)
    grouped = timing.flops("gqa_sdpa", size)
    assert timing.flops("gqa_expand", size) == grouped
    assert unshared - grouped == 2 * B * S * D * 2 * (H - H_kv) * L  # K and V: H_kv·L columns instead of D
    assert (grouped == unshared) == (H_kv == H)


# ---- a run with grouped forms ---------------------------------------------------------------------


def _fake_timer(seconds: dict[str, float]):
    def time_block(name, fn, number):
        fn()
        return seconds[name]

    return time_block


def test_a_grouped_run_checks_times_and_pairs_with_the_unshared_layer():
    size = timing.Size(2, 8, 32, 4, 2)
    seconds = {"gemm": 1e-3, "forward_sdpa": 4e-3, "gqa_sdpa": 3e-3, "gqa_expand": 5e-3}
    clock = iter(range(10**6))
    table = timing.run_benchmark([size], variants=("gemm", *timing.GQA_COMPARISON), budget_s=1e5,
                                 clock=lambda: next(clock) * 1e-4, time_block=_fake_timer(seconds))
    assert list(table["n_kv_heads"]) == [2, 2, 2, 2]
    assert (table["status"] == "ok").all(), table[["variant", "status", "note"]]
    assert (table["rel_error"] <= table["tolerance"]).all()
    grouped = table.set_index("variant")
    assert grouped.at["gqa_sdpa", "kind"] == "gqa" and grouped.at["gqa_sdpa", "extra_bytes_from"] == "measured"
    comparison = timing.gqa_comparison(table).set_index("variant")
    assert comparison.at["gqa_sdpa", "ratio"] == pytest.approx(0.75)
    assert comparison.at["gqa_sdpa", "verdict"] == "below"
    assert comparison.at["gqa_expand", "ratio"] == pytest.approx(1.25)
    assert comparison.at["gqa_expand", "verdict"] == "above"
    assert comparison.at["gqa_expand", "n_kv_heads"] == 2


def test_the_comparison_is_empty_without_grouped_rows():
    assert timing.gqa_comparison(pd.DataFrame(columns=timing.CSV_COLUMNS)).empty
    ref = timing.read_json(timing.reference_path("cpu"))
    assert (ref["table"]["n_kv_heads"] >= 1).all()


def test_the_command_line_times_sharing_and_refuses_nothing_to_share(tmp_path, capsys):
    out = tmp_path / "gqa.csv"
    assert main(["--batch", "1", "--seq", "4", "--d-model", "16", "--heads", "4", "--kv-heads", "1", "--gqa",
                 "--variants", "gemm", "--budget", "2", "--threads", "1", "--csv", str(out), "--quiet"]) == 0
    table = pd.read_csv(out)
    assert set(table["variant"]) == {"gemm", *timing.GQA_COMPARISON}
    assert set(table["n_kv_heads"]) == {1}
    with pytest.raises(SystemExit):
        main(["--heads", "4", "--d-model", "16", "--gqa"])  # H_kv = H: nothing to compare
    assert "--kv-heads below --heads" in capsys.readouterr().err


# ---- what sharing changes, derived -------------------------------------------------------------------


@given(size=sizes(), dtype=st.sampled_from(["float32", "bfloat16", "float64"]))
def test_the_kv_cache_table_is_derived_from_the_sizes(size, dtype):
    table = timing.kv_cache_table(size, dtype)
    shared, unshared = table.iloc[0], table.iloc[1]
    es = timing.element_size(dtype)
    assert shared["bytes_per_token"] == 2 * size.n_kv_heads * size.d_head * es
    assert shared["bytes_per_token"] == kv_cache_bytes(layers=1, n_kv_heads=size.n_kv_heads, d_head=size.d_head, dtype=dtype)
    assert unshared["bytes_per_token"] == 2 * size.d_model * es
    assert shared["bytes_for_run"] == shared["bytes_per_token"] * size.batch * size.seq
    assert unshared["bytes_per_token"] == shared["bytes_per_token"] * shared["factor"]
    assert shared["factor"] == size.group_size


@given(size=sizes())
def test_sharing_never_changes_how_many_scores_there_are(size):
    counts = timing.score_counts(size)
    assert counts["shared"] == counts["not_shared"] == size.batch * size.n_heads * size.seq**2
    assert counts["k_not_shared"] == counts["k_shared"] * size.group_size


# ---- checkpoints: distinct options, exactly one right, the figure's number ------------------------------------


def _one_right(cp, right_text: str) -> None:
    assert len(set(cp.options)) == len(cp.options) >= 2
    assert [o for o in cp.options if o == right_text] == [cp.right]
    assert cp.options.count(cp.right) == 1


def size_bytes(x: float) -> str:  # the page passes ui.format.size_bytes, whose rounding can merge options
    from ui.format import size_bytes as fmt

    return fmt(x)


@settings(max_examples=200, deadline=None)
@given(size=sizes(max_heads=64), dtype=st.sampled_from(["float32", "bfloat16", "float16", "float64"]),
       fmt=st.sampled_from([None, size_bytes]))
def test_size_checkpoints_have_one_right_option_the_figures_number(size, dtype, fmt):
    kw = {} if fmt is None else {"fmt": fmt}
    show = fmt or (lambda n: f"{int(n):,} bytes")
    es = timing.element_size(dtype)
    memory = cps.per_head_memory(size, dtype, **kw)
    _one_right(memory, show(timing.extra_bytes("per_head_sum", size, es)))
    table = timing.memory_table(size, dtype).set_index("variant")
    assert memory.right == show(table.at["per_head_sum", "extra_bytes"])  # the memory chart's bar
    cache = cps.kv_cache(size, dtype, **kw)
    _one_right(cache, show(timing.kv_cache_table(size, dtype)["bytes_per_token"].iloc[0]))
    scores = cps.scores(size)
    _one_right(scores, f"{timing.score_counts(size)['shared']:,}")


def _run_rows(fractions: dict[str, float], status: dict[str, str] | None = None) -> pd.DataFrame:
    rows = [{"variant": v, "kind": timing.VARIANTS[v].kind, "status": (status or {}).get(v, "ok"), "fraction_of_gemm": f,
             "batch": 8, "seq": 128, "d_model": 512, "n_heads": 8} for v, f in fractions.items()]
    return pd.DataFrame(rows)


@settings(max_examples=200, deadline=None)
@given(fractions=st.lists(st.floats(0.001, 2.0), min_size=7, max_size=7, unique=True),
       skipped=st.sets(st.sampled_from(timing.PROJECTION_VARIANTS[1:])))
def test_the_slowest_checkpoint_names_the_lowest_ratio_of_the_run(fractions, skipped):
    names = list(timing.PROJECTION_VARIANTS)
    rows = _run_rows({"gemm": 1.0, **dict(zip(names[1:], fractions))}, {n: "skipped" for n in skipped})
    timed = [n for n in names[1:] if n not in skipped]
    cp = cps.slowest(rows, "run 1")
    if len(timed) < 2:
        assert cp is None
        return
    lowest = min(timed, key=lambda n: fractions[names.index(n) - 1])
    _one_right(cp, f"`{lowest}`")
    assert set(cp.options) == {f"`{n}`" for n in timed} and "`gemm`" not in cp.options
    assert f"{fractions[names.index(lowest) - 1]:.2f}" in cp.why


def test_the_slowest_checkpoint_ignores_grouped_and_forward_rows():
    rows = _run_rows({"gemm": 1.0, "concat": 0.9, "per_head_sum": 0.5, "forward_sdpa": 0.1, "gqa_sdpa": 0.05})
    assert cps.slowest(rows, "r").right == "`per_head_sum`"


def test_the_slowest_checkpoint_on_the_shipped_reference_run_is_the_charts_lowest():
    ref = timing.read_json(timing.reference_path("cpu"))
    base = timing.at_base(ref["table"])
    cp = cps.slowest(base, ref["date"])
    ok = base[(base["status"] == "ok") & base["kind"].eq("projection")]
    assert cp.right == f"`{ok.loc[ok['fraction_of_gemm'].idxmin(), 'variant']}`"
    assert math.isfinite(ok["fraction_of_gemm"].min())
