"""The correctness check every variant passes before it is timed: a float64 reference and a tolerance."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from core.attention import concat_then_project, multi_head_attention
from core.compare import eps


def check_tolerance(dtype: torch.dtype, d_model: int, kind: str = "projection", *, reduced_accumulation: bool = False) -> float:
    """Largest relative RMS difference from the float64 reference that still counts as correct.

    The reference is the same sum computed in float64 from the same (already rounded) inputs, so
    the difference is only what the variant's own arithmetic rounds away. Two sources, each
    with room to spare: the output's roundings in the dtype (the deepest chain is head_loop's H
    roundings of a running sum; measured up to 1.3 steps RMS at H = 64, D = 2048), and the
    accumulation over D products in the accumulating dtype (float32 for the half types, whose
    products accumulate in float32 on the CPU and in cuBLAS). So: 4·eps(dtype) + √D·eps(accumulator),
    twice that for the whole forward.

    What it catches: a head missing among H changes the output by 1/√H of its RMS (heads are
    independent), so in bfloat16 (eps = 2⁻⁷, tolerance ≈ 0.031 at D ≤ 2048) any head missing
    among up to 64 heads (0.125), a swapped head, a missing transpose; in float32 anything larger
    than a few rounding steps of float32.
    """
    half = dtype in (torch.float16, torch.bfloat16)
    accumulator = torch.float32 if half else dtype
    # cuBLAS's reduced-precision split-K adds a few roundings of the partial sums in the dtype
    # (not measured here: no GPU was at hand); the model allows four more steps for them.
    steps = 8 if half and reduced_accumulation else 4
    tol = steps * eps(dtype) + math.sqrt(max(d_model, 1)) * eps(accumulator)
    return 2 * tol if kind in ("forward", "gqa") else tol


def rel_error(a: Tensor, ref: Tensor) -> float:
    """‖a − ref‖₂ / ‖ref‖₂ in float64; inf for a wrong shape or a non-finite difference."""
    if a.shape != ref.shape:
        return math.inf
    diff = float((a.detach().double() - ref.detach().double()).norm())
    scale = float(ref.detach().double().norm())
    if not math.isfinite(diff):
        return math.inf
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


def float64_reference(kind: str, inputs: tuple) -> Tensor:
    """The output computed in float64 from the same inputs: concat (projection) or core's forward."""
    with torch.no_grad():
        if kind == "forward":
            x, weights = inputs
            return multi_head_attention(x.double(), weights.to(torch.float64)).out_concat  # [B, S, D] float64
        z, W_O = inputs
        return concat_then_project(z.double(), W_O.double())  # [B, S, D] float64


def _reduced_accumulation(device: str, dtype: torch.dtype) -> bool:
    """Whether cuBLAS may accumulate a half-precision GEMM in half precision (a torch setting)."""
    if not str(device).startswith("cuda"):
        return False
    matmul = torch.backends.cuda.matmul
    if dtype == torch.float16:
        return bool(getattr(matmul, "allow_fp16_reduced_precision_reduction", False))
    if dtype == torch.bfloat16:
        return bool(getattr(matmul, "allow_bf16_reduced_precision_reduction", False))
    return False
