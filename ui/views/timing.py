"""The timing page's cached calls into core (its sentences are in ui/prose/timing.py).

Every number comes from ``core.timing``: ``memory_table`` and ``copy_is_view`` (bytes from shapes),
``run_benchmark`` or the shipped reference run (``read_json``), ``summarize``, ``compare_by_size``
and ``growth`` (what a run shows), ``run_in_fresh_process``. Each sentence function takes those
numbers and says only what they support at every setting: a copy that is a view at this size is
called one, a difference inside its interval is "no measurable difference", a count of one is
singular, and nothing prints as −0.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pyarrow as pa
import streamlit as st

from core import timing
from core.checkpoints import Checkpoint
from core.checkpoints import timing as cps
from ui import charts, jobs
from ui.prose import timing as prose
from ui.charts import csv_bytes
from ui.controls import MAX_BATCH, MAX_D_MODEL, MAX_HEADS, MAX_SEQ, MAX_TENSOR_ELEMENTS, budget_problem
from ui.figures.timing import SWEEP_COLUMN, gqa_spec, memory_spec, ratio_spec, sweep_spec
from ui.format import size_bytes
from ui.render import numbers

MAX_SWEEP_VALUES = 6
SWEEP_DEFAULTS = {"seq": timing.DEFAULT_RUN["sweep"].partition("=")[2], "heads": "1,2,4,8,16,32",
                  "batch": "1,2,4,8,16,32", "d_model": "64,128,256,512,1024,2048"}
SWEEP_CAPS = {"seq": MAX_SEQ, "heads": MAX_HEADS, "batch": MAX_BATCH, "d_model": MAX_D_MODEL}


# ---- cached calls into core ---------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=64)
def memory(batch: int, seq: int, d_model: int, heads: int, dtype: str) -> tuple[pd.DataFrame, dict, dict]:
    """core.timing.memory_table at one size, its chart, and the numbers the chart's table shows."""
    table = timing.memory_table(timing.Size(batch, seq, d_model, heads), dtype)
    return table, memory_spec(table), numbers(table[["variant", "holds", "extra_bytes", "extra_mib", "times_output", "pages"]])


def figure(spec: dict, *, caption: str, numbers: dict, csv_name: str, key: str, column_config: dict | None = None,
           table_label: str = "The numbers behind this figure") -> None:
    """ui.charts.figure for numbers prepared by ``numbers``: the chart, its caption, its table and CSV."""
    charts.figure(spec, caption=caption, table=numbers["arrow"], csv=numbers["csv"], csv_name=csv_name, key=key,
                  column_config=column_config, table_label=table_label)


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
    shown = {**ref, **run_view(table, prose.sweep_axis(prose.projection_rows(table)) or "none", forward,
                               f"reference {ref['date']}"),
             "gqa": gqa_view(table), "machine_table": machine_table(ref["machine"])}
    shown["provenance"] = {same: prose.reference_provenance(shown, same) for same in (True, False)}
    # Every rerun unpickles this dict from the cache: the DataFrames it was built from stay out of it.
    del shown["table"], shown["at_base"]
    return shown


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
    projection = prose.projection_rows(table)
    first = at_base.iloc[0]
    view = {
        "at_base": at_base, "first": first.to_dict(),
        "rounds": int(at_base["runs"].max()) if len(at_base) else 0,
        "headlines": [line for line in (prose.ratio_sentence("concat", facts), prose.ratio_sentence("einsum", facts),
                                        prose.per_head_sentence(facts), prose.allocation_sentence(facts)) if line],
        "ratio_spec": ratio_spec(ok) if len(ok) else None, "base_numbers": numbers(shown_columns(at_base)),
        "above": [v for v in str(facts.get("above_gemm", "")).split(", ") if v],
        "noisy": prose.noisy_caption(table),
        "not_ok": [(r.variant, r.status, r.note) for r in at_base[at_base["status"] != "ok"].itertuples()],
        "csv": csv_bytes(table[timing.CSV_COLUMNS]),
        "einsum": prose.einsum_sentence(table),
        "page_faults": prose.page_fault_sentence(at_base, timing.Size(int(first["batch"]), int(first["seq"]),
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
                             "sentence": prose.growth_sentence(timing.growth(table, axis), axis)}
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


@st.cache_data(show_spinner=False, max_entries=64)
def memory_text(batch: int, seq: int, d_model: int, heads: int, dtype: str) -> str:
    """The page's list of memory_sentences at one size, as Markdown (cached: a rerun rebuilds nothing)."""
    size = timing.Size(batch, seq, d_model, heads)
    return (f"At B={batch}, S={seq}, D={d_model}, H={heads}:\n\n"
            + "\n".join(f"- {line}" for line in prose.memory_sentences(size, dtype)))


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
    return table, prose.kv_cache_sentence(table, size, dtype), "\n".join(rows)


@st.cache_data(show_spinner=False, max_entries=64)
def size_checkpoints(batch: int, seq: int, d_model: int, heads: int, kv_heads: int, dtype: str) -> dict[str, Checkpoint]:
    """The page's checkpoints that depend only on the sizes (core.checkpoints.timing), bytes in ui.format."""
    size = timing.Size(batch, seq, d_model, heads, kv_heads)
    return {"memory": cps.per_head_memory(size, dtype, size_bytes), "kv_cache": cps.kv_cache(size, dtype, size_bytes),
            "scores": cps.scores(size)}






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
        "size": size, "dtype": str(first["dtype"]),
        "spec": gqa_spec(comparison) if len(comparison) else None,
        "numbers": numbers(shown),
        "sentences": prose.gqa_sentences(comparison, rows, size, str(first["dtype"])),
        "not_ok": [(r.variant, r.status, r.note) for r in rows[rows["status"] != "ok"].itertuples()],
    }




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
