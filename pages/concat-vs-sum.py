"""Concat versus sum: both endings of attention computed side by side, with readouts you can trust.

Every number comes from core.concat_vs_sum, through the cached calls in ui/views/concat_vs_sum.py
(which also build the charts of ui/figures/concat_vs_sum.py); this file is the essay: prose,
controls, readouts and tables.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import streamlit as st
from streamlit.errors import StreamlitAPIException

from core.checkpoints import concat_vs_sum as cps
from core.concat_vs_sum import EXTENDED_MAX_MACS, forward_flops, page_numel
from core.concat_vs_sum_torch import MHA
from core.device import DTYPE_NAMES, available_devices, is_supported
from core.sizes import LayerSizes
from ui.charts import csv_download, figure, numbers_section
from ui.checkpoint import checkpoint, unfolded
from ui.controls import (
    MAX_BATCH,
    MAX_HEADS,
    MAX_SEED,
    MAX_SEQ,
    Controls,
    budget_problem,
    heads_problem,
    view_link,
)
from ui.format import count, sci, shape, signed
from ui.prose import concat_vs_sum as prose
from ui.shell import ensure_app_shell
from ui.views.concat_vs_sum import (
    cached_layouts,
    cached_report,
    cached_reshape,
    cached_rounding,
    cached_torch,
    cached_waterfall,
    precision_table,
)

ensure_app_shell()

# This page runs the layer several times per view (four precisions plus a float64 reference, the
# PyTorch module, the head breakdown), and float16 matmuls on a CPU run at only ~1–3 GFLOP/s.
# One forward pass is therefore capped at 2 GFLOP (a few seconds at worst, once; then cached),
# and the width at 1024 (the weights are D² numbers each, held in several copies).
MAX_PAGE_D_MODEL = 1024
MAX_PASS_FLOPS = 2_000_000_000
DEFAULTS = dict(batch=1, seq=20, d_model=512, heads=8, seed=0, dtype="float32", device="cpu", causal=False)
# kv_heads defaults to heads (plain multi-head attention): Controls.kv_heads' first option.
CUDA_ABSENT = "not available on this server (no GPU found)"


def numbers_table(df: pd.DataFrame | pa.Table, *, key: str, csv_name: str, label: str, column_config: dict | None = None,
                  expanded: bool = False) -> None:
    """A numeric table (formatted by column_config, never turned into text) and its CSV download."""
    if (box := numbers_section(label, key=key, expanded=expanded)) is not None:
        with box:
            st.dataframe(df, width="stretch", hide_index=True, column_config=column_config)
            csv_download(df, csv_name, key=f"{key}_csv")


# ==== the essay ===================================================================================

st.title("Concat versus sum")
st.markdown(
    r"""
Every multi-head attention layer ends the same way. Each of the $H$ heads, numbered
$h = 0 \dots H{-}1$ as in the code, has produced for every token a vector $z^h$ of width
$L = D/H$. The textbook finish glues the $H$ vectors end to end into one vector of width $D$ and
multiplies it by the output matrix $W_O$. The claim of this essay is that you can instead cut
$W_O$ into $H$ horizontal slices of $L$ rows, give each head its own slice, and add up the $H$
results, and get the same answer:
"""
)
st.latex(
    r"\underbrace{\big[\,z^{0}\;z^{1}\;\cdots\;z^{H-1}\,\big]\,W_O}_{\text{concatenate, then project}}"
    r"\;=\;\underbrace{\sum_{h=0}^{H-1} z^{h}\,W_O^{h}}_{\text{project each head, then add}}"
    r"\qquad W_O^{h} = \text{rows } hL \dots hL{+}L{-}1 \text{ of } W_O"
)
st.markdown(
    r"""
