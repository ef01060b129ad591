"""Why the 1/√d_k: the spread of the raw scores and the softmax's entropy with and without it.

Everything the sentence page says about the scale is read off these numbers, never assumed
(:func:`score_spread` measures, :func:`scale_effect` classifies and words the result). Split from
``core/toy_sentence.py``, which re-exports every name here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from core.toy_text import DTYPE

__all__ = [
    "row_entropy", "score_spread", "scale_effect", "ScaleEffect", "SCALE_SAME_BITS", "SCALE_SLIGHT_BELOW",
    "SCALE_STRONG_FROM",
]

def row_entropy(pattern: Tensor) -> Tensor:
    """Entropy of every row of a pattern in bits, [..., S]: 0 = all weight on one key,
    log2(n) = spread evenly over n keys. Masked (zero) weights contribute 0 (0·log 0 = 0)."""
    p = pattern.clamp_min(0)
    logs = torch.where(p > 0, p.log2(), torch.zeros_like(p))
    return -(p * logs).sum(dim=-1)


def score_spread(trace) -> dict[str, object]:
    """The measured case for the 1/√d_k: spread of the raw scores, and the softmax's entropy
    with and without the scale (the other setting is recomputed from the same scores).

    Scores count only visible (unmasked) query–key pairs. With unit-variance queries and keys,
    q·k is a sum of L products, so its standard deviation grows like √L; dividing by √L brings
    it back to about 1 whatever the head width.
    """
    visible = ~trace.mask  # [S, S]
    raw = trace.raw_scores[:, visible]  # [H, n_visible]
    L = trace.d_head
    hidden = torch.where(trace.mask, float("-inf"), 0.0).to(DTYPE)  # [S, S]
    p_scaled = (trace.raw_scores / math.sqrt(L) + hidden).softmax(-1)  # [H, S, S]
    p_raw = (trace.raw_scores + hidden).softmax(-1)  # [H, S, S]
    n_visible = visible.sum(-1).to(DTYPE)  # [S] keys each query can see
    return {
        "d_head": L,
        "sqrt_d_head": math.sqrt(L),
        "raw_std": float(raw.std(correction=0)) if raw.numel() > 1 else 0.0,
        "raw_std_per_head": [float(r.std(correction=0)) if r.numel() > 1 else 0.0 for r in raw],
        "raw_absmax": float(raw.abs().max()),
        "scaled_std": float((raw / math.sqrt(L)).std(correction=0)) if raw.numel() > 1 else 0.0,
        "q_std": float(trace.q.std(correction=0)) if trace.q.numel() > 1 else 0.0,
        "k_std": float(trace.k.std(correction=0)) if trace.k.numel() > 1 else 0.0,
        "entropy_scaled": row_entropy(p_scaled).numpy(),  # [H, S]
        "entropy_raw": row_entropy(p_raw).numpy(),  # [H, S]
        "entropy_max": n_visible.log2().numpy(),  # [S] a uniform row over the visible keys
        "max_weight_scaled": float(p_scaled.max(-1).values.mean()),
        "max_weight_raw": float(p_raw.max(-1).values.mean()),
    }


# What the page says about the scale is read off these numbers, never assumed. Leaving the scale
# out multiplies every score by √L ≥ 1, and a softmax's entropy never rises when its inputs are
# multiplied by a factor ≥ 1 (d/dc H(softmax(c·s)) = −c·Var(s) ≤ 0), so a head either sharpens
# or, at L = 1 or with a single visible key per row, stays exactly where it was.
SCALE_SAME_BITS = 1e-9  # entropies closer than this are the same number (rounding only)
SCALE_SLIGHT_BELOW = 0.10  # relative drop of the mean row entropy: under 10 % is "slight"
SCALE_STRONG_FROM = 0.40  # 40 % or more is "strong"; in between, "clear"


@dataclass(frozen=True)
class ScaleEffect:
    """The measured effect of the 1/√d_k on one sentence, and the page's sentences about it."""

    d_head: int
    entropy_scaled: float  # mean row entropy with ÷√L, bits
    entropy_raw: float  # mean row entropy without it, bits
    entropy_uniform: float  # mean entropy of an even spread over the visible keys, bits
    drop_bits: float  # entropy_scaled − entropy_raw (never negative beyond rounding)
    drop_fraction: float  # drop_bits / entropy_scaled; 0 when entropy_scaled is 0
    max_weight_scaled: float
    max_weight_raw: float
    verdict: str  # "none", "slight", "clear" or "strong" (thresholds above)
    reason: str  # why "none": "unit scale" (L = 1), "one key per row", "equal"; "" otherwise
    heads_lower: list[int]  # heads whose mean row entropy falls without the scale
    heads_same: list[int]  # heads whose mean row entropy does not change
    heads_higher: list[int]  # heads whose entropy rises (impossible but for rounding; kept honest)
    sentence: str  # what the page measured, for the text beside the numbers
    heads_sentence: str  # what the per-head chart shows, for its caption


