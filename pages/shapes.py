"""The shape table: every tensor of the attention path at any size, traced from the real code.

Numbers come from core.shapes through the cached calls of ui.views.shapes, which also build the
figures (chart specs in ui.figures.shapes); the sentences that state a number are written by
ui.prose.shapes from those numbers; checkpoints come from core.checkpoints.shapes. So this script
is the essay: prose, controls, calls and tables.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.checkpoints import shapes as cps
from core.device import DTYPE_NAMES, DTYPES
from core.presets import PRESET_NAMES, PRESETS
from core.shapes import AXIS_NAMES, LEGACY_STEP_IDS, MAX_CONTEXT, STEP_IDS, panel_shape, position_mixing, step_words
from core.sizes import LayerSizes
from ui.charts import csv_download, figure, numbers_section
from ui.checkpoint import checkpoint, unfolded
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
from ui.prose.shapes import (
    SHARING_INTRO,
    endings_memory_md,
    endings_work_md,
    kv_formula_tex,
    kv_layers_md,
    kv_readout_md,
    percent_share,
    projection_params_md,
    reading_md,
    sharing_here_md,
)
from ui.shell import ensure_app_shell
from ui.views.shapes import (
    endings_spec,
    endings_table,
    exact_table,
    flow_spec,
    kv_sharing,
    live_panels,
    ops_view,
    panels_table,
    step_heatmap_spec,
    table_view,
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

One thing the post's table predates: most large models released since 2023 let several query
heads **share one set of keys and values** (grouped-query attention). The table follows the
control $H_{kv}$ below, or a published model's sizes, and a section after it explains what is
shared, why, and what it saves.

Two conventions, as in the code: heads, rows and positions count from 0 (heads $0 \\dots H-1$),
and the letter $V$ is the vocabulary size, so the queries, keys and values are written in lower
case, `q`, `k` and `v`.
"""
)

# ---- sizes (page level: every section depends on them) ---------------------------------------

SEED_SIZES = {"batch": 1, "seq": 20, "vocab": 50_000, "d_model": 512, "heads": 8}
# The from-scratch post's toy: a five-token sentence, width 16, four heads of width 4.
SMALL_SIZES = {"batch": 1, "seq": 5, "vocab": 10, "d_model": 16, "heads": 4}
MODEL_OPTIONS = ("custom", *PRESET_NAMES)


def _sizes_help(sizes: dict) -> str:
    """ "B=1, S=20, V=50,000, D=512, H=8": a preset's sizes, read off the preset itself."""
    return ", ".join(f"{letter}={sizes[key]:,}" for letter, key in
                     zip("BSVDH", ("batch", "seq", "vocab", "d_model", "heads"), strict=True))


def _use(sizes: dict) -> None:
    """A size button: custom sizes, every head with its own keys and values (the posts have no sharing)."""
    for key, value in sizes.items():
        st.session_state[key] = value
    st.session_state["kv_heads"] = sizes["heads"]
    st.session_state["model"] = "custom"


def _quoted(error: str) -> str:
    """torch's message as a code span, its own closing full stop dropped: the sentence ends it."""
    return "`" + error.strip().rstrip(".").replace("`", "'") + "`"


controls = Controls()
model_key = controls.choice(
    "model", "Sizes", MODEL_OPTIONS, default="custom",
    help="custom: the sizes below. Or one layer of a published model, every size read from its config.json: "
         + "; ".join(f"{k}: {p.name}" for k, p in PRESETS.items()) + ".")
model = None if model_key == "custom" else PRESETS[model_key]
size_cols = st.columns(5 if model is None else [1, 1, 3])  # a preset's sizes are a sentence, not inputs
B = controls.integer("batch", "Batch $B$", default=SEED_SIZES["batch"], lo=1, hi=MAX_SYMBOLIC_BATCH,
                     where=size_cols[0], help="Sequences processed together.")
