"""The concat-versus-sum page through AppTest: defaults, every control, every precision, hostile links."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from tests.apptest_utils import ROOT, notices, rerun, run_page, texts

PAGE = "concat-vs-sum"
CHARTS = 5  # the reshape right and wrong, precision dots, the waterfall, W_O twice


def metric(at, label_start: str) -> str:
    found = [m.value for m in at.metric if m.label.startswith(label_start)]
    assert len(found) == 1, f"expected one metric starting {label_start!r}, got {[m.label for m in at.metric]}"
    return found[0]


def number(at, label_start: str) -> float:
    return float(metric(at, label_start))


@pytest.fixture(scope="module")
def default_page():
    return run_page(PAGE, numbers=True)


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
    assert len(at.get("vega_lite_chart")) == CHARTS
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
    assert any("out[s=3, j=100]" in str(c.proto.spec) for c in at.get("vega_lite_chart"))
    first = metric(at, "Concat path computed")
    at.number_input(key="coord").set_value(5)
    rerun(at)
    assert metric(at, "Concat path computed") != first
    rounded = float(metric(at, "Rounded head terms, summed in float64"))
    product = float(metric(at, "Float64 product of the same inputs"))
    assert float(metric(at, "Concat path computed")) == pytest.approx(product, rel=1e-5, abs=1e-6)
    assert rounded == pytest.approx(product, rel=1e-5, abs=1e-6)


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
    assert len(at.get("vega_lite_chart")) == CHARTS  # the fallback value still draws every figure


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
    assert notices(at) == [] and len(at.get("vega_lite_chart")) == CHARTS
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


# ---- issue 10: one index convention, two named numbers, what PyTorch runs ----------------------

ONE_BASED = [  # 1-based head, row and sum ranges the page used to print
    re.compile(r"\(h\s*(-|−|\{-\})\s*1\)\s*L"),       # (h−1)L+1 … hL
    re.compile(r"h\s*=\s*1\s*\}?\s*\^\s*\{?\s*H\b"),   # \sum_{h=1}^{H}
    re.compile(r"[il]\s*=\s*1\s*\}?\s*\^"),            # \sum_{i=1}^{D}, \sum_{l=1}^{L}
    re.compile(r"\[\s*(\\,)?\s*z\^\{?1\b"),                # [z^{1} … : the first head is z^{0}
    re.compile(r"z\^\{?H\}?(?![-−{\w])"),                # … z^{H}]: the last head is z^{H-1}
    re.compile(r"\(h\s*\{?\+\}?\s*1\)\s*L"),           # hL … (h+1)L−1: right, but not the page's form
    re.compile(r"W_O\^\{?1\}?\b"),                     # [W_O^1 … W_O^H]
]


@pytest.mark.parametrize("query", [{}, {"heads": "4", "d_model": "64", "seq": "6"}, {"dtype": "bfloat16", "causal": "true"}],
                         ids=["defaults", "H=4 D=64", "bf16 causal"])
def test_every_index_counts_from_zero(query):
    body = texts(run_page(PAGE, query))
    for pattern in ONE_BASED:
        assert not pattern.search(body), f"{pattern.pattern!r}: {pattern.search(body).group(0)!r}"
    assert r"\sum_{h=0}^{H-1}" in body and "z^{0}" in body and "hL \\dots hL{+}L{-}1" in body


def test_numeric_tables_stay_numeric(default_page):
    """Every column of numbers on the page is a number column (sortable, downloads as numbers)."""
    frames = [el.value for el in default_page.dataframe]
    assert len(frames) >= 5
    for df in frames:
        for col in df.columns:
            if col in {"dtype", "head", "closer", "call", "inputs", "output", "what it is"}:
                continue  # labels
            assert pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col]), (col, df[col].dtype)


def test_the_two_reference_numbers_have_different_names(default_page):
    labels = [m.label for m in default_page.metric]
    assert "Rounded head terms, summed in float64" in labels
    assert "Float64 product of the same inputs" in labels
    body = texts(default_page)
    assert "added exactly" not in body and "exact value of the same sum" not in body


def test_pytorch_section_reports_the_calls_it_recorded(default_page):
    body = texts(default_page)
    assert "2 `linear` calls and 1 `scaled_dot_product_attention` call" in body
    assert "in-projection bias; this one has none" in body
    calls = [el.value for el in default_page.dataframe if "call" in el.value.columns][0]
    assert list(calls["call"]) == ["linear", "scaled_dot_product_attention", "permute", "reshape", "linear"]
    assert "fuses" not in body  # the old, unchecked description


def test_wrong_reshape_is_shown_and_measured(default_page):
    body = texts(default_page)
    assert "z.reshape(B, S, H * L)" in body and "Why transpose before the reshape" in body
    off = re.search(r"its output is\s+off by \*\*([0-9.e+-]+)\*\*", body)
    assert off and float(off.group(1)) > 0.1  # a mistake moves the outputs by about their own size


@pytest.mark.parametrize("query", [{"seq": "1"}, {"heads": "1"}], ids=["S=1", "H=1"])
def test_wrong_reshape_is_harmless_only_without_two_axes(query):
    body = texts(run_page(PAGE, query))
    assert "the two agree exactly" in body


def test_transformerlens_paragraph(default_page):
    body = texts(default_page)
    assert "hook_result" in body and "use_attn_result=True" in body and "off by default" in body


def test_next_page_link_is_guarded(default_page):
    """Alone under AppTest there is no navigation: the page still runs and names the next page."""
    assert any("What the sum buys:" in str(md.value) for md in default_page.markdown)


# ---- issue 13: the pickers live in a fragment; a shrinking range says so ----------------------


def test_one_number_section_is_a_fragment():
    source = (ROOT / "pages" / "concat-vs-sum.py").read_text()
    assert re.search(r"@st\.fragment\s+def one_number_section", source)
    assert "import altair" not in source


def test_a_picker_past_a_shorter_sequence_moves_with_a_notice():
    at = run_page(PAGE, {"token": "15", "coord": "500"})
    assert notices(at) == []
    at.number_input(key="seq").set_value(10)
    at.number_input(key="d_model").set_value(64)
    rerun(at)
    said = " ".join(notices(at))
    assert "`token=15` is past the end of its new range 0–9" in said
    assert "`coord=500` is past the end of its new range 0–63" in said
    assert at.number_input(key="token").value == 9 and at.number_input(key="coord").value == 63
    assert any("out[s=9, j=63]" in str(c.proto.spec) for c in at.get("vega_lite_chart"))


def test_link_box_carries_every_control():
    at = run_page(PAGE, {"token": "4", "coord": "9", "heads": "4"})
    link = [str(c.value) for c in at.code if "?" in str(c.value)][-1]
    for part in ("token=4", "coord=9", "heads=4", "seq=20", "dtype=float32"):
        assert part in link


# ---- issue 19: one spelling per page, each ui module one job ------------------------------------


def test_one_spelling_and_one_job_per_module():
    """core/concat_vs_sum.py computes, ui/views caches the calls, ui/figures only builds chart specs,
    ui/prose words the measured facts, and the page imports its formatters from ui/format.py."""
    assert not (ROOT / "core" / "concat_sum.py").exists()
    figures = (ROOT / "ui" / "figures" / "concat_vs_sum.py").read_text()
    assert "import streamlit" not in figures and "cache_data" not in figures and "from core" not in figures
    views = (ROOT / "ui" / "views" / "concat_vs_sum.py").read_text()
    assert views.count("@st.cache_data(") == 8 and "alt." not in views
    prose = (ROOT / "ui" / "prose" / "concat_vs_sum.py").read_text()
    assert "import streamlit" not in prose
    page = (ROOT / "pages" / "concat-vs-sum.py").read_text()
    assert "from ui.format import" in page
    assert not re.search(r"^def (sci|count|shape)\(", page, flags=re.M)
