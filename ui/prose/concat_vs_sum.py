"""The sentences of the *Concat versus sum* page that state a measured fact, written from the numbers.

Each function takes the plain numbers ``core.concat_vs_sum`` returned (a row of the precision
table, the waterfall dict, the PyTorch check) and returns Markdown. The wording is decided by
the numbers as they will be printed, so no setting can produce "0.00 ε and 0.00 ε", "0×",
"the 1 head term … make" or a gap called small when it is most of the error: at H = 1 the two
endings are one computation and the page says so; a gap is called "much smaller" than the
layer's own rounding error only below :data:`MUCH_SMALLER`; one ending is called less accurate
only when its worst error is more than :data:`MEASURABLY` larger than the other's.
"""

from __future__ import annotations

import math

from ui.format import count, plural, sci, shape, signed

__all__ = [
    "MUCH_SMALLER", "COMPARABLE_UP_TO", "MEASURABLY",
    "share", "in_eps", "work_of_each_path", "gap_in_eps", "why_norm_wise", "tolerance_note",
    "mean_errors", "worst_errors", "why_either_can_win", "precision_summary", "one_number",
    "against_pytorch", "pytorch_route", "reshape_outcome", "w_o_sample_note",
    "kv_groups", "sharing_here", "sdpa_route", "w_o_unshared", "referee_here",
]

MUCH_SMALLER = 0.1  # gap ÷ the layer's own error below this: "much smaller than"
COMPARABLE_UP_TO = 2.0  # … up to this: "comparable to"; above it: "larger than"
MEASURABLY = 0.10  # one ending's worst error more than 10 % above the other's: "less accurate"
TINY = 0.1  # an output below this share of the largest one is "near zero" for the element-wise ratio


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def share(x: float, digits: int = 0) -> str:
    """'41%', 'under 1%', 'over 99%', '0%', '100%' (or '99.7%', 'over 99.9%' with digits=1): a fraction
    of the outputs, never rounded to an edge it did not reach (0.3 % is not '0%', 99.7 % not '100%')."""
    if x <= 0:
        return "0%"
    if x >= 1:
        return "100%"
    step = 10.0 ** -(digits + 2)  # the smallest share this many digits can show
    if x < step / 2:
        return f"under {step:.{digits}%}"
    if x > 1 - step / 2:
        return f"over {1 - step:.{digits}%}"
    return f"{x:.{digits}%}"


def in_eps(x: float) -> str:
    """'4.31 ε', '3.2e-03 ε', '0 ε': a gap in units of machine epsilon, never a nonzero '0.00 ε'."""
    if x == 0:
        return "0 ε"
    return f"{x:.2f} ε" if x >= 0.01 else f"{sci(x, 1)} ε"


def _ratio(x: float) -> str:
    """'0.79×', '0.0031×', '1.0×': two significant figures, so a nonzero ratio never prints as 0
    and 1.02 prints as '1.0×' beside '1.2×', not as a bare '1×'."""
    text = f"{x:#.2g}".rstrip(".")
    if "e" in text:  # '.2g' writes 150 as '1.5e+02'
        text = f"{float(text):,.0f}"
    return text + "×"


def _how_much_larger(big: float, small: float) -> str:
    """'34% larger than', '2.6× as large as' (big > small > 0)."""
    r = big / small
    if r >= 2:
        return f"{r:.2g}× as large as"
    return f"{r - 1:.1%} larger than" if r < 1.2 else f"{r - 1:.0%} larger than"


def _the_outputs(n: int) -> str:
    """'the one output' or 'the 10,240 outputs'."""
    return "the one output" if n == 1 else f"the {count(n, 'output')}"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ---- the two paths' work -------------------------------------------------------------------------