S = controls.integer("seq", "Sequence $S$", default=SEED_SIZES["seq"], lo=1, hi=MAX_SYMBOLIC_SEQ,
                     where=size_cols[1], help="Tokens per sequence.")
if model is None:
    V = controls.integer("vocab", "Vocabulary $V$", default=SEED_SIZES["vocab"], lo=1, hi=MAX_SYMBOLIC_VOCAB,
                         where=size_cols[2], help="Distinct token ids.")
    D = controls.integer("d_model", "Width $D$", default=SEED_SIZES["d_model"], lo=1, hi=MAX_SYMBOLIC_D_MODEL,
                         where=size_cols[3], help="d_model: the length of every token's vector.")
    H = controls.integer("heads", "Heads $H$", default=SEED_SIZES["heads"], lo=1, hi=MAX_SYMBOLIC_HEADS,
                         where=size_cols[4], help="Must divide the width: each head gets L = D / H dimensions.")
    # Plain multi-head attention stays plain when H changes (the radio would otherwise keep an old
    # H_kv that still divides the new H, and quietly start sharing).
    previous_heads = st.session_state.get("_shapes_heads")
    if previous_heads not in (None, H) and st.session_state.get("kv_heads") == previous_heads:
        st.session_state["kv_heads"] = H
    st.session_state["_shapes_heads"] = H
    H_kv = controls.kv_heads(
        H, "Key/value heads $H_{kv}$",
        help="How many key/value heads the query heads share: a divisor of H. H_kv = H is plain multi-head "
             "attention (nothing shared), 1 is multi-query attention.")
    layers = 1
else:
    V, D, H, H_kv, layers = model.vocab, model.d_model, model.n_heads, model.n_kv_heads, model.layers
    with size_cols[2]:
        st.markdown(
            f"**{model.name}**, from its published [config.json]({model.source}): $V$ = {V:,}, $D$ = {D:,}, "
            f"$H$ = {H:,} query heads, $H_{{kv}}$ = {count(H_kv, 'key/value head')}, $L$ = {model.d_head:,}, "
            f"{count(layers, 'layer')}. Choose *custom* to change them.")
    unused = [f"`{k}`" for k in ("vocab", "d_model", "heads", "kv_heads") if k in st.query_params]
    if unused:
        names = " and ".join(unused) if len(unused) < 3 else ", ".join(unused[:-1]) + " and " + unused[-1]
        st.caption(f"This link's {names} {'is' if len(unused) == 1 else 'are'} not used: "
                   f"{model.name}'s own sizes replace "
                   f"{'it' if len(unused) == 1 else 'them'}.")
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

problem = heads_problem(D, H, hi=MAX_SYMBOLIC_HEADS) if model is None else None
traced: dict = {}
sizes: LayerSizes | None = None
if problem:
    st.error(problem, icon=":material/block:")
else:
    sizes = LayerSizes(B, S, V, D, H, H_kv)
    traced = table_view(B, S, V, D, H, H_kv, dtype)
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

TABLE_HEADING = "## From token ids to the output, step by step"
if not ok:
    st.markdown(TABLE_HEADING)