On paper this is one line of algebra. On a computer it is a claim about floating-point numbers,
which do not add associatively, so it deserves a measurement rather than a promise. This page
builds a real layer from seeded random weights, runs both endings on the same input, and reports
exactly how far apart they land, in four precisions, against a more precise reference and
against PyTorch's own attention. Change anything below and every number is recomputed, including
the number of key/value heads, for the grouped-query attention that most current language
models run (explained below).
"""
)

# ---- the layer's controls (page level: every section depends on them) -------------------------

controls = Controls()  # one per page: a restart (Controls._defuse_infinity) carries every notice
with st.container(border=True):
    st.markdown("**The layer under the microscope.** Sizes, sharing, seed and precision; all of it is in the URL.")
    c = st.columns(5)
    batch = controls.integer("batch", "Batch B", default=DEFAULTS["batch"], lo=1, hi=MAX_BATCH, where=c[0],
                             help="Sequences processed together.")
    seq = controls.integer("seq", "Sequence S", default=DEFAULTS["seq"], lo=1, hi=MAX_SEQ, where=c[1],
                           help="Tokens per sequence.")
    d_model = controls.integer("d_model", "Width D", default=DEFAULTS["d_model"], lo=1, hi=MAX_PAGE_D_MODEL,
                               where=c[2], help=f"d_model. At most {MAX_PAGE_D_MODEL:,} on this page: "
                               "W_O alone is D×D numbers, and the page holds several copies.")
    heads = controls.integer("heads", "Heads H", default=DEFAULTS["heads"], lo=1, hi=MAX_HEADS, where=c[3],
                             help="Must divide D; each head gets L = D / H dimensions.")
    seed = controls.integer("seed", "Seed", default=DEFAULTS["seed"], lo=0, hi=MAX_SEED, where=c[4],
                            help="Decides the random weights and input. Same seed, same numbers, any machine.")
    c = st.columns([3, 3, 2, 2])
    dtype = controls.choice("dtype", "Precision", DTYPE_NAMES, default=DEFAULTS["dtype"], where=c[0],
                            help="The floating-point type every tensor of the layer is stored and computed in.")
    kv_heads = controls.kv_heads(heads, "Key/value heads H_kv", where=c[1],
                                 help="How many key/value heads the H query heads share (a divisor of H). "
                                 "H_kv = H is plain multi-head attention, H_kv = 1 multi-query attention.")
    device = controls.choice("device", "Device", available_devices(), default=DEFAULTS["device"], where=c[2],
                             unavailable={"cuda": CUDA_ABSENT}, help="cuda appears when this server has a GPU.")
    causal = controls.flag("causal", "Causal mask", default=DEFAULTS["causal"], where=c[3],
                           help="Each token attends only to itself and earlier tokens, as in a language model.")
controls.show_notices()

problem = heads_problem(d_model, heads)
if problem is None and not is_supported(dtype, device):
    problem = f"{dtype} does not run on {device} here. Pick another precision or device."
if problem is None:
    problem = budget_problem(page_numel(batch, seq, d_model, heads, kv_heads), 8)
if problem is None and (flops := forward_flops(batch, seq, d_model, heads, kv_heads)) > MAX_PASS_FLOPS:
    problem = (
        f"That is too much arithmetic for a shared server: one forward pass at these sizes is "
        f"{flops / 1e9:,.1f} GFLOP, and this page runs several (every precision, PyTorch's check, "
        f"the head breakdown); the cap is {MAX_PASS_FLOPS / 1e9:,.0f} GFLOP per pass. "
        "Make seq, batch or d_model smaller."
    )
ok = problem is None
if not ok:
    st.error(problem, icon="✋")

if ok:
    sizes = LayerSizes.from_controls(controls.values)  # the cache key every section shares
    report = cached_report(sizes, seed, device, causal)
    shapes: dict = report["shapes"]
    row: dict = next(r for r in report["records"] if r["dtype"] == dtype)  # this precision's readouts
    L = shapes["z"][3]
    pit = cached_reshape(sizes, seed, dtype, device, causal)
    sharing = ("" if kv_heads == heads else
               f" sharing {'one key/value head' if kv_heads == 1 else f'H_kv = {kv_heads} key/value heads'}")
    st.caption(
        f"A layer with B = {batch}, S = {seq}, D = {d_model:,}, H = {heads}{sharing}, so "
        f"{'its one head' if heads == 1 else 'each head'} is L = {L:,} wide; "
        f"{dtype} on {device}{', causal' if causal else ''}. Weights and input are seeded Gaussians "
        f"(`core.identity.run_seeded`, seed {seed}); no bias, so the output is exactly the projection."
    )

# ---- side by side --------------------------------------------------------------------------------

st.markdown(
    r"""
## Two endings, side by side

