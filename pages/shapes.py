"""The shape table: every tensor of the attention path at any size, traced from the real code.

Numbers come from core.shapes (through the cached calls of ui.figures.shapes); the figures are
built there too, so this script is the essay: prose, controls, and calls.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.device import DTYPE_NAMES, DTYPES
from core.shapes import AXIS_NAMES, STEP_IDS, Sizes, panel_shape, position_mixing, step_words
from ui.charts import csv_download, figure
from ui.controls import (
    MAX_SEED,
    MAX_SYMBOLIC_BATCH,
    MAX_SYMBOLIC_D_MODEL,
    MAX_SYMBOLIC_HEADS,
    MAX_SYMBOLIC_SEQ,
    MAX_SYMBOLIC_VOCAB,
    Controls,
    budget_problem,
    heads_problem,
    show_link,
)
from ui.figures.shapes import (
    endings_numbers,
    endings_spec,
    flops,
    flow_numbers,
    flow_spec,
    live_panels,
    n,
    panel_numbers,
    shape_md,
    size_bytes,
    step_heatmap_spec,
    step_table_md,
    traced_ops,
    traced_table,
    walk_numel,
)
from ui.shell import ensure_app_shell

ensure_app_shell()

st.title("The shape table")
st.markdown(
    """
Before attention does anything clever it moves numbers between boxes of fixed shape. If you can
say, at every step, what shape the tensor is and which axis a product sums away, you can read the
layer's whole data flow off one table, and you can see *why* the heads' outputs may be added up
instead of glued together.

The table below is the one the first source post walks through: a batch of $B$ sequences of $S$
tokens from a vocabulary of $V$ words, a model width $D$, and $H$ heads of width $L = D/H$. None
of it is typed in. The page runs this essay's own attention code on PyTorch's **meta device**,
where a tensor has a shape and a dtype but no numbers: every operation still works out the shape
of its result, so a run takes milliseconds and no memory, whether $S$ is 20 or a million.
A recorder watches each torch call and notes the line of code that made it, and the table is read
off that record. Change any size and the whole table is traced again.

Two conventions, as in the code: heads, rows and positions count from 0 (heads $0 \\dots H-1$),
and the letter $V$ is the vocabulary size, so the queries, keys and values are written in lower
case, `q`, `k` and `v`.
"""
)

# ---- sizes (page level: every section depends on them) ---------------------------------------

SEED_SIZES = {"batch": 1, "seq": 20, "vocab": 50_000, "d_model": 512, "heads": 8}
# The from-scratch post's toy: a five-token sentence, width 16, four heads of width 4.
SMALL_SIZES = {"batch": 1, "seq": 5, "vocab": 10, "d_model": 16, "heads": 4}


def _sizes_help(sizes: dict) -> str:
    """ "B=1, S=20, V=50,000, D=512, H=8": a preset's sizes, read off the preset itself."""
    return ", ".join(f"{letter}={sizes[key]:,}" for letter, key in
                     zip("BSVDH", ("batch", "seq", "vocab", "d_model", "heads"), strict=True))


def _use(sizes: dict) -> None:
    for key, value in sizes.items():
        st.session_state[key] = value


controls = Controls()
size_cols = st.columns(5)
B = controls.integer("batch", "Batch $B$", default=SEED_SIZES["batch"], lo=1, hi=MAX_SYMBOLIC_BATCH,
                     where=size_cols[0], help="Sequences processed together.")
S = controls.integer("seq", "Sequence $S$", default=SEED_SIZES["seq"], lo=1, hi=MAX_SYMBOLIC_SEQ,
                     where=size_cols[1], help="Tokens per sequence.")
V = controls.integer("vocab", "Vocabulary $V$", default=SEED_SIZES["vocab"], lo=1, hi=MAX_SYMBOLIC_VOCAB,
                     where=size_cols[2], help="Distinct token ids.")
D = controls.integer("d_model", "Width $D$", default=SEED_SIZES["d_model"], lo=1, hi=MAX_SYMBOLIC_D_MODEL,
                     where=size_cols[3], help="d_model: the length of every token's vector.")
H = controls.integer("heads", "Heads $H$", default=SEED_SIZES["heads"], lo=1, hi=MAX_SYMBOLIC_HEADS,
                     where=size_cols[4], help="Must divide the width: each head gets L = D / H dimensions.")
dtype_col, preset_col = st.columns([3, 2], vertical_alignment="bottom")
dtype = controls.choice("dtype", "Bytes per number (the memory column)", DTYPE_NAMES, default="float32",
                        where=dtype_col, help="Shapes don't depend on it; memory does.")
