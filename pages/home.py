"""Home: the essay's thesis, the two formulas, a live check of the identity, a guide to the pages
(read from ui/registry.py), and how to run a class session with rooms."""

import streamlit as st
from streamlit.errors import StreamlitAPIException

from core.compare import eps
from core.device import dtype_from_name
from core.rooms import MAX_ROOM_CHARS, new_room_code, normalize_room, valid_room
from ui.checkpoint import checkpoint, unfolded
from ui.format import number, shape
from ui.registry import CONTENT_PAGES, PAGES
from ui.shell import ensure_app_shell
from ui.views.home import DEMO, DEMO_DTYPE, live_check, wo_slice_view

ensure_app_shell()



def _fresh_code() -> None:
    st.session_state["home_room_code"] = new_room_code()


def room_links() -> None:
    """A room code (fresh, typed, or the link's own) and the links that open a page in that room."""
    if "home_room_code" not in st.session_state:
        linked = st.query_params.get("room", "")
        st.session_state["home_room_code"] = linked if valid_room(linked) else new_room_code()
    left, right = st.columns([2, 3])
    with left:
        typed = st.text_input("Room code", key="home_room_code", max_chars=MAX_ROOM_CHARS,
                              help=f"1–{MAX_ROOM_CHARS} letters and digits; case does not matter.")
        st.button("New room code", on_click=_fresh_code, icon=":material/casino:")
    with right:
        by_title = {p.title: p for p in PAGES if p.exists}
        page = by_title[st.selectbox("Page for the session", list(by_title), key="home_room_page")]
    if not valid_room(typed):
        st.error(f"A room code is 1–{MAX_ROOM_CHARS} letters and digits (no spaces or signs); "
                 "press *New room code* for one.")
        return
    code = normalize_room(typed)
    base = (st.context.url or "").rstrip("/")
    link = f"{base}/{page.url_path}?room={code}"
    st.markdown(f"**Students** open this link (room {code}):")
    st.code(link, language=None, wrap_lines=True)
    st.markdown("**You** project this one: the room's tally shows before the answer, which you reveal.")
    st.code(f"{link}&teacher=1", language=None, wrap_lines=True)
    st.caption("Add `&quiz=1` to both to keep each answering figure folded until its reader has guessed. "
               "The room counts one guess per reader and question; a code is shared by whoever "
               "uses it, so pick an unusual one on a public server.")


st.title("Multi-head attention is a sum of heads")

st.markdown(
    """
Textbooks draw multi-head attention as *split, attend, concatenate, project*: the model width
$D$ is cut into $H$ heads of width $L = D/H$, each head attends on its own, the head outputs are
glued back together into a vector of width $D$, and one big matrix $W_O$ mixes them.

That picture is correct, and it hides the most useful fact about the layer. **Concatenating and
then multiplying by $W_O$ is exactly the same as giving each head its own $L \\times D$ slice of
$W_O$, projecting each head separately, and adding the $H$ results.** The heads never talk to each
other inside the layer: each one computes a vector of width $D$ and the layer's output is their sum
(plus the output bias $b_O$, added once, where the layer has one).
"""
)

left, right = st.columns(2)
with left:
    st.markdown("**Concatenate, then project** (how the layer is usually computed)")
    st.latex(r"\mathrm{out} = \big[\, z^{0} \;\; z^{1} \;\; \cdots \;\; z^{H-1} \,\big]\, W_O \;(+\, b_O)")
    st.caption("$[B, S, H\\cdot L] \\times [H\\cdot L, D] \\to [B, S, D]$: one large matrix product.")
with right:
    st.markdown("**Project each head, then add** (how the layer is best understood)")
    st.latex(r"\mathrm{out} = \sum_{h=0}^{H-1} z^{h}\, W_O^{h} \;(+\, b_O)")
    st.caption("$H$ products $[B, S, L] \\times [L, D]$, one per head, then a sum over $h$.")

st.markdown(
    """
Why they agree takes one line. An output coordinate $j$ of token $s$ is a sum over all $D$ entries
of the concatenated vector. Split that sum at the head boundaries: rows $hL \\dots hL+L-1$ of
$W_O$ only ever meet head $h$'s $L$ numbers, so
"""
)
st.latex(
    r"\mathrm{out}_{s,j} \;=\; \sum_{i=0}^{D-1} \mathrm{concat}_{s,i}\, (W_O)_{i,j}"
    r"\;=\; \sum_{h=0}^{H-1} \underbrace{\sum_{l=0}^{L-1} z^{h}_{s,l}\, (W_O)_{hL+l,\,j}}_{\text{head } h\text{'s term}}"
)

demo = live_check(DEMO_DTYPE)
st.markdown(
    f"""
The two sides add the same $D$ products, only grouped differently, so in exact arithmetic they are
equal. On a computer, floating-point addition is not associative, and the last bits can differ.
Here is the check, run when this page loaded, on random weights at the sizes used throughout the
essay ($B={DEMO['batch']}$, $S={DEMO['seq']}$, $D={DEMO['d_model']}$, $H={DEMO['n_heads']}$, {DEMO_DTYPE}):
"""
)
c1, c2, c3 = st.columns(3)
c1.metric("Max abs diff, concat vs sum", f"{demo['max_abs']:.2e}")
c2.metric("Relative to the largest output", f"{demo['max_rel']:.2e}", help="max|a−b| / max|b|")
c3.metric("Elements bitwise identical", f"{demo['bitwise_equal']:.0%}")
st.caption(
    f"That is {demo['eps_units']:.1f} units of {DEMO_DTYPE}'s machine epsilon "
    f"(≈{eps(dtype_from_name(DEMO_DTYPE)):.1e}): rounding, not a "
    "different answer. The *Concat versus sum* page shows the same readout for any size and precision."
)

