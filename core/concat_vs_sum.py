"""The maths behind the *Concat versus sum* page: how close the two endings of attention are.

Both endings start from the heads' outputs z [B, H, S, L] and W_O [H, L, D]:

    concat:  z_concat [B, S, H·L] @ W_O.reshape(H·L, D)            one product, D terms per output
    sum:     Σ_{h=0}^{H−1} z[:, h] [B, S, L] @ W_O[h] [L, D]      H products of L terms, then H adds

Same terms, different grouping, so in floating point they differ only by rounding. This module
measures that rounding in every dtype, judges each ending against a more precise reference,
takes one output number apart head by head, builds the concatenation right and wrong (a reshape
without the transpose) and lays W_O out the three ways a reader meets it; the check of the whole
layer against ``torch.nn.MultiheadAttention`` is ``core.concat_vs_sum_torch``. Everything returns
plain Python, numpy or pandas, so a Streamlit page can cache it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from core.attention import (
    AttentionTrace,
    AttentionWeights,
    concat_then_project,
    multi_head_attention,
    trace_numel,
)
from core.compare import Diff, compare, default_tolerance, eps, error_vs_reference, max_rel
from core.device import DTYPE_NAMES, dtype_from_name, is_supported
from core.identity import run_seeded

__all__ = [
    "EXTENDED_MAX_MACS",
    "has_extended_precision",
    "forward_flops",
    "page_numel",
    "final_step_reference",
    "identity_check",
    "path_shapes",
    "concat_vs_sum_report",
    "head_terms",
    "waterfall",
    "w_o_layouts",
    "rounding_example",
    "reshape_origin",
    "reshape_pitfall",
]

# numpy's longdouble is 80-bit extended precision on x86 (64-bit significand, 11 more bits than
# float64). Its matmul is a plain loop (~250 M multiply-adds/s), so the float64 row's reference
# is computed only up to this many multiply-adds (~0.1 s).
EXTENDED_MAX_MACS = 2**25


def has_extended_precision() -> bool:
    """Whether numpy's longdouble is more precise than float64 here (not on Windows or Apple silicon)."""
    return np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant


# ---- cost, before computing anything ----------------------------------------------------------


def forward_flops(batch: int, seq: int, d_model: int, n_heads: int, n_kv_heads: int | None = None) -> int:
    """Floating-point operations of one forward pass as this page runs it.

    Q projection 2BSD², K and V projections 2·2BSD·(H_kv·L) (shared heads are projected once),
    scores and pattern @ v 2·2BSSD (every query head still has its own), and both endings 2·2BSD².
    (n_heads cancels otherwise: H heads of width L = D/H do the work of one head of width D.)
    """
    B, S, D = batch, seq, d_model
    H_kv = n_heads if n_kv_heads is None else n_kv_heads
    kv_width = D * H_kv // n_heads  # H_kv·L; = D without sharing
    return 2 * B * S * D * (3 * D + 2 * kv_width + 2 * S)


def page_numel(batch: int, seq: int, d_model: int, n_heads: int, n_kv_heads: int | None = None) -> dict[str, int]:
    """Element counts of what the page holds at once at its peak, for ``ui.controls.budget_problem``.

    The precision table keeps a float64 run (the reference) next to the run in the dtype being
    measured; the PyTorch check adds nn.MultiheadAttention's own copy of the weights (without
    sharing) or a second q, k, v and z for scaled_dot_product_attention (with sharing).
    Count every element at 8 bytes (float64, the widest) to stay on the safe side.
    """
    D = d_model
    H_kv = n_heads if n_kv_heads is None else n_kv_heads
    run = trace_numel(batch, seq, d_model, n_heads, H_kv)
    numel = {**run, **{f"{name} (float64 reference)": n for name, n in run.items()}}
    kv_weights = D * D * H_kv // n_heads  # [H_kv, D, L]
    for name, n in (("W_Q", D * D), ("W_K", kv_weights), ("W_V", kv_weights), ("W_O", D * D)):
        numel[name] = n  # [H, D, L], [H_kv, D, L] or [H, L, D]
        numel[f"{name} (float64 reference)"] = n
    if H_kv == n_heads:
        numel["in_proj_weight (nn.MultiheadAttention)"] = 3 * D * D  # [3D, D]
        numel["out_proj.weight (nn.MultiheadAttention)"] = D * D  # [D, D]
    else:
        for name in ("q", "k", "v", "z"):
            numel[f"{name} (scaled_dot_product_attention)"] = run[name]
    return numel


