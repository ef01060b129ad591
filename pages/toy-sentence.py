"""Attention on a sentence: every number of a tiny multi-head attention layer, on the reader's text.

The maths lives in core/toy_sentence.py (run_toy, score_spread, scale_effect and the table
builders), the cached calls into it in ui/views/toy_sentence.py, the chart specs in
ui/figures/toy_sentence.py and the drawing helpers in ui/render.py. This page lays them out as an essay.
The token and head pickers are fragments: moving one reruns its own section only.
"""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st
from streamlit.errors import StreamlitAPIException

from core import toy_sentence as toy
from core.sizes import LayerSizes
from ui.charts import csv_download, numbers_section
from ui.checkpoint import checkpoint, unfolded
from ui.controls import MAX_SEED, MAX_SENTENCE_CHARS, MAX_TOKENS, Controls, heads_problem, show_link
from ui.figures.toy_sentence import CELL_TEXT_MAX_TOKENS
from ui.format import count, escape_md, plural, shape
from ui.prose import toy_sentence as prose
from ui.render import chart, code, table, waiting
from ui.shell import ensure_app_shell
from ui.views import toy_sentence as views

ensure_app_shell()

# ---- page caps: a toy is for reading every number, so it stays small ---------------------------
MAX_TOY_D_MODEL = 64  # 64 columns is about as wide as a table anyone reads
MAX_TOY_HEADS = 16
CONCAT_VS_SUM = "pages/concat-vs-sum.py"  # registered at the URL path "concat-vs-sum"


st.title("Attention on a sentence")
st.markdown(
    """
Attention is easiest to trust once you have watched it compute. This page runs one multi-head
attention layer, small enough to print in full, on a sentence you choose, in the order a
from-scratch implementation with `torch.einsum` works: tokens, ids, embeddings, per-head queries,
keys and values, scores, softmax, weighted sums of values, and the output projection $W_O$.
The starting point follows a well-known hand computation: *my name is Marcello Politi*, model
width $D = 16$ and $H = 4$ heads of width $L = D/H = 4$. Heads, positions and coordinates are
counted from 0, as in the code: heads $0 \\dots H-1$.

Nothing here is trained. Embeddings and weights are seeded random numbers, so the patterns say
nothing about English; what they show is the machinery: which tensor meets which, in what shape,
and why every row of attention weights adds up to one.
"""
)
notice_box = st.container()
controls = Controls()

# ---- 1 · text → tokens → ids ----------------------------------------------------------------------
st.header("1 · From text to token ids", divider="gray")
st.markdown(
    """
A model reads integers, not letters. The tokenizer used here is deliberately plain, and
deterministic: the same text always gives the same tokens.

- Spaces separate tokens; a run of letters and digits, in any script, is one token.
- Every punctuation mark, symbol or emoji is a token of its own (an emoji that draws as one
  picture, such as a flag or 👩‍💻, stays one token).
- Chinese and Japanese characters, written without spaces, are one token each.
- First the text is put in Unicode normal form NFC, so an accented letter typed in two different
  ways becomes the same token.

The **vocabulary** is the sentence's distinct tokens sorted by Unicode code point (digits, then
capitals, then lower case) and a token's **id** is its place in that list, so a repeated word
gets one id. A real model's vocabulary is fixed in advance, tens of thousands of word pieces
learned from a large corpus (50,000 in the shape table's running example); this one holds only the
words in front of it. Tables and axes label a token by its position and text, `2:is`.
"""
)
sentence = controls.text(
    "sentence", "Your sentence", default=toy.DEFAULT_SENTENCE, max_chars=MAX_SENTENCE_CHARS,
    help=f"Up to {MAX_SENTENCE_CHARS} characters; the first {MAX_TOKENS} tokens are used.",
)
sv = views.sentence_view(sentence, MAX_TOKENS)
tokens: tuple[str, ...] = ()
if sv["problem"]:
    st.error(sv["problem"], icon=":material/edit_note:")