def work_of_each_path(heads: int, L: int, d_model: int, macs: int, extra_adds: int, per_head_numel: int,
                      out_numel: int) -> str:
    """How much each ending does, and what the sum path holds; at H = 1, that the two are one."""
    concat = (f"The concat path is one matrix product of {count(macs, 'multiply-add')}, and each output adds up "
              f"its D = {count(d_model, 'product')} in one go (`core.attention.concat_then_project`).")
    if heads == 1:
        return (f"{concat} With H = 1 the sum path is the same computation: one head, so `per_head` has "
                f"one term per output, each a sum of the same L = D = {count(d_model, 'product')}, and there is "
                f"nothing to add across heads (`core.attention.project_then_sum`). Its `per_head` is the "
                f"output itself, {count(out_numel, 'number')}.")
    return (f"{concat} The sum path does the same {count(macs, 'multiply-add')} as H = {heads} sums of "
            f"L = {count(L, 'product')} each, then {count(extra_adds, 'addition')} across the heads "
            f"(`core.attention.project_then_sum`). Written this way it also materializes `per_head`, "
            f"{per_head_numel:,} numbers, {heads} times the output's {out_numel:,}; written as one "
            "contraction over `h` and `l` together it would not (the *Timing* page measures both).")


# ---- the reshape that runs and is wrong -----------------------------------------------------------


def reshape_outcome(pit: dict, seq: int, rounding_rel: float, dtype: str) -> str:
    """What building the concatenation without the transpose did to this layer (``reshape_pitfall``)."""
    if pit["out_max_rel"] == 0:
        return ("At these sizes the two agree exactly (their difference is 0): with "
                f"{'one token' if seq == 1 else 'one head'} the transpose only moves an axis of length 1, so "
                "memory order is already right. Make S and H both larger than 1 to see them part.")
    rounding = (f"does not move them at all in {dtype}" if rounding_rel == 0
                else f"moves them by {sci(rounding_rel)} in {dtype}")
    return (f"Both are {shape(pit['shape_right'])}. The wrong one puts a different mix of numbers into "
            f"{share(pit['rows_differ'])} of the token rows, and after the same `@ W_O.reshape(H * L, D)` its "
            f"output is off by **{sci(pit['out_max_rel'])}** of the outputs' scale (max |difference| ÷ max "
            f"|output|, `core.compare.max_rel`; the largest difference is {sci(pit['out_max_abs'])}). Rounding, "
            f"below, {rounding}; a mistake moves every output it touches by a number of its own size.")


def w_o_sample_note(rows_shown: int, cols_shown: int, ls: list[int], heads: int, L: int, d_model: int) -> str:
    """Which entries of W_O the two heatmaps show: all of them, or an even sample (``w_o_layouts``)."""
    entries = heads * L * d_model
    if rows_shown * cols_shown == entries:
        note = "The one entry. " if entries == 1 else f"All {entries:,} entries. "
    else:
        rows = (f"all {heads * L:,} rows" if rows_shown == heads * L else
                f"{rows_shown:,} of the {heads * L:,} rows (l = {', '.join(map(str, ls))} "
                f"{'of the one head' if heads == 1 else 'of each head'})")
        cols = (f"all {count(d_model, 'column')}" if cols_shown == d_model else
                f"{cols_shown:,} of the {d_model:,} columns, evenly spaced")
        note = f"{rows} and {cols}, out of {entries:,} entries. "
        note = note[0].upper() + note[1:]
    return note + "Hover for any entry's coordinates in every layout."


# ---- how far apart, in ε and element by element --------------------------------------------------


