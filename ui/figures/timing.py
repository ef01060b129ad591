"""Figures, number formats and sweep planning of the timing page (pages/timing.py).

Every number comes from ``core.timing``: ``memory_table`` (bytes from shapes), ``run_benchmark``
(the measured table: medians and intervals over interleaved rounds), ``summarize`` (the
headline facts with their verdicts), ``growth`` (how each variant's time changed along a
sweep) and ``run_in_fresh_process``. Each figure is one function: a plain table in, a Vega-Lite
dict out, built once per input inside ``st.cache_data`` (``ui.charts.chart_spec``), so a rerun
skips Altair's validation.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core import timing
from ui.charts import OKABE_ITO, chart_spec
from ui.controls import MAX_BATCH, MAX_D_MODEL, MAX_HEADS, MAX_SEQ, MAX_TENSOR_ELEMENTS, budget_problem

# One colour per variant on every chart, from the Okabe–Ito palette (ui.charts keeps its order):
# blues for the one-GEMM forms, warm colours for the materialized sums, grey (and a dashed line)
# for the reference; yellow is left out (faint on the light theme).
ORANGE, SKY, GREEN, _YELLOW, BLUE, VERMILLION, PINK, GREY = OKABE_ITO
VARIANT_COLORS = {
    "gemm": GREY, "concat": BLUE, "einsum": SKY, "per_head_sum": VERMILLION, "per_head_sum_out": ORANGE,
    "head_loop": PINK, "broadcast": GREEN, "forward_trace": VERMILLION, "forward_mha": BLUE, "forward_sdpa": GREEN,
}
NEUTRAL = "#808495"  # whiskers and labels: a mid grey that reads on the light and the dark theme alike
SHAPES = ["circle", "square", "diamond", "triangle-up", "triangle-down", "cross", "triangle-right"]

MAX_SWEEP_VALUES = 6
SWEEP_DEFAULTS = {"seq": timing.DEFAULT_RUN["sweep"].partition("=")[2], "heads": "1,2,4,8,16,32",
                  "batch": "1,2,4,8,16,32", "d_model": "64,128,256,512,1024,2048"}
SWEEP_CAPS = {"seq": MAX_SEQ, "heads": MAX_HEADS, "batch": MAX_BATCH, "d_model": MAX_D_MODEL}
SWEEP_COLUMN = {"seq": "seq", "heads": "n_heads", "batch": "batch", "d_model": "d_model"}


# ---- number formats ---------------------------------------------------------------------------


def flop_text(n: float) -> str:
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if n >= scale:
            return f"{n / scale:,.3g} {unit}"
    return f"{n:,.0f} FLOP"


def fmt(x: float | None, spec: str, suffix: str = "") -> str:
    """A measured number, or a dash where the run has none (a variant skipped)."""
    return "—" if x is None or x != x else f"{x:{spec}}{suffix}"


def mib(n: float) -> str:
    return f"{n / 2**30:,.2f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB"


def short_number(v: int) -> str:
    text = str(v)
    return text if len(text) <= 12 else f"{text[:6]}… (a {len(text)}-digit number)"


def with_interval(mid: float, lo: float, hi: float, spec: str = ".2f") -> str:
    """'0.94 (0.91–0.96)': a median and its interval, as the headlines print them."""
    return f"{fmt(mid, spec)} ({fmt(lo, spec)}–{fmt(hi, spec)})"


# ---- headlines: words for core.timing.verdict ----------------------------------------------------


def ratio_sentence(name: str, facts: dict) -> str:
    """The headline about one variant's ratio to the bare GEMM, worded by its interval's verdict."""
    mid, lo, hi = (facts.get(f"{name}_fraction{s}", float("nan")) for s in ("_of_gemm", "_lo", "_hi"))
    said = with_interval(mid, lo, hi)
    return {
        "below": f"`{name}` runs at **{said}** of a bare GEMM's throughput.",
        "above": (f"`{name}` measured **{said}** of a bare GEMM: faster than the GEMM it contains, which it cannot "
                  "be. That is noise (the machine changed speed within rounds); run again."),
        "could not tell": (f"`{name}`: **{said}** of a bare GEMM. The interval includes 1, so this run could not "
                           "tell it apart from the bare GEMM."),
    }.get(facts.get(f"{name}_verdict", ""), f"`{name}` was not measured at this size.")


def per_head_sentence(facts: dict) -> str:
    said = with_interval(facts.get("per_head_sum_over_concat"), facts.get("per_head_sum_over_concat_lo"),
                         facts.get("per_head_sum_over_concat_hi"))
    return {
        "above": f"The materialized sum, `per_head_sum`, takes **{said}×** as long as `concat`.",
        "below": f"`per_head_sum` took **{said}×** as long as `concat`: less, at this size.",
        "could not tell": f"`per_head_sum` took **{said}×** as long as `concat`; this run could not tell them apart.",
    }.get(facts.get("per_head_sum_over_concat_verdict", ""), "")


def allocation_sentence(facts: dict) -> str:
    said = with_interval(facts.get("allocation_ms"), facts.get("allocation_lo"), facts.get("allocation_hi"), ".3f")
    return {
        "above": (f"Allocating its per-head results costs `per_head_sum` **{said} ms** a call: its time minus that of "
                  "the same arithmetic into buffers allocated once, `per_head_sum_out`, round by round."),
        "below": (f"Here `per_head_sum` was **{said} ms** a call *faster* than the same arithmetic into buffers "
                  "allocated once (`per_head_sum_out`): at this size, allocating afresh cost nothing measurable."),
        "could not tell": (f"`per_head_sum` minus `per_head_sum_out`, round by round: **{said} ms**, an interval "
                           "that includes 0, so this run could not tell whether allocating costs anything here."),
    }.get(facts.get("allocation_verdict", ""), "")


def growth_sentence(rows: pd.DataFrame, axis: str) -> str:
    """What the sweep shows, from core.timing.growth: which variant's time grew most, and by how much."""
    if rows.empty:
        return ""
    top, low = rows.iloc[0], rows.iloc[-1]
    parts = ", ".join(f"`{r.variant}` {r.factor:.2g}×" for r in rows.itertuples())
    return (f"In this run, from {axis} = {int(top['from'])} to {int(top['to'])}, each variant's median time grew by: "
            f"{parts}. The most was `{top['variant']}` ({top['factor']:.2g}×), the least `{low['variant']}` "
            f"({low['factor']:.2g}×). (`core.timing.growth`)")