else:
    tokens = tuple(sv["tokens"])
    if sv["found"] > MAX_TOKENS:
        st.warning(
            f"The sentence has {sv['found']} tokens; this page uses the first {MAX_TOKENS} so that every "
            f"heatmap stays readable. The last one used is “{escape_md(tokens[-1])}”.",
            icon=":material/content_cut:",
        )
    if len(tokens) == 1:
        st.info(
            "One token can only attend to itself, so every head's single weight is exactly 1 and each "
            "head's output z is just that token's value vector. Add a word or two to see a real pattern.",
            icon=":material/info:",
        )
    left, right = st.columns([3, 2])
    with left:
        st.dataframe(sv["tokens_table"], hide_index=True, width="stretch")
        st.caption(
            f"The sentence as {count(sv['n_tokens'], 'token')}: position in the sentence, the token, its id "
            "(`core.toy_sentence.read_sentence`)."
        )
        csv_download(sv["tokens_csv"], "tokens.csv", key="tokens_csv")
    with right:
        st.dataframe(sv["vocab_table"], hide_index=True, width="stretch")
        st.caption(f"The vocabulary: V = {count(sv['n_vocab'], 'distinct token')}, sorted "
                   "(`core.toy_sentence.build_vocab`).")

# ---- 2 · embeddings -------------------------------------------------------------------------------
st.header("2 · Embeddings: one row of $W_E$ per token", divider="gray")
st.markdown(
    """
Each id selects a row of the embedding table $W_E$, which has one row of width $D$ per vocabulary
entry. Written as a matrix product, the ids become one-hot rows, and multiplying by $W_E$ picks
the rows out:
"""
)
st.latex(r"X = \operatorname{onehot}(\text{ids})\,W_E \qquad [S, V] \times [V, D] \to [S, D]")
if tokens:
    one_hot_label = f"The one-hot rows of this sentence, {shape((sv['n_tokens'], sv['n_vocab']))} = [S, V]"
    if (box := numbers_section(one_hot_label, key="one_hot")) is not None:
        with box:
            st.dataframe(sv["one_hot"])
            st.caption("Row i has a single 1, in the column `id:token` of token i's id (`core.toy_sentence.one_hot_frame`).")
st.markdown(
    """
The table here is seeded rather than learned. A token's row is $D$ standard-normal numbers from a
random generator whose seed is a hash (BLAKE2b) of the page's `seed` and the token's text, drawn
16 at a time. So a word keeps its vector in every sentence you type, as it would in a trained
model, and a wider $D$ only appends coordinates. Identical tokens get identical rows, and this
layer has no positional embeddings (real models add them): without the causal mask it cannot
tell word order, and shuffling the words only shuffles the outputs.
"""
)
ctl, figure_area = st.columns([1, 3])
with ctl:
    d_model = controls.integer(
        "d_model", "Model width D", default=16, lo=1, hi=MAX_TOY_D_MODEL, where=ctl,
        help=f"Width of every embedding, 1 to {MAX_TOY_D_MODEL} on this page.",
    )
    seed = controls.integer(
        "seed", "Seed", default=0, lo=0, hi=MAX_SEED, where=ctl,
        help="Decides the embeddings and all four weight matrices. Same seed, same numbers, anywhere.",
    )
with figure_area:
    if tokens:
        ev = views.embedding_view(tokens, d_model, seed)
        chart(
            ev["spec"],
            f"X, the embeddings {shape(ev['shape'])} = [S, D]: one row per token, one column per "
            f"coordinate, picked from a table W_E of {shape(ev['W_E_shape'])} = [V, D]; blue is negative, "
            "orange positive (`core.toy_sentence.embed`, `core.toy_sentence.token_embedding`).",
        )
        if (box := numbers_section("The numbers behind this figure", key="embeddings")) is not None:
            with box:
                table(ev["wide"])
                csv_download(ev["csv"], "embeddings.csv", key="embeddings_csv")
    else:
        waiting("There is no sentence to embed yet (see section 1).")

# ---- 3 · Q, K, V ------------------------------------------------------------------------------------
st.header("3 · Queries, keys and values, per head", divider="gray")
st.markdown(
    """
Every head $h$ owns three $D \\times L$ matrices $W_Q^h, W_K^h, W_V^h$, with $L = D/H$. Stacked,
they are tensors of shape $[H, D, L]$, and one `einsum` per projection computes every head at
once. The letters of `'id,hdl->hil'` name axes, one meaning each on this page: $i$ a token's
position, $d$ a model coordinate ($0 \\dots D-1$), $h$ a head, $l$ a coordinate inside the head
($0 \\dots L-1$). The letter $d$ appears in both inputs but not in the output, so it is summed
over: each head's query for a token is that token's embedding times the head's matrix.

The weights are the ones every page of this essay draws for a given seed
(`AttentionWeights.random`): entries with standard deviation $1/\\sqrt{D}$, which keeps queries,
keys and values at about unit size.
"""
)
st.markdown(prose.SHARING)


