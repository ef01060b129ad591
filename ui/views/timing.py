"""The timing page's calls into core, and the sentences it writes from their numbers.

Every number comes from ``core.timing``: ``memory_table`` and ``copy_is_view`` (bytes from shapes),
``run_benchmark`` or the shipped reference run (``read_json``), ``summarize``, ``compare_by_size``
and ``growth`` (what a run shows), ``run_in_fresh_process``. Each sentence function takes those
numbers and says only what they support at every setting: a copy that is a view at this size is
called one, a difference inside its interval is "no measurable difference", a count of one is
singular, and nothing prints as −0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
import pyarrow as pa
import streamlit as st

from core import timing
from core.checkpoints import Checkpoint
from core.checkpoints import timing as cps
from ui import jobs
from ui.charts import csv_bytes, csv_download
from ui.controls import MAX_BATCH, MAX_D_MODEL, MAX_HEADS, MAX_SEQ, MAX_TENSOR_ELEMENTS, budget_problem
from ui.figures.timing import SWEEP_COLUMN, gqa_spec, memory_spec, ratio_spec, sweep_spec, with_interval
from ui.format import count, flops, plural, signed, size_bytes

MAX_SWEEP_VALUES = 6
SWEEP_DEFAULTS = {"seq": timing.DEFAULT_RUN["sweep"].partition("=")[2], "heads": "1,2,4,8,16,32",
                  "batch": "1,2,4,8,16,32", "d_model": "64,128,256,512,1024,2048"}
SWEEP_CAPS = {"seq": MAX_SEQ, "heads": MAX_HEADS, "batch": MAX_BATCH, "d_model": MAX_D_MODEL}
FEW_PAGES = 16  # below this many pages, faults per call can't tell fresh memory from reused
SIZE_LETTERS = {"batch": "B", "seq": "S", "d_model": "D", "n_heads": "H"}


# ---- cached calls into core ---------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=64)
def memory(batch: int, seq: int, d_model: int, heads: int, dtype: str) -> tuple[pd.DataFrame, dict, dict]:
    """core.timing.memory_table at one size, its chart, and the numbers the chart's table shows."""
    table = timing.memory_table(timing.Size(batch, seq, d_model, heads), dtype)
    return table, memory_spec(table), numbers(table[["variant", "holds", "extra_bytes", "extra_mib", "times_output", "pages"]])


def numbers(table: pd.DataFrame) -> dict:
    """A figure's numbers, prepared once inside a cached view: the Arrow table ``st.dataframe`` draws
    (converting a DataFrame costs a rerun more than drawing) and the bytes of its CSV download."""
    return {"arrow": pa.Table.from_pandas(table, preserve_index=False), "csv": csv_bytes(table)}


def figure(spec: dict, *, caption: str, numbers: dict, csv_name: str, key: str, column_config: dict | None = None,
           table_label: str = "The numbers behind this figure") -> None:
    """ui.charts.figure for numbers prepared by ``numbers``: the chart, its caption, its table and CSV."""
    st.vega_lite_chart(spec=spec, width="stretch", theme="streamlit", alt=caption)
    st.caption(caption)
    with st.expander(table_label):
        st.dataframe(numbers["arrow"], width="stretch", hide_index=True, column_config=column_config)
        csv_download(numbers["csv"], csv_name, key=f"{key}_csv")


def reference_run(device: str) -> dict | None:
    """The reference run shipped for ``device`` (core/timing/reference/) and all the page shows of it, or None.

    Cached by the file's path and modification time (a regenerated file is read again), so a rerun
    of the page neither reads the file nor recomputes a sentence.
    """
    path = timing.reference_path(device)
    try:
        modified = path.stat().st_mtime
    except OSError:
        return None
    return _reference(str(path), modified)


