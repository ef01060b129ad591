"""The *Concat versus sum* page's layer run through ``torch.nn.MultiheadAttention``, and what it ran.

A from-scratch layer is only worth trusting if it matches the reference one. ``torch_check``
loads the page's seeded weights into the module (``AttentionWeights.to_torch``), runs it on the
same input with the same mask and compares its output with both endings; ``torch_calls`` records
the top-level torch calls the module made while it ran, so the page can say which path PyTorch
took (and that it, too, ends by concatenating) from the run rather than from a description that
a new torch version could make wrong. Its own module because it is its own job: the rest of
``core.concat_vs_sum`` never touches ``nn.MultiheadAttention``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from core.compare import compare
from core.device import dtype_from_name
from core.identity import run_seeded

__all__ = ["torch_calls", "torch_check"]


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


class _CallRecorder(TorchDispatchMode):
    """Records the top-level torch calls made while it is active (thread-local, like every mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in _CALL_MEANING:
            shapes = [list(a.shape) for a in args if isinstance(a, Tensor)]
            result = out[0] if isinstance(out, (tuple, list)) else out
            self.calls.append({
                "call": name,
                "inputs": "; ".join(str(x) for x in shapes),
                "output": str(list(result.shape)) if isinstance(result, Tensor) else "",
                "what it is": _CALL_MEANING[name],
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


def torch_check(
    batch: int, seq: int, d_model: int, n_heads: int, *, seed: int = 0, dtype: str = "float32",
    device: str = "cpu", causal: bool = False,
) -> dict:
    """Both endings against ``torch.nn.MultiheadAttention`` holding the same weights, same input.

    The module is built by ``AttentionWeights.to_torch()`` and run as inference (dropout off);
    causal masking is its boolean ``attn_mask`` (True = may not attend). ``calls`` is what the
    module ran (``torch_calls``).
    """
    weights, trace = run_seeded(batch, seq, d_model, n_heads, seed=seed, dtype=dtype_from_name(dtype),
                                device=device, causal=causal)
    mha = weights.to_torch()
    x = trace.x  # [B, S, D]
    mask = torch.ones(seq, seq, dtype=torch.bool, device=x.device).triu(1) if causal else None  # [S, S]
    out_torch, calls = torch_calls(mha, x, mask)  # [B, S, D]
    names = list(calls["call"])
    return {
        "concat": compare(trace.out_concat, out_torch).as_dict(),
        "sum": compare(trace.out_sum, out_torch).as_dict(),
        "out_proj_is_W_O": bool(torch.equal(mha.out_proj.weight, weights.W_O.reshape(-1, d_model).T)),
        "calls": calls,
        "fast_path": "_native_multi_head_attention" in names,
        "has_in_proj_bias": mha.in_proj_bias is not None,
        "linear_calls": names.count("linear"),
        "sdpa_calls": names.count("scaled_dot_product_attention"),
    }
