"""Timing: what the additive view of attention costs, measured, and why.

Every number comes from core.timing, through ui.views.timing (cached calls; the sentences written
from their numbers are ui.prose.timing): memory_table (bytes from shapes), the shipped reference run
(read_json) or run_benchmark on this server (through ui.jobs, one long job at a time), summarize,
compare_by_size and growth (what a run shows), run_in_fresh_process. Charts are built in
ui.figures.timing, so this script is the essay: prose, controls and calls. The measurement section
is one fragment: its controls and buttons rerun that section only. The allocator study behind the
page's short section on allocation is docs/timing.md.
"""

from __future__ import annotations

import math
import os
import time

import pandas as pd
import streamlit as st

from core import timing
from core.device import DTYPE_NAMES, available_devices, dtype_from_name, supported_dtypes
from ui import jobs
from ui.charts import csv_download, figure, numbers_section
from ui.checkpoint import checkpoint, unfolded
from ui.controls import MAX_BATCH, MAX_D_MODEL, MAX_HEADS, MAX_SEQ, MAX_TRACE_BYTES, Controls, budget_problem, heads_problem, show_link
from ui.figures.timing import SWEEP_COLUMN, fresh_spec
from ui.format import count, size_bytes
from ui.shell import ensure_app_shell
from ui.prose import timing as prose
from ui.views import timing as view

ensure_app_shell()

N_WAYS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"][len(timing.PROJECTION_VARIANTS)]  # variants, as a word

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
of exactly the same sum, shows what they cost on the machine the essay was measured on, measures
the machine serving it to you at the press of a button, and explains the differences.
""".replace("{N_WAYS}", N_WAYS)
)

st.markdown(f"## {N_WAYS.capitalize()} ways to write one sum")

controls = Controls()  # one per page: a restart keeps every notice
sizes_row = st.columns([1, 1, 1, 1])
batch = controls.integer("batch", "Batch B", default=timing.DEFAULT_RUN["batch"], lo=1, hi=MAX_BATCH, where=sizes_row[0])
seq = controls.integer("seq", "Sequence S", default=timing.DEFAULT_RUN["seq"], lo=1, hi=MAX_SEQ, where=sizes_row[1])
d_model = controls.integer("d_model", "Width D", default=timing.DEFAULT_RUN["d_model"], lo=1, hi=MAX_D_MODEL, where=sizes_row[2])
heads = controls.integer("heads", "Heads H", default=timing.DEFAULT_RUN["heads"], lo=1, hi=MAX_HEADS, where=sizes_row[3])
kind_row = st.columns([1, 1, 2])
device = controls.choice("device", "Device", available_devices(), default="cpu", where=kind_row[0],
                         unavailable={"cuda": "not available: torch sees no GPU on this server"})
dtype = controls.choice("dtype", "Precision", DTYPE_NAMES, default="float32", where=kind_row[1])
kv_heads = controls.kv_heads(heads, "Key/value heads H_kv", where=kind_row[2],
                             help="How many key/value heads the query heads share (grouped-query attention); "
                                  "H_kv = H shares nothing. Only the last section depends on it.")
controls.show_notices()

size_error = heads_problem(d_model, heads)
if size_error is None and dtype not in supported_dtypes(device):
    size_error = f"{dtype} does not run on {device} here; pick one of {', '.join(supported_dtypes(device))}."
bytes_per = timing.element_size(dtype)
if size_error is None:
    size_error = budget_problem({"z": batch * seq * d_model, "W_O": d_model * d_model, "out": batch * seq * d_model}, bytes_per)
base = timing.Size(batch, seq, d_model, heads, kv_heads) if size_error is None else None

if base is None:
    st.error(size_error)
else:
    st.markdown(
        f"""