# ---- sweep planning ---------------------------------------------------------------------------


def plan_sizes(base: timing.Size, axis: str, text: str, bytes_per: int) -> tuple[list[timing.Size], list[str]]:
    """The sizes to measure (base first) and a readable note for every sweep value left out."""
    notes: list[str] = []
    if axis == "none":
        return [base], notes
    try:
        _, values = timing.parse_sweep(f"{axis}={text}")
    except ValueError:
        shown = text if len(text) <= 40 else text[:40] + "…"
        notes.append(f"The sweep values `{shown.replace('`', '')}` could not be read (write whole numbers "
                     f"separated by commas); sweeping {axis} over {SWEEP_DEFAULTS[axis]} instead.")
        _, values = timing.parse_sweep(f"{axis}={SWEEP_DEFAULTS[axis]}")
    too_big = [v for v in values if v > SWEEP_CAPS[axis]]
    if too_big:
        notes.append(f"Left out {axis} = {', '.join(map(short_number, too_big))}: this page goes up to {SWEEP_CAPS[axis]:,}.")
    values = [v for v in values if v <= SWEEP_CAPS[axis]]
    if len(values) > MAX_SWEEP_VALUES:
        notes.append(f"A sweep has at most {MAX_SWEEP_VALUES} values; kept {', '.join(map(str, values[:MAX_SWEEP_VALUES]))}.")
        values = values[:MAX_SWEEP_VALUES]
    if axis in ("heads", "d_model"):
        bad = [v for v in values if (base.d_model % v if axis == "heads" else v % base.n_heads)]
        if bad:
            what = f"don't divide d_model = {base.d_model}" if axis == "heads" else f"aren't divisible by heads = {base.n_heads}"
            notes.append(f"Left out {axis} = {', '.join(map(str, bad))}: they {what}.")
        values = [v for v in values if v not in bad]
    sizes = timing.sweep_sizes(base, axis, values)
    kept = [sizes[0]]
    for size in sizes[1:]:
        if budget_problem({"z": size.bsd, "W_O": size.d_model**2}, bytes_per):
            notes.append(f"Left out B={size.batch} S={size.seq} D={size.d_model}: its inputs alone are over "
                         f"this server's cap of {MAX_TENSOR_ELEMENTS:,} numbers per tensor.")
        else:
            kept.append(size)
    return kept, notes


def shown_columns(df: pd.DataFrame) -> pd.DataFrame:
    """The measured table for reading, numeric throughout: bytes in MiB; the CSV keeps every raw column."""
    out = df[["variant", "batch", "seq", "d_model", "n_heads", "median_ms", "iqr_ms", "fraction_of_gemm",
              "fraction_lo", "fraction_hi", "verdict", "runs", "gflop_per_s", "extra_bytes", "alloc_bytes",
              "page_faults_per_call", "rel_error", "tolerance", "status", "note"]].copy()
    for col in ("extra_bytes", "alloc_bytes"):
        out[col.replace("_bytes", "_MiB")] = out.pop(col) / 2**20
    return out


MEASURED_COLUMNS = {
    "median_ms": st.column_config.NumberColumn("median ms", format="%.4f", help="median over rounds of the time per call"),
    "iqr_ms": st.column_config.NumberColumn("IQR ms", format="%.4f", help="interquartile range over rounds"),
    "fraction_of_gemm": st.column_config.NumberColumn("÷ gemm", format="%.3f",
                                                      help="median over rounds of the throughput ratio to gemm in the same round"),
    "fraction_lo": st.column_config.NumberColumn("÷ gemm, low", format="%.3f", help="95 % interval for that median"),
    "fraction_hi": st.column_config.NumberColumn("÷ gemm, high", format="%.3f"),
    "gflop_per_s": st.column_config.NumberColumn("GFLOP/s", format="%.1f"),
    "extra_MiB": st.column_config.NumberColumn("extra MiB (shapes)", format="%.2f"),
    "alloc_MiB": st.column_config.NumberColumn("allocated MiB / call", format="%.2f"),
    "page_faults_per_call": st.column_config.NumberColumn("page faults / call", format="%.0f"),
    "rel_error": st.column_config.NumberColumn("error vs float64", format="%.2e",
                                               help="relative RMS difference from the float64 reference"),
    "tolerance": st.column_config.NumberColumn("tolerance", format="%.2e"),
}


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