def grouped_projections(pv: dict) -> None:
    """Section 3 with shared keys and values: the code, the queries per head, the keys and values
    per group, and which heads read each group (all from ``views.projection_view``)."""
    sh, G = pv["shapes"], pv["group_size"]
    code(
        (f"# x: [S, D] = {shape(sh['x'])};  W_Q: [H, D, L] = {shape(sh['W_Q'])};  "
         f"W_K, W_V: [H_kv, D, L] = {shape(sh['W_K'])}", ""),
        ('q = torch.einsum("id,hdl->hil", x, W_Q)', f"{shape(sh['x'])} × {shape(sh['W_Q'])} → {shape(sh['q'])}  [H, S, L]"),
        ('k = torch.einsum("id,gdl->gil", x, W_K)', f"{shape(sh['x'])} × {shape(sh['W_K'])} → {shape(sh['k_kv'])}  [H_kv, S, L]"),
        ('v = torch.einsum("id,gdl->gil", x, W_V)', shape(sh["k_kv"])),
        (f"k = k.repeat_interleave({G}, dim=0)", f"{shape(sh['k_kv'])} → {shape(sh['k'])}: k[h] is a copy of k[h // {G}]"),
        (f"v = v.repeat_interleave({G}, dim=0)", shape(sh["k"])),
    )
    st.markdown(prose.expansion_note(sh["k_kv"], G))
    readers = pv["readers"]
    table(pv["q"], pinned=())
    st.caption(
        f"The queries, {shape(sh['q'])} = [H, S, L]: every query head has its own (`core.toy_sentence.run_toy`). "
        f"Column `h{len(readers) * G - 1} l0` is head {len(readers) * G - 1}, coordinate l = 0."
    )
    table(pv["kv"], hide_index=True, pinned=())
    st.caption(
        f"The keys and values as computed, {shape(sh['k_kv'])} = [H_kv, S, L]: one block of columns per group, "
        f"`g0 l0` … (`core.toy_sentence.kv_frame`). {prose.groups_said(readers)}. Each head's queries in the table above meet "
        "its group's keys here."
    )
    with st.expander("Which query heads read which key/value group"):
        table(pv["groups"], hide_index=True)
        st.caption(f"Query head h reads group h // G, with G = H / H_kv = {G} (`core.sizes.LayerSizes.query_heads_of`).")


ctl, info = st.columns([1, 3])
heads = controls.integer(
    "heads", "Heads H", default=4, lo=1, hi=MAX_TOY_HEADS, where=ctl,
    help=f"1 to {MAX_TOY_HEADS}; must divide the width D.",
)
kv_heads = controls.kv_heads(
    heads, "Key/value heads H_kv", where=ctl,
    help="How many key and value projections the heads share: a divisor of H. H_kv = H is plain multi-head "
         "attention, H_kv = 1 multi-query attention (section 3 explains).",
)
problem = heads_problem(d_model, heads, hi=MAX_TOY_HEADS)
ready = bool(tokens) and problem is None  # everything from here on needs tokens and a whole L
# The layer's sizes, one value for every cached call: B = 1, S and V from the sentence.
sizes = LayerSizes(1, len(tokens), sv["n_vocab"], d_model, heads, kv_heads) if ready else None
blocked = "There is no sentence yet (see section 1)." if not tokens else "The heads don't divide the width (see section 3)."
with info:
    if problem:
        st.error(problem, icon=":material/call_split:")
    else:
        st.markdown(
            f"With $D = {d_model}$ and $H = {heads}$, each head works in $L = D/H = {d_model // heads}$ "
            f"{plural(d_model // heads, 'dimension')}; that $L$ is the $d_k$ (the width of the keys) of the scale below."
        )
        st.markdown(prose.kv_line(heads, kv_heads))
