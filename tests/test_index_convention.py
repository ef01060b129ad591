"""One index convention on every page: heads, rows and sums count from 0, as the code does.

Every page is run (at its defaults and at another setting) and everything it wrote, prose, LaTeX,
captions, chart titles and tooltips, is scanned for the 1-based forms that used to creep in:
sums from 1 to H, "rows (h−1)L+1 … hL", "z^1 … z^H", slices "(h+1)L".
"""

from __future__ import annotations

import json
import re

import pytest

from tests.apptest_utils import ROOT, run_page, texts

PAGES = {
    "home": [{}],
    "shapes": [{}, {"batch": "2", "seq": "6", "vocab": "12", "d_model": "24", "heads": "3", "step": "8"}],
    "toy-sentence": [{}, {"heads": "2", "causal": "true", "token": "2"}],
    "concat-vs-sum": [{}, {"heads": "4", "seq": "8", "token": "3"}],
    "induction": [{}],
    "timing": [{}],
}

ONE_BASED = [
    (re.compile(r"_\{\s*[a-z]\s*=\s*1\s*\}"), "a sum or index that starts at 1"),
    (re.compile(r"\\sum_\{[^{}]*\}\^\{?\s*[HDLSV]\s*\}?(?![\s]*-)"), "a sum whose upper bound is H, D, L, S or V (not …−1)"),
    (re.compile(r"\(\s*h\s*[-−]\s*1\s*\)\s*L"), "rows (h−1)L …"),
    (re.compile(r"\(\s*h\s*\+\s*1\s*\)\s*L"), "rows … (h+1)L (write hL+L−1 for the last row)"),
    (re.compile(r"\bheads?\s+1\s*(…|\.\.\.|\\dots|–|-|to)\s*\$?H\b"), "heads 1 … H"),
    (re.compile(r"z\^\{?H\}?(?!\s*-)"), "z^H as the last head"),
]


def _present(page: str) -> bool:
    return (ROOT / "pages" / f"{page}.py").exists()


def _everything_written(at) -> str:
    parts = [texts(at)]
    for chart in at.get("vega_lite_chart"):
        parts.append(json.dumps(json.loads(chart.proto.spec)))
    for kind in ("number_input", "slider", "selectbox", "radio", "toggle", "text_input"):
        parts += [f"{el.label} {el.help or ''}" for el in at.get(kind)]  # control labels and tooltips
    return "\n".join(parts)


@pytest.mark.parametrize("page, query", [(p, q) for p, qs in PAGES.items() for q in qs],
                         ids=lambda v: v if isinstance(v, str) else "&".join(f"{k}={x}" for k, x in v.items()) or "defaults")
def test_no_one_based_head_or_row_ranges(page, query):
    if not _present(page):
        pytest.skip(f"pages/{page}.py is not there")
    written = _everything_written(run_page(page, query, timeout=120))
    found = [(why, m.group(0), written[max(0, m.start() - 60): m.end() + 60])
             for pattern, why in ONE_BASED for m in pattern.finditer(written)]
    assert not found, "1-based indices on the page:\n" + "\n".join(f"- {w}: {g!r} in …{c}…" for w, g, c in found)


def test_the_scanner_catches_the_old_forms():
    """The patterns above are not vacuous: each old form that was on the pages is caught."""
    old = [r"\sum_{h=1}^{H} z^{h} W_O^{h}", r"rows $(h-1)L+1 \dots hL$", r"z^{1} \;\; z^{2} \;\; \cdots \;\; z^{H}",
           "slice W_O^h (rows hL … (h+1)L−1)", r"\sum_{i=1}^{D} concat"]
    for text in old:
        assert any(p.search(text) for p, _ in ONE_BASED), text
    new = [r"\sum_{h=0}^{H-1} z^{h} W_O^{h}", r"rows $hL \dots hL+L-1$", r"z^{0} \;\; z^{1} \;\; \cdots \;\; z^{H-1}",
           r"\sum_{i=0}^{D-1} concat"]
    for text in new:
        assert not any(p.search(text) for p, _ in ONE_BASED), text
