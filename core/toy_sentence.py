"""A tiny multi-head attention on a sentence, computed step by step with ``torch.einsum``.

This is the from-scratch walk-through of the sentence page: text → tokens → ids → embeddings →
per-head queries, keys and values → scores → softmax → weighted sums of values → concatenate →
W_O. Every intermediate is kept so the page can print it, and the result is checked against
:func:`core.attention.multi_head_attention` (same weights) in the tests.

Shapes drop the batch axis, as the hand computation does: S = tokens, V = distinct tokens,
D = d_model, H = heads, L = d_head = D / H, H_kv = key/value heads, G = H / H_kv. Weights are
TransformerLens-style and right-multiply: W_Q [H, D, L], W_K, W_V [H_kv, D, L], W_O [H, L, D].
Everything runs in float64 on the CPU, so that the digits on screen are the mathematics and not
rounding (rounding is the concat-vs-sum page's topic).

Grouped-query attention (H_kv < H): keys and values are projected once per key/value head (a
"group") and each is read by G consecutive query heads, head h reading group h // G. The trace
keeps both: ``k_kv``/``v_kv`` as computed, [H_kv, S, L], and ``k``/``v`` expanded to one copy per
query head, [H, S, L], which is what the scores and z are computed from. :func:`shared_pair`
measures, on the live numbers, why two heads that read the same keys still attend differently.

The module is split in four, one job each: ``core.toy_text`` (text → tokens → embeddings),
this module (the forward pass and what sharing does), ``core.toy_scale`` (why the 1/√d_k) and
``core.toy_tables`` (the page's tables). Every name of the other three is re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from core.attention import AttentionWeights, expand_kv
from core.sizes import LayerSizes
from core.toy_scale import *  # noqa: F401,F403  (re-exported: the page and tests read them here)
from core.toy_scale import __all__ as _scale_all
from core.toy_tables import *  # noqa: F401,F403
from core.toy_tables import __all__ as _tables_all
from core.toy_text import *  # noqa: F401,F403
from core.toy_text import DTYPE, embed, token_labels
from core.toy_text import __all__ as _text_all

__all__ = ["ToyTrace", "run_toy", "SharedPair", "shared_pair", "group_readers", "SAME_WEIGHTS", *_text_all, *_scale_all, *_tables_all]


# Einsum letters, one meaning each on the page: i query position (any position in a projection),
# j key position, d model coordinate, h (query) head, g key/value head (group), l coordinate inside
# a head (0 … L−1). Not e (Euler's number in the softmax), not k (the key vectors, and the k of d_k).

# ---- the forward pass -----------------------------------------------------------------------------


@dataclass
class ToyTrace:
    """Every number of one forward pass over a sentence (no batch axis)."""

    tokens: list[str]
    vocab: list[str]
    ids: list[int]
    seed: int
    causal: bool
    scale: bool
    sizes: LayerSizes  # batch 1, seq S, vocab V, d_model D, n_heads H, n_kv_heads H_kv
    weights: AttentionWeights  # W_Q [H, D, L], W_K, W_V [H_kv, D, L], W_O [H, L, D]
    W_E: Tensor  # [V, D] embedding table of this sentence's vocabulary
    one_hot: Tensor  # [S, V]
    x: Tensor  # [S, D] embeddings, one_hot @ W_E
    q: Tensor  # [H, S, L]
    k_kv: Tensor  # [H_kv, S, L] one key matrix per key/value head, as projected
    v_kv: Tensor  # [H_kv, S, L]
    k: Tensor  # [H, S, L] k_kv expanded: k[h] = k_kv[h // G] (k_kv itself when G = 1)
    v: Tensor  # [H, S, L] v[h] = v_kv[h // G]
    raw_scores: Tensor  # [H, S, S] q·k, before scaling and masking
    scores: Tensor  # [H, S, S] scaled (if scale) and masked (−inf at future keys, if causal)
    mask: Tensor  # [S, S] bool, True where a key is hidden from a query (all False unless causal)
    pattern: Tensor  # [H, S, S] softmax over keys: rows sum to 1, masked entries are 0
    z: Tensor  # [H, S, L] pattern @ v: each head's weighted average of values
    z_concat: Tensor  # [S, H·L] heads side by side
    out: Tensor  # [S, D] z_concat @ W_O as one [H·L, D] matrix
    per_head: Tensor  # [S, H, D] z[h] @ W_O[h]: what each head adds to the output
    out_sum: Tensor  # [S, D] per_head summed over heads

    @property
    def n_heads(self) -> int:
        return self.sizes.n_heads

    @property
    def n_kv_heads(self) -> int:
        return self.sizes.n_kv_heads

    @property
    def group_size(self) -> int:
        return self.sizes.group_size

    @property
    def d_head(self) -> int:
        return self.sizes.d_head

    @property
    def d_model(self) -> int:
        return self.sizes.d_model

    @property
    def labels(self) -> list[str]:
        return token_labels(self.tokens)


def run_toy(
    tokens: list[str], d_model: int, n_heads: int, *, n_kv_heads: int | None = None, seed: int = 0,
    causal: bool = False, scale: bool = True,
) -> ToyTrace:
    """The seed's einsum computation on ``tokens``, with seeded embeddings and weights.

    The weights are ``AttentionWeights.random(d_model, n_heads, n_kv_heads=…, seed=seed)`` — the
    same ones every other page draws for that seed — so the result can be checked against
    ``core.attention.multi_head_attention``. ``n_kv_heads`` (default ``n_heads``, plain multi-head
    attention) must divide ``n_heads``: a ValueError says why in words (``LayerSizes``' rules).
    """
    emb = embed(tokens, d_model, seed)
    x = emb.x  # [S, D]
    S = len(tokens)
    sizes = LayerSizes(batch=1, seq=S, vocab=len(emb.vocab), d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv_heads)
    H, L, G = sizes.n_heads, sizes.d_head, sizes.group_size
    weights = AttentionWeights.random(d_model, H, n_kv_heads=sizes.n_kv_heads, seed=seed, dtype=DTYPE)
    W_Q, W_K, W_V, W_O = weights.W_Q, weights.W_K, weights.W_V, weights.W_O  # [H, D, L], [H_kv, D, L] ×2, [H, L, D]

    q = torch.einsum("id,hdl->hil", x, W_Q)  # [H, S, L]
    k_kv = torch.einsum("id,gdl->gil", x, W_K)  # [H_kv, S, L]
    v_kv = torch.einsum("id,gdl->gil", x, W_V)  # [H_kv, S, L]
    k = expand_kv(k_kv, G, dim=0)  # [H, S, L] a copy per query head: k[h] = k_kv[h // G]
    v = expand_kv(v_kv, G, dim=0)  # [H, S, L]

    raw_scores = torch.einsum("hil,hjl->hij", q, k)  # [H, S, S] query i, key j
    scores = raw_scores / math.sqrt(L) if scale else raw_scores.clone()  # [H, S, S]
    mask = torch.ones(S, S, dtype=torch.bool).triu(diagonal=1) if causal else torch.zeros(S, S, dtype=torch.bool)
    scores = scores.masked_fill(mask, float("-inf"))  # [H, S, S] e^(−inf) = 0: no weight on the future
    pattern = scores.softmax(dim=-1)  # [H, S, S]

    z = torch.einsum("hij,hjl->hil", pattern, v)  # [H, S, L]
    z_concat = z.permute(1, 0, 2).reshape(S, H * L)  # [S, H·L] head h in columns hL … hL+L−1
    out = z_concat @ W_O.reshape(H * L, d_model)  # [S, D]
    per_head = torch.einsum("hil,hld->ihd", z, W_O)  # [S, H, D]
    out_sum = per_head.sum(dim=1)  # [S, D]
    return ToyTrace(
        tokens=list(tokens), vocab=emb.vocab, ids=emb.ids, seed=int(seed), causal=causal, scale=scale, sizes=sizes,
        weights=weights, W_E=emb.W_E, one_hot=emb.one_hot, x=x, q=q, k_kv=k_kv, v_kv=v_kv, k=k, v=v,
        raw_scores=raw_scores, scores=scores, mask=mask, pattern=pattern, z=z, z_concat=z_concat, out=out,
        per_head=per_head, out_sum=out_sum,
    )


# ---- what sharing keys and values does ------------------------------------------------------------


def group_readers(sizes: LayerSizes) -> list[list[int]]:
    """For each key/value head g, the query heads that read it: G consecutive heads gG … gG+G−1."""
    return [sizes.query_heads_of(g) for g in range(sizes.n_kv_heads)]


SAME_WEIGHTS = 1e-12  # weights closer than this (float64) are the same numbers


@dataclass(frozen=True)
class SharedPair:
    """Two query heads that read one key/value group, compared on the live numbers.

    The point it makes: sharing keys and values does not make two heads attend alike. Their keys
    are the same numbers (a copy), but each head keeps its own W_Q, so its queries, and with them
    its scores and weights, differ. Only where a row has a single visible key (one token, or the
    first row under the causal mask) or every key scores alike ("a a a") must the weights agree.
    """

    group: int  # the key/value head both read
    heads: tuple[int, int]  # (a, b), a < b, both in the group
    query: int  # the query row compared: the last token, which sees every key with or without the mask
    k_diff: float  # max |k[a] − k[b]| over all tokens: 0, the same tensor copied
    v_diff: float  # max |v[a] − v[b]|: 0
    q_diff: float  # max |q[a] − q[b]| over all tokens
    score_diff: float  # max |s[a] − s[b]| over the visible cells of row ``query``
    weight_diff: float  # max |a[a] − a[b]| over row ``query``
    weight_diff_all: float  # max |a[a] − a[b]| over every row
    weights_differ: bool  # weight_diff_all > SAME_WEIGHTS
    rows: list[dict]  # one per key j of row ``query``: key label, scores and weights of both heads


def shared_pair(trace: ToyTrace) -> SharedPair | None:
    """Heads 0 and 1 of group 0 (the first two heads that share), compared; None without sharing."""
    if trace.group_size < 2:
        return None
    a, b = 0, 1  # group 0 holds heads 0 … G−1, G ≥ 2
    i = len(trace.tokens) - 1
    visible = ~trace.mask[i]  # [S]

    def gap(t: Tensor) -> float:
        return float((t[a] - t[b]).abs().max())

    labels = trace.labels  # the last row sees every key, so no cell of it is masked
    rows = [
        {"key": labels[j],
         f"score, head {a}": float(trace.scores[a, i, j]), f"score, head {b}": float(trace.scores[b, i, j]),
         f"weight, head {a}": float(trace.pattern[a, i, j]), f"weight, head {b}": float(trace.pattern[b, i, j])}
        for j in range(len(labels))
    ]
    weight_all = gap(trace.pattern)
    return SharedPair(
        group=0, heads=(a, b), query=i, k_diff=gap(trace.k), v_diff=gap(trace.v), q_diff=gap(trace.q),
        score_diff=float((trace.scores[a, i, visible] - trace.scores[b, i, visible]).abs().max()),
        weight_diff=float((trace.pattern[a, i] - trace.pattern[b, i]).abs().max()),
        weight_diff_all=weight_all, weights_differ=weight_all > SAME_WEIGHTS, rows=rows,
    )
