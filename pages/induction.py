"""The sum at work: a trained two-layer attention-only model whose heads you can read, add up and
knock out.

Every number comes from core.induction, through the cached views in ui.views.induction, which hand
out the charts (ui.figures.induction's) and tables ready to draw. This file is the essay and its
controls.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from core import induction as ind
from core.checkpoints import induction as cps
from ui.charts import csv_download, figure
from ui import format as fmt
from ui.checkpoint import checkpoint, unfolded
from ui.controls import MAX_SEED, MAX_SENTENCE_CHARS, Controls, heads_problem, show_link
from ui.gate import heavy
from ui import jobs
from ui.views import induction as views
from ui.shell import ensure_app_shell

ensure_app_shell()

CFG = ind.Config()
DEFAULT_POSITION = ind.default_position(0)  # the middle of the copy in the default sequence (seed 0)
NUM = st.column_config.NumberColumn
NOTE = "The numbers behind this figure"
TRAIN_BUSY = ("Another reader is training a model or running a benchmark on this server right now, and two at once "
              "would slow each other down; press Train again in half a minute.")


def nats(x: float) -> str:
    return "—" if x is None or x != x else f"{x:.3f}"


def times(a: float, b: float) -> str:
    return f"{a / b:.1f}×" if b else "—"


def cheaper(repeat: float, other: float) -> str:
    """How the loss on repeated letters compares with the rest, judged on the numbers as printed
    (3 decimals, and the ratio to 1): equal-looking numbers are 'about the same', never '1.0× less'."""
    if fmt.same_or_compare(repeat, other, ".3f", "more", "less") == "the same as" or f"{other / repeat:.1f}" == "1.0":
        return (", about the same (a difference of "
                f"{fmt.signed(abs(other - repeat), '.3f')} nats): on this sequence copying does not pay. ")
    if repeat > other:
        return ", more: on this sequence copying does not pay. "
    return f": {times(other, repeat)} less. "


data = views.shipped_page()
meta, metrics = data["meta"], data["meta"]["metrics"]
trained_on = meta.get("trained_on") or {"cpu": "a processor it did not record", "capability": "unrecorded",
                                        "torch": meta["training"]["torch"]}
N_EVAL = metrics["eval_sequences"]  # the fresh sequences behind every "on N fresh sequences" number
phase = data["phase"]
H, V, S, D, L = CFG.n_heads, CFG.d_vocab, CFG.n_ctx, CFG.d_model, CFG.d_head

st.title("The sum at work")
st.markdown(
    r"""
The other sections of this essay prove one identity on random weights: concatenating the heads and
projecting with $W_O$ gives the same vector as projecting each head with its own slice $W_O^h$
(rows $hL \dots hL+L-1$) and adding the heads up. This section *uses* it. Below is a small
transformer that was trained to do something, and because its output is a sum of per-head terms
you can read what each head does, split a prediction into one number per head, and remove a head
to see what breaks.

**The model.** Two layers of causal multi-head attention and nothing else: no MLP, no LayerNorm,
no biases. Token $t$ at position $i$ enters as $W_E[t] + W_\text{pos}[i]$; each layer adds its
heads' outputs into that *residual stream*; the unembedding $W_U$ turns the final stream into
logits. Each layer here is `core.attention.multi_head_attention`, the same function every other
page runs. With nothing but additions between them, the logits are exactly a sum
(Elhage et al., 2021, *A Mathematical Framework for Transformer Circuits*):
"""
)
st.latex(
    r"\text{logits}_i = \Big(W_E[t_i] + W_\text{pos}[i] + \sum_{l=0}^{1}\sum_{h=0}^{H-1}"
    r" \text{result}^{l,h}_i\Big)\,W_U,\qquad \text{result}^{l,h}_i = z^{l,h}_i\,W_O^{l,h}"
)
st.markdown(
    rf"""
**The task.** Each training sequence is {S} random letters in which a span of random length
({CFG.min_repeat} to {CFG.max_repeat} letters) appears twice, both copies at random places. The
letters outside the copy are unpredictable: the best any model can do there is a uniform guess
over the $V = {V}$ letters, a loss of $\ln V = {metrics['ln_vocab']:.3f}$ nats. Inside the second copy the
next letter is known, but only to a model that finds where the current letter occurred before and
reads off what followed it. Because the span's length and place change every time, position alone
cannot say where to look. Olsson et al. (2022, *In-context Learning and Induction Heads*) showed
how two-layer attention-only models solve this: a **previous-token head** in layer 0 writes "the
letter before me was A" into each position, and an **induction head** in layer 1 uses that as its
key, so that at a second A it attends to the letter after the first A and copies it.

