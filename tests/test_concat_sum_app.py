"""The concat-versus-sum page through AppTest: defaults, every control, every precision, hostile links."""

from __future__ import annotations

import pytest

from tests.apptest_utils import notices, rerun, run_page, texts

PAGE = "concat-vs-sum"


def metric(at, label_start: str) -> str:
    found = [m.value for m in at.metric if m.label.startswith(label_start)]
    assert len(found) == 1, f"expected one metric starting {label_start!r}, got {[m.label for m in at.metric]}"
    return found[0]


def number(at, label_start: str) -> float:
    return float(metric(at, label_start))


@pytest.fixture(scope="module")
def default_page():
    return run_page(PAGE)


# ---- defaults ------------------------------------------------------------------------------------


def test_defaults_show_the_essays_layer(default_page):
    at = default_page
    assert notices(at) == []
    body = texts(at)
    for shape in ("[1, 8, 20, 64]", "[1, 20, 512]", "[512, 512]", "[1, 20, 8, 512]", "[64, 512]"):
        assert shape in body
    assert 0 < number(at, "Max abs diff") < 1e-4
    assert 0 < number(at, "Max rel diff") < 1e-5
    assert metric(at, "allclose at float32") == "yes"
    assert metric(at, "out_proj.weight is W_O") == "yes"
    assert len(at.get("vega_lite_chart")) == 4  # precision dots, waterfall, W_O twice
    assert any("out_concat = z.transpose(1, 2)" in str(c.value) for c in at.code)


def test_pytorch_comparison(default_page):
    assert number(default_page, "Concat path vs PyTorch") < 1e-5
    assert number(default_page, "Sum path vs PyTorch") < 1e-5


def test_every_table_downloads(default_page):
    assert len(default_page.get("download_button")) >= 4


# ---- one page per precision ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def by_dtype():
    return {d: run_page(PAGE, {"dtype": d}) for d in ("float64", "float32", "float16", "bfloat16")}


def test_float64_is_exact_to_the_last_bits(by_dtype):
    at = by_dtype["float64"]
    assert notices(at) == []
    assert number(at, "Max abs diff") < 1e-12
    assert number(at, "Max rel diff") < 1e-14
    assert number(at, "Concat path vs PyTorch") < 1e-12


def test_lower_precision_means_a_larger_gap(by_dtype):
    gap = {d: number(at, "Max abs diff") for d, at in by_dtype.items()}
    assert gap["float64"] < gap["float32"] < gap["bfloat16"]
    assert gap["float32"] < gap["float16"]


def test_half_precision_explains_allclose(by_dtype):
    at = by_dtype["bfloat16"]
    assert metric(at, "allclose at bfloat16") == "no"
    assert "atol" in texts(at) and "outside" in texts(at)


def test_verdict_is_shown_for_each_precision(by_dtype):
    for at in by_dtype.values():
        assert metric(at, "Closer on average") in {"concat", "sum", "a tie"}


# ---- each control moved ---------------------------------------------------------------------------


def test_moving_each_size_control_changes_the_shapes():
    at = run_page(PAGE)
    at.number_input(key="seq").set_value(7)
    rerun(at)
    assert "[1, 8, 7, 64]" in texts(at)
    at.number_input(key="batch").set_value(2)
    rerun(at)
    assert "[2, 8, 7, 64]" in texts(at)
    at.number_input(key="heads").set_value(4)
    rerun(at)
    assert "[2, 4, 7, 128]" in texts(at)
    at.number_input(key="d_model").set_value(64)
    rerun(at)
    assert "[2, 4, 7, 16]" in texts(at) and notices(at) == []


def test_seed_dtype_and_causal_change_the_numbers():
    at = run_page(PAGE, {"seq": "6", "d_model": "32", "heads": "4"})
    before = metric(at, "Concat path computed")
    at.number_input(key="seed").set_value(11)
    rerun(at)
    after_seed = metric(at, "Concat path computed")
    assert after_seed != before
    at.toggle(key="causal").set_value(True)
    rerun(at)
    assert metric(at, "Concat path computed") != after_seed
    assert number(at, "Concat path vs PyTorch") < 1e-5  # the mask reaches PyTorch too
    at.radio(key="dtype").set_value("float64")
    rerun(at)
    assert number(at, "Max abs diff") < 1e-12
    assert at.radio(key="device").value == "cpu"


