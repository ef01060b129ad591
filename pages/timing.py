"""Timing: what the additive view of attention costs on the machine running this page, and why.

Every number comes from core.timing: memory_table (bytes from shapes), run_benchmark (medians and
intervals over interleaved rounds), summarize (the headlines and their verdicts), growth (the
sweep), flops, environment, run_in_fresh_process and fresh_process_problem. The figures are built
in ui.figures.timing, so this script is the essay: prose, controls and calls. The measurement
section is one fragment: its controls and buttons rerun that section only.
"""

from __future__ import annotations

import math
import os
import time

import pandas as pd
import streamlit as st

from core import timing
from core.device import DTYPE_NAMES, available_devices, dtype_from_name, supported_dtypes
from ui.charts import csv_download, figure
from ui.controls import MAX_BATCH, MAX_D_MODEL, MAX_HEADS, MAX_SEQ, MAX_TRACE_BYTES, Controls, budget_problem, heads_problem, show_link
from ui.figures.timing import (
    MAX_SWEEP_VALUES, MEASURED_COLUMNS, SWEEP_COLUMN, SWEEP_DEFAULTS, allocation_sentence, flop_text, fmt, fresh_spec,
    growth_sentence, memory_spec, mib, per_head_sentence, plan_sizes, ratio_sentence, ratio_spec, shown_columns, sweep_spec,
)
from ui.shell import ensure_app_shell

ensure_app_shell()

# How many projection variants core.timing times (the gemm reference included), as a word.
N_WAYS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"][len(timing.PROJECTION_VARIANTS)]

st.title("What the sum costs")

st.markdown(
    r"""
The identity at the heart of this essay says that two programs compute the same numbers. With
$z^h$ the output of head $h$ (heads $0, \dots, H-1$) and $W_O^h$ the rows $hL, \dots, hL+L-1$ of
$W_O$, the $L$ rows that head $h$ owns:

$$
\underbrace{\big[\,z^{0}\;\cdots\;z^{H-1}\,\big]\,W_O}_{\text{concatenate, then project}}
\;=\;
\underbrace{\sum_{h=0}^{H-1} z^{h}\,W_O^{h}}_{\text{project each head, then add}}
$$

Equal arithmetic does not mean equal cost. A processor's speed depends on how the arithmetic is
*arranged*: how many times each number fetched from memory gets used, how many temporary arrays
are created and thrown away, how many separate calls are made. This page times {N_WAYS} arrangements
of exactly the same sum on the machine that is serving it to you, and explains the differences.
""".replace("{N_WAYS}", N_WAYS)
)

st.markdown(f"## {N_WAYS.capitalize()} ways to write one sum")

controls = Controls()  # one per page: a restart keeps every notice
sizes_row = st.columns([1, 1, 1, 1])
batch = controls.integer("batch", "Batch B", default=timing.DEFAULT_RUN["batch"], lo=1, hi=MAX_BATCH, where=sizes_row[0])
seq = controls.integer("seq", "Sequence S", default=timing.DEFAULT_RUN["seq"], lo=1, hi=MAX_SEQ, where=sizes_row[1])
d_model = controls.integer("d_model", "Width D", default=timing.DEFAULT_RUN["d_model"], lo=1, hi=MAX_D_MODEL, where=sizes_row[2])
heads = controls.integer("heads", "Heads H", default=timing.DEFAULT_RUN["heads"], lo=1, hi=MAX_HEADS, where=sizes_row[3])
kind_row = st.columns([1, 2])
device = controls.choice("device", "Device", available_devices(), default="cpu", where=kind_row[0],
                         unavailable={"cuda": "not available: torch sees no GPU on this server"})
dtype = controls.choice("dtype", "Precision", DTYPE_NAMES, default="float32", where=kind_row[1])
controls.show_notices()

size_error = heads_problem(d_model, heads)
if size_error is None and dtype not in supported_dtypes(device):
    size_error = f"{dtype} does not run on {device} here; pick one of {', '.join(supported_dtypes(device))}."
bytes_per = timing.element_size(dtype)
if size_error is None:
    size_error = budget_problem({"z": batch * seq * d_model, "W_O": d_model * d_model, "out": batch * seq * d_model}, bytes_per)
base = timing.Size(batch, seq, d_model, heads) if size_error is None else None

if base is None:
    st.error(size_error)
