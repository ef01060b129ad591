"""The induction page's checkpoints: where the induction head looks, and what removing heads costs.

Two misconceptions this page meets in students:

- that an induction head attends to the *earlier copy of the current letter* (it attends to the
  letter that came right *after* it, which is what it copies), or simply to the previous letter;
- that every head matters about equally, so that removing any head raises the loss "a little"
  (removing the induction heads sends the loss on repeated letters back to about ln V, a uniform
  guess; removing the other layer-0 head can even lower it).

Each builder computes its right option with the same ``core.induction`` call as the figure the
question stands before: the attention pattern of ``core.induction.run``, and the loss table of
``core.induction.ablation_table``. So a teacher's link with another sequence, another seed or
another set of removed heads asks a question whose answer is still true there.
"""

from __future__ import annotations

import pandas as pd
import torch

from core import induction as ind
from core.checkpoints import Checkpoint, choice, fingerprint

__all__ = ["question_position", "attend_most", "knockout_category", "knockout", "KNOCKOUT_OPTIONS"]

# Two keys whose weights print alike at two decimals are not told apart as a wrong option.
ATTEND_TIE = 0.005


def question_position(repeat_positions: list[int], n: int) -> int:
    """The query the attention question asks about: the sequence's last repeated position (where an
    induction head has something to copy), or its last position when nothing repeats."""
    return repeat_positions[-1] if repeat_positions else n - 1


def _label(ids: list[int], j: int) -> str:
    return f"{j}:{ind.ALPHABET[ids[j]]}"  # as the heatmaps label a key


def attend_most(model: ind.InductionModel, ids: list[int], repeat_positions: list[int], layer: int,
                head: int) -> Checkpoint | None:
    """Which key head (layer, head) attends to most from the query :func:`question_position` picks
    on the sequence ``ids`` (whose repeated positions are ``repeat_positions``).

    Right: the largest entry of the pattern's row ``query`` (core.induction.run, the heatmaps' data).
    Wrong, in this order: the key after the most recent earlier occurrence of the query's letter
    (the induction key), that earlier occurrence itself, the previous key, the query itself, the
    first key, then the remaining keys from the back; any whose weight prints like the largest is
    left out, so two options can never both be right. None when every key's weight prints like the
    largest (e.g. ``gg``: the row splits evenly), since then there is nothing to choose.
    """
    n = len(ids)
    if n < 2:
        raise ValueError("a sequence of one token has only one key to attend to: nothing to choose")
    query = question_position(repeat_positions, n)
    tokens = torch.tensor([ids])  # [1, n]
    with torch.no_grad():
        r = ind.run(model, tokens)
    row = r.traces[layer].pattern[0, head, query, : query + 1].double()  # [query + 1] keys 0 … query
    best = int(row.argmax())
    top = float(row[best])
    induction_key = int(ind.induction_keys(tokens)[0, query])  # −1: the letter is new
    earlier = induction_key - 1 if induction_key > 0 else -1
    candidates = [induction_key, earlier, query - 1, query, 0, *range(query - 2, 0, -1)]
    wrong = [_label(ids, j) for j in candidates
             if 0 <= j <= query and j != best and top - float(row[j]) > ATTEND_TIE]
    if not wrong:
        return None
    head_name = ind.head_label(layer, head)
    letter = ind.ALPHABET[ids[query]]
    rest = row.clone()
    rest[best] = -1
    second = int(rest.argmax())
    why = (f"Row {_label(ids, query)} of {head_name}'s pattern is brightest at key {_label(ids, best)}, weight "
           f"{top:.2f} (the next brightest, {_label(ids, second)}, has {float(row[second]):.2f}). ")
    if best == induction_key and induction_key >= 0:
        why += (f"That is the key right after the most recent earlier `{letter}` (position {earlier}): the head "
                "reads what followed the letter last time, which is what the model copies.")
    elif best == earlier and earlier >= 0:
        why += f"That is the earlier `{letter}` itself, not the key after it."
    elif best == query - 1:
        why += "That is the previous key: here the head looks one back, like a previous-token head."
    elif best == query:
        why += "That is the query itself."
    elif best == 0:
        why += "That is the first key of the sequence."
    question = (f"In the heatmaps below, which key does the induction head {head_name} attend to most from "
                f"query {_label(ids, query)}, the last " + ("repeated " if repeat_positions else "")
                + "position of this sequence?")
    return choice("induction.attend_most", question, _label(ids, best), wrong, why,
                  fingerprint(ids=tuple(ids), query=query, layer=layer, head=head))


