"""The shape-table page's sentences that state a number, written from the numbers core returned.

Each function takes plain numbers (a ``core.shapes.shape_table``, its ``path_summary``, a
``sharing_summary``) and returns Markdown or LaTeX, its wording decided by the numbers as they will
be printed: one head is "1 head", equal sizes are never "X against X", a factor of 1 is "the same",
and with H_kv = H the sharing sentences say that nothing is shared.
"""

from __future__ import annotations

import pandas as pd

from ui.format import count, flops, number, plural, shape_md, size_bytes

__all__ = [
    "SHARING_INTRO", "reading_md", "step_table_md", "endings_work_md", "endings_memory_md", "tex_number",
    "sharing_here_md",
    "projection_params_md", "expansion_md", "kv_formula_tex", "kv_layers_md", "kv_readout_md",
]


def step_table_md(table: pd.DataFrame) -> str:
    """The steps as one Markdown table, the contracted axis in italics."""
    lines = [
        "| step | operation | input 1 | input 2 | output | sums over | FLOPs | output memory |",
        "|:--|:--|:--|:--|:--|:-:|--:|--:|",
    ]
    for _, r in table.iterrows():
        out = shape_md(r["output_sym"], r["output"]) + (" (two: k, v)" if r["n_outputs"] == 2 else "")
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


def reading_md(mixing: dict) -> str:
    """How to read the table, with where positions meet (``core.shapes.position_mixing``)."""
    return rf"""**Reading the table.** Every product in attention follows one rule: it pairs an axis of the left
input with an equally long axis of the right input, multiplies along it and adds up, so that axis
disappears; every other axis passes straight through. Step 2 is the plainest case,

$$
\underbrace{{B \times S \times \mathit{{V}}}}_{{\text{{one-hot rows}}}} \;\cdot\;
\underbrace{{\mathit{{V}} \times D}}_{{W_E}} \;\longrightarrow\; B \times S \times D ,
$$

and reading the *sums over* column from top to bottom tells the story of the layer. $V$ goes at
step 2: each token keeps one row of $W_E$. $D$ goes at steps 5a and 5b: every head reads the whole
width of every token. $L$ goes at step 6: a query and a key are compared coordinate by coordinate.

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


# What grouped-query attention is, why models use it and what it costs: the same at every setting.
SHARING_INTRO = r"""### Sharing keys and values: grouped-query attention

So far every head had queries, keys and values of its own. Llama 3, Mistral, Qwen 2.5, Gemma and
Falcon keep that for the queries only. Their $H$ query heads form $H_{kv}$ groups of
$G = H / H_{kv}$ neighbouring heads, and the heads of a group read the **same keys and values**:
query head $h$ reads key/value head $\lfloor h / G \rfloor$. That is *grouped-query attention*
(GQA; Ainslie et al., 2023). Its two ends have names of their own: $H_{kv} = H$ is the multi-head
attention of the rest of this essay, and $H_{kv} = 1$, one key head and one value head for
everybody, is *multi-query attention* (MQA; Shazeer, 2019).

**Why share?** Not to save arithmetic in one forward pass (the scores and the weighted sums are
still computed once per query head) but to save memory while generating text. A model writes one
token at a time, and each new token's query is scored against the keys of every token before it
and averages their values. Recomputing those at every step would redo the whole text so far, so
the model keeps them: the **KV cache**, a key and a value vector per past token, per key/value
head, per layer. On a long context it is the largest thing in memory after the weights, and it is
read in full for every token generated. Sharing shrinks it.