else:
    st.markdown(
        f"""
All {N_WAYS} compute $\\mathrm{{out}}_{{b,s,:}} = \\sum_{{h=0}}^{{H-1}} \\sum_{{l=0}}^{{L-1}} z_{{b,h,s,l}}\\,(W_O)_{{h,l,:}}$
from the same `z` $[B, H, S, L]$ and `W_O` $[H, L, D]$: $B \\times S \\times D \\times D$ multiply-adds, which at
this size is **{flop_text(timing.flops("concat", base))}** (`core.timing.flops`), the same for every one of
them. They differ only in what they put in memory on the way.
"""
    )

st.markdown(
    "\n".join(
        ["| variant | the line that does the work | what it keeps besides z, W_O and the result |", "|---|---|---|"]
        + [f"| `{name}` | `{timing.VARIANTS[name].code}` | {timing.HOLDS[name]} |" for name in timing.PROJECTION_VARIANTS]
    )
)

st.markdown(
    r"""
`concat` and `per_head_sum` are `core.attention.concat_then_project` and
`core.attention.project_then_sum`, the two functions the rest of the essay compares. `broadcast`
is how TransformerLens has computed each head's `result` when asked to keep it (multiply with
broadcasting, then sum over $l$); `head_loop` is how most people first write the sum.

### Memory, before anything runs

The memory each arrangement needs follows from the shapes alone. Counting in units of the output
($B \times S \times D$ numbers), beyond the inputs and the result that every arrangement must hold:
`concat` and `einsum` need one unit, for the side-by-side copy (none where size-1 axes make `z` side
by side already, as with a single head or a single token); `per_head_sum` needs $H + 1$, because
it writes every head's full-width result before adding them, and keeps the heads-first copy of `z`
it made them from until the sum is done (why, in "The hidden part of the cost" below). `broadcast` needs $D + H - 1$, for
two tensors alive at once: every product $z_{b,h,s,l}\,(W_O)_{h,l,d}$ kept separately,
$[B, S, H, L, D]$, which is $H \times L = D$ units; and, while the sum over $l$ runs, its result, the
per-head partial sums $[B, S, H, D]$, $H$ units. Their peak, $D + H$, comes before the result exists,
so one unit (the result's own) is subtracted.

So the price of the additive view is not the sum: it is **materializing** the per-head results.
Written as one contraction (`einsum`), the sum over heads becomes the same single product as
`concat`, and no per-head array ever exists; written as "compute every head, then add", it costs
$H$ output-sized arrays.
"""
)

if base is not None:
    mem = timing.memory_table(base, dtype)
    figure(
        memory_spec(mem),
        caption=(f"Extra memory per variant at B={batch}, S={seq}, D={d_model}, H={heads}, {dtype}, in multiples "
                 f"of the {mib(mem['output_bytes'].iloc[0])} output (symmetric-log axis, so 0 can show). From "
                 "core.timing.memory_table (extra_bytes: a call's peak footprint minus its result); a run below "
                 "measures that peak for every call (peak_bytes in the CSV)."),
        table=mem[["variant", "holds", "extra_bytes", "extra_mib", "times_output", "pages"]],
        csv_name="timing_memory.csv", key="memory",
        column_config={"extra_mib": st.column_config.NumberColumn("extra MiB", format="%.2f"),
                       "times_output": st.column_config.NumberColumn("× output", format="%.0f")},
    )
    over = mem[mem["needs_bytes"] > MAX_TRACE_BYTES]
    if not over.empty:
        st.caption(
            f"This shared server skips a variant whose intermediates would need more than {mib(MAX_TRACE_BYTES)}: "
            + ", ".join(f"`{r.variant}` ({mib(r.needs_bytes)})" for r in over.itertuples())
            + " at this size. Shrink the batch or the sequence to see it run."
        )