@st.cache_data(show_spinner=False, max_entries=4)
def _reference(path: str, modified: float) -> dict | None:
    try:
        ref = timing.read_json(path)
    except (OSError, ValueError, KeyError):
        return None
    table = ref["table"]
    forward = bool((table["variant"] == "forward_trace").any())  # a --forward run, not only --gqa's forward_sdpa
    return {**ref, **run_view(table, sweep_axis(projection_rows(table)) or "none", forward, f"reference {ref['date']}"),
            "gqa": gqa_view(table), "machine_table": machine_table(ref["machine"])}


def machine_table(machine: dict) -> pa.Table:
    """Where a run was measured, one row per property, as the Arrow table the page draws."""
    return pa.table({"property": list(machine), "value": [str(v) for v in machine.values()]})


def server_run(key: tuple, axis: str, forward: bool) -> dict | None:
    """This server's finished run under ``key`` (ui.jobs) and all the page shows of it, or None.

    The view is cached by the key and the time the run finished: a rerun recomputes nothing.
    """
    item = jobs.stored(key)
    if item is None:
        return None
    view = _server_view(key, item["finished"], axis, forward)
    if view is None:  # the store let it go between the two reads: compute it once, uncached
        view = _view_of(item, axis, forward)
    return {**item, **view}


@st.cache_data(show_spinner=False, max_entries=32)
def _server_view(key: tuple, finished: float, axis: str, forward: bool) -> dict | None:
    item = jobs.stored(key)
    return None if item is None or item["finished"] != finished else _view_of(item, axis, forward)


def projection_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the W_O ending's variants and the bare GEMM (not the whole forward, not GQA's)."""
    return table[table["kind"].isin(timing.PROJECTION_KINDS)]


def _view_of(item: dict, axis: str, forward: bool) -> dict:
    table = item["result"]["table"]
    return {"table": table, "machine": item["result"]["env"], "machine_table": machine_table(item["result"]["env"]),
            **run_view(table, axis, forward, f"server {item['finished']!r}")}


def run_view(table: pd.DataFrame, axis: str, forward: bool, run_id: str = "") -> dict:
    """Everything the page shows of one run, from core.timing's readings of its table: headlines,
    the ratio chart and its numbers, the sweep, the notes, the CSV, and the checkpoint asked before
    them (``run_id`` names the run, so a new run asks afresh). Plain data, for the caches above."""
    shown_kinds = list(timing.PROJECTION_KINDS) + (["forward"] if forward else [])
    at_base = timing.at_base(table)  # the first size is the run's base
    at_base = at_base[at_base["kind"].isin(shown_kinds)]  # grouped-query rows have a section of their own
    facts = timing.summarize(table)
    ok = at_base[at_base["status"] == "ok"].reset_index(drop=True)
    projection = projection_rows(table)
    first = at_base.iloc[0]
    view = {
        "at_base": at_base, "first": first.to_dict(),
        "rounds": int(at_base["runs"].max()) if len(at_base) else 0,
        "headlines": [line for line in (ratio_sentence("concat", facts), ratio_sentence("einsum", facts),
                                        per_head_sentence(facts), allocation_sentence(facts)) if line],
        "ratio_spec": ratio_spec(ok) if len(ok) else None, "base_numbers": numbers(shown_columns(at_base)),
        "above": [v for v in str(facts.get("above_gemm", "")).split(", ") if v],
        "noisy": noisy_caption(table),
        "not_ok": [(r.variant, r.status, r.note) for r in at_base[at_base["status"] != "ok"].itertuples()],
        "csv": csv_bytes(table[timing.CSV_COLUMNS]),
        "einsum": einsum_sentence(table),
        "page_faults": page_fault_sentence(at_base, timing.Size(int(first["batch"]), int(first["seq"]),
                                                                int(first["d_model"]), int(first["n_heads"])),
                                           str(first["dtype"])),
        "sweep": None, "forward": None, "axis": axis,
        "slowest_cp": cps.slowest(at_base, run_id, lambda x: f"{x:.2f}"),
    }
    if axis != "none":
        column = SWEEP_COLUMN[axis]
        proj_ok = projection[projection["status"] == "ok"]
        if proj_ok[column].nunique() > 1:
            view["sweep"] = {"spec": sweep_spec(proj_ok.reset_index(drop=True), axis), "numbers": numbers(shown_columns(projection)),
                             "sentence": growth_sentence(timing.growth(table, axis), axis)}
        fwd = table[(table["status"] == "ok") & ((table["kind"] == "forward") | (table["variant"] == "gemm"))]
        if forward and fwd[fwd["kind"] == "forward"][column].nunique() > 1:
            view["forward"] = {"spec": sweep_spec(fwd.reset_index(drop=True), axis),
                               "numbers": numbers(shown_columns(table[table["kind"] == "forward"]))}
    return view


def benchmark_job(sizes: list[timing.Size], **settings) -> Callable:
    """What ``ui.jobs.run_job`` runs for the button: run_benchmark with the page's settings, and where."""
    def job(progress) -> dict:
        table = timing.run_benchmark(sizes, progress=progress, **settings)
        return {"table": table, "env": timing.environment(settings["device"], settings["threads"])}

    return job