def gap_in_eps(row: dict, heads: int, mistake_rel: float, n_outputs: int) -> str:
    """The largest gap between the endings in units of ε, next to what a real mistake does."""
    dtype = row["dtype"]
    scale = f"(they reach about {row['output_scale']:.3g} here)"
    mistake = (f"the wrong reshape above, a real mistake, is off by {sci(mistake_rel)} of the outputs' "
               f"scale {scale}." if mistake_rel > 0 else
               f"a real mistake is off by something like the outputs themselves {scale}.")
    if row["max_abs"] == 0:
        why = (" With one head the two endings are the same computation: the concatenation is that head's "
               "z, and the sum has a single term." if heads == 1 else "")
        return (f"In {dtype} the two endings give the same bits for {_the_outputs(n_outputs)}: the gap is exactly 0, "
                f"not even one rounding step (ε = {sci(row['eps'])} is {dtype}'s machine epsilon).{why} "
                f"For scale, {mistake}")
    return (f"In units that mean something: the largest gap is **{in_eps(row['eps_units'])}** at the outputs' "
            f"scale, where ε = {sci(row['eps'])} is {dtype}'s machine epsilon, the relative size of one "
            f"rounding step. A difference of a few ε is rounding; {mistake}")


def why_norm_wise(row: dict, n_outputs: int) -> str:
    """Why the readout divides by the largest output, told with the worst element-wise ratio here."""
    b, s, j = row["elementwise_at"]
    head = ("*Why norm-wise?* The relative readout divides by the **largest** output, not by each output. "
            "Among many sums of signed terms some land near zero, and dividing by those makes any rounding "
            "look huge.")
    worst, at, scale = row["elementwise_max_rel"], row["elementwise_magnitude"], row["output_scale"]
    if worst == 0:
        return (f"{head} Here there is nothing to magnify: the two endings agree exactly on "
                f"{_the_outputs(n_outputs)}, so every element-wise ratio is 0.")
    where = f"at token {s}, coordinate {j} of sequence {b}"
    if math.isinf(worst) or at < TINY * scale:
        value = "an output of exactly 0" if at == 0 else f"an output of only {sci(at)}"
        ratio = "infinite" if math.isinf(worst) else sci(worst)
        return (f"{head} Element by element, the worst ratio among {_the_outputs(n_outputs)} is "
                f"**{ratio}**, {where}, {value} against a largest output of {sci(scale)}. Nothing is "
                "wrong there; the denominator is just tiny.")
    return (f"{head} Here no output lands that close to zero: the worst element-wise ratio among "
            f"{_the_outputs(n_outputs)} is **{sci(worst)}**, {where}, whose output {sci(at)} is not small "
            f"next to the largest, {sci(scale)}, so the two readouts tell the same story.")


def tolerance_note(row: dict) -> str:
    """Why ``allclose`` says no although the gap is rounding (only called when it says no)."""
    return (f"`allclose` says *no* because `torch.testing.assert_close` checks each element against "
            f"atol + rtol·|value|, with its {row['dtype']} defaults rtol = {row['rtol']:g} and atol = {row['atol']:g}. "
            f"The two paths differ by at most {in_eps(row['eps_units'])} at the outputs' scale, and rtol is "
            f"{row['rtol'] / row['eps']:.2g} ε; for outputs near zero only the tiny atol is left: "
            f"{share(row['outside_tolerance'])} of the outputs fall outside. That is a statement about the "
            "default tolerance, not about the identity.")


# ---- which ending is more accurate -----------------------------------------------------------------


def mean_errors(row: dict, extended_max_macs: int) -> str:
    """The mean errors and the share of outputs on which each ending is strictly closer."""
    if _missing(row.get("closer")):
        return ("No reference for float64 at these sizes: the extended-precision product is skipped above "
                f"{extended_max_macs:,} multiply-adds (or where this machine's numpy has no extended precision). "
                "Pick a smaller layer or a lower precision to see the verdict.")
    a, b = row["concat_closer"], row["sum_closer"]
    if a == 0 and b == 0:
        return (f"Mean |error|: {sci(row['concat_err_mean'])} for both: the two endings land equally far from "
                "the reference on every output, so neither is closer anywhere.")
    tie = 1 - a - b
    rest = "and they tie on the rest" if tie > 0 else "and they never tie"
    return (f"Mean |error|: concat {sci(row['concat_err_mean'])}, sum {sci(row['sum_err_mean'])}. Concat is "
            f"strictly closer on {share(a)} of the outputs, sum on {share(b)}, {rest}.")


