"""core.concat_vs_sum: the readouts behind the concat-versus-sum page are right, and can tell wrong from right."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import core.concat_vs_sum as cs
import core.concat_vs_sum_torch as ct
from core.attention import multi_head_attention
from core.compare import compare, eps
from core.device import DTYPE_NAMES, dtype_from_name
from core.identity import run_seeded

SMALL = dict(batch=2, seq=5, d_model=16, n_heads=4)


@pytest.fixture(scope="module")
def report():
    return cs.concat_vs_sum_report(1, 20, 512, 8, seed=0)


def rows_by_dtype(report) -> dict[str, dict]:
    return {row["dtype"]: row for row in report["rows"]}


# ---- the precision table ------------------------------------------------------------------------


def test_report_has_every_dtype_in_order(report):
    assert [r["dtype"] for r in report["rows"]] == list(DTYPE_NAMES)


def test_precision_story_at_the_essays_sizes(report):
    rows = rows_by_dtype(report)
    assert rows["float64"]["max_abs"] < 1e-12
    assert rows["float32"]["max_abs"] < 1e-4
    # Each step down in precision shows a larger gap, and each gap is rounding: a few ε at most.
    gaps = [rows[d]["max_rel"] for d in ("float64", "float32", "float16", "bfloat16")]
    assert gaps == sorted(gaps) and gaps[0] < gaps[-1]
    for row in rows.values():
        assert 0 <= row["eps_units"] < 64
        assert row["eps_units"] == pytest.approx(row["max_rel"] / row["eps"])
        assert 0.0 <= row["bitwise_equal"] <= 1.0
    assert rows["float64"]["allclose"] and rows["float32"]["allclose"]


def test_report_rows_are_the_same_layer_as_run_seeded():
    """The table casts one float64 draw; that must be bitwise what run_seeded gives in each dtype."""
    report = cs.concat_vs_sum_report(**SMALL, seed=3, causal=True)
    for row in report["rows"]:
        weights, trace = run_seeded(**SMALL, seed=3, dtype=dtype_from_name(row["dtype"]), causal=True)
        _, trace64 = run_seeded(**SMALL, seed=3, dtype=torch.float64, causal=True)
        layer_ref = None if row["dtype"] == "float64" else trace64.out_concat
        assert cs.identity_check(trace, weights, layer_ref) == row


def test_shapes_are_read_off_real_tensors(report):
    shapes = report["shapes"]
    assert shapes["z"] == [1, 8, 20, 64]
    assert shapes["z_concat"] == [1, 20, 512]
    assert shapes["W_O_flat"] == [512, 512]
    assert shapes["per_head"] == [1, 20, 8, 512]
    assert shapes["out_concat"] == shapes["out_sum"] == [1, 20, 512]
    assert shapes["macs"] == 20 * 512 * 512
    assert shapes["extra_adds"] == 20 * 7 * 512


def test_dtypes_not_supported_on_a_device_are_skipped(monkeypatch):
    monkeypatch.setattr(cs, "is_supported", lambda dtype, device: dtype != "bfloat16")
    report = cs.concat_vs_sum_report(**SMALL)
    assert [r["dtype"] for r in report["rows"]] == ["float64", "float32", "float16"]


# ---- the readouts can fail ------------------------------------------------------------------------


def test_a_wrong_sum_is_caught():
    """Drop one head from the sum path: the readout must say so loudly."""
    weights, trace = run_seeded(**SMALL, dtype=torch.float32)
    broken = dataclasses.replace(trace, out_sum=trace.per_head[:, :, 1:].sum(dim=2))  # [B, S, D]
    row = cs.identity_check(broken, weights)
    assert row["max_rel"] > 1e-2
    assert not row["allclose"]
    assert row["eps_units"] > 1e4
    assert row["sum_err_rel"] > 1e-2 and row["concat_err_rel"] < 1e-5
    assert row["closer"] == "concat"


def test_relative_diff_is_not_fooled_by_outputs_near_zero():
    weights, trace = run_seeded(1, 1, 4, 2, dtype=torch.float64)
    concat = torch.tensor([[[2.0, 1e-9, -1.0, 0.5]]], dtype=torch.float64)  # [1, 1, 4]
    fake = dataclasses.replace(trace, out_concat=concat, out_sum=concat + 1e-12)
    row = cs.identity_check(fake, weights)
    assert row["max_rel"] == pytest.approx(1e-12 / 2.0, rel=1e-3)  # divided by the largest output
    assert row["elementwise_max_rel"] == pytest.approx(1e-12 / 1e-9, rel=1e-3)  # what it avoids
    assert row["elementwise_at"] == (0, 0, 1)
    assert row["elementwise_magnitude"] == pytest.approx(1e-9)


def test_elementwise_ratio_is_infinite_where_an_output_is_exactly_zero():
    weights, trace = run_seeded(1, 1, 4, 2, dtype=torch.float64)
    concat = torch.tensor([[[1.0, 0.0, 0.0, 1.0]]], dtype=torch.float64)  # [1, 1, 4]
    fake = dataclasses.replace(trace, out_concat=concat, out_sum=concat + torch.tensor([0.0, 0.0, 1e-9, 0.0]))
    row = cs.identity_check(fake, weights)
    assert row["elementwise_max_rel"] == float("inf") and row["elementwise_at"] == (0, 0, 2)
    assert np.isfinite(row["max_rel"])


@settings(max_examples=12)
@given(
    d_head=st.integers(1, 8), n_heads=st.integers(1, 6), seq=st.integers(1, 6),
    dtype=st.sampled_from(DTYPE_NAMES), seed=st.integers(0, 10_000), causal=st.booleans(),
)
def test_gap_is_within_the_classical_rounding_bound(d_head, n_heads, seq, dtype, seed, causal):
    """|concat − sum| ≤ (D + H + 2)·ε·(|z| @ |W_O|), element by element: rounding, nothing else."""
    D = d_head * n_heads
    weights, trace = run_seeded(1, seq, D, n_heads, seed=seed, dtype=dtype_from_name(dtype), causal=causal)
    z = trace.z.double().transpose(1, 2).reshape(1, seq, D)  # [1, S, H·L]
    W = weights.W_O.double().reshape(D, D)  # [H·L, D]
    bound = (D + n_heads + 2) * eps(trace.z.dtype) * (z.abs() @ W.abs())  # [1, S, D]
    gap = (trace.out_concat.double() - trace.out_sum.double()).abs()  # [1, S, D]
    assert bool((gap <= bound).all())


# ---- the reference ----------------------------------------------------------------------------------


@pytest.mark.skipif(not cs.has_extended_precision(), reason="numpy has no extended precision here")
def test_float64_reference_is_the_correctly_rounded_exact_product():
    weights, trace = run_seeded(1, 2, 6, 2, seed=5, dtype=torch.float64)
    ref = cs.final_step_reference(trace.z, weights.W_O)  # [1, 2, 6]
    z = trace.z.transpose(1, 2).reshape(2, 6).tolist()  # [S, H·L]
    W = weights.W_O.reshape(6, 6).tolist()  # [H·L, D]
    for s in range(2):
        for j in range(6):
            exact = sum(Fraction(z[s][i]) * Fraction(W[i][j]) for i in range(6))
            assert ref[0, s, j].item() == float(exact)


def test_low_precision_reference_is_a_float64_product():
    weights, trace = run_seeded(**SMALL, dtype=torch.bfloat16)
    ref = cs.final_step_reference(trace.z, weights.W_O)
    assert ref.dtype == torch.float64
    expected = torch.einsum("bhsl,hld->bsd", trace.z.double(), weights.W_O.double())  # [B, S, D]
    torch.testing.assert_close(ref, expected, rtol=1e-14, atol=1e-15)


def test_no_float64_verdict_when_the_reference_is_unaffordable(monkeypatch):
    monkeypatch.setattr(cs, "EXTENDED_MAX_MACS", 0)
    weights, trace = run_seeded(**SMALL, dtype=torch.float64)
    assert cs.final_step_reference(trace.z, weights.W_O) is None
    row = cs.identity_check(trace, weights)
    assert row["closer"] is None and row["concat_err_rel"] is None
    assert row["max_abs"] < 1e-12  # the gap itself is still measured


def test_half_precision_concat_is_closer_to_the_reference(report):
    """The sum path rounds each head's term to the dtype; the concat GEMM rounds once."""
    rows = rows_by_dtype(report)
    for d in ("float16", "bfloat16"):
        assert rows[d]["closer"] == "concat"
        assert rows[d]["concat_err_mean"] < rows[d]["sum_err_mean"]
    assert rows["float32"]["layer_err_rel"] > 0 and rows["float64"]["layer_err_rel"] is None