def test_token_and_coordinate_pick_one_number():
    at = run_page(PAGE, {"token": "3", "coord": "100"})
    assert notices(at) == []
    assert "out[s=3, j=100]" in str(at.get("vega_lite_chart")[1].proto.spec)
    first = metric(at, "Concat path computed")
    at.number_input(key="coord").set_value(5)
    rerun(at)
    assert metric(at, "Concat path computed") != first
    exact = float(metric(at, "Heads' terms, added exactly"))
    assert float(metric(at, "Concat path computed")) == pytest.approx(exact, rel=1e-5, abs=1e-6)


# ---- hostile links ---------------------------------------------------------------------------------

HOSTILE = [
    ({"seq": "lots"}, "not a number"),
    ({"seq": "-3"}, "outside the allowed range"),
    ({"batch": "2.5"}, "not a whole number"),
    ({"d_model": "1e9"}, "outside the allowed range"),
    ({"d_model": "nan"}, "not a number"),
    ({"heads": "0"}, "outside the allowed range"),
    ({"seed": "-1"}, "outside the allowed range"),
    ({"dtype": "float8"}, "not one of"),
    ({"dtype": "🙂🙂🙂"}, "not one of"),
    ({"device": "cuda"}, "not available on this server"),
    ({"device": "tpu"}, "not one of"),
    ({"causal": "maybe"}, "neither true nor false"),
    ({"token": "20"}, "outside the allowed range"),
    ({"coord": "-1"}, "outside the allowed range"),
    ({"coord": "x" * 10_000}, "not a number"),
    ({"dtype": "<script>alert(1)</script>"}, "not one of"),
    ({"seq": "**1**"}, "not a number"),
]


@pytest.mark.parametrize("query, says", HOSTILE, ids=[f"{k}={v[:12]}" for q, _ in HOSTILE for k, v in q.items()])
def test_hostile_value_gives_a_notice_and_a_working_page(query, says):
    at = run_page(PAGE, query)
    messages = notices(at)
    assert any(says in m for m in messages), messages
    assert all(len(m) < 400 for m in messages)  # a 10,000-character value is cut, not echoed
    assert len(at.get("vega_lite_chart")) == 4  # the fallback value still draws every figure


PROBLEMS = [
    ({"heads": "7"}, "don't divide"),
    ({"d_model": "1000", "heads": "64"}, "don't divide"),
    ({"batch": "64", "seq": "1024", "d_model": "1024"}, "too big"),
    ({"seq": "200", "d_model": "1024"}, "too much arithmetic"),
    ({"batch": "4", "seq": "256"}, "too much arithmetic"),
]


@pytest.mark.parametrize("query, says", PROBLEMS, ids=["7 heads", "64 into 1000", "huge", "flops", "flops 2"])
def test_impossible_or_too_costly_settings_skip_the_figures(query, says):
    at = run_page(PAGE, query)
    assert any(says in str(e.value) for e in at.error), [str(e.value) for e in at.error]
    assert len(at.metric) == 0 and len(at.get("vega_lite_chart")) == 0
    body = texts(at)
    assert "Heads are channels that get added up" in body  # the essay still reads
    assert "One output number, head by head" in body


@pytest.mark.parametrize("query", [
    {"d_model": "1", "heads": "1", "seq": "1"},
    {"d_model": "3", "heads": "3", "seq": "2", "causal": "true", "dtype": "bfloat16", "token": "1", "coord": "2"},
    {"d_model": "64", "heads": "64", "seq": "3", "batch": "3", "dtype": "float16"},
], ids=["D=1", "D=3 causal bf16", "L=1"])
def test_tiny_and_odd_layers(query):
    at = run_page(PAGE, query)
    assert notices(at) == [] and len(at.get("vega_lite_chart")) == 4
    assert number(at, "Max rel diff") < 0.05


def test_repeated_parameters_use_the_last_one():
    at = run_page(PAGE, {"heads": ["3", "4"], "d_model": "64"})
    assert notices(at) == []
    assert "[1, 4, 20, 16]" in texts(at)


def test_many_bad_values_at_once():
    at = run_page(PAGE, {"batch": "0", "seq": "abc", "dtype": "x", "causal": "2", "token": "999999",
                         "sentence": "ignored here", "scale": "false"})
    assert len(notices(at)) == 5
    assert 0 < number(at, "Max abs diff") < 1e-4  # defaults took over