# ---- number formats the page's sentences share ------------------------------------------------------------


def flop_text(n: float) -> str:
    """'537 MFLOP', '512 FLOP' (ui.format.flops with its unit)."""
    text = flops(n)
    return f"{text} FLOP" if text[-1].isdigit() else f"{text}FLOP"


def factor(x: float) -> str:
    """'0.95×', '3.4×', '13×': a ratio with two significant figures and no exponent."""
    if x < 1:
        return f"{x:.2f}×"
    # '#' keeps the trailing zero, so 4.0 reads '4.0×' beside '6.1×', not a bare '4×'.
    return f"{x:#.2g}".rstrip(".") + "×" if x < 9.95 else f"{x:,.0f}×"


def duration_interval(mid_ms: float, lo_ms: float, hi_ms: float) -> str:
    """'150 (120–180) ns', '1.23 (1.10–1.40) ms': one unit chosen by the largest magnitude, never −0."""
    largest = max(abs(v) for v in (mid_ms, lo_ms, hi_ms))
    unit, scale = next(((u, s) for u, s, floor in (("s", 1e-3, 1e3), ("ms", 1.0, 1.0), ("µs", 1e3, 1e-3))
                        if largest >= floor), ("ns", 1e6))
    scaled = largest * scale
    decimals = max(0, 2 - math.floor(math.log10(scaled))) if scaled > 0 else 0
    one = lambda v: signed(v * scale, f".{decimals}f")  # noqa: E731
    return f"{one(mid_ms)} ({one(lo_ms)}–{one(hi_ms)}) {unit}"


def sizes_text(row) -> str:
    """'B=8, S=128, D=512, H=8'."""
    return ", ".join(f"{SIZE_LETTERS[c]}={int(row[c])}" for c in ("batch", "seq", "d_model", "n_heads"))


def sweep_axis(table: pd.DataFrame) -> str | None:
    """The size that varies across a run's table ('seq', 'heads', …), or None for a single size."""
    varying = [axis for axis, column in SWEEP_COLUMN.items() if table[column].nunique() > 1]
    return varying[0] if len(varying) == 1 else None


# ---- sentences: what the shapes say ---------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=64)
def memory_text(batch: int, seq: int, d_model: int, heads: int, dtype: str) -> str:
    """The page's list of memory_sentences at one size, as Markdown (cached: a rerun rebuilds nothing)."""
    size = timing.Size(batch, seq, d_model, heads)
    return (f"At B={batch}, S={seq}, D={d_model}, H={heads}:\n\n"
            + "\n".join(f"- {line}" for line in memory_sentences(size, dtype)))


