"""The shape table's checkpoints: one right option at any sizes, and it is what the page shows below."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.checkpoints import dims_text
from core.checkpoints.shapes import kv_cache_factor, kv_factor_text, positions_meet, scores_shape
from core.presets import PRESETS
from core.shapes import position_mixing, shape_table, sharing_summary
from core.sizes import LayerSizes, divisors
from tests.apptest_utils import rerun, run_page


@st.composite
def layer_sizes(draw):
    H = draw(st.integers(1, 64))
    return LayerSizes(draw(st.integers(1, 64)), draw(st.integers(1, 300)), 7, H * draw(st.integers(1, 300)), H,
                      draw(st.sampled_from(divisors(H))))


def _one_right(cp, right: str) -> None:
    assert len(set(cp.options)) == len(cp.options) >= 2
    assert [o for o in cp.options if o == right] == [right] and cp.right == right


@settings(max_examples=150, deadline=None)
@given(layer_sizes())
def test_scores_shape_has_exactly_one_right_option_at_any_sizes(sizes):
    cp = scores_shape(sizes)
    B, S, H = sizes.batch, sizes.seq, sizes.n_heads
    _one_right(cp, dims_text((B, H, S, S)))


@settings(max_examples=150, deadline=None)
@given(layer_sizes(), st.integers(1, 80), st.sampled_from(["float32", "bfloat16"]), st.integers(1, 10**6))
def test_kv_factor_has_exactly_one_right_option_at_any_sizes(sizes, layers, dtype, context):
    summary = sharing_summary(sizes, layers=layers, dtype=dtype, context=context)
    cp = kv_cache_factor(summary)
    _one_right(cp, kv_factor_text(sizes.group_size))
    assert summary["per_token_without_sharing"] == summary["per_token"] * sizes.group_size


def test_the_right_answers_are_the_tables_numbers():
    for size in [(1, 20, 50_000, 512, 8, 8), (1, 5, 10, 16, 4, 2), (3, 1, 1, 6, 6, 1), (1, 1, 1, 1, 1, 1)]:
        sizes = LayerSizes(*size)
        step_6 = shape_table(*size).set_index("step").loc["6", "output"]
        assert scores_shape(sizes).right == dims_text(step_6)
    cp = positions_meet()
    assert cp.right.startswith(f"step {position_mixing()['first_meet']}:")
    assert len(set(cp.options)) == len(cp.options) == 4


def test_the_kv_question_changes_its_answer_with_the_settings():
    rights = {kv_cache_factor(sharing_summary(LayerSizes(1, 20, 10, 512, 8, k))).right for k in (8, 4, 2, 1)}
    assert rights == {"the same size", "2× smaller", "4× smaller", "8× smaller"}
    assert scores_shape(LayerSizes(1, 20, 10, 512, 8)).right != scores_shape(LayerSizes(2, 7, 10, 512, 8)).right


# ---- on the page ----------------------------------------------------------------------------------

SETTINGS = [
    {},  # the post's sizes
    {"batch": "1", "seq": "5", "vocab": "10", "d_model": "16", "heads": "4", "kv_heads": "2"},  # small, grouped
    {"heads": "1"},  # one head
    {"seq": "1", "kv_heads": "1"},  # one token, multi-query
    {"model": "llama-3-8b", "dtype": "bfloat16"},  # a published GQA model
    {"model": "falcon-7b", "batch": "2"},  # 71 heads sharing one key/value head
]


def _radio(at, prefix: str):
    (radio,) = [r for r in at.radio if r.label.startswith("Predict: " + prefix)]
    return radio


def _shown_scores(at) -> str:
    """Step 6's output as the page's table prints it, as the checkpoint writes a shape."""
    table = next(m.value for m in at.markdown if "| step | operation |" in m.value)
    row = next(line for line in table.splitlines() if line.startswith("| **6** |"))
    numbers = row.split("|")[5].split("=")[1].strip()  # "1×8×20×20"
    return "[" + ", ".join(numbers.split("×")) + "]"


def _shown_factor(at) -> str:
    readout = next(m.value for m in at.markdown if " per token**" in m.value)
    if "the same size" in readout:
        return "the same size"
    return re.search(r"([\d,]+× smaller)", readout).group(1)


def _guess(at, prefix: str, option: str):
    _radio(at, prefix).set_value(option)
    return rerun(at)


@pytest.mark.parametrize("query", SETTINGS, ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items()) or "defaults")
def test_the_right_option_is_what_the_page_shows_below(query):
    at = run_page("shapes", query, timeout=120)
    shown_scores, shown_factor = _shown_scores(at), _shown_factor(at)
    assert shown_scores in _radio(at, "At $B").options and shown_factor in _radio(at, "With $H").options
    assert not at.success and not at.error  # nothing is answered before a guess
    _guess(at, "At $B", shown_scores)
    assert any("Right: " + shown_scores in s.value for s in at.success)
    wrong = next(o for o in _radio(at, "With $H").options if o != shown_factor)
    _guess(at, "With $H", wrong)
    assert any(f"the answer is {shown_factor}" in e.value for e in at.error)
    meet = _radio(at, "At which step")
    _guess(at, "At which step", next(o for o in meet.options if o.startswith("step 6:")))
    assert len(at.success) == 2


def test_a_preset_reads_its_sizes_into_the_question():
    at = run_page("shapes", {"model": "llama-3-8b"})
    p = PRESETS["llama-3-8b"]
    assert _radio(at, "At $B").label.startswith(f"Predict: At $B = 1$, $S = 20$, $H = {p.n_heads}$, $H_{{kv}} = 8$")
    assert "4× smaller" in _radio(at, "With $H").options


def test_quiz_folds_the_table_until_a_guess():
    at = run_page("shapes", {"quiz": "1"})
    assert not any("| step | operation |" in m.value for m in at.markdown)
    assert any("Make your prediction above" in i.value for i in at.info)
    at = _guess(at, "At $B", "[1, 8, 20, 20]")
    assert any("| step | operation |" in m.value for m in at.markdown)


def test_a_changed_setting_resets_the_guess():
    at = run_page("shapes", {"kv_heads": "2"})
    at = _guess(at, "With $H", "4× smaller")
    assert any("Right: 4× smaller" in s.value for s in at.success)
    at.radio(key="kv_heads").set_value(1)
    rerun(at)
    assert _radio(at, "With $H").value is None and not any("4× smaller" in s.value for s in at.success)
