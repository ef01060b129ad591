"""Chart specs of the shape-table page (pages/shapes.py): plain data in, a Vega-Lite dict out.

One function per figure: the path as boxes and arrows (``flow_spec``), the KV cache with and
without shared keys and values (``kv_cache_spec``), what each ending keeps in memory
(``endings_spec``) and one step's real values (``step_heatmap_spec``). The cached views in
``ui/views/shapes.py`` call them once per setting, so a rerun skips Altair's validation.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from ui.charts import DIVERGING, OKABE_ITO, SEQUENTIAL, chart_spec
from ui.format import number, plain_shape, size_bytes

# Okabe–Ito grey, blue and vermillion, named rather than indexed: distinct under every common
# colour-vision deficiency and solid enough to carry text on either theme.
ENDING_COLORS = {"shared": OKABE_ITO[7], "concat": OKABE_ITO[4], "additive": OKABE_ITO[5]}
INK = {"shared": "black", "concat": "white", "additive": "black"}  # legible on each box colour
LABEL_GREY = "#808080"  # about 4.3:1 against both the light and the dark background
ENDING_NAMES = {"shared": "shared", "concat": "concatenate, then project", "additive": "project, then add"}



# ---- the path as a picture -------------------------------------------------------------------

# Where each step's box sits (x across, y down); edges bend at right angles. "@" is a matrix
# product, as in the code; "×" only ever separates the axes of a shape.
NODES = {
    "ids": (0.0, 0, "token ids"), "1": (0.0, 1, "① one-hot"), "2": (0.0, 2, "② @ W_E"),
    "3": (0.0, 3, "③ + W_pos"), "4": (0.0, 4, "④ x to q, k, v"),
    "5Q": (-1.0, 5, "⑤a x @ W_Q"), "5K": (0.0, 5, "⑤b x @ W_K"), "5V": (1.0, 5, "⑤b x @ W_V"),
    "5cK": (0.0, 6, "⑤c share k"), "5cV": (1.0, 6, "⑤c share v"),
    "6": (-0.5, 7, "⑥ q @ kᵀ / √L"), "7": (0.0, 8, "⑦ pattern @ v"),
    "8": (-0.8, 9, "⑧ concatenate"), "9": (-0.8, 10, "⑨ @ W_O"),
    "8′": (0.8, 9, "⑧′ z[h] @ W_O[h]"), "9′": (0.8, 10, "⑨′ Σ over heads"), "out": (0.0, 11, "output"),
}
NODE_STEP = {"5Q": "5a", "5K": "5b", "5V": "5b", "5cK": "5c", "5cV": "5c", "ids": None, "out": None}
INTO = {("5Q", "6"): -0.15, ("5cK", "6"): 0.15, ("6", "7"): -0.15, ("5cV", "7"): 0.15,
        ("9", "out"): -0.15, ("9′", "out"): 0.15}
HALF_W, HALF_H = 0.42, 0.21


def flow_spec(edges: pd.DataFrame, table: pd.DataFrame) -> dict:
    """The path as boxes and arrows (``core.shapes.flow_edges``): a Vega-Lite dict."""
    by = table.set_index("step")
    node_rows = []
    for key, (x, y, label) in NODES.items():
        step = NODE_STEP.get(key, key)
        r = by.loc[step] if step is not None else None
        node_rows.append({
            "node": key, "label": label, "x": x - HALF_W, "x2": x + HALF_W, "y": y - HALF_H, "y2": y + HALF_H,
            "cx": x, "cy": y, "ending": "shared" if r is None else r["ending"],
            "operation": "input" if r is None and key == "ids" else ("result" if r is None else r["operation"]),
            "code": "" if r is None else r["code"], "FLOPs": "" if r is None else number(r["flops"]),
        })
    nodes = pd.DataFrame(node_rows)
    points, labels = [], []
    seen = set()
    for i, e in edges.iterrows():
        (x1, y1, _), (x2, y2, _) = NODES[e["from"]], NODES[e["to"]]
        x2 += INTO.get((e["from"], e["to"]), 0.0)
        bend = y2 - 0.32  # turn corners low, so the shape label above stays clear of lines
        path = [(x1, y1 + HALF_H), (x1, bend), (x2, bend), (x2, y2 - HALF_H - 0.07)]
        info = {"edge": i, "tensor": e["tensor"], "shape": f"{e['shape_sym']} = {plain_shape(e['shape'])}",
                "elements": int(e["elements"]), "memory": size_bytes(e["bytes"]), "bytes": int(e["bytes"]),
                "ending": e["ending"]}
        points += [{**info, "corner": k, "x": px, "y": py} for k, (px, py) in enumerate(path)]
        if (e["from"], e["tensor"]) not in seen:  # one label per tensor leaving a box
            seen.add((e["from"], e["tensor"]))
            labels.append({**info, "x": x1, "y": y1 + HALF_H + 0.17,
                           "text": f"{e['shape_sym']} = {'×'.join(number(v) for v in e['shape'])}"})
    points, labels = pd.DataFrame(points), pd.DataFrame(labels)
    heads = points[points["corner"] == 3]

    x_scale = alt.Scale(domain=[-1.5, 2.3])
    y_scale = alt.Scale(domain=[-0.5, 11.5], reverse=True)
    c_scale = alt.Scale(domain=list(ENDING_COLORS), range=list(ENDING_COLORS.values()))
    x, y = alt.X("x:Q", axis=None, scale=x_scale), alt.Y("y:Q", axis=None, scale=y_scale)
    color = alt.Color("ending:N", title="ending", scale=c_scale, legend=alt.Legend(orient="top", labelExpr=(
        "datum.label == 'concat' ? 'concatenate, then project' : datum.label == 'additive' ? "
        "'project, then add' : 'shared'")))
    tip = [alt.Tooltip("tensor:N"), alt.Tooltip("shape:N"), alt.Tooltip("elements:Q", format=","),
           alt.Tooltip("memory:N"), alt.Tooltip("bytes:Q", format=",")]
    lines = alt.Chart(points).mark_line(strokeCap="round", strokeJoin="round").encode(
        x=x, y=y, detail="edge:N", order="corner:O", color=color, tooltip=tip,
        strokeWidth=alt.StrokeWidth("bytes:Q", scale=alt.Scale(type="log", range=[1.2, 9]), legend=None),
    )
    arrows = alt.Chart(heads).mark_point(shape="triangle-down", filled=True, size=70, opacity=1).encode(
        x=x, y=y, color=alt.Color("ending:N", scale=c_scale, legend=None), tooltip=tip)
    # Solid boxes with ink chosen per colour, and grey shape labels: readable on light and dark themes.
    box_tip = ["label:N", "operation:N", "code:N", "FLOPs:N"]
    boxes = alt.Chart(nodes).mark_rect(cornerRadius=5).encode(
        x=alt.X("x:Q", axis=None, scale=x_scale), x2="x2:Q",
        y=alt.Y("y:Q", axis=None, scale=y_scale), y2="y2:Q",
        fill=alt.Fill("ending:N", scale=c_scale, legend=None), tooltip=box_tip,
    )
    names = alt.Chart(nodes).mark_text(fontSize=13, fontWeight="bold").encode(
        x=alt.X("cx:Q", axis=None, scale=x_scale), y=alt.Y("cy:Q", axis=None, scale=y_scale), text="label:N",
        color=alt.condition("datum.ending == 'concat'", alt.value(INK["concat"]), alt.value(INK["shared"])),
        tooltip=box_tip)
    shapes = alt.Chart(labels).mark_text(align="left", dx=7, fontSize=11, fontWeight=500, color=LABEL_GREY).encode(
        x=x, y=y, text="text:N", tooltip=tip)
    return chart_spec(alt.layer(lines, arrows, boxes, names, shapes).properties(height=790).configure_view(stroke=None))


# ---- the KV cache -----------------------------------------------------------------------------

KV_COLORS = {"shared": OKABE_ITO[4], "plain": OKABE_ITO[0]}  # Okabe–Ito blue and orange


def kv_cache_spec(rows: pd.DataFrame, dtype: str) -> dict:
    """The KV cache at the chosen context, with the keys and values shared as set and without
    (``rows``: ``core.shapes.kv_rows``): one bar each, the byte count written beside it. The axis
    counts in the binary unit of the larger bar (KiB, MiB, GiB, …), as the page's sentences do."""
    largest = float(rows["bytes"].max())
    unit, scale = next(((u, 1024.0**i) for i, u in reversed(list(enumerate(
        ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")))) if largest >= 1024.0**i), ("bytes", 1.0))
    data = rows.assign(memory=rows["bytes"].map(size_bytes), per_token=rows["bytes per token"].map(size_bytes),
                       amount=rows["bytes"].astype(float) / scale, bytes=rows["bytes"].astype(float),
                       kind=["shared", "plain"][: len(rows)])
    base = alt.Chart(data).encode(
        y=alt.Y("attention:N", title=None, sort=None, axis=alt.Axis(labelLimit=260)),
        x=alt.X("amount:Q", title=f"{unit} of keys and values kept, {dtype}",
                scale=alt.Scale(domain=[0, largest / scale * 1.2], nice=False),
                axis=alt.Axis(grid=False, tickCount=5)),
        tooltip=[alt.Tooltip("attention:N"), alt.Tooltip("key/value heads:Q", format=","),
                 alt.Tooltip("per_token:N", title="per token"), alt.Tooltip("tokens:Q", format=","),
                 alt.Tooltip("sequences:Q", format=","), alt.Tooltip("memory:N"),
                 alt.Tooltip("bytes:Q", format=",")],
    )
    bars = base.mark_bar().encode(color=alt.Color("kind:N", legend=None, scale=alt.Scale(
        domain=list(KV_COLORS), range=list(KV_COLORS.values()))))
    labels = base.mark_text(align="left", dx=5, color=LABEL_GREY, fontWeight=500).encode(text="memory:N")
    return chart_spec((bars + labels).properties(height=40 * len(data) + 30))


# ---- the two endings -------------------------------------------------------------------------


def endings_spec(mem: pd.DataFrame, dtype: str) -> dict:
    """What each ending keeps in memory, step by step: bars of output bytes, one row per ending
    (``mem``: the endings' table of ``ui.views.shapes.endings_numbers``)."""
    mem = mem.assign(memory=mem["bytes"].map(size_bytes), bytes=mem["bytes"].astype(float),
                     key=mem["ending"].map({v: k for k, v in ENDING_NAMES.items()}))
    bars = alt.Chart(mem).mark_bar().encode(
        x=alt.X("bytes:Q", title=f"bytes at {dtype}"),
        y=alt.Y("tensor:N", title=None, sort=None),
        row=alt.Row("ending:N", title=None, sort=[ENDING_NAMES["concat"], ENDING_NAMES["additive"]],
                    header=alt.Header(labelAngle=0, labelAlign="left", labelFontWeight="bold")),
        color=alt.Color("key:N", legend=None, scale=alt.Scale(
            domain=["concat", "additive"], range=[ENDING_COLORS["concat"], ENDING_COLORS["additive"]])),
        tooltip=["ending:N", "tensor:N", "memory:N", alt.Tooltip("bytes:Q", format=",")],
    ).properties(height=80).resolve_scale(y="independent")
    return chart_spec(bars)


# ---- one step's real values ------------------------------------------------------------------


def step_heatmap_spec(p: dict, step: str, d_model: int, heads: int) -> dict:
    """One panel ``p`` of ``core.shapes.step_values`` as a heatmap: exact values in tooltips, masked
    entries (−∞ before the softmax) left blank, dashed lines between heads at step 8."""
    values = p["values"]  # [rows, cols], −inf where masked
    r, c = (a.ravel() for a in np.indices(values.shape))
    cells = pd.DataFrame({"r": r, "c": c, "value": np.where(np.isneginf(values), np.nan, values).ravel()})
    colors = (alt.Scale(scheme=SEQUENTIAL, domain=[0, 1]) if step == "1"  # one-hot: 0 or 1
              else alt.Scale(scheme=DIVERGING, domainMid=0))
    ticks = alt.Axis(tickMinStep=1, format="d", grid=False)
    # cell (r, c) spans r ± ½ and c ± ½, so integer ticks fall on cell centres
    rect = alt.Chart(cells).transform_calculate(
        r0="datum.r - 0.5", r1="datum.r + 0.5", c0="datum.c - 0.5", c1="datum.c + 0.5",
        note="isValid(datum.value) ? '' : '−∞ (masked)'",
    ).mark_rect().encode(
        x=alt.X("c0:Q", title=p["cols"], axis=ticks,
                scale=alt.Scale(domain=[-0.5, values.shape[1] - 0.5], nice=False, zero=False)),
        x2="c1:Q",
        y=alt.Y("r0:Q", title=p["rows"], axis=ticks,
                scale=alt.Scale(domain=[-0.5, values.shape[0] - 0.5], nice=False, zero=False, reverse=True)),
        y2="r1:Q",
        color=alt.Color("value:Q", scale=colors, legend=alt.Legend(title="value")),
        tooltip=[alt.Tooltip("r:Q", title=p["rows"]), alt.Tooltip("c:Q", title=p["cols"]),
                 alt.Tooltip("value:Q", format=".5f"), alt.Tooltip("note:N", title="note")],
    )
    layers = [rect]
    width = d_model // heads
    if step == "8" and heads > 1:  # head h owns columns hL … hL+L−1
        bounds = pd.DataFrame({"c": np.arange(width, values.shape[1], width) - 0.5})
        layers.append(alt.Chart(bounds).mark_rule(strokeDash=[5, 3], strokeWidth=2, color=LABEL_GREY).encode(x="c:Q"))
    chart = alt.layer(*layers, title=f"{p['title']}: {p['code']}").properties(
        height=min(560, 130 + 26 * values.shape[0]))  # the height includes the title and axes
    return chart_spec(chart)