Both endings start from the same place: the heads' outputs `z`, shaped $[B, H, S, L]$, and the
output weights `W_O`, stored per head as $[H, L, D]$ (the TransformerLens layout, where head $h$'s
slice `W_O[h]` is $L \times D$). In PyTorch each ending is one line (the einsum's letters name the
axes: `b` batch, `h` head, `s` token, `l` position inside a head, `j` output coordinate):
"""
)
st.code(
    "out_concat = z.transpose(1, 2).reshape(B, S, H * L) @ W_O.reshape(H * L, D)  # [B, S, D]\n"
    'out_sum = torch.einsum("bhsl,hlj->bshj", z, W_O).sum(dim=2)                  # [B, S, D]',
    language="python", wrap_lines=True,
)
if ok:
    st.markdown(
        f"""
The shapes along each path, read off the tensors this page just computed
(`core.concat_vs_sum.path_shapes`):

| concatenate, then project | shape | project each head, then add | shape |
|---|---|---|---|
| `z` | {shape(shapes['z'])} | `z[:, h]`: one head | {shape(shapes['z_h'])} |
| `z_concat`: heads side by side | {shape(shapes['z_concat'])} | `W_O[h]`: its slice | {shape(shapes['W_O_h'])} |
| `W_O.reshape(H * L, D)` | {shape(shapes['W_O_flat'])} | `per_head`: every head's result | {shape(shapes['per_head'])} |
| `out_concat` | {shape(shapes['out_concat'])} | `out_sum = per_head.sum(dim=2)` | {shape(shapes['out_sum'])} |

{prose.work_of_each_path(heads, L, d_model, shapes['macs'], shapes['extra_adds'], shapes['per_head_numel'],
                          batch * seq * d_model)}
"""
    )

st.markdown(
    r"""
### Why transpose before the reshape

The one line of the concat path hides the commonest bug in attention code. `z` is stored head by
head, $[B, H, S, L]$; the concatenation wants, for every token, its $H$ head vectors side by side.
`z.reshape(B, S, H * L)` also produces a $[B, S, H{\cdot}L]$ tensor, runs without a complaint, and is
wrong: `reshape` never moves a number, it only re-reads memory in its current order, which is
head 0's tokens first, then head 1's. So row $s$ of the result is not token $s$. Transposing first
puts the token axis before the head axis, and then the reshape reads token $s$'s heads in a row.
Here are both, built from this page's `z`, for the first tokens of the first sequence:
"""
)
if ok:
    reshape_cp = cps.reshape_mixes(shapes["z"], pit["rows_differ"], pit["out_max_rel"])
    checkpoint(reshape_cp)
if ok and unfolded(reshape_cp):
    figure(
        pit["spec"], key="reshape_chart",
        caption=f"Row s is token s's concatenated vector, cut into its H = {count(heads, 'block')} of L = {count(L, 'number')}; "
        "colour = the head a block was read from, label = the token it was read from. Blocks from "
        "`core.concat_vs_sum.reshape_origin`, numbers (in the tooltips) from `reshape_pitfall`.",
    )
    st.markdown(prose.reshape_outcome(pit, seq, row["max_rel"], dtype))
    numbers_table(
        pit["origin"], key="reshape_table", csv_name="concat_right_and_wrong.csv",
        label="Where every block came from, both ways (first tokens)",
        column_config={"right: first number": st.column_config.NumberColumn(format="%.6f"),
                       "wrong: first number": st.column_config.NumberColumn(format="%.6f")},
    )

st.markdown(
    """
### TransformerLens in one line

TransformerLens, the usual library for taking trained transformers apart, stores `W_O` as this page
does, [n_heads, d_head, d_model], and has a name for the page's `per_head` tensor: **`result`**.
In `HookedTransformer`, its model class through version 2.x (still shipped in 3.x), that is the
hook `blocks.{layer}.attn.hook_result`, shaped [batch, pos, head_index, d_model], one full-width
vector per head. It exists only when the model is built with `use_attn_result=True`, which is
off by default because it costs H times the memory of the output. By default the layer takes the
concat path instead: in recent versions `z` (kept as [batch, pos, head_index, d_head], so no
transpose is needed) is reshaped to [batch, pos, n_heads · d_head] and sent through one linear map
with `W_O`, the whole projection and the sum over heads in one product (older versions write the
same single contraction as one einsum over head_index and d_head together). That is the thesis in
practice: the library computes the concatenation for speed, and switching a flag gives you each
head's term of the same sum.

