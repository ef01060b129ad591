"""The shape table: every tensor of the attention path at any size, traced from the real code.

Numbers come from core.shapes through the cached calls of ui.views.shapes, which also build the
figures (chart specs in ui.figures.shapes); formats are ui.format's. So this script is the essay:
prose, controls, calls and tables.
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
from ui.format import count, flops, number, shape_md, size_bytes
from ui.shell import ensure_app_shell
from ui.views.shapes import (
    endings_numbers,
    endings_spec,
    flow_numbers,
    flow_spec,
    live_panels,
    panel_numbers,
    step_heatmap_spec,
    traced_ops,
    traced_table,
    walk_numel,
)

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


def _quoted(error: str) -> str:
    """torch's message as a code span, its own closing full stop dropped: the sentence ends it."""
    return "`" + error.strip().rstrip(".").replace("`", "'") + "`"


def step_table_md(table: pd.DataFrame) -> str:
    """The eleven steps as one Markdown table, the contracted axis in italics."""
    lines = [
        "| step | operation | input 1 | input 2 | output | sums over | FLOPs | output memory |",
        "|:--|:--|:--|:--|:--|:-:|--:|--:|",
    ]
    for _, r in table.iterrows():
        out = shape_md(r["output_sym"], r["output"]) + (" (three: q, k, v)" if r["n_outputs"] == 3 else "")
        lines.append(
            f"| **{r['step']}** | {r['operation']} "
            f"| {shape_md(r['input_1_sym'], r['input_1'], r['contracted_in_1'])} "
            f"| {shape_md(r['input_2_sym'], r['input_2'], r['contracted_in_2'])} "
            f"| {out} | {'–' if r['contracted'] is None else '*' + r['contracted'] + '*'} "
            f"| {flops(r['flops'])} | {size_bytes(r['output_bytes'])} |"
        )
    return "\n".join(lines)


def endings_work_md(summary: dict, H: int) -> str:
    """What the two endings compute, in words derived from core.shapes.path_summary's counts."""
    mult, mult_2 = summary["concat_multiplies"], summary["additive_multiplies"]
    adds, adds_2 = summary["concat_adds"], summary["additive_adds"]
    work = (f"both do {count(mult, 'multiplication')} and {count(adds, 'addition')}: every output number is $D$ "
            "products and $D - 1$ additions either way" if (mult, adds) == (mult_2, adds_2) else
            f"concatenating does {count(mult, 'multiplication')} and {count(adds, 'addition')}, adding "
            f"{number(mult_2)} and {number(adds_2)}")
    text = f"**Neither ending does more arithmetic.** Counted exactly (`core.shapes.path_summary`), {work}. "
    concat_f, additive_f, surplus = summary["concat_flops"], summary["additive_flops"], summary["additive_surplus_flops"]
    if surplus == 0:
        return text + (
            f"The FLOP column charges both endings the same, {flops(concat_f)}: with one head, step 8′ is step "
            f"9's product itself and step 9′ has nothing to add ({flops(summary['sum_flops'])} FLOPs). Add heads "
            "and the two endings part: step 9 keeps every addition inside one large product, 8′ and 9′ do the "
            "last ones outside."
        )
    shown = (flops(additive_f), flops(concat_f))
    if shown[0] == shown[1]:  # rounded alike: print them whole, or the sentence compares X with X
        shown = (number(additive_f), number(concat_f))
    outside = "addition" if H == 2 else f"{number(H - 1)} additions"
    return text + (
        f"The FLOP column seems to charge the additive ending extra ({shown[0]} against {shown[1]}), but "
        "that is the 2-per-multiply-add convention: it charges every dot product one addition more than it "
        f"makes, and 8′ has $H$ = {H} times as many dot products as step 9, each {H} times shorter. "
        + (f"The surplus, {flops(surplus)}, is exactly step 9′'s additions, counted twice. "
           if surplus == summary["sum_flops"] else
           f"The surplus is {flops(surplus)}, and step 9′'s additions are {flops(summary['sum_flops'])}. ")
        + "Step 9 does all of them inside one large product, which is why it is the fast way to run "
        f"the layer; 8′ and 9′ do the last {outside} of each sum outside, which is why they are the clear "
        "way to read it."
    )


