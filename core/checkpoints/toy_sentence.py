"""The sentence page's checkpoints: four predictions a student gets wrong for a reason.

Each builder takes the numbers the page's figure is drawn from (a :class:`core.toy_sentence.ToyTrace`
and what core measured on it), so the right option is the figure's own answer at the reader's
settings: another sentence, seed, width or head count asks the same question with its own answer.

- :func:`scores_shape`: the shape of ``einsum("hil,hjl->hij", q, k)``. Misconceptions: the head
  width L where the key position belongs ([H, S, L]), the head axis forgotten ([S, S]), and with
  shared keys one score grid per key/value head ([H_kv, S, S]) rather than per query head.
- :func:`scale_direction`: what leaving out the 1/√d_k does to the rows. Many students expect a
  flatter softmax (bigger numbers, "more signal everywhere"); multiplying the scores by √d_k ≥ 1
  can only sharpen a row or leave it as it was (one key, d_k = 1, keys that score alike).
- :func:`top_key`: which key the last token weighs most in head 0. Students expect a token to
  attend to itself, or to the word before it; with random weights neither need be so.
- :func:`shared_weights`: two heads that read the same keys and values — do their weights agree?
  Students new to grouped-query attention expect shared keys to mean a shared pattern; the
  queries are still each head's own.

A builder returns None when its question has no single right answer at these settings (one
token has no "other" key to prefer; a tie at the top of a row); the page then doesn't ask it.
"""

from __future__ import annotations

from core.checkpoints import Checkpoint, choice, dims_text, fingerprint, shape_options
from core.toy_scale import ScaleEffect
from core.toy_sentence import SharedPair, ToyTrace

__all__ = ["scores_shape", "scale_direction", "top_key", "shared_weights", "TOP_KEY_TIE", "SCALE_OPTIONS",
           "SHARED_OPTIONS"]

TOP_KEY_TIE = 1e-9  # two weights closer than this (float64, in [0, 1]) share the top of a row

SCALE_OPTIONS = {
    "sharper": "They get sharper: more of each row's weight goes to its top key",
    "flatter": "They get flatter: the weight spreads more evenly over the keys",
    "same": "They stay exactly as they are",
    "mixed": "Some heads get sharper and others flatter",
}

SHARED_OPTIONS = {
    "differ": "Different: the two heads weigh the keys differently",
    "same": "Identical, cell for cell",
    "scaled": "Identical up to one constant factor",
    "transposed": "Each is the other transposed",
}


def _settings(trace: ToyTrace, **extra: object) -> str:
    """The fingerprint of a trace's own settings (sentence, sizes, seed) plus what a question adds."""
    return fingerprint(tokens=tuple(trace.tokens), d_model=trace.d_model, heads=trace.n_heads,
                       kv_heads=trace.n_kv_heads, **extra)


def scores_shape(trace: ToyTrace) -> Checkpoint:
    """The shape of the scores: [H, S, S], one grid of query rows × key columns per query head."""
    H, H_kv, S, L = trace.n_heads, trace.n_kv_heads, len(trace.tokens), trace.d_head
    right, wrong = shape_options(
        tuple(trace.scores.shape),  # [H, S, S]
        [(H, S, L), (S, S), (H_kv, S, S), (S, H, S), (H, L, L), (H, S)],
    )
    shared = (f" Keys are shared by groups of {trace.group_size} heads, yet every one of the {H} query heads "
              "scores them with its own queries, so there is a grid per query head."
              if trace.group_size > 1 else "")
    why = (f"The letter l is in both inputs and not in the output, so it is summed away (the dot product); "
           f"what stays is h, i and j: H × S × S = {right}, one score per query–key pair and head.{shared}")
    return choice(
        "toy.scores_shape",
        f"`torch.einsum(\"hil,hjl->hij\", q, k)` with q and k of shape {dims_text(tuple(trace.q.shape))} "
        "= [H, S, L]: what shape are the scores?",
        right, wrong, why, fingerprint(H=H, H_kv=H_kv, S=S, L=L),
    )


