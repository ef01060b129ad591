"""The concat-versus-sum core at grouped-query settings: the identity, the referee, the caps.

Sharing keys and values must leave the two endings exactly as they are (W_O only meets z), the
referee must switch from nn.MultiheadAttention (which has no GQA) to SDPA with ``enable_gqa``,
and H_kv = H must reproduce the page's old numbers bit for bit.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core import concat_vs_sum as cs
from core import concat_vs_sum_torch as ct
from core.attention import AttentionWeights
from core.identity import run_seeded
from core.sizes import divisors


def grouped_layers():
    """(B, S, H, H_kv, L) with H_kv | H, small enough to run many times."""
    return st.tuples(st.integers(1, 2), st.integers(1, 6), st.integers(1, 8), st.integers(1, 6)).flatmap(
        lambda t: st.sampled_from(divisors(t[2])).map(lambda kv: (t[0], t[1], t[2], kv, t[3])))


@settings(max_examples=25, deadline=None)
@given(grouped_layers(), st.sampled_from(["float64", "float32", "bfloat16"]), st.booleans())
def test_the_identity_holds_under_sharing(layer, dtype, causal):
    B, S, H, H_kv, L = layer
    report = cs.concat_vs_sum_report(B, S, H * L, H, n_kv_heads=H_kv, causal=causal, dtypes=(dtype,))
    row, shapes = report["rows"][0], report["shapes"]
    assert shapes["z"] == [B, H, S, L] and shapes["k"] == [B, H_kv, S, L]
    assert shapes["per_head"] == [B, S, H, H * L]  # one term per query head, whatever H_kv is
    assert shapes["n_kv_heads"] == H_kv and shapes["group_size"] == H // H_kv
    assert row["eps_units"] < 64  # rounding, a few ε at most (norm-wise), in every precision


def test_sharing_changes_the_numbers_but_not_the_number_of_terms():
    plain = cs.head_terms(1, 6, 32, 8, coord=3, seed=2, dtype="float64")
    shared = cs.head_terms(1, 6, 32, 8, coord=3, seed=2, dtype="float64", n_kv_heads=2)
    assert plain["terms"].shape == shared["terms"].shape == (6, 8)
    assert abs(plain["terms"] - shared["terms"]).max() > 1e-3  # other keys and values, other z
    assert shared["terms"].sum(axis=1) == pytest.approx(shared["out_concat"], abs=1e-12)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv", [1, 2, 4])
def test_sdpa_is_the_referee_where_heads_share(kv, causal):
    tc = ct.torch_check(2, 5, 32, 4, seed=1, dtype="float64", causal=causal, n_kv_heads=kv)
    if kv == 4:
        assert tc["reference"] == ct.MHA and tc["out_proj_is_W_O"]
    else:
        assert tc["reference"] == ct.SDPA
        assert tc["kv_shape"] == [2, kv, 5, 8] and tc["q_shape"] == [2, 4, 5, 8]
        assert tc["kernel_inputs"] == f"[2, 4, 5, 8]; [2, {kv}, 5, 8]; [2, {kv}, 5, 8]"  # k, v unexpanded
        assert list(tc["calls"]["call"]) == ["einsum"] * 3 + [
            "scaled_dot_product_attention", "transpose", "reshape", "reshape", "matmul"]
        assert tc["sdpa_calls"] == 1
    assert tc["concat"]["max_rel"] < 1e-10 and tc["sum"]["max_rel"] < 1e-10  # float64: agree to 1e-10


def test_plain_heads_give_the_old_numbers_bit_for_bit():
    """kv_heads = heads (the default) is the layer the page drew before GQA existed."""
    old = cs.concat_vs_sum_report(1, 6, 32, 4, seed=3, dtypes=("float32",))["rows"][0]
    new = cs.concat_vs_sum_report(1, 6, 32, 4, seed=3, dtypes=("float32",), n_kv_heads=4)["rows"][0]
    assert old == new
    a = ct.torch_check(1, 6, 32, 4, seed=3)
    b = ct.torch_check(1, 6, 32, 4, seed=3, n_kv_heads=4)
    assert a["concat"] == b["concat"] and a["reference"] == b["reference"] == ct.MHA


def test_w_o_is_the_same_at_every_kv_heads():
    """Why w_o_layouts (and the W_O pictures) need no kv_heads: sharing draws only W_K, W_V anew."""
    W = [AttentionWeights.random(48, 6, n_kv_heads=kv, seed=5).W_O for kv in (6, 3, 2, 1)]
    assert all(torch.equal(W[0], w) for w in W[1:])


def test_costs_shrink_with_shared_keys_and_values():
    D, H = 512, 8
    assert cs.forward_flops(1, 20, D, H, 8) == cs.forward_flops(1, 20, D, H) == 2 * 20 * D * (5 * D + 40)
    assert cs.forward_flops(1, 20, D, H, 2) == 2 * 20 * D * (3 * D + 2 * D // 4 + 40)
    plain, shared = cs.page_numel(1, 20, D, H), cs.page_numel(1, 20, D, H, 2)
    assert shared["W_K"] == plain["W_K"] // 4 and shared["k"] == plain["k"] // 4
    assert "in_proj_weight (nn.MultiheadAttention)" in plain and "in_proj_weight (nn.MultiheadAttention)" not in shared
    assert shared["k (scaled_dot_product_attention)"] == 20 * 2 * 64
    _, trace = run_seeded(1, 20, D, H, n_kv_heads=2)
    assert shared["k"] == trace.k.numel() and shared["k_expanded"] == trace.k_expanded.numel()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
def test_sdpa_referee_on_cuda(dtype):
    """On a GPU SDPA may pick a fused kernel (flash, memory-efficient); the referee still agrees within
    rounding, and it still receives k and v with their H_kv heads."""
    tc = ct.torch_check(2, 16, 64, 8, seed=0, dtype=dtype, device="cuda", causal=True, n_kv_heads=2)
    assert tc["reference"] == ct.SDPA and tc["kv_shape"] == [2, 2, 16, 8]
    bound = {"float64": 1e-10, "float32": 1e-3, "bfloat16": 5e-2}[dtype]  # TF32 may be on for float32
    assert tc["concat"]["max_rel"] < bound and tc["sum"]["max_rel"] < bound
    report = cs.concat_vs_sum_report(2, 16, 64, 8, device="cuda", n_kv_heads=2, dtypes=(dtype,))
    assert report["rows"][0]["eps_units"] < 64