# ---- one number, head by head ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_head_terms_add_up_to_the_concat_value(dtype):
    terms = cs.head_terms(**SMALL, coord=7, seed=1, dtype=dtype)
    assert terms["terms"].shape == (5, 4) and terms["out_concat"].shape == (5,)
    tol = 64 * eps(dtype_from_name(dtype))
    np.testing.assert_allclose(terms["float64_terms"].sum(axis=1), terms["out_concat"], rtol=tol, atol=tol)
    np.testing.assert_allclose(terms["terms"], terms["float64_terms"], rtol=tol, atol=tol)


def test_head_term_is_z_times_the_heads_slice_of_w_o():
    weights, trace = run_seeded(**SMALL, seed=2, dtype=torch.float64)
    terms = cs.head_terms(**SMALL, coord=3, seed=2, dtype="float64")
    s, h = 4, 2
    by_hand = float(trace.z[0, h, s] @ weights.W_O[h, :, 3])  # [L] · [L]
    assert terms["float64_terms"][s, h] == pytest.approx(by_hand, rel=1e-15, abs=1e-15)


def test_waterfall_running_total():
    wf = cs.waterfall(np.array([1.0, -0.5, 2.0]), np.array([1.0, -0.5, 2.0]), 2.5, 2.5000001)
    table = wf["table"]
    assert list(table["head"]) == ["h0", "h1", "h2"]
    assert list(table["running total before"]) == [0.0, 1.0, 0.5]
    assert list(table["running total after"]) == [1.0, 0.5, 2.5]
    assert wf["rounded_terms_summed"] == 2.5 and wf["float64_product"] == 2.5 and wf["rounding_in_terms"] == 0
    assert wf["concat_minus_sum"] == pytest.approx(-1e-7)
    assert wf["heads_up"] == 2 and wf["heads_down"] == 1


