"""The sizes, and the seven ways of writing one sum: the variants that core.timing checks and times.

Every projection variant turns the same z [B, H, S, L] and W_O [H, L, D] into the same
out [B, S, D]; they differ only in how the sum over (h, l) is laid out in memory:

    gemm              x [B·S, D] @ W [D, D], inputs prepared in advance: the hardware reference
    concat            core.attention.concat_then_project: copy heads side by side, one GEMM
    einsum            torch.einsum('bhsl,hld->bsd'): the sum over h and l as one contraction
    per_head_sum      core.attention.project_then_sum: materialize every head's result [H, B·S, D], then sum over H
    per_head_sum_out  the same arithmetic into buffers allocated once (no allocation per call)
    head_loop         a Python loop over heads: out += z_h @ W_O[h]
    broadcast         (z[..., None] * W_O).sum(-2): [B, S, H, L, D] products, then two sums

All of them do the same 2·B·S·D² floating-point operations. The forward variants
(``forward_trace``, ``forward_mha``, ``forward_sdpa``) time core's instrumented forward pass
against torch.nn.MultiheadAttention and F.scaled_dot_product_attention. The grouped-query
variants (``gqa_sdpa``, ``gqa_expand``; core.timing.gqa) time the same forward with H_kv < H
key/value heads, against ``forward_sdpa`` as the layer without sharing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from core.attention import AttentionWeights, concat_then_project, merge_heads, multi_head_attention, project_then_sum
from core.identity import random_input
from core.sizes import divisors


@dataclass(frozen=True)
class Size:
    """B, S, D, H of one timed layer, and H_kv (key/value heads; left out: H, no sharing).

    Only the grouped-query variants read ``n_kv_heads``: the W_O ending only ever meets z
    [B, H, S, L], which has H heads whatever H_kv is, so the projection variants are the same
    programs at every H_kv. Stored as a number (None becomes H), so equal layers compare equal.
    """

    batch: int
    seq: int
    d_model: int
    n_heads: int
    n_kv_heads: int | None = None

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        if min(self.batch, self.seq, self.d_model, self.n_heads, self.n_kv_heads) < 1:
            raise ValueError(f"every size must be positive, got {self}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads = {self.n_heads} does not divide d_model = {self.d_model}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_kv_heads = {self.n_kv_heads} does not divide n_heads = {self.n_heads}")

    @property
    def group_size(self) -> int:
        """G = H / H_kv: query heads per key/value head (1 without sharing)."""
        return self.n_heads // self.n_kv_heads

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def bsd(self) -> int:
        """Elements in one [B, S, D] tensor: the unit every variant's memory is counted in."""
        return self.batch * self.seq * self.d_model


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # "reference", "projection", "forward" or "gqa"
    label: str  # one line for legends and tables
    code: str  # the line(s) that do the work, as printed on the page


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("gemm", "reference", "bare GEMM [B·S, D] × [D, D]", "x @ W"),
    Variant("concat", "projection", "concat heads, then one GEMM", "concat_then_project(z, W_O)"),
    Variant("einsum", "projection", "one einsum over (h, l)", "torch.einsum('bhsl,hld->bsd', z, W_O)"),
    Variant("per_head_sum", "projection", "per-head results [H,B·S,D], then sum", "project_then_sum(z, W_O)"),
    Variant("per_head_sum_out", "projection", "per-head results into preallocated buffers",
            "torch.bmm(z_heads, W_O, out=per_head); torch.sum(per_head, 0, out=out)"),
    Variant("head_loop", "projection", "Python loop over heads", "for h in range(H): out += z[:, h] @ W_O[h]"),
    Variant("broadcast", "projection", "broadcast to [B,S,H,L,D], then sum",
            "(z.transpose(1, 2)[..., None] * W_O).sum(-2).sum(-2)"),
    Variant("forward_trace", "forward", "whole forward: core (every intermediate kept)",
            "multi_head_attention(x, weights).out_concat"),
    Variant("forward_mha", "forward", "whole forward: torch.nn.MultiheadAttention",
            "mha(x, x, x, need_weights=False)[0]"),
    Variant("forward_sdpa", "forward", "whole forward: F.scaled_dot_product_attention",
            "concat_then_project(F.scaled_dot_product_attention(q, k, v), W_O)"),
    Variant("gqa_sdpa", "gqa", "whole forward, shared K/V: SDPA with enable_gqa",
            "concat_then_project(F.scaled_dot_product_attention(q, k_kv, v_kv, enable_gqa=True), W_O)"),
    Variant("gqa_expand", "gqa", "whole forward, shared K/V: repeat K/V to H heads, then SDPA",
            "concat_then_project(F.scaled_dot_product_attention(q, expand_kv(k_kv, G), expand_kv(v_kv, G)), W_O)"),
]}
PROJECTION_KINDS = ("reference", "projection")  # the variants of the W_O ending, and the bare GEMM
PROJECTION_VARIANTS = tuple(n for n, v in VARIANTS.items() if v.kind in PROJECTION_KINDS)
FORWARD_VARIANTS = tuple(n for n, v in VARIANTS.items() if v.kind == "forward")
GQA_VARIANTS = tuple(n for n, v in VARIANTS.items() if v.kind == "gqa")
# What a grouped-query comparison times: the same layer without sharing (forward_sdpa), then with.
GQA_COMPARISON = ("forward_sdpa", *GQA_VARIANTS)
SWEEP_AXES = ("seq", "heads", "batch", "d_model")