All {N_WAYS} compute $\\mathrm{{out}}_{{b,s,:}} = \\sum_{{h=0}}^{{H-1}} \\sum_{{l=0}}^{{L-1}} z_{{b,h,s,l}}\\,(W_O)_{{h,l,:}}$
from the same `z` $[B, H, S, L]$ and `W_O` $[H, L, D]$: $B \\times S \\times D \\times D$ multiply-adds, which at
this size is **{prose.flop_text(timing.flops("concat", base))}** (`core.timing.flops`), the same for every one of
them. They differ only in what they put in memory on the way.
"""
    )

st.markdown(
    "\n".join(
        ["| variant | the line that does the work | what it keeps besides z, W_O and the result"
         + (" at this size |" if base is not None else " |"), "|---|---|---|"]
        + [f"| `{name}` | `{timing.VARIANTS[name].code}` | {timing.holds(name, base)} |" for name in timing.PROJECTION_VARIANTS]
    )
)

st.markdown(
    r"""
`concat` and `per_head_sum` are `core.attention.concat_then_project` and
`core.attention.project_then_sum`, the two functions the rest of the essay compares. `broadcast`
is how TransformerLens has computed each head's `result` when asked to keep it (multiply with
broadcasting, then sum over $l$); `head_loop` is how most people first write the sum.

None of them depends on how many key/value heads the layer has (the `kv_heads` control): sharing keys
and values changes where $K$ and $V$ come from, and $W_O$ only ever meets $z$, which has $H$ heads
whatever $H_\text{kv}$ is. So every number above and below about these variants is the same at any
`kv_heads`; what sharing does change is timed in the last section.
"""
)

st.markdown("### Memory, before anything runs")
size_cps = view.size_checkpoints(batch, seq, d_model, heads, kv_heads, dtype) if base is not None else {}
memory_cp = size_cps.get("memory")
if memory_cp is not None:
    checkpoint(memory_cp)
st.markdown(
    r"""