def memory_sentences(size: timing.Size, dtype: str) -> list[str]:
    """What concat/einsum, per_head_sum and head_loop hold at this size, in output units (memory_table)."""
    mem = memory(size.batch, size.seq, size.d_model, size.n_heads, dtype)[0].set_index("variant")
    units = {name: int(round(mem.at[name, "times_output"])) for name in mem.index}
    views = timing.copy_is_view(size)
    H = size.n_heads
    said = []
    if views["side_by_side"]:
        said.append(f"`concat` and `einsum` hold nothing extra: with {views['side_by_side']}, `z` read as "
                    "$[B \\cdot S, H \\cdot L]$ is a view of the same memory, not a copy.")
    else:
        said.append(f"`concat` and `einsum` hold {count(units['concat'], 'unit')}: the side-by-side copy of `z`.")
    results = (f"{count(H, 'full-width result')} (one per head), written before they are added" if H > 1 else
               "the one head's full-width result, which the sum over a single head then copies into the output")
    if views["heads_first"]:
        said.append(f"`per_head_sum` holds {count(units['per_head_sum'], 'unit')}: {results}; with "
                    f"{views['heads_first']}, `z` read heads first is a view, so no copy of it is kept.")
    else:
        said.append(f"`per_head_sum` holds {count(units['per_head_sum'], 'unit')}: {results}, and the heads-first "
                    "copy of `z` it made them from, kept until the sum is done.")
    if H == 1:
        said.append("`head_loop` holds nothing extra: with one head, that head's product is the result.")
    return said


# ---- sentences: what a run says (words for core.timing.verdict) ----------------------------------------------


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
    mid, lo, hi = (facts.get(f"per_head_sum_over_concat{s}", float("nan")) for s in ("", "_lo", "_hi"))
    said = with_interval(mid, lo, hi)
    return {
        "above": f"The materialized sum, `per_head_sum`, takes **{said}×** as long as `concat`.",
        "below": f"`per_head_sum` took **{said}×** as long as `concat`: less, at this size.",
        "could not tell": f"`per_head_sum` took **{said}×** as long as `concat`; this run could not tell them apart.",
    }.get(facts.get("per_head_sum_over_concat_verdict", ""), "")


def allocation_sentence(facts: dict) -> str:
    """per_head_sum minus per_head_sum_out, round by round, in a unit that fits its size; no −0, and
    "faster"/"costs" only where the whole interval is on one side of 0."""
    mid, lo, hi = (facts.get(k, float("nan")) for k in ("allocation_ms", "allocation_lo", "allocation_hi"))
    verdict = facts.get("allocation_verdict", "")
    if verdict not in ("above", "below", "could not tell"):
        return ""
    if verdict == "above":
        return (f"Allocating its per-head results costs `per_head_sum` **{duration_interval(mid, lo, hi)}** a call: "
                "its time minus that of the same arithmetic into buffers allocated once, `per_head_sum_out`, "
                "round by round.")
    if verdict == "below":
        return (f"Here `per_head_sum` was **{duration_interval(-mid, -hi, -lo)}** a call *faster* than the same "
                "arithmetic into buffers allocated once (`per_head_sum_out`): at this size, allocating afresh cost "
                "nothing measurable.")
    return (f"`per_head_sum` against the same arithmetic into buffers allocated once (`per_head_sum_out`): "
            f"**no measurable difference** at this size (its time minus theirs, round by round: "
            f"{duration_interval(mid, lo, hi)}, an interval that includes 0).")


