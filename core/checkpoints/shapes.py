"""The shape table's checkpoints: questions whose right answer is read off the code at the page's sizes.

Each builder computes its answer the way the page's figure does (torch on the meta device, or the
same ``core.shapes`` call), so a link at other sizes asks a question that is still true there.
The misconceptions they catch:

- ``scores_shape``: the scores are one S×S table per head and sequence. Students put the head
  width where the key positions belong ([B, H, S, L], [B, H, L, L]), drop the batch and head
  axes, or, with grouped-query attention, expect H_kv score tables because there are H_kv keys.
- ``positions_meet``: positions first meet at the scores (step 6), not at the projections or
  the embedding, and not only when the values are weighted.
- ``kv_cache_factor``: sharing keys and values shrinks the KV cache by G = H / H_kv, not by 2·G
  ("k and v both shrink") nor by H (as if one head were left), and with H_kv = H not at all.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from core.attention import expand_kv
from core.checkpoints import Checkpoint, choice, dims_text, fingerprint, shape_options
from core.shape_steps import position_mixing, spec
from core.sizes import LayerSizes

__all__ = ["scores_shape_dims", "scores_shape", "positions_meet", "kv_factor_text", "kv_cache_factor"]


@lru_cache(maxsize=256)  # a few milliseconds of meta-tensor calls, asked on every rerun of the page
def scores_shape_dims(sizes: LayerSizes) -> tuple[int, ...]:
    """The shape of q @ kᵀ at these sizes, computed as core.attention computes it, on meta tensors."""
    B, S, H, H_kv, L = sizes.batch, sizes.seq, sizes.n_heads, sizes.n_kv_heads, sizes.d_head
    with torch.device("meta"):
        q = torch.empty(B, H, S, L)  # [B, H, S, L]
        k = torch.empty(B, H_kv, S, L)  # [B, H_kv, S, L]
    k_per_head = expand_kv(k, sizes.group_size)  # [B, H, S, L] (step 5c)
    return tuple((q @ k_per_head.transpose(-1, -2)).shape)  # [B, H, S, S]


def scores_shape(sizes: LayerSizes) -> Checkpoint:
    """The shape of the scores q·kᵀ (step 6's output) at the page's sizes."""
    B, S, H, H_kv, L = sizes.batch, sizes.seq, sizes.n_heads, sizes.n_kv_heads, sizes.d_head
    right_dims = scores_shape_dims(sizes)
    candidates = [
        *([(B, H_kv, S, S)] if sizes.is_grouped else []),  # one table per key/value head
        (B, H, L, L),  # the head width where the positions belong
        (B, H, S, L),  # the shape of q itself (or of z)
        (B, S, H, S),  # the heads' axis after the positions
        (S, S),  # one table for everything
        (B, S, S),  # the heads merged
    ]
    right, wrong = shape_options(right_dims, candidates)
    shared = (f" Sharing doesn't change it: step 5c first gives each of the {H} query heads its group's keys, "
              f"so there are {H} score tables, not {H_kv}." if sizes.is_grouped else "")
    why = (f"Step 6 multiplies q, B×H×S×L = {dims_text((B, H, S, L))}, by kᵀ, B×H×L×S: the head width L is "
           f"summed away, leaving one S×S table per sequence and head, {right}.{shared}")
    question = (f"At $B = {B:,}$, $S = {S:,}$, $H = {H:,}$"
                + (f", $H_{{kv}} = {H_kv:,}$" if sizes.is_grouped else "")
                + f" and $L = {L:,}$, what shape are the scores `q @ k.transpose(-1, -2)`?")
    return choice("shapes.scores_shape", question, right, wrong, why,
                  fingerprint(B=B, S=S, H=H, H_kv=H_kv, L=L))


def _step_label(step: str) -> str:
    return f"step {step}: {spec(step).operation.split(',')[0].split(':')[0]}"


def positions_meet(seq: int | None = None) -> Checkpoint:
    """The first step whose output carries the position axis twice (read off the steps' letters).

    ``seq``: the page's S. At S = 1 there is no other position to meet, so the answer says that the
    step is the same at any S and what it holds here (the options, and the answer, do not change).
    """
    mixing = position_mixing()
    right = _step_label(mixing["first_meet"])
    wrong = [_step_label(s) for s in ("5a", "7", "2", "9")]
    why = (f"Step {mixing['first_meet']}'s output is {spec(mixing['first_meet']).output}: entry (s, t) is "
           "position s's query against "
           f"position t's key. Every earlier step works on each position alone; step {mixing['sums_positions']} "
           "finishes the mixing by summing the key positions away.")
    if seq == 1:
        why += (f" Here S = 1, so step {mixing['first_meet']}'s S×S table is 1×1 and the one position meets only "
                "itself; with a second token it would meet the first at the same step.")
    return choice("shapes.positions_meet",
                  "At which step does one position's data first meet another position's?",
                  right, wrong, why, fingerprint(steps=[s for s in mixing["steps"]]))


def kv_factor_text(factor: int) -> str:
    """'4× smaller', or 'the same size' for a factor of 1."""
    return "the same size" if factor == 1 else f"{factor:,}× smaller"


def kv_cache_factor(summary: dict) -> Checkpoint:
    """How many times smaller the KV cache is with the page's sharing than without
    (``summary``: ``core.shapes.sharing_summary``, the numbers the readout below prints)."""
    H, H_kv, G = summary["n_heads"], summary["n_kv_heads"], summary["group_size"]
    factor = summary["saving_factor"]
    right = kv_factor_text(factor)
    wrong = [kv_factor_text(f) for f in (2 * factor, H, H_kv, factor * factor, 1)]
    if G == 1:
        why = (f"With $H_{{kv}} = H = {H:,}$ nothing is shared: every query head keeps its own keys and values, so "
               f"the cache is the same, 2 · layers · H · L numbers per token either way.")
    else:
        why = (f"The cache holds 2 · layers · $H_{{kv}}$ · L numbers per token; without sharing it holds "
               f"2 · layers · H · L. The ratio is $H / H_{{kv}}$ = {H:,} / {H_kv:,} = {factor:,}: k and v "
               "shrink together, so the factor is not doubled.")
    question = (f"With $H = {H:,}$ query {'head' if H == 1 else 'heads'} and $H_{{kv}} = {H_kv:,}$ key/value "
                f"{'head' if H_kv == 1 else 'heads'}, how does the KV cache compare with the same model "
                "without sharing?")
    return choice("shapes.kv_cache_factor", question, right, wrong, why,
                  fingerprint(H=H, H_kv=H_kv, factor=factor))
