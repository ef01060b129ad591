"""The timing page's sentences, written from the numbers core.timing measured or derived.

Each function takes those numbers and says only what they support at every setting: a copy that is
a view at this size is called one, a difference inside its interval is "no measurable difference",
a count of one is singular, and nothing prints as −0. The cached calls that feed them are in
ui/views/timing.py.
"""

from __future__ import annotations

import math

import pandas as pd

from core import timing
from ui.figures.timing import SWEEP_COLUMN, with_interval
from ui.format import count, flops, plural, signed, size_bytes

SIZE_LETTERS = {"batch": "B", "seq": "S", "d_model": "D", "n_heads": "H"}
FEW_PAGES = 16  # below this many pages, faults per call can't tell fresh memory from reused


def projection_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the W_O ending's variants and the bare GEMM (not the whole forward, not GQA's)."""
    return table[table["kind"].isin(timing.PROJECTION_KINDS)]


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


def memory_sentences(size: timing.Size, dtype: str) -> list[str]:
    """What concat/einsum, per_head_sum and head_loop hold at this size, in output units (memory_table)."""
    mem = timing.memory_table(timing.Size(size.batch, size.seq, size.d_model, size.n_heads), dtype).set_index("variant")
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
    row = timing.memory_table(timing.Size(size.batch, size.seq, size.d_model, size.n_heads), dtype).set_index("variant").loc["per_head_sum"]
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


def gqa_sizes_text(size: timing.Size) -> str:
    """'B=8, S=128, D=512, H=8, H_kv=2'."""
    return f"B={size.batch}, S={size.seq}, D={size.d_model}, H={size.n_heads}, H_kv={size.n_kv_heads}"