def einsum_sentence(table: pd.DataFrame) -> str:
    """Whether einsum kept up with concat, size by size, in this run (core.timing.compare_by_size)."""
    rows = timing.compare_by_size(projection_rows(table), "einsum", "concat")
    if rows.empty:
        return ""
    base = rows.iloc[0]
    said = with_interval(base["ratio"], base["ratio_lo"], base["ratio_hi"])
    first = {
        "above": f"At {sizes_text(base)}, `einsum` took **{said}×** as long as `concat`: slower, in this run.",
        "below": f"At {sizes_text(base)}, `einsum` took **{said}×** as long as `concat`: faster, in this run.",
        "could not tell": (f"At {sizes_text(base)}, `einsum` took **{said}×** as long as `concat`: this run could not "
                           "tell them apart."),
    }[base["verdict"]]
    axis = sweep_axis(projection_rows(table))
    if axis is None or len(rows) < 2:
        return first
    column = SWEEP_COLUMN[axis]
    words = {"above": "slower", "could not tell": "not told apart", "below": "faster"}
    groups = []
    for verdict, word in words.items():
        values = sorted(int(v) for v in rows.loc[rows["verdict"] == verdict, column])
        if values:
            groups.append(f"{word} at {axis} = {', '.join(map(str, values))}")
    n = len(rows)
    if len(groups) == 1:
        every = "both" if n == 2 else f"all {n}"
        where = f"{groups[0].split(' at ')[0]} at {every} values of {axis} it measured"
    else:
        where = "; ".join(groups)
    return f"{first} Across the sweep, against `concat`: {where}."


def growth_sentence(rows: pd.DataFrame, axis: str) -> str:
    """What the sweep shows, from core.timing.growth: each variant's time at the largest value ÷ at the smallest."""
    if rows.empty:
        return ""
    top, low = rows.iloc[0], rows.iloc[-1]
    parts = ", ".join(f"`{r.variant}` {factor(r.factor)}" for r in rows.itertuples())
    said = (f"In this run, from {axis} = {int(top['from'])} to {int(top['to'])}, each variant's median time changed "
            f"by a factor of: {parts}.")
    if len(rows) > 1 and factor(top["factor"]) != factor(low["factor"]):
        # Variants whose factors print alike are named together: one of two equal '4.0×' is not "the least".
        most = [f"`{r.variant}`" for r in rows.itertuples() if factor(r.factor) == factor(top["factor"])]
        least = [f"`{r.variant}`" for r in rows.itertuples() if factor(r.factor) == factor(low["factor"])]
        said += (f" The most {' and '.join(most)} ({factor(top['factor'])}), the least {' and '.join(least)} "
                 f"({factor(low['factor'])}).")
    return said + " (`core.timing.growth`)"


def page_fault_sentence(at_base: pd.DataFrame, size: timing.Size, dtype: str) -> str:
    """Page faults per call of the two materialized sums, against the pages their per-call memory spans."""
    faults = at_base.set_index("variant")["page_faults_per_call"]
    if "per_head_sum" not in faults.index or pd.isna(faults["per_head_sum"]):
        return ""
    row = memory(size.batch, size.seq, size.d_model, size.n_heads, dtype)[0].set_index("variant").loc["per_head_sum"]
    what = "per-head results" if timing.copy_is_view(size)["heads_first"] else "per-head results and heads-first copy"
    other = faults.get("per_head_sum_out")
    other_text = "—" if other is None or pd.isna(other) else f"{other:,.0f}"
    said = (f"In this run, `per_head_sum` took **{faults['per_head_sum']:,.0f}** page faults per call and "
            f"`per_head_sum_out` **{other_text}**. Its {size_bytes(row['extra_bytes'])} of {what} span "
            f"**{count(int(row['pages']), 'page')}** of {timing.PAGE_BYTES // 1024} KiB")
    if row["pages"] < FEW_PAGES:
        return said + ": too few for page faults to tell fresh memory from reused memory at this size."
    return said + (": a count near that means they are faulted in afresh on every call, a count near zero that the "
                   "memory was reused.")


def noisy_caption(table: pd.DataFrame) -> str:
    noisy = int(table["note"].fillna("").str.startswith("noisy").sum())
    if not noisy:
        return ""
    timed = int((table["status"] == "ok").sum())
    return (f"{noisy} of the {timed} {plural(timed, 'ratio')} {plural(noisy, 'has', 'have')} an interval wider than "
            f"{timing.NOISY_WIDTH:.0%} of {plural(noisy, 'its', 'their')} median: something else was using the "
            "machine's cores. The headlines say so where it matters.")