# ---- the identity, measured -------------------------------------------------------------------


def final_step_reference(z: Tensor, W_O: Tensor) -> Tensor | None:
    """A more precise value of concat(z) @ W_O from the *same* rounded inputs, as float64 [B, S, D].

    Both endings start from the same z and W_O, so the fair judge of their rounding is the exact
    product of those very numbers. For float16/bfloat16/float32 inputs a float64 product is
    exact to ~1e-16, far below their own rounding. For float64 inputs it would be judging
    itself, so the product is taken in extended precision and rounded once to float64 (the
    correctly rounded answer, bar ties); None where that is unavailable or too large.
    """
    B, H, S, L = z.shape
    D = W_O.shape[-1]
    if z.dtype != torch.float64:
        return concat_then_project(z.double(), W_O.double())  # [B, S, D] float64
    if not has_extended_precision() or B * S * H * L * D > EXTENDED_MAX_MACS:
        return None
    z_concat = z.transpose(1, 2).reshape(B * S, H * L).cpu().numpy().astype(np.longdouble)  # [B·S, H·L]
    W_flat = W_O.reshape(H * L, D).cpu().numpy().astype(np.longdouble)  # [H·L, D]
    exact = (z_concat @ W_flat).astype(np.float64).reshape(B, S, D)  # [B, S, D] rounded once
    return torch.from_numpy(exact).to(z.device)


def identity_check(trace: AttentionTrace, weights: AttentionWeights, layer_ref: Tensor | None = None) -> dict:
    """Every readout of "concat versus sum" for one forward pass, as a flat dict of plain values.

    ``layer_ref`` is the output of the same layer run entirely in float64 (None for the float64
    run itself): how much the dtype costs overall, next to how much the choice of ending costs.
    """
    a, b = trace.out_sum, trace.out_concat  # [B, S, D] each; concat is the yardstick
    diff: Diff = compare(a, b)
    a64, b64 = a.double(), b.double()  # [B, S, D]
    err = (a64 - b64).abs()  # [B, S, D]
    mag = b64.abs()  # [B, S, D]

    # Element-wise relative difference, to show why the readout does not use it: it explodes
    # wherever an output happens to be near zero.
    rel = torch.where(mag > 0, err / mag.clamp_min(torch.finfo(torch.float64).tiny), err * float("inf"))
    rel = torch.where(rel.isnan(), 0.0, rel)  # 0 · inf where both are exactly zero
    worst = int(rel.argmax()) if rel.numel() else 0
    wb, ws, wj = np.unravel_index(worst, tuple(rel.shape))

    rtol, atol = default_tolerance(a.dtype)
    outside = err > atol + rtol * mag  # [B, S, D] the elements assert_close objects to

    row = {
        "dtype": diff.dtype,
        "eps": eps(a.dtype),
        "max_abs": diff.max_abs,
        "max_rel": diff.max_rel,
        "eps_units": diff.eps_units,
        "bitwise_equal": diff.bitwise_equal,
        "allclose": diff.allclose,
        "rtol": rtol,
        "atol": atol,
        "outside_tolerance": float(outside.double().mean()) if outside.numel() else 0.0,
        "output_scale": float(mag.max()) if mag.numel() else 0.0,
        "elementwise_max_rel": float(rel.max()) if rel.numel() else 0.0,
        "elementwise_at": (int(wb), int(ws), int(wj)),
        "elementwise_magnitude": float(mag[wb, ws, wj]) if mag.numel() else 0.0,
    }

    ref = final_step_reference(trace.z, weights.W_O)  # [B, S, D] float64, or None
    if ref is None:
        row.update(concat_err_abs=None, concat_err_rel=None, sum_err_abs=None, sum_err_rel=None,
                   concat_err_mean=None, sum_err_mean=None, concat_closer=None, sum_closer=None,
                   closer=None)
    else:
        e_concat, e_sum = error_vs_reference(b, ref), error_vs_reference(a, ref)
        dist_concat = (b64 - ref).abs()  # [B, S, D]
        dist_sum = (a64 - ref).abs()  # [B, S, D]
        mean_concat, mean_sum = float(dist_concat.mean()), float(dist_sum.mean())
        row.update(
            concat_err_abs=e_concat.max_abs, concat_err_rel=e_concat.max_rel,
            sum_err_abs=e_sum.max_abs, sum_err_rel=e_sum.max_rel,
            concat_err_mean=mean_concat, sum_err_mean=mean_sum,
            concat_closer=float((dist_concat < dist_sum).double().mean()),
            sum_closer=float((dist_sum < dist_concat).double().mean()),
            closer="concat" if mean_concat < mean_sum else "sum" if mean_sum < mean_concat else "tie",
        )
    row["layer_err_rel"] = None if layer_ref is None else error_vs_reference(b, layer_ref).max_rel
    return row


