"""The concat-versus-sum page under AppTest: the kv_heads control and the page's checkpoints.

For each checkpoint the right option is worked out here from what the page shows below it (the
reshape sentence, the precision table, the waterfall's table), never from the builder, and a
guess of it must be acknowledged as right: so the question and the figure agree at every setting
tested (defaults, small, H = 1, grouped and multi-query).
"""

from __future__ import annotations

import pytest

from core.checkpoints import concat_vs_sum as cps
from tests.apptest_utils import notices, rerun, run_page, texts, run_page_with_numbers

PAGE = "concat-vs-sum"
CHARTS = 5  # the reshape right and wrong, precision dots, the waterfall, W_O twice
KEYS = ("concat_vs_sum.reshape_mixes", "concat_vs_sum.eps_gap", "concat_vs_sum.head_terms")


def metric(at, label_start: str) -> str:
    found = [m.value for m in at.metric if m.label.startswith(label_start)]
    assert len(found) == 1, [m.label for m in at.metric]
    return found[0]


def question(at, key: str):
    found = [r for r in at.radio if r.label.startswith("Predict:") and str(r.key).startswith(f"_cp_guess:{key}:")]
    assert len(found) == 1, [r.key for r in at.radio]
    return found[0]


def frame_with(at, column: str):
    found = [el.value for el in at.dataframe if column in el.value.columns]
    assert found, column
    return found[0]


def expected_answers(at) -> dict[str, str]:
    """Each checkpoint's right option, read off what the page shows below it."""
    body = texts(at)
    table = frame_with(at, "eps_units").set_index("dtype")
    terms = frame_with(at, "running total after")  # the waterfall's table: one row per head term
    return {
        "concat_vs_sum.reshape_mixes": cps.SAME if "the two agree exactly" in body else cps.MIXES,
        "concat_vs_sum.eps_gap": cps.gap_category(table.loc["float32", "eps_units"],
                                                  table.loc["bfloat16", "eps_units"]),
        "concat_vs_sum.head_terms": f"{len(terms):,}",
    }


# ---- kv_heads: the control, the readouts, hostile links ------------------------------------------


def test_default_is_plain_multi_head_attention_with_nn_multiheadattention():
    at = run_page(PAGE)
    assert at.radio(key="kv_heads").value == 8 and list(at.radio(key="kv_heads").options) == ["8", "4", "2", "1"]
    assert metric(at, "out_proj.weight is W_O") == "yes"
    body = texts(at)
    assert "Here $H_{kv} = H$, so below, the page's weights are loaded into `torch.nn.MultiheadAttention`" in body
    assert "it has no grouped-query\nattention" in body  # said even where it is used


@pytest.mark.parametrize("kv", ["4", "2", "1"])
def test_grouped_layers_are_checked_against_sdpa(kv):
    at = run_page_with_numbers(PAGE, {"kv_heads": kv})
    assert notices(at) == [] and len(at.get("vega_lite_chart")) == CHARTS
    assert metric(at, "k and v handed to SDPA") == f"[1, {kv}, 20, 64]"
    assert not [m for m in at.metric if m.label.startswith("out_proj.weight")]
    assert float(metric(at, "Concat path vs PyTorch")) < 1e-5 and float(metric(at, "Sum path vs PyTorch")) < 1e-5
    assert 0 < float(metric(at, "Max rel diff")) < 1e-5  # the identity, still rounding only
    body = texts(at)
    assert f"k and v at [1, {kv}, 20, 64]" in body and "`enable_gqa=True`" in body
    assert f"The layer keeps k and v at [1, {kv}, 20, 64]" in body and "its z is [1, 8, 20, 64]" in body
    calls = frame_with(at, "what it is")
    assert "scaled_dot_product_attention" in list(calls["call"])
    assert "linear" not in list(calls["call"])  # nn.MultiheadAttention did not run


def test_multi_query_is_named_and_groups_listed():
    body = texts(run_page(PAGE, {"kv_heads": "1"}))
    assert "share one key/value head (multi-query attention)" in body
    assert "heads 0–7 read key/value head 0" in body
    body = texts(run_page(PAGE, {"kv_heads": "4"}))
    assert "heads 0 and 1 read key/value head 0, heads 2 and 3 read key/value head 1" in body


HOSTILE = [
    ("0", 1, "must be at least 1"),
    ("3", 2, "don't divide 8 query heads"),
    ("16", 8, "more than the 8 query heads"),
    ("2.5", 2, "not a whole number"),
    ("abc", 8, "not a number"),
    ("x" * 10_000, 8, "not a number"),
    ("🙂", 8, "not a number"),
    ("<b>4</b>", 8, "not a number"),
]