else:
    summary: dict = traced["summary"]
    outputs: dict = traced["outputs"]  # step → its output's shape, symbolic and in numbers
    st.markdown(TABLE_HEADING)
    cp = cps.scores_shape(sizes)
    checkpoint(cp)
    if unfolded(cp):
        st.markdown(traced["step_md"])
        st.caption(
            "Traced by `core.shapes.shape_table` on the meta device. *Italics* mark the axis a product "
            "sums away: it appears in both inputs and not in the output ("
            + ", ".join(f"*{k}* {v}" for k, v in AXIS_NAMES.items()) + "). FLOPs count 2 per multiply-add, "
            "1 per addition or division and 5 per softmax entry. The source's step 5 is split in three: "
            "5a makes the queries, 5b the keys and values (one per key/value head), 5c shares them out to the "
            "query heads. Steps 8, 9 and 8′, 9′ are the two endings; "
            f"they are compared below. Head width $L = D/H$ = {number(sizes.d_head)}; the largest tensor "
            f"is step {summary['largest_step']}'s output, {summary['largest_sym']}: "
            f"{size_bytes(summary['largest_bytes'])} in {dtype}."
        )
    st.markdown(
        f"**What the arithmetic costs** (`core.shapes.path_summary`). Steps 3–9, the path with the "
        f"embedding read as a lookup: **{flops(summary['attention_path_flops'])} FLOPs**. Step 2 written as "
        f"the table's one-hot product would add {flops(summary['lookup_flops'])} on its own, "
        f"{percent_share(summary['lookup_share'])} of the {flops(summary['total_flops'])} of steps 1–9; real models "
        f"never pay it, because they index the rows of $W_E$ instead. Parameters: "
        f"{number(summary['total_params'])}."
    )
    if (box := numbers_section("Every column, as numbers", key="table")) is not None:
        with box:
            st.dataframe(
                traced["numeric"], hide_index=True, width="stretch",
                height=36 * (traced["n_rows"] + 1) + 3,  # every row
                column_config={c: st.column_config.NumberColumn(c, format="localized") for c in
                               ("param_count", "flops", "matmul_flops", "output_elements", "output_bytes")},
            )
            st.caption(
                "`held_as` is the shape the code really holds: `core.attention.concat_then_project` keeps "
                "batch and position on one axis of B·S rows, so step 8 is (B·S)×D in memory, the same "
                "numbers in the same order as B×S×D. `copies` is false where a step makes no new tensor "
                "(step 4, and step 5c when nothing is shared). `matmul_flops` is the product part alone, as "
                "`torch.utils.flop_counter` counts it. The CSV keeps every count as an exact whole number."
            )
            csv_download(lambda: exact_table(B, S, V, D, H, H_kv, dtype),
                         f"shape_table_B{B}_S{S}_V{V}_D{D}_H{H}_Hkv{H_kv}_{dtype}.csv",
                         key="table_csv", label="Download the table (CSV)")

mixing = position_mixing()
cp_meet = cps.positions_meet(S)
checkpoint(cp_meet)
if unfolded(cp_meet):
    st.markdown(reading_md(mixing))

# ---- sharing keys and values ---------------------------------------------------------------------

st.markdown(SHARING_INTRO)
if ok:
    st.markdown(sharing_here_md(H, H_kv) + "\n\n" + traced["expansion_md"])
    context = controls.integer(
        "context", "Context length (tokens) for the KV cache", default=8192, lo=1, hi=MAX_CONTEXT,
        where=st.columns([2, 3])[0],
        help=f"How many tokens of keys and values the model keeps; at most {MAX_CONTEXT:,} here.")
    controls.show_notices()
    kv = kv_sharing(B, S, V, D, H, H_kv, layers, dtype, context)
    kv_summary = kv["summary"]
    st.markdown(projection_params_md(kv_summary))
    cp_kv = cps.kv_cache_factor(kv_summary)
    checkpoint(cp_kv)
    if unfolded(cp_kv):
        st.markdown(f"**The KV cache** (`core.shapes.sharing_summary`, in {dtype}). "
                    + kv_layers_md(None if model is None else model.name, layers)
                    + (" Published models run in bfloat16, 2 bytes per number: choose it above for the figures "
                       "their makers quote." if model is not None and dtype != "bfloat16" else ""))
        st.latex(kv_formula_tex(kv_summary, "layers"))
        st.markdown(kv_readout_md(kv_summary, cps.kv_factor_text(kv_summary["saving_factor"])))
        figure(
            kv["spec"],
            caption=(f"The KV cache for {count(kv_summary['batch'], 'sequence')} of "
                     f"{count(kv_summary['context'], 'token')}, with the key/value heads as set and with one per "
                     f"query head, in {dtype}: 2 · layers · H_kv · L · bytes per number, per token "
                     "(`core.presets.kv_cache_bytes`). Hover for exact bytes."),
            table=kv["rows"], csv_name="shape_kv_cache.csv", key="kv_cache", table_label="The KV cache, as numbers",
            column_config={c: st.column_config.NumberColumn(c, format="localized")
                           for c in ("bytes per token", "tokens", "bytes", "W_K + W_V parameters per layer")},
        )
        if model is not None:
            st.caption(f"{model.name}'s sizes: {model.fields}, from [{model.source}]({model.source}), checked "
                       "against the file (see `core.presets`).")