def machine_text(env: dict) -> str:
    """'Intel Xeon …, 1 thread, torch 2.13.0': where numbers were measured."""
    threads = int(env.get("threads", 0) or 0)
    return f"{env.get('name') or env.get('cpu_model', 'unknown')}, {count(threads, 'thread')}, torch {env.get('torch', '?')}"


def reference_provenance(ref: dict, same_settings: bool) -> str:
    """Where the shipped numbers come from: machine, date, load, command; and whether they are these settings."""
    machine = ref["machine"]
    load = machine.get("load_average_before")
    load_text = (f", with a load average of {load[0]:.1f} on its {count(int(machine.get('cpu_count') or 0), 'core')} "
                 "as it started" if load else "")
    first = ref["table"].iloc[0]
    sizes = (f"at {sizes_text(first)}, {first['dtype']}" + ("" if same_settings else
             " (the page's defaults, not the settings above)"))
    return (f"**Not measured on this server yet.** Shown: the reference run shipped with this essay, measured "
            f"{sizes} on {machine_text(machine)} on {ref['date'][:10]}{load_text}, by `{ref['command']}`. "
            "That machine's numbers, not this one's: press **Run benchmark** to measure the server you are reading on.")


# ---- sharing keys and values (grouped-query attention) ---------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=64)
def kv_cache(batch: int, seq: int, d_model: int, heads: int, kv_heads: int, dtype: str) -> tuple[pd.DataFrame, str, str]:
    """core.timing.kv_cache_table at one size (this layer's cache with H_kv and without sharing), the
    sentence that reads it, and the table as Markdown (cheaper on a rerun than a dataframe widget)."""
    size = timing.Size(batch, seq, d_model, heads, kv_heads)
    table = timing.kv_cache_table(size, dtype)
    rows = ["| this layer | H_kv | numbers per token (2 · H_kv · L) | per token | for B × S tokens | × smaller than unshared |",
            "|---|---:|---:|---:|---:|---:|"]
    rows += [f"| {r.layer} | {r.n_kv_heads} | {r.numbers_per_token:,} | {size_bytes(r.bytes_per_token)} | "
             f"{size_bytes(r.bytes_for_run)} | {r.factor} |" for r in table.itertuples()
             if r.Index == 0 or kv_heads < heads]  # with nothing shared, the two rows are one
    return table, kv_cache_sentence(table, size, dtype), "\n".join(rows)


@st.cache_data(show_spinner=False, max_entries=64)
def size_checkpoints(batch: int, seq: int, d_model: int, heads: int, kv_heads: int, dtype: str) -> dict[str, Checkpoint]:
    """The page's checkpoints that depend only on the sizes (core.checkpoints.timing), bytes in ui.format."""
    size = timing.Size(batch, seq, d_model, heads, kv_heads)
    return {"memory": cps.per_head_memory(size, dtype, size_bytes), "kv_cache": cps.kv_cache(size, dtype, size_bytes),
            "scores": cps.scores(size)}


def kv_cache_sentence(table: pd.DataFrame, size: timing.Size, dtype: str) -> str:
    """What the KV-cache table says, from its numbers: per token, for this run's tokens, and the factor."""
    shared, unshared = table.iloc[0], table.iloc[1]
    tokens = size.batch * size.seq
    run = f"for the {count(tokens, 'token')} of this page's run (B × S)"
    if size.n_kv_heads == size.n_heads:
        # With one token (B × S = 1) the run's cache is the per-token figure: said once, not "4 KiB, 4 KiB".
        for_run = ("; this page's run has a single token (B × S = 1), so that is all it keeps" if tokens == 1 else
                   f", {size_bytes(shared['bytes_for_run'])} {run}")
        return (f"With H_kv = H = {size.n_heads} nothing is shared: this layer keeps "
                f"**{size_bytes(shared['bytes_per_token'])}** of keys and values per token in {dtype}{for_run}. "
                "Pick fewer key/value heads above to see the cache shrink.")
    for_run = ("; this page's run has a single token (B × S = 1), so those are its whole cache" if tokens == 1 else
               f"; {size_bytes(shared['bytes_for_run'])} against {size_bytes(unshared['bytes_for_run'])} {run}")
    return (f"With H_kv = {size.n_kv_heads} this layer keeps **{size_bytes(shared['bytes_per_token'])}** of keys and "
            f"values per token in {dtype}, against {size_bytes(unshared['bytes_per_token'])} without sharing: "
            f"**{int(shared['factor'])} times smaller** (H / H_kv = {size.n_heads}/{size.n_kv_heads}){for_run}. A model "
            "keeps this for every layer, and for every token of every sequence it is generating.")