@pytest.mark.parametrize("raw, used, says", HOSTILE, ids=[h[0][:8] for h in HOSTILE])
def test_hostile_kv_heads_gets_the_nearest_valid_value_with_a_notice(raw, used, says):
    at = run_page(PAGE, {"kv_heads": raw})
    said = notices(at)
    assert any("kv_heads=" in m and says in m and f"Showing `kv_heads={used}`" in m for m in said), said
    assert all(len(m) < 400 for m in said)  # a 10,000-character value is cut, not echoed
    assert at.radio(key="kv_heads").value == used
    assert len(at.get("vega_lite_chart")) == CHARTS  # a working page at the value used


def test_fewer_heads_than_the_chosen_kv_heads_falls_back_to_plain():
    at = run_page(PAGE, {"kv_heads": "4"})
    at.number_input(key="heads").set_value(2)
    rerun(at)
    assert at.radio(key="kv_heads").value in (1, 2)
    assert list(at.radio(key="kv_heads").options) == ["2", "1"]
    assert len(at.get("vega_lite_chart")) == CHARTS


# ---- checkpoints ---------------------------------------------------------------------------------

SETTINGS = {
    "defaults": {},
    "small": {"seq": "5", "d_model": "24", "heads": "4", "batch": "2"},
    "H=1": {"heads": "1"},
    "GQA": {"kv_heads": "2"},
    "MQA S=1 bf16": {"kv_heads": "1", "seq": "1", "dtype": "bfloat16", "d_model": "64", "heads": "4"},
}


@pytest.fixture(scope="module")
def pages():
    return {name: run_page(PAGE, query, timeout=120, numbers=True) for name, query in SETTINGS.items()}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_checkpoint_asks_before_its_figure_with_nothing_chosen(pages, name):
    at = pages[name]
    for key in KEYS:
        radio = question(at, key)
        assert radio.value is None and 2 <= len(radio.options) <= 6
    assert not at.success and not [e for e in at.error if "Not quite" in str(e.value)]


@pytest.mark.parametrize("name", list(SETTINGS))
def test_the_right_option_is_what_the_page_shows_below(name):
    at = run_page_with_numbers(PAGE, SETTINGS[name], timeout=120)
    expected = expected_answers(at)
    assert sum(o == expected["concat_vs_sum.reshape_mixes"] for o in question(at, KEYS[0]).options) == 1
    for key in KEYS:
        question(at, key).set_value(expected[key])
    rerun(at)
    wins = [str(s.value) for s in at.success]
    for key in KEYS:
        assert any(w.startswith(f"Right: {expected[key]}.") for w in wins), (key, expected[key], wins)
    assert not [e for e in at.error if "Not quite" in str(e.value)]


def test_the_right_options_change_with_the_settings(pages):
    answers = {name: expected_answers(at) for name, at in pages.items()}
    assert answers["defaults"]["concat_vs_sum.reshape_mixes"] == cps.MIXES
    assert answers["H=1"]["concat_vs_sum.reshape_mixes"] == cps.SAME
    assert answers["MQA S=1 bf16"]["concat_vs_sum.reshape_mixes"] == cps.SAME
    assert answers["defaults"]["concat_vs_sum.head_terms"] == "8" == answers["GQA"]["concat_vs_sum.head_terms"]
    assert answers["H=1"]["concat_vs_sum.head_terms"] == "1"
    assert "2" in question(pages["GQA"], KEYS[2]).options  # H_kv offered as the tempting wrong count


def test_a_wrong_guess_states_the_answer_and_a_changed_control_resets_it():
    at = run_page(PAGE, {"kv_heads": "2"})
    radio = question(at, "concat_vs_sum.head_terms")
    assert "8" in radio.options
    radio.set_value("2")
    rerun(at)
    wrong = [str(e.value) for e in at.error if "Not quite" in str(e.value)]
    assert len(wrong) == 1 and "the answer is 8." in wrong[0] and "The waterfall below has 8 bars." in wrong[0]
    at.radio(key="kv_heads").set_value(1)
    rerun(at)
    radio = question(at, "concat_vs_sum.head_terms")
    assert radio.value is None and "1" in radio.options  # a fresh question for the new setting
    assert not [e for e in at.error if "Not quite" in str(e.value)]


def test_quiz_folds_each_answering_figure_until_a_guess():
    at = run_page(PAGE, {"quiz": "1"})
    locked = [i for i in at.info if "Make your prediction above" in str(i.value)]
    assert len(locked) == 3
    assert len(at.get("vega_lite_chart")) == 2  # only W_O's two pictures answer no question
    assert "off by **" not in texts(at)  # the reshape outcome is part of what stays folded
    [b for b in at.button if b.label == "Reveal the answer"][0].click()
    rerun(at)
    assert len([i for i in at.info if "Make your prediction above" in str(i.value)]) == 2
    assert len(at.get("vega_lite_chart")) == 3