**Why these sizes.** $V = {V}$ letters (a–z, A–Z) so that a sequence can be typed and read, and so
that a letter recurs by chance rarely enough for copying to pay; $S = {S}$ positions so that one
sequence fits across a heatmap; $D = {D}$ with $H = {H}$ heads of $L = {L}$ dimensions per layer, so
that each head can match letters sharply while the whole model is only
{data['size']:,} numbers. It trained in {meta['training']['cpu_seconds']:.0f} s of CPU time on one thread of
{trained_on['cpu']} (`python -m core.induction train --seed {meta['config']['seed']} --out core/weights/induction.pt`),
and the weights this page reads are what that command wrote, in TransformerLens's names and shapes.
"""
)

# ---- the sequence ----------------------------------------------------------------------------------

st.header("1 · The task and the model's answers")
controls = Controls()
with st.container(border=True):
    c = st.columns([1, 3])
    seed = controls.integer("seed", "Seed of the random sequence", default=0, lo=0, hi=MAX_SEED, where=c[0],
                            help="Draws a fresh sequence of the task: random letters with one repeated span.")
    text = controls.text("sequence", "…or type a sequence (letters a–z, A–Z, or ids 0–51 separated by commas)",
                         default="", max_chars=MAX_SENTENCE_CHARS, where=c[1],
                         help=f"At most {S} tokens. Try a word twice: `theCatSatOnTheCatSat`. Empty: the random sequence.")
controls.show_notices()
view = views.sequence_view(seed, text)
for problem in view["problems"]:
    st.warning(problem, icon=":material/edit_note:")

table = view["table"]
if view["copy"]:
    cp = view["copy"]
    where = (f"Seed {seed} draws the sequence below; its span of {cp['length']} letters starting at position "
             f"{cp['start'] - cp['offset']} repeats at position {cp['start']}.")
else:
    n_rep = view["n_repeat"]
    where = (f"Your sequence has {fmt.count(len(view['ids']), 'token')}; {n_rep} of its positions "
             f"{'is' if n_rep == 1 else 'are'} followed by a letter that copying can predict (the pair of letters "
             "occurred earlier).")
st.markdown(f"{where} `{view['text']}`")
m = st.columns(4)
m[0].metric("loss on repeated positions", nats(view["loss_repeat"]), help="Mean cross-entropy (nats) where the next letter is predictable by copying.")
m[1].metric("loss on the other positions", nats(view["loss_other"]), help="Mean cross-entropy where the next letter is random.")
m[2].metric("uniform guess, ln V", nats(metrics["ln_vocab"]))
m[3].metric(f"on {N_EVAL} fresh sequences: repeated / other", f"{metrics['loss_repeat']:.3f} / {metrics['loss_other']:.3f}",
            help=f"core.induction.evaluate on sequences never seen in training (seed {metrics['eval_seed']}).")
figure(
    view["loss_spec"],
    caption=("The model's loss at every position of this sequence (bars; the letter above each bar is the one it "
             "had to predict), repeated positions in blue; the dashed line is ln V. Computed by "
             "core.induction.token_losses on core.induction.run."),
    table=view["table_drawn"]["arrow"], csv=view["table_drawn"]["csv"], csv_name="induction_sequence.csv", key="seq_fig", table_label="Every position: the model's top guesses",
    column_config={"p_guess": NUM("p(top guess)", format="%.3f"), "p_next": NUM("p(next)", format="%.3f"),
                   "loss": NUM("loss (nats)", format="%.4f")},
)

if view["n_repeat"] and not math.isnan(view["loss_repeat"]):
    st.markdown(
        f"On this sequence the model pays {view['loss_repeat']:.3f} nats per repeated letter against "
        f"{view['loss_other']:.3f} elsewhere" + cheaper(view["loss_repeat"], view["loss_other"])
        + f"On {N_EVAL} fresh "
        f"sequences the loss on repeated positions is {metrics['loss_repeat']:.3f} nats, "
        f"{times(metrics['ln_vocab'], metrics['loss_repeat'])} below the uniform guess; on the rest it is "
        f"{metrics['loss_other']:.3f}, {'above' if metrics['loss_other'] > metrics['ln_vocab'] else 'at or below'} "
        f"ln V = {metrics['ln_vocab']:.3f}. Outside the copy the loss is {metrics['loss_other_seen']:.3f} after a letter "
        f"that occurred earlier in the sequence and {metrics['loss_other_unseen']:.3f} after a new one"
        + (": where a letter recurs by chance, copying what followed it last time is a guess, and on average it "
           "does worse than guessing uniformly." if metrics["loss_other_seen"] > metrics["ln_vocab"] else ".")
    )
else:
    st.info("This sequence has no repeated pair of letters, so there is nothing to copy: type a word twice to see "
            "the model predict the second one.", icon=":material/info:")

st.subheader("How it learned: a phase change")
if phase:
    st.markdown(
        f"""
