"""Statistics over rounds: medians with distribution-free intervals, verdicts, and the headline facts.

A run times every variant once per round, in a fresh random order (``interleave``); a ratio taken
within one round (``paired_fractions``, ``paired``) cancels a slow spell of a shared machine, and
the median over rounds gets an interval that holds whatever the distribution (``median_interval``).
A headline says "below" or "above" only when the whole interval is on one side (``verdict``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import pandas as pd
import torch

from core.timing.variants import VARIANTS

CONFIDENCE = 0.95  # of the interval around each median ratio
MIN_ROUNDS = 6  # the fewest rounds whose order statistics give a 95 % interval (coverage 1 − 2/2⁶)
MAX_ROUNDS = 60
NOISY_WIDTH = 0.2  # a ratio whose interval spans more than this fraction of its median is flagged


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(median, low, high, coverage): a distribution-free interval for the median of ``values``.

    The k-th smallest and k-th largest of n independent draws bracket the true median with
    probability 1 − 2·P(Binomial(n, ½) < k), whatever the distribution. k is the largest that
    still reaches ``confidence``; with fewer than 6 values none does (6 give 1 − 2/64 ≈ 0.97),
    and the interval is the smallest to the largest value, with the coverage it really has.
    """
    xs = sorted(float(v) for v in values if v == v)
    n = len(xs)
    if n == 0:
        nan = float("nan")
        return nan, nan, nan, nan
    median = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

    def coverage(k: int) -> float:
        return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n

    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(k + 1) >= confidence:
        k += 1
    return median, xs[k - 1], xs[n - k], coverage(k)


def verdict(low: float, high: float, reference: float = 1.0) -> str:
    """Where an interval lies against a reference value: "below", "above" or "could not tell"."""
    if not (low == low and high == high):
        return "not measured"
    if high < reference:
        return "below"
    if low > reference:
        return "above"
    return "could not tell"


def interleave(
    names: Sequence[str], time_block: Callable[[str], float], *, rng: random.Random,
    max_rounds: int = MAX_ROUNDS, another_round: Callable[[int], bool] = lambda done: True,
) -> tuple[dict[str, list[float]], list[list[str]]]:
    """Time every name once per round, in a fresh random order each round: (times, orders).

    ``time_block(name)`` times one block of that variant and returns seconds per call;
    ``another_round(rounds_done)`` decides whether one more round fits. Because each round
    visits every variant within a short spell, a slow spell of a shared machine lands on all of
    them alike, and a ratio taken within one round cancels it.
    """
    times: dict[str, list[float]] = {n: [] for n in names}
    orders: list[list[str]] = []
    while len(orders) < max_rounds and another_round(len(orders)):
        order = list(names)
        rng.shuffle(order)
        for name in order:
            times[name].append(time_block(name))
        orders.append(order)
    return times, orders


def paired_fractions(times: dict[str, list[float]], work: dict[str, float], reference: str = "gemm") -> dict[str, list[float]]:
    """Per round, each variant's throughput as a fraction of the reference's in the same round.

    (work_v / t_v) / (work_ref / t_ref) with the round's own two times; for variants doing the
    same work this is t_ref / t_v.
    """
    ref = times[reference]
    return {
        name: [(work[name] / t) / (work[reference] / r) for t, r in zip(ts, ref)]
        for name, ts in times.items()
    }


def _round_text(seconds_per_call: Sequence[float]) -> str:
    return " ".join(f"{s * 1e3:.6g}" for s in seconds_per_call)


def round_times(row: pd.Series | dict) -> list[float]:
    """A row's per-round median-free times per call, in ms (the ``round_ms`` column, in order)."""
    text = row["round_ms"] if isinstance(row, dict) else row.get("round_ms", "")
    if not isinstance(text, str) or not text.strip():
        return []
    return [float(v) for v in text.split()]


def _quantile(values: Sequence[float], q: float) -> float:
    """The same interpolated quantile that torch.utils.benchmark uses for its IQR."""
    return float(torch.tensor(list(values), dtype=torch.float64).quantile(q))