def test_waterfall_keeps_the_two_reference_numbers_apart():
    """Rounded terms summed in float64 versus the float64 product: different numbers, different names."""
    rounded, float64 = np.array([0.5, 0.25 + 2**-20]), np.array([0.5, 0.25])
    wf = cs.waterfall(rounded, float64, 0.75, 0.75, "float32")
    assert wf["rounded_terms_summed"] == 0.75 + 2**-20 and wf["float64_product"] == 0.75
    assert wf["rounding_in_terms"] == 2**-20
    assert list(wf["table"].columns) == ["head", "term", "term in float64", "running total before",
                                         "running total after"]
    assert all(pd.api.types.is_numeric_dtype(wf["table"][c]) for c in wf["table"].columns[1:])


@pytest.mark.parametrize("value, dtype, ulp", [
    (1.5, "float32", 2.0**-23), (0.1, "float16", 2.0**-14), (-3.0, "bfloat16", 2.0**-6), (1.0, "float64", 2.0**-52),
])
def test_waterfall_measures_the_gap_in_ulps(value, dtype, ulp):
    wf = cs.waterfall(np.array([value]), np.array([value]), value, value + 3 * ulp, dtype)
    assert wf["ulp"] == ulp
    assert wf["ulps_apart"] == pytest.approx(3.0)


# ---- W_O layouts -----------------------------------------------------------------------------------