with preset_col, st.container(horizontal=True, horizontal_alignment="right"):
    st.button("The post's sizes", on_click=_use, args=(SEED_SIZES,), icon=":material/restart_alt:",
              help=_sizes_help(SEED_SIZES))
    st.button("A tiny model", on_click=_use, args=(SMALL_SIZES,), icon=":material/zoom_in:",
              help=f"{_sizes_help(SMALL_SIZES)}: small enough to look at every number")
controls.show_notices()

problem = heads_problem(D, H, hi=MAX_SYMBOLIC_HEADS)
traced: dict = {}
if problem:
    st.error(problem, icon=":material/block:")
else:
    traced = traced_table(B, S, V, D, H, dtype)
    if "error" in traced:
        st.error(
            f"torch refused to trace these sizes. At `{traced['where']}` (`{traced['code']}`) it said: "
            f"*{traced['error'].replace('*', '')}*. A tensor's size in bytes has to fit in a signed "
            "64-bit number (8 EiB), and the one made on that line would not. Make $S$, $B$ or $H$ smaller.",
            icon=":material/block:",
        )
        traced = {}
ok = bool(traced)

# ---- the table --------------------------------------------------------------------------------

TABLE_HEADING = "## Eleven steps from token ids to the output"
if not ok:
    st.markdown(TABLE_HEADING)
else:
    table: pd.DataFrame = traced["table"]
    summary: dict = traced["summary"]
    by_step = table.set_index("step")
    st.markdown(f"{TABLE_HEADING}\n\n{step_table_md(table)}")
    st.caption(
        "Traced by `core.shapes.shape_table` on the meta device. *Italics* mark the axis a product "
        "sums away: it appears in both inputs and not in the output ("
        + ", ".join(f"*{k}* {v}" for k, v in AXIS_NAMES.items()) + "). FLOPs count 2 per multiply-add, "
        "1 per addition or division and 5 per softmax entry. Steps 8, 9 and 8′, 9′ are the two endings; "
        f"they are compared below. Head width $L = D/H$ = {n(Sizes(B, S, V, D, H).L)}; the largest tensor "
        f"is step {summary['largest_step']}'s output, {summary['largest_sym']}: "
        f"{size_bytes(summary['largest_bytes'])} in {dtype}."
    )
    st.markdown(
        f"**What the arithmetic costs** (`core.shapes.path_summary`). Steps 3–9, the path with the "
        f"embedding read as a lookup: **{flops(summary['attention_path_flops'])} FLOPs**. Step 2 written as "
        f"the table's one-hot product would add {flops(summary['lookup_flops'])} on its own, "
        f"{summary['lookup_share']:.0%} of the {flops(summary['total_flops'])} of steps 1–9; real models "
        f"never pay it, because they index the rows of $W_E$ instead. Parameters: "
        f"{n(summary['total_params'])}."
    )
    with st.expander("Every column, as numbers"):
        st.dataframe(
            traced["numeric"], hide_index=True, width="stretch", height=36 * (len(table) + 1) + 3,  # every row
            column_config={c: st.column_config.NumberColumn(c, format="localized") for c in
                           ("param_count", "flops", "matmul_flops", "output_elements", "output_bytes")},
        )
        st.caption(
            "`held_as` is the shape the code really holds: `core.attention.concat_then_project` keeps "
            "batch and position on one axis of B·S rows, so step 8 is (B·S)×D in memory, the same "
            "numbers in the same order as B×S×D. `matmul_flops` is the product part alone, as "
            "`torch.utils.flop_counter` counts it. The CSV keeps every count as an exact whole number."
        )
        csv_download(traced["exact"], f"shape_table_B{B}_S{S}_V{V}_D{D}_H{H}_{dtype}.csv", key="table_csv",
                     label="Download the table (CSV)")

