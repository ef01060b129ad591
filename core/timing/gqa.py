"""Grouped-query attention, timed and counted: what sharing keys and values saves, and what it doesn't.

With H_kv < H key/value heads, G = H / H_kv query heads read each key and value matrix (query head
h reads h // G). Two ways to run that forward are timed against the same layer without sharing
(``forward_sdpa``, whose weights have the same W_Q and W_O, core.attention.AttentionWeights.random):

    gqa_sdpa    F.scaled_dot_product_attention(q, k_kv, v_kv, enable_gqa=True): K and V stay at H_kv heads
    gqa_expand  repeat K and V to H heads (core.attention.expand_kv, a copy), then plain SDPA

Both project x once through a packed [D, D + 2·H_kv·L] matrix, as ``forward_sdpa`` does through
its [D, 3D] one, and end with the same ``concat_then_project``: the W_O ending only ever meets z
[B, H, S, L], which has H heads whatever H_kv is, so every variant of that ending is the same
program at every H_kv.

What sharing changes, derived here rather than typed on a page: the keys and values a generating
model keeps per token (``kv_cache_table``: 2 · H_kv · L numbers per layer, through
core.presets.kv_cache_bytes), and the K and V projections (H_kv·L columns each instead of D).
What it does not change: the scores. Every query head still scores every key, B·H·S·S of them
(``score_counts``), so the S² part of the arithmetic is the same.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from core.attention import AttentionWeights, concat_then_project, expand_kv, merge_heads, trace_numel
from core.identity import random_input
from core.presets import kv_cache_bytes
from core.timing.stats import paired, verdict
from core.timing.variants import GQA_VARIANTS, Size


def gqa_inputs(size: Size, dtype: torch.dtype, device: str = "cpu", seed: int = 0) -> tuple[Tensor, AttentionWeights]:
    """Seeded x [B, S, D] and weights with ``size.n_kv_heads`` key/value heads.

    The draw is forward_inputs' with the sharing applied (AttentionWeights.random keeps W_Q, W_O
    and key/value head g·G), so ``forward_sdpa`` on forward_inputs is this layer without sharing.
    """
    weights = AttentionWeights.random(size.d_model, size.n_heads, n_kv_heads=size.n_kv_heads, seed=seed,
                                      dtype=dtype, device=device)
    x = random_input(size.batch, size.seq, size.d_model, seed=seed, dtype=dtype, device=device)  # [B, S, D]
    return x, weights


def make_gqa(name: str, x: Tensor, weights: AttentionWeights) -> Callable[[], Tensor]:
    """A zero-argument callable computing the grouped layer's output [B, S, D] (no mask, scores ÷ √L)."""
    B, S, D = x.shape
    H, H_kv, L, G = weights.n_heads, weights.n_kv_heads, weights.d_head, weights.group_size
    W_qkv = torch.cat([merge_heads(W) for W in (weights.W_Q, weights.W_K, weights.W_V)], dim=1)  # [D, H·L + 2·H_kv·L]
    split = (H * L, H_kv * L, H_kv * L)

    def project() -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = (x @ W_qkv).split(split, dim=-1)  # [B, S, H·L], [B, S, H_kv·L], [B, S, H_kv·L]
        q = q.view(B, S, H, L).transpose(1, 2)  # [B, H, S, L]
        k = k.view(B, S, H_kv, L).transpose(1, 2)  # [B, H_kv, S, L]
        v = v.view(B, S, H_kv, L).transpose(1, 2)  # [B, H_kv, S, L]
        return q, k, v

    if name == "gqa_sdpa":

        def gqa_sdpa() -> Tensor:
            q, k, v = project()
            z = F.scaled_dot_product_attention(q, k, v, enable_gqa=G > 1)  # [B, H, S, L]; head h reads k[:, h // G]
            return concat_then_project(z, weights.W_O)  # [B, S, D]

        return gqa_sdpa
    if name == "gqa_expand":

        def gqa_expand() -> Tensor:
            q, k, v = project()
            k, v = expand_kv(k, G), expand_kv(v, G)  # [B, H, S, L] each: copies (k itself when G = 1)
            z = F.scaled_dot_product_attention(q, k, v)  # [B, H, S, L]
            return concat_then_project(z, weights.W_O)  # [B, S, D]

        return gqa_expand
    raise ValueError(f"unknown grouped-query variant {name!r}; choose from {', '.join(GQA_VARIANTS)}")