st.markdown(
    rf"""
## Timing them

Press the button and each variant is first **checked**: its result is compared with the same sum
computed in float64 from the same inputs, and must agree to within a tolerance set per precision
(`core.timing.check_tolerance`: four rounding steps of the dtype plus $\sqrt{{D}}$ steps of the
precision it accumulates in). A variant outside it is reported as wrong and never timed. Heads add
independent terms, so a head left out changes the output by about $1/\sqrt{{H}}$ of its size:
{1 / math.sqrt(MAX_HEADS):.3f} with {MAX_HEADS} heads, against a bfloat16 tolerance of
{timing.check_tolerance(dtype_from_name("bfloat16"), MAX_D_MODEL):.3f} even at $D = {MAX_D_MODEL}$. A head's
slice of $W_O$ swapped, or a transpose missing, moves it much more.

Then they are **timed in rounds**. Each round times one block of calls of every variant, in a
fresh random order, and keeps the fastest call of each block: the code's cost while it has the
processor. A block goes on calling while its calls are still getting faster (at most
{timing.SETTLE_MAX_S * 1e3:.0f} ms; `core.timing._time_one_block`). A variant that streams a large
tensor can run slowly for its first calls after other work (measured on the machine this page was
written on: `docs/timing.md`, "Ramping up"), and timing it then would measure the switch, not the
code. A slow spell of a shared machine then lands on all of them alike, and each variant's
throughput is divided by the bare GEMM's *from the same round*. The clock (`core.timing.clock_for`):
with one thread on the CPU every operation runs in the measuring thread, so its CPU time is the
call's whole cost and waiting for a core held by another program is left out; with more threads, or
on a GPU, `torch.utils.benchmark`'s wall clock, which first waits for the GPU to finish. You see the median of those per-round ratios with a 95 %
interval: the $k$-th smallest and $k$-th largest of the rounds, with $k$ chosen so that the interval
holds the true median at least 95 % of the time whatever the distribution
(`core.timing.median_interval`; it needs {timing.MIN_ROUNDS} rounds). A headline says "slower" or
"faster" only when the whole interval is on one side of 1, and that it could not tell otherwise.
"""
)


