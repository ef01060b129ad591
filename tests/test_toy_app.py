"""The sentence page in AppTest: defaults, every control moved, other sentences and sizes from the
URL, and hostile links. Tables are read as the page hands them to Streamlit: numbers, not text."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from core import toy_sentence as toy
from tests.apptest_utils import notices, rerun, run_page, texts, run_page_with_numbers

PAGE = "toy-sentence"
SEED_TOKENS = ["my", "name", "is", "Marcello", "Politi"]
FRAGMENT_KEYS = ("head", "token")


def weight_table(at):
    """The close-up head's weights (query rows × key columns, then Σ row and entropy)."""
    (table,) = [df.value for df in at.dataframe if "Σ row" in getattr(df.value, "columns", [])]
    return table


def weight_tables(at, heads):
    """Every head's weights table, by moving the head picker through 0 … heads − 1."""
    tables = []
    for h in range(heads):
        at.number_input(key="head").set_value(h)
        rerun(at)
        tables.append(weight_table(at).copy())
    return tables


def as_matrix(table):
    """The weights as floats (the table is numeric: no parsing), and the row sums."""
    keys = [c for c in table.columns if c not in ("Σ row", "entropy (bits)")]
    return table[keys].to_numpy(dtype=float), table["Σ row"].to_numpy(dtype=float)


def charts(at):
    return at.get("vega_lite_chart")


def test_defaults_show_every_step_with_probabilities():
    at = run_page_with_numbers(PAGE)
    assert notices(at) == []
    tokens = at.dataframe[0].value
    assert tokens["token"].tolist() == SEED_TOKENS and tokens["id"].tolist() == [3, 4, 2, 0, 1]
    ref = toy.run_toy(SEED_TOKENS, 16, 4, seed=0)
    tables = weight_tables(at, 4)
    for h, table in enumerate(tables):
        w, row_sums = as_matrix(table)
        assert w.shape == (5, 5) and ((w >= 0) & (w <= 1)).all()
        np.testing.assert_allclose(row_sums, 1.0)
        np.testing.assert_allclose(w, ref.pattern[h].numpy(), rtol=0, atol=1e-15)  # core's numbers, every digit
    # embeddings, entropy, all heads' weights, one head close up, the terms of all heads, output
    assert len(charts(at)) == 6
    all_text = texts(at)
    assert "[5, 16] × [4, 16, 4] → [4, 5, 4]" in all_text  # the einsum's shapes, from the tensors
    assert "[4, 5, 4] × [4, 5, 4] → [4, 5, 5]" in all_text
    assert "math.sqrt(4)" in all_text
    assert "concat-vs-sum?d_model=16&heads=4&seed=0&causal=false&seq=5" in all_text
    assert len(at.get("download_button")) >= 8


def _float_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]


@pytest.mark.parametrize("query", [{}, {"causal": "true", "sentence": "the cat sat on the mat"}])
def test_every_table_stays_numeric(query):
    """No table holds numbers as text ("1.0000", "masked"): sorting, copying and downloads get numbers."""
    at = run_page_with_numbers(PAGE, query)
    assert len(at.dataframe) >= 9
    for df in at.dataframe:
        table = df.value
        for c in table.columns:
            values = table[c].dropna()
            if pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
                as_numbers = pd.to_numeric(values, errors="coerce")
                assert as_numbers.isna().all(), f"column {c!r} holds numbers as text: {values.head(3).tolist()}"
                assert not values.isin(["masked", "—"]).any(), c
    numeric = [df.value for df in at.dataframe if _float_columns(df.value)]
    assert len(numeric) >= 7  # embeddings, q/k/v, entropy, weights, terms, z, output


def test_masked_weights_are_zeros_named_in_the_caption():
    at = run_page(PAGE, {"causal": "true", "sentence": "the cat sat on the mat", "head": "1"})
    w, _ = as_matrix(weight_table(at))
    assert (w[np.triu_indices(6, 1)] == 0).all()  # the 0 it is, not NaN, not "masked"
    terms = next(df.value for df in at.dataframe if "a_ij" in df.value.columns)
    assert terms["a_ij"].dtype == np.float64 and (terms.loc[terms["masked"], "a_ij"] == 0).all()
    said = texts(at)
    assert "Masked: the 15 cells right of the diagonal (key j after query i); their weight is exactly 0" in said
    assert "Masked keys are ticked in `masked`" in said


def test_causal_masks_the_upper_triangle():
    at = run_page(PAGE, {"causal": "true", "sentence": "the cat sat on the mat"})
    for table in weight_tables(at, 4):
        w, row_sums = as_matrix(table)
        assert (w[np.triu_indices(6, 1)] == 0).all() and (w[np.tril_indices(6)] > 0).all()
        assert w[0, 0] == 1.0
        np.testing.assert_allclose(row_sums, 1.0)
    assert "masked_fill" in texts(at)