def path_shapes(trace: AttentionTrace, weights: AttentionWeights) -> dict:
    """The shape of every tensor on both paths, read off real tensors, and the work each does."""
    z, W_O = trace.z, weights.W_O  # [B, H, S, L], [H, L, D]
    B, H, S, L = z.shape
    D = W_O.shape[-1]
    z_concat = z.transpose(1, 2).reshape(B, S, H * L)  # [B, S, H·L]
    return {
        "z": list(z.shape),
        "z_concat": list(z_concat.shape),
        "W_O": list(W_O.shape),
        "W_O_flat": list(W_O.reshape(H * L, D).shape),
        "z_h": list(z[:, 0].shape),
        "W_O_h": list(W_O[0].shape),
        "per_head": list(trace.per_head.shape),
        # Keys and values per key/value head, and the per-query-head copies the scores read:
        # the only tensors grouped-query attention changes. z, W_O and both endings are as before.
        "k": list(trace.k.shape),
        "k_expanded": list(trace.k_expanded.shape),
        "n_kv_heads": trace.n_kv_heads,
        "group_size": trace.group_size,
        "out_concat": list(trace.out_concat.shape),
        "out_sum": list(trace.out_sum.shape),
        # Both endings multiply the same pairs; the sum path then adds H partial results.
        "macs": B * S * H * L * D,
        "extra_adds": B * S * (H - 1) * D,
        "per_head_numel": trace.per_head.numel(),
    }


def concat_vs_sum_report(
    batch: int, seq: int, d_model: int, n_heads: int, *, seed: int = 0, device: str = "cpu",
    causal: bool = False, dtypes: tuple[str, ...] = DTYPE_NAMES, n_kv_heads: int | None = None,
) -> dict:
    """:func:`identity_check` in every dtype (that runs on ``device``) at one size, plus the shapes.

    The weights and input are drawn once in float64 and cast, exactly as ``run_seeded`` does for
    each dtype, so every row is the same layer and the same input at a different precision.
    ``n_kv_heads`` shares keys and values (grouped-query attention); the endings are unchanged.
    """
    w64, trace64 = run_seeded(batch, seq, d_model, n_heads, seed=seed, dtype=torch.float64,
                              device=device, causal=causal, n_kv_heads=n_kv_heads)
    rows, shapes = [], None
    for name in dtypes:
        if not is_supported(name, device):
            continue
        dtype = dtype_from_name(name)
        if dtype == torch.float64:
            weights, trace = w64, trace64
        else:
            weights = w64.to(dtype=dtype)
            trace = multi_head_attention(trace64.x.to(dtype), weights, causal=causal)
        layer_ref = None if dtype == torch.float64 else trace64.out_concat  # [B, S, D]
        rows.append(identity_check(trace, weights, layer_ref))
        shapes = shapes or path_shapes(trace, weights)
        del weights, trace
    return {"rows": rows, "shapes": shapes}