TransformerLens 3 made `TransformerBridge` the recommended way to load a model: it wraps the
Hugging Face implementation instead of re-implementing it, names its hook points `hook_in` and
`hook_out`, and keeps the old `HookedTransformer` names as aliases (registered by
`enable_compatibility_mode()`). So the names above are `HookedTransformer`'s; on a bridge, look up
what an old name maps to in your version before you read per-head results from it. The weights
keep the same layout either way.
"""
)
st.markdown(
    r"""
Why the two paths must agree: output number $(s, j)$ on the left is a single sum over the $D$
entries $i = 0 \dots D{-}1$ of the concatenated vector. Entry $i$ belongs to exactly one head,
$h = \lfloor i/L \rfloor$, and rows $hL \dots hL{+}L{-}1$ of $W_O$ only ever meet head $h$'s $L$
numbers. So the one long sum splits at the head boundaries into $H$ short ones:
"""
)
st.latex(
    r"\mathrm{out}_{s,j} = \sum_{i=0}^{D-1} \mathrm{concat}_{s,i}\,(W_O)_{i,j}"
    r"= \sum_{h=0}^{H-1}\;\underbrace{\sum_{l=0}^{L-1} z^{h}_{s,l}\,(W_O^{h})_{l,j}}_{\text{head }h\text{'s term}}"
    r"\qquad (W_O^{h})_{l,j} = (W_O)_{hL+l,\,j}"
)
st.markdown(
    r"""
Same $D$ products, same signs, only the brackets move. In real arithmetic that changes nothing.
In floating point every addition rounds its result to the nearest representable number, and where
the brackets sit decides which intermediate results get rounded. So the honest prediction is: equal
up to rounding, and sometimes not bit for bit.

### When heads share keys and values

Llama 3, Mistral, Qwen 2.5, Gemma and Falcon do not give every head its own keys and values. They
run **grouped-query attention**: every head still has its own queries, but the $H$ query heads are
split into $H_{kv}$ groups of $G = H / H_{kv}$ neighbours, and all heads of a group read the same
keys and values, those of key/value head $\lfloor h / G \rfloor$. $H_{kv} = H$ is the multi-head
attention of this essay; $H_{kv} = 1$, one set of keys and values for every head, is called
multi-query attention. The reason is memory: a model that writes text one token at a time keeps
every earlier token's keys and values (its *KV cache*), and sharing makes that cache $G$ times
smaller.

Does sharing touch the identity? No, and the formula above says why: $W_O$ only ever meets $z$.
Sharing changes where a head's keys and values come from, before its attention pattern is formed,
not how the heads are added afterwards. Each query head still compares its own queries with those
keys, forms its own pattern, and produces its own $z^h$ of width $L$; the stack of them is still
$[B, H, S, L]$; $W_O$ still has one slice per query head; and the sum still has one term per
query head. Two heads that read the same keys and values are still two terms.
"""
)
if ok:
    st.markdown(prose.sharing_here(heads, kv_heads, shapes))

# ---- the live readouts -------------------------------------------------------------------------

st.header("How far apart are they?")
if ok:
    m = st.columns(4)
    m[0].metric("Max abs diff, concat vs sum", sci(row["max_abs"]),
                help="max over all B·S·D outputs of |out_concat − out_sum| (core.compare.compare).")
    m[1].metric("Max rel diff, norm-wise", sci(row["max_rel"]),
                help="max |out_concat − out_sum| ÷ max |out_concat|: the error at the scale the outputs live on.")
    m[2].metric("Bitwise-equal outputs", prose.share(row['bitwise_equal'], digits=1),
                help="Share of outputs whose bits are identical on both paths.")
    m[3].metric(f"allclose at {dtype} tolerance", "yes" if row["allclose"] else "no",
                help=f"torch.testing.assert_close with its default rtol = {row['rtol']:g}, atol = {row['atol']:g}.")
    text = (prose.gap_in_eps(row, heads, pit["out_max_rel"], batch * seq * d_model) + "\n\n"
            + prose.why_norm_wise(row, batch * seq * d_model))
    if not row["allclose"]:
        text += "\n\n" + prose.tolerance_note(row)
    st.markdown(text)

    st.markdown(
        """
### Which ending is more accurate?