# ---- the picture ------------------------------------------------------------------------------

st.markdown("## The same path as a picture")
if ok:
    figure(
        flow_spec(B, S, V, D, H, H_kv, dtype),
        caption=(
            "The steps of the table as boxes, read top to bottom (`core.shapes.flow_edges`); each line is "
            "a tensor, labelled with its shape, and drawn thicker the more memory it takes (log scale). "
            "`@` is a matrix product, as in the code. The path forks after step 7 into the two endings "
            "and meets again at the output. Hover for exact sizes."
        ),
        table=traced["flow"], csv_name="shape_flow_edges.csv", key="flow",
        table_label="Every arrow: its tensor, shape and size",
    )

# ---- the code ---------------------------------------------------------------------------------

st.markdown(
    """
## The code behind each row

Each row of the table was made by one line of `core`. These are those lines, read from the source
files while the table was traced; the comment above each says which file and line to open. Steps
1–3 live in `core/shape_walk.py` (the attention module starts from the embeddings $x$); everything
from step 5 on is `core/attention.py`, the same code the other pages run on real numbers.
"""
)
if ok:
    calls = ops_view(B, S, V, D, H, H_kv, causal)
    ops, mask_calls, n_mask_calls = calls["ops"], calls["mask_calls"], calls["n_mask_calls"]
    st.code(traced["listing"], language="python")
    st.markdown(
        f"The table has {traced['n_rows']} rows; tracing it took {number(calls['n_ops'])} torch calls. Most steps are one call, "
        "but some lines do two things (`q @ k.transpose(-1, -2)` transposes, then multiplies), the scores "
        "are divided by $\\sqrt{L}$ in a call of their own, and a few calls only reshape. The list has "
        "every one, as the recorder in `core.shape_walk` saw it, with the step it belongs to, numbered from 0."
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
    ops_label = f"Every torch call, in order: the {count(calls['n_ops'], 'call')}"
    if (box := numbers_section(ops_label, key="ops")) is not None:
        with box:
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
    # At the post's own B, S and L (Falcon 7B's, say) our one-head shape is the printed one: say "the same".
    one_head = shown(slips["one_head"])
    one_head_here = "the same here" if one_head == "1×1×20×64" else f"which here is {one_head}"
    st.markdown(
        f"""
{SLIPS_HEADING}

The post's table is right about the mathematics and loose in two places of notation. Both are the
kind of slip that costs a student an afternoon, so here they are, checked by torch at your sizes
(`core.shapes.seed_slips`).

**One head printed as if it were all of them.** Step 5's queries are printed as 1×1×20×64. That is
the shape of a single head, `q[:, h:h+1]`, {one_head_here}. {heads_words}

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
        endings_spec(B, S, V, D, H, H_kv, dtype),
        caption=(f"What each ending keeps in memory, step by step, from the heads' outputs z (step 7) to "
                 f"the layer's output, at {dtype} (`core.shapes.shape_table`). "
                 + ("The long bar is step 8′'s per-head results." if summary["memory_ratio"] > 1 else
                    "With one head, step 8′'s per-head result is as large as step 8's output: no bar is longer.")),
        table=endings_table(B, S, V, D, H, H_kv, dtype), csv_name="shape_endings_memory.csv", key="endings",
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
    numel = walk_numel(B, S, V, D, H, H_kv)
    total = sum(numel.values())
    if budget_problem(numel, DTYPES[dtype].itemsize) or total > LIVE_MAX_ELEMENTS:
        biggest = max(numel, key=numel.get)
        # When the embedding matrix is the largest tensor, name it once (not "has N; … alone is N").
        largest = (f"the largest, the embedding matrix `W_E`, is V×D = {number(numel['W_E'])}" if biggest == "W_E" else
                   f"the largest, `{biggest}`, has {number(numel[biggest])}; the embedding matrix alone is "
                   f"V×D = {number(numel['W_E'])}")
        st.info(
            f"Real values are shown for small models only. At these sizes the path holds {number(total)} "
            f"numbers ({largest}), and this view stops at {number(LIVE_MAX_ELEMENTS)}. Press "
            "**A tiny model** above, or make $V$, $D$ and $S$ smaller.",
            icon=":material/visibility_off:",
        )
    else:
        live = True  # the seed draws every number of the walk: page level, like the sizes
        seed = controls.integer("seed", "Seed", default=0, lo=0, hi=MAX_SEED, where=st.columns([1, 4])[0],
                                help="Draws the token ids, the embeddings and every weight.")
        controls.show_notices()

FRAGMENT_KEYS = ("step", "scale", "at_batch", "at_head")
# Links made before the projections were split into 5a, 5b and 5c say step=5: the queries' row then.
if "step" not in st.session_state and st.query_params.get("step") in LEGACY_STEP_IDS:
    st.session_state["step"] = LEGACY_STEP_IDS[st.query_params["step"]]

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
                               help="Steps 5a–5c are the projections (queries; keys and values; sharing them "
                                    "out), 8′ and 9′ the additive ending.")
        with c_flags:
            scale = controls.flag("scale", "Divide scores by √L", default=True)
        row = outputs[step]
        # steps 5a–5c, 6, 7 and 8′ have a head axis (5b's is the key/value heads: it shows the one head h reads)
        has_head = bool({"H", "H_kv"} & set(row["output_sym"].split("×")))
        pick = st.columns(2)
        at_batch = at_head = 0
        if B > 1:
            at_batch = controls.integer("at_batch", "Sequence in the batch", default=0, lo=0, hi=B - 1,
                                        slider=True, where=pick[0])
        if H > 1 and has_head:
            at_head = controls.integer("at_head", "Head", default=0, lo=0, hi=H - 1, slider=True, where=pick[1],
                                       help=f"Heads count from 0, as in the code: 0 … {H - 1}.")
        controls.show_notices()  # this section's own refused link values
        rows_n, cols_n = panel_shape(step, B, S, V, D, H, H_kv)
        if rows_n * cols_n > LIVE_MAX_CELLS:
            st.info(
                f"Step {step}'s output, one matrix at a time, is {number(rows_n)}×{number(cols_n)} = {number(rows_n * cols_n)} "
                f"numbers: too many to draw (this view stops at {number(LIVE_MAX_CELLS)}). Pick another step or "
                "make the sizes smaller.", icon=":material/visibility_off:")
        else:
            args = (step, B, S, V, D, H, H_kv, seed, dtype, causal, scale, at_batch, at_head)
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
                + (f" Dashed lines separate the heads: head h owns columns hL … hL+L−1, L = {sizes.d_head}."
                   if step == "8" and H > 1 else "")
                + (f" Step 5b has {count(H_kv, 'key/value head')}: head {at_head} reads key/value head "
                   f"{sizes.kv_head_of(at_head)}." if step == "5b" and H_kv < H else "")
            )
            if (box := numbers_section("The numbers behind this figure", key="live")) is not None:
                with box:
                    numbers = panels_table(*args)
                    st.dataframe(numbers, hide_index=True, width="stretch")
                    csv_download(numbers, f"shapes_step_{step.replace('′', '_additive')}.csv", key="live_csv")
    show_link(controls.values)


look_inside(live, seed, causal)