mixing = position_mixing()
st.markdown(
    rf"""
**Reading the table.** Every product in attention follows one rule: it pairs an axis of the left
input with an equally long axis of the right input, multiplies along it and adds up, so that axis
disappears; every other axis passes straight through. Step 2 is the plainest case,

$$
\underbrace{{B \times S \times \mathit{{V}}}}_{{\text{{one-hot rows}}}} \;\cdot\;
\underbrace{{\mathit{{V}} \times D}}_{{W_E}} \;\longrightarrow\; B \times S \times D ,
$$

and reading the *sums over* column from top to bottom tells the story of the layer. $V$ goes at
step 2: each token keeps one row of $W_E$. $D$ goes at step 5: every head reads the whole width of
every token. $L$ goes at step 6: a query and a key are compared coordinate by coordinate.

Step {mixing['first_meet']} is also where positions first meet: its output carries the position
axis twice, S×S, and entry $(s, t)$ is $q_s \cdot k_t$: the query of position $s$ against the
key of position $t$. Step {mixing['sums_positions']} finishes what it began: the softmax turns each row into
weights, and the product sums the key axis $S$ away, so each position's output is a weighted
average of the values of the positions it looked at. Steps {' and '.join(mixing['steps'])} are
the only steps where one position reads another; everywhere else, tokens are processed one at a
time. At step 9 the summed axis is $D = H \cdot L$, all heads side by side, and that single sum is
what the additive ending (8′, 9′) splits into $H$ pieces.

One detail the post's table leaves implicit: the input to step 1 is not B×S×V but the B×S grid of
integer token ids; the one-hot rows are what step 1 makes of them.
"""
)

# ---- the picture ------------------------------------------------------------------------------

st.markdown("## The same path as a picture")
if ok:
    figure(
        flow_spec(B, S, V, D, H, dtype),
        caption=(
            "The steps of the table as boxes, read top to bottom (`core.shapes.flow_edges`); each line is "
            "a tensor, labelled with its shape, and drawn thicker the more memory it takes (log scale). "
            "`@` is a matrix product, as in the code. The path forks after step 7 into the two endings "
            "and meets again at the output. Hover for exact sizes."
        ),
        table=flow_numbers(traced["edges"]), csv_name="shape_flow_edges.csv", key="flow",
        table_label="Every arrow: its tensor, shape and size",
    )

# ---- the code ---------------------------------------------------------------------------------

st.markdown(
    """
## The code behind each row

Each row of the table was made by one line of `core`. These are those lines, read from the source
files while the table was traced; the comment above each says which file and line to open. Steps
1–3 live in `core/shapes.py` (the attention module starts from the embeddings $x$); everything
from step 5 on is `core/attention.py`, the same code the other pages run on real numbers.
"""
)
if ok:
    ops = traced_ops(B, S, V, D, H)
    st.code(
        "\n".join(f"# step {r['step']}: {r['operation']}  ({r['where']})\n{r['code']}\n" for _, r in table.iterrows()),
        language="python",
    )
    st.markdown(
        f"The table has {len(table)} rows; tracing it took {n(len(ops))} torch calls. Most steps are one call, "
        "but some lines do two things (`q @ k.transpose(-1, -2)` transposes, then multiplies), the scores "
        "are divided by $\\sqrt{L}$ in a call of their own, and a few calls only reshape. The list has "
        "every one, as the recorder in `core.shapes` saw it, with the step it belongs to."
    )
    with st.expander(f"Every torch call, in order: the {n(len(ops))} calls"):
        st.dataframe(ops, hide_index=True, width="stretch")
        csv_download(ops, "shape_torch_calls.csv", key="ops_csv")

# ---- the source's two slips -------------------------------------------------------------------

SLIPS_HEADING = "## Two slips in the printed table"
if not ok:
    st.markdown(SLIPS_HEADING)
else:
    slips = traced["slips"]
    shown = lambda t: "×".join(n(v) for v in t)  # noqa: E731
    if slips["reversed_error"]:
        outcome = f"Multiply by it and torch refuses: *{slips['reversed_error']}*."
    else:
        outcome = (f"At these particular sizes it doesn't even fail: broadcasting turns it into a "
                   f"{shown(slips['reversed_result'])} tensor that is not the scores at all, a silent bug.")
    st.markdown(
        f"""
{SLIPS_HEADING}

The post's table is right about the mathematics and loose in two places of notation. Both are the
kind of slip that costs a student an afternoon, so here they are, checked by torch at your sizes
(`core.shapes.seed_slips`).

**One head printed as if it were all of them.** Step 5's output is printed as 1×1×20×64. That is
the shape of a single head, `q[:, h:h+1]`, which here is {shown(slips['one_head'])}. The layer
computes all $H$ heads at once, and `q` is B×H×S×L = {shown(slips['all_heads'])}. Read every
per-head shape in the post with $H = 1$: one head at a time.

**kᵀ written backwards.** The transposed keys are given as L×S×H×B, which is *every* axis of `k`
reversed: `k.permute(3, 2, 1, 0)` is {shown(slips['k_reversed'])}. That is what `.T` does to a 4-D
array in NumPy (and, with a deprecation warning, in PyTorch). {outcome} Attention needs only the
last two axes swapped, so that each key becomes a column: `k.transpose(-1, -2)` (or `k.mT`) is
B×H×L×S = {shown(slips['k_T'])}, and `q @ k.transpose(-1, -2)` is the B×H×S×S =
{shown(slips['scores'])} block of scores, one S×S table per head.
"""
    )