def _measurably_worse(row: dict) -> tuple[str, str, float, float] | None:
    """(worse, better, its worst error, the other's) when one ending's worst error is more than
    MEASURABLY above the other's as printed; None when they are close or there is no reference."""
    c, s = row.get("concat_err_rel"), row.get("sum_err_rel")
    if _missing(c) or _missing(s) or sci(c) == sci(s):
        return None
    big, small, worse, better = (s, c, "sum", "concat") if s > c else (c, s, "concat", "sum")
    if small == 0 or big / small - 1 > MEASURABLY:
        return worse, better, big, small
    return None


def worst_errors(row: dict) -> str:
    """The two worst errors compared, with the MEASURABLY threshold; '' without a reference."""
    c, s = row.get("concat_err_rel"), row.get("sum_err_rel")
    if _missing(c) or _missing(s):
        return ""
    dtype = row["dtype"]
    if sci(c) == sci(s):
        return f"In {dtype} both endings' worst error is {sci(c)}."
    if (found := _measurably_worse(row)) is not None:
        worse, better, big, small = found
        how = "larger than" if small == 0 else _how_much_larger(big, small)
        return (f"In {dtype} the {worse} path is measurably less accurate: its worst error is {how} the "
                f"{better} path's ({sci(big)} against {sci(small)}).")
    return (f"In {dtype} the worst errors are within {MEASURABLY:.0%} of each other ({sci(c)} for concat, "
            f"{sci(s)} for sum): at this layer neither ending is measurably less accurate.")


def why_either_can_win(heads: int, verdicts: dict[str, str | None]) -> str:
    """The two opposing effects; at H = 1, that neither exists (and what the measurement shows)."""
    per_dtype = ", ".join(f"{d}: {v if isinstance(v, str) else 'no reference'}" for d, v in verdicts.items())
    if heads == 1:
        measured = [v for v in verdicts.values() if isinstance(v, str)]
        outcome = ("and every precision measured here reports a tie" if measured and set(measured) == {"tie"}
                   else f"and what is left is two kernels adding the same products in their own orders "
                        f"(per precision: {per_dtype})")
        return ("With one head there is nothing to weigh: the sum path has no groups to add and no partial "
                "results to round, so it is the concat path under another name, " + outcome + ".")
    return ("Two effects pull in opposite directions. The sum path adds in groups (H sums of L terms, then a "
            "sum of H), and shorter sums collect less rounding error, the same reason pairwise summation beats "
            "one long running total. But the sum path also rounds each head's partial result to the working "
            "precision before the heads are added, while the concat path's single matrix product rounds each "
            "output once, and kernels for float16 and bfloat16 commonly accumulate in float32 before that one "
            "rounding. Which effect wins depends on the sizes, the precision and the kernel; at this layer "
            + ("neither wins: the two paths tie on average in every precision measured."
               if set(verdicts.values()) == {"tie"} else f"the path closer on average is, per precision: {per_dtype}."))


# ---- every precision at once -------------------------------------------------------------------------


