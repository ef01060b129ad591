"""Chart specs of the trained-model page (pages/induction.py): plain data in, Vega-Lite dicts out.

Only charts live here; the cached calls into ``core.induction`` that produce the data are in
``ui.views.induction``, and they call these functions inside their own ``st.cache_data`` (or a
training job, whose result ui.jobs stores): each returns ``ui.charts.chart_spec`` of its chart, so
it is built once per view and a rerun neither rebuilds it nor hashes a DataFrame to find it.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from ui.charts import DIVERGING, OKABE_ITO, SEQUENTIAL, chart_spec

GREY = OKABE_ITO[7]
# Repeated positions in blue, the rest in orange, on every chart of the page.
KIND_DOMAIN = ["repeated", "other"]
KIND_RANGE = [OKABE_ITO[4], OKABE_ITO[0]]
HEAD_RANGE = [OKABE_ITO[i] for i in (0, 1, 2, 4, 5, 6, 3)]


def term_colors(names: list[str]) -> alt.Scale:
    """embed and pos in greys; heads in Okabe–Ito colours, in the order of the names."""
    heads = [n for n in names if n not in ("embed", "pos", "logit")]
    colors = {"embed": GREY, "pos": "#b0b0b0", "logit": "#808495"}
    colors.update({h: HEAD_RANGE[i % len(HEAD_RANGE)] for i, h in enumerate(heads)})
    return alt.Scale(domain=names, range=[colors[n] for n in names])


def _fit(spec: dict) -> dict:
    spec["autosize"] = {"type": "fit-x", "contains": "padding"}
    return spec


def curve_spec(curve: pd.DataFrame, ln_vocab: float, phase_step: int | None) -> dict:
    """Training curve (core.induction.train): losses on top, the best heads' scores beneath."""
    losses = curve.melt(id_vars="step", value_vars=["loss_repeat", "loss_other", "train_loss"],
                        var_name="measure", value_name="nats").dropna()
    names = {"loss_repeat": "loss on repeated positions", "loss_other": "loss on other positions",
             "train_loss": "training loss (all positions)"}
    losses["measure"] = losses["measure"].map(names)
    order = list(names.values())
    color = alt.Color("measure:N", sort=order, title=None, legend=alt.Legend(orient="bottom", labelLimit=320),
                      scale=alt.Scale(domain=order, range=[KIND_RANGE[0], KIND_RANGE[1], GREY]))
    top = alt.Chart(losses).mark_line(strokeWidth=2).encode(
        x=alt.X("step:Q", title="training step"), y=alt.Y("nats:Q", title="loss (nats)"),
        color=color, strokeDash=alt.condition(alt.datum.measure == order[2], alt.value([4, 3]), alt.value([1, 0])),
        tooltip=[alt.Tooltip("step:Q"), alt.Tooltip("measure:N"), alt.Tooltip("nats:Q", format=".4f")],
    )
    lnv = alt.Chart(pd.DataFrame({"y": [ln_vocab], "label": [f"ln V = {ln_vocab:.3f}"]})).encode(y="y:Q")
    layers = [top, lnv.mark_rule(color=GREY, strokeDash=[2, 2]),
              lnv.mark_text(align="left", dx=4, dy=-6, color=GREY).encode(text="label:N", x=alt.value(0))]
    scores = curve.melt(id_vars="step", value_vars=["prev_token_score", "induction_score"],
                        var_name="measure", value_name="score").dropna()
    snames = {"prev_token_score": "best layer-0 previous-token score", "induction_score": "best layer-1 induction score"}
    scores["measure"] = scores["measure"].map(snames)
    sorder = list(snames.values())
    bottom = alt.Chart(scores).mark_line(strokeWidth=2).encode(
        x=alt.X("step:Q", title="training step"), y=alt.Y("score:Q", title="attention score", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("measure:N", sort=sorder, title=None, legend=alt.Legend(orient="bottom", labelLimit=320),
                        scale=alt.Scale(domain=sorder, range=[OKABE_ITO[2], OKABE_ITO[6]])),
        tooltip=[alt.Tooltip("step:Q"), alt.Tooltip("measure:N"), alt.Tooltip("score:Q", format=".3f")],
    )
    blayers = [bottom]
    if phase_step is not None:
        rule = alt.Chart(pd.DataFrame({"step": [phase_step]})).mark_rule(color=GREY, strokeDash=[6, 3]).encode(
            x="step:Q", tooltip=[alt.Tooltip("step:Q", title="steepest fall of the repeated loss")])
        layers.append(rule)
        blayers.append(rule)
    # Two separate specs (losses, scores): a vconcat would not stretch to the container's width.
    return {"losses": _fit(chart_spec(alt.layer(*layers).properties(height=240))),
            "scores": _fit(chart_spec(alt.layer(*blayers).properties(height=160)))}


def sequence_loss_spec(table: pd.DataFrame, ln_vocab: float) -> dict:
    """Loss at every position of the sequence (core.induction.token_losses), repeated ones in blue."""
    df = table.dropna(subset=["loss"])
    bars = alt.Chart(df).mark_bar().encode(
        x=alt.X("position:O", title="position i (predicting the token at i + 1)", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("loss:Q", title="loss (nats)"),
        color=alt.Color("kind:N", title=None, scale=alt.Scale(domain=KIND_DOMAIN, range=KIND_RANGE),
                        legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("position:O"), alt.Tooltip("token:N"), alt.Tooltip("next:N", title="next token"),
                 alt.Tooltip("guess:N", title="top guess"), alt.Tooltip("p_next:Q", title="p(next)", format=".3f"),
                 alt.Tooltip("loss:Q", format=".4f"), alt.Tooltip("kind:N")],
    )
    rule = alt.Chart(pd.DataFrame({"y": [ln_vocab]})).mark_rule(color=GREY, strokeDash=[2, 2]).encode(
        y="y:Q", tooltip=[alt.Tooltip("y:Q", title="ln V (uniform guess)", format=".4f")])
    text = alt.Chart(df).mark_text(dy=-6, fontSize=10).encode(
        x="position:O", y="loss:Q", text="next:N", color=alt.value("#808495"))
    return chart_spec(alt.layer(bars, rule, text).properties(height=240))


def patterns_spec(long: pd.DataFrame, labels: list[str], n_heads: int, cell_text: bool) -> dict:
    """Every head's pattern [S, S] (core.attention.multi_head_attention's ``pattern``), a grid of
    layer × head, query rows and key columns, on one colour scale 0–1."""
    rows = []
    # Two panels side by side fit the page's column (about 760 px); more heads wrap to further rows.
    per_row = 2
    px = max(6, min(18, 330 // max(1, len(labels))))
    for l in range(2):
        panels = []
        for h in range(n_heads):
            d = long[(long["layer"] == l) & (long["head"] == h)]
            base = alt.Chart(d, title=f"L{l}H{h}").encode(
                x=alt.X("key:O", sort=labels, title="key (position:token)", axis=alt.Axis(labelAngle=-90, labelFontSize=8)),
                y=alt.Y("query:O", sort=labels, title="query", axis=alt.Axis(labelFontSize=8)),
            )
            rect = base.mark_rect().encode(
                color=alt.Color("weight:Q", scale=alt.Scale(scheme=SEQUENTIAL, domain=[0, 1]), title="attention"),
                tooltip=[alt.Tooltip("query:O"), alt.Tooltip("key:O"), alt.Tooltip("weight:Q", format=".4f")],
            )
            layer = rect
            if cell_text:
                layer = rect + base.mark_text(fontSize=8).encode(
                    text=alt.Text("weight:Q", format=".1f"),
                    color=alt.condition(alt.datum.weight > 0.5, alt.value("black"), alt.value("white")),
                )
            panels.append(layer.properties(width=px * len(labels), height=px * len(labels)))
        for i in range(0, len(panels), per_row):
            rows.append(alt.hconcat(*panels[i:i + per_row]))
    return chart_spec(alt.vconcat(*rows))


def waterfall_spec(terms: pd.DataFrame, logit: float, label: str) -> dict:
    """The logit as a running sum of its terms (core.induction.logit_terms), then the model's logit."""
    steps = terms.copy()
    steps["after"] = steps["value"].cumsum()
    steps["before"] = steps["after"] - steps["value"]
    names = list(steps["term"]) + ["logit"]
    x = alt.X("term:N", sort=names, title=None, axis=alt.Axis(labelAngle=0))
    color = alt.Color("term:N", scale=term_colors(names), legend=None)
    bars = alt.Chart(steps).mark_bar(size=28).encode(
        x=x, y=alt.Y("before:Q", title=label), y2="after:Q", color=color,
        tooltip=[alt.Tooltip("term:N"), alt.Tooltip("value:Q", title="term", format=".6f"),
                 alt.Tooltip("after:Q", title="running total", format=".6f")],
    )
    links = steps.assign(next=list(steps["term"][1:]) + ["logit"])
    path = alt.Chart(links).mark_rule(strokeDash=[4, 3], color=GREY).encode(x=x, x2="next:N", y="after:Q")
    final = alt.Chart(pd.DataFrame({"term": ["logit"], "value": [logit]})).mark_bar(
        size=28, filled=False, strokeWidth=2.5).encode(
        x=x, y="value:Q", y2=alt.datum(0), color=color,
        tooltip=[alt.Tooltip("term:N", title="the model's"), alt.Tooltip("value:Q", format=".9f")])
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color=GREY, opacity=0.6).encode(y="y:Q")
    return chart_spec(alt.layer(zero, bars, path, final).properties(height=320))


def ablation_spec(table: pd.DataFrame, mode: str, ln_vocab: float) -> dict:
    """Loss with each set of heads removed (core.induction.ablation_table), repeated and other positions."""
    long = table.melt(id_vars=["removed"], value_vars=[f"loss_repeat_{mode}", f"loss_other_{mode}"],
                      var_name="kind", value_name="loss")
    long["kind"] = long["kind"].map({f"loss_repeat_{mode}": "repeated", f"loss_other_{mode}": "other"})
    order = list(table["removed"])
    bars = alt.Chart(long).mark_bar().encode(
        y=alt.Y("removed:N", sort=order, title=None),
        yOffset=alt.YOffset("kind:N", sort=KIND_DOMAIN),
        x=alt.X("loss:Q", title=f"loss (nats), {mode} ablation"),
        color=alt.Color("kind:N", title=None, scale=alt.Scale(domain=KIND_DOMAIN, range=KIND_RANGE),
                        legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("removed:N"), alt.Tooltip("kind:N"), alt.Tooltip("loss:Q", format=".4f")],
    )
    rule = alt.Chart(pd.DataFrame({"x": [ln_vocab]})).mark_rule(color=GREY, strokeDash=[2, 2]).encode(
        x="x:Q", tooltip=[alt.Tooltip("x:Q", title="ln V", format=".4f")])
    return chart_spec(alt.layer(bars, rule).properties(height=44 * len(order) + 40))


def composition_spec(long: pd.DataFrame, baseline: float) -> dict:
    """Q-, K-, V-composition scores (core.induction.composition_scores), one panel each."""
    hi = float(max(long["score"].max(), baseline * 2))
    panels = []
    for kind in ("Q", "K", "V"):
        d = long[long["kind"] == kind]
        base = alt.Chart(d, title=f"{kind}-composition").encode(
            x=alt.X("layer-1 head:N", title="layer-1 head (reads)"), y=alt.Y("layer-0 head:N", title="layer-0 head (writes)"))
        rect = base.mark_rect().encode(
            color=alt.Color("score:Q", scale=alt.Scale(scheme=SEQUENTIAL, domain=[0, hi]), title="score"),
            tooltip=[alt.Tooltip("layer-0 head:N"), alt.Tooltip("layer-1 head:N"), alt.Tooltip("score:Q", format=".4f"),
                     alt.Tooltip("score minus baseline:Q", format="+.4f")],
        )
        text = base.mark_text(fontSize=13).encode(
            text=alt.Text("score:Q", format=".3f"),
            color=alt.condition(alt.datum.score > hi / 2, alt.value("black"), alt.value("white")))
        panels.append((rect + text).properties(width=170, height=40 * d["layer-0 head"].nunique() + 20))
    return chart_spec(alt.hconcat(*panels))


def qk_path_spec(matrix: np.ndarray, alphabet: str, src: str, dst: str) -> dict:
    """The token-by-token K-composition path (core.induction.qk_path), query token × key's previous token."""
    V = matrix.shape[0]
    q, k = np.meshgrid(np.arange(V), np.arange(V), indexing="ij")
    df = pd.DataFrame({"query token": [alphabet[i] for i in q.ravel()], "previous token of the key": [alphabet[j] for j in k.ravel()],
                       "score": matrix.ravel()})
    order = list(alphabet[:V])
    chart = alt.Chart(df).mark_rect().encode(
        x=alt.X("previous token of the key:O", sort=order, axis=alt.Axis(labelAngle=0, labelFontSize=9),
                title=f"token that {src} moved into the key (the key's previous token)"),
        y=alt.Y("query token:O", sort=order, axis=alt.Axis(labelFontSize=9), title=f"query token at {dst}"),
        color=alt.Color("score:Q", scale=alt.Scale(scheme=DIVERGING, domainMid=0), title="score"),
        tooltip=[alt.Tooltip("query token:N"), alt.Tooltip("previous token of the key:N"), alt.Tooltip("score:Q", format=".3f")],
    ).properties(height=11 * V, width=11 * V)
    return chart_spec(chart)
