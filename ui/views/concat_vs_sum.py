"""The cached calls into core of the *Concat versus sum* page (pages/concat-vs-sum.py).

Every number comes from ``core.concat_vs_sum``: ``concat_vs_sum_report`` (the precision table),
``head_terms`` + ``waterfall`` (one output number head by head), ``reshape_pitfall`` (the
reshape that runs and is wrong), ``w_o_layouts`` (W_O three ways), and
``core.concat_vs_sum_torch.torch_check`` (PyTorch: nn.MultiheadAttention, or SDPA with grouped
keys and values).
Each ``cached_*`` function takes the layer's sizes as one ``core.sizes.LayerSizes`` (frozen, so
Streamlit hashes it by value) and otherwise plain arguments, and returns plain data, with the figure's
Vega-Lite dict (``ui.figures.concat_vs_sum``) built inside the same cache entry, so a rerun skips
both the computation and Altair's validation.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import streamlit as st

from core.concat_vs_sum import (
    concat_vs_sum_report,
    head_terms,
    reshape_pitfall,
    rounding_example,
    w_o_layouts,
    waterfall,
)
from core.concat_vs_sum_torch import torch_check
from core.sizes import LayerSizes
from ui.figures.concat_vs_sum import precision_chart, reshape_chart, w_o_chart, waterfall_chart
from ui.render import arrow

# W_O is D×D: 262,144 cells at D = 512, too many for a browser chart. Show an even sample.
W_O_ROWS_PER_HEAD = 6
W_O_MAX_COLS = 48
RESHAPE_TOKENS = 4  # tokens of the first sequence shown in the reshape picture


def _run(sizes: LayerSizes) -> dict:
    """The size arguments every ``core.concat_vs_sum`` call takes, read off one ``LayerSizes``."""
    return dict(batch=sizes.batch, seq=sizes.seq, d_model=sizes.d_model, n_heads=sizes.n_heads,
                n_kv_heads=sizes.n_kv_heads)


@st.cache_data(show_spinner="Running the layer in every precision…", max_entries=32)
def cached_report(sizes: LayerSizes, seed: int, device: str, causal: bool) -> dict:
    report = concat_vs_sum_report(**_run(sizes), seed=seed, device=device, causal=causal)
    table = pd.DataFrame(report["rows"])
    records = table.to_dict("records")  # one dict per precision; a rerun unpickles no DataFrame
    return {"records": records, "shapes": report["shapes"], "spec": precision_chart(table)}


PRECISION_COLUMNS = ["dtype", "eps", "max_abs", "max_rel", "eps_units", "bitwise_equal", "allclose", "outside_tolerance",
                     "concat_err_rel", "sum_err_rel", "closer", "layer_err_rel"]


@st.cache_data(show_spinner=False, max_entries=64)
def precision_table(sizes: LayerSizes, seed: int, device: str, causal: bool, dtype: str) -> pa.Table:
    """``cached_report``'s readouts as the page's table: numbers stay numbers (None where a column has
    no reference), and a column marks the precision shown above."""
    shown = pd.DataFrame(cached_report(sizes, seed, device, causal)["records"])[PRECISION_COLUMNS]
    for col in ("concat_err_rel", "sum_err_rel", "layer_err_rel"):  # None where there is no reference
        shown[col] = pd.to_numeric(shown[col], errors="coerce")
    shown.insert(1, "shown above", shown["dtype"] == dtype)
    return arrow(shown)


@st.cache_data(show_spinner="Splitting one output coordinate into its heads…", max_entries=32)
def cached_terms(sizes: LayerSizes, seed: int, dtype: str, device: str, causal: bool, coord: int) -> dict:
    return head_terms(**_run(sizes), coord=coord, seed=seed, dtype=dtype, device=device, causal=causal)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_waterfall(sizes: LayerSizes, seed: int, dtype: str, device: str, causal: bool, token: int,
                     coord: int) -> dict:
    """``core.concat_vs_sum.waterfall`` for one (s, j), and its chart."""
    t = cached_terms(sizes, seed, dtype, device, causal, coord)
    wf = waterfall(t["terms"][token], t["float64_terms"][token], t["out_concat"][token], t["out_sum"][token],
                   dtype)
    return {"wf": {**wf, "table": arrow(wf["table"])}, "n_terms": int(t["terms"].shape[1]),
            "spec": waterfall_chart(wf["table"], wf["concat"], wf["sum"], sizes.n_heads, token, coord)}


@st.cache_data(show_spinner="Building the concatenation twice…", max_entries=32)
def cached_reshape(sizes: LayerSizes, seed: int, dtype: str, device: str, causal: bool) -> dict:
    pit = reshape_pitfall(**_run(sizes), seed=seed, dtype=dtype, device=device, causal=causal,
                          max_tokens=RESHAPE_TOKENS)
    return {**pit, "origin": arrow(pit["origin"]), "spec": reshape_chart(pit["origin"], sizes.n_heads)}


@st.cache_data(show_spinner="Laying out W_O…", max_entries=32)
def cached_layouts(d_model: int, heads: int, seed: int, dtype: str, device: str) -> dict:
    """W_O alone: it is the same numbers at every key/value head count, so H_kv is not a key."""
    lay = w_o_layouts(d_model, heads, seed=seed, dtype=dtype, device=device,
                      rows_per_head=W_O_ROWS_PER_HEAD, max_cols=W_O_MAX_COLS)
    return {**lay, "cells": arrow(lay["cells"]), "l_shown": sorted(lay["cells"]["l"].unique().tolist()),
            "tl": w_o_chart(lay["cells"], heads, transposed=False),
            "linear": w_o_chart(lay["cells"], heads, transposed=True)}


@st.cache_data(show_spinner="Running PyTorch's attention on the same weights…", max_entries=32)
def cached_torch(sizes: LayerSizes, seed: int, dtype: str, device: str, causal: bool) -> dict:
    tc = torch_check(**_run(sizes), seed=seed, dtype=dtype, device=device, causal=causal)
    return {**tc, "calls": arrow(tc["calls"])}


@st.cache_data(show_spinner=False, max_entries=1)
def cached_rounding() -> pa.Table:
    return arrow(rounding_example())