def flops(variant: str, size: Size) -> int:
    """Floating-point operations of the useful work (one multiply and one add per term).

    Every projection variant computes the same D·D products for each of the B·S tokens; the
    forward adds Q, K, V (3× that), scores and the weighted sum of values (2·B·S·S·D each). With
    shared keys and values the K and V projections shrink to H_kv·L columns each, and the scores
    and the weighted sum do not shrink at all: every query head still scores every key.
    """
    B, S, D = size.batch, size.seq, size.d_model
    kind = VARIANTS[variant].kind
    if kind == "forward":
        return 8 * B * S * D * D + 4 * B * S * S * D
    if kind == "gqa":
        kv_width = size.n_kv_heads * size.d_head  # H_kv·L columns of K, and as many of V
        return 2 * B * S * D * (2 * D + 2 * kv_width) + 4 * B * S * S * D
    return 2 * B * S * D * D


def projection_inputs(size: Size, dtype: torch.dtype, device: str = "cpu", seed: int = 0) -> tuple[Tensor, Tensor]:
    """Seeded z [B, H, S, L] (unit variance) and W_O [H, L, D] (std 1/√D), drawn on the CPU."""
    B, S, D, H, L = size.batch, size.seq, size.d_model, size.n_heads, size.d_head
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    draw_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    z = torch.randn(B, H, S, L, generator=gen, dtype=draw_dtype).to(device=device, dtype=dtype)  # [B, H, S, L]
    W_O = (torch.randn(H, L, D, generator=gen, dtype=draw_dtype) / math.sqrt(D)).to(device=device, dtype=dtype)  # [H, L, D]
    return z, W_O


def make_variant(name: str, z: Tensor, W_O: Tensor) -> Callable[[], Tensor]:
    """A zero-argument callable computing out [B, S, D] from z [B, H, S, L] and W_O [H, L, D]."""
    B, H, S, L = z.shape
    D = W_O.shape[-1]
    if name == "gemm":
        x = z.transpose(1, 2).reshape(B * S, H * L).contiguous()  # [B·S, D] concatenated once, outside the clock
        W = W_O.reshape(H * L, D)  # [D, D]
        return lambda: (x @ W).view(B, S, D)  # [B, S, D]
    if name == "concat":
        return lambda: concat_then_project(z, W_O)  # [B, S, D]
    if name == "einsum":
        return lambda: torch.einsum("bhsl,hld->bsd", z, W_O)  # [B, S, D]
    if name == "per_head_sum":
        return lambda: project_then_sum(z, W_O)  # [B, S, D]
    if name == "per_head_sum_out":
        # The same copy, batched GEMM and sum as per_head_sum, into memory allocated once: the
        # difference between the two is the price of allocating (and page-faulting) per call.
        z_heads = torch.empty(H, B * S, L, dtype=z.dtype, device=z.device)  # [H, B·S, L]
        per_head = torch.empty(H, B * S, D, dtype=z.dtype, device=z.device)  # [H, B·S, D]
        out = torch.empty(B * S, D, dtype=z.dtype, device=z.device)  # [B·S, D]

        def per_head_sum_out() -> Tensor:
            z_heads.view(H, B, S, L).copy_(z.transpose(0, 1))  # [H, B, S, L] heads first
            torch.bmm(z_heads, W_O, out=per_head)  # [H, B·S, L] @ [H, L, D] → [H, B·S, D]
            torch.sum(per_head, dim=0, out=out)  # [B·S, D]
            return out.view(B, S, D)

        return per_head_sum_out
    if name == "head_loop":

        def head_loop() -> Tensor:
            out = z[:, 0] @ W_O[0]  # [B, S, L] @ [L, D] → [B, S, D]
            for h in range(1, H):
                out += z[:, h] @ W_O[h]  # [B, S, D]
            return out

        return head_loop
    if name == "broadcast":

        def broadcast() -> Tensor:
            z_bshl = z.transpose(1, 2)  # [B, S, H, L] a view
            per_head = (z_bshl[..., None] * W_O).sum(-2)  # [B, S, H, L, 1] * [H, L, D] → [B, S, H, L, D] → [B, S, H, D]
            return per_head.sum(-2)  # [B, S, D]

        return broadcast
    raise ValueError(f"unknown projection variant {name!r}; choose from {', '.join(PROJECTION_VARIANTS)}")