@st.fragment
def measurements(base: timing.Size | None, dtype: str, device: str) -> None:
    """The run controls, the button, the results and the fresh-process repeat: reruns on its own."""
    for key in ("sweep", "sweep_values", "budget", "threads", "forward"):
        controls.values.pop(key, None)  # re-read this section's values on every rerun of it
    axis = controls.choice("sweep", "Also sweep one size over several values", ["none", "seq", "heads", "batch", "d_model"],
                           default="seq", help="Every variant is timed at each value, with the other sizes as above.")
    run_row = st.columns([2, 1, 1])
    sweep_text = controls.text(
        "sweep_values", "Sweep values (blank: a default range for the axis)", default="", max_chars=MAX_SWEEP_CHARS,
        where=run_row[0], help=f"Whole numbers separated by commas, at most {MAX_SWEEP_VALUES}.",
    )
    budget = controls.integer("budget", "Time budget (s)", default=timing.DEFAULT_RUN["budget_s"], lo=1, hi=MAX_BUDGET_S,
                              where=run_row[1], help="Total seconds for checks and timing; what doesn't fit is skipped, saying so.")
    threads = controls.integer("threads", "Threads", default=min(timing.DEFAULT_RUN["threads"], MAX_THREADS), lo=1,
                               hi=MAX_THREADS, where=run_row[2],
                               help="Intra-op threads torch may use. One gave the steadier ratios on the shared 2-core server of docs/timing.md.")
    forward = controls.flag("forward", "Also time the whole attention forward (core, nn.MultiheadAttention, SDPA)")
    controls.show_notices()

    sizes: list[timing.Size] = []
    if base is not None:
        sizes, sweep_notes = plan_sizes(base, axis, sweep_text.strip() or SWEEP_DEFAULTS.get(axis, ""), bytes_per)
        for note in sweep_notes:
            st.warning(note, icon=":material/link:")
    variants = list(timing.PROJECTION_VARIANTS) + (list(timing.FORWARD_VARIANTS) if forward else [])
    key = (device, dtype, batch, seq, d_model, heads, axis, tuple((s.batch, s.seq, s.d_model, s.n_heads) for s in sizes),
           budget, threads, forward)
    store = result_store()

    pressed = st.button("Run benchmark", type="primary", key="run", disabled=base is None, icon=":material/timer:")
    sweep_desc = (f" ({axis} = {', '.join(str(v) for v in sorted(getattr(s, SWEEP_COLUMN[axis]) for s in sizes))})"
                  if axis != "none" and len(sizes) > 1 else "")
    st.caption(f"{len(sizes)} size{'s' if len(sizes) != 1 else ''}{sweep_desc} × {len(variants)} variants, within "
               f"{budget} s. Nothing is timed until you press the button; finished runs are kept on this "
               "server, so a shared link shows them without running again.")
    if pressed and base is not None:
        bar = st.progress(0.0, text="Waiting for the machine…")
        try:
            with timing.exclusive(timeout_s=2.0):
                started = time.time()
                table = timing.run_benchmark(
                    sizes, dtype=dtype, device=device, variants=variants, budget_s=budget,
                    max_bytes=MAX_TRACE_BYTES, threads=threads,
                    progress=lambda fraction, message: bar.progress(fraction, text=message[:1].upper() + message[1:]),
                )
                env = timing.environment(device, threads)
                store.put(key, {"table": table, "env": env,
                                "finished": time.time(), "wall_s": time.time() - started})
        except timing.Busy:
            st.warning("Another reader's benchmark is running on this server right now, and two at once would "
                       "time each other. Press the button again in a few seconds.", icon=":material/hourglass_top:")
        bar.empty()

    result = store.get(key)
    table = result["table"] if result else None
    at_base = None
    if table is not None:
        at_base = timing.at_base(table)  # sizes[0] is the base size
        facts = timing.summarize(table)
        env = result["env"]
        ago = time.time() - result["finished"]
        rounds = int(at_base["runs"].max()) if len(at_base) else 0
        st.success(
            f"Measured {'just now' if ago < 60 else f'{ago / 60:.0f} min ago'} on this server "
            f"({env.get('name', '')}, {env['threads']} thread{'s' if env['threads'] != '1' else ''}, torch {env['torch']}), "
            f"in {result['wall_s']:.1f} s; {rounds} rounds at the size above.", icon=":material/timer:",
        )
        st.markdown("\n".join(f"- {line}" for line in (
            ratio_sentence("concat", facts), ratio_sentence("einsum", facts),
            per_head_sentence(facts), allocation_sentence(facts)) if line))
        ok = at_base[at_base["status"] == "ok"]
        if len(ok):
            figure(
                ratio_spec(ok.reset_index(drop=True)),
                caption=(f"Each variant's throughput as a fraction of the bare GEMM's at B={batch}, S={seq}, D={d_model}, "
                         f"H={heads}, {dtype} on {device}: the median over rounds of the ratio within each round, and its "
                         "95 % interval (whiskers). The dashed line is 1, the GEMM itself. Measured by "
                         "core.timing.run_benchmark; intervals from core.timing.median_interval."),
                table=shown_columns(at_base), csv_name="timing_base.csv", key="bars", column_config=MEASURED_COLUMNS,
            )
        above = [v for v in str(facts.get("above_gemm", "")).split(", ") if v]
        if above:
            st.warning(f"{', '.join(f'`{v}`' for v in above)} measured faster than the bare GEMM, whose work "
                       f"{'it contains' if len(above) == 1 else 'each contains'}, with the whole interval above 1: that "
                       "is noise from this machine, not a property of the code. Run again, or try 1 thread.",
                       icon=":material/warning:")
        noisy = table[table["note"].fillna("").str.startswith("noisy")]
        if len(noisy):
            st.caption(f"{len(noisy)} of the {int((table['status'] == 'ok').sum())} ratios have an interval wider than "
                       f"{timing.NOISY_WIDTH:.0%} of their median: something else was using this machine's cores. "
                       "Their headlines say so where it matters.")
        for r in at_base[at_base["status"] != "ok"].itertuples():
            st.caption(f"`{r.variant}` {r.status}: {r.note}")
        csv_download(table[timing.CSV_COLUMNS], "timing.csv", key="all_csv", label="Download every measurement (CSV)")
        with st.expander("The machine these numbers come from"):
            st.dataframe(pd.DataFrame({"property": list(env), "value": list(env.values())}), hide_index=True, width="stretch")
    elif base is not None:
        st.info("No measurement for these settings on this server yet. Press **Run benchmark**.", icon=":material/timer:")

    st.markdown(
        r"""
### Why one big product wins

A matrix product $[M, K] \times [K, N]$ does $2MKN$ operations on $MK + KN + MN$ numbers. When all
three sizes are large, every number fetched from memory takes part in many multiply-adds, so the
arithmetic units, not memory, set the pace. `concat` is one such product with $M = B \times S$ and
$K = N = D$; the copy that puts the heads side by side touches each of the $B \times S \times D$
inputs once, a small cost next to $2BSD^2$ operations, and shrinking relative to them as $D$ grows.

`einsum` shows that **the additive view is free when it is written as one contraction**: asked to sum
over $h$ and $l$ together, `torch.einsum` makes the same side-by-side copy and calls the same single
product. The sum over heads is still there; it has simply been folded into the product's inner loop.

The **materialized** sum pays twice. `per_head_sum` runs $H$ products with inner size $K = L = D/H$
instead of $D$, so each number it fetches takes part in fewer multiply-adds; and it writes $H$
full-width results, $H \times B \times S \times D$ numbers, to memory, only to read them back and add
them up. `broadcast` goes further: it writes every one of the $B \times S \times D^2$ products before
adding any, turning a compute-bound problem into a memory-bound one. `head_loop` keeps memory small
(one head's result at a time) but makes $H$ separate calls, each a thin product of inner size $L$,
and passes over the $[B, S, D]$ running sum $H$ times.
"""
    )

    st.markdown("## How the cost grows")
    if table is not None and axis != "none":
        proj = table[(table["kind"] != "forward") & (table["status"] == "ok")]
        if proj[SWEEP_COLUMN[axis]].nunique() > 1:
            figure(
                sweep_spec(proj.reset_index(drop=True), axis),
                caption=(f"Median time per call against {axis}, both axes logarithmic; the dashed grey line is the bare "
                         "GEMM measured in the same rounds. A variant's line stops where it was skipped (memory cap or "
                         "time budget; see the table). Measured by core.timing.run_benchmark."),
                table=shown_columns(table[table["kind"] != "forward"]), csv_name="timing_sweep.csv", key="sweep",
                column_config=MEASURED_COLUMNS,
            )
            st.markdown(growth_sentence(timing.growth(table, axis), axis))
        fwd = table[(table["status"] == "ok") & ((table["kind"] == "forward") | (table["variant"] == "gemm"))]
        if forward and fwd[fwd["kind"] == "forward"][SWEEP_COLUMN[axis]].nunique() > 1:
            figure(
                sweep_spec(fwd.reset_index(drop=True), axis),
                caption=(f"The whole attention forward against {axis}: core's instrumented forward (every intermediate "
                         "kept), torch.nn.MultiheadAttention and F.scaled_dot_product_attention, with the bare GEMM "
                         "for scale. Measured by core.timing.run_benchmark."),
                table=shown_columns(table[table["kind"] == "forward"]), csv_name="timing_forward.csv", key="forward",
                column_config=MEASURED_COLUMNS,
            )
    elif table is not None:
        st.caption("Pick a sweep axis above and run again to see how the times grow.")
    st.markdown(
        r"""
On a log–log chart a cost proportional to a size is a line of slope 1. Every variant's work grows
in proportion to $B \times S$ (each token is projected on its own), so along `seq` or `batch` the
lines run parallel once the sizes are large; at small sizes they flatten, because a call has a fixed
price (Python, dispatch, waking threads) of some microseconds whatever its size. Along `d_model` the
work grows as $D^2$, slope 2. Along `heads` the work does not change at all, and neither should
`concat`, `einsum` and `gemm`. What the mechanism predicts for the other two: `per_head_sum` writes
$H$ output-sized results, so its memory traffic grows in proportion to $H$ while its products thin
out to inner size $L = D/H$; `head_loop` writes one result at a time, but pays one more call and one
more pass over the running sum per head. Which of the two grows faster depends on whether this
machine is slower at moving memory or at making calls; the sentence under the chart says what this
run measured. With the forward variants switched on, the attention scores add a term in $S^2 D$ that
overtakes the projections at long sequences.
"""
    )

    st.markdown(
        rf"""
## The hidden part of the cost: allocation

Part of what the materialized sum costs is not arithmetic at all. Each call of `per_head_sum`
allocates a fresh tensor of every head's result, $H \times B \times S \times D$ numbers. On Linux, glibc's `malloc` serves a large request with its
own `mmap` from the operating system and hands it back with `munmap` when it is freed; the next
call gets fresh pages, and the kernel fills each {timing.PAGE_BYTES // 1024} KiB page with zeros the
first time it is touched (a *page fault*). The line between small and large moves as a process
runs: it starts at {timing.GLIBC_MMAP_THRESHOLD_START // 1024} KiB and rises, up to
{timing.GLIBC_MMAP_THRESHOLD_MAX // 2**20} MiB, each time a large block is freed; freed memory at the
top of the heap is also handed back once it passes a second threshold. So the same line of code
may or may not pay for page faults, depending on what the process allocated before, and on which
thread asks. Setting `MALLOC_MMAP_THRESHOLD_` and `MALLOC_TRIM_THRESHOLD_` in the environment fixes
both lines, and raising them keeps freed blocks for reuse. Even without a page fault, *where* the
block lands matters, and so does the order in which a call frees what it made. Written as one
`einsum`, the per-head product frees its copy of `z` as soon as the product is done, before the sum
allocates its output. On the machine this page was written on, that left some heap layouts in which
the next call's per-head result could not land where the last one had: it moved between places in
the heap call after call, and `per_head_sum` ran well below `per_head_sum_out` with no page faults
at all. `core.attention.project_then_sum` therefore keeps the copy until the sum is done, so the
sum's output can never take the copy's place (what that changed there is in `docs/timing.md`,
"Where the result lands"; `scripts/heap_layouts.py` measures it on any machine).

`per_head_sum_out` does the identical copy, batched product and sum, but into buffers allocated
once. The difference between the two is the allocation's price, and the **page faults per call**
column shows where it goes. A GPU is different: PyTorch's caching allocator keeps freed blocks and
never returns them between calls, so there the materialized sum costs memory and bandwidth, not
page faults.
"""
    )
    if table is not None and at_base is not None and base is not None:
        faults = at_base.set_index("variant")["page_faults_per_call"]
        per_head_mem = timing.memory_table(base, dtype).set_index("variant").loc["per_head_sum"]
        if "per_head_sum" in faults.index and pd.notna(faults["per_head_sum"]):
            st.markdown(
                f"In the run above, `per_head_sum` took **{faults['per_head_sum']:,.0f}** page faults per call and "
                f"`per_head_sum_out` **{fmt(faults.get('per_head_sum_out'), ',.0f')}**. Its "
                f"{mib(per_head_mem['extra_bytes'])} of per-head results and heads-first copy span **{per_head_mem['pages']:,.0f}** pages of "
                f"{timing.PAGE_BYTES // 1024} KiB: a count near that means they are faulted in afresh on every call, "
                "a count near zero that the memory was reused."
            )

    fresh_section(base, dtype, device, threads, key, result)

    st.markdown(
        r"""
## Reading these numbers honestly

- **They are this machine's.** A public server shares its cores with other readers and other
  programs; when another process holds a core, a two-threaded product can wait a whole scheduler
  tick (milliseconds) for its second thread, and a wall clock counts the wait. That is why this page
  starts with one thread, timed by its own CPU time: on the 2-core shared machine it was written on,
  five fresh runs that way gave steadier ratios than two threads did (the figures are in
  `docs/timing.md`).
- **Ratios within a round, medians over rounds.** A slow spell moves every variant of a round
  together, and one slow round moves a median hardly at all. The interval says how sure the run is;
  each size starts with an untimed, settled block of every variant, and within a block the
  fastest call counts.
- **Ratios travel better than times.** How close `concat` comes to a bare GEMM on the same machine
  says more about another machine than any time in milliseconds does.
- **Run it where you work.** The same measurement runs from a terminal, on a GPU too, with only torch,
  numpy and pandas installed; this page's settings as a command:
"""
    )
    if base is not None:
        sweep_arg = (f" --sweep {axis}={','.join(str(v) for v in sorted(getattr(s, SWEEP_COLUMN[axis]) for s in sizes))}"
                     if axis != "none" and len(sizes) > 1 else "")
        st.code(
            f"python -m core.timing --device {device} --dtype {dtype} --batch {batch} --seq {seq} "
            f"--d-model {d_model} --heads {heads} --threads {threads} --budget {budget}{sweep_arg}"
            f"{' --forward' if forward else ''} --csv timing.csv",
            language=None, wrap_lines=True,
        )
    show_link(controls.values)


