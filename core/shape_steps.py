"""The rows of the shape table as the essay names them: letters, formulas and words, no tensors.

Each :class:`StepSpec` is one row: the operation, its inputs and output as letters (B×S×D), the
axis a product sums away, the weights it uses and its arithmetic as a formula in the letters.
These are the one hand-written part of the table; ``core.shapes.shape_table`` checks every letter
against the shapes that the traced code really made (``core.shape_walk``), at every size.

Steps follow the shape table of the essay's first source (1–9) and its additive ending (8′, 9′).
The source's step 5 (the three projections) is split in three rows here, because grouped-query
attention (GQA) treats the queries and the keys and values differently:

* 5a, the queries: one query matrix per head, B×H×S×L;
* 5b, the keys and values: one per key/value head, B×H_kv×S×L (H_kv = H is plain multi-head
  attention, and then 5b is what the source's step 5 makes);
* 5c, the expansion: key/value head g is copied to the G = H / H_kv query heads that read it,
  B×H×S×L (with H_kv = H there is nothing to copy and the row passes k and v on unchanged).

Sizes: B batch, S sequence, V vocabulary, D d_model, H query heads, H_kv key/value heads,
L = D / H head width, G = H / H_kv (``core.sizes.LayerSizes`` holds them and their rules).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.sizes import LayerSizes

__all__ = [
    "AXIS_NAMES", "STEPS", "STEP_IDS", "LEGACY_STEP_IDS", "StepSpec", "evaluate", "symbolic_shape",
    "position_mixing", "step_words", "spec",
]

AXIS_NAMES = {
    "B": "batch",
    "S": "sequence",
    "V": "vocabulary",
    "D": "model width",
    "H": "query heads",
    "H_kv": "key/value heads",
    "L": "head width",
}


def evaluate(expr: str, sizes: LayerSizes) -> int:
    """An integer formula in the size letters: "2·B·S·V·D", "B·S·H·D − B·S·D", "2·2·B·S·H_kv·D·L".

    Terms are products (·) of letters and whole numbers, joined by + or −. Parsed by hand, never
    eval'd, so a formula is data and an exact Python int comes back (no int64 overflow).
    """
    values = sizes.letters()
    total, sign, term = 0, 1, ""
    for ch in expr.replace(" ", "") + "+":
        if ch in "+−-":
            product = 1
            for factor in term.strip("()").split("·"):
                product *= int(factor) if factor.isdigit() else values[factor]
            total += sign * product
            sign, term = (1 if ch == "+" else -1), ""
        else:
            term += ch
    return total


def symbolic_shape(symbolic: str, sizes: LayerSizes) -> tuple[int, ...]:
    """"B×S×D" → (1, 20, 512); an axis may be a product, "(B·S)×D" → (20, 512)."""
    return tuple(evaluate(axis, sizes) for axis in symbolic.split("×"))


@dataclass(frozen=True)
class StepSpec:
    """One row of the shape table, as the essay names it. Shapes are checked against the trace."""

    step: str
    operation: str
    ending: str  # "shared" by both endings, "concat" (8, 9) or "additive" (8′, 9′)
    input_1: str  # symbolic shape, axes joined by ×
    input_2: str | None
    output: str
    contracted: str | None  # the axis a product sums away (it is in both inputs, not in the output)
    params: tuple[str, ...]  # the weights the step uses
    flops: str  # arithmetic: 2 per multiply-add of a product, 1 per add or divide, 5 per softmax entry
    matmul_flops: str  # the product part alone, as torch.utils.flop_counter counts it
    n_outputs: int  # 2 for steps 5b and 5c: k and v
    held_as: str | None  # how core holds the output when it differs from the essay's shape
    note: str


STEPS: tuple[StepSpec, ...] = (
    StepSpec("1", "one-hot tokens", "shared", "B×S", None, "B×S×V", None, (), "0", "0", 1, None,
             "The input is the B×S grid of integer token ids; each becomes a row of V zeros with a "
             "single 1 at the token's id."),
    StepSpec("2", "embedding lookup", "shared", "B×S×V", "V×D", "B×S×D", "V", ("W_E",),
             "2·B·S·V·D", "2·B·S·V·D", 1, None,
             "Written as a product with the one-hot rows, as in the table. Real models index the "
             "rows instead, W_E[tokens], which gives the same B×S×D with no arithmetic at all."),
    StepSpec("3", "add positional embeddings", "shared", "B×S×D", "S×D", "B×S×D", None, ("W_pos",),
             "B·S·D", "0", 1, None,
             "One learned row per position, broadcast over the batch (the table says 'same shape': "
             "it is S×D, repeated for each of the B sequences)."),
    StepSpec("4", "copy to the q, k and v branches", "shared", "B×S×D", None, "B×S×D", None, (),
             "0", "0", 1, None,
             "Self-attention: the same x feeds all three projections. Nothing is copied; the one "
             "tensor is read three times."),
    StepSpec("5a", "queries: x @ W_Q", "shared", "B×S×D", "H×D×L", "B×H×S×L", "D",
             ("W_Q",), "2·B·S·H·D·L", "2·B·S·H·D·L", 1, None,
             "The queries q (lower case: the letter V is the vocabulary). Each of the H heads has its "
             "own D×L matrix; the source's table prints one head's, here all H are stacked as H×D×L."),
    StepSpec("5b", "keys and values: x @ W_K, x @ W_V", "shared", "B×S×D",
             "H_kv×D×L", "B×H_kv×S×L", "D", ("W_K", "W_V"), "2·2·B·S·H_kv·D·L", "2·2·B·S·H_kv·D·L", 2,
             None,
             "Two outputs of this shape: the keys k and the values v, one matrix each per key/value "
             "head. With H_kv = H (plain multi-head attention) every query head has its own; with "
             "fewer, W_K and W_V are H / H_kv times smaller, and so are k and v."),
    StepSpec("5c", "share k and v with each group's query heads", "shared",
             "B×H_kv×S×L", None, "B×H×S×L", None, (), "0", "0", 2, None,
             "Key/value head g serves query heads gG … gG+G−1, so query head h reads key/value head "
             "h // G (G = H / H_kv). core.attention.expand_kv "
             "makes this a copy (repeat_interleave), so that every query head has a k and a v "
             "matrix you can look at; fused kernels skip the copy. With H_kv = H there is nothing "
             "to share: k and v pass on unchanged, and nothing is copied."),
    StepSpec("6", "scores q·kᵀ, divided by √L", "shared", "B×H×S×L", "B×H×L×S", "B×H×S×S", "L", (),
             "2·B·H·S·S·L + B·H·S·S", "2·B·H·S·S·L", 1, None,
             "Row s, column t is q_s·k_t, how well position s's query matches position t's key, for "
             "each head: the first step where one position meets another. With a causal mask, the "
             "future positions (t > s) are overwritten with −∞, which costs no arithmetic."),
    StepSpec("7", "softmax, then weight the values", "shared", "B×H×S×S", "B×H×S×L", "B×H×S×L", "S",
             (), "5·B·H·S·S + 2·B·H·S·S·L", "2·B·H·S·S·L", 1, None,
             "Softmax turns each row of scores into weights that sum to 1; the product then "
             "averages the S value vectors with those weights, so the key axis S is summed away: "
             "this finishes the mixing of positions that step 6 began."),
    StepSpec("8", "concatenate the heads", "concat", "B×H×S×L", None, "B×S×D", None, (), "0", "0", 1,
             "(B·S)×D",
             "Moves head h's L numbers to columns hL … hL+L−1 of a width-D row (heads 0 … H−1); "
             "D = H·L. "
             "core keeps batch and position on one axis of B·S rows, ready for one 2-D product."),
    StepSpec("9", "output projection W_O", "concat", "B×S×D", "D×D", "B×S×D", "D", ("W_O",),
             "2·B·S·D·D", "2·B·S·D·D", 1, None,
             "One big product. The contracted axis is D = H·L: the heads side by side."),
    StepSpec("8′", "project each head with its W_O slice", "additive", "B×H×S×L", "H×L×D", "B×S×H×D",
             "L", ("W_O",), "2·B·S·H·L·D", "2·B·S·H·L·D", 1, None,
             "The same W_O, viewed as H slices of L×D: W_O[h] is rows hL … hL+L−1. Every head "
             "writes a full width-D vector: H times the memory of step 8, and the same "
             "multiplications as step 9."),
    StepSpec("9′", "sum over the heads", "additive", "B×S×H×D", None, "B×S×D", "H", (),
             "B·S·H·D − B·S·D", "0", 1, None,
             "Adding the H per-head vectors finishes the sum that step 9 does inside its product."),
)
STEP_IDS = tuple(s.step for s in STEPS)
# Links made before the projections were split into 5a, 5b and 5c said step=5: the queries' row.
LEGACY_STEP_IDS = {"5": "5a"}
_SPEC = {s.step: s for s in STEPS}


def spec(step: str) -> StepSpec:
    """The row called ``step``; a readable ValueError for anything else."""
    try:
        return _SPEC[step]
    except KeyError:
        raise ValueError(f"unknown step {step!r}; choose one of {', '.join(STEP_IDS)}") from None


def position_mixing() -> dict:
    """Where positions meet, read off the letters of the steps (the same at every size).

    One position can only read another where a tensor carries the position axis twice (S×S):
    the first step whose output does is where query s first meets key t (step 6); the step
    whose product sums that second S away is where the mixing is finished (step 7).
    """
    twice = [s.step for s in STEPS if s.output.split("×").count("S") == 2]
    summed = [s.step for s in STEPS if s.contracted == "S"]
    return {"first_meet": twice[0], "sums_positions": summed[0],
            "steps": sorted({*twice, *summed}, key=STEP_IDS.index)}


def step_words(step: str, *, scale: bool = True) -> tuple[str, str]:
    """(operation, note) of a step as a run with these settings made it: the table is traced with
    the scores divided by √L, and a run without the scale must not be described as dividing."""
    s = spec(step)
    if step == "6" and not scale:
        return ("scores q·kᵀ, not divided by √L (the scale is off)",
                s.note + " Without the scale, the scores are the raw dot products.")
    return s.operation, s.note
