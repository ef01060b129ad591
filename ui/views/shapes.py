"""Cached views of the shape-table page (pages/shapes.py): plain arguments in, plain data out.

Every number comes from ``core.shapes``: ``shape_table`` (the table), ``path_summary`` (its
totals), ``sharing_summary`` (what grouped-query attention saves: parameters and the KV cache),
``op_trace`` (every torch call), ``flow_edges`` (the picture's arrows), ``step_values`` (real
values of one step). The figures are built here from those results, once per argument set
(``ui.figures.shapes``), so a rerun only draws. The sizes arrive as plain ints (batch, seq,
vocab, d_model, heads, kv_heads), the fields of ``core.sizes.LayerSizes``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import streamlit as st

from core.shapes import (
    PathError,
    flat_table,
    flow_edges,
    kv_rows,
    numeric_columns,
    op_trace,
    path_summary,
    seed_slips,
    shape_table,
    sharing_summary,
    step_values,
    tensor_numel,
)
from core.sizes import LayerSizes
from ui.figures import shapes as figures
from ui.figures.shapes import ENDING_NAMES
from ui.format import plain_shape
from ui.prose.shapes import expansion_md, step_table_md
from ui.render import arrow

# ---- cached calls into core (plain arguments in, plain data out) ------------------------------


@st.cache_data(show_spinner=False, max_entries=256)
def traced_table(batch: int, seq: int, vocab: int, d_model: int, heads: int, kv_heads: int, dtype: str) -> dict:
    """core.shapes.shape_table and what the page derives from it, or torch's refusal in words."""
    try:
        table = shape_table(batch, seq, vocab, d_model, heads, kv_heads, dtype=dtype)
    except PathError as err:
        return {"error": str(err), "where": err.where, "code": err.code}
    return {
        "table": table,
        "numeric": flat_table(table),  # int64/float64 columns: sorts and copies as numbers
        "exact": flat_table(table, exact=True),  # Python ints: the CSV holds every digit
        "summary": path_summary(table, heads),
        "edges": flow_edges(table),
        "slips": seed_slips(batch, seq, d_model, heads),
    }


@st.cache_data(show_spinner=False, max_entries=256)
def table_view(batch: int, seq: int, vocab: int, d_model: int, heads: int, kv_heads: int, dtype: str) -> dict:
    """What the page draws from ``traced_table`` on every run, ready to draw: the summary and slips
    (plain dicts), the Markdown that reads the table, its numbers and the picture's arrows as Arrow,
    the code listing, and each step's output shape. Or torch's refusal, as ``traced_table`` gives it."""
    traced = traced_table(batch, seq, vocab, d_model, heads, kv_heads, dtype)
    if "error" in traced:
        return traced
    table = traced["table"]
    return {
        "summary": traced["summary"], "slips": traced["slips"], "n_rows": len(table),
        "step_md": step_table_md(table), "expansion_md": expansion_md(table, heads, kv_heads),
        "numeric": arrow(traced["numeric"]), "flow": arrow(flow_numbers(traced["edges"])),
        "listing": "\n".join(f"# step {r['step']}: {r['operation']}  ({r['where']})\n{r['code']}\n"
                             for _, r in table.iterrows()),
        "outputs": {r["step"]: {"output_sym": r["output_sym"], "output": r["output"]} for _, r in table.iterrows()},
    }


def exact_table(batch: int, seq: int, vocab: int, d_model: int, heads: int, kv_heads: int, dtype: str) -> pd.DataFrame:
    """The table with every count a Python int, for the CSV (fetched when its button is pressed)."""
    return traced_table(batch, seq, vocab, d_model, heads, kv_heads, dtype)["exact"]


@st.cache_data(show_spinner=False, max_entries=64)
def ops_view(batch: int, seq: int, vocab: int, d_model: int, heads: int, kv_heads: int, causal: bool) -> dict:
    """``traced_ops`` at this setting as Arrow, and the calls the causal mask adds (or would add)."""
    ops = traced_ops(batch, seq, vocab, d_model, heads, kv_heads, causal)
    other = traced_ops(batch, seq, vocab, d_model, heads, kv_heads, not causal)
    with_mask, without = (ops, other) if causal else (other, ops)
    return {"ops": arrow(ops), "n_ops": len(ops), "n_mask_calls": len(with_mask) - len(without),
            "mask_calls": sorted(set(with_mask["torch call"]) - set(without["torch call"]))}


@st.cache_data(show_spinner=False, max_entries=64)
def traced_ops(batch: int, seq: int, vocab: int, d_model: int, heads: int, kv_heads: int,
               causal: bool) -> pd.DataFrame:
    """core.shapes.op_trace: every torch call of the path, with the causal mask's calls if it is on."""
    return op_trace(batch, seq, vocab, d_model, heads, kv_heads, causal=causal)


@st.cache_data(show_spinner=False, max_entries=256)
def walk_numel(batch: int, seq: int, vocab: int, d_model: int, heads: int, kv_heads: int) -> dict[str, int]:
    return tensor_numel(batch, seq, vocab, d_model, heads, kv_heads)


