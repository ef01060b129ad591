"""Cached views of the sentence page (pages/toy-sentence.py): plain arguments in, plain data out.

Each view calls ``core.toy_sentence`` (``run_toy``, ``weights_long``, ``score_spread``,
``scale_effect``, ``terms_long``) inside ``st.cache_data`` and builds that setting's figures, and
its checkpoints (``core.checkpoints.toy_sentence``, from the same numbers), there
(``ui.figures.toy_sentence``), so each spec and each CSV is built once per setting
(``ui.charts.csv_bytes``) and a rerun only draws. Tables travel as Arrow tables, numbers kept numbers.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
import pyarrow as pa
import streamlit as st

from core import toy_sentence as toy
from core.attention import multi_head_attention
from core.checkpoints import toy_sentence as cps
from core.sizes import LayerSizes
from core.compare import compare
from ui.charts import csv_bytes
from ui.figures.toy_sentence import (
    embeddings_spec,
    entropy_spec,
    head_weights_spec,
    matrix_spec,
    terms_spec,
    weights_overview_spec,
)

CACHE_ENTRIES = 32  # per cached view


def _arrow(df: pd.DataFrame) -> pa.Table:
    """A table converted to Arrow once per setting: st.dataframe sends an Arrow table as it is, but
    converts a DataFrame again on every run (a third of this page's run before). Same numbers, same
    dtypes; the index travels in the pandas metadata and is shown as before."""
    return pa.Table.from_pandas(df)



@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def sentence_view(sentence: str, max_tokens: int) -> dict:
    """``core.toy_sentence.read_sentence`` and its tables, or the reason there is no sentence."""
    problem = toy.sentence_problem(sentence)
    if problem:
        return {"problem": problem}
    read = toy.read_sentence(sentence, max_tokens)
    tokens_table = toy.tokens_frame(read)
    return {
        "problem": None,
        "tokens": read.tokens,
        "found": read.found,
        "tokens_table": _arrow(tokens_table),
        "tokens_csv": csv_bytes(tokens_table),
        "vocab_table": _arrow(toy.vocab_frame(read)),
        "one_hot": _arrow(toy.one_hot_frame(read)),
        # [S, V] read off the tokens, not off the table (whose index is a column of its own)
        "n_tokens": len(read.tokens),
        "n_vocab": len(read.vocab),
    }


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def embedding_view(tokens: tuple[str, ...], d_model: int, seed: int) -> dict:
    """``core.toy_sentence.embed``: X as a table and a heatmap."""
    emb = toy.embed(list(tokens), d_model, seed)
    labels = toy.token_labels(list(tokens))
    wide = toy.matrix_frame(emb.x, labels, prefix="d")  # [S, D]
    return {"wide": _arrow(wide), "csv": csv_bytes(wide.reset_index()), "spec": embeddings_spec(wide, labels, emb.ids),
            "shape": tuple(emb.x.shape),
            "W_E_shape": tuple(emb.W_E.shape)}


def _trace(tokens: tuple[str, ...], sizes: LayerSizes, seed: int, causal: bool = False, scale: bool = True) -> toy.ToyTrace:
    """``core.toy_sentence.run_toy`` at the page's sizes (D, H and H_kv; S and V are the sentence's)."""
    return toy.run_toy(list(tokens), sizes.d_model, sizes.n_heads, n_kv_heads=sizes.n_kv_heads, seed=seed,
                       causal=causal, scale=scale)


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def projection_view(tokens: tuple[str, ...], sizes: LayerSizes, seed: int) -> dict:
    """q, k, v of ``core.toy_sentence.run_toy``: one table without sharing; with shared keys and
    values the queries per head, the keys and values per group, and who reads which group."""
    tr = _trace(tokens, sizes, seed)
    view = {
        "shapes": {"x": tuple(tr.x.shape), "W_Q": tuple(tr.weights.W_Q.shape), "W_K": tuple(tr.weights.W_K.shape),
                   "q": tuple(tr.q.shape), "k_kv": tuple(tr.k_kv.shape), "k": tuple(tr.k.shape)},
        "group_size": tr.group_size,
        "readers": toy.group_readers(tr.sizes),  # readers[g]: the query heads of K/V group g
        "qkv_csv": csv_bytes(toy.qkv_long(tr)),
    }
    if tr.group_size == 1:
        view["qkv"] = _arrow(toy.qkv_frame(tr))
    else:
        view["q"] = _arrow(toy.q_frame(tr))
        view["kv"] = _arrow(toy.kv_frame(tr))
        view["groups"] = _arrow(toy.groups_frame(tr))
    return view


def _entropy_frame(spread: dict, labels: list[str]) -> pd.DataFrame:
    H, S = spread["entropy_scaled"].shape
    return pd.DataFrame({
        "head": np.repeat(np.arange(H), S),
        "query": labels * H,
        "entropy ÷√d_k (bits)": spread["entropy_scaled"].ravel(),
        "entropy no scale (bits)": spread["entropy_raw"].ravel(),
        "even spread (bits)": np.tile(spread["entropy_max"], H),
        "raw score std of head": np.repeat(spread["raw_std_per_head"], S),
    })


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def attention_view(tokens: tuple[str, ...], sizes: LayerSizes, seed: int, causal: bool, scale: bool) -> dict:
    """Scores, the scale's measured effect, every head's weights, what sharing keys does, the
    output, and the checkpoints that ask about them, of one setting."""
    tr = _trace(tokens, sizes, seed, causal, scale)
    labels = tr.labels
    spread = toy.score_spread(tr)
    effect = toy.scale_effect(spread)
    pair = toy.shared_pair(tr)
    long = toy.weights_long(tr)
    out = toy.matrix_frame(tr.out, labels, prefix="d")  # [S, D]
    entropy = _entropy_frame(spread, labels)
    z_concat = toy.heads_frame(tr.z, labels)  # [S, H·L], the concatenated layout
    # The same layer through the shared implementation (with a batch axis of 1): must agree.
    ref = multi_head_attention(tr.x[None], tr.weights, causal=causal, scale=scale)
    return {
        "shapes": {
            "q": tuple(tr.q.shape), "scores": tuple(tr.scores.shape), "pattern": tuple(tr.pattern.shape),
            "z": tuple(tr.z.shape), "z_concat": tuple(tr.z_concat.shape), "W_O": tuple(tr.weights.W_O.shape),
            "out": tuple(tr.out.shape), "per_head": tuple(tr.per_head.shape),
        },
        "d_head": tr.d_head,
        "n_heads": tr.n_heads,
        "n_kv_heads": tr.n_kv_heads,
        "group_size": tr.group_size,
        "masked_cells": int(tr.mask.sum()),  # per head: the cells of the [S, S] grid the mask hides
        "spread": {k: v for k, v in spread.items() if not isinstance(v, np.ndarray)},
        "effect": asdict(effect),
        "entropy_table": _arrow(entropy),
        "entropy_csv": csv_bytes(entropy),
        "entropy_spec": entropy_spec(spread, tr.n_heads, scale),
        "weights_csv": csv_bytes(long),
        "overview_spec": weights_overview_spec(long, labels, causal, tr.n_heads, tr.group_size),
        "pair": None if pair is None else {k: v for k, v in asdict(pair).items() if k != "rows"},
        "pair_table": None if pair is None else _arrow(pd.DataFrame(pair.rows)),
        "checkpoints": {
            "scores_shape": cps.scores_shape(tr),
            "scale_direction": cps.scale_direction(tr, effect),
            "top_key": cps.top_key(tr, head=0),
            "shared_weights": cps.shared_weights(tr, pair),
        },
        "top_key_weights": tr.pattern[0, -1].numpy(),  # [S] row S−1 of head 0, what top_key asks about
        "z_concat": _arrow(z_concat),
        "z_csv": csv_bytes(z_concat.reset_index()),
        "out": _arrow(out),
        "out_csv": csv_bytes(out.reset_index()),
        "out_spec": matrix_spec(out, labels, "out"),
        "concat_vs_sum": compare(tr.out_sum, tr.out).as_dict(),
        "vs_reference": max(
            compare(tr.pattern, ref.pattern[0]).max_abs,
            compare(tr.z, ref.z[0]).max_abs,
            compare(tr.out, ref.out_concat[0]).max_abs,
        ),
    }


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def head_view(tokens: tuple[str, ...], sizes: LayerSizes, seed: int, causal: bool, scale: bool, head: int) -> dict:
    """One head close up: its weights map and table (``core.toy_sentence.weights_table``), and its mask."""
    tr = _trace(tokens, sizes, seed, causal, scale)
    long = toy.weights_long(tr)
    return {
        "table": _arrow(toy.weights_table(tr, head)),
        "mask": tr.mask.numpy(),  # [S, S] which cells of the table are masked
        "spec": head_weights_spec(long[long["head"] == head], tr.labels, causal),
    }


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def focus_view(tokens: tuple[str, ...], sizes: LayerSizes, seed: int, causal: bool, scale: bool, i: int) -> dict:
    """Query token i taken apart, every head (``core.toy_sentence.context_terms``), and z of every token."""
    tr = _trace(tokens, sizes, seed, causal, scale)
    terms, z_i = toy.context_terms(tr, i)  # [H, S, L], [H, L]
    long = toy.terms_long(tr, i)
    return {
        "labels": tr.labels,
        "weights": tr.pattern[:, i, :].numpy(),  # [H, S] row i of every head
        "masked": tr.mask[i].numpy(),  # [S]
        "table": _arrow(toy.terms_frame(tr, i)),
        "spec": terms_spec(long, [*tr.labels, f"z_{i} (sum)"], tr.n_heads, tr.d_head),
        "csv": csv_bytes(long),
        "shapes": {"pattern": tuple(tr.pattern.shape), "v": tuple(tr.v.shape), "z": tuple(tr.z.shape)},
        # row i of the all-at-once product against the term-by-term sum, every head
        "diff": compare(z_i, tr.z[:, i, :]).as_dict(),
    }
