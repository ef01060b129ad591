"""core.checkpoints: exactly one right option, distinct options, an order every reader shares."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.checkpoints import (
    Checkpoint, choice, dims_text, fingerprint, number_options, shape_options,
)

labels = st.text(min_size=1, max_size=12)
keys = st.from_regex(r"[a-z]{1,8}\.[a-z_]{1,10}", fullmatch=True)


@given(keys, labels, st.lists(labels, max_size=10), st.text(max_size=20), st.integers(2, 6))
def test_choice_has_distinct_options_and_exactly_one_right(key, right, wrong, settings, max_options):
    distinct_wrong = {w for w in wrong if w != right}
    if not distinct_wrong:
        with pytest.raises(ValueError):
            choice(key, "q", right, wrong, "why", settings, max_options=max_options)
        return
    cp = choice(key, "q", right, wrong, "why", settings, max_options=max_options)
    assert len(set(cp.options)) == len(cp.options)
    assert [o == right for o in cp.options].count(True) == 1
    assert cp.right == right and cp.options[cp.answer] == right
    assert 2 <= len(cp.options) <= min(max_options, 1 + len(distinct_wrong))
    assert set(cp.options) - {right} <= distinct_wrong


@given(keys, labels, st.lists(labels, min_size=1, max_size=6), st.text(max_size=20))
def test_order_is_fixed_by_key_and_settings(key, right, wrong, settings):
    wrong = [w + "!" for w in wrong if w + "!" != right]
    if not wrong:
        return
    a = choice(key, "q", right, wrong, "why", settings, max_options=6)
    b = choice(key, "another wording", right, list(reversed(wrong)), "other why", settings, max_options=6)
    if len(set(wrong)) <= 5:  # all kept: the same set of options, so the same order
        assert a.options == b.options and a.answer == b.answer


def test_order_does_not_depend_on_the_order_wrong_options_are_given():
    a = choice("p.q", "q", "A", ["B", "C", "D"], "w", "s")
    b = choice("p.q", "q", "A", ["D", "C", "B"], "w", "s")
    assert a.options == b.options


def test_order_varies_across_settings_so_the_right_one_is_not_always_first():
    positions = {choice("p.q", "q", "right", ["w1", "w2", "w3"], "w", str(i)).answer for i in range(40)}
    assert len(positions) >= 3


def test_wrong_equal_to_right_is_dropped_and_all_equal_raises():
    cp = choice("p.q", "q", "[1, 2]", ["[1, 2]", "[2, 1]", "[2, 1]"], "w", "s")
    assert sorted(cp.options) == ["[1, 2]", "[2, 1]"]
    with pytest.raises(ValueError):
        choice("p.q", "q", "7", ["7", "7"], "w", "s")


def test_max_options_keeps_the_first_wrong_ones():
    cp = choice("p.q", "q", "0", ["1", "2", "3", "4", "5"], "w", "s", max_options=3)
    assert set(cp.options) == {"0", "1", "2"}


@pytest.mark.parametrize("bad", [
    dict(key="nodot"), dict(options=("a",)), dict(options=("a", "a")), dict(answer=2),
    dict(options=tuple("abcdefg")),
])
def test_checkpoint_refuses_malformed_data(bad):
    fields = dict(key="p.q", question="q", options=("a", "b"), answer=0, why="w", settings="s") | bad
    with pytest.raises(ValueError):
        Checkpoint(**fields)


def test_fingerprint_is_stable_and_plain():
    assert fingerprint(seq=20, heads=8) == fingerprint(heads=8, seq=20)
    assert fingerprint(seq=20) != fingerprint(seq=21)
    assert fingerprint(x=1) != fingerprint(x="1") and fingerprint(x=1.0) != fingerprint(x=1)
    assert fingerprint(dims=(1, 2)) == fingerprint(dims=[1, 2])
    assert len(fingerprint(a=1)) == 16
    with pytest.raises(TypeError):
        fingerprint(t=object())


@given(st.lists(st.integers(1, 5000), min_size=1, max_size=4),
       st.lists(st.lists(st.integers(1, 5000), min_size=1, max_size=4), max_size=6))
def test_shape_options_never_offer_the_right_shape(right, candidates):
    right_text, wrong = shape_options(right, candidates)
    assert right_text == dims_text(right)
    assert right_text not in wrong and len(set(wrong)) == len(wrong)


def test_shape_options_drop_a_candidate_that_coincides():
    s, l = 20, 20  # S == L: [S, L] prints as [S, S]
    right, wrong = shape_options((1, 8, s, s), [(1, 8, s, l), (1, 8, l, l), (1, s, 8, s)])
    assert right == "[1, 8, 20, 20]" and wrong == ["[1, 20, 8, 20]"]


@given(st.integers(1, 10**9), st.lists(st.integers(-10, 10**9), max_size=4))
def test_number_options_whole_numbers(right, candidates):
    right_text, wrong = number_options(right, candidates)
    assert right_text == f"{right:,}"
    assert right_text not in wrong and len(set(wrong)) == len(wrong)
    assert all(int(w.replace(",", "")) > 0 for w in wrong)


@given(st.floats(1e-8, 1e8))
def test_number_options_floats_never_print_like_the_right_one(right):
    right_text, wrong = number_options(right, [right * (1 + 1e-9), float("nan"), float("inf")])
    assert right_text not in wrong and wrong
