"""A scan for the sentences that break at edge settings, reusable by every page's tests.

A page's sentences are written at the defaults (H = 8, S = 20, …) and read at every setting. At
H = 1, S = 1, B = 1, a one-token sentence or "a a a", the same templates say "1 tokens", print a
difference that rounds to zero as "−0.00", call a ratio of nothing "0× smaller", describe "40 KiB
against 40 KiB" as a difference, or count rows from 1. ``scan_page(at)`` reads everything an
AppTest run rendered (markdown, captions, LaTeX, code, alerts, metrics with their help, expander
labels) and every table's counters, and returns what it found with the text around it;
``assert_clean(at)`` fails with that list. ``scan_text`` does the same on a string, so a test can
show that each rule catches the old wording (see tests/test_edge_settings_shapes_toy.py).

Usage::

    from tests.edge_scan import assert_clean
    at = run_page("my-page", {"heads": "1"})
    assert_clean(at, allow=("1 is",))  # an allowlisted phrase a rule would otherwise flag
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

__all__ = ["Finding", "RULES", "page_text", "scan_text", "scan_tables", "scan_page", "assert_clean"]


@dataclass(frozen=True)
class Finding:
    rule: str  # which rule
    match: str  # the text it matched
    context: str  # the text around it, to find it on the page

    def __str__(self) -> str:
        return f"- {self.rule}: {self.match!r} in …{self.context}…"


# Words ending in "s" that are not plurals, so "1 is", "1 has", "1 across" are fine. Extend per call
# with ``allow`` rather than here when a phrase is one page's own.
NOT_PLURALS = frozenset("""
    is was has does as its this thus us plus minus bias axis across always whereas less unless process
    class loss gross sums adds keeps makes takes gives holds means says shows stays goes becomes
    runs sets needs reads writes counts lies sees yes gets
""".split())

# Words that end a phrase about the number one rather than qualify a noun after it: "1 across keys".
SMALL_WORDS = frozenset("""
    and or but in at on of to for with across over per by from when if is was as the a an each every than
    into onto so then where while both either all any no not it this that these those
