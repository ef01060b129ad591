"""The sentence page's tables: one plain DataFrame per table, numbers kept numbers.

Built from a :class:`core.toy_sentence.ToyTrace` (or :class:`core.toy_text.Tokens` for the first
tables). Split from ``core/toy_sentence.py``, which re-exports every name here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from core.toy_scale import row_entropy
from core.toy_text import DTYPE, token_labels

__all__ = [
    "tokens_frame", "vocab_frame", "one_hot_frame", "matrix_frame", "head_columns", "heads_frame",
    "group_columns", "qkv_frame", "q_frame", "kv_frame", "groups_frame", "qkv_long", "weights_long", "weights_table", "context_terms", "terms_frame", "terms_long",
]

def tokens_frame(trace_or_tokens: ToyTrace | Tokens) -> pd.DataFrame:
    """One row per position: the token, its id, and where the id's one-hot 1 sits."""
    t = trace_or_tokens
    return pd.DataFrame({"position": range(len(t.tokens)), "token": t.tokens, "id": t.ids})


def vocab_frame(trace_or_tokens: ToyTrace | Tokens) -> pd.DataFrame:
    t = trace_or_tokens
    counts = pd.Series(t.tokens).value_counts()
    return pd.DataFrame(
        {"id": range(len(t.vocab)), "token": t.vocab, "occurrences": [int(counts[w]) for w in t.vocab]}
    )


def one_hot_frame(trace_or_tokens: ToyTrace | Tokens) -> pd.DataFrame:
    """onehot(ids) [S, V] as 0/1: rows are positions, columns "id:token" of the vocabulary."""
    t = trace_or_tokens
    m = np.zeros((len(t.ids), len(t.vocab)), dtype=int)  # [S, V]
    m[np.arange(len(t.ids)), t.ids] = 1
    return pd.DataFrame(m, index=pd.Index(token_labels(t.tokens), name="token"), columns=token_labels(t.vocab))


def matrix_frame(m: Tensor, rows: list[str], prefix: str = "") -> pd.DataFrame:
    """[R, C] → a wide table, rows labelled, columns ``prefix0 … prefix{C-1}``."""
    arr = m.detach().cpu().numpy()
    return pd.DataFrame(arr, index=pd.Index(rows, name="token"), columns=[f"{prefix}{c}" for c in range(arr.shape[1])])


def head_columns(H: int, L: int) -> list[str]:
    """Column names of the concatenated layout: "h0 l0" … "h{H-1} l{L-1}" (head h, coordinate l),
    so column hL + l of an [S, H·L] matrix is named by both of its indices."""
    return [f"h{h} l{l}" for h in range(H) for l in range(L)]


def heads_frame(t: Tensor, rows: list[str]) -> pd.DataFrame:
    """[H, S, L] → [S, H·L] table with columns ``h{h} l{l}`` (the concatenated layout)."""
    H, S, L = t.shape
    wide = t.permute(1, 0, 2).reshape(S, H * L).numpy()  # [S, H·L]
    return pd.DataFrame(wide, index=pd.Index(rows, name="token"), columns=head_columns(H, L))


def group_columns(H_kv: int, L: int) -> list[str]:
    """Column names of keys and values stored per key/value head: "g0 l0" … (group g, coordinate l)."""
    return [f"g{g} l{l}" for g in range(H_kv) for l in range(L)]


def qkv_frame(trace: ToyTrace) -> pd.DataFrame:
    """q, k and v in one numeric table: 3·S rows (tensor, token), H·L columns ``h{h} l{l}``.

    For plain multi-head attention (every head its own keys and values); with sharing, the page
    shows :func:`q_frame` and :func:`kv_frame`, whose column counts differ (H·L and H_kv·L).
    """
    parts = []
    for name in ("q", "k", "v"):
        wide = heads_frame(getattr(trace, name), trace.labels).reset_index()  # [S, 1 + H·L]
        wide.insert(0, "tensor", name)
        parts.append(wide)
    return pd.concat(parts, ignore_index=True)


def q_frame(trace: ToyTrace) -> pd.DataFrame:
    """The queries alone, [S, H·L], columns ``h{h} l{l}``: every query head has its own."""
    return heads_frame(trace.q, trace.labels)


def kv_frame(trace: ToyTrace) -> pd.DataFrame:
    """Keys and values as computed, one block per key/value head: 2·S rows (tensor, token),
    H_kv·L columns ``g{g} l{l}``. Query head h reads block h // G (:func:`groups_frame`)."""
    H_kv, S, L = trace.k_kv.shape
    parts = []
    for name in ("k_kv", "v_kv"):
        t = getattr(trace, name)  # [H_kv, S, L]
        wide = pd.DataFrame(t.permute(1, 0, 2).reshape(S, H_kv * L).numpy(),  # [S, H_kv·L]
                            index=pd.Index(trace.labels, name="token"), columns=group_columns(H_kv, L)).reset_index()
        wide.insert(0, "tensor", name[0])
        parts.append(wide)
    return pd.concat(parts, ignore_index=True)


def groups_frame(trace: ToyTrace) -> pd.DataFrame:
    """One row per key/value head g: the query heads that read it and its columns in :func:`kv_frame`."""
    sizes, L = trace.sizes, trace.d_head
    rows = []
    for g in range(sizes.n_kv_heads):
        heads = sizes.query_heads_of(g)
        rows.append({"K/V group": g, "read by query heads": ", ".join(map(str, heads)),
                     "query heads": len(heads), "columns": f"g{g} l0 … g{g} l{L - 1}" if L > 1 else f"g{g} l0"})
    return pd.DataFrame(rows)


