"""Grouped-query attention in core.attention: the sharing, the identity, and two references.

Three independent checks of the grouped layer: the concat and sum endings agree (the identity is
untouched by sharing), torch's scaled_dot_product_attention(enable_gqa=True) gives the same
output from the same weights, and the layer equals a plain multi-head layer whose per-head key and
value weights are the shared ones repeated. With H_kv = H the code must be bit for bit what it
was before grouped-query attention: a frozen copy of that code lives in this file.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.attention import (
    AttentionWeights,
    concat_then_project,
    expand_kv,
    grouped_attention,
    multi_head_attention,
    sdpa_reference,
    trace_numel,
)
from core.identity import random_input, run_seeded
from core.sizes import divisors

REL_TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 1e-1}
TRACE_FIELDS = ("x", "q", "k", "v", "scores", "pattern", "z", "per_head", "out_concat", "out_sum")


@st.composite
def grouped_sizes(draw, max_heads: int = 8):
    """(B, S, H, H_kv, L) with H_kv dividing H."""
    H = draw(st.integers(1, max_heads))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 10)), H, draw(st.sampled_from(divisors(H))),
            draw(st.integers(1, 8)))


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = float(b.double().abs().max())
    return float((a.double() - b.double()).abs().max()) / max(scale, 1e-30)


# ---- today's code, frozen ---------------------------------------------------------------------
# A copy of AttentionWeights.random and multi_head_attention as they were before n_kv_heads (commit
# 77bbe0b). It is the reference for "H_kv = H changes nothing": same draw, same operations, so the
# same bits on whatever processor runs the test (both sides run on it).


def _legacy_weights(d_model, n_heads, *, seed=0, dtype=torch.float32, bias=False):
    d_head = d_model // n_heads
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    std = 1.0 / math.sqrt(d_model)

    def draw(*shape, scale=std):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype=dtype)

    W = [draw(n_heads, d_model, d_head), draw(n_heads, d_model, d_head), draw(n_heads, d_model, d_head),
         draw(n_heads, d_head, d_model)]
    if not bias:
        return W + [None] * 4
    return W + [draw(n_heads, d_head, scale=0.1), draw(n_heads, d_head, scale=0.1),
                draw(n_heads, d_head, scale=0.1), draw(d_model, scale=0.1)]


def _legacy_forward(x, W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, causal, scale):
    def project(W, b):
        out = torch.einsum("bsd,hdl->bhsl", x, W)
        return out if b is None else out + b[None, :, None, :]

    S, L = x.shape[1], W_Q.shape[2]
    q, k, v = project(W_Q, b_Q), project(W_K, b_K), project(W_V, b_V)
    scores = q @ k.transpose(-1, -2)
    if scale:
        scores = scores / math.sqrt(L)
    if causal:
        future = torch.ones(S, S, dtype=torch.bool, device=x.device).triu(diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    pattern = scores.softmax(dim=-1)
    z = pattern @ v
    per_head = torch.einsum("bhsl,hld->bshd", z, W_O)
    B, H, S, L = z.shape
    D = W_O.shape[-1]
    z_concat = z.transpose(1, 2).reshape(B * S, H * L)
    flat = W_O.reshape(H * L, D)
    out_concat = (z_concat @ flat if b_O is None else torch.addmm(b_O, z_concat, flat)).view(B, S, D)
    out_sum = per_head.sum(dim=2)
    if b_O is not None:
        out_sum = out_sum + b_O
    return dict(x=x, q=q, k=k, v=v, scores=scores, pattern=pattern, z=z, per_head=per_head,
                out_concat=out_concat, out_sum=out_sum)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 10), st.integers(1, 6), st.integers(1, 8),
       st.sampled_from(list(REL_TOL)), st.booleans(), st.booleans(), st.booleans(), st.integers(0, 2**31 - 1))
def test_kv_heads_equal_to_heads_is_todays_layer_bit_for_bit(B, S, H, L, dtype, causal, scale, bias, seed):
    D = H * L
    old = _legacy_weights(D, H, seed=seed, dtype=dtype, bias=bias)
    for n_kv in (None, H):  # left out, or given as H: the same layer
        w = AttentionWeights.random(D, H, n_kv_heads=n_kv, seed=seed, dtype=dtype, bias=bias)
        for name, t in zip(("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O"), old):
            mine = getattr(w, name)
            assert (mine is None) == (t is None) and (t is None or torch.equal(mine, t)), name
        x = random_input(B, S, D, seed=seed, dtype=dtype)  # [B, S, D]
        tr = multi_head_attention(x, w, causal=causal, scale=scale)
        ref = _legacy_forward(x, *old, causal, scale)
        for name in TRACE_FIELDS:
            assert torch.equal(getattr(tr, name), ref[name]), name
        assert tr.k_expanded is tr.k and tr.v_expanded is tr.v  # nothing expanded, nothing copied


# ---- the grouped layer ------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(grouped_sizes(), st.sampled_from(list(REL_TOL)), st.booleans(), st.booleans(), st.booleans(),
       st.integers(0, 2**31 - 1))
def test_concat_equals_sum_with_shared_keys_and_values(size, dtype, causal, scale, bias, seed):
    B, S, H, H_kv, L = size
    w, tr = run_seeded(B, S, H * L, H, n_kv_heads=H_kv, seed=seed, dtype=dtype, causal=causal,
                       scale=scale, bias=bias)
    assert (w.n_kv_heads, w.group_size) == (H_kv, H // H_kv)
    assert tr.out_concat.dtype == tr.out_sum.dtype == dtype
    assert _rel_err(tr.out_sum, tr.out_concat) <= REL_TOL[dtype]


@settings(max_examples=60, deadline=None)
@given(grouped_sizes(), st.booleans(), st.booleans(), st.booleans(), st.integers(0, 2**31 - 1))
def test_sdpa_with_enable_gqa_agrees_in_float64(size, causal, scale, bias, seed):
    B, S, H, H_kv, L = size
    w, tr = run_seeded(B, S, H * L, H, n_kv_heads=H_kv, seed=seed, dtype=torch.float64, causal=causal,
                       scale=scale, bias=bias)
    ref = sdpa_reference(tr.x, w, causal=causal, scale=scale)  # [B, S, D]
    assert ref.shape == tr.out_concat.shape
    assert float((ref - tr.out_concat).abs().max()) <= 1e-10
    assert float((ref - tr.out_sum).abs().max()) <= 1e-10


@settings(max_examples=40, deadline=None)
@given(grouped_sizes(), st.booleans(), st.integers(0, 1000))
def test_expansion_maps_head_h_to_group_h_div_G(size, bias, seed):
    B, S, H, H_kv, L = size
    w, tr = run_seeded(B, S, H * L, H, n_kv_heads=H_kv, seed=seed, dtype=torch.float64, bias=bias)
    G = H // H_kv
    for h in range(H):
        assert w.kv_head_of(h) == h // G
        assert torch.equal(tr.k_expanded[:, h], tr.k[:, h // G])
        assert torch.equal(tr.v_expanded[:, h], tr.v[:, h // G])
        assert torch.equal(w.W_K_per_head[h], w.W_K[h // G])
    # Heads of one group read equal keys and values; their queries (and so their patterns) differ.
    if G > 1 and S > 1:
        assert torch.equal(tr.k_expanded[:, 0], tr.k_expanded[:, 1])
        assert not torch.equal(tr.q[:, 0], tr.q[:, 1])


@settings(max_examples=30, deadline=None)
@given(grouped_sizes(), st.booleans(), st.booleans(), st.integers(0, 1000))
def test_grouped_layer_is_a_multi_head_layer_with_repeated_key_value_weights(size, causal, bias, seed):
    B, S, H, H_kv, L = size
    w, tr = run_seeded(B, S, H * L, H, n_kv_heads=H_kv, seed=seed, dtype=torch.float64, causal=causal, bias=bias)
    G = H // H_kv
    expanded = AttentionWeights(
        w.W_Q, w.W_K_per_head, w.W_V_per_head, w.W_O, w.b_Q,
        None if w.b_K is None else w.b_K.repeat_interleave(G, 0),
        None if w.b_V is None else w.b_V.repeat_interleave(G, 0), w.b_O,
    )
    plain = multi_head_attention(tr.x, expanded, causal=causal)
    torch.testing.assert_close(plain.out_concat, tr.out_concat, rtol=1e-12, atol=1e-12)
    # The MHA form goes on to nn.MultiheadAttention; the grouped one is refused there.
    expanded.to_torch()
    if G > 1:
        with pytest.raises(ValueError, match="no grouped-query attention"):
            w.to_torch()


@given(grouped_sizes(), st.booleans(), st.booleans())
def test_grouped_attention_needs_no_expanded_copy_and_agrees(size, causal, scale):
    B, S, H, H_kv, L = size
    _, tr = run_seeded(B, S, H * L, H, n_kv_heads=H_kv, seed=2, dtype=torch.float64, causal=causal, scale=scale)
    z = grouped_attention(tr.q, tr.k, tr.v, causal=causal, scale=scale)  # [B, H, S, L]
    torch.testing.assert_close(z, tr.z, rtol=1e-12, atol=1e-12)


def test_draw_is_shared_across_kv_heads():
    """W_Q, W_O, b_Q, b_O do not depend on n_kv_heads; kv head g is MHA head g·G of the same seed."""
    full = AttentionWeights.random(48, 8, seed=11, bias=True)
    for H_kv in divisors(8):
        G = 8 // H_kv
        w = AttentionWeights.random(48, 8, n_kv_heads=H_kv, seed=11, bias=True)
        for name in ("W_Q", "W_O", "b_Q", "b_O"):
            assert torch.equal(getattr(w, name), getattr(full, name)), name
        for name in ("W_K", "W_V", "b_K", "b_V"):
            assert torch.equal(getattr(w, name), getattr(full, name)[::G]), name
            assert getattr(w, name).is_contiguous()


def test_trace_shapes_and_counts_with_sharing():
    B, S, D, H, H_kv = 2, 7, 48, 6, 2
    L = D // H
    w, tr = run_seeded(B, S, D, H, n_kv_heads=H_kv, seed=0)
    assert w.W_Q.shape == w.W_O.transpose(1, 2).shape == (H, D, L)
    assert w.W_K.shape == w.W_V.shape == (H_kv, D, L)
    assert tr.q.shape == tr.z.shape == tr.k_expanded.shape == tr.v_expanded.shape == (B, H, S, L)
    assert tr.k.shape == tr.v.shape == (B, H_kv, S, L)
    assert tr.scores.shape == tr.pattern.shape == (B, H, S, S)
    assert tr.per_head.shape == (B, S, H, D) and tr.out_concat.shape == tr.out_sum.shape == (B, S, D)
    assert (tr.n_kv_heads, tr.group_size) == (H_kv, H // H_kv)
    numel = trace_numel(B, S, D, H, H_kv)
    assert numel["k"] == B * H_kv * S * L and numel["k_expanded"] == B * H * S * L
    for name, count in numel.items():
        assert getattr(tr, name).numel() == count, name
    # Without sharing, nothing new is listed: the budget of every existing page is unchanged.
    assert trace_numel(B, S, D, H) == trace_numel(B, S, D, H, H) and "k_expanded" not in trace_numel(B, S, D, H)
    assert expand_kv(tr.q, 1) is tr.q


@pytest.mark.parametrize("H_kv", [1, 2, 4])
def test_circuits(H_kv):
    w = AttentionWeights.random(16, 4, n_kv_heads=H_kv, seed=4, dtype=torch.float64)
    G = 4 // H_kv
    assert w.QK.shape == w.OV.shape == (4, 16, 16)
    for h in range(4):
        torch.testing.assert_close(w.QK[h], w.W_Q[h] @ w.W_K[h // G].T)
        torch.testing.assert_close(w.OV[h], w.W_V[h // G] @ w.W_O[h])
    # What the circuits are for: unscaled scores are x_q QK x_kᵀ, and head h writes pattern @ (x OV[h]).
    x = random_input(1, 5, 16, seed=4, dtype=torch.float64)[0]  # [S, D]
    tr = multi_head_attention(x[None], w, scale=False)
    for h in range(4):
        torch.testing.assert_close(tr.scores[0, h], x @ w.QK[h] @ x.T)
        torch.testing.assert_close(tr.per_head[0, :, h], tr.pattern[0, h] @ (x @ w.OV[h]))


def test_meta_weights_have_shapes_and_no_memory():
    w = AttentionWeights.meta(4096, 32, n_kv_heads=8, dtype=torch.bfloat16)
    assert w.device.type == "meta" and (w.n_heads, w.n_kv_heads, w.d_head, w.group_size) == (32, 8, 128, 4)
    assert (w.W_Q.numel(), w.W_K.numel(), w.W_V.numel(), w.W_O.numel()) == (4096**2, 4096 * 1024, 4096 * 1024, 4096**2)
    # An explicit head width: H·L need not equal D (W_O is still [H, L, D]).
    odd = AttentionWeights.meta(3072, 16, d_head=256)
    assert odd.W_Q.shape == (16, 3072, 256) and odd.W_O.shape == (16, 256, 3072)


def test_invalid_grouping_is_refused():
    with pytest.raises(ValueError, match="does not divide n_heads"):
        AttentionWeights.random(24, 6, n_kv_heads=4)
    with pytest.raises(ValueError, match="does not divide n_heads"):
        AttentionWeights.random(24, 6, n_kv_heads=0)
    w = AttentionWeights.random(24, 6, n_kv_heads=3)
    with pytest.raises(ValueError, match="must divide the 6 query heads"):
        AttentionWeights(w.W_Q, torch.zeros(4, 24, 4), torch.zeros(4, 24, 4), w.W_O)
    with pytest.raises(ValueError, match="W_V"):
        AttentionWeights(w.W_Q, w.W_K, w.W_V[:1], w.W_O)
    with pytest.raises(ValueError, match="b_K"):
        AttentionWeights(w.W_Q, w.W_K, w.W_V, w.W_O, b_K=torch.zeros(6, 4))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("H_kv", [1, 2, 8])
def test_cuda_grouped_matches_cpu_and_sdpa(dtype, H_kv):
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    w, gpu = run_seeded(2, 16, 64, 8, n_kv_heads=H_kv, seed=0, dtype=dtype, device="cuda", causal=True)
    _, cpu = run_seeded(2, 16, 64, 8, n_kv_heads=H_kv, seed=0, dtype=torch.float64, causal=True)
    assert gpu.out_concat.device.type == "cuda"
    assert _rel_err(gpu.out_concat.cpu(), cpu.out_concat) <= REL_TOL[dtype] * 10
    assert _rel_err(gpu.out_sum, gpu.out_concat) <= REL_TOL[dtype]
    ref = sdpa_reference(gpu.x, w, causal=True)
    assert _rel_err(ref, gpu.out_concat) <= REL_TOL[dtype] * 10


def test_why_the_trace_copies_instead_of_viewing():
    """The claims in expand_kv's docstring about views and strides, checked on torch itself."""
    B, H_kv, G, S, L = 2, 3, 4, 5, 6
    k = torch.randn(B, H_kv, S, L)  # [B, H_kv, S, L]
    grouped = k[:, :, None].expand(B, H_kv, G, S, L)  # [B, H_kv, G, S, L]
    assert grouped.stride(2) == 0 and grouped.data_ptr() == k.data_ptr()  # a genuine view
    flat = grouped.reshape(B, H_kv * G, S, L)  # [B, H, S, L]
    assert flat.data_ptr() != k.data_ptr() and 0 not in flat.stride()  # flattening it copies
    assert torch.equal(flat, expand_kv(k, G))  # and is the same copy expand_kv makes
    # With one key/value head (multi-query attention) a zero-stride [B, H, S, L] view does exist.
    mqa = k[:, :1].expand(B, G, S, L)
    assert mqa.stride(1) == 0 and torch.equal(mqa, expand_kv(k[:, :1], G))


def test_to_keeps_the_grouping():
    w = AttentionWeights.random(24, 6, n_kv_heads=2, seed=1, bias=True).to(dtype=torch.float64)
    assert (w.n_kv_heads, w.group_size, w.dtype) == (2, 3, torch.float64) and w.b_K.shape == (2, 4)