def endings_memory_md(summary: dict, H: int) -> str:
    """What the additive ending costs in memory, in words derived from the table's byte counts."""
    concat_b, additive_b, ratio = summary["concat_bytes"], summary["additive_bytes"], summary["memory_ratio"]
    einsum = (
        "Written as one contraction, `torch.einsum(\"bhsl,hld->bsd\", z, W_O)` sums over $h$ and $l$ "
        "together and keeps nothing per head: inside, einsum copies z so that each token's $h$ and $l$ sit "
        "side by side, as step 8 does, and hands the work to a single matrix product, as step 9 does. Whether it then runs as fast as "
        "step 9 is a question for a stopwatch, not for the algebra: at large sizes the one big product "
        "dominates and the forms run close, while at small sizes the fixed cost of each call and copy "
        "decides. The *Timing* page measures the endings on this server. "
    )
    tail = (
        "The per-head tensor is worth its memory when you want to look at each head's contribution, which is "
        "what interpretability tools keep it for (TransformerLens's `hook_result`, off unless you ask for "
        "it). The *Concat versus sum* page runs both endings on real numbers and measures how far apart "
        "rounding takes them."
    )
    if ratio == 1:
        return (
            "**With one head, keeping the heads apart costs nothing.** Step 8′'s per-head result is a single "
            f"width-$D$ vector per token, as large as step 8's output ({size_bytes(additive_b)} each), so no "
            "bar below is longer than another. With $H$ heads it would hold $H$ times as much. " + einsum + tail
        )
    return (
        "**What it can cost is memory, and only if you materialize the heads' results.** Step 8′ as written "
        f"here stores a width-$D$ vector per head per token: $H$ = {ratio} times what step 8 holds "
        f"({size_bytes(additive_b)} against {size_bytes(concat_b)}), the long bar below. Nothing in the "
        "mathematics forces that copy. " + einsum + tail
    )


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
dtype_col, causal_col, preset_col = st.columns([3, 1.3, 2], vertical_alignment="bottom")
dtype = controls.choice("dtype", "Bytes per number (the memory column)", DTYPE_NAMES, default="float32",
                        where=dtype_col, help="Shapes don't depend on it; memory does.")