if ready:
    pv = views.projection_view(tokens, sizes, seed)
    sh = pv["shapes"]
    if pv["group_size"] == 1:
        code(
            (f"# x: [S, D] = {shape(sh['x'])};  W_Q, W_K, W_V: [H, D, L] = {shape(sh['W_Q'])}", ""),
            ('q = torch.einsum("id,hdl->hil", x, W_Q)', f"{shape(sh['x'])} × {shape(sh['W_Q'])} → {shape(sh['q'])}  [H, S, L]"),
            ('k = torch.einsum("id,hdl->hil", x, W_K)', shape(sh["q"])),
            ('v = torch.einsum("id,hdl->hil", x, W_V)', shape(sh["q"])),
        )
        table(pv["qkv"], hide_index=True, pinned=())
        st.caption(
            f"q, k and v for every token (rows) and head (`core.toy_sentence.run_toy`): column `h{heads - 1} l0` is head "
            f"{heads - 1}, coordinate l = 0. "
            + ("Laid side by side the heads' blocks make one [S, D] matrix, x times a single D×D matrix: the heads "
               "are column blocks of one projection." if heads > 1 else
               "With one head, its block is the whole [S, D] matrix: x times a single D×D matrix.")
        )
    else:
        grouped_projections(pv)
    csv_download(pv["qkv_csv"], "queries_keys_values.csv", key="qkv_csv", label="Download q, k, v as CSV")
elif not tokens:
    waiting(blocked)

# ---- 4 · scores, scale, softmax -------------------------------------------------------------------
st.header("4 · Scores, the scale, and the softmax", divider="gray")
st.markdown(
    """
Token $i$'s query asks, token $j$'s key answers, and their dot product is the score. Each row of
scores then goes through a softmax, which makes the weights positive and sum to one:
"""
)
st.latex(
    r"s^h_{ij} = \frac{q^h_i \cdot k^h_j}{\sqrt{d_k}}, \qquad "
    r"a^h_{ij} = \frac{\exp(s^h_{ij})}{\sum_{j'} \exp(s^h_{ij'})}, \qquad \sum_j a^h_{ij} = 1"
)
st.markdown(
    """
In `'hil,hjl->hij'` the coordinate $l$ is shared by query and key and absent from the output, so
it is the dot product; the second position letter $j$ lets the key's position vary independently
of the query's $i$, which gives an $S \\times S$ grid of scores per head.

A **causal** model (one that writes text left to right) may not look ahead. Before the softmax the
scores of later keys are set to $-\\infty$, and $\\exp(-\\infty) = 0$: those keys get no weight at
all. Below, such cells are grey and crossed: their weight is exactly 0, not a small number.
"""
)
c1, c2 = st.columns(2)
causal = controls.flag(
    "causal", "Causal mask: hide later tokens", default=False, where=c1,
    help="Set the scores of keys after the query to −∞ before the softmax.",
)
scale = controls.flag(
    "scale", "Divide scores by √d_k", default=True, where=c2,
    help="Turn off to see what the softmax does to unscaled dot products.",
)
av = views.attention_view(tokens, sizes, seed, causal, scale) if ready else None
if av:
    sh, L = av["shapes"], av["d_head"]
    lines = [('scores = torch.einsum("hil,hjl->hij", q, k)',
              f"{shape(sh['q'])} × {shape(sh['q'])} → {shape(sh['scores'])}  [H, S, S]")]
    if scale:
        lines.append((f"scores = scores / math.sqrt({L})", f"÷ √d_k = {av['spread']['sqrt_d_head']:.4g}"))
    else:
        lines.append(("# no ÷ √d_k: the scale is switched off", ""))
    if causal:
        lines.append(("future = torch.ones(S, S, dtype=torch.bool).triu(1)", "True where key j > query i"))
        lines.append(('scores = scores.masked_fill(future, float("-inf"))', "exp(−∞) = 0 after the softmax"))
    lines.append(("weights = scores.softmax(dim=-1)", f"{shape(sh['pattern'])}: every row sums to 1"))
    cp = av["checkpoints"]["scores_shape"]
    checkpoint(cp)
    if unfolded(cp):
        code(*lines)

st.subheader("Why divide by √d_k? Measure it")
st.markdown(
    """
Queries and keys have entries of about unit size, so $q \\cdot k$ is a sum of $d_k$ products
and its spread grows like $\\sqrt{d_k}$. A softmax of widely spread numbers is nearly one-hot: one
key takes almost all the weight, and the gradients that would teach the other weights vanish.
Dividing by $\\sqrt{d_k}$ brings the spread back to about 1 for any head width. The numbers below
are measured on this sentence, with the scale and without it, whichever way the switch is set.
Entropy counts how spread a row is: $0$ bits means all weight on one key, $\\log_2 n$ bits means
even weight over $n$ keys.
"""
)
if av:
    scale_cp = av["checkpoints"]["scale_direction"]
    checkpoint(scale_cp)