The shipped run trained for {meta['config']['steps']:,} steps on batches of {meta['config']['batch']} fresh
sequences. At step {phase['from_step']} the loss on repeated positions is still {phase['loss_before']:.2f} nats,
{phase['loss_before'] / metrics['ln_vocab']:.0%} of ln V; {phase['to_step'] - phase['from_step']} steps later it
is {phase['loss_after']:.2f}, and over the same steps the best layer-1 head's induction score climbs
from {phase['induction_before']:.2f} to {phase['induction_after']:.2f}. That sudden drop is the *phase change*
Olsson et al. describe: the two heads of the circuit form together, because neither is useful
without the other.
"""
    )
curve_specs = data["curve_specs"]
st.vega_lite_chart(spec=curve_specs["losses"], width="stretch", theme="streamlit",
                   alt="Training curve: loss on repeated and other positions against the training step.")
figure(
    curve_specs["scores"],
    caption=(f"The shipped run's training curve, measured every {meta['config']['eval_every']} steps on "
             f"{meta['config']['eval_batch']} fixed fresh sequences: loss on "
             "repeated and other positions (top) and the best layer-0 previous-token and layer-1 induction "
             "scores (bottom); the dashed vertical line is where the repeated loss fell fastest "
             "(core.induction.phase_change). Recorded by core.induction.train."),
    table=data["curve"]["arrow"], csv=data["curve"]["csv"], csv_name="induction_training_curve.csv", key="curve_fig",
    column_config={c: NUM(format="%.4f") for c in data["curve_columns"] if c != "step"},
)

# ---- the heads ------------------------------------------------------------------------------------

st.header("2 · Every head's pattern")
scores = view["scores"]
prev_best = metrics["prev_token_head"]
ind_heads = metrics["induction_heads"]
st.markdown(
    rf"""
Each head's *pattern* is a lower-triangular matrix: row $i$ is the query position, column $j$ a key
position $\le i$, and the row sums to 1. Two numbers say what a head is for. Its **previous-token
score** is the mean attention from each position to the one just before it. Its **induction score**
is the mean attention from each letter of the second copy to the one key that *followed* the
letter's most recent earlier occurrence (Olsson et al.'s definition). A head that spread its attention evenly would score about
{metrics['prev_token_baseline']:.3f} and {metrics['induction_baseline']:.3f} (that is the average of
$1/(i+1)$ over the positions scored, not zero).