causal = controls.flag("causal", "Causal mask", where=causal_col,
                       help="Each position sees only itself and earlier ones: before the softmax, the scores of "
                            "later keys become −∞. No shape changes; the torch calls below do, and so do the "
                            "real values of step 6 on.")
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
            f"{_quoted(traced['error'])}. A tensor's size in bytes has to fit in a signed "
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
        f"they are compared below. Head width $L = D/H$ = {number(Sizes(B, S, V, D, H).L)}; the largest tensor "
        f"is step {summary['largest_step']}'s output, {summary['largest_sym']}: "
        f"{size_bytes(summary['largest_bytes'])} in {dtype}."
    )
    st.markdown(
        f"**What the arithmetic costs** (`core.shapes.path_summary`). Steps 3–9, the path with the "
        f"embedding read as a lookup: **{flops(summary['attention_path_flops'])} FLOPs**. Step 2 written as "
        f"the table's one-hot product would add {flops(summary['lookup_flops'])} on its own, "
        f"{summary['lookup_share']:.0%} of the {flops(summary['total_flops'])} of steps 1–9; real models "
        f"never pay it, because they index the rows of $W_E$ instead. Parameters: "
        f"{number(summary['total_params'])}."
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
    ops = traced_ops(B, S, V, D, H, causal)
    other = traced_ops(B, S, V, D, H, not causal)
    with_mask, without = (ops, other) if causal else (other, ops)
    mask_calls = sorted(set(with_mask["torch call"]) - set(without["torch call"]))
    n_mask_calls = len(with_mask) - len(without)
    st.code(
        "\n".join(f"# step {r['step']}: {r['operation']}  ({r['where']})\n{r['code']}\n" for _, r in table.iterrows()),
        language="python",
    )
    st.markdown(
        f"The table has {len(table)} rows; tracing it took {number(len(ops))} torch calls. Most steps are one call, "
        "but some lines do two things (`q @ k.transpose(-1, -2)` transposes, then multiplies), the scores "
        "are divided by $\\sqrt{L}$ in a call of their own, and a few calls only reshape. The list has "
        "every one, as the recorder in `core.shapes` saw it, with the step it belongs to, numbered from 0."
    )
    mask_words = ", ".join(f"`{c}`" for c in mask_calls)
    if causal:
        st.markdown(
            f"**The causal mask is on**, so step 6 makes {count(n_mask_calls, 'more torch call')} ({mask_words}): "
            "it builds the S×S grid of keys that lie after each query and overwrites those scores with "
            "−∞" + (" (with one position there is no later key, so here it overwrites nothing)" if S == 1 else "")
            + ". No shape in the table changes, and the FLOP column charges the overwrite nothing."
        )
    else:
        st.caption(f"With the causal mask on (the switch above), step 6 makes {count(n_mask_calls, 'more torch call')} "
                   f"({mask_words}); no shape changes.")
    with st.expander(f"Every torch call, in order: the {count(len(ops), 'call')}"):
        st.dataframe(ops, hide_index=True, width="stretch")
        csv_download(ops, "shape_torch_calls.csv", key="ops_csv")

# ---- the source's two slips -------------------------------------------------------------------

SLIPS_HEADING = "## Two slips in the printed table"
if not ok:
    st.markdown(SLIPS_HEADING)
else:
    slips = traced["slips"]
    shown = lambda t: "×".join(number(v) for v in t)  # noqa: E731
    if slips["reversed_error"]:
        outcome = f"Multiply by it and torch refuses: {_quoted(slips['reversed_error'])}."
    elif all(d == 1 for d in slips["k"]):
        outcome = ("At these sizes every axis has length 1, so reversing them changes nothing and the product "
                   "happens to be right; at any other size it is not.")
    else:
        outcome = (f"At these particular sizes it doesn't even fail: broadcasting turns it into a "
                   f"{shown(slips['reversed_result'])} tensor that is not the scores at all, a silent bug.")
    if slips["one_head"] == slips["all_heads"]:
        heads_words = (f"With one head, as here, that is all of them: `q` is B×H×S×L = {shown(slips['all_heads'])} "
                       "either way. Add a head and the two part.")
    else:
        heads_words = (f"The layer computes all $H$ heads at once, and `q` is B×H×S×L = {shown(slips['all_heads'])}. "
                       "Read every per-head shape in the post with $H = 1$: one head at a time.")
    st.markdown(
        f"""
{SLIPS_HEADING}

The post's table is right about the mathematics and loose in two places of notation. Both are the
kind of slip that costs a student an afternoon, so here they are, checked by torch at your sizes
(`core.shapes.seed_slips`).

**One head printed as if it were all of them.** Step 5's output is printed as 1×1×20×64. That is
the shape of a single head, `q[:, h:h+1]`, which here is {shown(slips['one_head'])}. {heads_words}

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
    st.markdown(endings_work_md(summary, H) + "\n\n" + endings_memory_md(summary, H))
    figure(
        endings_spec(B, S, V, D, H, dtype),
        caption=(f"What each ending keeps in memory, step by step, from the heads' outputs z (step 7) to "
                 f"the layer's output, at {dtype} (`core.shapes.shape_table`). "
                 + ("The long bar is step 8′'s per-head results." if summary["memory_ratio"] > 1 else
                    "With one head, step 8′'s per-head result is as large as step 8's output: no bar is longer.")),
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
            f"Real values are shown for small models only. At these sizes the path holds {number(total)} "
            f"numbers (the largest, `{biggest}`, has {number(numel[biggest])}; the embedding matrix alone is "
            f"V×D = {number(numel['W_E'])}), and this view stops at {number(LIVE_MAX_ELEMENTS)}. Press "
            "**A tiny model** above, or make $V$, $D$ and $S$ smaller.",
            icon=":material/visibility_off:",
        )
    else:
        live = True  # the seed draws every number of the walk: page level, like the sizes
        seed = controls.integer("seed", "Seed", default=0, lo=0, hi=MAX_SEED, where=st.columns([1, 4])[0],
                                help="Draws the token ids, the embeddings and every weight.")
        controls.show_notices()

FRAGMENT_KEYS = ("step", "scale", "at_batch", "at_head")

# A link made at small sizes may carry this section's settings (and the seed). At sizes where the
# section is hidden they change nothing, but they stay in the link, with a word on why.
carried: dict[str, str] = {}
if ok and not live:
    carried = {k: st.query_params[k] for k in ("seed", *FRAGMENT_KEYS) if k in st.query_params}
    if carried:
        pairs = [f"`{k}={' '.join(v[:40].split()).replace('`', chr(39))}`" for k, v in carried.items()]
        shown_values = pairs[0] if len(pairs) == 1 else ", ".join(pairs[:-1]) + " and " + pairs[-1]
        st.info(
            f"This link also sets {shown_values}: {'it chooses' if len(carried) == 1 else 'they choose'} what "
            "*Look inside a step* shows, which needs a small model, so at these sizes "
            f"{'it changes' if len(carried) == 1 else 'they change'} nothing. "
            f"{'It stays' if len(carried) == 1 else 'They stay'} in the link below.",
            icon=":material/link:",
        )
        controls.values.update(carried)


@st.fragment
def look_inside(live: bool, seed: int, causal: bool) -> None:
    """The step picker and its heatmaps: moving one of these reruns this section only.

    It also draws the link, last, so that the link follows this section's controls too.
    """
    for key in FRAGMENT_KEYS:  # a fragment rerun keeps the page's values, not this section's old ones
        controls.values.pop(key, None)
    controls.values.update({k: v for k, v in carried.items() if k in FRAGMENT_KEYS})
    if live:
        c_step, c_flags = st.columns([3, 1.3])
        step = controls.choice("step", "Step", STEP_IDS, default="6", where=c_step,
                               help="Steps 8′ and 9′ are the additive ending.")
        with c_flags:
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
                f"Step {step}'s output, one matrix at a time, is {number(rows_n)}×{number(cols_n)} = {number(rows_n * cols_n)} "
                f"numbers: too many to draw (this view stops at {number(LIVE_MAX_CELLS)}). Pick another step or "
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


look_inside(live, seed, causal)