def scores_sentence(size: timing.Size) -> str:
    """How many scores the layer computes and how many numbers K holds, with H_kv and without sharing."""
    counts = timing.score_counts(size)
    where = f"At B={size.batch}, S={size.seq}, H={size.n_heads}"
    if size.n_kv_heads == size.n_heads:
        return (f"{where}, H_kv = H: nothing is shared; the layer computes **{counts['shared']:,}** "
                f"{plural(counts['shared'], 'score')} (`core.timing.score_counts`), and K holds "
                f"{count(counts['k_shared'], 'number')}, as does V. Pick fewer "
                "key/value heads at the top to see which of the two numbers sharing changes.")
    return (f"{where}, H_kv={size.n_kv_heads}: **{counts['shared']:,}** {plural(counts['shared'], 'score')} with "
            f"sharing, exactly as many as without (`core.timing.score_counts`); K holds "
            f"{count(counts['k_shared'], 'number')} with sharing and {counts['k_not_shared']:,} without, and so does V.")


def gqa_view(table: pd.DataFrame) -> dict | None:
    """The grouped-query rows of a run at its base size, their ratios to the unshared layer, chart and
    sentences; None when the run timed no grouped variant."""
    base = timing.at_base(table)
    rows = base[base["variant"].isin(timing.GQA_COMPARISON)]
    if not rows["variant"].isin(timing.GQA_VARIANTS).any():
        return None
    comparison = timing.gqa_comparison(table)
    first = rows[rows["variant"].isin(timing.GQA_VARIANTS)].iloc[0]
    size = timing.Size(int(first["batch"]), int(first["seq"]), int(first["d_model"]), int(first["n_heads"]),
                       int(first["n_kv_heads"]))
    shown = shown_columns(rows).merge(comparison[["variant", "ratio", "ratio_lo", "ratio_hi"]], on="variant", how="left")
    return {
        "size": size, "dtype": str(first["dtype"]), "comparison": comparison,
        "spec": gqa_spec(comparison) if len(comparison) else None,
        "numbers": numbers(shown),
        "sentences": gqa_sentences(comparison, rows, size, str(first["dtype"])),
        "not_ok": [(r.variant, r.status, r.note) for r in rows[rows["status"] != "ok"].itertuples()],
    }