Being close to each other is not the same as being right. Both paths start from the same rounded
`z` and `W_O`, so the fair judge is the exact product of those very numbers: computed in float64
for the lower precisions, and for float64 itself in 80-bit extended precision and rounded once.
"""
    )
    m = st.columns(3)
    m[0].metric("Concat path: max rel error", sci(row["concat_err_rel"]),
                help="max |out_concat − reference| ÷ max |reference| (core.compare.error_vs_reference).")
    m[1].metric("Sum path: max rel error", sci(row["sum_err_rel"]),
                help="max |out_sum − reference| ÷ max |reference| (core.compare.error_vs_reference).")
    verdict = {"concat": "concat", "sum": "sum", "tie": "a tie"}.get(row["closer"], "—")
    m[2].metric("Closer on average", verdict, help="The path with the smaller mean |error| over all outputs.")
    verdicts = {r["dtype"]: (r["closer"] if isinstance(r["closer"], str) else None) for r in report["records"]}
    st.markdown(
        prose.mean_errors(row, EXTENDED_MAX_MACS) + " " + prose.worst_errors(row) + "\n\n"
        + prose.why_either_can_win(heads, verdicts)
    )

# ---- every precision at once ---------------------------------------------------------------------

rounding = cached_rounding()
eps_of = dict(zip(rounding["dtype"].to_pylist(), rounding["ε"].to_pylist()))
intro = f"""
## Every precision at once

The same layer, the same input, four number formats. Each format has a machine epsilon ε, the gap
between 1 and the next number it can represent: {sci(eps_of['float64'])} for float64,
{sci(eps_of['float32'])} for float32, {sci(eps_of['float16'])} for float16 and {sci(eps_of['bfloat16'])}
for bfloat16, which keeps float32's range with far fewer significant bits.
"""
st.markdown(intro)
if ok and (eps_cp := cps.eps_gap(report["records"])) is not None:
    checkpoint(eps_cp)
if ok and (eps_cp is None or unfolded(eps_cp)):
    st.markdown(prose.precision_summary(report["records"], heads))
    figure(
        report["spec"], key="precision_chart",
        caption=f"Relative sizes at B = {batch}, S = {seq}, D = {d_model:,}, H = {heads}"
        f"{'' if kv_heads == heads else f', H_kv = {kv_heads}'}, seed {seed}, on a log "
        "scale: machine epsilon, the gap between the two endings, each ending's error against the "
        "float64 product of its own inputs, and the whole layer's error against a float64 run. "
        "Zeros (bitwise-identical results) cannot sit on a log axis and appear only in the table. "
        "Computed by `core.concat_vs_sum.concat_vs_sum_report`.",
    )
    numbers_table(
        precision_table(sizes, seed, device, causal, dtype), key="precision_table", csv_name="concat_vs_sum_precisions.csv", expanded=True,
        label="The same readouts for every precision",
        column_config={
            "eps": st.column_config.NumberColumn("ε", format="%.3e"),
            "max_abs": st.column_config.NumberColumn("max abs diff", format="%.3e"),
            "max_rel": st.column_config.NumberColumn("max rel diff", format="%.3e"),
            "eps_units": st.column_config.NumberColumn("in units of ε", format="%.2f"),
            "bitwise_equal": st.column_config.NumberColumn("bitwise equal", format="percent"),
            "allclose": st.column_config.CheckboxColumn("allclose"),
            "outside_tolerance": st.column_config.NumberColumn("outside tolerance", format="percent"),
            "concat_err_rel": st.column_config.NumberColumn("concat vs float64 product", format="%.3e"),
            "sum_err_rel": st.column_config.NumberColumn("sum vs float64 product", format="%.3e"),
            "closer": st.column_config.TextColumn("closer on average"),
            "layer_err_rel": st.column_config.NumberColumn("layer vs float64 run", format="%.3e"),
        },
    )
    st.caption(
        "Relative figures are norm-wise (divided by the largest output). The float64 row is the "
        "reference for the last column, so it has none of its own (and its product reference is in "
        "extended precision). CSV: every column at full precision."
    )

st.markdown(
    r"""
### Why the order of additions changes the last bits