if av and unfolded(scale_cp):  # folded only with quiz=1 before a guess
    st.markdown(
        "Leaving the scale out multiplies every score by $\\sqrt{d_k} \\ge 1$, and multiplying a softmax's "
        "inputs by a factor above 1 can only sharpen it, never flatten it (or, with one key per row, equal "
        "scores, or $d_k = 1$, leave it exactly as it was)."
    )
    sp, effect = av["spread"], av["effect"]
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Spread of raw q·k (std)", f"{sp['raw_std']:.3f}",
              help="Standard deviation of the unscaled scores over all heads and visible query–key pairs.")
    m2.metric("√d_k", f"{sp['sqrt_d_head']:.3f}", help=f"d_k = L = {sp['d_head']}")
    m3.metric("Spread after ÷√d_k", f"{sp['scaled_std']:.3f}")
    m4.metric("Entropy of an even spread", f"{effect['entropy_uniform']:.3f} bits",
              help="log₂ of the number of visible keys, averaged over rows.")
    m5, m6, m7, m8 = st.columns(4)
    m5.metric("Mean row entropy, ÷√d_k", f"{effect['entropy_scaled']:.3f} bits")
    m6.metric("Mean row entropy, no scale", f"{effect['entropy_raw']:.3f} bits")
    m7.metric("Mean largest weight, ÷√d_k", f"{effect['max_weight_scaled']:.3f}")
    m8.metric("Mean largest weight, no scale", f"{effect['max_weight_raw']:.3f}")
    st.markdown(f"**What this sentence shows.** {effect['sentence']}")
    suggestion = (
        f" To see a wider head, set heads = 1 and D = {MAX_TOY_D_MODEL} (d_k = {MAX_TOY_D_MODEL}) and compare."
        if sp["d_head"] < MAX_TOY_D_MODEL else ""
    )
    st.caption(
        f"Measured q and k spreads: {sp['q_std']:.3f} and {sp['k_std']:.3f} (`core.toy_sentence.score_spread`); "
        f"the sentence above is `core.toy_sentence.scale_effect` (verdict “{effect['verdict']}”: a mean row entropy "
        f"under {toy.SCALE_SLIGHT_BELOW:.0%} lower is slight, {toy.SCALE_STRONG_FROM:.0%} or more strong, "
        f"clear in between).{suggestion}"
    )
    chart(
        av["entropy_spec"],
        "Mean entropy of each head's weight rows, with ÷√d_k (blue circles) and without (orange "
        f"diamonds); the dashed line is an even spread over the visible keys. {effect['heads_sentence']}",
    )
    if (box := numbers_section("The numbers behind this figure: every row's entropy", key="entropy")) is not None:
        with box:
            table(av["entropy_table"], hide_index=True)
            csv_download(av["entropy_csv"], "row_entropy.csv", key="entropy_csv")
elif not av:
    waiting(blocked)

def shared_keys_section(av: dict) -> None:
    """Two heads of one K/V group side by side: same keys, different queries, and what that does to
    their weights (``core.toy_sentence.shared_pair``), after the reader's prediction."""
    pair = av["pair"]
    a, b = pair["heads"]
    g, i = pair["group"], pair["query"]
    st.subheader("Shared keys, different weights?")
    st.markdown(
        f"Heads {a} and {b} both read K/V group {g}: the same key for every token, the same value. "
        "If the keys are the same, must the pattern be the same? Predict before you look."
    )
    cp = av["checkpoints"]["shared_weights"]
    checkpoint(cp)
    if not unfolded(cp):
        return
    st.markdown(f"**Heads {a} and {b}, the largest difference between their numbers** (absolute):")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Keys", prose.gap(pair["k_diff"]),
              help=f"max |k of head {a} − k of head {b}| over every token and coordinate: the same tensor, copied.")
    c2.metric("Queries", prose.gap(pair["q_diff"]), help=f"max |q of head {a} − q of head {b}|: each head has its own W_Q.")
    c3.metric(f"Scores, row {i}", prose.gap(pair["score_diff"]),
              help=f"Over the visible keys of row {i}, the last token's, after the scale if it is on.")
    c4.metric("Weights, every row", prose.gap(pair["weight_diff_all"]),
              help=f"max |a of head {a} − a of head {b}| over every query row and key.")
    st.markdown(prose.shared_said(pair, len(av["top_key_weights"])))
    table(av["pair_table"], hide_index=True, pinned=("key",))
    st.caption(
        f"Row {i}, the last token's, in heads {a} and {b}: each key's score (after the scale, if on) and weight "
        f"(`core.toy_sentence.shared_pair`). The keys scored are the same numbers in both heads; the last "
        "token sees every key, with the causal mask or without."
    )