def test_w_o_layouts_agree_and_sample_real_entries():
    lay = cs.w_o_layouts(64, 4, seed=9, dtype="float32", rows_per_head=3, max_cols=10)
    assert lay["checks"] == {"linear_is_flat_transposed": True, "paper_blocks_are_linear_columns": True}
    assert lay["shapes"] == {"W_O": [4, 16, 64], "W_O_flat": [64, 64], "W_O_h_paper": [64, 16],
                             "linear_weight": [64, 64]}
    cells = lay["cells"]
    assert len(cells) == 4 * 3 * 10 and lay["rows_shown"] == 12 and lay["cols_shown"] == 10
    W_O = run_seeded(1, 1, 64, 4, seed=9)[0].W_O  # [H, L, D]
    for row in cells.sample(20, random_state=0).itertuples():
        h = int(row.head[1:])
        assert row.i == h * 16 + row.l
        assert row.value == float(W_O[h, row.l, row.j])


def test_w_o_layouts_small_and_odd_sizes():
    lay = cs.w_o_layouts(1, 1, rows_per_head=6, max_cols=48)
    assert len(lay["cells"]) == 1 and all(lay["checks"].values())
    lay = cs.w_o_layouts(96, 32, rows_per_head=6, max_cols=48)  # L = 3: every row of every head
    assert lay["rows_shown"] == 96 and lay["cols_shown"] == 48


# ---- PyTorch -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5), ("bfloat16", 5e-2)])
def test_same_as_pytorch(dtype, tol, causal):
    tc = ct.torch_check(**SMALL, seed=4, dtype=dtype, causal=causal)
    assert tc["out_proj_is_W_O"]
    assert tc["concat"]["max_rel"] < tol and tc["sum"]["max_rel"] < tol


def test_pytorch_check_would_see_a_missing_mask():
    """The readout is sensitive enough to catch a masking mistake, not only rounding."""
    _, causal = run_seeded(**SMALL, seed=4, causal=True)
    _, full = run_seeded(**SMALL, seed=4, causal=False)
    assert compare(causal.out_concat, full.out_concat).max_rel > 1e-2


# ---- rounding and costs ----------------------------------------------------------------------------


def test_rounding_example_differs_by_one_eps_in_every_dtype():
    table = cs.rounding_example()
    assert list(table["dtype"]) == list(DTYPE_NAMES)
    assert (table["(1 + ε/2) + ε/2 − 1"] == 0).all()
    assert (table["1 + (ε/2 + ε/2) − 1"] == table["ε"]).all()
    assert not table["same bits"].any()


def test_cost_model():
    assert cs.forward_flops(1, 20, 512, 8) == 2 * 20 * 512 * (5 * 512 + 40)
    numel = cs.page_numel(1, 20, 512, 8)
    assert numel["per_head"] == 20 * 8 * 512 and numel["per_head (float64 reference)"] == 20 * 8 * 512
    assert numel["in_proj_weight (nn.MultiheadAttention)"] == 3 * 512 * 512
    # The page's own forward pass allocates exactly what trace_numel promised for the trace.
    _, trace = run_seeded(1, 20, 512, 8)
    assert trace.per_head.numel() == numel["per_head"] and trace.scores.numel() == numel["scores"]


def test_multi_head_attention_is_deterministic_for_the_cast_inputs():
    """concat_vs_sum_report relies on casting the float64 draw; check the cast is exact and stable."""
    w64, t64 = run_seeded(**SMALL, dtype=torch.float64)
    w16 = w64.to(dtype=torch.float16)
    a = multi_head_attention(t64.x.to(torch.float16), w16)
    b = run_seeded(**SMALL, dtype=torch.float16)[1]
    assert torch.equal(a.out_concat, b.out_concat) and torch.equal(a.out_sum, b.out_sum)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    cpu = rows_by_dtype(cs.concat_vs_sum_report(**SMALL, device="cpu"))
    gpu = rows_by_dtype(cs.concat_vs_sum_report(**SMALL, device="cuda"))
    assert gpu["float64"]["max_abs"] < 1e-12 and gpu["float64"]["closer"] is not None
    for d in gpu:
        assert gpu[d]["eps_units"] < 64 and cpu[d]["eps_units"] < 64
    tc = ct.torch_check(**SMALL, dtype="float32", device="cuda", causal=True)
    assert tc["concat"]["max_rel"] < 1e-3  # TF32 may be on for matmuls on Ampere and newer
    lay = cs.w_o_layouts(16, 4, device="cuda")
    assert all(lay["checks"].values())


