"""Figures of the trained-model page (pages/induction.py): plain data in, Vega-Lite dicts out.

Every number drawn comes from ``core.induction``; each function is cached with ``st.cache_data``
on plain data (DataFrames, lists, numbers) and returns ``ui.charts.chart_spec`` of its chart, so
a rerun skips Altair's validation.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
import torch

from core import induction as ind
from ui.charts import DIVERGING, OKABE_ITO, SEQUENTIAL, chart_spec

CACHE_ENTRIES = 32
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


@st.cache_data(show_spinner=False, max_entries=CACHE_ENTRIES)
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


@st.cache_data(show_spinner=False, max_entries=CACHE_ENTRIES)
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


@st.cache_data(show_spinner=False, max_entries=CACHE_ENTRIES)
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


@st.cache_data(show_spinner=False, max_entries=CACHE_ENTRIES)
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


@st.cache_data(show_spinner=False, max_entries=CACHE_ENTRIES)
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


@st.cache_data(show_spinner=False, max_entries=CACHE_ENTRIES)
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


@st.cache_data(show_spinner=False, max_entries=CACHE_ENTRIES)
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


# ---- cached views: plain arguments in, plain data out (everything computed by core.induction) -------

@st.cache_data(show_spinner=False, max_entries=1)
def shipped() -> dict:
    """The shipped state dict as numpy arrays, its JSON and its size (core.induction.load)."""
    model, meta = ind.load()
    return {"state": {k: v.numpy() for k, v in model.state_dict().items()}, "meta": meta, "size": model.size}


def shipped_model() -> ind.InductionModel:
    return ind.InductionModel.from_state_dict(shipped()["state"])


@st.cache_data(show_spinner=False, max_entries=64)
def sequence_view(seed: int, text: str) -> dict:
    """The sequence (typed, or seeded random), the model's guesses, losses, patterns and scores."""
    model = shipped_model()
    cfg = ind.Config(n_heads=model.n_heads)
    problems: list[str] = []
    generated = None
    if text.strip():
        ids, problems = ind.parse_sequence(text, model.d_vocab, model.n_ctx)
        if len(ids) < 2:
            problems.append(f"Showing the random sequence of seed {seed} instead.")
            ids = None
    else:
        ids = None
    if ids is None:
        generated = ind.sample_sequence(seed, cfg)
        ids = generated.tokens[0].tolist()
    tokens = torch.tensor([ids])  # [1, n]
    with torch.no_grad():
        r = ind.run(model, tokens)
    n = len(ids)
    repeat = (generated.repeat if generated is not None else ind.repeat_mask(tokens))[0].tolist()  # [n-1]
    per = ind.token_losses(r.logits, tokens)[0].tolist()  # [n-1]
    probs = r.logits[0].softmax(-1)  # [n, V]
    top = probs.topk(3, dim=-1)
    rows = []
    for i in range(n):
        rows.append({
            "position": i, "token": ind.ALPHABET[ids[i]], "id": ids[i],
            "next": ind.ALPHABET[ids[i + 1]] if i + 1 < n else None,
            "guess": ind.ALPHABET[int(top.indices[i, 0])],
            "p_guess": float(top.values[i, 0]),
            "top3": " ".join(f"{ind.ALPHABET[int(j)]} {float(p):.2f}" for j, p in zip(top.indices[i], top.values[i])),
            "p_next": float(probs[i, ids[i + 1]]) if i + 1 < n else None,
            "loss": per[i] if i + 1 < n else None,
            "kind": ("repeated" if repeat[i] else "other") if i + 1 < n else None,
        })
    table = pd.DataFrame(rows)
    labels = [f"{i}:{ind.ALPHABET[t]}" for i, t in enumerate(ids)]
    long = []
    qi, kj = np.tril_indices(n)
    for l, trace in enumerate(r.traces):
        pat = trace.pattern[0].numpy()  # [H, n, n]
        for h in range(model.n_heads):
            long.append(pd.DataFrame({"layer": l, "head": h, "query": [labels[i] for i in qi],
                                      "key": [labels[j] for j in kj], "weight": pat[h, qi, kj]}))
    prev, _ = ind.prev_token_scores(r.traces[0].pattern)
    seq_ind, n_scored = ind.sequence_induction_scores(r.traces[1].pattern, tokens)
    seq_prev1, _ = ind.prev_token_scores(r.traces[1].pattern)
    seq_ind0, _ = ind.sequence_induction_scores(r.traces[0].pattern, tokens)
    scores = pd.DataFrame({
        "head": [ind.head_label(l, h) for l, h in ind.all_heads(model.n_heads)],
        "previous-token score": list(prev) + list(seq_prev1),
        "induction score": list(seq_ind0) + list(seq_ind),
    })
    mask = np.array(repeat, dtype=bool)
    losses = np.array(per)
    return {
        "ids": ids, "text": ind.to_text(ids), "problems": problems,
        "table": table, "labels": labels, "patterns": pd.concat(long, ignore_index=True), "scores": scores,
        "n_scored": n_scored,
        "loss_repeat": float(losses[mask].mean()) if mask.any() else float("nan"),
        "loss_other": float(losses[~mask].mean()) if (~mask).any() else float("nan"),
        "n_repeat": int(mask.sum()), "repeat_positions": [i for i, m in enumerate(repeat) if m],
        "copy": ({"start": int(generated.start[0]), "length": int(generated.length[0]),
                  "offset": int(generated.offset[0])} if generated is not None else None),
    }