def qkv_long(trace: ToyTrace) -> pd.DataFrame:
    """q, k, v of every (head, token, coordinate l), long form for download: k and v are the ones
    head h reads, those of key/value group h // G (named in ``kv_group``)."""
    H, S, L = trace.q.shape
    h, i, l = np.meshgrid(np.arange(H), np.arange(S), np.arange(L), indexing="ij")
    return pd.DataFrame({
        "head": h.ravel(), "kv_group": h.ravel() // trace.group_size, "position": i.ravel(),
        "token": np.array(trace.tokens, dtype=object)[i.ravel()],
        "l": l.ravel(), "q": trace.q.numpy().ravel(), "k": trace.k.numpy().ravel(), "v": trace.v.numpy().ravel(),
    })


def weights_long(trace: ToyTrace) -> pd.DataFrame:
    """Every (head, query, key) cell: raw score, scaled score, weight, and whether it is masked."""
    H, S, _ = trace.pattern.shape
    h, i, j = np.meshgrid(np.arange(H), np.arange(S), np.arange(S), indexing="ij")
    labels = np.array(trace.labels, dtype=object)
    masked = trace.mask.numpy()[i.ravel(), j.ravel()]
    scores = trace.scores.numpy().ravel()
    return pd.DataFrame({
        "head": h.ravel(),
        "query_pos": i.ravel(), "query": labels[i.ravel()],
        "key_pos": j.ravel(), "key": labels[j.ravel()],
        "raw_score": trace.raw_scores.numpy().ravel(),
        "score": np.where(masked, np.nan, scores),  # −inf would not survive JSON; NaN + masked says it
        "weight": trace.pattern.numpy().ravel(),
        "masked": masked,
    })


def weights_table(trace: ToyTrace, head: int) -> pd.DataFrame:
    """Head ``head``'s pattern as query rows × key columns, numbers only: a masked cell holds the 0
    it is (``trace.mask`` says which), then each row's sum and its entropy in bits."""
    p = trace.pattern[head].numpy()  # [S, S] masked entries are exactly 0 after the softmax
    df = pd.DataFrame(p, index=pd.Index(trace.labels, name="query ↓ key →"), columns=trace.labels)
    df["Σ row"] = p.sum(axis=1)  # [S]
    df["entropy (bits)"] = row_entropy(trace.pattern[head]).numpy()  # [S]
    return df


def context_terms(trace: ToyTrace, i: int) -> tuple[Tensor, Tensor]:
    """Query token ``i`` alone, as the tutorial does it first: z_i = Σ_j a_ij v_j.

    Returns (terms [H, S, L], z_i [H, L]); terms[h, j] = a_ij v_j is what key j adds for head h.
    """
    a_i = trace.pattern[:, i, :]  # [H, S] row i of every head's pattern
    terms = a_i[:, :, None] * trace.v  # [H, S, L]
    z_i = terms.sum(dim=1)  # [H, L]
    return terms, z_i


def terms_frame(trace: ToyTrace, i: int) -> pd.DataFrame:
    """Query ``i``, every head: per head one row per key j with a_ij and the term a_ij·v_j, then
    the sum row: Σ_j a_ij (= 1) and z_i. Every cell a number (v_j itself is in ``qkv_frame``);
    ``masked`` marks hidden keys, whose a_ij and terms are the 0 they are."""
    terms, z_i = context_terms(trace, i)  # [H, S, L], [H, L]
    H, S, L = terms.shape
    parts = []
    for h in range(H):
        a = trace.pattern[h, i].numpy()  # [S]
        columns = {"head": h, "key": trace.labels, "masked": trace.mask[i].numpy(), "a_ij": a}
        columns.update({f"a·v[{l}]": terms[h, :, l].numpy() + 0.0 for l in range(L)})  # + 0.0: 0·(−v) is −0.0
        total = {"head": h, "key": f"z_{i} = Σ", "masked": False, "a_ij": float(a.sum())}
        total.update({f"a·v[{l}]": float(z_i[h, l]) for l in range(L)})
        parts += [pd.DataFrame(columns), pd.DataFrame([total])]
    return pd.concat(parts, ignore_index=True)


def terms_long(trace: ToyTrace, i: int) -> pd.DataFrame:
    """Every term a_ij·v_j[l] for query ``i`` (all heads), then a sum row per head, long form."""
    terms, z_i = context_terms(trace, i)  # [H, S, L], [H, L]
    H, S, L = terms.shape
    rows = np.array([*trace.labels, f"z_{i} (sum)"], dtype=object)  # [S+1] keys, then the sum
    a = torch.cat([trace.pattern[:, i, :], torch.full((H, 1), float("nan"), dtype=DTYPE)], dim=1)  # [H, S+1]
    v = torch.cat([trace.v, torch.full((H, 1, L), float("nan"), dtype=DTYPE)], dim=1)  # [H, S+1, L]
    value = torch.cat([terms, z_i[:, None, :]], dim=1) + 0.0  # [H, S+1, L]; + 0.0 turns 0·(−v) = −0.0 into 0
    masked = np.append(trace.mask[i].numpy(), False)  # [S+1]
    h, r, l = np.meshgrid(np.arange(H), np.arange(S + 1), np.arange(L), indexing="ij")
    h, r, l = h.ravel(), r.ravel(), l.ravel()
    return pd.DataFrame({
        "head": h, "row": rows[r], "kind": np.where(r == S, "sum", "term"), "l": l,
        "a_ij": a.numpy()[h, r], "v": v.numpy().ravel(), "value": value.numpy().ravel(),
        "masked": masked[r],
    })