# ---- the two endings --------------------------------------------------------------------------

st.markdown(
    r"""
## Two ways to finish

Steps 8 and 9 are how the layer is usually computed: glue the $H$ head outputs into one row of
width $D$ and multiply by the $D \times D$ matrix $W_O$. Steps 8′ and 9′ compute the same function
the way interpretability research reads it: keep the heads apart, give head $h$ its own $L \times D$
slice `W_O[h]`, rows $hL \dots hL+L-1$ of $W_O$, and add the $H$ results. It is the sum of step 9,
split at the head boundaries (heads $0 \dots H-1$, coordinates from 0, as in the code):

$$
\mathrm{out}_{s,j} \;=\; \sum_{i=0}^{D-1} \mathrm{concat}_{s,i}\,(W_O)_{i,j}
\;=\; \sum_{h=0}^{H-1} \sum_{l=0}^{L-1} z^{h}_{s,l}\,(W_O)_{hL+l,\;j} ,
\qquad \mathrm{concat}_{s,\,hL+l} = z^{h}_{s,l} .
$$
"""
)
if ok:
    st.markdown(
        f"""
**Neither ending does more arithmetic.** Counted exactly (`core.shapes.path_summary`), both do
{n(summary['concat_multiplies'])} multiplications, and {n(summary['concat_adds'])} against
{n(summary['additive_adds'])} additions: every output number is $D$ products and $D - 1$ additions
either way. The FLOP column seems to charge the additive ending extra
({flops(summary['additive_flops'])} against {flops(summary['concat_flops'])}), but that is the
2-per-multiply-add convention: it charges every dot product one addition more than it makes, and
8′ has $H$ times as many dot products as step 9, each $H$ times shorter. The surplus is exactly
step 9′'s additions, counted twice. Step 9 does all of them
inside one large product, which is why it is the fast way to run the layer; 8′ and 9′ do the last
$H - 1$ additions of each sum outside, which is why they are the clear way to read it.

**What it can cost is memory, and only if you materialize the heads' results.** Step 8′ as written
here stores a width-$D$ vector per head per token: $H$ = {summary['memory_ratio']} times what step 8
holds ({size_bytes(summary['additive_bytes'])} against {size_bytes(summary['concat_bytes'])}), the
long bar below. Nothing in the mathematics forces that copy. Written as one contraction,
`torch.einsum("bhsl,hld->bsd", z, W_O)` sums over $h$ and $l$ together, keeps nothing per head, and
runs as the same single product as step 9; the *Timing* page measures it at that speed. The
per-head tensor is worth its memory when you want to look at each head's contribution, which is
what interpretability tools keep it for (TransformerLens's `hook_result`, off unless you ask for
it). The *Concat versus sum* page runs both endings on real numbers and measures how far apart
rounding takes them.
"""
    )
    figure(
        endings_spec(B, S, V, D, H, dtype),
        caption=(f"What each ending keeps in memory, step by step, from the heads' outputs z (step 7) to "
                 f"the layer's output, at {dtype} (`core.shapes.shape_table`). The long bar is step 8′'s "
                 "per-head results."),
        table=endings_numbers(B, S, V, D, H, dtype), csv_name="shape_endings_memory.csv", key="endings",
        table_label="The two endings, as numbers",
        column_config={c: st.column_config.NumberColumn(c, format="localized") for c in ("elements", "bytes", "FLOPs")},
    )

# ---- real values ------------------------------------------------------------------------------

st.markdown(
    """
## Look inside a step

Shapes are the skeleton; here is the flesh. Pick a step to see its actual output, computed on real
numbers at the sizes above: token ids, embeddings and every weight are drawn from the seed, so the
same link shows the same numbers to everyone. A tensor with more than two axes is shown one
matrix at a time: choose the sequence in the batch, and the head where there is a head axis.
"""
)

# "Look inside a step" computes real values, so it has caps of its own, far below the shared ones.
LIVE_MAX_ELEMENTS = 2**21  # every tensor of one real walk together (8 MiB in float32)
LIVE_MAX_CELLS = 16_384  # cells in one heatmap: more than this is unreadable and slow to draw