# ---- one output number, head by head ----------------------------------------------------------


def head_terms(
    batch: int, seq: int, d_model: int, n_heads: int, *, coord: int, seed: int = 0,
    dtype: str = "float32", device: str = "cpu", causal: bool = False, n_kv_heads: int | None = None,
) -> dict:
    """Output coordinate ``coord`` of every token of the first sequence, split into its H head terms.

    term[s, h] = Σ_{l=0}^{L−1} z[0, h, s, l] · W_O[h, l, coord], the number head h adds to out[0, s, coord]:
    ``terms`` as the layer computed them (rounded to ``dtype``), ``float64_terms`` the same products
    of the same rounded z and W_O, computed in float64. There are H terms, one per *query* head,
    whatever ``n_kv_heads`` is: heads that share keys and values still have their own z.
    """
    weights, trace = run_seeded(batch, seq, d_model, n_heads, seed=seed, dtype=dtype_from_name(dtype),
                                device=device, causal=causal, n_kv_heads=n_kv_heads)
    j = coord
    terms = trace.per_head[0, :, :, j]  # [S, H] each head's term, rounded to the dtype
    exact = torch.einsum("hsl,hl->sh", trace.z[0].double(), weights.W_O[:, :, j].double())  # [S, H]
    return {
        "terms": terms.double().cpu().numpy(),  # [S, H]
        "float64_terms": exact.cpu().numpy(),  # [S, H]
        "out_concat": trace.out_concat[0, :, j].double().cpu().numpy(),  # [S]
        "out_sum": trace.out_sum[0, :, j].double().cpu().numpy(),  # [S]
    }


def waterfall(
    terms: np.ndarray, float64_terms: np.ndarray, concat_value: float, sum_value: float, dtype: str = "float64"
) -> dict:
    """One output number as a running total of its head terms ([H] each), and where it lands.

    Two reference numbers that are easy to confuse, so they carry their recipe in their names:

    - ``rounded_terms_summed``: the H terms *as the layer computed them* (each already rounded to
      ``dtype``), added in float64. Only the rounding of the final additions is missing.
    - ``float64_product``: the whole sum Σ_h Σ_l z·W_O recomputed in float64 from the same rounded
      z and W_O, so no rounding to ``dtype`` anywhere: what both paths are trying to compute.

    ``running total before/after`` are added in float64 too, so the bars show the terms
    themselves and not a second rounding. ``ulp`` is the spacing of ``dtype``'s numbers next to
    the concat value: the natural unit for how far apart the paths are.
    """
    terms = np.asarray(terms, dtype=np.float64)  # [H]
    float64_terms = np.asarray(float64_terms, dtype=np.float64)  # [H]
    end = np.cumsum(terms)  # [H]
    start = end - terms  # [H]
    table = pd.DataFrame({
        "head": [f"h{h}" for h in range(len(terms))],
        "term": terms,
        "term in float64": float64_terms,
        "running total before": start,
        "running total after": end,
    })
    concat_value, sum_value = float(concat_value), float(sum_value)
    _, exponent = math.frexp(abs(concat_value))  # |v| = m·2^p with 0.5 <= m < 1
    finfo = torch.finfo(dtype_from_name(dtype))
    ulp = max(float(finfo.eps) * 2.0 ** (exponent - 1), float(finfo.smallest_normal) * float(finfo.eps))
    rounded_sum = float(end[-1]) if len(end) else 0.0
    product = float(np.sum(float64_terms))
    return {
        "table": table,
        "rounded_terms_summed": rounded_sum,  # the dtype's terms, added in float64
        "float64_product": product,  # the same sum from the same inputs, in float64 throughout
        "rounding_in_terms": rounded_sum - product,  # what rounding each head's term to dtype cost
        "concat": concat_value,  # what the concat path computed, in the dtype
        "sum": sum_value,  # what the sum path computed, in the dtype
        "concat_minus_sum": concat_value - sum_value,
        "ulp": ulp,
        "ulps_apart": abs(concat_value - sum_value) / ulp,
        "heads_up": int((terms > 0).sum()),
        "heads_down": int((terms < 0).sum()),
    }