def scale_direction(trace: ToyTrace, effect: ScaleEffect) -> Checkpoint:
    """What leaving out the 1/√d_k does here, read off ``core.toy_scale.scale_effect``'s measurement."""
    if effect.verdict == "none":
        key = "same"
    elif effect.heads_lower and effect.heads_higher:  # rounding only (see core.toy_scale); kept honest
        key = "mixed"
    else:
        key = "sharper"
    options = dict(SCALE_OPTIONS)
    if trace.n_heads == 1:  # "some heads … others" can't happen with one head: the same doubt, by rows
        options["mixed"] = "Some rows get sharper and others flatter"
    right = options[key]
    wrong = [text for k, text in options.items() if k != key]
    L = effect.d_head
    if key == "same":
        why = {
            "unit scale": f"At d_k = 1 the scale divides by √1 = 1: nothing changes, {effect.entropy_scaled:.2f} bits of "
                          "mean row entropy either way.",
            "one key per row": "Every row has a single visible key, and a lone key's weight is 1 whatever its score.",
        }.get(effect.reason, f"Within each row every key scores alike, and equal scores stay equal whatever they are "
                              f"multiplied by: {effect.entropy_scaled:.2f} bits either way.")
    else:
        why = (f"Without the scale every score is √{L} = {L ** 0.5:.2f} times larger, and a softmax of numbers "
               f"spread further apart is sharper: the mean row entropy falls from {effect.entropy_scaled:.2f} to "
               f"{effect.entropy_raw:.2f} bits and the mean largest weight rises from {effect.max_weight_scaled:.2f} "
               f"to {effect.max_weight_raw:.2f}.")
    # With the switch already off, "switch it off" would ask for what the page already shows.
    question = (f"Switch the ÷√d_k off (here $d_k = {L}$). What happens to the rows of attention weights on this "
                "sentence?" if trace.scale else
                f"The ÷√d_k is switched off on this page (here $d_k = {L}$). Compared with the rows it would give "
                "switched on, what does leaving it out do to the rows of attention weights on this sentence?")
    return choice(
        "toy.scale_direction",
        question,
        right, wrong, why, _settings(trace, seed=trace.seed, causal=trace.causal),
    )


def _code(text: str) -> str:
    """Text as a Markdown code span: its own backticks become quotes, so nothing in it is markup."""
    return "`" + text.replace("`", "'") + "`"


def top_key(trace: ToyTrace, head: int = 0) -> Checkpoint | None:
    """Which key the last token gives the largest weight in ``head``; None for one token or a tie.

    The last token sees every key with or without the causal mask, and a positive factor (the
    scale) never changes which weight is largest, so the answer depends on the sentence, the
    sizes and the seed only.
    """
    S = len(trace.tokens)
    if S < 2 or not 0 <= head < trace.n_heads:
        return None
    i = S - 1
    row = trace.pattern[head, i].tolist()  # [S]
    order = sorted(range(S), key=lambda j: -row[j])
    top, second = order[0], order[1]
    if row[top] - row[second] < TOP_KEY_TIE:
        return None
    # Options are token texts, which a reader types: set as code, so "**" or "$x$" stays text.
    labels = [_code(label) for label in trace.labels]
    # The misconceptions first: itself, the token before it, the first token; then by weight.
    wrong = [labels[j] for j in (i, i - 1, 0, *order[1:]) if j != top]
    why = (f"In head {head}, row {labels[i]} gives {labels[top]} a weight of {row[top]:.3f}, the most; next is "
           f"{labels[second]} with {row[second]:.3f}. Nothing here is trained: which key wins is decided by this "
           "head's random W_Q and W_K, not by grammar.")
    return choice(
        "toy.top_key",
        f"In head {head}, which key does the last token, {_code(trace.tokens[i])} (position {i}), give the "
        "largest weight?",
        labels[top], wrong, why, _settings(trace, seed=trace.seed, head=head),
    )


def shared_weights(trace: ToyTrace, pair: SharedPair | None) -> Checkpoint | None:
    """Whether two heads of one key/value group attend alike; None without sharing."""
    if pair is None:
        return None
    a, b = pair.heads
    key = "differ" if pair.weights_differ else "same"
    right = SHARED_OPTIONS[key]
    wrong = [text for k, text in SHARED_OPTIONS.items() if k != key]
    keys = (f"Heads {a} and {b} read the same keys and values (largest gap {pair.k_diff:.0f}: one tensor, copied), "
            f"but their queries differ by up to {pair.q_diff:.2f}")
    if pair.weights_differ:
        why = (f"{keys}, so their scores differ and their weights differ by up to {pair.weight_diff_all:.3f}. "
               "Sharing fixes what the heads can look at, not how each one looks.")
    elif len(trace.tokens) == 1:
        why = f"{keys}; yet with one token each row has a single key, whose weight is 1 whatever its score."
    else:
        why = (f"{keys}; yet within every row the keys score alike (identical tokens have identical keys), "
               "and equal scores give equal weights whatever the query.")
    return choice(
        "toy.shared_weights",
        f"Heads {a} and {b} share K/V group {pair.group}: the same keys and values. Compare their attention weights.",
        right, wrong, why,
        _settings(trace, seed=trace.seed, causal=trace.causal, scale=trace.scale),
    )
