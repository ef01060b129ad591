"""The *Concat versus sum* page's layer run through PyTorch's own attention, and what it ran.

A from-scratch layer is only worth trusting if it matches the reference one. ``torch_check``
loads the page's seeded weights into ``torch.nn.MultiheadAttention`` (``AttentionWeights.to_torch``),
runs it on the same input with the same mask and compares its output with both endings;
``torch_calls`` records the top-level torch calls the module made while it ran, so the page can
say which path PyTorch took (and that it, too, ends by concatenating) from the run rather than
from a description that a new torch version could make wrong.

``nn.MultiheadAttention`` has one key and one value head per query head: it cannot hold
grouped-query weights (H_kv < H). There the reference is ``core.attention.sdpa_reference``, the
same projections handed to ``F.scaled_dot_product_attention(..., enable_gqa=True)``, whose calls
are recorded the same way (``sdpa_calls``). Its own module because it is its own job: the rest of
``core.concat_vs_sum`` never touches PyTorch's attention.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from core.attention import sdpa_reference
from core.compare import compare
from core.device import dtype_from_name
from core.identity import run_seeded

__all__ = ["torch_calls", "sdpa_calls", "torch_check", "MHA", "SDPA"]

MHA = "nn.MultiheadAttention"
SDPA = "scaled_dot_product_attention"


# What each call nn.MultiheadAttention makes means on this page (torch 2.13's
# F.multi_head_attention_forward, need_weights=False). The fused fast path,
# torch._native_multi_head_attention, is only taken when the module has an in-projection bias.
_CALL_MEANING = {
    "linear": "out_proj: the concatenated heads @ out_proj.weight.T, one product",
    "scaled_dot_product_attention": "softmax(q @ kᵀ / √L + mask) @ v for every head at once",
    "permute": "[B, H, S, L] → [S, B, H, L]: the transpose before the reshape",
    "reshape": "heads side by side: the concatenation",
    "bmm": "a batched matrix product",
    "baddbmm": "a batched matrix product plus the additive mask",
    "softmax": "softmax over the keys",
    "_native_multi_head_attention": "the fused fast path: the whole layer in one call",
}

# The same for ``sdpa_reference`` (this project's projections around torch's kernel). A reshape
# there is either the concatenation (4-D z) or W_O [H, L, D] read as one matrix (3-D); the
# projections are told apart by their order (q, k, v), see ``sdpa_calls``.
_SDPA_MEANING = {
    "einsum": "a projection: x @ W per head",
    "scaled_dot_product_attention": "softmax(q @ kᵀ / √L + mask) @ v for every query head at once; with "
                                    "enable_gqa=True, query head h reads key/value head h // G",
    "transpose": "[B, H, S, L] → [B, S, H, L]: the transpose before the reshape",
    "reshape": "heads side by side: the concatenation",
    "matmul": "the concatenated heads @ W_O as one [H·L, D] matrix: one product",
}


def _shapes(args) -> list[list[int]]:
    """The shapes of a call's tensor arguments, including those inside a list (einsum's operands)."""
    flat = [x for a in args for x in (a if isinstance(a, (list, tuple)) else [a])]
    return [list(t.shape) for t in flat if isinstance(t, Tensor)]


class _CallRecorder(TorchDispatchMode):
    """Records the top-level torch calls made while it is active (thread-local, like every mode)."""

    def __init__(self, meaning: dict[str, str] | None = None) -> None:
        super().__init__()
        self.meaning = _CALL_MEANING if meaning is None else meaning
        self.calls: list[dict] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in self.meaning:
            result = out[0] if isinstance(out, (tuple, list)) else out
            self.calls.append({
                "call": name,
                "inputs": "; ".join(str(x) for x in _shapes(args)),
                "output": str(list(result.shape)) if isinstance(result, Tensor) else "",
                "what it is": self.meaning[name],
            })
        return out


def torch_calls(mha: torch.nn.Module, x: Tensor, mask: Tensor | None) -> tuple[Tensor, pd.DataFrame]:
    """Run ``mha`` on ``x`` (self-attention, inference) and list the torch calls it actually made.

    Only the calls that do arithmetic or move the head axis are kept (``_CALL_MEANING``); views
    and mask bookkeeping are left out. The list is read off the run, not written down, so it
    stays true when torch changes its implementation.
    """
    recorder = _CallRecorder()
    with torch.inference_mode(), recorder:
        out, _ = mha(x, x, x, need_weights=False, attn_mask=mask)  # [B, S, D]
    table = pd.DataFrame(recorder.calls, columns=["call", "inputs", "output", "what it is"])
    linear = table.index[table["call"] == "linear"]
    if len(linear) > 1:  # the first linear is the in-projection: x @ in_proj_weight.T, [.., 3D]
        table.loc[linear[0], "what it is"] = "the packed in-projection: x @ in_proj_weight.T, Q, K and V in one product"
    table.insert(0, "step", np.arange(len(table)))
    return out, table


def sdpa_calls(x: Tensor, weights, causal: bool) -> tuple[Tensor, pd.DataFrame]:
    """Run ``core.attention.sdpa_reference`` on ``x`` and list the torch calls it made.

    The three projections come first, in the order q, k, v (their outputs show k and v with H_kv
    heads); then the kernel, which takes k and v at H_kv heads; then the concat ending.
    """
    recorder = _CallRecorder(_SDPA_MEANING)
    with torch.inference_mode(), recorder:
        out = sdpa_reference(x, weights, causal=causal)  # [B, S, D]
    table = pd.DataFrame(recorder.calls, columns=["call", "inputs", "output", "what it is"])
    projections = table.index[table["call"] == "einsum"]
    for name, i in zip(("W_Q: q = x @ W_Q, one per query head", "W_K: k = x @ W_K, one per key/value head",
                        "W_V: v = x @ W_V, one per key/value head"), projections):
        table.loc[i, "what it is"] = "the projection with " + name
    for i in table.index[table["call"] == "reshape"]:
        if table.loc[i, "inputs"].count(",") == 2:  # a 3-D input: W_O [H, L, D]
            table.loc[i, "what it is"] = "W_O [H, L, D] read as one [H·L, D] matrix (no number moves)"
    table.insert(0, "step", np.arange(len(table)))
    return out, table


def torch_check(
    batch: int, seq: int, d_model: int, n_heads: int, *, seed: int = 0, dtype: str = "float32",
    device: str = "cpu", causal: bool = False, n_kv_heads: int | None = None,
) -> dict:
    """Both endings against PyTorch's attention holding the same weights, on the same input.

    Without sharing (H_kv = H) the reference is ``torch.nn.MultiheadAttention``, built by
    ``AttentionWeights.to_torch()`` and run as inference (dropout off); causal masking is its
    boolean ``attn_mask`` (True = may not attend). With sharing (H_kv < H), which that module
    cannot hold, it is ``sdpa_reference`` (``enable_gqa=True``). ``reference`` names which one ran
    (:data:`MHA` or :data:`SDPA`); ``calls`` is what it ran.
    """
    weights, trace = run_seeded(batch, seq, d_model, n_heads, seed=seed, dtype=dtype_from_name(dtype),
                                device=device, causal=causal, n_kv_heads=n_kv_heads)
    if weights.n_kv_heads != weights.n_heads:
        out_sdpa, calls = sdpa_calls(trace.x, weights, causal)  # [B, S, D]
        kernel = calls[calls["call"] == "scaled_dot_product_attention"]
        return {
            "reference": SDPA,
            "concat": compare(trace.out_concat, out_sdpa).as_dict(),
            "sum": compare(trace.out_sum, out_sdpa).as_dict(),
            "calls": calls,
            "kernel_inputs": str(kernel["inputs"].iloc[0]) if len(kernel) else "",
            "kv_shape": list(trace.k.shape),  # [B, H_kv, S, L]
            "q_shape": list(trace.q.shape),  # [B, H, S, L]
            "sdpa_calls": len(kernel),
        }
    mha = weights.to_torch()
    x = trace.x  # [B, S, D]
    mask = torch.ones(seq, seq, dtype=torch.bool, device=x.device).triu(1) if causal else None  # [S, S]
    out_torch, calls = torch_calls(mha, x, mask)  # [B, S, D]
    names = list(calls["call"])
    return {
        "reference": MHA,
        "concat": compare(trace.out_concat, out_torch).as_dict(),
        "sum": compare(trace.out_sum, out_torch).as_dict(),
        "out_proj_is_W_O": bool(torch.equal(mha.out_proj.weight, weights.W_O.reshape(-1, d_model).T)),
        "calls": calls,
        "fast_path": "_native_multi_head_attention" in names,
        "has_in_proj_bias": mha.in_proj_bias is not None,
        "linear_calls": names.count("linear"),
        "sdpa_calls": names.count("scaled_dot_product_attention"),
    }