@st.cache_data(show_spinner=False, max_entries=128)
def terms_view(seed: int, text: str, position: int) -> dict:
    """core.induction.logit_terms at one position of the sequence above (float64)."""
    ids = sequence_view(seed, text)["ids"]
    return ind.logit_terms(shipped_model(), torch.tensor([ids]), position)


def ablation_sets(metrics: dict, n_heads: int, chosen: list[tuple[int, int]]) -> dict[str, list[tuple[int, int]]]:
    """The sets of heads the ablation table removes: none, each head, the named heads, the reader's."""
    sets = {"nothing": []}
    sets.update({ind.head_label(l, h): [(l, h)] for l, h in ind.all_heads(n_heads)})
    sets["the induction heads"] = ind.parse_ablate(",".join(metrics["induction_heads"]), n_heads)[0]
    sets["all of layer 0"] = [(0, h) for h in range(n_heads)]
    if chosen:
        sets[f"your choice: {ind.format_ablate(chosen)}"] = chosen
    return sets


@st.cache_data(show_spinner="Removing heads on 512 fresh sequences…", max_entries=32)
def ablation_view(chosen: str) -> pd.DataFrame:
    """core.induction.ablation_table for the standard sets plus the reader's (canonical ``l.h`` list)."""
    model = shipped_model()
    heads, _ = ind.parse_ablate(chosen, model.n_heads)
    return ind.ablation_table(model, ablation_sets(shipped()["meta"]["metrics"], model.n_heads, heads))


@st.cache_data(show_spinner=False, max_entries=1)
def composition_view() -> dict:
    """Composition scores for every pair, and the QK path of the pair the metrics single out."""
    model = shipped_model()
    comp = ind.composition_scores(model)
    metrics = shipped()["meta"]["metrics"]
    src, dst = int(metrics["prev_token_head"][3:]), int(metrics["induction_head"][3:])
    path = ind.qk_path(model, src, dst)
    return {"long": ind.composition_frame(comp), "baseline": comp["baseline"], "baseline_std": comp["baseline_std"],
            "path": path, "src": ind.head_label(0, src), "dst": ind.head_label(1, dst),
            "k_pair": float(comp["scores"]["K"][src, dst])}


class NotTrained(LookupError):
    """No run with these settings is in this server's cache; only a button press trains one."""


@st.cache_data(show_spinner=False, max_entries=16)
def trained_run(seed: int, heads: int, steps: int, _fresh: dict | None = None) -> dict:
    """A finished training run per setting, shared by every session of this server.

    Called without ``_fresh`` (on every page run) it only looks the setting up: a miss raises
    NotTrained, which st.cache_data does not store, so a shared link never starts a training.
    After a button press the page trains and calls it with the result, which is then stored.
    """
    if _fresh is None:
        raise NotTrained((seed, heads, steps))
    return _fresh


def train_and_store(seed: int, heads: int, steps: int, progress) -> dict:
    """Train under core.induction.exclusive (raises Busy), evaluate, and store the plain result."""
    cfg = ind.Config(seed=seed, n_heads=heads, steps=steps)
    with ind.exclusive():
        result = ind.train(cfg, progress)
        metrics = ind.evaluate(result.model, cfg)
    fresh = {"metrics": metrics, "curve": result.curve, "seconds": result.seconds, "cpu_seconds": result.cpu_seconds,
             "phase": ind.phase_change(result.curve)}
    return trained_run(seed, heads, steps, _fresh=fresh)