# ---- the reshape that runs and is wrong -------------------------------------------------------


def reshape_origin(seq: int, n_heads: int) -> pd.DataFrame:
    """Where each L-wide block of a token's concatenated vector comes from, for both reshapes.

    Row s of ``z.transpose(1, 2).reshape(B, S, H·L)`` is blocks (head c, token s) for c = 0 … H−1.
    ``z.reshape(B, S, H·L)`` on z [B, H, S, L] reads memory in z's own order instead (head, then
    token): block c of row s is flat block f = s·H + c, which is head f // S, token f % S.
    """
    s, c = np.meshgrid(np.arange(seq), np.arange(n_heads), indexing="ij")  # [S, H] each
    f = s * n_heads + c  # [S, H]
    return pd.DataFrame({
        "token s": s.ravel(),
        "block c": c.ravel(),  # entries c·L … c·L+L−1 of the concatenated vector
        "right: head": c.ravel(),
        "right: token": s.ravel(),
        "wrong: head": (f // seq).ravel(),
        "wrong: token": (f % seq).ravel(),
    })


def reshape_pitfall(
    batch: int, seq: int, d_model: int, n_heads: int, *, seed: int = 0, dtype: str = "float32",
    device: str = "cpu", causal: bool = False, max_tokens: int = 4, n_kv_heads: int | None = None,
) -> dict:
    """The concat built right (transpose, then reshape) and wrong (reshape alone), on the page's z.

    Both have shape [B, S, H·L] and run without complaint; the wrong one interleaves tokens with
    heads. Returns both shapes, how far apart the two concatenations and the two outputs are
    (norm-wise, ``core.compare.max_rel``), the share of token rows that differ, and the block
    origins (``reshape_origin``) with each block's first number for the first ``max_tokens`` tokens
    of the first sequence. At S = 1 or H = 1 the transpose only moves an axis of length 1, so the
    two agree exactly.
    """
    weights, trace = run_seeded(batch, seq, d_model, n_heads, seed=seed, dtype=dtype_from_name(dtype),
                                device=device, causal=causal, n_kv_heads=n_kv_heads)
    z, W_O = trace.z, weights.W_O  # [B, H, S, L], [H, L, D]
    B, H, S, L = z.shape
    D = W_O.shape[-1]
    right = z.transpose(1, 2).reshape(B, S, H * L)  # [B, S, H·L] heads side by side, per token
    wrong = z.reshape(B, S, H * L)  # [B, S, H·L] the same shape, read in z's memory order
    W_flat = W_O.reshape(H * L, D)  # [H·L, D]
    out_right, out_wrong = right @ W_flat, wrong @ W_flat  # [B, S, D] each
    rows_differ = (right != wrong).any(dim=-1)  # [B, S]
    origin = reshape_origin(S, H)
    origin = origin[origin["token s"] < max_tokens].reset_index(drop=True)
    first = lambda t: t[0].double().cpu().numpy()[origin["token s"], origin["block c"] * L]  # noqa: E731
    origin["right: first number"] = first(right)
    origin["wrong: first number"] = first(wrong)
    out_diff = compare(out_wrong, out_right)
    return {
        "shape_right": list(right.shape),
        "shape_wrong": list(wrong.shape),
        "concat_max_rel": max_rel(wrong, right),
        "out_max_rel": out_diff.max_rel,
        "out_max_abs": out_diff.max_abs,
        "rows_differ": float(rows_differ.double().mean()),
        "tokens_shown": int(min(S, max_tokens)),
        "origin": origin,
    }


# ---- W_O in three layouts ---------------------------------------------------------------------


def w_o_layouts(
    d_model: int, n_heads: int, *, seed: int = 0, dtype: str = "float32", device: str = "cpu",
    rows_per_head: int = 6, max_cols: int = 48,
) -> dict:
    """A sample of W_O's entries with their coordinates in all three layouts, and proof they agree.

    - this essay / TransformerLens: W_O [H, L, D]; flattened [H·L, D], head h = rows h·L … h·L+L−1
    - the paper (left-multiplying): W_O^h = W_O[h].T [D, L]; side by side [D, H·L]
    - torch.nn.Linear (out_proj.weight, [out, in] = [D, H·L]): head h = a column block
    The paper's [W_O^0 … W_O^{H−1}] and nn.Linear's weight are the same array, the transpose of the
    flattened TransformerLens one. ``rows_per_head`` rows of each head and up to ``max_cols``
    output columns, evenly spaced, keep the picture to a few thousand cells.

    There is no ``n_kv_heads`` argument on purpose: ``AttentionWeights.random`` draws W_O the same
    at every key/value head count (sharing changes only W_K and W_V), and nn.MultiheadAttention,
    which packs ``out_proj``, takes only unshared weights; so these layouts hold at every H_kv.
    """
    weights = AttentionWeights.random(d_model, n_heads, seed=seed, dtype=dtype_from_name(dtype), device=device)
    W_O = weights.W_O  # [H, L, D]
    H, L, D = W_O.shape
    flat = W_O.reshape(H * L, D)  # [H·L, D]
    linear = weights.to_torch().out_proj.weight.detach()  # [D, H·L]
    paper = [W_O[h].T for h in range(H)]  # H × [D, L]
    checks = {
        "linear_is_flat_transposed": bool(torch.equal(linear, flat.T)),
        "paper_blocks_are_linear_columns": all(
            torch.equal(paper[h], linear[:, h * L:(h + 1) * L]) for h in range(H)
        ),
    }
    ls = np.unique(np.linspace(0, L - 1, min(L, rows_per_head)).round().astype(int))  # [r]
    js = np.unique(np.linspace(0, D - 1, min(D, max_cols)).round().astype(int))  # [c]
    sample = W_O[:, torch.as_tensor(ls, device=W_O.device)][:, :, torch.as_tensor(js, device=W_O.device)]  # [H, r, c]
    hh, ll, jj = np.meshgrid(np.arange(H), ls, js, indexing="ij")  # [H, r, c] each
    cells = pd.DataFrame({
        "head": [f"h{h}" for h in hh.ravel()],
        "l": ll.ravel(),  # row within the head's block
        "i": (hh * L + ll).ravel(),  # row of the flattened [H·L, D] matrix = column of nn.Linear's
        "j": jj.ravel(),  # output coordinate
        "value": sample.double().cpu().numpy().ravel(),
    })
    return {
        "cells": cells,
        "rows_shown": len(ls) * H,
        "cols_shown": len(js),
        "shapes": {
            "W_O": [H, L, D],
            "W_O_flat": list(flat.shape),
            "W_O_h_paper": list(paper[0].shape),
            "linear_weight": list(linear.shape),
        },
        "checks": checks,
    }


# ---- why grouping changes the last bits -------------------------------------------------------


def rounding_example(dtypes: tuple[str, ...] = DTYPE_NAMES) -> pd.DataFrame:
    """(1 + ε/2) + ε/2 against 1 + (ε/2 + ε/2), computed in each dtype.

    Half an ε added to 1 is a tie that rounds back to 1 (to even), twice; adding the two halves
    first makes a whole ε, which 1 can hold. Same three numbers, different grouping, one ε apart.
    """
    rows = []
    for name in dtypes:
        dt = dtype_from_name(name)
        one = torch.tensor(1.0, dtype=dt)
        half = torch.tensor(eps(dt) / 2, dtype=dt)
        left = (one + half) + half  # rounds twice
        right = one + (half + half)  # the small ones first
        rows.append({
            "dtype": name,
            "ε": eps(dt),
            "(1 + ε/2) + ε/2 − 1": float(left.double()) - 1.0,
            "1 + (ε/2 + ε/2) − 1": float(right.double()) - 1.0,
            "same bits": bool(torch.equal(left, right)),
        })
    return pd.DataFrame(rows)