# ---- 5 · the weights --------------------------------------------------------------------------------
st.header("5 · Attention weights, head by head", divider="gray")
st.markdown(
    """
Each map is one head's weights $a^h$: a row per query token $i$ (who is looking), a column per
key token $j$ (who is looked at). The colour scale is fixed from 0 to 1 in every head, so colours
compare across heads and settings. Every head reads the same embeddings, but each scores them
with its own $W_Q^h$, and its own $W_K^h$ unless it shares its group's.
"""
)
if av and av["pair"]:  # keys and values shared: first, two heads of one group side by side
    shared_keys_section(av)
    st.subheader("Every head's map")
top_cp = av["checkpoints"]["top_key"] if av else None
if top_cp:  # not asked with one token, or when two keys tie for the top of the row
    checkpoint(top_cp)
if av and (top_cp is None or unfolded(top_cp)):
    chart(
        av["overview_spec"],
        ("The weights of both heads, heads 0 and 1" if av["n_heads"] == 2 else
         f"The weights of all {av['n_heads']} heads, heads 0 to {av['n_heads'] - 1}" if av["n_heads"] > 1
         else "The weights of the layer's one head, head 0") + "; hover a cell for its weight and score" + (" (grey × cells are masked: weight 0)." if av["masked_cells"] else ".")
        + " `core.toy_sentence.run_toy`: `pattern = scores.softmax(dim=-1)`.",
        width="content",
    )
    csv_download(av["weights_csv"], "attention_weights.csv", key="weights_csv",
             label="Download every weight and score as CSV")
elif not av:
    waiting(blocked)
head_slot = st.container()  # filled by the fragment one_head, called at the end of the script




def masked_cells_words(n: int) -> str:
    """The close-up caption's word on the mask: only where it hides cells, in the right number."""
    if n == 0:
        return ""
    if n == 1:
        return (" Masked: the one cell right of the diagonal (key j after query i); its weight is exactly 0, "
                "and so is shown.")
    return (f" Masked: the {count(n, 'cell')} right of the diagonal (key j after query i); their weight is "
            "exactly 0, and so is shown.")


def section_control(name: str, label: str, hi: int, help: str):
    """A fragment's own URL-bound number (0 … hi): its notice shows in the fragment, and its
    value joins the page's link, which every fragment run rewrites (link_slot, at the bottom)."""
    local = Controls()
    ctl, info = st.columns([1, 3])
    value = local.integer(name, label, default=0, lo=0, hi=hi, where=ctl, help=help)
    local.show_notices()
    controls.values.update(local.values)
    with link_slot.container():
        show_link(controls.values)
    return value, info


@st.fragment
def one_head() -> None:
    """Section 5's close-up. A fragment: the head picker reruns only this (with the page-level
    values of the last full run: tokens, d_model, heads, seed, causal, scale)."""
    st.markdown("**Read one head closely.** Pick a head for its map with every weight printed, and its table:")
    head, info = section_control("head", "Head h", MAX_TOY_HEADS - 1, f"Counting from 0: heads 0 to H − 1 (at most {MAX_TOY_HEADS - 1}).")
    if not ready:
        waiting(blocked)
        return
    h = min(head, heads - 1)
    if head != h:
        info.warning(
            f"There is no head {head}: this layer has {heads} head{'s' if heads > 1 else ''}, "
            + ("only head 0. Showing that one." if heads == 1 else f"heads 0 to {h}. Showing the last one, head {h}."),
            icon=":material/arrow_range:",
        )
    hv = views.head_view(tokens, sizes, seed, causal, scale, h)

    left, right = st.columns([2, 3]) if len(tokens) <= CELL_TEXT_MAX_TOKENS else (st.container(), st.container())
    with left:
        chart(hv["spec"], f"Head {h}: rows are queries i, columns keys j; hover a cell for its weight and score."
              + (" Grey × cells are masked (later keys)." if hv["mask"].any() else ""), width="content")
    with right:
        table(hv["table"], pinned=("Σ row", "entropy (bits)"))
        st.caption(
            f"Head {h}'s weights as numbers (`core.toy_sentence.weights_table`), each row's sum (1: the softmax makes "
            "it so) and entropy in bits."
            + masked_cells_words(int(hv["mask"].sum()))
        )


