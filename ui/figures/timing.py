"""The timing page's charts (pages/timing.py): a plain table in, a Vega-Lite dict out.

The tables come from ``core.timing`` through ``ui.views.timing``: ``memory_table`` (bytes from
shapes), ``run_benchmark`` or a shipped reference run (medians and intervals over interleaved
rounds) and ``run_in_fresh_process``. Each spec is built once per input inside ``st.cache_data``
(``ui.charts.chart_spec``), so a rerun skips Altair's validation. One colour per variant on every
chart, colour-blind-safe; numbers and captions are the page's business.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core import timing
from ui.charts import OKABE_ITO, chart_spec
from ui.format import signed

# One colour per variant on every chart, from the Okabe–Ito palette (ui.charts keeps its order):
# blues for the one-GEMM forms, warm colours for the materialized sums, grey (and a dashed line)
# for the reference; yellow is left out (faint on the light theme).
ORANGE, SKY, GREEN, _YELLOW, BLUE, VERMILLION, PINK, GREY = OKABE_ITO
VARIANT_COLORS = {
    "gemm": GREY, "concat": BLUE, "einsum": SKY, "per_head_sum": VERMILLION, "per_head_sum_out": ORANGE,
    "head_loop": PINK, "broadcast": GREEN, "forward_trace": VERMILLION, "forward_mha": BLUE, "forward_sdpa": GREEN,
    # the grouped-query section's own chart: never drawn beside the projection variants
    "gqa_sdpa": BLUE, "gqa_expand": VERMILLION,
}
NEUTRAL = "#808495"  # whiskers and labels: a mid grey that reads on the light and the dark theme alike
SHAPES = ["circle", "square", "diamond", "triangle-up", "triangle-down", "cross", "triangle-right"]

SWEEP_COLUMN = {"seq": "seq", "heads": "n_heads", "batch": "batch", "d_model": "d_model"}


# ---- figures ----------------------------------------------------------------------------------


def _colors(names) -> alt.Scale:
    names = list(names)
    return alt.Scale(domain=names, range=[VARIANT_COLORS[n] for n in names])


@st.cache_data(show_spinner=False, max_entries=64)
def memory_spec(df: pd.DataFrame) -> dict:
    """Extra memory per variant in multiples of the output (core.timing.memory_table)."""
    order = list(df["variant"])
    chart = alt.Chart(df[["variant", "holds", "extra_mib", "times_output"]]).mark_bar().encode(
        x=alt.X("times_output:Q", title="extra memory, in multiples of the [B, S, D] output (symlog)",
                scale=alt.Scale(type="symlog")),
        y=alt.Y("variant:N", sort=order, title=None),
        color=alt.Color("variant:N", scale=_colors(order), legend=None),
        tooltip=[alt.Tooltip("variant:N"), alt.Tooltip("holds:N", title="holds"),
                 alt.Tooltip("extra_mib:Q", title="extra MiB", format=",.2f"),
                 alt.Tooltip("times_output:Q", title="× output", format=",.0f")],
    ).properties(height=230)
    return chart_spec(chart)


@st.cache_data(show_spinner=False, max_entries=64)
def ratio_spec(df: pd.DataFrame) -> dict:
    """Each variant's median ratio to the bare GEMM with its interval, against a rule at 1."""
    order = list(df["variant"])
    data = df[["variant", "fraction_of_gemm", "fraction_lo", "fraction_hi", "median_ms", "iqr_ms", "runs", "verdict"]].assign(
        label=[with_interval(m, lo, hi) for m, lo, hi in zip(df["fraction_of_gemm"], df["fraction_lo"], df["fraction_hi"])])
    base = alt.Chart(data).encode(y=alt.Y("variant:N", sort=order, title=None))
    tips = [alt.Tooltip("variant:N"), alt.Tooltip("fraction_of_gemm:Q", title="÷ gemm (median)", format=".3f"),
            alt.Tooltip("fraction_lo:Q", title="interval, low", format=".3f"),
            alt.Tooltip("fraction_hi:Q", title="interval, high", format=".3f"),
            alt.Tooltip("verdict:N", title="against 1"), alt.Tooltip("median_ms:Q", title="median ms", format=",.4f"),
            alt.Tooltip("iqr_ms:Q", title="IQR ms", format=",.4f"), alt.Tooltip("runs:Q", title="rounds")]
    points = base.mark_point(filled=True, size=90).encode(
        x=alt.X("fraction_of_gemm:Q", title="throughput ÷ bare GEMM's, median over rounds; whiskers: 95 % interval",
                scale=alt.Scale(zero=True)),
        color=alt.Color("variant:N", scale=_colors(order), legend=None), tooltip=tips)
    whiskers = base.mark_rule(strokeWidth=2, color=NEUTRAL).encode(x="fraction_lo:Q", x2="fraction_hi:Q", tooltip=tips)
    labels = base.mark_text(align="left", dx=8, color=NEUTRAL).encode(x="fraction_hi:Q", text="label:N")
    one = alt.Chart(pd.DataFrame({"x": [1.0]})).mark_rule(strokeDash=[4, 4], color=NEUTRAL).encode(x="x:Q")
    return chart_spec((whiskers + points + labels + one).properties(height=32 * len(df) + 40))


