"""ui.controls: URL-bound widgets that explain refused link values, and the caps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from core.attention import trace_numel
from core.sizes import heads_rule
from tests.apptest_utils import notices, rerun
from ui import controls


def _script():
    import streamlit as st

    from ui.controls import Controls, show_link

    c = Controls()
    c.integer("heads", "Heads", default=8, lo=1, hi=64)
    c.integer("seq", "Tokens", default=20, lo=1, hi=100, slider=True)
    c.choice("dtype", "dtype", ["float32", "float64"], default="float32")
    c.choice("device", "device", ["cpu"], default="cpu", unavailable={"cuda": "not available here"})
    c.flag("causal", "Causal")
    c.text("sentence", "Sentence", default="my name is", max_chars=20)
    c.show_notices()
    st.write(repr(c.values))
    show_link(c.values)


def _run(query: dict) -> AppTest:
    at = AppTest.from_function(_script, default_timeout=30)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception
    return at


def _values(at: AppTest) -> dict:
    return eval(at.markdown[-1].value.strip("`"))  # the repr written by the script


def test_defaults_have_no_notices():
    at = _run({})
    assert notices(at) == []
    assert _values(at) == {"heads": 8, "seq": 20, "dtype": "float32", "device": "cpu",
                           "causal": False, "sentence": "my name is"}
    assert "heads=8" in at.code[0].value and "causal=false" in at.code[0].value


@pytest.mark.parametrize(
    "query, used, phrase",
    [
        ({"heads": "abc"}, {"heads": 8}, "not a number"),
        ({"heads": "4.5"}, {"heads": 4}, "not a whole number"),
        ({"heads": "1000"}, {"heads": 8}, "outside the allowed range 1–64"),
        ({"heads": "-3"}, {"heads": 8}, "outside the allowed range"),
        ({"heads": "nan"}, {"heads": 8}, "not a number"),
        ({"heads": "inf"}, {"heads": 8}, "not a finite number"),
        ({"seq": "-1e400"}, {"seq": 20}, "not a finite number"),
        ({"seq": "1e9"}, {"seq": 20}, "outside"),
        ({"dtype": "int8"}, {"dtype": "float32"}, "not one of float32, float64"),
        ({"device": "cuda"}, {"device": "cpu"}, "not available here"),
        ({"causal": "maybe"}, {"causal": False}, "neither true nor false"),
        ({"sentence": "x" * 10_000}, {"sentence": "x" * 20}, "10,000 characters"),
    ],
)
def test_refused_values_are_explained(query, used, phrase):
    at = _run(query)
    msgs = notices(at)
    assert len(msgs) == 1 and phrase in msgs[0], msgs
    for key, value in used.items():
        assert _values(at)[key] == value


def test_several_infinities_and_other_refusals_are_all_reported():
    at = _run({"heads": "inf", "seq": "1e999", "dtype": "int8"})
    msgs = notices(at)
    assert len(msgs) == 3, msgs
    assert sum("not a finite number" in m for m in msgs) == 2
    assert _values(at)["heads"] == 8 and _values(at)["seq"] == 20


def test_good_values_are_taken_silently():
    at = _run({"heads": "16", "dtype": "float64", "causal": "true", "sentence": "héllo 👋 <b>x</b>"})
    assert notices(at) == []
    v = _values(at)
    assert (v["heads"], v["dtype"], v["causal"], v["sentence"]) == (16, "float64", True, "héllo 👋 <b>x</b>")


def test_notice_is_not_repeated_on_rerun():
    at = _run({"heads": "abc"})
    assert len(notices(at)) == 1
    rerun(at)
    assert notices(at) == []


def test_markdown_in_a_link_value_is_neutralised():
    at = _run({"heads": "`**boom**`" + "y" * 100})
    (msg,) = notices(at)
    assert "`**boom**`" not in msg and "…" in msg


@settings(max_examples=25)
@given(st.dictionaries(st.sampled_from(["heads", "seq", "dtype", "device", "causal", "sentence", "zzz"]),
                       st.one_of(st.text(max_size=60), st.sampled_from(["inf", "-inf", "1e400", "nan"])),
                       max_size=4))
def test_any_query_string_gives_a_page(query):
    at = _run(query)
    v = _values(at)
    assert 1 <= v["heads"] <= 64 and 1 <= v["seq"] <= 100 and len(v["sentence"]) <= 20


def test_heads_problem():
    assert controls.heads_problem(512, 8) is None
    msg = controls.heads_problem(512, 7)
    assert "don't divide" in msg and "8" in msg
    assert "Try heads = " in controls.heads_problem(12, 5)


def test_budget_problem():
    assert controls.budget_problem(trace_numel(1, 20, 512, 8), 4) is None
    big = controls.budget_problem(trace_numel(64, 1024, 2048, 64), 4)
    assert big and "too big" in big and "`per_head` alone" in big  # B·S·H·D is the largest
    assert "`scores` alone" in controls.budget_problem(trace_numel(1, 1024, 64, 64), 4)  # H·S² wins
    # Under the per-tensor cap but over the total: the message names the total.
    many = {f"t{i}": controls.MAX_TENSOR_ELEMENTS for i in range(9)}
    assert "MiB" in controls.budget_problem(many, 4)


def _two_groups():
    import streamlit as st

    from ui.controls import Controls

    c = Controls()
    c.integer("seq", "Tokens", default=20, lo=1, hi=100)
    c.show_notices()
    st.write("between the groups")
    c.integer("coord", "Coordinate", default=0, lo=0, hi=10)
    c.show_notices()


def test_two_groups_keep_every_notice_through_a_restart():
    at = AppTest.from_function(_two_groups, default_timeout=30)
    at.query_params["seq"] = "lots"
    at.query_params["coord"] = "inf"
    at.run()
    assert not at.exception
    msgs = notices(at)
    assert len(msgs) == 2, msgs
    assert "seq=lots" in msgs[0] and "coord=inf" in msgs[1]


# ---- kv_heads: key/value heads shared by groups of query heads -------------------------------


def _kv_script():
    import streamlit as st

    from ui.controls import Controls

    c = Controls()
    heads = c.integer("heads", "Heads", default=8, lo=1, hi=64)
    c.kv_heads(heads)
    c.show_notices()
    st.write(repr(c.values))


def _kv_run(query: dict) -> AppTest:
    at = AppTest.from_function(_kv_script, default_timeout=30)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception
    return at


def test_kv_heads_is_a_shared_name():
    assert "kv_heads" in controls.SHARED_NAMES


def test_kv_heads_defaults_to_no_sharing_and_takes_divisors_silently():
    at = _kv_run({})
    assert notices(at) == [] and _values(at) == {"heads": 8, "kv_heads": 8}
    assert [int(o) for o in at.radio(key="kv_heads").options] == [8, 4, 2, 1]
    at = _kv_run({"kv_heads": "2"})
    assert notices(at) == [] and _values(at)["kv_heads"] == 2


@pytest.mark.parametrize(
    "query, used, phrase",
    [
        ({"kv_heads": "0"}, 1, "at least 1"),
        ({"kv_heads": "-4"}, 1, "at least 1"),
        ({"kv_heads": "5"}, 4, "don't divide 8 query heads"),
        ({"kv_heads": "99"}, 8, "more than the 8 query heads"),
        ({"kv_heads": "2.5"}, 2, "not a whole number"),
        ({"kv_heads": "abc"}, 8, "not a number"),
        ({"kv_heads": "inf"}, 8, "not a number"),
        ({"kv_heads": "nan"}, 8, "not a number"),
        ({"kv_heads": "👋" * 5000}, 8, "not a number"),
        ({"heads": "6", "kv_heads": "4"}, 3, "kv_heads can be 1, 2, 3, 6"),
        ({"heads": "1", "kv_heads": "2"}, 1, "more than the 1 query head:"),
    ],
)
def test_hostile_kv_heads_become_the_nearest_divisor(query, used, phrase):
    at = _kv_run(query)
    msgs = notices(at)
    assert len(msgs) == 1 and phrase in msgs[0], msgs
    assert f"Showing `kv_heads={used}` instead" in msgs[0]
    assert _values(at)["kv_heads"] == used
    assert len(msgs[0]) < 400  # a 10,000-character link value is cut before it is quoted


def test_kv_heads_follows_a_change_of_heads():
    at = _kv_run({"kv_heads": "2"})
    at.number_input(key="heads").set_value(6).run()
    assert _values(at) == {"heads": 6, "kv_heads": 2}  # 2 still divides 6
    at.radio(key="kv_heads").set_value(3).run()
    at.number_input(key="heads").set_value(8).run()
    assert _values(at) == {"heads": 8, "kv_heads": 8}  # 3 doesn't divide 8: back to no sharing
    assert notices(at) == []


def test_kv_heads_problem():
    assert controls.kv_heads_problem(8, 2) is None
    assert "don't divide" in controls.kv_heads_problem(8, 3)
    assert controls.heads_problem(512, 7) == heads_rule(512, 7, 64)  # one rule, one wording