def fresh_section(base: timing.Size | None, dtype: str, device: str, threads: int, key: tuple, result: dict | None) -> None:
    """The repeat in fresh processes: refused, with a message, when the memory for one isn't free."""
    st.markdown(
        "To see allocation history at work, repeat the measurement in **fresh processes**: one with glibc's "
        "defaults and one with both thresholds raised ("
        + ", ".join(f"`{k}={v}`" for k, v in timing.MALLOC_SETTINGS["thresholds raised"].items())
        + "). Each starts Python and torch from scratch, then times "
        f"{', '.join(f'`{v}`' for v in FRESH_VARIANTS)} at the size above for {FRESH_BUDGET_S} s. They run one at "
        "a time, and only when this server has the memory for one more Python with torch "
        "(`core.timing.fresh_process_problem`)."
    )
    store = result_store()
    fresh_key = key + ("fresh",)
    if st.button("Repeat in two fresh processes", key="fresh", disabled=base is None, icon=":material/restart_alt:"):
        problem = timing.fresh_process_problem(base, dtype, FRESH_VARIANTS)
        if problem:
            st.warning(problem, icon=":material/memory:")
        else:
            bar = st.progress(0.0, text="Starting a fresh process…")
            try:
                with timing.exclusive(timeout_s=2.0):
                    parts = []
                    for i, setting in enumerate(timing.MALLOC_SETTINGS):
                        bar.progress(i / len(timing.MALLOC_SETTINGS), text=f"Fresh process, malloc {setting}…")
                        part = timing.run_in_fresh_process(
                            base, dtype=dtype, device=device, variants=FRESH_VARIANTS, budget_s=FRESH_BUDGET_S,
                            max_bytes=MAX_TRACE_BYTES, threads=threads, malloc=setting, timeout_s=FRESH_BUDGET_S + 30,
                        )
                        parts.append(part.assign(process=f"fresh process, malloc {setting}"))
                    store.put(fresh_key, {"table": pd.concat(parts, ignore_index=True), "finished": time.time()})
            except timing.Busy:
                st.warning("Another reader's benchmark is running on this server right now. Try again in a few seconds.",
                           icon=":material/hourglass_top:")
            except (RuntimeError, OSError) as exc:  # run_in_fresh_process says why in one line
                st.error(f"The repeat in a fresh process did not work out: {str(exc)[:300]}")
            bar.empty()
    fresh = store.get(fresh_key)
    if fresh is None:
        return
    parts = [fresh["table"]]
    if result is not None and base is not None:
        mine = timing.at_base(result["table"])  # the run's first size is base
        mine = mine[mine["variant"].isin(FRESH_VARIANTS)]
        parts.insert(0, mine.assign(process="this server process"))
    both = pd.concat(parts, ignore_index=True)
    both = both[both["status"] == "ok"].reset_index(drop=True)
    if both.empty:
        return
    figure(
        fresh_spec(both[["process", "variant", "median_ms", "iqr_ms", "page_faults_per_call"]]),
        caption=("The same variants at the same size in this long-running server process and in two fresh "
                 "processes that differ only in glibc malloc's thresholds. Hover for page faults per call. "
                 "Measured by core.timing.run_in_fresh_process (the command line, in a subprocess)."),
        table=both[["process", "variant", "median_ms", "iqr_ms", "fraction_of_gemm", "page_faults_per_call",
                    "alloc_bytes", "peak_rss_bytes", "malloc"]],
        csv_name="timing_fresh.csv", key="fresh_fig", column_config=MEASURED_COLUMNS,
    )
    peaks = fresh["table"].groupby("process", sort=False)["peak_rss_bytes"].max()
    if peaks.notna().any():
        st.caption("Peak resident memory of each fresh process, as it measured itself (`core.timing.peak_rss_bytes`): "
                   + "; ".join(f"{mib(v)} ({k})" for k, v in peaks.items() if pd.notna(v)) + ".")


# ---- this page's caps and its store of finished runs ----------------------------------------------
MAX_BUDGET_S = 20  # total wall time of one run: checks, warm-up and rounds
MAX_SWEEP_CHARS = 60
FRESH_BUDGET_S = 3  # per fresh process, on top of ~2 s to start Python and import torch
FRESH_VARIANTS = ("gemm", "concat", "per_head_sum", "per_head_sum_out")
MAX_THREADS = max(os.cpu_count() or 1, 1)
STORED_RUNS = 32  # finished runs kept per server process, least recently viewed dropped first


@st.cache_resource(show_spinner=False)
def result_store() -> timing.ResultStore:
    """Finished runs shared by every session of this server (see ResultStore for why not cache_data)."""
    return timing.ResultStore(capacity=STORED_RUNS)


measurements(base, dtype, device)
