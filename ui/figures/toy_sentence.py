"""Chart specs of the sentence page (pages/toy-sentence.py): plain data in, a Vega-Lite dict out.

One function per figure. The cached views in ``ui/views/toy_sentence.py`` call them once per
setting, inside ``st.cache_data`` (``ui.charts.chart_spec``), so a rerun skips Altair's validation.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from ui.charts import DIVERGING, OKABE_ITO, SEQUENTIAL, chart_spec, heatmap

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


def _panel_name(h: int, group_size: int = 1) -> str:
    """A panel's title: "head 2", or with shared keys and values "head 2 · K/V 1" (group h // G)."""
    return f"head {h}" if group_size == 1 else f"head {h} · K/V {h // group_size}"


def _panel_names(n_heads: int, group_size: int = 1) -> list[str]:
    return [_panel_name(h, group_size) for h in range(n_heads)]


def embeddings_spec(wide: pd.DataFrame, labels: list[str], ids: list[int]) -> dict:
    """X [S, D] as a diverging heatmap, a row per token (``core.toy_sentence.embed``)."""
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


def _weights_data(long: pd.DataFrame, group_size: int = 1) -> pd.DataFrame:
    """``core.toy_sentence.weights_long`` plus the tooltip texts (a masked cell's weight is 0, said in words)."""
    return long[["head", "query", "key", "weight", "raw_score", "masked"]].assign(
        weight_text=[("0 (masked: a later token)" if m else f"{w:.6f}") for w, m in zip(long["weight"], long["masked"])],
        score_text=[("−∞ (masked)" if m else f"{s:.4f}") for s, m in zip(long["score"], long["masked"])],
        panel=[_panel_name(h, group_size) for h in long["head"]],
    )


def weights_overview_spec(long: pd.DataFrame, labels: list[str], causal: bool, n_heads: int, group_size: int = 1) -> dict:
    """Every head's weights as small multiples, one panel per head, on one colour scale; with
    shared keys and values each panel names the K/V group its head reads."""
    S = len(labels)
    cell = CELL_PX if S <= CELL_TEXT_MAX_TOKENS else SMALL_CELL_PX[0] if S <= 14 else SMALL_CELL_PX[1]
    side = cell * S
    columns = max(1, min(n_heads, PANEL_ROW_PX // (side + PANEL_GAP_PX)))
    layers = _weights_layers(labels, causal, cell_text=False, axis_titles=False)
    chart = alt.layer(*layers, data=_weights_data(long, group_size)).properties(width=side, height=side).facet(
        facet=alt.Facet("panel:N", sort=_panel_names(n_heads, group_size), title=None, header=alt.Header(labelFontSize=13)),
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
    (``core.toy_sentence.score_spread``)."""
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
    row their sum z_i; columns are the head's coordinates l. Diverging at 0 (``core.toy_sentence.terms_long``)."""
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