**What it costs.** The heads of a group compare their queries with the same keys and average the
same values. Their attention patterns still differ, because each head keeps its own $W_Q$: their
queries differ, so their rows of scores (step 6) differ. What they give up is keys and values of
their own, the freedom to look for, and to carry, different features; trained models lose little
quality for the memory they save, which is why the recipe spread. $W_O$ and the two endings are
untouched: sharing changes where k and v come from, not how the heads are added.
"""


# ---- sharing keys and values ---------------------------------------------------------------------


def percent_share(x: float) -> str:
    """'88%', and more digits where whole percents would lie: a share just under 1 is '99.8%', never
    '100%' (which reads as "all of it"), and a share just above 0 is '0.2%', never '0%'."""
    for digits in (0, 1, 2):
        text = f"{x:.{digits}%}"
        if (0 < x < 1 and float(text[:-1]) in (0.0, 100.0)):
            continue
        return text
    return "over 99.99%" if x > 0.5 else "under 0.01%"


def tex_number(n: int) -> str:
    """131{,}072: a whole number with thousands separators that LaTeX leaves alone."""
    return f"{int(n):,}".replace(",", "{,}")


def sharing_here_md(H: int, H_kv: int) -> str:
    """Who reads whose keys and values at these sizes."""
    if H == 1:
        return ("Here there is one query head, so it has its keys and values to itself "
                "($H = H_{kv} = 1$): multi-head and multi-query attention coincide.")
    if H_kv == H:
        return (f"Here every one of the {H:,} query heads has its own keys and values ($H_{{kv}} = H$): nothing is "
                "shared. This is the multi-head attention of the rest of the essay; pick fewer key/value heads "
                "above to share.")
    G = H // H_kv
    everyone = "both" if H == 2 else "all of them"
    first = (f"{everyone} read the one key/value head 0: multi-query attention" if H_kv == 1 else
             f"query heads 0 … {G - 1} read key/value head 0, heads {G} … {2 * G - 1} read head 1"
             + ("" if H_kv == 2 else ", and so on"))
    return (f"Here {H:,} query heads share {count(H_kv, 'key/value head')}: groups of $G = H / H_{{kv}}$ = {G:,}, "
            f"and query head $h$ reads key/value head $\\lfloor h / {G:,} \\rfloor$, so {first}.")


def projection_params_md(summary: dict) -> str:
    """W_K and W_V's parameters against the same layer without sharing (step 5b's row)."""
    kv, plain, G = summary["kv_params"], summary["kv_params_without_sharing"], summary["group_size"]
    if G == 1:
        return (f"**Parameters.** $W_K$ and $W_V$ (step 5b) hold {count(kv, 'number')} together, as many as "
                "$W_Q$ and $W_O$: with nothing shared they are the plain multi-head matrices.")
    return (f"**Parameters.** $W_K$ and $W_V$ (step 5b) are $H_{{kv}} \\times D \\times L$ each and hold "
            f"{count(kv, 'number')} together, against {number(plain)} without sharing: $H / H_{{kv}}$ = {G:,} "
            f"times fewer. $W_Q$ and $W_O$ keep "
            + ("both heads" if summary["n_heads"] == 2 else f"all {summary['n_heads']:,} heads")
            + f" ({number(summary['qo_params'])} "
            "numbers), so the layer as a whole shrinks less: "
            f"{number(summary['layer_params'])} parameters against {number(summary['layer_params_without_sharing'])}.")


def expansion_md(table: pd.DataFrame, H: int, H_kv: int) -> str:
    """What step 5c does at these sizes, and why the code copies rather than views."""
    row = table.set_index("step").loc["5c"]
    why_copy = (
        "`core.attention.expand_kv` makes it a copy (`repeat_interleave`) on purpose. A zero-stride view "
        "cannot say \"head $h$ reads $\\lfloor h/G \\rfloor$\" on a B×H×S×L tensor (a stride maps head $h$ to "
        "$h$ times a fixed step, and $\\lfloor h/G \\rfloor$ is not of that form unless $H_{kv}$ = 1), and "
        "`torch.matmul` copies a broadcast operand before its batched product anyway. The copy keeps step 6 "
        "the very product of plain attention, and gives every query head a k and a v matrix you can look "
        "at. Fused kernels, such as torch's `scaled_dot_product_attention(..., enable_gqa=True)`, stack a "
        "group's queries against its one key matrix and copy nothing."
    )
    if H_kv == H:
        return ("**Step 5c** hands k and v on unchanged here: with $H_{kv} = H$ every query head already has its "
                "own, and nothing is copied. With fewer key/value heads it copies each one to the "
                f"$G$ query heads of its group, B×H_kv×S×L → B×H×S×L. {why_copy}")
    return (f"**Step 5c** copies each key/value head to the {H // H_kv:,} query heads of its group, "
            f"{shape_md('B×H_kv×S×L', row['input_1'])} → {shape_md(row['output_sym'], row['output'])}, "
            f"{size_bytes(row['output_bytes'])} for k and v together. {why_copy}")


def kv_formula_tex(summary: dict, layers_word: str) -> str:
    """The KV cache per token, as the formula and with this model's numbers in it."""
    s = summary
    return (
        r"\text{KV cache per token} \;=\; 2 \cdot \text{" + layers_word + r"} \cdot H_{kv} \cdot L \cdot "
        r"\text{bytes per number} \;=\; 2 \cdot " + tex_number(s["layers"]) + r" \cdot "
        + tex_number(s["n_kv_heads"]) + r" \cdot " + tex_number(s["d_head"]) + r" \cdot "
        + tex_number(s["bytes_per_number"]) + r"\ \text{B} \;=\; " + tex_number(s["per_token"])
        + r"\ \text{B}"
    )


def kv_layers_md(model_name: str | None, layers: int) -> str:
    """Where the layer count in the cache figure comes from."""
    if model_name is None:
        return ("These custom sizes describe one layer, so the cache below is for "
                "**1 layer**: a model keeps one such cache per layer. Choose a published model above to see a whole "
                "model's.")
    return (f"The table shows one layer of {model_name}; the cache below counts all {count(layers, 'layer')}, "
            "since every layer keeps its own keys and values.")


def kv_readout_md(summary: dict, factor_text: str) -> str:
    """The cache at the chosen context, with sharing and without, in words."""
    s = summary
    seqs = "one sequence" if s["batch"] == 1 else f"{s['batch']:,} sequences"
    tokens = count(s["context"], "token")
    if s["group_size"] == 1:
        return (f"**{size_bytes(s['per_token'])} per token**; for {seqs} of {tokens}, **{size_bytes(s['total'])}**. "
                f"Without sharing it is {factor_text}: $H_{{kv}} = H$ already, so there is nothing to save.")
    return (f"**{size_bytes(s['per_token'])} per token**, against {size_bytes(s['per_token_without_sharing'])} for "
            f"the same model without sharing; for {seqs} of {tokens}, **{size_bytes(s['total'])}** against "
            f"{size_bytes(s['total_without_sharing'])}: {factor_text}, the factor $H / H_{{kv}}$ = "
            f"{s['n_heads']:,} / {s['n_kv_heads']:,}.")
