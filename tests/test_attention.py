"""core.attention: the identity, agreement with torch.nn.MultiheadAttention, and the trace's shapes."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from core.attention import (
    AttentionWeights,
    concat_then_project,
    merge_heads,
    multi_head_attention,
    per_head_results,
    project_then_sum,
    split_heads,
    trace_numel,
)
from core.identity import random_input, run_seeded

# Tolerances for "the two endings agree", relative to the output's largest magnitude. float64 is
# held to the 1e-12; the others to a few hundred eps, far below any real disagreement.
REL_TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 1e-1}

sizes = st.tuples(
    st.integers(1, 3),  # B
    st.integers(1, 12),  # S
    st.integers(1, 6),  # H
    st.integers(1, 12),  # L
)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = float(b.double().abs().max())
    return float((a.double() - b.double()).abs().max()) / max(scale, 1e-30)


@given(sizes, st.sampled_from(list(REL_TOL)), st.integers(0, 2**31 - 1), st.booleans())
def test_concat_equals_sum(size, dtype, seed, causal):
    B, S, H, L = size
    _, tr = run_seeded(B, S, H * L, H, seed=seed, dtype=dtype, causal=causal, bias=True)
    assert tr.out_concat.shape == tr.out_sum.shape == (B, S, H * L)
    assert tr.out_concat.dtype == tr.out_sum.dtype == dtype
    assert _rel_err(tr.out_sum, tr.out_concat) <= REL_TOL[dtype]


@given(sizes, st.integers(0, 1000))
def test_float64_within_1e12(size, seed):
    B, S, H, L = size
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(B, H, S, L, generator=gen, dtype=torch.float64)  # [B, H, S, L]
    W_O = torch.randn(H, L, H * L, generator=gen, dtype=torch.float64)  # [H, L, D]
    b_O = torch.randn(H * L, generator=gen, dtype=torch.float64)  # [D]
    diff = (concat_then_project(z, W_O, b_O) - project_then_sum(z, W_O, b_O)).abs().max()
    assert float(diff) < 1e-12


def test_per_head_results_are_the_heads_terms():
    z = torch.randn(2, 3, 5, 4, dtype=torch.float64)  # [B, H, S, L]
    W_O = torch.randn(3, 4, 12, dtype=torch.float64)  # [H, L, D]
    result = per_head_results(z, W_O)  # [B, S, H, D]
    assert result.shape == (2, 5, 3, 12)
    for h in range(3):
        torch.testing.assert_close(result[:, :, h], z[:, h] @ W_O[h])
    # Concatenation is head-major: head h fills columns h·L … (h+1)·L−1.
    concat = torch.cat([z[:, h] for h in range(3)], dim=-1)  # [B, S, H·L]
    torch.testing.assert_close(concat_then_project(z, W_O), concat @ W_O.reshape(12, 12))


@given(sizes, st.sampled_from([torch.float64, torch.float32]), st.integers(0, 1000), st.booleans())
def test_project_then_sum_is_the_sum_of_the_per_head_results(size, dtype, seed, bias):
    # project_then_sum writes its batched product out (to keep the heads-first copy alive until
    # the sum is done); it must still be exactly Σ_h of per_head_results, size-1 axes included.
    B, S, H, L = size
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(B, H, S, L, generator=gen, dtype=dtype)  # [B, H, S, L]
    W_O = torch.randn(H, L, H * L, generator=gen, dtype=dtype)  # [H, L, D]
    b_O = torch.randn(H * L, generator=gen, dtype=dtype) if bias else None  # [D]
    out = project_then_sum(z, W_O, b_O)  # [B, S, D]
    expected = per_head_results(z, W_O).sum(dim=2)  # [B, S, D]
    if b_O is not None:
        expected = expected + b_O
    assert out.shape == (B, S, H * L) and out.dtype == dtype
    torch.testing.assert_close(out, expected, rtol=REL_TOL[dtype], atol=REL_TOL[dtype])


def test_trace_shapes_at_the_seed_sizes():
    B, S, D, H = 1, 20, 512, 8
    weights, tr = run_seeded(B, S, D, H, seed=0)
    L = D // H
    assert (weights.n_heads, weights.d_model, weights.d_head) == (8, 512, 64)
    assert weights.W_Q.shape == weights.W_K.shape == weights.W_V.shape == (H, D, L)
    assert weights.W_O.shape == (H, L, D)
    assert tr.x.shape == (B, S, D)
    assert tr.q.shape == tr.k.shape == tr.v.shape == tr.z.shape == (B, H, S, L)
    assert tr.scores.shape == tr.pattern.shape == (B, H, S, S)
    assert tr.per_head.shape == (B, S, H, D)
    assert tr.out_concat.shape == tr.out_sum.shape == (B, S, D)
    numel = trace_numel(B, S, D, H)
    for name, count in numel.items():
        assert getattr(tr, name).numel() == count, name


@given(sizes, st.booleans(), st.booleans(), st.sampled_from([torch.float64, torch.float32]))
def test_pattern_rows_sum_to_one(size, causal, scale, dtype):
    B, S, H, L = size
    _, tr = run_seeded(B, S, H * L, H, seed=1, dtype=dtype, causal=causal, scale=scale)
    torch.testing.assert_close(tr.pattern.sum(-1), torch.ones(B, H, S, dtype=dtype))
    assert bool((tr.pattern >= 0).all())
    if causal:
        future = torch.ones(S, S, dtype=torch.bool).triu(1)
        assert bool((tr.pattern[..., future] == 0).all())
        assert bool(torch.isneginf(tr.scores[..., future]).all())


def test_scale_divides_scores_by_sqrt_d_head():
    w = AttentionWeights.random(16, 2, seed=3, dtype=torch.float64)
    x = random_input(1, 5, 16, seed=3, dtype=torch.float64)
    scaled = multi_head_attention(x, w, scale=True).scores
    raw = multi_head_attention(x, w, scale=False).scores
    torch.testing.assert_close(raw / math.sqrt(8), scaled)


def _torch_reference(mha: nn.MultiheadAttention, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """nn.MultiheadAttention's output for batch-first x, whatever its own batch_first is."""
    S = x.shape[1]
    mask = torch.ones(S, S, dtype=torch.bool).triu(1) if causal else None
    inp = x if mha.batch_first else x.transpose(0, 1)
    out, _ = mha(inp, inp, inp, attn_mask=mask, need_weights=False)
    return out if mha.batch_first else out.transpose(0, 1)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_matches_torch_multihead_attention(bias, batch_first, causal):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(24, 4, bias=bias, batch_first=batch_first, dtype=torch.float64).eval()
    if bias:  # PyTorch initialises the biases to zero; make them matter
        with torch.no_grad():
            mha.in_proj_bias.normal_()
            mha.out_proj.bias.normal_()
    weights = AttentionWeights.from_torch(mha)
    assert weights.has_bias == bias
    x = torch.randn(3, 7, 24, dtype=torch.float64)  # [B, S, D]
    ours = multi_head_attention(x, weights, causal=causal)
    with torch.no_grad():
        ref = _torch_reference(mha, x, causal)
    torch.testing.assert_close(ours.out_concat, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.out_sum, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_to_torch_round_trip(bias, causal):
    weights = AttentionWeights.random(32, 4, seed=7, dtype=torch.float64, bias=bias)
    mha = weights.to_torch()
    assert mha.batch_first and mha.embed_dim == 32 and mha.num_heads == 4
    x = random_input(2, 6, 32, seed=7, dtype=torch.float64)
    with torch.no_grad():
        ref = _torch_reference(mha, x, causal)
    torch.testing.assert_close(multi_head_attention(x, weights, causal=causal).out_concat, ref)
    back = AttentionWeights.from_torch(mha)
    for name in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O"):
        mine, theirs = getattr(weights, name), getattr(back, name)
        assert (mine is None) == (theirs is None), name
        if mine is not None:
            assert torch.equal(mine, theirs), name


def test_to_torch_fills_missing_biases_with_zeros():
    w = AttentionWeights.random(8, 2, seed=0, dtype=torch.float64, bias=True)
    w.b_K = None
    mha = w.to_torch()
    assert torch.equal(mha.in_proj_bias[8:16], torch.zeros(8, dtype=torch.float64))


def test_random_is_seeded_and_scaled():
    a = AttentionWeights.random(64, 4, seed=5)
    b = AttentionWeights.random(64, 4, seed=5)
    c = AttentionWeights.random(64, 4, seed=6)
    assert torch.equal(a.W_Q, b.W_Q) and not torch.equal(a.W_Q, c.W_Q)
    # dtype does not change the draw: float32 weights are the float64 ones, rounded.
    d = AttentionWeights.random(64, 4, seed=5, dtype=torch.float64)
    assert torch.equal(d.W_O.float(), a.W_O)
    # Activations stay O(1): unit-variance input gives outputs of order one.
    _, tr = run_seeded(4, 32, 256, 8, seed=0)
    assert 0.1 < float(tr.q.std()) < 3 and 0.1 < float(tr.out_concat.std()) < 3


def test_to_casts_and_keeps_missing_biases():
    w = AttentionWeights.random(16, 4, seed=0).to(dtype=torch.bfloat16)
    assert w.dtype == torch.bfloat16 and w.b_O is None
    assert w.to(device="cpu").device.type == "cpu"


def test_invalid_shapes_are_refused():
    with pytest.raises(ValueError, match="does not divide"):
        AttentionWeights.random(10, 3)
    with pytest.raises(ValueError):
        AttentionWeights.random(0, 1)
    w = AttentionWeights.random(8, 2)
    with pytest.raises(ValueError, match="W_O"):
        AttentionWeights(w.W_Q, w.W_K, w.W_V, w.W_O.transpose(1, 2))
    with pytest.raises(ValueError, match="x must be"):
        multi_head_attention(torch.randn(2, 3, 7), w)
    with pytest.raises(ValueError, match="kdim"):
        AttentionWeights.from_torch(nn.MultiheadAttention(8, 2, kdim=4, vdim=4))


def test_split_and_merge_heads_are_inverse():
    W = torch.randn(12, 12)  # [D, H·L]
    assert torch.equal(merge_heads(split_heads(W, 3)), W)
    assert split_heads(W, 3).shape == (3, 12, 4)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_cuda_matches_cpu(dtype):
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    _, gpu = run_seeded(2, 16, 64, 4, seed=0, dtype=dtype, device="cuda", causal=True)
    _, cpu = run_seeded(2, 16, 64, 4, seed=0, dtype=torch.float64, causal=True)
    assert gpu.out_concat.device.type == "cuda"
    assert _rel_err(gpu.out_concat.cpu(), cpu.out_concat) <= REL_TOL[dtype] * 10
    assert _rel_err(gpu.out_sum, gpu.out_concat) <= REL_TOL[dtype]


@pytest.mark.cuda
@cuda
def test_cuda_weights_equal_cpu_weights():
    cpu = AttentionWeights.random(32, 4, seed=9)
    gpu = AttentionWeights.random(32, 4, seed=9, device="cuda")
    assert torch.equal(gpu.W_Q.cpu(), cpu.W_Q)


def test_seeded_weights_are_fresh_copies_even_when_the_draw_is_reused():
    """AttentionWeights.random keeps its last float64 draw per thread (a page view asks for the same
    seed several times); what it hands out must be a copy, so editing one set never reaches the next."""
    first = AttentionWeights.random(16, 4, seed=3, dtype=torch.float64, bias=True)
    expected = {name: getattr(first, name).clone() for name in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_O")}
    for name in expected:
        getattr(first, name).add_(1.0)  # a caller scribbling on its weights
    again = AttentionWeights.random(16, 4, seed=3, dtype=torch.float64, bias=True)
    for name, tensor in expected.items():
        assert torch.equal(getattr(again, name), tensor), name
    other = AttentionWeights.random(16, 4, seed=4, dtype=torch.float64)
    assert not torch.equal(other.W_Q, expected["W_Q"])