def test_other_sentence_and_sizes_from_the_url():
    at = run_page(PAGE, {"sentence": "the cat saw the dog", "d_model": "32", "heads": "8", "seed": "5", "token": "3"})
    assert notices(at) == []
    tokens = at.dataframe[0].value
    ids = tokens["id"].tolist()
    assert ids[0] == ids[3]  # "the" twice, one id
    all_text = texts(at)
    assert "[5, 32] × [8, 32, 4] → [8, 5, 4]" in all_text
    assert "Query token **3**: “the”." in all_text
    ref = toy.run_toy(toy.tokenize("the cat saw the dog"), 32, 8, seed=5)
    np.testing.assert_allclose(as_matrix(weight_tables(at, 8)[7])[0], ref.pattern[7].numpy(), atol=1e-15)


def test_each_control_moves_the_page():
    at = run_page(PAGE)
    at.text_input(key="sentence").input("hello there world").run()
    assert at.dataframe[0].value["token"].tolist() == ["hello", "there", "world"]
    assert as_matrix(weight_table(at))[0].shape == (3, 3)

    before = weight_table(at).copy()
    at.number_input(key="seed").set_value(9)
    rerun(at)
    assert not weight_table(at).equals(before)

    at.number_input(key="d_model").set_value(8)
    at.number_input(key="heads").set_value(2)
    rerun(at)
    assert "[3, 8] × [2, 8, 4] → [2, 3, 4]" in texts(at)

    at.number_input(key="head").set_value(1)
    at.toggle(key="causal").set_value(True)
    rerun(at)
    assert "Head 1's weights as numbers" in texts(at)
    assert as_matrix(weight_table(at))[0][0, 2] == 0.0

    at.toggle(key="scale").set_value(False)
    rerun(at)
    assert "math.sqrt" not in texts(at) and "scale is switched off" in texts(at)

    at.number_input(key="token").set_value(2)
    rerun(at)
    assert "Query token **2**: “world”." in texts(at)
    assert notices(at) == []


def test_scale_off_sharpens_and_the_page_says_by_how_much():
    at = run_page(PAGE, {"d_model": "64", "heads": "1", "scale": "false"})
    metrics = {m.label: m.value for m in at.metric}
    raw, scaled = float(metrics["Spread of raw q·k (std)"]), float(metrics["Spread after ÷√d_k"])
    assert raw == pytest.approx(8 * scaled, rel=1e-2)
    h_scaled = float(metrics["Mean row entropy, ÷√d_k"].split()[0])
    h_raw = float(metrics["Mean row entropy, no scale"].split()[0])
    assert h_raw < h_scaled


@pytest.mark.parametrize("sentence", ["", "   ", "\u202e\u202c"])
def test_no_sentence_gives_a_message_and_a_working_page(sentence):
    at = run_page(PAGE, {"sentence": sentence, "causal": "true"})
    assert any("empty" in n or "no visible characters" in n for n in notices(at))
    assert charts(at) == [] or len(charts(at)) == 0
    assert len(at.info) >= 5  # each figure's place says why it is missing
    at.text_input(key="sentence").input("back to work").run()
    assert not at.exception and as_matrix(weight_table(at))[0].shape == (3, 3)


def test_one_token():
    at = run_page(PAGE, {"sentence": "hello", "token": "3"})
    assert any("only one token" in n for n in notices(at))
    assert any("attend to itself" in i.value for i in at.info)
    for table in weight_tables(at, 4):
        w, row_sums = as_matrix(table)
        assert w.tolist() == [[1.0]]


def test_emoji_scripts_and_markup_are_tokens_not_markup():
    sentence = "<b>hi</b> **bold** $x$ 👩‍💻 我的 🇮🇹"
    at = run_page(PAGE, {"sentence": sentence, "token": "9"})
    tokens = at.dataframe[0].value["token"].tolist()
    assert tokens[:4] == ["<", "b", ">", "hi"] and "👩\u200d💻" in tokens and "🇮🇹" in tokens
    assert "我" in tokens and "的" in tokens
    assert "Query token **9**: “\\*”." in texts(at)  # the token "*", escaped: not emphasis


def test_ten_thousand_characters_are_cut_to_the_caps():
    at = run_page(PAGE, {"sentence": "word " * 2000})
    said = " ".join(notices(at))
    assert "10,000 characters" in said and "first 24" in said
    assert len(at.dataframe[0].value) == 24
    assert as_matrix(weight_table(at))[0].shape == (24, 24)


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"heads": "3"}, "don't divide"),
        ({"heads": "0"}, "heads=0"),
        ({"d_model": "1000"}, "d_model=1000"),
        ({"d_model": "abc"}, "not a number"),
        ({"seed": "-1"}, "seed=-1"),
        ({"token": "99"}, "token=99"),
        ({"token": "7"}, "no token at position 7"),
        ({"token": "inf"}, "not a finite number"),
        ({"head": "abc"}, "head=abc"),
        ({"head": "-2"}, "head=-2"),
        ({"head": "9"}, "There is no head 9"),
        ({"causal": "maybe"}, "neither true nor false"),
        ({"scale": "2.5"}, "neither true nor false"),
    ],
)
def test_hostile_values_give_a_readable_message(query, expected):
    at = run_page(PAGE, query)
    assert any(expected in n for n in notices(at)), notices(at)
    assert "Traceback" not in texts(at)