def gqa_sentences(comparison: pd.DataFrame, rows: pd.DataFrame, size: timing.Size, dtype: str) -> list[str]:
    """One headline per grouped variant (its time ÷ the unshared layer's, worded by the interval), the
    arithmetic each does against the unshared layer, and the memory each call held at its peak."""
    said = []
    for r in comparison.itertuples():
        ratio = with_interval(r.ratio, r.ratio_lo, r.ratio_hi)
        said.append({
            "below": f"`{r.variant}` took **{ratio}×** as long as the same layer without sharing (`forward_sdpa`): faster, in this run.",
            "above": f"`{r.variant}` took **{ratio}×** as long as the same layer without sharing (`forward_sdpa`): slower, in this run.",
            "could not tell": (f"`{r.variant}` took **{ratio}×** as long as the same layer without sharing (`forward_sdpa`): "
                               "this run could not tell them apart."),
        }[r.verdict])
    work = timing.flops("gqa_sdpa", size) / timing.flops("forward_sdpa", size)
    B, S, H, L = size.batch, size.seq, size.n_heads, size.d_head
    said.append(f"Both grouped forms do {work:.0%} of the unshared layer's arithmetic at {gqa_sizes_text(size)} "
                f"(`core.timing.flops`): the K and V projections shrink to H_kv·L = {size.n_kv_heads * L} columns each, "
                f"while the scores and the weighted sum, 2·B·H·S²·L operations each, stay as they are.")
    peaks = rows[rows["status"] == "ok"].set_index("variant")["extra_bytes"]
    if {"gqa_sdpa", "gqa_expand"} <= set(peaks.index) and size.group_size > 1:
        copies = 2 * B * H * S * L * timing.element_size(dtype)
        said.append(f"At its peak a call of `gqa_expand` held {size_bytes(peaks['gqa_expand'])} beyond its result and "
                    f"`gqa_sdpa` {size_bytes(peaks['gqa_sdpa'])} (counted op by op, `core.timing.first_call`); the "
                    f"repeated K and V alone are 2·B·H·S·L numbers, {size_bytes(copies)}.")
    return said


def gqa_server_run(key: tuple) -> dict | None:
    """This server's finished grouped-query run under ``key`` and its view, or None (cached by finish time)."""
    item = jobs.stored(key)
    if item is None:
        return None
    view = _gqa_server_view(key, item["finished"])
    if view is None:
        view = gqa_view(item["result"]["table"])
    return None if view is None else {**item, "machine": item["result"]["env"], **view}


@st.cache_data(show_spinner=False, max_entries=32)
def _gqa_server_view(key: tuple, finished: float) -> dict | None:
    item = jobs.stored(key)
    return None if item is None or item["finished"] != finished else gqa_view(item["result"]["table"])


def gqa_sizes_text(size: timing.Size) -> str:
    """'B=8, S=128, D=512, H=8, H_kv=2'."""
    return f"B={size.batch}, S={size.seq}, D={size.d_model}, H={size.n_heads}, H_kv={size.n_kv_heads}"


# ---- the run's sizes and tables --------------------------------------------------------------------------


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
        notes.append(f"Left out {axis} = {', '.join(map(_short_number, too_big))}: this page goes up to {SWEEP_CAPS[axis]:,}.")
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


def _short_number(v: int) -> str:
    text = str(v)
    return text if len(text) <= 12 else f"{text[:6]}… (a {len(text)}-digit number)"


def shown_columns(df: pd.DataFrame) -> pd.DataFrame:
    """The measured table for reading, numeric throughout: bytes in MiB; the CSV keeps every raw column."""
    out = df[["variant", "batch", "seq", "d_model", "n_heads", "n_kv_heads", "median_ms", "iqr_ms", "fraction_of_gemm",
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
    "extra_MiB": st.column_config.NumberColumn("extra MiB", format="%.2f",
                                               help="from the shapes for the W_O ending's variants; measured for the whole forward"),
    "ratio": st.column_config.NumberColumn("÷ without sharing", format="%.3f",
                                           help="median over rounds of this variant's time ÷ forward_sdpa's in the same round"),
    "ratio_lo": st.column_config.NumberColumn("÷ without sharing, low", format="%.3f", help="95 % interval for that median"),
    "ratio_hi": st.column_config.NumberColumn("÷ without sharing, high", format="%.3f"),
    "alloc_MiB": st.column_config.NumberColumn("allocated MiB / call", format="%.2f"),
    "page_faults_per_call": st.column_config.NumberColumn("page faults / call", format="%.0f"),
    "rel_error": st.column_config.NumberColumn("error vs float64", format="%.2e",
                                               help="relative RMS difference from the float64 reference"),
    "tolerance": st.column_config.NumberColumn("tolerance", format="%.2e"),
}