st.markdown(
    """
## Why the sum view matters

Read as a sum, a transformer layer is a set of independent writers: every head reads the
residual stream, computes a vector, and *adds* it back. Nothing is mixed between heads until the
next layer reads their total. That is what lets interpretability research attribute an output to
individual heads, knock one out and watch what changes, or trace a "circuit" of heads across
layers (the *sum at work* page does all three on a small trained model). The concatenated form is built for speed (one big matrix product keeps the hardware busy; the
*Timing* page measures what that buys on this machine), the additive form for understanding, and they are the same function.

## Notation
"""
)
cp, wo = wo_slice_view(DEMO["d_model"], DEMO["n_heads"])
checkpoint(cp)
answer = (
    f"In the code, `W_O` is {shape(wo['W_O_shape'])} ({number(wo['W_O_numel'])} numbers) and one head's "
    f"slice `W_O[0]` is {shape(wo['slice_shape'])}: {number(wo['slice_numel'])} numbers "
    f"(`core.checkpoints.home.wo_slice_sizes`).\n\n"
) if unfolded(cp) else ""
st.markdown(  # the checkpoint's answer and the notation in one block
    answer + """
| symbol | meaning | the essay's running example |
|---|---|---|
| $B$ | batch: sequences processed together | 1 |
| $S$ | sequence length: tokens per sequence | 20 |
| $V$ | vocabulary size: distinct token ids | 50,000 |
| $D$ | model width, `d_model` | 512 |
| $H$ | number of heads | 8 |
| $L$ | head width, `d_head` $= D/H$ | 64 |
| $h, s, l, i, j$ | a head, a token position, a coordinate within a head, a row and a column of $W_O$ | counted **from 0**, as in the code |

Weights follow the TransformerLens layout and right-multiply (`x @ W`): $W_Q, W_K, W_V$ are
$[H, D, L]$ and $W_O$ is $[H, L, D]$, so `W_O[h]` is head $h$'s own $L \\times D$ slice: rows
$hL \\dots hL+L-1$ of the $D \\times D$ matrix that the concatenated form multiplies by. Every index
in the essay starts at 0, as in the code: heads are $0 \\dots H-1$ (labelled h0, h1, …), and so are
tokens, rows, coordinates and the bounds of every sum.
"""
)

st.markdown("## The pages")
for page in CONTENT_PAGES:
    if not page.exists:
        continue
    try:
        st.page_link(page.file, label=f"**{page.title}**", icon=":material/arrow_forward:")
    except StreamlitAPIException:  # run on its own (AppTest), a page has no navigation to link into
        st.markdown(f"**{page.title}**")
    st.caption(page.summary)

st.markdown(
    """
## Using it in class

Every control on every page is stored in the address bar. Set up the view you want to show,
copy the URL (each page also has a *Link to this view* box), and paste it into your slides or
the class chat: everyone who opens it sees the same sizes, seed, sentence and precision, and the
same numbers, because all randomness is seeded. A link with a value that makes no sense (a
negative width, heads that don't divide it, a sentence of ten thousand characters) opens the page
anyway, with a note saying what was changed and why.

## Running a session: predict, then see

Each page asks questions marked **Predict:** right before the figure that answers them, computed
at the page's current settings. A class can answer them together, peer-instruction style:

1. **Pick a room code** under *Set up a room* below (or make up your own: letters and digits) and
   choose a page.
2. **Share the student link.** Everyone who opens it joins the room; their guesses are counted,
   one per reader and question, with no names.
3. **Let the room guess**, and project the **teacher link**: it shows how the room is guessing as
   the votes come in, without giving the answer away.
4. **Discuss**: ask students who chose different options to convince each other, and let them
   change their guesses (a changed guess moves its count).
5. **Reveal** the answer on the teacher screen and read the figure below it together.

Add `quiz=1` to fold every answering figure until each reader has guessed. Rooms live in this
server's memory and are forgotten after a few quiet hours.
"""
)
# The room setup is for the teacher: drawn only while its section is open (a lazy expander), so a
# student's run of home does not build it. A link that names a room opens it.
rooms = st.expander("Set up a room: a code and the two links", key="home_rooms", on_change="rerun",
                    expanded=bool(st.query_params.get("room")), icon=":material/groups:")
if rooms.open:
    with rooms:
        room_links()
st.markdown(
    """
## Where the ideas come from

- The additive view of heads is from Elhage et al., *A Mathematical Framework for Transformer
  Circuits* (Anthropic, 2021), section "Attention heads are independent and additive", which also
  notes that the concatenated form is preferred in practice for speed.
- A blog post that walks the shape table at $B=1, S=20, V=50{,}000, D=512, H=8$ and presents
  attention as an "addition machine" prompted the shape and identity pages.
- A from-scratch tutorial of self-attention with `torch.einsum` on the sentence
  "my name is Marcello Politi" (width 16, four heads of width 4) prompted the sentence page.
- Olsson et al., *In-context Learning and Induction Heads* (Anthropic, 2022), for the
  previous-token and induction heads that the trained model grows.
- Vaswani et al., *Attention Is All You Need* (2017), for the layer itself; the TransformerLens
  library for the weight layout.

Everything on screen is computed live by this app's `core` package (PyTorch), which you can
import in a notebook: `from core.attention import AttentionWeights, multi_head_attention`.
"""
)
