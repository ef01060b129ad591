"""The essay's central check, ready to call: run attention on seeded inputs, compare both endings."""

from __future__ import annotations

import torch
from torch import Tensor

from core.attention import AttentionTrace, AttentionWeights, multi_head_attention
from core.compare import Diff, compare

__all__ = ["random_input", "run_seeded", "identity_demo"]

_INPUT_STREAM = 1_000_003  # offset so the input and the weights never share a random stream


def random_input(
    batch: int, seq: int, d_model: int, *, seed: int = 0, dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> Tensor:
    """Unit-variance stand-in for embeddings, x [B, S, D]; drawn in float64 on the CPU, then cast."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed) + _INPUT_STREAM)
    x = torch.randn(batch, seq, d_model, generator=gen, dtype=torch.float64)  # [B, S, D]
    return x.to(device=device, dtype=dtype)


def run_seeded(
    batch: int, seq: int, d_model: int, n_heads: int, *, seed: int = 0,
    dtype: torch.dtype = torch.float32, device: str = "cpu", causal: bool = False,
    scale: bool = True, bias: bool = False, n_kv_heads: int | None = None,
) -> tuple[AttentionWeights, AttentionTrace]:
    """Seeded weights and input → the full trace. The same arguments give the same numbers.

    ``n_kv_heads`` (default ``n_heads``) shares keys and values among groups of query heads; the
    input and every other weight are the same numbers at every ``n_kv_heads``.
    """
    weights = AttentionWeights.random(
        d_model, n_heads, n_kv_heads=n_kv_heads, seed=seed, dtype=dtype, device=device, bias=bias
    )
    x = random_input(batch, seq, d_model, seed=seed, dtype=dtype, device=device)  # [B, S, D]
    return weights, multi_head_attention(x, weights, causal=causal, scale=scale)


def identity_demo(
    batch: int = 1, seq: int = 20, d_model: int = 512, n_heads: int = 8, *, seed: int = 0,
    dtype: torch.dtype = torch.float32, device: str = "cpu", n_kv_heads: int | None = None,
) -> Diff:
    """concat-then-project against project-then-sum on one seeded forward pass."""
    _, trace = run_seeded(batch, seq, d_model, n_heads, seed=seed, dtype=dtype, device=device,
                          n_kv_heads=n_kv_heads)
    return compare(trace.out_sum, trace.out_concat)