A float keeps a fixed number of significant bits. Add a small number to a large one and the small
one's low bits fall off the end; add two small numbers first and they can grow big enough to
survive. The smallest demonstration takes three numbers, $1$ and two halves of $\varepsilon$:
$1 + \varepsilon/2$ sits exactly halfway between $1$ and the next float, rounds back to $1$, and
the second half is lost the same way. Add the halves first and they make a whole $\varepsilon$,
which $1$ can hold.
"""
)
st.dataframe(
    rounding, hide_index=True, width="stretch",
    column_config={
        "ε": st.column_config.NumberColumn(format="%.3e"),
        "(1 + ε/2) + ε/2 − 1": st.column_config.NumberColumn(format="%.3e"),
        "1 + (ε/2 + ε/2) − 1": st.column_config.NumberColumn(format="%.3e"),
    },
)
csv_download(rounding, "rounding_order.csv", key="rounding_csv")
st.markdown(
    """
Each sum above is computed in its own dtype by `core.concat_vs_sum.rounding_example`, then 1 is
subtracted exactly. The two endings of attention are this, at scale. The concat path's matrix
kernel adds each output's D products in whatever blocked order suits the hardware; the sum path adds
L of them per head, rounds, and then adds H partial results. Every product is the same; the brackets
differ, so the last bit or two may too.
"""
)

# ---- one number, head by head (its own fragment: its pickers rerun only this section) ---------

st.markdown(
    r"""
## One output number, head by head

Take a single number of the output, coordinate $j$ of token $s$ (of the first sequence in the batch).
The concat path computes it in one sum. The sum path says it is made of head terms, head $h$'s being
$\;\sum_{l=0}^{L-1} z^{h}_{s,l}\,(W_O^{h})_{l,j}$. Here are those terms as a running total.
"""
)
one_number = st.container()  # filled last (see below), so the link box exists when it runs

# ---- W_O three ways ------------------------------------------------------------------------------

st.markdown(
    r"""
## W_O, three ways

The whole identity is a statement about how $W_O$ is cut up, and different sources cut it along
different sides. It is worth seeing once, because the same matrix turns up in three layouts:

- **This essay and TransformerLens** (right-multiplying, `z @ W`): `W_O` is $[H, L, D]$. Flattened
  to $[H{\cdot}L, D]$, head $h$ owns a horizontal band of $L$ rows, $hL \dots hL{+}L{-}1$.
- **The paper** (*A Mathematical Framework for Transformer Circuits*, left-multiplying, $W x$): each
  head has $W_O^h$ of shape $[D, L]$; side by side they make a $[D, H{\cdot}L]$ matrix.
- **`torch.nn.Linear`** (`out_proj` in `nn.MultiheadAttention`) stores its weight as $[\text{out}, \text{in}]
  = [D, H{\cdot}L]$ and computes `x @ weight.T`. That is the paper's matrix, number for number:
  head $h$ is a vertical band of $L$ columns, $hL \dots hL{+}L{-}1$.
"""
)
if ok:
    lay = cached_layouts(d_model, heads, seed, dtype, device)  # W_O is the same at every kv_heads
    chk, sh = lay["checks"], lay["shapes"]
    st.markdown(
        f"""
Checked on this page's weights (`core.concat_vs_sum.w_o_layouts`, exact `torch.equal`):
`out_proj.weight` {shape(sh['linear_weight'])} equals `W_O.reshape(H * L, D).T`:
**{'yes' if chk['linear_is_flat_transposed'] else 'NO'}**; every paper block $W_O^h$
{shape(sh['W_O_h_paper'])} equals columns $hL \\dots hL{{+}}L{{-}}1$ of `out_proj.weight`:
**{'yes' if chk['paper_blocks_are_linear_columns'] else 'NO'}**.{prose.w_o_unshared(heads, kv_heads)}
"""
    )
    sample_note = prose.w_o_sample_note(lay["rows_shown"], lay["cols_shown"], lay["l_shown"],
                                        heads, L, d_model)
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown(f"**TransformerLens: `W_O.reshape(H * L, D)`** {shape(sh['W_O_flat'])}, heads are row bands")
        figure(lay["tl"], key="w_o_tl_chart",
               caption="W_O with heads as horizontal bands (colour strip = head). " + sample_note)
    with right:
        st.markdown(f"**Paper and `nn.Linear`: `out_proj.weight`** {shape(sh['linear_weight'])}, "
                    "heads are column bands")
        figure(lay["linear"], key="w_o_linear_chart",
               caption="The same entries transposed: head h is the column block W_O^h. " + sample_note)
    numbers_table(lay["cells"], key="w_o_cells", csv_name="w_o_sample.csv", label="The sampled entries of W_O",
                  column_config={"value": st.column_config.NumberColumn(format="%.9f")})

# ---- same as PyTorch -----------------------------------------------------------------------------

st.header("Same as PyTorch")
st.markdown(
    r"""