""".split())

_NUMBER = r"[−-]?\d[\d,]*(?:\.\d+)?(?:e[+−-]?\d+)?"
_UNIT = r"(?:\s?(?:[kMGTPEZY]\b|KiB|MiB|GiB|TiB|bytes|bits|%|ε|ms|µs|ns|s\b|×|FLOPs|numbers))?"

# (name, pattern, check) — check(match) says whether a match is really a finding (None: always).
RULES: list[tuple[str, re.Pattern, object]] = [
    # "1 tokens", "H = 1 heads", "1** rows", "$1$ cells", "1 distinct tokens": a plural noun after the
    # number one, perhaps with an adjective between (not a small word: "1 across keys" is fine).
    ("plural after one",
     re.compile(r"(?<![−+-] )(?<![\d.,/^_{\w−-])1(?:\*\*|\$|`)?[ \u00a0]+(?:([a-z]+)[ \u00a0]+)?([a-z]+s)\b"),
     lambda m: m.group(2) not in NOT_PLURALS and (m.group(1) or "") not in SMALL_WORDS),
    ("plural after one", re.compile(r"\b[Oo]ne\s+(tokens|heads|cells|rows|columns|keys|queries|positions|"
                                    r"sequences|steps|calls|bits|numbers|values|entries|words|terms)\b"), None),
    # "−0", "-0.00", "−0.000e+00": a value that rounds to zero printed with a sign.
    ("negative zero", re.compile(r"(?<![\w.])[−-]0(?:\.0+)?(?:e[+−-]?\d+)?(?![\d.]*\d)"), None),
    # "0×", "0.0× smaller", "0.0 times": a ratio of nothing, said as a multiple.
    ("zero multiple", re.compile(r"(?<![\d.,])0(?:\.0+)?\s?(?:×|times\b)"), None),
    # "1.0× less", "1.00× faster": a ratio of one, said as a difference.
    ("one-times difference", re.compile(r"(?<![\d.,])1(?:\.0+)?\s?×\s+(?:less|more|smaller|larger|faster|slower|"
                                        r"bigger|lower|higher)\b"), None),
    # "40 KiB against 40 KiB", "10.5 M vs 10.5 M", "from 0.18 to 0.18 bits": one number said as two.
    ("equal pair described as different",
     re.compile(rf"(?<![\w.,])({_NUMBER}{_UNIT})\s+(?:against|vs\.?|versus|compared with)\s+\1(?![\w.,]*\d)"), None),
    ("equal pair described as different",
     re.compile(rf"\bfrom\s+({_NUMBER}{_UNIT})\s+to\s+\1(?![\w.,]*\d)"), None),
    # Counting from 1 where the essay counts from 0.
    ("1-based counter", re.compile(r"\\sum_\{\s*[a-z]\s*=\s*1\s*\}"), None),
    ("1-based counter", re.compile(r"\bheads?\s+1\s*(?:…|\.\.\.|\\dots|–|to)\s*\$?H\b"), None),
    ("1-based counter", re.compile(r"\(\s*h\s*[-−]\s*1\s*\)\s*L"), None),
    # A quoted message whose full stop doubles the sentence's: "….*." or "..".
    ("doubled full stop", re.compile(r"(?<!\.)\.[*_`”\"]?\.(?!\.)"), None),
]

# Integer table columns that count things and so start at 0 (positions, heads, call order, ids).
COUNTER_COLUMNS = ("order", "position", "head", "id", "query_pos", "key_pos", "l")


def page_text(at) -> str:
    """Everything an AppTest run rendered as text, one element per line."""
    parts: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "latex", "code", "text"):
        parts += [str(el.value) for el in at.get(kind)]
    for kind in ("warning", "error", "info", "success", "exception"):
        parts += [str(el.value) for el in at.get(kind)]
    for m in at.metric:
        parts.append(f"{m.label}: {m.value}")
        if getattr(m, "help", None):
            parts.append(str(m.help))
    parts += [str(e.label) for e in at.expander]
    for kind in ("number_input", "slider", "radio", "toggle", "text_input", "button"):
        for el in at.get(kind):
            parts.append(str(el.label))
            if getattr(el, "help", None):
                parts.append(str(el.help))
    return "\n".join(parts)


def scan_text(text: str, allow: tuple[str, ...] = ()) -> list[Finding]:
    """Every rule's matches in ``text``, less those inside an allowlisted phrase."""
    found = []
    for name, pattern, check in RULES:
        for m in pattern.finditer(text):
            if check is not None and not check(m):
                continue
            context = text[max(0, m.start() - 60): m.end() + 60].replace("\n", " ")
            if any(a in text[max(0, m.start() - len(a)): m.end() + len(a)] for a in allow):
                continue
            found.append(Finding(name, m.group(0), context))
    return found


def scan_tables(at) -> list[Finding]:
    """Counter columns (``order``, ``position``, ``head``, …) of every table must start at 0."""
    found = []
    for df in at.dataframe:
        frame = df.value
        if not isinstance(frame, pd.DataFrame) or frame.empty:
            continue
        for c in COUNTER_COLUMNS:
            if c in frame.columns and pd.api.types.is_integer_dtype(frame[c]) and int(frame[c].min()) != 0:
                found.append(Finding("1-based counter", f"column {c!r} starts at {int(frame[c].min())}",
                                     " ".join(map(str, frame.columns))))
    return found


def scan_page(at, allow: tuple[str, ...] = ()) -> list[Finding]:
    """What ``scan_text`` finds in the rendered text, plus ``scan_tables``."""
    return scan_text(page_text(at), allow) + scan_tables(at)


def assert_clean(at, allow: tuple[str, ...] = ()) -> None:
    found = scan_page(at, allow)
    assert not found, "sentences that break at this setting:\n" + "\n".join(map(str, found))