On {N_EVAL} fresh sequences, {prev_best} has a previous-token score of
{max(metrics['prev_token_scores']):.2f}, {times(max(metrics['prev_token_scores']), metrics['prev_token_baseline'])}
the even spread, and {', '.join(f"{h} an induction score of {metrics['induction_scores'][int(h[3:])]:.2f}" for h in ind_heads)}
({times(max(metrics['induction_scores']), metrics['induction_baseline'])} the even spread at best). In the
heatmaps, {prev_best} is the bright line just below the diagonal; an induction head on a repeated
sequence draws a second, shifted line: each query in the copy looks back to the letter after its
earlier occurrence{f", {view['copy']['offset'] - 1} positions back in this sequence" if view['copy'] else ""}.
"""
)
cp_attend = views.attend_checkpoint(seed, text)  # None where no key stands out: nothing to ask
if cp_attend is not None:
    checkpoint(cp_attend)
if cp_attend is None or unfolded(cp_attend):
    figure(
        view["patterns_spec"],
        caption=("Attention patterns of every head on this sequence: rows are queries, columns keys (labelled "
                 "position:letter), one colour scale from 0 to 1 (viridis); hover for exact weights. "
                 "trace.pattern from core.attention.multi_head_attention inside core.induction.run."),
        table=view["patterns"]["arrow"], csv=view["patterns"]["csv"], csv_name="induction_patterns.csv", key="pattern_fig",
        column_config={"weight": NUM(format="%.4f")},
    )
# placeholder="": a missing score is an empty cell, as the caption says (st.dataframe's default is a grey "None").
st.dataframe(view["scores_drawn"]["arrow"], hide_index=True, width="stretch", placeholder="",
             column_config={c: NUM(format="%.3f") for c in scores.columns if c != "head"})
csv_download(view["scores_drawn"]["csv"], "induction_head_scores.csv", key="scores_csv")
n_scored, n_adjacent = view["n_scored"], view["n_adjacent"]
left_out = (f" {fmt.count(n_adjacent, 'repeated position')} {'is' if n_adjacent == 1 else 'are'} left out: "
            f"there the letter's most recent earlier occurrence is one or two back, so the key after it is the query "
            f"itself or the key before it, where an induction head cannot be told from a head that looks at itself or "
            f"one back." if n_adjacent else "")
if n_scored:
    on_this = f"the induction score averages over {fmt.count(n_scored, 'repeated position')}.{left_out}"
elif n_adjacent:
    on_this = f"the induction score is blank: no repeated position can score it.{left_out}"
else:
    on_this = "the induction score is blank: the sequence has no repeated position."
st.caption(
    f"Scores on this sequence come from core.induction.prev_token_scores and sequence_induction_scores; {on_this} "
    f"The scores on {N_EVAL} fresh sequences come from core.induction.evaluate (the shipped JSON); those columns are "
    f"blank where the score is not what that layer is for."
)


# ---- the sum --------------------------------------------------------------------------------------

CARRIED_POSITION_NOTE = "_induction_position_note"


def clamp_position(n: int, repeat_positions: list[int]) -> None:
    """Move the position picker inside a sequence of ``n`` tokens *before* it is drawn, so that the
    slider, the link and the section agree (the slider's range stays 0 … S − 2 for every sequence).

    A position the reader chose (in the link, or earlier with the slider) moves to the last one
    with a next letter, with a warning; the page's default, which belongs to seed 0's sequence,
    moves to this sequence's last repeated position, with a caption. On the session's first run
    the link decides the widget's value, so the link itself is rewritten and the page reruns once.
    """
    last = n - 2

    def target_and_note(old: int, chosen: bool) -> tuple[int, tuple[str, str]]:
        if chosen:
            return last, ("warning", f"This sequence has {fmt.count(n, 'token')}, so the last position with a next "
                                     f"letter is {last}; the position moved from {old} to {last}.")
        if repeat_positions:
            to = repeat_positions[-1]
            return to, ("caption", f"This sequence has {fmt.count(n, 'token')}; the position moved to {to}, its last "
                                   "repeated position.")
        return last, ("caption", f"This sequence has {fmt.count(n, 'token')}; the position moved to {last}, its last "
                                 "position with a next letter.")

    if "position" in st.session_state:  # a later run: the session's value is the widget's
        old = st.session_state["position"]
        if isinstance(old, int | float) and old > last:
            to, note = target_and_note(int(old), chosen=int(old) != DEFAULT_POSITION)
            st.session_state["position"] = to
            (st.warning if note[0] == "warning" else st.caption)(note[1])
        return
    raw = st.query_params.get("position")
    try:
        value = float(raw) if raw is not None else float(DEFAULT_POSITION)
    except ValueError:
        value = float("nan")
    refused = not (value.is_integer() and 0 <= value <= S - 2)  # not a number, or off the slider
    if refused:
        if DEFAULT_POSITION <= last:
            return  # the widget falls back to the default, which fits, and Controls.integer says why
        old, chosen = DEFAULT_POSITION, False
    else:
        old, chosen = int(value), raw is not None
    if old <= last:
        return
    to, note = target_and_note(old, chosen)
    if refused:
        shown = str(raw)[:20].replace("`", "'")
        note = ("warning", f"The link asked for `position={shown}`, which is not a position of this sequence; "
                           f"showing position {to}.")
    st.query_params["position"] = str(to)
    st.session_state[CARRIED_POSITION_NOTE] = [note]
    st.rerun()


@st.fragment
@heavy  # a fragment rerun does not pass the page gate (streamlit_app.py): take it here
def logit_section() -> None:
    st.header("3 · The output as a sum")
    st.markdown(
        r"""
Pick a position $i$. The model's logit for the letter that actually comes next is the final
residual stream dotted with that letter's column of $W_U$, and the stream is a sum, so the logit
is a sum too: one term for the letter's embedding, one for the position's, and one for every head
of both layers. This is *direct logit attribution*: the same identity as the rest of the essay,
with $W_U$ applied to each head's term before the heads are added.
"""
    )
    c = Controls()
    n = len(view["ids"])
    for kind, note in st.session_state.pop(CARRIED_POSITION_NOTE, []):
        (st.warning if kind == "warning" else st.caption)(note)
    clamp_position(n, view["repeat_positions"])
    position = c.integer("position", "Position i", default=DEFAULT_POSITION, lo=0, hi=S - 2, slider=True,
                         help="The position whose next-letter logit is split into terms.")
    c.show_notices()
    if position > n - 2:  # clamp_position moved the widget already; this only guards the section itself
        st.warning(f"This sequence has {fmt.count(n, 'token')}; showing position {n - 2}.")
        position = n - 2
    t = views.terms_view(seed, text, position)
    row = table.iloc[position]
    terms = t["terms"]
    top = terms.iloc[2:].sort_values("value", ascending=False).iloc[0]
    kind = "a repeated position" if row["kind"] == "repeated" else "not a repeated position"
    st.markdown(
        f"At position {position} the letter is `{row['token']}` and the next is `{row['next']}` ({kind}). "
        f"The model gives `{row['next']}` logit {fmt.signed(t['logit'], '.4f')} (probability "
        f"{t['target_prob']:.3f}); of the heads' terms the largest is {top['term']}'s, {fmt.signed(top['value'], '+.4f')}."
    )
    k = st.columns(3)
    k[0].metric("sum of the terms", f"{t['sum']:.10f}")
    k[1].metric("the model's logit", f"{t['logit']:.10f}")
    k[2].metric("difference", f"{t['difference']:.2e}", help="Rounding only: float64, summed in a different order.")
    figure(
        t["spec"],
        caption=("The logit as a running sum: embed, pos, then each head's term (result · W_U[:, next]); the "
                 "outlined bar is the model's own logit. core.induction.logit_terms, in float64."),
        table=t["terms_drawn"]["arrow"], csv=t["terms_drawn"]["csv"], csv_name="induction_logit_terms.csv", key="terms_fig",
        column_config={"value": NUM("term", format="%.8f")},
    )
    st.markdown(
        "A softmax only cares about differences between logits, so a term that raises every letter's logit "
        "equally predicts nothing; the terms that matter are those that raise this letter more than the others. "
        f"Here the mean logit over all {V} letters is {fmt.signed(t['mean_logit'], '.4f')}."
    )


logit_section()


# ---- knock heads out -----------------------------------------------------------------------------

@st.fragment
@heavy  # 512 sequences on a miss: one such run per core at a time, as for a page
def ablation_section() -> None:
    st.header("4 · Knock heads out")
    st.markdown(
        f"""
Because each head is one term of the sum, removing a head is removing a term. **Zero ablation** drops
it; **mean ablation** puts back the head's average term at that position over the same {ind.EVAL_BATCH} sequences,
which keeps the residual stream at its usual offset and removes only what the head says about
*this* sequence. Removing a layer-0 head also changes what layer 1 reads: that is composition.
"""
    )
    c = Controls()
    cols = st.columns([2, 1])
    raw = c.text("ablate", "Heads to remove, as layer.head (e.g. 0.0 or 1.0,1.1)", default="", max_chars=80,
                 where=cols[0], help="A comma-separated list; L0H1 works too. Empty: only the standard rows.")
    mode = c.choice("ablation", "Ablation", ["zero", "mean"], default="zero", where=cols[1])
    c.show_notices()
    chosen, problems = ind.parse_ablate(raw, H)
    for p in problems:
        st.warning(p, icon=":material/edit_note:")
    abl = views.ablation_view(ind.format_ablate(chosen))
    by = abl.set_index("removed")
    clean = by.loc["nothing", f"loss_repeat_{mode}"]
    no_ind = by.loc["the induction heads", f"loss_repeat_{mode}"]
    no_prev = by.loc[prev_best, f"loss_repeat_{mode}"]
    singles = [ind.head_label(1, h) for h in range(H)]
    worst_single = max(singles, key=lambda h: by.loc[h, f"loss_repeat_{mode}"])
    alone = by.loc[worst_single, f"loss_repeat_{mode}"]
    if chosen:  # the question asks about the reader's own choice, the last row of the table
        asked = abl["removed"].iloc[-1]
        labels = [ind.head_label(l, h) for l, h in chosen]
        named = f"{fmt.plural(len(labels), 'head')} {', '.join(labels)}"
    else:
        asked = "the induction heads"
        named = f"the induction {fmt.plural(len(ind_heads), 'head')} {', '.join(ind_heads)}"
    cp_knock = cps.knockout(abl, asked, named, mode, metrics["ln_vocab"])
    checkpoint(cp_knock)
    if not unfolded(cp_knock):
        return
    if len(ind_heads) > 1 and alone < no_ind:
        single = (f"Removing one of them alone hurts less (at worst {worst_single}: {alone:.3f}): the other still "
                  "copies, so the circuit has a spare.")
    else:
        single = f"Removing {worst_single} alone gives {alone:.3f}."
    st.markdown(
        f"With {mode} ablation: removing the induction heads ({', '.join(ind_heads)}) takes the loss on repeated "
        f"positions from {clean:.3f} to {no_ind:.3f} nats, {abs(no_ind - metrics['ln_vocab']):.2f} from ln V = "
        f"{metrics['ln_vocab']:.3f}. {single} Removing the previous-token head {prev_best}, which attends one "
        f"position back, gives {no_prev:.3f}, {times(no_prev, clean)} the clean loss: without its output the "
        "induction heads' keys no longer say which letter came before, and they cannot find the copy."
    )
    drawn = views.ablation_figure(ind.format_ablate(chosen), mode)
    figure(
        drawn["spec"],
        caption=(f"Loss on repeated (blue) and other (orange) positions of {ind.EVAL_BATCH} fresh sequences with each set of heads "
                 f"removed ({mode} ablation); the dashed line is ln V. core.induction.ablation_table."),
        table=drawn["arrow"], csv=drawn["csv"], csv_name="induction_ablation.csv", key="abl_fig", table_label="Every ablation, zero and mean",
        column_config={col: NUM(format="%.4f") for col in abl.columns if col.startswith("loss")},
    )
    if chosen:
        mine = by.iloc[-1]
        st.markdown(
            f"Your choice, {ind.format_ablate(chosen)}: loss on repeated positions {mine[f'loss_repeat_{mode}']:.3f}, "
            f"on the others {mine[f'loss_other_{mode}']:.3f} nats."
        )


ablation_section()

# ---- composition ---------------------------------------------------------------------------------

st.header("5 · Composition: how the induction head finds its key")
comp = views.composition_view()
path = comp["path"]
st.markdown(
    r"""
Elhage et al. split a head into two circuits: its **QK circuit** $W_Q W_K^\top$ ($D \times D$),
which scores a query against a key, and its **OV circuit** $W_V W_O$, which says what it writes. A
layer-1 head can read a layer-0 head's output on its query side (Q-composition), its key side
(K-composition) or its value side (V-composition). The K-composition score of layer-0 head $a$
and layer-1 head $b$ is
"""
)
st.latex(r"\frac{\lVert W_{OV}^{a}\,(W_{QK}^{b})^\top \rVert_F}{\lVert W_{OV}^{a}\rVert_F\,\lVert W_{QK}^{b}\rVert_F}")
st.markdown(
    f"""
the fraction of the two matrices' sizes that survives their product (the orientation of
TransformerLens's `all_composition_scores`). Random matrices of the same shapes score
{comp['baseline']:.3f} ± {comp['baseline_std']:.3f}; {comp['src']} into {comp['dst']} scores
{comp['k_pair']:.3f}, {times(comp['k_pair'], comp['baseline'])} the random baseline.
"""
)
figure(
    comp["spec"],
    caption=(f"Q-, K- and V-composition of every layer-0 head with every layer-1 head; random matrices of the same "
             f"shapes score {comp['baseline']:.3f} on average. core.induction.composition_scores."),
    table=comp["long"]["arrow"], csv=comp["long"]["csv"], csv_name="induction_composition.csv", key="comp_fig",
    column_config={col: NUM(format="%.4f") for col in ("score", "baseline", "score minus baseline")},
)
st.markdown(
    rf"""
A norm says *that* two heads talk, not *what* they say. Follow the path token by token: a query
letter $a$ enters {comp['dst']} as $W_E[a]\,W_Q$; a key whose previous letter is $b$ carries, from
{comp['src']}, about $W_E[b]\,W_V W_O$, which {comp['dst']} reads as $W_E[b]\,W_V W_O W_K$. Their dot
product, a ${V} \times {V}$ matrix, says how much a query $a$ wants a key that follows $b$. For an
induction head it should prefer $b = a$: in
{path['diagonal_argmax_fraction']:.0%} of the rows of the matrix below, the largest entry is on the
diagonal, whose mean is {path['diagonal_mean']:.2f} against {path['off_diagonal_mean']:.2f} ± {path['off_diagonal_std']:.2f} off it.
"""
)
figure(
    comp["qk_spec"],
    caption=(f"The K-composition path from {comp['src']} into {comp['dst']}: (W_E W_Q)(W_E W_V W_O W_K)ᵀ / √L, "
             "query letter down, the key's previous letter across (diverging colours centred on 0). "
             "core.induction.qk_path."),
    table=comp["qk"]["arrow"], csv=comp["qk"]["csv"], csv_name="induction_qk_path.csv", key="qk_fig",
)

# ---- train it yourself -----------------------------------------------------------------------------

server = views.this_machine()


# Metrics of a retrain this close to the shipped ones print alike at the page's two decimals: the
# same behaviour (measured across processors: at most 2.5e-4 apart, tests/test_induction_core.py).
SAME_METRIC = 5e-3


def retrain_comparison(run: dict, seed: int, heads: int, steps: int) -> None:
    """A reader's run beside the shipped one: where each trained, the metrics, and (for the shipped
    configuration) how far the weights moved. Every number is core.induction's."""
    rm, mine = run["metrics"], run["trained_on"]
    machines = pd.DataFrame({
        "trained with": ["processor", "PyTorch kernels", "PyTorch"],
        "your run": [mine["cpu"], mine["capability"], mine["torch"]],
        "shipped run": [trained_on["cpu"], trained_on["capability"], trained_on["torch"]],
    })
    st.dataframe(machines, hide_index=True, width="stretch")
    versus = run["versus_shipped"].rename(columns={"this run": "your run", "reference": "shipped run"})
    weights = run["weights_versus_shipped"]
    largest_metric = float(versus["difference"].abs().max())
    same_heads = (rm["prev_token_head"] == metrics["prev_token_head"]
                  and rm["induction_heads"] == metrics["induction_heads"])
    heads_said = (f"{rm['prev_token_head']} as the previous-token head and {', '.join(rm['induction_heads'])} as "
                  f"the induction {fmt.plural(len(rm['induction_heads']), 'head')}")
    if weights is not None:
        worst = weights.loc[weights["largest difference"].idxmax()]
        if worst["largest difference"] == 0:
            said = ("Every weight of your run equals the shipped one bit for bit: this server added the products in "
                    "the same order as the machine that trained them.")
        else:
            said = (f"This is the shipped configuration retrained here. The weights are not the shipped ones: the "
                    f"largest difference is {fmt.sci(worst['largest difference'])} in `{worst['tensor']}`, "
                    f"{worst['relative']:.2%} of that tensor's largest entry. ")
            if same_heads and largest_metric < SAME_METRIC:
                said += (f"What the model does is the same: the metrics differ by at most {fmt.sci(largest_metric)} "
                         f"(nats, or attention weight for the scores), and the same heads form the circuit "
                         f"({heads_said}).")
            elif same_heads:
                said += (f"The same heads form the circuit ({heads_said}), but the metrics differ by up to "
                         f"{fmt.sci(largest_metric)}: more than rounding carried through training.")
            else:
                said += (f"The metrics differ by up to {fmt.sci(largest_metric)}, and the heads split the work "
                         f"differently: this run has {heads_said}, the shipped one {metrics['prev_token_head']} and "
                         f"{', '.join(metrics['induction_heads'])}.")
        st.markdown(said)
    else:
        st.markdown(
            f"Seed {seed} with {fmt.count(heads, 'head')} and {steps:,} steps is not the shipped configuration "
            f"(seed {meta['config']['seed']}, {fmt.count(H, 'head')}, {meta['config']['steps']:,} steps), so its "
            "weights have no shipped counterpart to compare with; its metrics stand beside the shipped run's below."
        )
    st.dataframe(versus, hide_index=True, width="stretch",
                 column_config={"your run": NUM(format="%.4f"), "shipped run": NUM(format="%.4f"),
                                "difference": NUM(format="%.2e")})
    if weights is not None:
        st.dataframe(weights, hide_index=True, width="stretch",
                     column_config={"largest difference": NUM(format="%.2e"), "largest entry": NUM(format="%.4f"),
                                    "relative": NUM("largest difference / largest entry", format="percent")})
        csv_download(weights, "induction_retrain_weight_differences.csv", key="retrain_csv")
    st.caption("Your run against the shipped one: core.induction.this_machine (where each trained; the shipped run's "
               "record is in core/weights/induction.json), core.induction.metric_differences and, for the shipped "
               "configuration, core.induction.weight_differences (per tensor, the largest absolute difference).")


