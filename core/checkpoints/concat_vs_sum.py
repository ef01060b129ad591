"""The *Concat versus sum* page's checkpoints: three predictions a student gets wrong.

Each builder takes the plain numbers the page's own figure is drawn from (the dicts that
``core.concat_vs_sum`` returns, through the page's cached calls), so the right option is the
one the figure below it shows, at whatever sizes, seed and precision the link sets.

- ``reshape_mixes``: what ``z.reshape(B, S, H * L)`` without the transpose does. The usual guess
  is "a shape error" or "the same thing"; it runs and mixes tokens with heads, except where an
  axis of length 1 (S = 1 or H = 1) makes the transpose a no-op. The right option changes with S, H.
- ``eps_gap``: how the two endings' gap in bfloat16 compares with float32's, counted in each
  format's own ε. The usual guess is "far more in bfloat16"; in ε they are usually comparable,
  because each format's rounding scales with its own ε.
- ``head_terms``: into how many terms the sum ending splits one output when H query heads share
  H_kv key/value heads. The usual guess under grouped-query attention is H_kv; it is H, since
  W_O only ever meets z, and every query head has its own z.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from core.checkpoints import Checkpoint, choice, dims_text, fingerprint

__all__ = [
    "reshape_mixes", "eps_gap", "head_terms", "gap_category", "in_eps",
    "MIXES", "SAME", "SHAPE_ERROR", "HEADS_REORDERED",
    "MORE", "WITHIN", "FEWER", "BOTH_ZERO", "APART",
]

# ---- the transpose-less reshape -------------------------------------------------------------------

MIXES = "It runs, but row s is no longer token s: it mixes tokens with heads"
SAME = "It gives exactly the right concatenation at these sizes"
SHAPE_ERROR = "It raises a shape error, so the bug cannot go unnoticed"
HEADS_REORDERED = "Row s is still token s; only its heads come in another order"


def reshape_mixes(z_shape: list[int], rows_differ: float, out_max_rel: float) -> Checkpoint:
    """What building the concatenation without the transpose gives, from ``reshape_pitfall``'s numbers.

    ``z_shape`` is z's [B, H, S, L]; ``rows_differ`` the share of token rows whose numbers differ
    from the right concatenation; ``out_max_rel`` how far the output moved (norm-wise). The right
    option is :data:`MIXES` where some row differs and :data:`SAME` where none does (S = 1 or H = 1).
    """
    B, H, S, L = (int(d) for d in z_shape)
    mixed = rows_differ > 0
    if mixed:
        why = (f"`reshape` never moves a number: it re-reads z's memory, which holds head 0's tokens first, so "
               f"row 0's second block is head 0's token 1, not head 1's token 0. Below, the wrong build puts "
               f"other numbers into {_share(rows_differ)} of the token rows and moves the output by "
               f"{out_max_rel:.2e} of its scale: a mistake, not rounding.")
    else:
        axis = "one token" if S == 1 else "one head"
        why = (f"With {axis}, the transpose only moves an axis of length 1, so memory is already in the right "
               "order; below, the two builds agree exactly (a difference of 0). Make S and H both larger than 1 "
               "to see them part.")
    return choice(
        "concat_vs_sum.reshape_mixes",
        f"`z` is $[B, H, S, L]$ = {dims_text(z_shape)}. What does `z.reshape(B, S, H * L)`, **without** the "
        "transpose, give at these sizes?",
        MIXES if mixed else SAME,
        [SHAPE_ERROR, SAME if mixed else MIXES, HEADS_REORDERED],
        why,
        fingerprint(z_shape=[B, H, S, L], mixed=mixed),
    )


# ---- the gap in ε, bfloat16 against float32 -------------------------------------------------------

MORE = "At least 10× more ε in bfloat16 than in float32"
WITHIN = "Less than 10× apart either way: a few ε in both"
FEWER = "At least 10× fewer ε in bfloat16 than in float32"
BOTH_ZERO = "Exactly 0 ε in both: the endings give the same bits"
APART = 10.0  # the factor that separates "comparable" from "more" or "fewer"


def in_eps(x: float) -> str:
    """'4.31 ε', '3.2e-03 ε', '0 ε': never a nonzero '0.00 ε' (as ui.prose writes it)."""
    if x == 0:
        return "0 ε"
    return f"{x:.2f} ε" if x >= 0.01 else f"{x:.1e} ε"


def gap_category(f32_units: float, bf16_units: float) -> str:
    """Which of the four options the two gaps (in their own ε) fall in: exactly one, always."""
    if f32_units == 0 and bf16_units == 0:
        return BOTH_ZERO
    if f32_units == 0:
        return MORE
    if bf16_units == 0:
        return FEWER
    ratio = bf16_units / f32_units
    if ratio >= APART:
        return MORE
    if ratio <= 1 / APART:
        return FEWER
    return WITHIN


def eps_gap(rows: Iterable[Mapping]) -> Checkpoint | None:
    """bfloat16's gap against float32's, in ε, from the precision table's rows (``concat_vs_sum_report``).

    None where either precision is missing from the table (a device that runs only some dtypes).
    """
    by = {r["dtype"]: r for r in rows}
    if "float32" not in by or "bfloat16" not in by:
        return None
    f32, bf16 = by["float32"], by["bfloat16"]
    a, b = float(f32["eps_units"]), float(bf16["eps_units"])
    right = gap_category(a, b)
    eps_ratio = float(bf16["eps"]) / float(f32["eps"])
    if right == BOTH_ZERO:
        why = ("Here the two endings give the same bits in both formats (the table below shows a gap of exactly 0 "
               "in each), so there is nothing to count.")
    else:
        ratio = ("" if a == 0 or b == 0 else f", a ratio of {b / a:.2g}")
        why = (f"The table below: float32's endings land {in_eps(a)} apart and bfloat16's {in_eps(b)}{ratio}. "
               f"In absolute terms the gaps are {float(f32['max_rel']):.2e} and {float(bf16['max_rel']):.2e} of the "
               "output scale; each format rounds at the scale of its own ε, which is why counting in ε makes "
               "formats comparable.")
    return choice(
        "concat_vs_sum.eps_gap",
        "bfloat16's rounding step ε is about "
        f"{eps_ratio:,.0f}× float32's. Counted in each format's **own** ε, how does the largest gap between "
        "the two endings in bfloat16 compare with float32's, on this layer?",
        right,
        [MORE, WITHIN, FEWER, BOTH_ZERO],
        why,
        fingerprint(f32=in_eps(a), bf16=in_eps(b), right=right),
    )


# ---- how many terms the sum has, with shared keys and values ------------------------------------


def head_terms(n_heads: int, n_kv_heads: int, d_model: int, n_terms: int) -> Checkpoint:
    """How many head terms one output splits into: ``n_terms``, the waterfall's bar count (= H).

    Wrong options are the counts a student reaches for: H_kv (under sharing, "one per key/value
    head"), G = H / H_kv, 1 ("the concatenation is one product"), L (the products inside one
    head's term) and 2H. Any that equals the right count is dropped by ``choice``.
    """
    H, H_kv = int(n_heads), int(n_kv_heads)
    G, L = H // H_kv, d_model // H
    if H == 1:
        setting = "This layer has one head ($H = 1$, so $H_{kv} = 1$)."
    elif H_kv == H:
        setting = (f"This layer has $H = {H}$ query heads, each with its own keys and values "
                   f"($H_{{kv}} = {H_kv}$).")
    else:
        setting = (f"This layer has $H = {H}$ query heads sharing $H_{{kv}} = {H_kv}$ key/value "
                   f"{'head' if H_kv == 1 else 'heads'}, {G} query heads per key/value head.")
    bars = "one bar" if n_terms == 1 else f"{n_terms:,} bars"
    if H_kv < H:
        because = (f"Sharing changes where each head's keys and values come from, not how heads are added: every "
                   f"query head still scores with its own queries and makes its own z, and W_O only ever meets z, "
                   f"so the sum runs over {'both' if H == 2 else f'all {H}'} query heads, not the "
                   f"{'one key/value head' if H_kv == 1 else f'{H_kv} key/value heads'}.")
    elif H == 1:
        because = "One head, one z, one slice of W_O: its term is the whole output."
    else:
        because = f"One term per head: head h's z times its slice W_O[h], for h = 0 … {H - 1}."
    return choice(
        "concat_vs_sum.head_terms",
        f"{setting} Into how many head terms does the sum ending split one output number?",
        f"{int(n_terms):,}",
        [f"{x:,}" for x in (H_kv, G, 1, L, 2 * H)],
        f"{because} The waterfall below has {bars}.",
        fingerprint(n_heads=H, n_kv_heads=H_kv, d_model=int(d_model), n_terms=int(n_terms)),
    )


def _share(x: float) -> str:
    """'41%', 'under 1%', '100%': a share of rows, never rounded to an edge it did not reach."""
    if x >= 1:
        return "100%"
    if x <= 0:
        return "0%"
    if x < 0.005:
        return "under 1%"
    if x > 0.995:
        return "over 99%"
    return f"{x:.0%}"

