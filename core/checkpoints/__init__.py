"""Checkpoints: a question the reader answers before the figure that answers it.

A checkpoint is plain data (no Streamlit): the question, the options, which one is right, one or
two sentences of why, and a fingerprint of the settings that decide the answer. Each page's
builders live in ``core/checkpoints/<page>.py`` and compute the right option from the same core
call the page's figure uses, so a teacher's link at other sizes asks questions that are still
true there. ``ui/checkpoint.py`` draws them.

Why the option order is fixed by ``(key, settings)`` rather than shuffled per reader: a room of
students opening one link must see the options in the same order, so that "the second one" means
the same thing to everybody in the discussion, and a projected tally lines up with every screen.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "Checkpoint", "choice", "fingerprint", "dims_text", "shape_options", "number_options",
    "MIN_OPTIONS", "MAX_OPTIONS",
]

MIN_OPTIONS = 2
MAX_OPTIONS = 6
_KEY = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+")


@dataclass(frozen=True)
class Checkpoint:
    """One question with 2–6 distinct options, exactly one of them right (``options[answer]``)."""

    key: str  # stable id "page.name", e.g. "shapes.scores_shape"
    question: str  # shown after "Predict: " (Markdown / LaTeX allowed)
    options: tuple[str, ...]  # 2–6 distinct display strings
    answer: int  # index into options of the right one
    why: str  # one or two sentences with the number from the figure below
    settings: str  # fingerprint of the settings that decide the answer

    def __post_init__(self) -> None:
        if not _KEY.fullmatch(self.key):
            raise ValueError(f"checkpoint key {self.key!r} is not of the form 'page.name'")
        if not MIN_OPTIONS <= len(self.options) <= MAX_OPTIONS:
            raise ValueError(f"{self.key}: {len(self.options)} options; a checkpoint has 2–6")
        if len(set(self.options)) != len(self.options):
            raise ValueError(f"{self.key}: options are not distinct: {self.options}")
        if not 0 <= self.answer < len(self.options):
            raise ValueError(f"{self.key}: answer {self.answer} is not an index into its options")

    @property
    def right(self) -> str:
        """The right option's display string."""
        return self.options[self.answer]


def _plain(value: object) -> object:
    """A settings value as JSON-ready plain data; anything else (a tensor, a dict) is refused."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return repr(value)  # 'nan', 'inf' and -0.0 stay distinct and valid
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    raise TypeError(f"fingerprint takes plain values (int, float, str, bool, None, tuples); got {type(value).__name__}")


def fingerprint(**settings: object) -> str:
    """A stable short string for the settings that decide an answer (same on every server).

    A changed fingerprint resets the reader's guess and starts a fresh room tally, so pass exactly
    the values the right option depends on: not the seed when the answer is a shape.
    """
    text = json.dumps({k: _plain(v) for k, v in settings.items()}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _rank(key: str, settings: str, option: str) -> str:
    """Sort key of an option: a hash, so the order looks random but every reader sees the same."""
    return hashlib.sha256(f"{key}\x1f{settings}\x1f{option}".encode()).hexdigest()


def choice(
    key: str,
    question: str,
    right: str,
    wrong: Iterable[str],
    why: str,
    settings: str,
    *,
    max_options: int = 4,
) -> Checkpoint:
    """A checkpoint of the right option and up to ``max_options - 1`` wrong ones.

    Wrong options are taken in the order given (put the most telling misconceptions first); one
    equal to the right option, or to an earlier wrong one, is dropped, so a generated distractor
    that happens to coincide with the answer at some setting can never make two options right.
    The order on screen is fixed by ``(key, settings)``. Raises ValueError if no wrong option
    survives (the question has no choice at these settings: the page should not ask it).
    """
    if not MIN_OPTIONS <= max_options <= MAX_OPTIONS:
        raise ValueError(f"max_options must be {MIN_OPTIONS}–{MAX_OPTIONS}, not {max_options}")
    right = str(right)
    kept: list[str] = []
    for option in map(str, wrong):
        if option != right and option not in kept:
            kept.append(option)
        if len(kept) == max_options - 1:
            break
    if not kept:
        raise ValueError(f"{key}: no wrong option differs from the right one ({right!r})")
    options = sorted([right, *kept], key=lambda o: _rank(key, settings, o))
    return Checkpoint(key, question, tuple(options), options.index(right), why, settings)


# ---- option generators the page builders share -------------------------------------------------


def dims_text(dims: Sequence[int]) -> str:
    """'[1, 8, 20, 20]': a shape as the code prints it (the same form as ui.format.shape)."""
    return "[" + ", ".join(f"{int(d):,}" for d in dims) + "]"


def shape_options(right_dims: Sequence[int], candidates: Iterable[Sequence[int]]) -> tuple[str, list[str]]:
    """The right shape and the candidate shapes as display strings, for ``choice``.

    Candidates are shapes a student plausibly expects (the axes in another order, a head axis
    forgotten, the head width where the sequence belongs). Any that equals the right shape, or
    prints like it, is dropped, e.g. ``[S, L]`` against ``[S, S]`` when ``S == L``.
    """
    right = dims_text(right_dims)
    wrong: list[str] = []
    for dims in candidates:
        text = dims_text(dims)
        if text != right and text not in wrong:
            wrong.append(text)
    return right, wrong


def _commas(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:,.3g}"


def number_options(
    right: float,
    candidates: Iterable[float] = (),
    *,
    spread: Sequence[float] = (2, 0.5, 10, 0.1),
    fmt: Callable[[float], str] = _commas,
    positive: bool = True,
) -> tuple[str, list[str]]:
    """The right number and plausible wrong ones as display strings, for ``choice``.

    ``candidates`` come first: the numbers a misconception gives (forgetting a factor of H, using
    D where L belongs). Then ``right × f`` for each factor in ``spread`` (rounded to a whole
    number when ``right`` is one). Wrong values that format like the right one, repeat, are not
    finite, or (with ``positive``) are not above zero are dropped.
    """
    whole = isinstance(right, int) and not isinstance(right, bool)
    right_text = fmt(right)
    pool = [*candidates, *(right * f for f in spread)]
    wrong: list[str] = []
    for value in pool:
        if isinstance(value, float) and not math.isfinite(value):
            continue
        if whole:
            if float(value) != round(value):
                value = round(value)
            value = int(value)
        if positive and value <= 0:
            continue
        text = fmt(value)
        if text != right_text and text not in wrong:
            wrong.append(text)
    return right_text, wrong