st.header("6 · Train it yourself")
st.markdown(
    f"""
The weights above came from seed {meta['config']['seed']}, trained on {trained_on['cpu']} with PyTorch
{trained_on['torch']}'s {trained_on['capability']} kernels. Train the same model on this server,
from that seed or another, or with another number of heads per layer; whether and when the phase
change happens can depend on both. One long job (a training run, or the timing page's benchmark)
runs at a time on this server, and a finished run is kept, so a link to its settings shows it
without training again.

**Same seed, another processor.** Training runs on one thread with deterministic kernels, so on one
machine a seed gives the same weights bit for bit. Across processors it does not: another vector
instruction set (AVX-512, AVX2, ARM's) or another vendor's maths library adds the same products in
another order, every step rounds a little differently, and {meta['config']['steps']:,} steps carry
the difference forward. What comes out the same is what the model *does*: the same heads forming
the same circuit, with the same losses to a few decimals. It is this essay's subject in miniature:
a sum computed in another order is the same sum up to rounding. This server runs PyTorch
{server['torch']}'s {server['capability']} kernels on {server['cpu']}; train seed
{meta['config']['seed']} with {fmt.count(H, 'head')} and {meta['config']['steps']:,} steps (the
settings below start there) to see how far it lands from the shipped weights.
"""
)
train_controls = Controls()
tc = st.columns(3)
train_seed = train_controls.integer("train_seed", "Training seed", default=meta["config"]["seed"], lo=0, hi=MAX_SEED, where=tc[0])
heads = train_controls.integer("heads", "Heads per layer", default=H, lo=1, hi=ind.MAX_HEADS, where=tc[1],
                               help=f"Must divide d_model = {D}.")