A from-scratch implementation is only worth trusting if it matches the reference one. PyTorch's
`torch.nn.MultiheadAttention` is the obvious referee, with one catch: it has no grouped-query
attention. It keeps exactly one key head and one value head per query head, so it can hold this
page's layer only where $H_{kv} = H$, and that is the only place this page uses it. Where heads
share keys and values, the referee is PyTorch's attention kernel itself,
`F.scaled_dot_product_attention(q, k, v, enable_gqa=True)` (torch 2.5 and later), which takes k and
v with their $H_{kv}$ heads and lets query head $h$ read key/value head $\lfloor h/G \rfloor$.
"""
)
st.markdown(prose.referee_here(heads, kv_heads))
if ok:
    tc = cached_torch(sizes, seed, dtype, device, causal)
    m = st.columns(3)
    m[0].metric("Concat path vs PyTorch: rel diff", sci(tc["concat"]["max_rel"]),
                help=f"Norm-wise; max abs diff {sci(tc['concat']['max_abs'])} (core.concat_vs_sum_torch.torch_check).")
    m[1].metric("Sum path vs PyTorch: rel diff", sci(tc["sum"]["max_rel"]),
                help=f"Norm-wise; max abs diff {sci(tc['sum']['max_abs'])}.")
    calls = tc["calls"]
    if tc["reference"] == MHA:
        m[2].metric("out_proj.weight is W_O", "yes" if tc["out_proj_is_W_O"] else "NO",
                    help="torch.equal(out_proj.weight, W_O.reshape(H * L, D).T)")
        route = ("What the module actually ran, recorded live by `core.concat_vs_sum_torch.torch_calls` while "
                 f"it ran: it {prose.pytorch_route(tc)}")
        label, csv_name = "Every call nn.MultiheadAttention made, with its shapes", "multihead_attention_calls.csv"
    else:
        m[2].metric("k and v handed to SDPA", shape(tc["kv_shape"]),
                    help="[B, H_kv, S, L]: the shape of k and v the kernel received (core.concat_vs_sum_torch.sdpa_calls).")
        route = ("What the reference actually ran, recorded live by `core.concat_vs_sum_torch.sdpa_calls` while "
                 f"it ran: it {prose.sdpa_route(tc, heads, kv_heads)}")
        label, csv_name = "Every call the SDPA reference made, with its shapes", "sdpa_reference_calls.csv"
    st.markdown(
        f"""
{route} Its attention kernel is free to round in other places than this page's step-by-step
code. {prose.against_pytorch(tc, dtype)}
"""
    )
    numbers_table(calls, key="torch_calls", csv_name=csv_name, label=label,
                  column_config={"step": st.column_config.NumberColumn(format="%d")})

# ---- what it means -------------------------------------------------------------------------------

st.markdown(
    """
## Heads are channels that get added up