# Real values: at most LIVE_MAX_CELLS (16,384) cells a panel, so 32 entries stay within a few tens of MiB.
@st.cache_data(show_spinner=False, max_entries=32)
def live_panels(step: str, batch: int, seq: int, vocab: int, d_model: int, heads: int, kv_heads: int, seed: int,
                dtype: str, causal: bool, scale: bool, at_batch: int, at_head: int) -> list[dict]:
    return step_values(step, batch, seq, vocab, d_model, heads, kv_heads, seed=seed, dtype=dtype, causal=causal,
                       scale=scale, at_batch=at_batch, at_head=at_head)


@st.cache_data(show_spinner=False, max_entries=64)
def flow_spec(batch: int, seq: int, vocab: int, d_model: int, heads: int, kv_heads: int, dtype: str) -> dict:
    """The path as boxes and arrows (core.shapes.flow_edges): a Vega-Lite dict, once per size."""
    traced = traced_table(batch, seq, vocab, d_model, heads, kv_heads, dtype)
    return figures.flow_spec(traced["edges"], traced["table"])


def flow_numbers(edges: pd.DataFrame) -> pd.DataFrame:
    """The picture's arrows as a numeric table (shapes as labels, counts as int64)."""
    flat = edges.assign(shape=edges["shape"].map(plain_shape))
    return numeric_columns(flat, ["elements", "bytes"])


# ---- sharing keys and values ------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=128)
def kv_sharing(batch: int, seq: int, vocab: int, d_model: int, heads: int, kv_heads: int, layers: int,
               dtype: str, context: int) -> dict:
    """core.shapes.sharing_summary, its table, and its chart (``ui.figures.shapes.kv_cache_spec``)."""
    sizes = LayerSizes(batch, seq, vocab, d_model, heads, kv_heads)
    summary = sharing_summary(sizes, layers=layers, dtype=dtype, context=context)
    rows = kv_rows(summary)
    return {"summary": summary, "rows": arrow(rows), "spec": figures.kv_cache_spec(rows, dtype)}


# ---- the two endings -------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=64)
def endings_numbers(batch: int, seq: int, vocab: int, d_model: int, heads: int, kv_heads: int,
                    dtype: str) -> pd.DataFrame:
    """Steps 7–9 and 7–8′–9′ side by side: output shape, elements, bytes and FLOPs, as numbers."""
    by = traced_table(batch, seq, vocab, d_model, heads, kv_heads, dtype)["table"].set_index("step")
    rows = pd.DataFrame([
        {"ending": ENDING_NAMES[e], "step": s, "tensor": f"{s}: {by.loc[s, 'output_sym']}",
         "shape": plain_shape(by.loc[s, "output"]), "elements": int(by.loc[s, "output_elements"]),
         "bytes": int(by.loc[s, "output_bytes"]), "FLOPs": int(by.loc[s, "flops"])}
        for e, steps in (("concat", ("7", "8", "9")), ("additive", ("7", "8′", "9′"))) for s in steps
    ], dtype=object)
    return numeric_columns(rows, ["elements", "bytes", "FLOPs"])


@st.cache_data(show_spinner=False, max_entries=64)
def endings_table(batch: int, seq: int, vocab: int, d_model: int, heads: int, kv_heads: int, dtype: str) -> pa.Table:
    """``endings_numbers`` as the Arrow table the page draws."""
    return arrow(endings_numbers(batch, seq, vocab, d_model, heads, kv_heads, dtype))


@st.cache_data(show_spinner=False, max_entries=64)
def endings_spec(batch: int, seq: int, vocab: int, d_model: int, heads: int, kv_heads: int, dtype: str) -> dict:
    """What each ending keeps in memory, step by step (``ui.figures.shapes.endings_spec``)."""
    return figures.endings_spec(endings_numbers(batch, seq, vocab, d_model, heads, kv_heads, dtype), dtype)


# ---- one step's real values ------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=32)  # a spec inlines its cells: up to ~0.7 MB each
def step_heatmap_spec(step: str, batch: int, seq: int, vocab: int, d_model: int, heads: int, kv_heads: int,
                      seed: int, dtype: str, causal: bool, scale: bool, at_batch: int, at_head: int,
                      panel: int) -> dict:
    """Panel ``panel`` of ``live_panels`` as a heatmap (``ui.figures.shapes.step_heatmap_spec``)."""
    p = live_panels(step, batch, seq, vocab, d_model, heads, kv_heads, seed, dtype, causal, scale, at_batch,
                    at_head)[panel]
    return figures.step_heatmap_spec(p, step, d_model, heads)


def panel_numbers(panel: dict) -> pd.DataFrame:
    """One panel's values as a numeric table: a row per row of the slice, −inf where masked."""
    values = panel["values"]  # [rows, cols]
    wide = pd.DataFrame(values, columns=[str(j) for j in range(values.shape[1])])
    wide.insert(0, panel["rows"], np.arange(values.shape[0]))
    return wide


@st.cache_data(show_spinner=False, max_entries=32)
def panels_table(step: str, batch: int, seq: int, vocab: int, d_model: int, heads: int, kv_heads: int, seed: int,
                 dtype: str, causal: bool, scale: bool, at_batch: int, at_head: int) -> pa.Table:
    """Every panel of ``live_panels`` in one numeric table, a column naming its tensor first."""
    panels = live_panels(step, batch, seq, vocab, d_model, heads, kv_heads, seed, dtype, causal, scale, at_batch,
                         at_head)
    numbers = pd.concat([panel_numbers(p).assign(tensor=p["code"]) for p in panels], ignore_index=True)
    return arrow(numbers[["tensor", *numbers.columns[:-1]]])
