"""Chart specs of the *Concat versus sum* page (pages/concat-vs-sum.py): one function per figure.

Each takes plain data (the tables ``core.concat_vs_sum`` returns) and gives back a Vega-Lite dict
(``ui.charts.chart_spec``). They are called inside the page's cached calls
(``ui.views.concat_vs_sum``), whose cache keys already fix every input, so a rerun skips Altair's
validation.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from ui.charts import DIVERGING, OKABE_ITO, chart_spec, head_colors

# ---- figures ------------------------------------------------------------------------------------

MEASURES = {
    "eps": "ε (one rounding step)",
    "max_rel": "concat vs sum (max rel diff)",
    "concat_err_rel": "concat vs float64 product",
    "sum_err_rel": "sum vs float64 product",
    "layer_err_rel": "whole layer vs float64 run",
}


def precision_chart(table: pd.DataFrame) -> dict:
    """Log-scale dot chart of the precision table (``concat_vs_sum_report`` rows): a column per dtype.

    Called inside ``ui.views.concat_vs_sum.cached_report``, whose cache key already fixes every input.
    """
    order = list(table["dtype"])
    long = table.melt(id_vars="dtype", value_vars=list(MEASURES), var_name="key", value_name="value")
    long["measure"] = long["key"].map(MEASURES)
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    long = long.dropna(subset=["value"])
    long = long[long["value"] > 0][["dtype", "measure", "value"]]  # log axis: zeros live in the table
    names = list(MEASURES.values())
    chart = (
        alt.Chart(long)
        .mark_point(filled=True, size=110, opacity=0.9)
        .encode(
            x=alt.X("dtype:N", sort=order, title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("measure:N", sort=names),
            y=alt.Y("value:Q", scale=alt.Scale(type="log"), title="relative size (log scale)",
                    axis=alt.Axis(format=".0e")),
            color=alt.Color("measure:N", sort=names, title=None,
                            scale=alt.Scale(domain=names, range=[OKABE_ITO[i] for i in (0, 1, 2, 5, 4)]),
                            legend=alt.Legend(orient="bottom", columns=3)),
            shape=alt.Shape("measure:N", sort=names, title=None,
                            scale=alt.Scale(domain=names, range=["diamond", "circle", "triangle-up",
                                                                 "triangle-down", "square"])),
            tooltip=[alt.Tooltip("dtype:N"), alt.Tooltip("measure:N"), alt.Tooltip("value:Q", format=".3e")],
        )
        .properties(height=320)
    )
    return chart_spec(chart)


def waterfall_chart(steps: pd.DataFrame, concat: float, sum_: float, heads: int, token: int, coord: int) -> dict:
    """Head terms stacked into the total (``waterfall``'s table), then the two paths' results.

    Called inside ``ui.views.concat_vs_sum.cached_waterfall``, whose cache key already fixes every input.
    """
    totals = pd.DataFrame({"head": ["sum path", "concat path"], "value": [sum_, concat]})
    x = alt.X("head:N", sort=list(steps["head"]) + list(totals["head"]), title=None, axis=alt.Axis(labelAngle=0))
    bars = alt.Chart(steps).mark_bar(size=26).encode(
        x=x,
        y=alt.Y("running total before:Q", title=f"out[s={token}, j={coord}]"),
        y2="running total after:Q",
        color=alt.Color("head:N", scale=head_colors(heads), legend=None),
        tooltip=[alt.Tooltip("head:N"), alt.Tooltip("term:Q", format=".6e"),
                 alt.Tooltip("running total before:Q", format=".6e"),
                 alt.Tooltip("running total after:Q", format=".6e")],
    )
    # Dashed connectors carry the running total from each bar to the next, as in any waterfall.
    links = steps.assign(next=list(steps["head"][1:]) + ["sum path"])
    path = alt.Chart(links).mark_rule(strokeDash=[4, 3], color=OKABE_ITO[7], strokeWidth=1.5).encode(
        x=x, x2="next:N", y="running total after:Q",
        tooltip=[alt.Tooltip("head:N", title="after"), alt.Tooltip("running total after:Q", format=".6e")],
    )
    finals = alt.Chart(totals).mark_bar(size=26, filled=False, strokeWidth=2.5).encode(
        x=x, y=alt.Y("value:Q"), y2=alt.datum(0),
        tooltip=[alt.Tooltip("head:N", title="result"), alt.Tooltip("value:Q", format=".9e")],
    )
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color=OKABE_ITO[7], opacity=0.6).encode(y="y:Q")
    return chart_spec((zero + bars + path + finals).properties(height=340))


RIGHT, WRONG = "transpose, then reshape", "reshape alone"


def reshape_chart(origin: pd.DataFrame, heads: int) -> dict:
    """The first tokens' concatenated vectors as rows of L-wide blocks, built right and wrong.

    Colour = the head a block came from, label = the token it came from (``reshape_origin``):
    built right, every row is one token in all H colours; built wrong, one colour runs across
    tokens. One chart (not a facet) so that it takes the page's width.
    """
    long = pd.concat([
        pd.DataFrame({"build": name, "token s": origin["token s"], "block c": origin["block c"],
                      "head": "h" + origin[f"{version}: head"].astype(str),
                      "from token": origin[f"{version}: token"],
                      "first number": origin[f"{version}: first number"]})
        for version, name in (("right", RIGHT), ("wrong", WRONG))
    ], ignore_index=True)
    long["row"] = long["build"] + ": row " + long["token s"].astype(str)
    long["label"] = "s" + long["from token"].astype(str)
    # Black ink reads on every head colour but the dark blue (Okabe–Ito #0072B2), which takes white.
    scale = head_colors(heads)
    colour_of = dict(zip(scale.domain, scale.range))
    long["ink"] = ["white" if colour_of[h] == "#0072B2" else "black" for h in long["head"]]
    rows = [f"{build}: row {t}" for build in (RIGHT, WRONG) for t in sorted(origin["token s"].unique())]
    base = alt.Chart(long).encode(
        x=alt.X("block c:O", title="block c of the concatenated vector (its entries c·L … c·L+L−1)",
                axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("row:N", sort=rows, title=None, axis=alt.Axis(labelLimit=260)),
    )
    tips = [alt.Tooltip("build:N"), alt.Tooltip("token s:Q", title="row (token s)"), alt.Tooltip("block c:Q"),
            alt.Tooltip("head:N", title="came from head"), alt.Tooltip("from token:Q", title="came from token"),
            alt.Tooltip("first number:Q", format=".6f")]
    legend = alt.Legend(orient="bottom", columns=min(heads, 8), symbolType="square") if heads <= 16 else None
    rect = base.mark_rect(stroke="white", strokeWidth=1.5).encode(
        color=alt.Color("head:N", scale=scale, title="came from head", legend=legend), tooltip=tips,
    )
    text = base.mark_text(fontSize=12).encode(text="label:N", color=alt.Color("ink:N", scale=None), tooltip=tips)
    # "fit-x": stretch to the page's width but keep the given height for the rows.
    return chart_spec((rect + text).properties(
        height=28 * len(rows), autosize=alt.AutoSizeParams(type="fit-x", contains="padding")))


def w_o_chart(cells: pd.DataFrame, heads: int, *, transposed: bool) -> dict:
    """W_O's sampled entries (``w_o_layouts``) as a heatmap with a strip coloured by head.

    Rows i = h·L + l down and output coordinates j across (TransformerLens, ``transposed=False``),
    or the transpose (``out_proj.weight`` of nn.Linear, and the paper). Called inside
    ``ui.views.concat_vs_sum.cached_layouts``.
    """
    cells = cells.assign(row=lambda d: d["i"].astype(str), col=lambda d: d["j"].astype(str))
    rows = [str(i) for i in sorted(cells["i"].unique())]
    cols = [str(j) for j in sorted(cells["j"].unique())]
    head_starts = [str(i) for i in cells.groupby("head", sort=False)["i"].min()]
    col_ticks = cols[:: max(1, len(cols) // 6)]
    strip = cells.drop_duplicates("i")[["head", "l", "i", "row"]].assign(col="head")
    value_color = alt.Color("value:Q", scale=alt.Scale(scheme=DIVERGING, domainMid=0), title="weight",
                            legend=alt.Legend(orient="right", gradientLength=120))
    legend = alt.Legend(orient="bottom", columns=min(heads, 4), symbolType="square") if heads <= 16 else None
    head_color = alt.Color("head:N", scale=head_colors(heads), title="head", legend=legend)
    tips = [alt.Tooltip("head:N"), alt.Tooltip("l:Q", title="row within the head, l"),
            alt.Tooltip("i:Q", title="i = h·L + l (row of W_O flat, column of out_proj.weight)"),
            alt.Tooltip("j:Q", title="output coordinate j"), alt.Tooltip("value:Q", format=".6f")]
    strip_tips = [alt.Tooltip("head:N"), alt.Tooltip("l:Q"), alt.Tooltip("i:Q")]
    height = max(240, min(520, 9 * len(rows)))
    j_domain = ["head"] + cols  # output coordinates, with the head strip as one extra band
    i_enc = dict(shorthand="row:O", sort=rows, scale=alt.Scale(domain=rows))
    j_enc = dict(shorthand="col:O", sort=j_domain, scale=alt.Scale(domain=j_domain))
    i_axis = dict(title="column i = h·L + l" if transposed else "row i = h·L + l",
                  axis=alt.Axis(values=head_starts, **({"labelAngle": 0} if transposed else {})))
    j_axis = dict(title="output coordinate j",
                  axis=alt.Axis(values=["head"] + col_ticks, **({} if transposed else {"labelAngle": 0})))
    i_ch, j_ch = (alt.X, alt.Y) if transposed else (alt.Y, alt.X)
    chart = alt.layer(
        alt.Chart(cells[["head", "l", "i", "j", "value", "row", "col"]]).mark_rect().encode(
            i_ch(**i_enc, **i_axis), j_ch(**j_enc, **j_axis), color=value_color, tooltip=tips,
        ),
        alt.Chart(strip).mark_rect().encode(i_ch(**i_enc), j_ch(**j_enc), color=head_color, tooltip=strip_tips),
    ).resolve_scale(color="independent").properties(height=height)
    return chart_spec(chart)