# ---- sentences derived from the numbers ------------------------------------------------------------


def _scale_text(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**What this sentence shows.**"))


@pytest.mark.parametrize("d_k", [16, 32, 64])
def test_the_scale_sentence_says_what_was_measured(d_k):
    """One head of width d_k = D. The old page said "the effect is mild" here (1.56 → 0.18 bits at 16)."""
    at = run_page(PAGE, {"d_model": str(d_k), "heads": "1"})
    assert "mild" not in texts(at)
    said = _scale_text(at)
    effect = toy.scale_effect(toy.score_spread(toy.run_toy(SEED_TOKENS, d_k, 1)))
    assert effect.sentence in said and "strong sharpening" in said
    metrics = {m.label: m.value for m in at.metric}
    assert f"from {metrics['Mean row entropy, ÷√d_k'].split()[0][:-1]}" in said  # the same number, rounded


def test_at_d_k_one_no_head_is_said_to_move():
    """heads = D = 16 gives L = 1: both settings coincide, so no "every head moves left"."""
    at = run_page(PAGE, {"heads": "16"})
    said = texts(at)
    assert "moves left" not in said and "move left" not in said
    assert "coincide for every head" in said and "√1 = 1" in _scale_text(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Mean row entropy, ÷√d_k"] == metrics["Mean row entropy, no scale"]


def test_default_scale_sentence_and_chart_caption():
    at = run_page(PAGE)
    said = texts(at)
    assert "At d_k = 4, leaving out the scale lowers the mean row entropy" in said
    assert "Without the scale every head moves left" in said


# ---- one index convention, one meaning per symbol --------------------------------------------------


ONE_BASED = [
    re.compile(r"\\sum_\{h\s*=\s*1\}"), re.compile(r"z\^\{?1\}?\s*\\(?:dots|ldots|cdots)"),
    re.compile(r"\(h\s*[−-]\s*1\)\s*L"), re.compile(r"heads? 1 (?:to|…|\.\.\.) H\b"),
]


@pytest.mark.parametrize("query, heads", [({}, 4), ({"d_model": "32", "heads": "8", "head": "7"}, 8),
                                          ({"heads": "1", "d_model": "8"}, 1)])
def test_heads_count_from_zero_everywhere(query, heads):
    at = run_page(PAGE, query)
    said = texts(at)
    for pattern in ONE_BASED:
        assert not pattern.search(said), pattern.pattern
    # no label names a head H (that would be 1-based counting): not "Head 4", "head 4", "h4", "z^{4}"
    # (the general formula [z^0 z^1 ⋯ z^{H−1}] of section 7 names z^1, so that check needs H > 1)
    assert not re.search(rf"\b[Hh]ead {heads}\b|\bh{heads}\b", said)
    assert heads == 1 or not re.search(rf"z\^\{{{heads}\}}", said)
    for df in at.dataframe:
        table = df.value
        if "head" in table.columns:
            assert set(table["head"]) == set(range(heads))
        assert not any(re.fullmatch(rf"h{heads} l\d+", str(c)) for c in table.columns)
    if heads > 1:
        assert f"heads 0 to {heads - 1}" in said


def test_einsum_letters_do_not_collide_on_the_page():
    """e is Euler's number and k the key vectors (and d_k): neither names an einsum axis; "·" only
    multiplies (token labels use "position:token", columns "h2 l0")."""
    at = run_page(PAGE)
    said = texts(at)
    specs = re.findall(r"einsum\(\"([^\"]+)\"", said) + re.findall(r"`'([a-z,>-]+)'`", said)
    assert len(specs) >= 5
    for spec in specs:
        assert not set(spec) & {"e", "k", "s"}, spec
    labels = [c for df in at.dataframe for c in df.value.columns] + [
        str(i) for df in at.dataframe for i in df.value.index]
    assert not any("·" in str(label) and not str(label).startswith("a·v") for label in labels)


def test_the_page_script_is_prose_controls_and_calls():
    """Chart construction lives in ui/figures/toy_sentence.py: the page imports no Altair, and the
    first thing past the imports is the essay, not chart code."""
    from tests.apptest_utils import ROOT

    source = (ROOT / "pages" / f"{PAGE}.py").read_text()
    assert "import altair" not in source and "alt." not in source
    assert "@st.fragment" in source and source.count("@st.fragment") == 2  # the head and token pickers