live = False
seed = 0
if ok:
    numel = walk_numel(B, S, V, D, H)
    total = sum(numel.values())
    if budget_problem(numel, DTYPES[dtype].itemsize) or total > LIVE_MAX_ELEMENTS:
        biggest = max(numel, key=numel.get)
        st.info(
            f"Real values are shown for small models only. At these sizes the path holds {n(total)} "
            f"numbers (the largest, `{biggest}`, has {n(numel[biggest])}; the embedding matrix alone is "
            f"V×D = {n(numel['W_E'])}), and this view stops at {n(LIVE_MAX_ELEMENTS)}. Press "
            "**A tiny model** above, or make $V$, $D$ and $S$ smaller.",
            icon=":material/visibility_off:",
        )
    else:
        live = True  # the seed draws every number of the walk: page level, like the sizes
        seed = controls.integer("seed", "Seed", default=0, lo=0, hi=MAX_SEED, where=st.columns([1, 4])[0],
                                help="Draws the token ids, the embeddings and every weight.")
        controls.show_notices()

FRAGMENT_KEYS = ("step", "causal", "scale", "at_batch", "at_head")


@st.fragment
def look_inside(live: bool, seed: int) -> None:
    """The step picker and its heatmaps: moving one of these reruns this section only.

    It also draws the link, last, so that the link follows this section's controls too.
    """
    for key in FRAGMENT_KEYS:  # a fragment rerun keeps the page's values, not this section's old ones
        controls.values.pop(key, None)
    if live:
        c_step, c_flags = st.columns([3, 1.3])
        step = controls.choice("step", "Step", STEP_IDS, default="6", where=c_step,
                               help="Steps 8′ and 9′ are the additive ending.")
        with c_flags:
            causal = controls.flag("causal", "Causal mask", help="Each position sees only itself and earlier ones.")
            scale = controls.flag("scale", "Divide scores by √L", default=True)
        row = by_step.loc[step]
        has_head = "H" in row["output_sym"].split("×")  # steps 5, 6, 7 and 8′ have a head axis
        pick = st.columns(2)
        at_batch = at_head = 0
        if B > 1:
            at_batch = controls.integer("at_batch", "Sequence in the batch", default=0, lo=0, hi=B - 1,
                                        slider=True, where=pick[0])
        if H > 1 and has_head:
            at_head = controls.integer("at_head", "Head", default=0, lo=0, hi=H - 1, slider=True, where=pick[1],
                                       help=f"Heads count from 0, as in the code: 0 … {H - 1}.")
        controls.show_notices()  # this section's own refused link values
        rows_n, cols_n = panel_shape(step, B, S, V, D, H)
        if rows_n * cols_n > LIVE_MAX_CELLS:
            st.info(
                f"Step {step}'s output, one matrix at a time, is {n(rows_n)}×{n(cols_n)} = {n(rows_n * cols_n)} "
                f"numbers: too many to draw (this view stops at {n(LIVE_MAX_CELLS)}). Pick another step or "
                "make the sizes smaller.", icon=":material/visibility_off:")
        else:
            args = (step, B, S, V, D, H, seed, dtype, causal, scale, at_batch, at_head)
            panels = live_panels(*args)
            operation, note = step_words(step, scale=scale)
            st.markdown(f"**Step {step}: {operation}.** Output {shape_md(row['output_sym'], row['output'])}. {note}")
            for i, col in enumerate(st.columns(len(panels))):
                col.vega_lite_chart(spec=step_heatmap_spec(*args, i), width="stretch", theme="streamlit",
                                    alt=f"Heatmap of {panels[i]['code']}")
            masked = any(np.isneginf(p["values"]).any() for p in panels)
            st.caption(
                f"{', '.join('`' + p['code'] + '`' for p in panels)} from `core.shapes.step_values`: rows are "
                f"{panels[0]['rows']}s, columns {panels[0]['cols']}s; seed {seed}, {dtype}."
                + (" Blank cells are masked: −∞ before the softmax." if masked else "")
                + (f" Dashed lines separate the heads: head h owns columns hL … hL+L−1, L = {Sizes(B, S, V, D, H).L}."
                   if step == "8" and H > 1 else "")
            )
            numbers = pd.concat([panel_numbers(p).assign(tensor=p["code"]) for p in panels], ignore_index=True)
            numbers = numbers[["tensor", *numbers.columns[:-1]]]
            with st.expander("The numbers behind this figure"):
                st.dataframe(numbers, hide_index=True, width="stretch")
                csv_download(numbers, f"shapes_step_{step.replace('′', '_additive')}.csv", key="live_csv")
    show_link(controls.values)


look_inside(live, seed)