steps = train_controls.integer("steps", "Steps", default=CFG.steps, lo=100, hi=ind.MAX_STEPS, step=100, where=tc[2],
                               help=f"At most {ind.MAX_STEPS:,}.")
train_controls.show_notices()
problem = heads_problem(D, heads, ind.MAX_HEADS)
if problem:
    st.error(problem)
else:
    cpu = meta["training"]["cpu_seconds"]
    st.caption(f"The shipped {meta['config']['steps']:,} steps took {cpu:.0f} s of CPU time on one thread "
               "where it was trained; on a busy server, longer.")
    pressed = st.button("Train", icon=":material/model_training:", key="train")
    key = views.train_key(train_seed, heads, steps)
    item = jobs.run_job(key, views.train_job(train_seed, heads, steps), busy_message=TRAIN_BUSY,
                        waiting_text="Starting…") if pressed else None
    item = item or jobs.stored(key)  # a finished run with these settings, by this reader or another
    run = item["result"] if item else None
    if run is None:
        st.info("No run with these settings on this server yet. Press **Train**.", icon=":material/model_training:")
    if run is not None:
        rm = run["metrics"]
        st.success(f"Trained {steps:,} steps from seed {train_seed} with {fmt.count(heads, 'head')} per "
                   f"layer in {run['seconds']:.1f} s ({run['cpu_seconds']:.1f} s CPU).", icon=":material/check:")
        retrain_comparison(run, train_seed, heads, steps)
        formed = run["formed"]
        ph = run["phase"]
        st.markdown(
            (f"This run formed an induction head ({rm['induction_head']}, score {max(rm['induction_scores']):.2f}); "
             f"its repeated loss fell fastest around step {ph.get('step')}.") if formed else
            (f"This run has no induction head yet: its best layer-1 induction score is {max(rm['induction_scores']):.2f}, "
             f"below {ind.HEAD_SCORE_THRESHOLD}. More steps, or another seed, may find the phase change.")
        )
        your_specs = run["curve_specs"]
        st.vega_lite_chart(spec=your_specs["losses"], width="stretch", theme="streamlit",
                           alt="Your run's loss on repeated and other positions against the training step.")
        figure(
            your_specs["scores"],
            caption="Your run's training curve, measured as for the shipped run. core.induction.train.",
            table=run["curve"], csv_name="induction_your_curve.csv", key="your_curve",
        )

st.markdown(
    """
### What the sum bought

Every step above leaned on one fact: a head's output is a separate term that is *added* to the
residual stream. That is why one logit splits into per-head numbers that add up exactly, why a head
can be removed by deleting one term, and why a layer-1 head's key can be traced back to a layer-0
head through a product of two small matrices. Concatenating the heads and multiplying once by
$W_O$ computes the same thing faster; writing it as a sum is what lets you read it.

*References.* N. Elhage, N. Nanda, C. Olsson et al., *A Mathematical Framework for Transformer
Circuits*, Transformer Circuits Thread, 2021. C. Olsson, N. Elhage, N. Nanda et al., *In-context
Learning and Induction Heads*, Transformer Circuits Thread, 2022.
"""
)
# The sections' own controls live in fragments; their current values come from the session.
section_values = {k: st.session_state[k] for k in ("position", "ablate", "ablation") if k in st.session_state}
show_link({**controls.values, **section_values, **train_controls.values})