If you have met convolutional networks, the sum view will feel familiar. A convolution layer runs
many filters over its input, each producing its own channel, and the next layer mixes channels by
adding weighted copies of them. Multi-head attention ends the same way: each head is a channel
that reads the whole sequence in its own way, writes a full-width vector through its own slice of
$W_O$, and the layer's output is the plain sum of those vectors, plus the bias $b_O$ where the layer
has one (this page's has none). Concatenating first is a bookkeeping trick that lets one large
matrix product do all $H$ projections and the sum at once, which is why real implementations,
PyTorch's above among them, do it: it keeps the hardware busy.

The sum view is what interpretability research builds on. A transformer keeps a *residual
stream*, a running vector per token that every block reads from and **adds** its output back
into. With attention written as a sum, every head is a separate term in that stream: you can ask
what one head wrote, remove it and see what changes, or follow a number from a head in one layer
to a head in a later layer that reads it. Chains of heads found this way are the "circuits" of
Anthropic's *A Mathematical Framework for Transformer Circuits* (2021), whose section on attention
heads being independent and additive is this page's identity. The waterfall above is the smallest
instance: one output number, split exactly into what each head put there.
"""
)
NEXT = "What the sum buys: the heads of a trained model, one term at a time"
try:
    st.page_link("pages/induction.py", label=f"**{NEXT}**", icon=":material/arrow_forward:")
except StreamlitAPIException:  # run on its own (AppTest), or before that page exists: no link to draw
    st.markdown(f"**{NEXT}**")
st.caption("A trained two-layer model whose heads you can read: its previous-token and induction heads, "
           "a prediction split into one term per head, and what is left when a head's term is removed.")

with st.expander("🔗 Link to this view"):
    st.caption("Every control lives in the URL. This link opens the page with these exact settings.")
    link_slot = st.empty()  # written by the fragment below, so the link follows its pickers too


# ---- the one-number section, as a fragment ---------------------------------------------------------
# Its two pickers rerun only this function (and the link above); sizes, seed and dtype are page
# level, so changing them reruns the page, which reruns this too.


def keep_in_range(name: str, hi: int, last: str) -> None:
    """A picker whose range just shrank (seq or d_model made smaller) moves to the new last value,
    with a notice, instead of Streamlit silently resetting it to its default."""
    old = st.session_state.get(name)
    if isinstance(old, int | float) and old > hi:
        st.session_state[name] = hi  # before the widget exists in this run, so it starts from here
        controls.notices.append(f"`{name}={int(old)}` is past the end of its new range 0–{hi:,}; "
                                f"showing `{name}={hi}`, {last}.")


@st.fragment
def one_number_section() -> None:
    for name in ("token", "coord"):  # a fragment rerun replaces this section's values, not the page's
        controls.values.pop(name, None)
    keep_in_range("token", seq - 1, "the last token of the shorter sequence")
    keep_in_range("coord", d_model - 1, "the last coordinate of the narrower layer")
    c = st.columns(2)
    token = controls.integer("token", "Token s", default=0, lo=0, hi=seq - 1, where=c[0],
                             help=f"Position in the sequence, 0 … {seq - 1}.")
    coord = controls.integer("coord", "Output coordinate j", default=0, lo=0, hi=d_model - 1, where=c[1],
                             help=f"Which of the D = {d_model:,} output numbers, 0 … {d_model - 1:,}.")
    controls.show_notices()  # this section's refused link values
    link_slot.code(view_link(controls.values), language=None, wrap_lines=True)
    if not ok:
        return
    drawn = cached_waterfall(sizes, seed, dtype, device, causal, token, coord)
    wf = drawn["wf"]
    terms_cp = cps.head_terms(heads, kv_heads, d_model, drawn["n_terms"])
    checkpoint(terms_cp)
    if not unfolded(terms_cp):
        return
    figure(
        drawn["spec"], key="waterfall_chart",
        caption=f"Coordinate j = {coord} of token s = {token} in {dtype}: each coloured bar is one head's term "
        f"Σ_l z[h, s, l] × W_O[h, l, j], starting where the running total of the heads before it ended "
        "(dashed). The hollow bars are what the two paths actually computed. Terms from "
        "`core.concat_vs_sum.head_terms` (the trace's `per_head`), totals from `waterfall`.",
    )
    left, right = st.columns(2)
    left.metric("Concat path computed", signed(wf['concat'], '.9g'), help=f"out_concat[0, {token}, {coord}], in {dtype}.")
    right.metric("Sum path computed", signed(wf['sum'], '.9g'), help=f"out_sum[0, {token}, {coord}], in {dtype}.")
    left.metric("Rounded head terms, summed in float64", signed(wf['rounded_terms_summed'], '.9g'),
                help=f"The H terms as the layer computed them (each rounded to {dtype}), added in float64.")
    right.metric("Float64 product of the same inputs", signed(wf['float64_product'], '.9g'),
                 help=f"Σ_h Σ_l z × W_O recomputed in float64 from the same {dtype} z and W_O: no rounding to "
                      f"{dtype} anywhere. What both paths aim at.")
    st.markdown(prose.one_number(wf, heads, dtype))
    numbers_table(
        wf["table"], key="waterfall_table", csv_name=f"one_number_s{token}_j{coord}.csv",
        label="Each head's term and the running total",
        column_config={col: st.column_config.NumberColumn(format="%.9e") for col in wf["table"].column_names
                       if col != "head"},
    )


with one_number:
    one_number_section()