def _heads(hs: list[int]) -> str:
    """[0] → "head 0"; [0, 2, 3] → "heads 0, 2 and 3"."""
    if len(hs) == 1:
        return f"head {hs[0]}"
    return "heads " + ", ".join(map(str, hs[:-1])) + f" and {hs[-1]}"


def scale_effect(spread: dict) -> ScaleEffect:
    """Classify what leaving out the 1/√d_k does here, from :func:`score_spread`'s numbers."""
    L = int(spread["d_head"])
    ent_s = np.asarray(spread["entropy_scaled"], dtype=float)  # [H, S]
    ent_r = np.asarray(spread["entropy_raw"], dtype=float)  # [H, S]
    uniform = float(np.mean(spread["entropy_max"]))
    mean_s, mean_r = float(ent_s.mean()), float(ent_r.mean())
    drop = mean_s - mean_r
    fraction = drop / mean_s if mean_s > 0 else 0.0
    per_s, per_r = ent_s.mean(axis=1), ent_r.mean(axis=1)  # [H]
    lower = [h for h in range(len(per_s)) if per_r[h] < per_s[h] - SCALE_SAME_BITS]
    higher = [h for h in range(len(per_s)) if per_r[h] > per_s[h] + SCALE_SAME_BITS]
    same = [h for h in range(len(per_s)) if h not in lower and h not in higher]

    if L == 1:
        verdict, reason = "none", "unit scale"
    elif float(np.max(spread["entropy_max"])) == 0.0:
        verdict, reason = "none", "one key per row"
    elif abs(drop) <= SCALE_SAME_BITS:
        verdict, reason = "none", "equal"
    else:
        reason = ""
        verdict = "slight" if fraction < SCALE_SLIGHT_BELOW else ("strong" if fraction >= SCALE_STRONG_FROM else "clear")

    mw_s, mw_r = float(spread["max_weight_scaled"]), float(spread["max_weight_raw"])
    if reason == "unit scale":
        sentence = (
            f"At d_k = 1 the scale divides by √1 = 1, so the two settings give the same weights: the mean "
            f"row entropy is {mean_s:.2f} bits either way. Widen the heads (fewer heads, or a larger D) to "
            "see the scale matter."
        )
    elif reason == "one key per row":
        sentence = (
            "Every row here has a single visible key, whose weight is 1 whatever the scores are, so the "
            "scale changes nothing: 0 bits of entropy either way."
        )
    elif reason == "equal":
        sentence = f"At d_k = {L} the two settings give the same mean row entropy here, {mean_s:.2f} bits."
        if abs(mean_s - uniform) <= SCALE_SAME_BITS:  # e.g. "a a a": identical tokens, identical scores
            sentence += (" That is an even spread over the visible keys: within each row every key scores "
                         "alike, and equal scores stay equal whatever they are multiplied by.")
    else:
        effect = {
            "slight": "a slight sharpening",
            "clear": "a clear sharpening",
            "strong": "a strong sharpening, towards one-hot rows",
        }[verdict]
        sentence = (
            f"At d_k = {L}, leaving out the scale lowers the mean row entropy from {mean_s:.2f} to "
            f"{mean_r:.2f} bits ({fraction:.0%} lower; an even spread would be {uniform:.2f} bits) and "
            f"raises the mean largest weight from {mw_s:.2f} to {mw_r:.2f}: {effect}."
        )

    H = len(per_s)
    if not lower and not higher:
        why = {"unit scale": "at d_k = 1 the scale is ÷1", "one key per row": "each row has one visible key"}
        heads_sentence = (f"The two marks coincide {'for the one head' if H == 1 else 'for every head'}: "
                          f"{why.get(reason, 'the entropies are equal')}.")
    else:
        parts = []
        if lower:
            every = "every head moves" if len(lower) == H > 1 else (
                "the head moves" if H == 1 else f"{_heads(lower)} {'moves' if len(lower) == 1 else 'move'}")
            parts.append(f"{every} left, towards one-hot rows")
        if higher:
            parts.append(f"{_heads(higher)} {'moves' if len(higher) == 1 else 'move'} right")
        if same:
            parts.append(f"{_heads(same)} {'stays' if len(same) == 1 else 'stay'} where {'it is' if len(same) == 1 else 'they are'}")
        heads_sentence = "Without the scale " + "; ".join(parts) + "."
    return ScaleEffect(
        d_head=L, entropy_scaled=mean_s, entropy_raw=mean_r, entropy_uniform=uniform, drop_bits=drop,
        drop_fraction=fraction, max_weight_scaled=mw_s, max_weight_raw=mw_r, verdict=verdict, reason=reason,
        heads_lower=lower, heads_same=same, heads_higher=higher, sentence=sentence, heads_sentence=heads_sentence,
    )