def precision_summary(rows: list[dict], heads: int) -> str:
    """The gap in ε across formats, and the gap against the layer's own error, with honest thresholds."""
    if all(r["max_abs"] == 0 for r in rows):
        why = " (one head: the two endings are one computation)" if heads == 1 else ""
        return (f"Measured here, the two endings give the same bits in every format{why}: the gap is exactly 0, "
                "so at this setting the choice of ending costs nothing, in any precision.")
    units = [(r["eps_units"], r["dtype"]) for r in rows]
    lo, hi = min(units), max(units)
    if in_eps(lo[0]) == in_eps(hi[0]):
        spread = f"is {in_eps(lo[0])} in every format"
    else:
        spread = f"ranges from {in_eps(lo[0])} in {lo[1]} to {in_eps(hi[0])} in {hi[1]}"
    text = f"Measured in its own ε, the gap between the endings {spread}."
    lower = [r for r in rows if not _missing(r.get("layer_err_rel")) and r["layer_err_rel"] > 0]
    if not lower:
        return text
    ratios = {r["dtype"]: r["max_rel"] / r["layer_err_rel"] for r in lower}
    listed = _join([f"{_ratio(x)} in {d}" if x > 0 else f"0 (the same bits) in {d}" for d, x in ratios.items()])
    text += (" Divided by the error the whole layer carries from running in that format instead of float64, "
             f"the gap between the endings is {listed}")
    much = [d for d, x in ratios.items() if x < MUCH_SMALLER]
    comparable = [d for d, x in ratios.items() if MUCH_SMALLER <= x <= COMPARABLE_UP_TO]
    larger = [d for d, x in ratios.items() if x > COMPARABLE_UP_TO]
    if len(much) == len(ratios):
        text += (f": much smaller (under {MUCH_SMALLER:g}×) in every format, so picking an ending is not "
                 "where precision is lost.")
    else:
        parts = []
        if comparable:
            parts.append(f"comparable to the layer's own error in {_join(comparable)}")
        if larger:
            parts.append(f"larger than it in {_join(larger)}")
        if much:
            parts.append(f"much smaller in {_join(much)}")
        text += (": " + "; ".join(parts) + ". Where the gap is not much smaller, the rounding of the last step "
                 "is a large share of everything the format costs this layer, so which ending rounds less "
                 "matters there.")
    verdicts = [worst_errors(r) for r in lower if _measurably_worse(r) is not None]
    if verdicts:
        text += " " + " ".join(verdicts)
    elif any(not _missing(r.get("concat_err_rel")) for r in lower):
        text += (f" Against the float64 product of their own inputs, neither ending's worst error is more than "
                 f"{MEASURABLY:.0%} above the other's in any of these formats.")
    return text


# ---- one number, head by head ------------------------------------------------------------------------


def one_number(wf: dict, heads: int, dtype: str) -> str:
    """The waterfall's numbers in words: the terms' total, the rounding, the two paths, the signs."""
    if heads == 1:
        terms = (f"The one head term, rounded to {dtype} by the layer, is "
                 f"{signed(wf['rounded_terms_summed'], '.9g')}")
    else:
        terms = (f"The {heads} head terms, each already rounded to {dtype} by the layer and then added in "
                 f"float64, make {signed(wf['rounded_terms_summed'], '.9g')}")
    moved = wf["rounding_in_terms"]
    rounding = ("so rounding to the dtype did not move it at all" if moved == 0
                else f"so rounding to {dtype} moved it by {sci(abs(moved))}")
    if wf["concat_minus_sum"] == 0:
        apart = "the same number, bit for bit"
    else:
        ulps = wf["ulps_apart"]
        apart = (f"{sci(abs(wf['concat_minus_sum']))} apart, which is {ulps:.3g} {plural(float(f'{ulps:.3g}'), 'ulp')} "
                 f"(one ulp, the spacing of {dtype} numbers near this value, is {sci(wf['ulp'])})")
    up, down = wf["heads_up"], wf["heads_down"]
    zero = heads - up - down
    if heads == 1:
        signs = ("The head pushes this number up" if up else "The head pulls this number down" if down
                 else "The head adds exactly 0 to this number")
        closing = "With one head there is nothing to split: its term is the whole output."
    else:
        every = "Both heads" if heads == 2 else f"All {heads} heads"
        if up == heads:
            signs = f"{every} push this number up"
        elif down == heads:
            signs = f"{every} pull this number down"
        else:
            clauses = []
            if up:
                clauses.append(f"{up} {'pushes' if up == 1 else 'push'} this number up")
            if down:
                clauses.append(f"{down} {'pulls' if down == 1 else 'pull'} it down")
            if zero:
                clauses.append(f"{zero} {'adds' if zero == 1 else 'add'} exactly 0")
            signs = f"Of the {heads} heads, " + _join(clauses)
        closing = ("Nothing inside the layer makes the heads agree, and each one's contribution can be read "
                   "off on its own.")
    return (f"That is the identity with real numbers. {terms}; recomputing the whole sum in float64 from the "
            f"same inputs gives {signed(wf['float64_product'], '.9g')}, {rounding}. The two paths computed "
            f"{apart}. {signs}. {closing}")


