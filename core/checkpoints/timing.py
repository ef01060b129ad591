"""The timing page's checkpoints: each right answer is the number the figure below it shows.

- ``per_head_memory``: how much memory the materialized per-head sum needs at the page's sizes
  (core.timing.extra_bytes, the memory chart's bar). The misconception: that adding the heads up
  is free once they are computed, or costs one copy like ``concat``.
- ``slowest``: which arrangement of the one sum reached the smallest fraction of the bare GEMM's
  throughput in the run shown below (the shipped reference run, or this server's). Changes with
  the run and the sizes; the misconception is that equal arithmetic means equal speed.
- ``kv_cache``: bytes of keys and values this layer keeps per token with the page's H_kv
  (core.timing.kv_cache_table). The misconceptions: counting only K, or D numbers whatever H_kv.
- ``scores``: how many query–key scores the layer computes with sharing (core.timing.score_counts).
  The misconception GQA's name invites: that sharing keys divides the score arithmetic by G.

Byte counts are written by the ``fmt`` the page passes (ui.format.size_bytes), so a question and
the figure print one number alike; core never imports ui.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from core.checkpoints import Checkpoint, choice, fingerprint
from core.timing.gqa import kv_cache_table, score_counts
from core.timing.memory import element_size, extra_bytes
from core.timing.variants import PROJECTION_KINDS, Size


def _plain_bytes(n: float) -> str:
    return f"{int(n):,} bytes"


def _heads(n: int, kind: str) -> str:
    """'1 query head', '8 key/value heads' (core does not import ui.format)."""
    return f"{n} {kind} head" + ("" if n == 1 else "s")


def _sharing(H: int, H_kv: int) -> str:
    """'H = 8 query heads sharing H_kv = 2 key/value heads', or, with nothing shared, says so."""
    if H == H_kv:
        return f"H = {_heads(H, 'query')} and as many key/value heads (H_kv = H: nothing shared)"
    return f"H = {_heads(H, 'query')} sharing H_kv = {_heads(H_kv, 'key/value')}"


def _units(n: int) -> str:
    return "1 output" if n == 1 else f"{n:,} outputs"


def per_head_memory(size: Size, dtype: str, fmt: Callable[[float], str] = _plain_bytes) -> Checkpoint:
    """How much per_head_sum holds beyond its inputs and result (extra_bytes), as the memory chart shows.

    Wrong options: nothing (the sum "is free"), concat's one copy, H outputs or H + 1 (whichever
    the size does not give: the heads-first copy is a view when B, H or S is 1), and broadcast's
    D + H − 1 outputs (every product kept).
    """
    es = element_size(dtype)
    unit = size.bsd * es
    right = extra_bytes("per_head_sum", size, es)
    H, D = size.n_heads, size.d_model
    candidates = [0, unit, H * unit, (H + 1) * unit, (D + H - 1) * unit]
    wrong = [fmt(c) for c in candidates if fmt(c) != fmt(right)]
    # Say what the units are: H results, plus the heads-first copy of z where it is not a view (H + 1
    # units are not "every head's result"); with one head there is one result and no "each".
    if H == 1:
        held = (f"with one head it writes that head's full-width result, one output of {fmt(unit)}, before the "
                "sum over that single head copies it into the output")
    else:
        held = (f"it writes every head's full-width result before adding them, {_units(H)} of {fmt(unit)} each")
    if right > H * unit:
        held += ", and keeps the heads-first copy of z it made them from, one output more"
    why = (f"`per_head_sum` needs {fmt(right)} at B={size.batch}, S={size.seq}, D={D}, H={H} in {dtype}: {held} "
           f"(`core.timing.extra_bytes`; the chart below), against {fmt(extra_bytes('concat', size, es))} for "
           "`concat`.")
    return choice(
        "timing.per_head_memory",
        f"At B = {size.batch}, S = {size.seq}, D = {D}, H = {H} in {dtype}, how much memory does the materialized "
        "per-head sum (`per_head_sum`) need beyond its inputs and its result?",
        fmt(right), wrong, why, fingerprint(b=size.batch, s=size.seq, d=D, h=H, dtype=dtype), max_options=5,
    )


def slowest(at_base: pd.DataFrame, run: str, fmt_ratio: Callable[[float], str] = lambda x: f"{x:.2f}") -> Checkpoint | None:
    """Which arrangement reached the smallest fraction of the bare GEMM's throughput in the run shown.

    ``at_base``: the run's rows at its base size (core.timing.at_base), the rows the ratio chart
    draws; ``run`` names the run (its date or its key and finish time), so a new run asks afresh.
    None when fewer than two arrangements were timed (no choice to make). The options are the
    arrangements timed; the right one has the lowest median ratio (fraction_of_gemm).
    """
    ok = at_base[(at_base["status"] == "ok") & at_base["kind"].isin(PROJECTION_KINDS)
                 & (at_base["variant"] != "gemm") & at_base["fraction_of_gemm"].notna()]
    if len(ok) < 2:
        return None
    ok = ok.sort_values("fraction_of_gemm", kind="stable")
    worst, best = ok.iloc[0], ok.iloc[-1]
    names = [f"`{v}`" for v in ok["variant"]]
    sizes = f"B={int(worst['batch'])}, S={int(worst['seq'])}, D={int(worst['d_model'])}, H={int(worst['n_heads'])}"
    why = (f"In this run `{worst['variant']}` reached {fmt_ratio(worst['fraction_of_gemm'])} of the bare GEMM's "
           f"throughput (median over rounds), the lowest of the {len(ok)} timed; `{best['variant']}` reached "
           f"{fmt_ratio(best['fraction_of_gemm'])}. All of them do the same arithmetic; what differs is what they "
           "write to memory on the way (the chart below).")
    return choice(
        "timing.slowest",
        f"All of these compute the same sum at {sizes}. In the run shown below, which one reached the smallest "
        "fraction of a bare GEMM's throughput (the slowest)?",
        names[0], names[1:], why, fingerprint(run=run, sizes=sizes), max_options=6,
    )


def kv_cache(size: Size, dtype: str, fmt: Callable[[float], str] = _plain_bytes) -> Checkpoint:
    """Bytes of keys and values this layer keeps per token with H_kv key/value heads (kv_cache_table).

    Wrong options: the cache without sharing (2·H·L numbers; equal to the right one when H_kv = H,
    and then dropped), keys only (H_kv·L), the count of numbers taken for bytes, and D numbers.
    """
    table = kv_cache_table(size, dtype)  # row 0: with the page's H_kv
    es = element_size(dtype)
    H, H_kv, L = size.n_heads, size.n_kv_heads, size.d_head
    right = int(table["bytes_per_token"].iloc[0])
    wrong = [fmt(c) for c in (2 * H * L * es, H_kv * L * es, 2 * H_kv * L, size.d_model * es, 4 * H_kv * L * es)
             if fmt(c) != fmt(right)]
    shared = ("the same as without sharing" if H_kv == H else
              f"{H // H_kv} times smaller than the {fmt(2 * H * L * es)} without sharing")
    why = (f"Per token this layer keeps one key and one value vector of L = {L} numbers for "
           f"{'its one key/value head' if H_kv == 1 else f'each of its H_kv = {H_kv} key/value heads'}: 2 × {H_kv} × {L} = {2 * H_kv * L:,} numbers of {es} bytes, {fmt(right)}, {shared} "
           "(`core.timing.kv_cache_table`; the table below).")
    return choice(
        "timing.kv_cache",
        f"With {_sharing(H, H_kv)}, each of width L = {L}, in {dtype}, how many bytes "
        "of keys and values does this one layer keep for each token it has seen?",
        fmt(right), wrong, why, fingerprint(h=H, kv=H_kv, l=L, dtype=dtype), max_options=5,
    )


def scores(size: Size) -> Checkpoint:
    """How many query–key scores one forward computes with H_kv key/value heads (score_counts).

    Right: B·H·S·S, the same as without sharing. Wrong: B·H_kv·S·S (divided by the group size G),
    one head's B·S·S, B·H·S·L (the scores taken for q's shape), and twice the right count (one set
    for K, one for V). 2·right is never right, so at least one wrong option survives at any size.
    """
    counts = score_counts(size)
    B, S, H, H_kv, G = size.batch, size.seq, size.n_heads, size.n_kv_heads, size.group_size
    right = counts["shared"]
    candidates = (B * H_kv * S * S, B * S * S, B * H * S * size.d_head, 2 * right)  # ÷ G; one head; [S, L]; K and V
    wrong = [f"{c:,}" for c in candidates if c > 0 and c != right]
    each = "The one query head scores" if H == 1 else f"Each of the H = {H} query heads scores"
    keys = "the one key for the one query" if S == 1 else f"each of the S = {S} keys for each of the S queries"
    seqs = "in the one sequence" if B == 1 else f"in each of the B = {B} sequences"
    if G == 1:
        tail = ("Nothing is shared at H_kv = H; with fewer key/value heads K and V would shrink, and this count "
                "would stay the same.")
    else:
        tail = (f"That is exactly as many as without sharing: sharing shrinks K and V from {counts['k_not_shared']:,} "
                f"to {counts['k_shared']:,} numbers each, not the scores.")
    why = f"{each} {keys}, {seqs}: {B} × {H} × {S} × {S} = {right:,}. {tail}"
    return choice(
        "timing.scores",
        f"At B = {B}, S = {S}, with {_sharing(H, H_kv)}, how many "
        "query–key scores does one forward compute?",
        f"{right:,}", wrong, why, fingerprint(b=B, s=S, h=H, kv=H_kv), max_options=4,
    )