@st.cache_data(show_spinner=False, max_entries=64)
def sweep_spec(df: pd.DataFrame, axis: str) -> dict:
    """Median time per call against one swept size, log–log, one line per variant."""
    order = [v for v in timing.VARIANTS if v in set(df["variant"])]
    col = SWEEP_COLUMN[axis]
    tips = [alt.Tooltip("variant:N"), alt.Tooltip(f"{col}:Q", title=axis),
            alt.Tooltip("median_ms:Q", title="median ms", format=",.4f"), alt.Tooltip("iqr_ms:Q", title="IQR ms", format=",.4f"),
            alt.Tooltip("fraction_of_gemm:Q", title="÷ gemm", format=".3f"),
            alt.Tooltip("fraction_lo:Q", title="÷ gemm, low", format=".3f"),
            alt.Tooltip("fraction_hi:Q", title="÷ gemm, high", format=".3f")]
    data = df[["variant", col, "median_ms", "iqr_ms", "fraction_of_gemm", "fraction_lo", "fraction_hi"]]
    chart = alt.Chart(data).mark_line(point=alt.OverlayMarkDef(size=60, filled=True)).encode(
        x=alt.X(f"{col}:Q", scale=alt.Scale(type="log", base=2), title=f"{axis} (log scale)",
                axis=alt.Axis(values=sorted(set(data[col])), format="d")),
        y=alt.Y("median_ms:Q", scale=alt.Scale(type="log"), title="median time per call, ms (log scale)"),
        color=alt.Color("variant:N", scale=_colors(order), sort=order, title="variant"),
        shape=alt.Shape("variant:N", scale=alt.Scale(domain=order, range=SHAPES[: len(order)]), sort=order, title="variant"),
        strokeDash=alt.condition(alt.datum.variant == "gemm", alt.value([6, 4]), alt.value([1, 0])),
        tooltip=tips,
    ).properties(height=380)
    return chart_spec(chart)


@st.cache_data(show_spinner=False, max_entries=32)
def gqa_spec(df: pd.DataFrame) -> dict:
    """Each grouped variant's time ÷ the unshared layer's (core.timing.gqa_comparison), with its
    interval, against a dashed rule at 1: the same layer without sharing."""
    order = list(df["variant"])
    data = df[["variant", "n_heads", "n_kv_heads", "ratio", "ratio_lo", "ratio_hi", "verdict"]].assign(
        label=[with_interval(m, lo, hi) + "×" for m, lo, hi in zip(df["ratio"], df["ratio_lo"], df["ratio_hi"])])
    base = alt.Chart(data).encode(y=alt.Y("variant:N", sort=order, title=None))
    tips = [alt.Tooltip("variant:N"), alt.Tooltip("n_heads:Q", title="H"), alt.Tooltip("n_kv_heads:Q", title="H_kv"),
            alt.Tooltip("ratio:Q", title="time ÷ without sharing (median)", format=".3f"),
            alt.Tooltip("ratio_lo:Q", title="interval, low", format=".3f"),
            alt.Tooltip("ratio_hi:Q", title="interval, high", format=".3f"), alt.Tooltip("verdict:N", title="against 1")]
    points = base.mark_point(filled=True, size=90).encode(
        x=alt.X("ratio:Q", title="time per call ÷ the same layer's without sharing; whiskers: 95 % interval",
                scale=alt.Scale(zero=True)),
        color=alt.Color("variant:N", scale=_colors(order), legend=None), tooltip=tips)
    whiskers = base.mark_rule(strokeWidth=2, color=NEUTRAL).encode(x="ratio_lo:Q", x2="ratio_hi:Q", tooltip=tips)
    labels = base.mark_text(align="left", dx=8, color=NEUTRAL).encode(x="ratio_hi:Q", text="label:N")
    one = alt.Chart(pd.DataFrame({"x": [1.0]})).mark_rule(strokeDash=[4, 4], color=NEUTRAL).encode(x="x:Q")
    return chart_spec((whiskers + points + labels + one).properties(height=40 * len(df) + 50))


@st.cache_data(show_spinner=False, max_entries=32)
def fresh_spec(df: pd.DataFrame) -> dict:
    """The same variants in this server process and in fresh processes, side by side."""
    settings = list(dict.fromkeys(df["process"]))
    variants = list(dict.fromkeys(df["variant"]))
    chart = alt.Chart(df[["process", "variant", "median_ms", "iqr_ms", "page_faults_per_call"]]).mark_bar().encode(
        x=alt.X("median_ms:Q", title="median time per call (ms)"),
        y=alt.Y("variant:N", sort=variants, title=None),
        yOffset=alt.YOffset("process:N", sort=settings),
        color=alt.Color("process:N", sort=settings, title="where it ran",
                        scale=alt.Scale(domain=settings, range=[BLUE, ORANGE, GREEN][: len(settings)])),
        tooltip=[alt.Tooltip("variant:N"), alt.Tooltip("process:N", title="where"),
                 alt.Tooltip("median_ms:Q", title="median ms", format=",.3f"), alt.Tooltip("iqr_ms:Q", title="IQR ms", format=",.3f"),
                 alt.Tooltip("page_faults_per_call:Q", title="page faults / call", format=",.0f")],
    ).properties(height=60 * len(variants) + 40)
    return chart_spec(chart)


def with_interval(mid: float, lo: float, hi: float, spec: str = ".2f") -> str:
    """'0.94 (0.91–0.96)': a median and its interval, as the chart labels and headlines print them."""
    def one(x: float) -> str:
        return "—" if x is None or x != x else signed(x, spec)

    return f"{one(mid)} ({one(lo)}–{one(hi)})"
