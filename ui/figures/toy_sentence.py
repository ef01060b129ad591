"""Figures, cached views and drawing helpers of the sentence page (pages/toy-sentence.py).

One function per figure: plain data in, a Vega-Lite dict out. The views at the bottom call
``core.toy`` (``run_toy``, ``weights_long``, ``score_spread``, ``scale_effect``, ``terms_long``)
with plain arguments inside ``st.cache_data`` and build the figures there, so each spec is built
once per setting (``ui.charts.chart_spec``) and a rerun skips Altair's validation. The helpers at
the end draw them: tables stay numeric (``st.column_config.NumberColumn``), and CSVs are built
once in the views (``ui.charts.csv_bytes``) and drawn by ``ui.charts.csv_download``.
"""

from __future__ import annotations

import string
from dataclasses import asdict

import altair as alt
import numpy as np
import pandas as pd
import pyarrow as pa
import streamlit as st

from core import toy
from core.attention import multi_head_attention
from core.compare import compare
from ui.charts import DIVERGING, OKABE_ITO, SEQUENTIAL, chart_spec, csv_bytes, heatmap, plain_text

CACHE_ENTRIES = 32  # per cached view


def _arrow(df: pd.DataFrame) -> pa.Table:
    """A table converted to Arrow once per setting: st.dataframe sends an Arrow table as it is, but
    converts a DataFrame again on every run (a third of this page's run before). Same numbers, same
    dtypes; the index travels in the pandas metadata and is shown as before."""
    return pa.Table.from_pandas(df)

CELL_PX = 26  # side of one weights cell in the close-up: square cells at every sentence length
SMALL_CELL_PX = (14, 9)  # cells of the small multiples beyond 8 tokens, and beyond 14
CELL_TEXT_MAX_TOKENS = 8  # print weights inside heatmap cells up to this many tokens
PANEL_ROW_PX = 620  # small multiples wrap to fit about this width (plus ~80 px of row labels)
PANEL_GAP_PX = 20  # Vega-Lite's default spacing between facets
MASKED_FILL = "#c8c8c8"  # masked cells: neutral grey, outside viridis' hues, in both themes
MASKED_INK = "#4d4d4d"


def _height(rows: int, cell: int = CELL_PX) -> int:
    """Height of the plotting area (axes come on top of it): one cell a row."""
    return max(60, cell * rows)


def _fit_width(spec: dict) -> dict:
    """Fit the container's width but keep the spec's height for the cells alone. Streamlit's
    default ("fit") squeezes axes and cells into the height together, flattening the rows."""
    spec["autosize"] = {"type": "fit-x", "contains": "padding"}
    return spec


def _panel_names(n_heads: int) -> list[str]:
    return [f"head {h}" for h in range(n_heads)]


def embeddings_spec(wide: pd.DataFrame, labels: list[str], ids: list[int]) -> dict:
    """X [S, D] as a diverging heatmap, a row per token (``core.toy.embed``)."""
    long = wide.reset_index().melt(id_vars="token", var_name="dim", value_name="x")
    long["id"] = long["token"].map(dict(zip(labels, ids)))
    chart = heatmap(
        long, x="dim", y="token", value="x", x_order=list(wide.columns), y_order=labels, diverging=True,
        tooltip=["token", "id", "dim"], height=_height(len(labels)),
    )
    return chart_spec(chart)  # heatmap(height=...) already fits the width


def _weights_layers(labels: list[str], causal: bool, cell_text: bool, axis_titles: bool):
    """The layers of a weights map: viridis on a fixed [0, 1] for visible cells, grey × for masked."""
    base = alt.Chart().encode(
        x=alt.X("key:O", sort=labels, title="key j (attended to)" if axis_titles else None,
                axis=alt.Axis(labelAngle=-90, labelLimit=110)),
        y=alt.Y("query:O", sort=labels, title="query i (attending)" if axis_titles else None,
                axis=alt.Axis(labelLimit=110)),
        tooltip=[
            alt.Tooltip("head:O", title="head"),
            alt.Tooltip("query:N", title="query i"),
            alt.Tooltip("key:N", title="key j"),
            alt.Tooltip("weight_text:N", title="weight a_ij"),
            alt.Tooltip("score_text:N", title="score (softmax input)"),
            alt.Tooltip("raw_score:Q", title="raw q·k", format=".4f"),
        ],
    )
    layers = [base.transform_filter("!datum.masked").mark_rect().encode(
        color=alt.Color("weight:Q", scale=alt.Scale(scheme=SEQUENTIAL, domain=[0, 1]), legend=alt.Legend(title="weight"))
    )]
    if causal:
        layers.append(base.transform_filter("datum.masked").mark_rect(color=MASKED_FILL))
        layers.append(base.transform_filter("datum.masked").mark_text(text="×", color=MASKED_INK, fontSize=13))
    if cell_text:
        layers.append(base.transform_filter("!datum.masked").mark_text(fontSize=11).encode(
            text=alt.Text("weight:Q", format=".2f"),
            # viridis runs dark → light: dark ink on the light half, light ink on the dark half
            color=alt.condition("datum.weight > 0.5", alt.value("black"), alt.value("white")),
        ))
    return layers