def forward_inputs(size: Size, dtype: torch.dtype, device: str = "cpu", seed: int = 0) -> tuple[Tensor, AttentionWeights]:
    """Seeded x [B, S, D] and attention weights, as everywhere in the essay (core.identity)."""
    weights = AttentionWeights.random(size.d_model, size.n_heads, seed=seed, dtype=dtype, device=device)
    x = random_input(size.batch, size.seq, size.d_model, seed=seed, dtype=dtype, device=device)  # [B, S, D]
    return x, weights


def make_forward(name: str, x: Tensor, weights: AttentionWeights) -> Callable[[], Tensor]:
    """A zero-argument callable computing the attention output [B, S, D] (no mask, scores divided by √L)."""
    B, S, D = x.shape
    H, L = weights.n_heads, weights.d_head
    if name == "forward_trace":
        return lambda: multi_head_attention(x, weights).out_concat  # [B, S, D]
    if name == "forward_mha":
        mha = weights.to_torch()  # eval mode, batch_first
        return lambda: mha(x, x, x, need_weights=False)[0]  # [B, S, D]
    if name == "forward_sdpa":
        W_qkv = torch.cat([merge_heads(W) for W in (weights.W_Q, weights.W_K, weights.W_V)], dim=1)  # [D, 3D]

        def forward_sdpa() -> Tensor:
            qkv = x @ W_qkv  # [B, S, 3D] one GEMM for all three projections
            q, k, v = qkv.view(B, S, 3, H, L).permute(2, 0, 3, 1, 4).unbind(0)  # 3 × [B, H, S, L]
            z = F.scaled_dot_product_attention(q, k, v)  # [B, H, S, L] softmax(q kᵀ/√L) v
            return concat_then_project(z, weights.W_O)  # [B, S, D]

        return forward_sdpa
    raise ValueError(f"unknown forward variant {name!r}; choose from {', '.join(FORWARD_VARIANTS)}")


def parse_sweep(text: str) -> tuple[str, list[int]]:
    """'seq=64,128,256' → ('seq', [64, 128, 256]); raises ValueError with a readable reason."""
    axis, sep, values = text.partition("=")
    axis = axis.strip().replace("-", "_")
    axis = {"n_heads": "heads"}.get(axis, axis)
    if not sep or axis not in SWEEP_AXES:
        raise ValueError(f"a sweep is written axis=v1,v2,… with axis one of {', '.join(SWEEP_AXES)}; got {text!r}")
    try:
        numbers = sorted({int(v) for v in values.split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"sweep values must be whole numbers separated by commas; got {values!r}") from None
    if not numbers or min(numbers) < 1:
        raise ValueError(f"sweep values must be positive whole numbers; got {values!r}")
    return axis, numbers


def sweep_sizes(base: Size, axis: str | None, values: Sequence[int]) -> list[Size]:
    """The base size first, then the sweep's sizes in increasing order (the base counted once).

    Values that would make heads not divide d_model are dropped (the caller says so).
    """
    sizes = [base]
    if axis:
        field = {"heads": "n_heads"}.get(axis, axis)
        for v in sorted(set(values)):
            try:
                if axis == "heads":  # keep the group size where it divides, else the nearest H_kv that does
                    v = int(v)
                    kv = min(divisors(v), key=lambda d: (abs(d - v / base.group_size), d)) if v >= 1 else 1
                    size = replace(base, n_heads=v, n_kv_heads=kv)
                else:
                    size = replace(base, **{field: int(v)})
            except ValueError:
                continue
            if size not in sizes:
                sizes.append(size)
    return sizes