def gqa_estimated_bytes(size: Size, element_size: int) -> int:
    """An upper estimate of one grouped call's memory (inputs excluded), for the caps: the packed
    projection, q, the expanded k and v, scores and pattern, z, its concatenation, the output."""
    B, S, H = size.batch, size.seq, size.n_heads
    return (6 * size.bsd + 2 * B * H * S * S) * element_size


# ---- what sharing changes, from the sizes -----------------------------------------------------


def kv_cache_table(size: Size, dtype: str) -> pd.DataFrame:
    """This layer's KV cache with the page's H_kv and without sharing (H_kv = H), side by side.

    Per token: 2 (a key and a value) · H_kv · L numbers of ``dtype`` (core.presets.kv_cache_bytes
    with one layer); for the B sequences of S tokens the page runs: that times B·S. ``factor`` is
    how many times the cache without sharing holds this one's: H / H_kv.
    """
    rows = []
    for label, kv in ((f"with H_kv = {size.n_kv_heads}", size.n_kv_heads), (f"without sharing, H_kv = H = {size.n_heads}", size.n_heads)):
        per_token = kv_cache_bytes(layers=1, n_kv_heads=kv, d_head=size.d_head, dtype=dtype)
        rows.append({
            "layer": label, "n_kv_heads": kv, "d_head": size.d_head, "numbers_per_token": 2 * kv * size.d_head,
            "bytes_per_token": per_token,
            "bytes_for_run": kv_cache_bytes(layers=1, n_kv_heads=kv, d_head=size.d_head, dtype=dtype,
                                            tokens=size.seq, batch=size.batch),
            "factor": size.n_heads // kv,
        })
    return pd.DataFrame(rows)


def score_counts(size: Size) -> dict[str, int]:
    """Query–key scores one forward computes, with this H_kv and without sharing (core.attention.trace_numel).

    Both are B·H·S·S: each of the H query heads scores each of the S keys for each of the S
    queries, whichever key/value head supplies the keys.
    """
    shared = trace_numel(size.batch, size.seq, size.d_model, size.n_heads, size.n_kv_heads)
    unshared = trace_numel(size.batch, size.seq, size.d_model, size.n_heads)
    return {"shared": shared["scores"], "not_shared": unshared["scores"],
            "k_shared": shared["k"], "k_not_shared": unshared["k"]}


# ---- what a run says about sharing ------------------------------------------------------------


def gqa_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """Each grouped variant's time ÷ the unshared layer's (forward_sdpa), round by round, at the base size.

    One row per grouped variant timed beside forward_sdpa: the median ratio over rounds, its 95 %
    interval and verdict ("below": faster than without sharing, "above": slower, "could not
    tell"), and the group's H_kv. Empty when the table has no grouped rows.
    """
    columns = ["variant", "n_heads", "n_kv_heads", "ratio", "ratio_lo", "ratio_hi", "verdict"]
    rows = []
    if not table.empty and "n_kv_heads" in table.columns:
        for name in GQA_VARIANTS:
            mine = table[table["variant"] == name]
            if mine.empty:
                continue
            mid, lo, hi, _ = paired(table, name, "forward_sdpa")
            if mid == mid:
                first = mine.iloc[0]
                rows.append({"variant": name, "n_heads": int(first["n_heads"]), "n_kv_heads": int(first["n_kv_heads"]),
                             "ratio": mid, "ratio_lo": lo, "ratio_hi": hi, "verdict": verdict(lo, hi)})
    return pd.DataFrame(rows, columns=columns)