# ---- the reshape that runs and is wrong ------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 3), s=st.integers(1, 6), h=st.integers(1, 6), l=st.integers(1, 4),
       seed=st.integers(0, 1000), causal=st.booleans())
def test_wrong_reshape_differs_exactly_when_there_are_two_axes_to_mix(b, s, h, l, seed, causal):
    pit = cs.reshape_pitfall(b, s, h * l, h, seed=seed, dtype="float64", causal=causal)
    assert pit["shape_right"] == pit["shape_wrong"] == [b, s, h * l]  # same shape: nothing complains
    if s > 1 and h > 1:
        assert pit["concat_max_rel"] > 0 and pit["out_max_rel"] > 0 and pit["rows_differ"] > 0
    else:  # the transpose moves an axis of length 1: memory order is already right
        assert pit["concat_max_rel"] == 0 and pit["out_max_rel"] == 0 and pit["rows_differ"] == 0


def test_right_reshape_is_the_traces_concat_and_the_wrong_one_mixes_tokens():
    weights, trace = run_seeded(**SMALL, seed=5)
    z = trace.z  # [B, H, S, L]
    B, H, S, L = z.shape
    right = z.transpose(1, 2).reshape(B, S, H * L)  # [B, S, H·L]
    assert torch.equal(right[:, :, 2 * L:3 * L], z[:, 2])  # block 2 of every row is head 2, same token
    pit = cs.reshape_pitfall(**SMALL, seed=5, max_tokens=S)
    origin = pit["origin"]
    for r in origin.to_dict("records"):  # every block's first number sits where reshape_origin says
        assert (r["right: head"], r["right: token"]) == (r["block c"], r["token s"])
        assert r["right: first number"] == float(z[0, r["right: head"], r["right: token"], 0])
        assert r["wrong: first number"] == float(z[0, r["wrong: head"], r["wrong: token"], 0])
    assert (origin["wrong: token"] != origin["token s"]).any()
    assert pit["out_max_rel"] > 0.1  # a real mistake: off by about the outputs' own size


@given(s=st.integers(1, 40), h=st.integers(1, 16))
def test_reshape_origin_is_a_permutation_of_head_token_blocks(s, h):
    origin = cs.reshape_origin(s, h)
    assert len(origin) == s * h
    for side in ("right", "wrong"):
        pairs = set(zip(origin[f"{side}: head"], origin[f"{side}: token"]))
        assert pairs == {(hh, t) for hh in range(h) for t in range(s)}  # every block used once
    assert all(pd.api.types.is_integer_dtype(origin[c]) for c in origin.columns)


# ---- what nn.MultiheadAttention runs --------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("heads", [4, 3])
def test_torch_calls_are_recorded_from_the_run(causal, heads):
    tc = ct.torch_check(2, 5, 12, heads, seed=1, causal=causal)
    calls = tc["calls"]
    assert list(calls["call"]) == ["linear", "scaled_dot_product_attention", "permute", "reshape", "linear"]
    assert calls["inputs"][0] == "[5, 2, 12]; [36, 12]"  # [S, B, D] (batch_first undone) @ in_proj_weight.T
    assert calls["output"][1] == f"[2, {heads}, 5, {12 // heads}]"  # [B, H, S, L]: every head at once
    assert calls["output"][3] == "[10, 12]"  # [S·B, H·L]: the concatenation
    assert not tc["fast_path"] and not tc["has_in_proj_bias"]
    assert tc["linear_calls"] == 2 and tc["sdpa_calls"] == 1


def test_torch_calls_see_the_fast_path_when_torch_takes_it():
    """With an in-projection bias and an even head count, torch 2.13 runs one fused call instead."""
    import torch.nn as nn

    mha = nn.MultiheadAttention(8, 2, bias=True, batch_first=True).eval()
    x = torch.randn(1, 3, 8)
    out, calls = ct.torch_calls(mha, x, None)
    assert list(calls["call"]) == ["_native_multi_head_attention"]
    assert out.shape == (1, 3, 8)
