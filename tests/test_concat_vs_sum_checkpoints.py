"""The concat-versus-sum checkpoints (core/checkpoints/concat_vs_sum.py): one right option, always.

Two kinds of test: hypothesis over the numbers a builder can be fed (exactly one option is right,
options distinct, the right one is the one the rule picks), and the builders fed the same core
calls the page's figures use, at the defaults, a small layer, H = 1 and grouped-query settings,
checked against what those calls measure.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.checkpoints import concat_vs_sum as cps
from core.concat_vs_sum import concat_vs_sum_report, head_terms, reshape_pitfall
from core.sizes import divisors

finite_units = st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=1e4, allow_nan=False))


def assert_well_formed(cp):
    assert len(set(cp.options)) == len(cp.options) >= 2
    assert 0 <= cp.answer < len(cp.options)
    assert cp.why and cp.question


# ---- hypothesis: every input the builders can get -------------------------------------------------


@given(st.integers(1, 64).flatmap(lambda h: st.tuples(st.just(h), st.sampled_from(divisors(h)))),
       st.integers(0, 6), st.integers(1, 64))
def test_head_terms_has_one_right_option_the_number_of_query_heads(heads_kv, log_l, n_terms_extra):
    H, H_kv = heads_kv
    L = 2 ** log_l
    cp = cps.head_terms(H, H_kv, H * L, H)
    assert_well_formed(cp)
    assert cp.right == f"{H:,}"
    assert sum(o == f"{H:,}" for o in cp.options) == 1
    if H_kv < H:
        assert f"{H_kv:,}" in cp.options  # the misconception under sharing is offered
    # The right option is whatever count the figure has, not a formula: fed another count, it follows.
    other = cps.head_terms(H, H_kv, H * L, n_terms_extra)
    assert other.right == f"{n_terms_extra:,}" and len(set(other.options)) == len(other.options)


@given(finite_units, finite_units)
def test_eps_gap_falls_in_exactly_one_category(a, b):
    rows = [{"dtype": "float32", "eps": 1.1920928955078125e-07, "eps_units": a, "max_rel": a * 1.19e-7},
            {"dtype": "bfloat16", "eps": 0.0078125, "eps_units": b, "max_rel": b * 0.0078125}]
    cp = cps.eps_gap(rows)
    assert_well_formed(cp)
    assert cp.right == cps.gap_category(a, b)
    assert set(cp.options) == {cps.MORE, cps.WITHIN, cps.FEWER, cps.BOTH_ZERO}
    if a > 0 and b > 0:
        r = b / a
        assert (r >= 10) == (cp.right == cps.MORE) and (r <= 0.1) == (cp.right == cps.FEWER)
    assert not re.search(r"(?<![\d.])0\.00 ε", cp.why)  # a zero printed as 0.00, not 1250.00 ε


def test_eps_gap_needs_both_precisions():
    assert cps.eps_gap([{"dtype": "float32", "eps": 1e-7, "eps_units": 1.0, "max_rel": 1e-7}]) is None


@given(st.integers(1, 4), st.integers(1, 16), st.integers(1, 16), st.integers(1, 64),
       st.floats(0, 1), st.floats(0, 10))
def test_reshape_question_has_one_right_option(B, H, S, L, rows, rel):
    cp = cps.reshape_mixes([B, H, S, L], rows, rel)
    assert_well_formed(cp)
    assert cp.right == (cps.MIXES if rows > 0 else cps.SAME)
    assert cps.SHAPE_ERROR in cp.options  # the commonest wrong belief: a bad reshape would fail loudly


# ---- against the core calls the page draws from -----------------------------------------------------

SETTINGS = {
    "defaults": dict(batch=1, seq=20, d_model=512, n_heads=8, n_kv_heads=None),
    "small": dict(batch=2, seq=5, d_model=24, n_heads=4, n_kv_heads=None),
    "H=1": dict(batch=1, seq=20, d_model=512, n_heads=1, n_kv_heads=None),
    "S=1": dict(batch=1, seq=1, d_model=64, n_heads=4, n_kv_heads=2),
    "GQA": dict(batch=1, seq=20, d_model=512, n_heads=8, n_kv_heads=2),
    "MQA causal": dict(batch=1, seq=6, d_model=48, n_heads=6, n_kv_heads=1),
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_reshape_answer_is_what_reshape_pitfall_measures(name):
    s = SETTINGS[name]
    pit = reshape_pitfall(**s, seed=0, causal=name.endswith("causal"))
    L = s["d_model"] // s["n_heads"]
    cp = cps.reshape_mixes([s["batch"], s["n_heads"], s["seq"], L], pit["rows_differ"], pit["out_max_rel"])
    mixes = s["seq"] > 1 and s["n_heads"] > 1
    assert cp.right == (cps.MIXES if mixes else cps.SAME)
    assert (pit["out_max_rel"] > 0.05) == mixes  # a mistake moves the outputs by about their own size


@pytest.mark.parametrize("name", list(SETTINGS))
def test_head_terms_answer_is_the_number_of_terms_core_splits_into(name):
    s = SETTINGS[name]
    terms = head_terms(**s, coord=0, seed=0, dtype="float32")["terms"]  # [S, H]
    cp = cps.head_terms(s["n_heads"], s["n_kv_heads"] or s["n_heads"], s["d_model"], terms.shape[1])
    assert cp.right == f"{s['n_heads']:,}"


@pytest.mark.parametrize("name", ["defaults", "small", "H=1", "GQA"])
def test_eps_gap_answer_is_the_tables(name):
    s = SETTINGS[name]
    rows = concat_vs_sum_report(**s, seed=0, dtypes=("float32", "bfloat16"))["rows"]
    cp = cps.eps_gap(rows)
    a, b = rows[0]["eps_units"], rows[1]["eps_units"]
    assert cp.right == cps.gap_category(a, b)
    assert cps.in_eps(a) in cp.why or cp.right == cps.BOTH_ZERO