def at_base(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the table's first (base) size: the size the headlines are about."""
    first = table.iloc[0]
    return table[(table["batch"] == first["batch"]) & (table["seq"] == first["seq"])
                 & (table["d_model"] == first["d_model"]) & (table["n_heads"] == first["n_heads"])]


def paired(table: pd.DataFrame, numerator: str, denominator: str, how: str = "ratio") -> tuple[float, float, float, float]:
    """(median, low, high, coverage) over rounds of numerator's time ÷ (or −, in ms) denominator's.

    Both from the same rounds of the table's base size (the ``round_ms`` column), so the pair
    shares every slow spell; NaNs where either is missing.
    """
    if table.empty:
        nan = float("nan")
        return nan, nan, nan, nan
    return _paired_rows(at_base(table), numerator, denominator, how)


def _paired_rows(rows: pd.DataFrame, numerator: str, denominator: str, how: str) -> tuple[float, float, float, float]:
    nan = float("nan")
    ok = rows[rows["status"] == "ok"].set_index("variant")
    if numerator not in ok.index or denominator not in ok.index:
        return nan, nan, nan, nan
    a, b = round_times(ok.loc[numerator].to_dict()), round_times(ok.loc[denominator].to_dict())
    if not a or len(a) != len(b):
        return nan, nan, nan, nan
    values = [x / y for x, y in zip(a, b)] if how == "ratio" else [x - y for x, y in zip(a, b)]
    return median_interval(values)


SIZE_COLUMNS = ["batch", "seq", "d_model", "n_heads"]


def compare_by_size(table: pd.DataFrame, numerator: str, denominator: str) -> pd.DataFrame:
    """At every size of a run: numerator's time ÷ denominator's, round by round, and its verdict.

    One row per size where both were timed, in the run's order (base first): the sizes, the
    median ratio, its interval and "above" (numerator slower), "below" (faster) or "could not
    tell". What lets a page say at which sizes one form kept up with another, from the run itself.
    """
    columns = SIZE_COLUMNS + ["ratio", "ratio_lo", "ratio_hi", "verdict"]
    rows = []
    if not table.empty:
        for size, group in table.groupby(SIZE_COLUMNS, sort=False):
            mid, lo, hi, _ = _paired_rows(group, numerator, denominator, "ratio")
            if mid == mid:
                rows.append({**dict(zip(SIZE_COLUMNS, (int(v) for v in size))), "ratio": mid, "ratio_lo": lo,
                             "ratio_hi": hi, "verdict": verdict(lo, hi)})
    return pd.DataFrame(rows, columns=columns)


def summarize(table: pd.DataFrame) -> dict[str, float | str]:
    """The headline facts at the table's first (base) size, each with its interval and verdict.

    ``concat`` and ``einsum``: the median per-round fraction of the bare GEMM's throughput, its
    interval, and where the interval lies against 1 ("below", "above", "could not tell").
    ``per_head_sum_over_concat``: per-round time ratio; ``allocation_ms``: per-round difference
    between per_head_sum and the same arithmetic into buffers allocated once (per_head_sum_out),
    with its verdict against 0. NaN where a variant has no time.
    """
    nan = float("nan")
    if table.empty:
        return {}
    ok = at_base(table)
    ok = ok[ok["status"] == "ok"].set_index("variant")

    def get(variant: str, column: str) -> float:
        return float(ok.at[variant, column]) if variant in ok.index and column in ok.columns else nan

    facts: dict[str, float | str] = {}
    for name in ("concat", "einsum"):
        lo, hi = get(name, "fraction_lo"), get(name, "fraction_hi")
        facts.update({f"{name}_fraction_of_gemm": get(name, "fraction_of_gemm"), f"{name}_fraction_lo": lo,
                      f"{name}_fraction_hi": hi, f"{name}_verdict": verdict(lo, hi)})
    mid, lo, hi, _ = paired(table, "per_head_sum", "concat")
    facts.update(per_head_sum_over_concat=mid, per_head_sum_over_concat_lo=lo, per_head_sum_over_concat_hi=hi,
                 per_head_sum_over_concat_verdict=verdict(lo, hi))
    mid, lo, hi, _ = paired(table, "per_head_sum", "per_head_sum_out", how="difference")
    per_head = get("per_head_sum", "median_ms")
    facts.update(allocation_ms=mid, allocation_lo=lo, allocation_hi=hi, allocation_verdict=verdict(lo, hi, 0.0),
                 allocation_share=mid / per_head if per_head == per_head else nan,
                 per_head_sum_faults=get("per_head_sum", "page_faults_per_call"),
                 per_head_sum_out_faults=get("per_head_sum_out", "page_faults_per_call"),
                 gemm_gflop_per_s=get("gemm", "gflop_per_s"),
                 above_gemm=", ".join(n for n in ok.index if ok.at[n, "verdict"] == "above"
                                      and VARIANTS[n].kind == "projection"))
    return facts


def growth(table: pd.DataFrame, axis: str) -> pd.DataFrame:
    """How each variant's median time changed along a sweep, from the smallest value to the largest.

    One row per variant measured at both ends: the two values, the two times and ``factor`` (time
    at the largest ÷ time at the smallest), sorted by factor, largest first: what the run shows,
    so the page can say which rose most without guessing.
    """
    column = {"heads": "n_heads"}.get(axis, axis)
    ok = table[(table["status"] == "ok") & table["kind"].isin(("reference", "projection"))]
    rows = []
    for name, group in ok.groupby("variant", sort=False):
        if group[column].nunique() < 2:
            continue
        g = group.sort_values(column)
        first, last = g.iloc[0], g.iloc[-1]
        rows.append({"variant": name, "from": int(first[column]), "to": int(last[column]),
                     "ms_from": float(first["median_ms"]), "ms_to": float(last["median_ms"]),
                     "factor": float(last["median_ms"] / first["median_ms"])})
    return pd.DataFrame(rows, columns=["variant", "from", "to", "ms_from", "ms_to", "factor"]).sort_values(
        "factor", ascending=False, ignore_index=True)