# ---- 6 · one query token ------------------------------------------------------------------------
st.header("6 · One token's context vector", divider="gray")
st.markdown(
    """
A head's output for token $i$ is a weighted average of the value vectors, with that token's row
of weights as the weights:
"""
)
st.latex(r"z^h_i = \sum_{j} a^h_{ij}\, v^h_j \qquad [S] \text{ weights} \times [S, L] \text{ values} \to [L]")
token_slot = st.container()  # filled by the fragment one_token, called at the end of the script
if av:
    table(av["z_concat"])
    st.caption(f"z for every token and head (`core.toy_sentence.run_toy`), heads side by side: column `h{heads - 1} l0` "
               f"is head {heads - 1}, coordinate l = 0. Row i is what the picker above takes apart for token i.")
    csv_download(av["z_csv"], "z_all_tokens.csv", key="z_csv")


@st.fragment
def one_token() -> None:
    """Section 6. A fragment: the token picker reruns only this (page-level values as above)."""
    st.markdown("Pick a token and take its sum apart, term by term, as the hand computation does first:")
    token, info = section_control("token", "Query token i (position)", MAX_TOKENS - 1, "Position in the sentence, counting from 0.")
    i = token
    if tokens and token >= len(tokens):
        i = len(tokens) - 1
        info.warning(
            f"There is no token at position {token}: this sentence has "
            + ("only one token, at position 0. Showing that one." if len(tokens) == 1 else
               f"{len(tokens)} tokens, at positions 0 to {i}. Showing the last one, position {i}."),
            icon=":material/arrow_range:",
        )
    if not ready:
        waiting(blocked)
        return
    info.markdown(f"Query token **{i}**: “{escape_md(tokens[i])}”.")
    fv = views.focus_view(tokens, sizes, seed, causal, scale, i)
    visible = [j for j in range(len(tokens)) if not fv["masked"][j]]
    shown = visible if len(visible) <= 8 else visible[:6] + visible[-1:]
    rows = []
    for h, a in enumerate(fv["weights"]):
        terms = [rf"{a[j]:.3f}\,v^{{{h}}}_{{{j}}}" for j in shown]
        if len(shown) < len(visible):
            terms.insert(6, r"\cdots")
        rows.append(rf"z^{{{h}}}_{{{i}}} &= " + " + ".join(terms))
    st.latex(r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}")
    chart(
        fv["spec"],
        f"Query {i}, {'one panel for the one head' if len(fv['weights']) == 1 else 'a panel per head'}: row j is the "
        "term a_ij·v_j, what key j adds, across the head's "
        "coordinates l; the outlined last row is their sum z_i" + (" (grey × rows are masked keys: a_ij = 0)." if fv["masked"].any() else ".")
        + " `core.toy_sentence.context_terms`.",
        width="content",
    )
    table(fv["table"], hide_index=True, pinned=("head", "key"))
    values_where = (f", head h's in the columns of its K/V group h // {heads // kv_heads}" if kv_heads < heads else "")
    st.caption(
        ("Every head's" if heads > 1 else "The head's") + " terms for this token: each key's weight a_ij and the product a_ij·v_j (the value "
        f"vectors v_j are the rows `v` of section 3's table{values_where}); {'each head' if heads > 1 else 'the head'}'s row "
        f"`z_{i} = Σ` adds them up "
        "(`core.toy_sentence.context_terms`). "
        + ("Masked keys are ticked in `masked`: their weight, and so their term, is exactly 0." if fv["masked"].any()
           else f"Query {i} is the last token, so the causal mask hides no key from it: `masked` is ticked nowhere."
           if causal else "No key is masked without the causal mask: `masked` is ticked nowhere.")
    )
    csv_download(fv["csv"], f"context_terms_token{i}.csv", key="terms_csv", label="Download every term as CSV")

    st.markdown(
        """
**All tokens at once.** Doing this for every query is a matrix product, one per head: the weights
$[S, S]$ times the values $[S, L]$. As an einsum, the key position $j$ is summed away:
"""
    )
    fs = fv["shapes"]
    code(('z = torch.einsum("hij,hjl->hil", weights, v)',
          f"{shape(fs['pattern'])} × {shape(fs['v'])} → {shape(fs['z'])}  [H, S, L]"))
    d = fv["diff"]
    st.metric(
        f"Largest gap between the term-by-term z_{i} and row {i} of the product, "
        + ("all heads" if heads > 1 else "head 0"),
        f"{d['max_abs']:.1e}",
        help="Both are float64; any gap is rounding from adding the same terms in another order.",
    )
    st.caption(
        f"{d['bitwise_equal']:.0%} of the numbers are bit-for-bit identical (`core.compare.compare`). "
        f"In the table below, row `{fv['labels'][i]}` is this token's z: its blocks are the rows "
        f"`z_{i} = Σ` of the table above."
    )