# ---- against PyTorch -------------------------------------------------------------------------------------


def against_pytorch(tc: dict, dtype: str) -> str:
    """How far nn.MultiheadAttention lands from the endings; one figure where the endings are one."""
    c, s = tc["concat"], tc["sum"]
    if in_eps(c["eps_units"]) == in_eps(s["eps_units"]) and share(c["bitwise_equal"]) == share(s["bitwise_equal"]):
        same = " (which agree with each other here)" if c == {**s, "dtype": c["dtype"]} else ""
        return (f"Measured in {dtype}, it lands {in_eps(c['eps_units'])} from each ending{same}, and "
                f"{share(c['bitwise_equal'])} of its outputs match each of them bit for bit.")
    if in_eps(c["eps_units"]) == in_eps(s["eps_units"]):  # one distance, said once
        return (f"Measured in {dtype}, it lands {in_eps(c['eps_units'])} from each ending, and "
                f"{share(c['bitwise_equal'])} of its outputs match the concat path bit for bit, "
                f"{share(s['bitwise_equal'])} the sum path.")
    return (f"Measured in {dtype}, it lands {in_eps(c['eps_units'])} from the concat path and "
            f"{in_eps(s['eps_units'])} from the sum path, and {share(c['bitwise_equal'])} and "
            f"{share(s['bitwise_equal'])} of its outputs match them bit for bit.")


def pytorch_route(tc: dict) -> str:
    """Which path nn.MultiheadAttention took, from the calls ``torch_calls`` recorded while it ran."""
    if tc["fast_path"]:
        return ("took its fused fast path, `torch._native_multi_head_attention`, which runs the whole layer in "
                "one call.")
    bias = (", which it only takes for a layer with an in-projection bias; this one has none)"
            if not tc["has_in_proj_bias"] else ")")
    return ("skipped its fused fast path (`torch._native_multi_head_attention`" + bias
            + f" and ran `F.multi_head_attention_forward`: {count(tc['linear_calls'], '`linear` call')} and "
            f"{count(tc['sdpa_calls'], '`scaled_dot_product_attention` call')}, listed below in the order they "
            "ran. The first `linear` is the packed in-projection, Q, K and V in one product with the $[3D, D]$ "
            "`in_proj_weight`; `scaled_dot_product_attention` does the scores, the softmax and the weighted sum "
            "for every head at once; then a `permute` (the transpose above) and a `reshape` lay the heads side "
            "by side, and the last `linear` is `out_proj`. PyTorch, too, ends with the concat path.")


# ---- grouped-query attention -------------------------------------------------------------------------


def _heads_range(first: int, last: int) -> str:
    """'heads 0 and 1', 'heads 0–3' (first < last)."""
    return f"heads {first} and {last}" if last == first + 1 else f"heads {first}–{last}"


def kv_groups(heads: int, kv_heads: int) -> str:
    """Which query heads read which key/value head, in words: every group when there are few, else the
    first and the last (query head h reads key/value head h // G)."""
    G = heads // kv_heads
    parts = [f"{_heads_range(g * G, g * G + G - 1)} read key/value head {g}" for g in range(kv_heads)]
    if len(parts) > 4:
        parts = [parts[0], "…", parts[-1]]
        return ", ".join(parts)
    return _join(parts)