# ---- removing heads ------------------------------------------------------------------------------

# What happens to the loss on repeated positions, in words. One of these is true of any loss:
# knockout_category checks them in this order.
KNOCKOUT_OPTIONS = (
    "it falls: the model copies better without {them}",
    "it stays about the same (within {same} nats)",
    "it rises, but stays well short of ln V",
    "it goes back to about ln V = {ln_v}: the copy is gone",
    "it rises above ln V: worse than a uniform guess",
)
SAME = 0.05  # nats either side of the clean loss that count as "about the same"
SHORT_OF = 0.75  # below this fraction of ln V, the loss is "well short of ln V"
ABOVE = 1.1  # above this fraction of ln V, the loss is "above ln V"


def knockout_category(loss: float, clean: float, ln_v: float) -> int:
    """The index into KNOCKOUT_OPTIONS that describes ``loss`` against the clean loss and ln V.

    The bands are wide where the shipped model's numbers fall (removing the induction heads gives
    0.995 ln V, the previous-token head 0.90 ln V, one induction head 0.49–0.55 ln V, the other
    layer-0 head 0.10 nats *less* than clean), so no answer hangs on a rounding.
    """
    if loss < clean - SAME:
        return 0
    if loss <= clean + SAME:
        return 1
    if loss < SHORT_OF * ln_v:
        return 2
    if loss <= ABOVE * ln_v:
        return 3
    return 4


def knockout(table: pd.DataFrame, removed: str, heads: str, mode: str, ln_v: float) -> Checkpoint:
    """What removing the heads of row ``removed`` of core.induction.ablation_table does to the loss
    on repeated positions, with ``mode`` ("zero" or "mean") ablation.

    ``heads`` is how the page names them ("the induction heads L1H0, L1H1", "head L0H1").
    """
    by = table.set_index("removed")
    clean = float(by.loc["nothing", f"loss_repeat_{mode}"])
    loss = float(by.loc[removed, f"loss_repeat_{mode}"])
    plural = "," in str(by.loc[removed, "heads"])
    them = "them" if plural else "it"
    options = [o.format(them=them, same=f"{SAME:g}", ln_v=f"{ln_v:.3f}") for o in KNOCKOUT_OPTIONS]
    right = knockout_category(loss, clean, ln_v)
    reason = [
        f"On these sequences {heads} {'were' if plural else 'was'} getting in the copy's way.",
        f"The copy does not need {them}.",
        "The rest of the circuit still copies part of the time.",
        "Without the circuit the model cannot find the earlier occurrence, so it guesses as if the letter were random.",
        "What is left of the model guesses worse than a uniform guess would.",
    ][right]
    why = (f"With {heads} removed ({mode} ablation) the loss on repeated positions is {loss:.3f} nats, against "
           f"{clean:.3f} with every head in place and ln V = {ln_v:.3f} (the chart below). {reason}")
    question = (f"Remove {heads} ({mode} ablation). With every head in place the loss on repeated positions is "
                f"{clean:.3f} nats. Without {them}…")
    wrong = [o for i, o in enumerate(options) if i != right]
    return choice("induction.knockout", question, options[right], wrong, why,
                  fingerprint(removed=removed, heads=heads, mode=mode), max_options=5)
