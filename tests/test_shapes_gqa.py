"""Grouped-query attention on the shape table: the K/V rows, the expansion, the KV cache, the presets."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from core.presets import PRESETS, kv_cache
from core.shapes import (
    Sizes,
    kv_rows,
    op_trace,
    path_summary,
    shape_table,
    sharing_summary,
    step_values,
    tensor_numel,
    trace_path,
)
from core.sizes import LayerSizes, divisors
from tests.test_shapes_core import check


@st.composite
def gqa_sizes(draw):
    """B, S, V, D, H, H_kv with H_kv dividing H and H dividing D."""
    H = draw(st.integers(1, 12))
    H_kv = draw(st.sampled_from(divisors(H)))
    L = draw(st.integers(1, 6))
    return draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 50)), H * L, H, H_kv


@settings(max_examples=25, deadline=None)
@given(gqa_sizes())
def test_any_grouped_size_traces_to_the_hand_computed_shapes(size):
    B, S, V, D, H, H_kv = size
    table = shape_table(*size)
    check(table, *size)
    by = table.set_index("step")
    G = H // H_kv
    assert by.loc["5b", "param_count"] == 2 * H_kv * D * (D // H)  # W_K and W_V shrink by G …
    assert by.loc["5a", "param_count"] == H * D * (D // H)  # … W_Q does not
    assert by.loc["5c", "copies"] is (G > 1)  # a copy only when something is shared
    assert by.loc["5c", "flops"] == 0


def test_the_expansion_row_is_a_copy_made_by_repeat_interleave():
    by = shape_table(1, 20, 100, 512, 8, 2).set_index("step")
    assert "repeat_interleave" in by.loc["5c", "code"] and by.loc["5c", "where"].startswith("core/attention.py:")
    assert by.loc["5c", "output_bytes"] == 2 * 8 * 20 * 64 * 4  # k and v, per query head
    assert by.loc["5b", "output_bytes"] == 2 * 2 * 20 * 64 * 4  # k and v, per key/value head
    plain = shape_table(1, 20, 100, 512, 8).set_index("step")
    assert "expand_kv" in plain.loc["5c", "code"] and plain.loc["5c", "copies"] is False
    ops = op_trace(1, 4, 7, 8, 4, 2)
    assert set(ops.loc[ops["torch call"] == "repeat_interleave", "step"]) == {"5c"}
    assert "repeat_interleave" not in set(op_trace(1, 4, 7, 8, 4)["torch call"])


@pytest.mark.parametrize("size", [(1, 20, 50_000, 512, 8, 2), (2, 7, 11, 12, 6, 3), (1, 5, 10, 16, 4, 1)])
def test_matmul_flops_agree_with_torchs_counter_when_sharing(size):
    table = shape_table(*size)
    with FlopCounterMode(display=False) as counter:
        trace_path(Sizes(*size))
    assert counter.get_total_flops() == sum(table["matmul_flops"])


def test_summary_totals_hold_with_sharing():
    s = path_summary(shape_table(1, 20, 50_000, 512, 8, 2), 8)
    assert s["total_params"] == 50_000 * 512 + 20 * 512 + 512 * 512 + 2 * 2 * 512 * 64 + 512 * 512
    assert s["memory_ratio"] == 8  # the endings don't care about sharing


def test_tensor_numel_counts_the_expanded_copies_only_when_they_exist():
    shared, plain = tensor_numel(2, 3, 5, 8, 4, 2), tensor_numel(2, 3, 5, 8, 4)
    assert shared["k"] == 2 * 2 * 3 * 2 and shared["k_expanded"] == 2 * 4 * 3 * 2
    assert "k_expanded" not in plain and plain["k"] == 2 * 4 * 3 * 2


def test_step_values_show_a_group_sharing_its_keys():
    B, S, V, D, H, H_kv = 1, 5, 7, 12, 6, 2  # groups of 3
    k_of = lambda h: step_values("5c", B, S, V, D, H, H_kv, seed=4, at_head=h)[0]["values"]  # noqa: E731
    assert (k_of(0) == k_of(1)).all() and (k_of(0) == k_of(2)).all() and not (k_of(2) == k_of(3)).all()
    kv = step_values("5b", B, S, V, D, H, H_kv, seed=4, at_head=4)  # head 4 reads key/value head 1
    assert kv[0]["code"] == "k[0, 1]" and (kv[0]["values"] == k_of(4)).all()
    q = [step_values("5a", B, S, V, D, H, H_kv, seed=4, at_head=h)[0]["values"] for h in (0, 1)]
    assert not (q[0] == q[1]).all()  # a group's queries differ, so its patterns do
    scores = [step_values("6", B, S, V, D, H, H_kv, seed=4, at_head=h)[0]["values"] for h in (0, 1)]
    assert not torch.allclose(torch.tensor(scores[0]), torch.tensor(scores[1]))


# ---- the KV cache ---------------------------------------------------------------------------------


def test_llama_3_8b_keeps_128_kib_a_token_in_bfloat16():
    p = PRESETS["llama-3-8b"]
    s = sharing_summary(p.sizes(), layers=p.layers, dtype="bfloat16", context=8192)
    assert s["per_token"] == 2 * 32 * 8 * 128 * 2 == 128 * 2**10
    assert s["per_token_without_sharing"] == 4 * s["per_token"]
    assert s["total"] == 2**30 and s["saving_factor"] == 4
    assert s["kv_params"] == 2 * 8 * 4096 * 128 and s["kv_params_without_sharing"] == 4 * s["kv_params"]


@pytest.mark.parametrize("key", list(PRESETS))
def test_every_preset_agrees_with_core_presets(key):
    p = PRESETS[key]
    s = sharing_summary(p.sizes(batch=2), layers=p.layers, dtype="bfloat16", context=4096)
    ref = kv_cache(p, dtype="bfloat16", tokens=4096, batch=2)
    assert (s["per_token"], s["total"], s["total_without_sharing"]) == (
        ref["per_token"], ref["total"], ref["total_without_sharing"])
    assert s["saving_factor"] == ref["saving_factor"] == p.n_heads // p.n_kv_heads
    shape_table(1, 20, p.vocab, p.d_model, p.n_heads, p.n_kv_heads)  # every preset traces


@settings(max_examples=40, deadline=None)
@given(gqa_sizes(), st.integers(1, 80), st.sampled_from(["float32", "bfloat16", "float64"]), st.integers(1, 10**6))
def test_the_cache_shrinks_by_exactly_the_group_size(size, layers, dtype, context):
    sizes = LayerSizes(*size)
    s = sharing_summary(sizes, layers=layers, dtype=dtype, context=context)
    assert s["saving_factor"] == sizes.group_size
    assert s["per_token"] * sizes.group_size == s["per_token_without_sharing"]
    assert s["total"] == s["per_token"] * context * sizes.batch
    rows = kv_rows(s)
    assert rows["bytes"].tolist() == [s["total"], s["total_without_sharing"]]


def test_sharing_summary_refuses_nonsense():
    with pytest.raises(ValueError):
        sharing_summary(LayerSizes(1, 2, 3, 8, 2), dtype="float8")
    with pytest.raises(ValueError):
        sharing_summary(LayerSizes(1, 2, 3, 8, 2), context=0)