def _weights_data(long: pd.DataFrame) -> pd.DataFrame:
    """``core.toy.weights_long`` plus the tooltip texts (a masked cell's weight is 0, said in words)."""
    return long[["head", "query", "key", "weight", "raw_score", "masked"]].assign(
        weight_text=[("0 (masked: a later token)" if m else f"{w:.6f}") for w, m in zip(long["weight"], long["masked"])],
        score_text=[("−∞ (masked)" if m else f"{s:.4f}") for s, m in zip(long["score"], long["masked"])],
        panel=[f"head {h}" for h in long["head"]],
    )


def weights_overview_spec(long: pd.DataFrame, labels: list[str], causal: bool, n_heads: int) -> dict:
    """Every head's weights as small multiples, one panel per head, on one colour scale."""
    S = len(labels)
    cell = CELL_PX if S <= CELL_TEXT_MAX_TOKENS else SMALL_CELL_PX[0] if S <= 14 else SMALL_CELL_PX[1]
    side = cell * S
    columns = max(1, min(n_heads, PANEL_ROW_PX // (side + PANEL_GAP_PX)))
    layers = _weights_layers(labels, causal, cell_text=False, axis_titles=False)
    chart = alt.layer(*layers, data=_weights_data(long)).properties(width=side, height=side).facet(
        facet=alt.Facet("panel:N", sort=_panel_names(n_heads), title=None, header=alt.Header(labelFontSize=13)),
        columns=columns,
    )
    spec = chart_spec(chart)
    spec["autosize"] = {"type": "pad", "contains": "padding"}  # keep the cells square
    return spec


def head_weights_spec(long: pd.DataFrame, labels: list[str], causal: bool) -> dict:
    """One head's weights, close up: query rows × key columns, the weight printed in short maps."""
    data = _weights_data(long)
    layers = _weights_layers(labels, causal, cell_text=len(labels) <= CELL_TEXT_MAX_TOKENS, axis_titles=True)
    side = CELL_PX * len(labels)
    spec = chart_spec(alt.layer(*layers, data=data).properties(width=side, height=side))
    spec["autosize"] = {"type": "pad", "contains": "padding"}  # keep the cells square; axes add on
    return spec


def entropy_spec(spread: dict, n_heads: int, scale: bool) -> dict:
    """Per head, mean row entropy with and without the 1/√d_k: a dumbbell from one to the other
    (``core.toy.score_spread``)."""
    scaled, raw = spread["entropy_scaled"].mean(axis=1), spread["entropy_raw"].mean(axis=1)  # [H]
    names = ("÷√d_k (the usual)", "no scale")
    now = names[0] if scale else names[1]
    heads = _panel_names(n_heads)
    df = pd.DataFrame({
        "head": heads * 2,
        "setting": [names[0]] * n_heads + [names[1]] * n_heads,
        "mean entropy (bits)": np.concatenate([scaled, raw]),
    })
    df["in the heatmaps"] = np.where(df["setting"] == now, "yes (the switch is set so)", "no")
    uniform = pd.DataFrame({"x": [float(spread["entropy_max"].mean())], "label": ["even spread over visible keys"]})
    y = alt.Y("head:N", title=None, sort=heads)
    x_title = "mean entropy of a row (bits)"
    line = alt.Chart(df).mark_line(color="#999999").encode(
        x=alt.X("mean entropy (bits):Q", title=x_title), y=y, detail="head:N"
    )
    dots = alt.Chart(df).mark_point(filled=True, size=110).encode(
        x=alt.X("mean entropy (bits):Q", title=x_title, scale=alt.Scale(domainMin=0)),
        y=y,
        color=alt.Color("setting:N", scale=alt.Scale(domain=list(names), range=[OKABE_ITO[4], OKABE_ITO[0]]),
                        legend=alt.Legend(title=None, orient="bottom")),
        shape=alt.Shape("setting:N", scale=alt.Scale(domain=list(names), range=["circle", "diamond"])),
        tooltip=["head", "setting", alt.Tooltip("mean entropy (bits):Q", format=".4f"), "in the heatmaps"],
    )
    rule = alt.Chart(uniform).mark_rule(strokeDash=[4, 3], color="#999999").encode(
        x=alt.X("x:Q", title=x_title),
        tooltip=[alt.Tooltip("label:N", title="line"), alt.Tooltip("x:Q", title="bits", format=".4f")],
    )
    tag = alt.Chart(uniform).mark_text(text="even", align="right", dx=-4, dy=-4, baseline="top", color="#999999").encode(
        x=alt.X("x:Q", title=x_title), y=alt.value(0)
    )
    return _fit_width(chart_spec(alt.layer(rule, tag, line, dots).properties(height=max(60, 28 * n_heads))))


def terms_spec(long: pd.DataFrame, order: list[str], n_heads: int, d_head: int) -> dict:
    """Query i's terms, a panel per head: row j is a_ij·v_j (what key j adds), the outlined last
    row their sum z_i; columns are the head's coordinates l. Diverging at 0 (``core.toy.terms_long``)."""
    df = long.assign(
        a_text=[("0 (masked)" if m else ("" if k == "sum" else f"{a:.6f}")) for a, m, k in zip(long["a_ij"], long["masked"], long["kind"])],
        v_text=["" if k == "sum" else f"{v:.6f}" for v, k in zip(long["v"], long["kind"])],
        panel=[f"head {h}" for h in long["head"]],
    )
    cell = CELL_PX if len(order) <= CELL_TEXT_MAX_TOKENS + 1 else 18
    width = min(max(60, cell * d_head), 640)
    columns = max(1, min(n_heads, PANEL_ROW_PX // (width + PANEL_GAP_PX)))
    base = alt.Chart().encode(
        x=alt.X("l:O", title="l", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("row:N", sort=order, title=None, axis=alt.Axis(labelLimit=110)),
        tooltip=[
            alt.Tooltip("head:O", title="head"),
            alt.Tooltip("row:N", title="key j (or the sum)"), alt.Tooltip("l:O", title="coordinate l"),
            alt.Tooltip("a_text:N", title="a_ij"), alt.Tooltip("v_text:N", title="v_j[l]"),
            alt.Tooltip("value:Q", title="a_ij·v_j[l]  (sum row: z_i[l])", format=".6f"),
        ],
    )
    layers = [
        base.transform_filter("!datum.masked").mark_rect().encode(
            color=alt.Color("value:Q", scale=alt.Scale(scheme=DIVERGING, domainMid=0), legend=alt.Legend(title="value"))
        ),
        base.transform_filter("datum.kind == 'sum'").mark_rect(filled=False, stroke="#999999", strokeWidth=2),
    ]
    if df["masked"].any():
        layers.append(base.transform_filter("datum.masked").mark_rect(color=MASKED_FILL))
        layers.append(base.transform_filter("datum.masked").mark_text(text="×", color=MASKED_INK, fontSize=13))
    chart = alt.layer(*layers, data=df).properties(width=width, height=cell * len(order)).facet(
        facet=alt.Facet("panel:N", sort=_panel_names(n_heads), title=None, header=alt.Header(labelFontSize=13)),
        columns=columns,
    )
    spec = chart_spec(chart)
    spec["autosize"] = {"type": "pad", "contains": "padding"}
    return spec


def matrix_spec(wide: pd.DataFrame, labels: list[str], value: str) -> dict:
    """A [S, D] matrix (the layer's output) as a diverging heatmap, a row per token."""
    long = wide.reset_index().melt(id_vars="token", var_name="dim", value_name=value)
    return chart_spec(heatmap(
        long, x="dim", y="token", value=value, x_order=list(wide.columns), y_order=labels, diverging=True,
        tooltip=["token", "dim"], height=_height(len(labels)),
    ))


# ---- cached views: plain arguments in, plain data (tables, specs, numbers) out ------------------
# An entry is < 2.5 MB even at the page's caps (24 tokens, D = 64, 16 heads), < 0.1 MB at defaults.


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def sentence_view(sentence: str, max_tokens: int) -> dict:
    """``core.toy.read_sentence`` and its tables, or the reason there is no sentence."""
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
    }


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def embedding_view(tokens: tuple[str, ...], d_model: int, seed: int) -> dict:
    """``core.toy.embed``: X as a table and a heatmap."""
    emb = toy.embed(list(tokens), d_model, seed)
    labels = toy.token_labels(list(tokens))
    wide = toy.matrix_frame(emb.x, labels, prefix="d")  # [S, D]
    return {"wide": _arrow(wide), "csv": csv_bytes(wide.reset_index()), "spec": embeddings_spec(wide, labels, emb.ids),
            "shape": tuple(emb.x.shape),
            "W_E_shape": tuple(emb.W_E.shape)}


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def projection_view(tokens: tuple[str, ...], d_model: int, heads: int, seed: int) -> dict:
    """q, k, v of ``core.toy.run_toy`` in one table (and long form for the CSV)."""
    tr = toy.run_toy(list(tokens), d_model, heads, seed=seed)
    return {
        "shapes": {"x": tuple(tr.x.shape), "W_Q": tuple(tr.weights.W_Q.shape), "q": tuple(tr.q.shape)},
        "qkv": _arrow(toy.qkv_frame(tr)),
        "qkv_csv": csv_bytes(toy.qkv_long(tr)),
    }


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
def attention_view(tokens: tuple[str, ...], d_model: int, heads: int, seed: int, causal: bool, scale: bool) -> dict:
    """Scores, the scale's measured effect, every head's weights, and the output, of one setting."""
    tr = toy.run_toy(list(tokens), d_model, heads, seed=seed, causal=causal, scale=scale)
    labels = tr.labels
    spread = toy.score_spread(tr)
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
        "spread": {k: v for k, v in spread.items() if not isinstance(v, np.ndarray)},
        "effect": asdict(toy.scale_effect(spread)),
        "entropy_table": _arrow(entropy),
        "entropy_csv": csv_bytes(entropy),
        "entropy_spec": entropy_spec(spread, tr.n_heads, scale),
        "weights_csv": csv_bytes(long),
        "overview_spec": weights_overview_spec(long, labels, causal, tr.n_heads),
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
def head_view(tokens: tuple[str, ...], d_model: int, heads: int, seed: int, causal: bool, scale: bool, head: int) -> dict:
    """One head close up: its weights map and table (``core.toy.weights_table``), and its mask."""
    tr = toy.run_toy(list(tokens), d_model, heads, seed=seed, causal=causal, scale=scale)
    long = toy.weights_long(tr)
    return {
        "table": _arrow(toy.weights_table(tr, head)),
        "mask": tr.mask.numpy(),  # [S, S] which cells of the table are masked
        "spec": head_weights_spec(long[long["head"] == head], tr.labels, causal),
    }


@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def focus_view(tokens: tuple[str, ...], d_model: int, heads: int, seed: int, causal: bool, scale: bool, i: int) -> dict:
    """Query token i taken apart, every head (``core.toy.context_terms``), and z of every token."""
    tr = toy.run_toy(list(tokens), d_model, heads, seed=seed, causal=causal, scale=scale)
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


# ---- drawing helpers of the page: numbers stay numbers, every chart has its caption -------------


def md(text: str) -> str:
    """User text made inert for st.markdown: every ASCII punctuation mark backslash-escaped
    (so no emphasis, links, HTML, LaTeX `$` or `:color[...]` directives), newlines flattened."""
    return "".join("\\" + ch if ch in string.punctuation else ch for ch in " ".join(text.split()))


def shape(t: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, t)) + "]"


def code(*lines: tuple[str, str]) -> None:
    """A Python block of (statement, comment) pairs with the comments aligned."""
    width = max((len(stmt) for stmt, note in lines if note), default=0)
    st.code("\n".join(f"{stmt.ljust(width)}  # {note}" if note else stmt for stmt, note in lines), language="python")


def chart(spec: dict, caption: str, *, width: str = "stretch") -> None:
    """A cached Vega-Lite spec, in Streamlit's theme (light or dark), with its caption."""
    st.vega_lite_chart(spec, width=width, theme="streamlit", alt=plain_text(caption))
    st.caption(caption)


def table(data: pa.Table, *, hide_index: bool = False, pinned: tuple[str, ...] = ()) -> None:
    """A numeric table: floats stay floats (4 decimals on screen, every digit on copy, sort and in
    the CSVs), formatted by the column, never turned into text. No Styler: marshalling one costs
    more than the rest of a fragment's run, so masked cells are named in captions instead."""
    config = {f.name: st.column_config.NumberColumn(format="%.4f") for f in data.schema if pa.types.is_floating(f.type)}
    for c in pinned:
        config[c] = {**config.get(c, {}), "pinned": True}
    st.dataframe(data, hide_index=hide_index, column_config=config)


def waiting(why: str) -> None:
    """Stands where a figure would be when the settings above make it impossible."""
    st.info(f"{why} This figure appears once that is fixed; the controls keep working.", icon=":material/pending:")