The memory each arrangement needs follows from the shapes alone. Count it in units of the output
($B \times S \times D$ numbers), beyond the inputs and the result that every arrangement must hold.
In general, when no size is 1: `concat` and `einsum` need one unit, for the side-by-side copy of
`z`; `per_head_sum` needs $H + 1$: every head's full-width result, written before they are added,
and the heads-first copy of `z` it made them from. `broadcast` needs $D + H - 1$, for two tensors
alive at once: every product $z_{b,h,s,l}\,(W_O)_{h,l,d}$ kept separately, $[B, S, H, L, D]$, which
is $H \times L = D$ units; and, while the sum over $l$ runs, its result, the per-head partial sums
$[B, S, H, D]$, $H$ units. Their peak, $D + H$, comes before the result exists, so one unit (the
result's own) is subtracted. Where an axis is 1, a rearranged copy of `z` can be a *view* of the
same memory instead, and costs nothing.
"""
)
show_memory = base is not None and unfolded(memory_cp)
if show_memory:
    st.markdown(view.memory_text(batch, seq, d_model, heads, dtype))
st.markdown(
    r"""
So the price of the additive view is not the sum: it is **materializing** the per-head results.
Written as one contraction (`einsum`), the sum over heads can become the same single product as
`concat`, and no per-head array ever exists; written as "compute every head, then add", it costs
$H$ output-sized arrays.
"""
)

if show_memory:
    mem, mem_spec, mem_numbers = view.memory(batch, seq, d_model, heads, dtype)
    view.figure(
        mem_spec,
        caption=(f"Extra memory per variant at B={batch}, S={seq}, D={d_model}, H={heads}, {dtype}, in multiples "
                 f"of the {size_bytes(mem['output_bytes'].iloc[0])} output (symmetric-log axis, so 0 can show). From "
                 "core.timing.memory_table (extra_bytes: a call's peak footprint minus its result); a run below "
                 "measures that peak for every call (peak_bytes in the CSV)."),
        numbers=mem_numbers, csv_name="timing_memory.csv", key="memory",
        column_config={"extra_mib": st.column_config.NumberColumn("extra MiB", format="%.2f"),
                       "times_output": st.column_config.NumberColumn("× output", format="%.0f")},
    )
    over = mem[mem["needs_bytes"] > MAX_TRACE_BYTES]
    if not over.empty:
        st.caption(
            f"This shared server skips a variant whose intermediates would need more than {size_bytes(MAX_TRACE_BYTES)}: "
            + ", ".join(f"`{r.variant}` ({size_bytes(r.needs_bytes)})" for r in over.itertuples())
            + " at this size. Shrink the batch or the sequence to see it run."
        )

st.markdown(
    rf"""
## Timing them

Each variant is first **checked**: its result is compared with the same sum computed in float64
from the same inputs, and must agree to within a tolerance set per precision
(`core.timing.check_tolerance`: four rounding steps of the dtype plus $\sqrt{{D}}$ steps of the
precision it accumulates in). A variant outside it is reported as wrong and never timed. Heads add
independent terms, so a head left out changes the output by about $1/\sqrt{{H}}$ of its size:
{1 / math.sqrt(MAX_HEADS):.3f} with {MAX_HEADS} heads, against a bfloat16 tolerance of
{timing.check_tolerance(dtype_from_name("bfloat16"), MAX_D_MODEL):.3f} even at $D = {MAX_D_MODEL}$. A head's
slice of $W_O$ swapped, or a transpose missing, moves it much more.

Then they are **timed in rounds**. Each round times one block of calls of every variant, in a
fresh random order, and keeps the fastest call of each block: the code's cost while it has the
processor. A block goes on calling while its calls are still getting faster (at most
{timing.SETTLE_MAX_S * 1e3:.0f} ms), because a variant that streams a large tensor can run slowly for its
first calls after other work. A slow spell of a shared machine lands on all of them alike, and
each variant's throughput is divided by the bare GEMM's *from the same round*. You see the median
of those per-round ratios with a 95 % interval: the $k$-th smallest and $k$-th largest of the
rounds, with $k$ chosen so that the interval holds the true median at least 95 % of the time
whatever the distribution (`core.timing.median_interval`; it needs {timing.MIN_ROUNDS} rounds). A
headline says "slower" or "faster" only when the whole interval is on one side of 1, and that it
could not tell otherwise. (The clock, the settling and what they changed: `docs/timing.md`.)

Until you press the button, the numbers below are the **reference run** shipped with the essay,
measured by the same code on the machine named above them.
"""
)


@st.fragment
def measurements(base: timing.Size | None, dtype: str, device: str) -> None:
    """The run controls, the button, the results (this server's, or the reference run) and the fresh repeat."""
    for key in ("sweep", "sweep_values", "budget", "threads", "forward"):
        controls.values.pop(key, None)  # re-read this section's values on every rerun of it
    axis = controls.choice("sweep", "Also sweep one size over several values", ["none", "seq", "heads", "batch", "d_model"],
                           default="seq", help="Every variant is timed at each value, with the other sizes as above.")
    run_row = st.columns([2, 1, 1])
    sweep_text = controls.text(
        "sweep_values", "Sweep values (blank: a default range for the axis)", default="", max_chars=MAX_SWEEP_CHARS,
        where=run_row[0], help=f"Whole numbers separated by commas, at most {view.MAX_SWEEP_VALUES}.",
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
        sizes, sweep_notes = view.plan_sizes(base, axis, sweep_text.strip() or view.SWEEP_DEFAULTS.get(axis, ""), bytes_per)
        for note in sweep_notes:
            st.warning(note, icon=":material/link:")
    variants = list(timing.PROJECTION_VARIANTS) + (list(timing.FORWARD_VARIANTS) if forward else [])
    key = ("timing", device, dtype, batch, seq, d_model, heads, axis,
           tuple((s.batch, s.seq, s.d_model, s.n_heads) for s in sizes), budget, threads, forward)

    pressed = st.button("Run benchmark", type="primary", key="run", disabled=base is None, icon=":material/timer:")
    sweep_desc = (f" ({axis} = {', '.join(str(v) for v in sorted(getattr(s, SWEEP_COLUMN[axis]) for s in sizes))})"
                  if axis != "none" and len(sizes) > 1 else "")
    st.caption(f"{count(len(sizes), 'size')}{sweep_desc} × {len(variants)} variants, within "
               f"{budget} s, on this server. Nothing is timed until you press the button; finished runs are kept on "
               "this server, so a shared link shows them without running again.")
    if pressed and base is not None:
        jobs.run_job(key, view.benchmark_job(sizes, dtype=dtype, device=device, variants=variants, budget_s=budget,
                                             max_bytes=MAX_TRACE_BYTES, threads=threads), busy_message=BUSY)

    result = view.server_run(key, axis, forward)
    reference = None if result is not None else view.reference_run(device)
    shown = result or reference
    if result is not None:
        ago = time.time() - result["finished"]
        st.success(
            f"Measured {'just now' if ago < 60 else f'{ago / 60:.0f} min ago'} on this server "
            f"({prose.machine_text(result['machine'])}), in {result['wall_s']:.1f} s; "
            + (f"{count(result['rounds'], 'round')} at the size above." if result["rounds"] else
               "nothing at the size above got its rounds within the budget (the notes below say why)."),
            icon=":material/timer:",
        )
    elif reference is not None:
        first = reference["first"]
        same = (base is not None and first["dtype"] == dtype and (first["batch"], first["seq"], first["d_model"],
                                                                   first["n_heads"]) == (batch, seq, d_model, heads))
        st.info(reference["provenance"][same], icon=":material/history:")
    elif base is not None:
        st.info("No measurement for these settings on this server yet, and no reference run for this device. "
                "Press **Run benchmark**.", icon=":material/timer:")
    if shown is not None:
        slowest_cp = shown["slowest_cp"]
        if slowest_cp is not None:
            checkpoint(slowest_cp)
        if slowest_cp is None or unfolded(slowest_cp):
            show_run(shown, source="this server" if result is not None else "the reference machine")

    st.markdown(
        r"""
### Why one big product wins

A matrix product $[M, K] \times [K, N]$ does $2MKN$ operations on $MK + KN + MN$ numbers. When all
three sizes are large, every number fetched from memory takes part in many multiply-adds, so the
arithmetic units, not memory, set the pace. `concat` is one such product with $M = B \times S$ and
$K = N = D$; the copy that puts the heads side by side touches each of the $B \times S \times D$
inputs once, a small cost next to $2BSD^2$ operations, and shrinking relative to them as $D$ grows.

`einsum` can do the same: asked to sum over $h$ and $l$ together, `torch.einsum` makes the same
side-by-side copy and calls one product, so the sum over heads is folded into the product's inner
loop. Whether that makes it as fast as `concat` is a question for the clock, not the mechanism:
einsum also has to work out, on every call, how to lay the contraction out, a fixed price that
matters most when the product itself is small.
"""
    )
    if shown is not None and shown["einsum"]:
        st.markdown(shown["einsum"])
    st.markdown(
        r"""
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
    if shown is not None and shown["sweep"] is not None:
        show_sweep(shown)
    elif shown is not None:
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
        """
## The hidden part of the cost: a fresh allocation

Part of what the materialized sum costs is not arithmetic at all. Every call of `per_head_sum`
asks for fresh memory for its per-head results. If the memory allocator hands back memory the
process used a moment ago, that is nearly free. If it has to ask the operating system for new
memory, the kernel fills each page with zeros the first time it is touched (a *page fault*), and a
call that writes a large result can pay for thousands of them. `per_head_sum_out` does the
identical copy, batched product and sum into buffers allocated once: the difference between the
two, round by round, is the price of allocating, and the **page faults per call** column shows
where it goes. On a GPU, PyTorch's caching allocator keeps freed blocks between calls, so there
the materialized sum costs memory and bandwidth, not page faults.

When an allocator hands memory back, and how that changes with what a process did before, is a
study of its own: `docs/timing.md` in the essay's repository ("The allocator", "Where the result
lands") has the measurements, the settings and `scripts/heap_layouts.py`.
"""
    )
    if shown is not None and shown["page_faults"]:
        st.markdown(shown["page_faults"])

    fresh_section(base, dtype, device, threads, key, result)

    sharing_section(base, dtype, device, budget, threads, size_cps, reference)

    st.markdown(
        r"""
## Reading these numbers honestly

- **They are one machine's.** A public server shares its cores with other readers and other
  programs; when another process holds a core, a two-threaded product can wait a whole scheduler
  tick (milliseconds) for its second thread, and a wall clock counts the wait. That is why this page
  starts with one thread, timed by its own CPU time.
- **Ratios within a round, medians over rounds.** A slow spell moves every variant of a round
  together, and one slow round moves a median hardly at all. The interval says how sure the run is.
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


def sharing_section(base: timing.Size | None, dtype: str, device: str, budget: int, threads: int, size_cps: dict,
                    reference: dict | None) -> None:
    """Grouped-query attention: what sharing keys and values stores, what it computes, and its time.
    ``reference``: the shipped run if the section above already read it (None: read it here if needed)."""
    st.markdown(
        r"""
## Sharing keys and values: grouped-query attention

Everything above is the attention this essay teaches: every head has its own queries, keys and
values. Most large models released since 2023 (Llama 3, Mistral, Qwen 2.5, Gemma) run a variant
of it. They keep $H$ query heads but only $H_\text{kv}$ key/value heads, and let each key/value
head serve a group of $G = H / H_\text{kv}$ query heads: query head $h$ reads the keys and values
of head $h // G$ (Ainslie et al., 2023, *GQA*). With $H_\text{kv} = H$ nothing is shared (plain
multi-head attention); with $H_\text{kv} = 1$ all heads share one (*multi-query attention*,
Shazeer, 2019). The `kv_heads` control at the top sets $H_\text{kv}$.

Why would anyone do that? When a model writes text it produces one token at a time, and every
new token's queries must be scored against the keys of **all** the tokens before it, and read
their values. Recomputing those for the whole past at every step would be wasteful, so the model
keeps them: the **KV cache**. Its size grows with every token, in every layer, and it, not the
arithmetic, is often what limits how long a text or how many readers a GPU can serve at once.
"""
    )
    if base is None:
        return
    cache_cp = size_cps["kv_cache"]
    checkpoint(cache_cp)
    if unfolded(cache_cp):
        _, sentence, table_md = view.kv_cache(base.batch, base.seq, base.d_model, base.n_heads, base.n_kv_heads, dtype)
        st.markdown(sentence)
        st.markdown(table_md)
        st.caption("This layer's KV cache with the page's H_kv and without sharing: 2 (a key and a value) · H_kv · L "
                   "numbers per token (`core.timing.kv_cache_table`, through `core.presets.kv_cache_bytes`). A whole "
                   "model multiplies it by its number of layers.")

    st.markdown(
        r"""
What sharing does **not** shrink is the attention itself. Each query head still has its own
queries, so it still scores every key and still makes its own pattern: heads that share keys
attend differently because their queries differ. The $K$ and $V$ projections get cheaper (each
makes $H_\text{kv} \cdot L$ columns instead of $D$), the cache gets smaller, and the scores stay
exactly as many.
"""
    )
    scores_cp = size_cps["scores"]
    checkpoint(scores_cp)
    if unfolded(scores_cp):
        st.markdown(prose.scores_sentence(base))

    st.markdown(
        r"""
### Timing the shared forward

Two ways to run a layer with shared keys and values are timed against the same layer without
sharing (`forward_sdpa`: the same $W_Q$ and $W_O$, one key/value head per query head):

- `gqa_sdpa`: `F.scaled_dot_product_attention(q, k, v, enable_gqa=True)` takes $K$ and $V$ with
  $H_\text{kv}$ heads and lets each query head read its group's, copying nothing;
- `gqa_expand`: first repeats $K$ and $V$ to $H$ heads (`core.attention.expand_kv`, a copy, as
  Hugging Face's `repeat_kv` does), then runs plain attention.

All three project $x$ through one packed matrix and end with the same `concat_then_project`. They
are checked against core's float64 forward on the same weights and timed in interleaved rounds
like the variants above; the ratio of each to `forward_sdpa` is taken within each round.
"""
    )
    shares = base.n_kv_heads < base.n_heads
    gqa_key = ("timing-gqa", device, dtype, base.batch, base.seq, base.d_model, base.n_heads, base.n_kv_heads,
               budget, threads)
    pressed = st.button("Time the shared forward", key="run_gqa", disabled=not shares, icon=":material/timer:")
    st.caption((f"`forward_sdpa`, `gqa_sdpa` and `gqa_expand` at {prose.gqa_sizes_text(base)}, with the bare GEMM "
                f"for scale, within {budget} s and {count(threads, 'thread')}, on this server." if shares else
                f"With H_kv = H = {base.n_heads} there is nothing to share, so there is nothing to time: pick fewer "
                "key/value heads at the top."))
    if pressed and shares:
        jobs.run_job(gqa_key, view.benchmark_job([base], dtype=dtype, device=device,
                                                 variants=("gemm", *timing.GQA_COMPARISON), budget_s=budget,
                                                 max_bytes=MAX_TRACE_BYTES, threads=threads), busy_message=BUSY)
    result = view.gqa_server_run(gqa_key) if shares else None
    if result is None and reference is None:
        reference = view.reference_run(device)
    shown = result or (reference or {}).get("gqa")
    if result is not None:
        st.success(f"Measured on this server ({prose.machine_text(result['machine'])}), in {result['wall_s']:.1f} s.",
                   icon=":material/timer:")
    elif shown is not None:
        same = shown["size"] == base and shown["dtype"] == dtype
        st.info(f"**Not measured on this server yet.** Shown: the reference run shipped with this essay, measured at "
                f"{prose.gqa_sizes_text(shown['size'])}, {shown['dtype']}"
                + ("" if same else " (not the settings above)")
                + f", on {prose.machine_text(reference['machine'])} on {reference['date'][:10]}, by `{reference['command']}`.",
                icon=":material/history:")
    else:
        st.info("No measurement of sharing for these settings yet. Press **Time the shared forward**.",
                icon=":material/timer:")
    if shown is not None:
        st.markdown("\n".join(f"- {line}" for line in shown["sentences"]))
        if shown["spec"] is not None:
            caption = (f"Time per call of each grouped form ÷ that of the same layer without sharing, at "
                       f"{prose.gqa_sizes_text(shown['size'])}, {shown['dtype']}: the median over rounds of the ratio "
                       "within each round, and its 95 % interval (whiskers). Left of the dashed line is faster than "
                       "without sharing. Measured by core.timing.run_benchmark; ratios from core.timing.gqa_comparison.")
            view.figure(shown["spec"], caption=caption, numbers=shown["numbers"], csv_name="timing_gqa.csv",
                        key="gqa_fig", column_config=view.MEASURED_COLUMNS)
        for variant, status, note in shown["not_ok"]:
            st.caption(f"`{variant}` {status}: {note}")
    st.markdown(
        r"""
What to expect, and why: at tiny sizes every form pays mostly the fixed price of its calls
(Python, dispatch, a few microseconds each), and sharing saves nothing there. At sizes where the
arithmetic sets the time and sequences are short, most of it is in the projections, so the smaller
$K$ and $V$ projections can show; as $S$ grows the scores and the weighted sum ($\propto S^2$)
take over, and those are the same with or without sharing. `gqa_expand` pays for
copying $K$ and $V$ back up to $H$ heads on every call. Where sharing pays most is not on this
chart at all: it is the cache above, read again for every generated token.
"""
    )
    st.code(f"python -m core.timing --device {device} --dtype {dtype} --batch {base.batch} --seq {base.seq} "
            f"--d-model {base.d_model} --heads {base.n_heads} --kv-heads {base.n_kv_heads} --gqa --variants gemm "
            f"--threads {threads} --budget {budget}", language=None, wrap_lines=True)


def show_run(shown: dict, source: str) -> None:
    """Headlines, the ratio chart with its numbers, and the notes of one run (this server's or the reference),
    all prepared by ui.views.timing.run_view."""
    st.markdown("\n".join(f"- {line}" for line in shown["headlines"]))
    first = shown["first"]
    if shown["ratio_spec"] is not None:
        view.figure(
            shown["ratio_spec"],
            caption=(f"Each variant's throughput as a fraction of the bare GEMM's at {prose.sizes_text(first)}, "
                     f"{first['dtype']} on {first['device']}, measured on {source} ({prose.machine_text(shown['machine'])}): "
                     "the median over rounds of the ratio within each round, and its 95 % interval (whiskers). The "
                     "dashed line is 1, the GEMM itself. Measured by core.timing.run_benchmark; intervals from "
                     "core.timing.median_interval."),
            numbers=shown["base_numbers"], csv_name="timing_base.csv", key="bars", column_config=view.MEASURED_COLUMNS,
        )
    above = shown["above"]
    if above:
        st.warning(f"{', '.join(f'`{v}`' for v in above)} measured faster than the bare GEMM, whose work "
                   f"{'it contains' if len(above) == 1 else 'each contains'}, with the whole interval above 1: that "
                   "is noise from that machine, not a property of the code. Run again, or try 1 thread.",
                   icon=":material/warning:")
    if shown["noisy"]:
        st.caption(shown["noisy"])
    for variant, status, note in shown["not_ok"]:
        st.caption(f"`{variant}` {status}: {note}")
    csv_download(shown["csv"], "timing.csv", key="all_csv", label="Download every measurement (CSV)")
    if (box := numbers_section("The machine these numbers come from", key="machine")) is not None:
        with box:
            st.dataframe(shown["machine_table"], hide_index=True, width="stretch")


def show_sweep(shown: dict) -> None:
    """Time per call against the swept size, and the whole forward's if it was timed (run_view prepared both)."""
    axis, sweep = shown["axis"], shown["sweep"]
    view.figure(
        sweep["spec"],
        caption=(f"Median time per call against {axis}, both axes logarithmic; the dashed grey line is the bare "
                 "GEMM measured in the same rounds. A variant's line stops where it was skipped (memory cap or "
                 "time budget; see the table). Measured by core.timing.run_benchmark."),
        numbers=sweep["numbers"], csv_name="timing_sweep.csv", key="sweep", column_config=view.MEASURED_COLUMNS,
    )
    st.markdown(sweep["sentence"])
    if shown["forward"] is not None:
        view.figure(
            shown["forward"]["spec"],
            caption=(f"The whole attention forward against {axis}: core's instrumented forward (every intermediate "
                     "kept), torch.nn.MultiheadAttention and F.scaled_dot_product_attention, with the bare GEMM "
                     "for scale. Measured by core.timing.run_benchmark."),
            numbers=shown["forward"]["numbers"], csv_name="timing_forward.csv", key="forward",
            column_config=view.MEASURED_COLUMNS,
        )


def fresh_section(base: timing.Size | None, dtype: str, device: str, threads: int, key: tuple, result: dict | None) -> None:
    """The repeat in fresh processes: refused, with a message, when the memory for one isn't free."""
    st.markdown(
        "A process's allocation history is part of that price. To see it, repeat the measurement in two **fresh "
        "processes**, one with the allocator's defaults and one tuned to keep freed memory "
        "(`core.timing.MALLOC_SETTINGS`; what the settings do is in `docs/timing.md`). Each starts Python and torch "
        f"from scratch, then times {', '.join(f'`{v}`' for v in FRESH_VARIANTS)} at the size above for "
        f"{FRESH_BUDGET_S} s. They run one at a time, and only when this server has the memory for one more Python "
        "with torch (`core.timing.fresh_process_problem`)."
    )
    fresh_key = key + ("fresh",)
    if st.button("Repeat in two fresh processes", key="fresh", disabled=base is None, icon=":material/restart_alt:"):
        problem = timing.fresh_process_problem(base, dtype, FRESH_VARIANTS)
        if problem:
            st.warning(problem, icon=":material/memory:")
        else:
            try:
                jobs.run_job(fresh_key, fresh_job(base, dtype, device, threads), busy_message=BUSY,
                             waiting_text="Starting a fresh process…")
            except (RuntimeError, OSError) as exc:  # run_in_fresh_process says why in one line
                st.error(f"The repeat in a fresh process did not work out: {str(exc)[:300]}")
    fresh = jobs.stored(fresh_key)
    if fresh is None:
        return
    parts = [fresh["result"]]
    if result is not None:
        mine = result["at_base"]  # the run's first size is base
        mine = mine[mine["variant"].isin(FRESH_VARIANTS)]
        parts.insert(0, mine.assign(process="this server process"))
    both = pd.concat(parts, ignore_index=True)
    both = both[both["status"] == "ok"].reset_index(drop=True)
    if both.empty:
        return
    figure(
        fresh_spec(both[["process", "variant", "median_ms", "iqr_ms", "page_faults_per_call"]]),
        caption=("The same variants at the same size in this long-running server process and in two fresh "
                 "processes that differ only in the allocator's settings. Hover for page faults per call. "
                 "Measured by core.timing.run_in_fresh_process (the command line, in a subprocess)."),
        table=both[["process", "variant", "median_ms", "iqr_ms", "fraction_of_gemm", "page_faults_per_call",
                    "alloc_bytes", "peak_rss_bytes", "malloc"]],
        csv_name="timing_fresh.csv", key="fresh_fig", column_config=view.MEASURED_COLUMNS,
    )
    peaks = fresh["result"].groupby("process", sort=False)["peak_rss_bytes"].max()
    if peaks.notna().any():
        st.caption("Peak resident memory of each fresh process, as it measured itself (`core.timing.peak_rss_bytes`): "
                   + "; ".join(f"{size_bytes(v)} ({k})" for k, v in peaks.items() if pd.notna(v)) + ".")


def fresh_job(base: timing.Size, dtype: str, device: str, threads: int):
    """Both fresh processes, one after the other, as one job for ui.jobs.run_job."""
    def job(progress) -> pd.DataFrame:
        parts = []
        for i, setting in enumerate(timing.MALLOC_SETTINGS):
            progress(i / len(timing.MALLOC_SETTINGS), f"fresh process, malloc {setting}…")
            part = timing.run_in_fresh_process(
                base, dtype=dtype, device=device, variants=FRESH_VARIANTS, budget_s=FRESH_BUDGET_S,
                max_bytes=MAX_TRACE_BYTES, threads=threads, malloc=setting, timeout_s=FRESH_BUDGET_S + 30,
            )
            parts.append(part.assign(process=f"fresh process, malloc {setting}"))
        return pd.concat(parts, ignore_index=True)

    return job


# ---- this page's caps ---------------------------------------------------------------------------------
MAX_BUDGET_S = 20  # total wall time of one run: checks, warm-up and rounds
MAX_SWEEP_CHARS = 60
FRESH_BUDGET_S = 3  # per fresh process, on top of ~2 s to start Python and import torch
FRESH_VARIANTS = ("gemm", "concat", "per_head_sum", "per_head_sum_out")
MAX_THREADS = max(os.cpu_count() or 1, 1)
BUSY = ("Another reader's benchmark or training run is using this server right now, and two at once would "
        "time each other. Press the button again in a few seconds.")


measurements(base, dtype, device)