def sharing_here(heads: int, kv_heads: int, shapes: dict) -> str:
    """What sharing means at this setting, with the shapes read off the trace (``path_shapes``)."""
    z, k = shape(shapes["z"]), shape(shapes["k"])
    if heads == 1:
        return (f"With one head there is nothing to share: $H_{{kv}} = H = 1$ is multi-head and multi-query "
                f"attention at once, and k and z are both {z}.")
    if kv_heads == heads:
        return (f"Here $H_{{kv}} = H = {heads}$: every head has its own keys and values (k is {k}, like z), which "
                "is plain multi-head attention. Pick fewer key/value heads above to share them; the readouts "
                "below follow.")
    G = heads // kv_heads
    kv_words = "one key/value head" if kv_heads == 1 else f"{kv_heads} key/value heads"
    kind = " (multi-query attention)" if kv_heads == 1 else ""
    return (f"Here the {heads} query heads share {kv_words}{kind}, G = {G} query heads per key/value head: "
            f"{kv_groups(heads, kv_heads)}. The layer keeps k and v at {k}, copies them to "
            f"{shape(shapes['k_expanded'])} (one per query head) for the scores, and its z is {z}: the same "
            f"shape as without sharing, so both endings and every readout below run exactly as before.")


def sdpa_route(tc: dict, heads: int, kv_heads: int) -> str:
    """What the SDPA reference ran, from the calls ``sdpa_calls`` recorded (grouped layers only)."""
    kv_words = "one key/value head" if kv_heads == 1 else f"{kv_heads} key/value heads"
    return (f"made {count(len(tc['calls']), 'recorded call')}, listed below in the order they ran: the three "
            f"projections, then {count(tc['sdpa_calls'], '`scaled_dot_product_attention` call')}, which received "
            f"q at {shape(tc['q_shape'])} and k and v at {shape(tc['kv_shape'])}: keys and values still with "
            f"their {kv_words}, not copied out to {heads} heads first. Then the transpose, the reshape that lays "
            "the heads side by side and one product with W_O: the concat ending.")


def w_o_unshared(heads: int, kv_heads: int) -> str:
    """'' without sharing; with it, why the W_O pictures (and nn.Linear's layout) still hold."""
    if kv_heads == heads:
        return ""
    shared = "one key/value head" if kv_heads == 1 else f"{kv_heads} key/value heads"
    return (f" Sharing keys and values ({shared} for {heads} query heads here) leaves W_O alone: the page "
            "draws the same W_O at every H_kv, with one slice per query head. So the `out_proj` checked here "
            "belongs to the unshared layer with this very W_O, and the pictures below hold for the grouped layer "
            "too.")


def referee_here(heads: int, kv_heads: int) -> str:
    """Which PyTorch referee the page runs at this setting, and why: nn.MultiheadAttention only
    where every query head has its own keys and values, SDPA with ``enable_gqa`` elsewhere."""
    if kv_heads == heads:
        return ("Here $H_{kv} = H$, so below, the page's weights are loaded into `torch.nn.MultiheadAttention` "
                "(via `AttentionWeights.to_torch()`, which packs W_Q, W_K, W_V into `in_proj_weight` and W_O into "
                "`out_proj`), the module is run on the same input with the same mask, and its output is compared "
                "with both endings.")
    serve = "one key/value head serves" if kv_heads == 1 else f"{kv_heads} key/value heads serve"
    return (f"Here {serve} {heads} query heads, which `nn.MultiheadAttention` cannot express. So below, the "
            "page's own projections q, k and v (k and v with their $H_{kv}$ heads) are handed to "
            "`scaled_dot_product_attention` with `enable_gqa=True`, its z goes through the concat ending "
            "(`core.attention.sdpa_reference`), and the result is compared with both endings. The scores, mask, "
            "softmax and weighted sum, the part that sharing touches, are PyTorch's.")