# ---- 7 · concatenate and project --------------------------------------------------------------
st.header("7 · Concatenate the heads, then project with $W_O$", divider="gray")
st.markdown(
    """
The heads' outputs, $H$ vectors of width $L$ per token, are set side by side into one vector of
width $HL = D$, and one $D \\times D$ matrix $W_O$ mixes them into the layer's output:
"""
)
st.latex(
    r"\mathrm{out} = \big[\, z^{0} \;\; z^{1} \;\; \cdots \;\; z^{H-1} \,\big]\, W_O"
    r"\;=\; \sum_{h=0}^{H-1} z^{h}\, W_O^{h} \qquad [S, HL] \times [HL, D] \to [S, D]"
)
st.markdown(
    """
The second form is the essay's point: rows $hL \\dots hL+L-1$ of $W_O$ only ever meet head $h$'s
numbers, so the product splits into one $[S, L] \\times [L, D]$ product per head, and the layer's
output is the sum of what the heads write (this layer has no output bias $b_O$).
"""
)
if av:
    (S_, HL), D_ = sh["z_concat"], sh["out"][1]
    code(
        (f"z_concat = z.permute(1, 0, 2).reshape({S_}, {HL})", f"{shape(sh['z'])} → {shape(sh['z_concat'])}  [S, H*L]"),
        (f"out = z_concat @ W_O.reshape({HL}, {D_})", f"{shape(sh['z_concat'])} × [{HL}, {D_}] → {shape(sh['out'])}"),
        ('per_head = torch.einsum("hil,hld->ihd", z, W_O)', f"{shape(sh['z'])} × {shape(sh['W_O'])} → {shape(sh['per_head'])}"),
        ("out_sum = per_head.sum(dim=1)", f"{shape(sh['out'])}: the same output, head by head"),
    )
    chart(
        av["out_spec"],
        f"The layer's output {shape(sh['out'])} = [S, D], one row per token; blue negative, orange "
        "positive (`core.toy_sentence.run_toy`: `out`).",
    )
    if (box := numbers_section("The numbers behind this figure", key="output")) is not None:
        with box:
            table(av["out"])
            csv_download(av["out_csv"], "output.csv", key="out_csv")
    cvs = av["concat_vs_sum"]
    k1, k2 = st.columns(2)
    k1.metric("Concat-then-project vs sum of heads, max |diff|", f"{cvs['max_abs']:.1e}",
              help="out and out_sum above, both float64.")
    k2.metric("This page vs `core.attention.multi_head_attention`, max |diff|",
              f"{av['vs_reference']:.1e}", help="Same embeddings and weights, the essay's shared implementation.")
    st.caption(
        ("Every output is bitwise identical between the two endings"
         + (": with one head there is no sum across heads" if heads == 1 else "")
         if cvs["max_abs"] == 0 else
         f"{cvs['bitwise_equal']:.0%} of the outputs are bitwise identical between the two endings; the "
         f"largest gap is {cvs['eps_units']:.1f} times float64's rounding unit at the output's scale")
        + " (`core.compare.compare`). The next page measures the same gap in float32, float16 and bfloat16."
    )
else:
    waiting(blocked)

link_query = {"d_model": d_model, "heads": heads, "seed": seed, "causal": str(causal).lower()}
if tokens:
    link_query["seq"] = len(tokens)
if kv_heads != heads:
    link_query["kv_heads"] = kv_heads
try:
    st.page_link(CONCAT_VS_SUM, label="Concat versus sum, with these settings",
                 icon=":material/arrow_forward:", query_params=link_query)
except StreamlitAPIException:  # not registered (the page runs on its own, or that page is absent)
    st.markdown(f"[→ Concat versus sum, with these settings](concat-vs-sum?{urlencode(link_query)})")
st.caption(
    "Opens the concat-versus-sum page with the same width, heads, key/value heads, seed, mask and sequence length, on "
    "random inputs instead of this sentence, in several precisions."
)

with notice_box:
    controls.show_notices()
link_slot = st.empty()  # "Link to this view": written by each fragment run, so it follows its picker
with head_slot:
    one_head()
with token_slot:
    one_token()
