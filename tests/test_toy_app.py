"""The sentence page in AppTest: defaults, every control moved, other sentences and sizes from the
URL, and hostile links. The weights tables are read as displayed (4-decimal text, "masked")."""

from __future__ import annotations

import numpy as np
import pytest

from core import toy
from tests.apptest_utils import notices, rerun, run_page, texts

PAGE = "toy-sentence"
SEED_TOKENS = ["my", "name", "is", "Marcello", "Politi"]


def weight_tables(at):
    """The per-head weights tables (query rows × key columns, then Σ row and entropy)."""
    return [df.value for df in at.dataframe if "Σ row" in getattr(df.value, "columns", [])]


def as_matrix(table):
    """Displayed weights → floats, with NaN where the page says "masked"."""
    keys = [c for c in table.columns if c not in ("Σ row", "entropy")]
    cells = table[keys].map(lambda s: np.nan if s == "masked" else float(s))
    return cells.to_numpy(dtype=float), table["Σ row"].map(float).to_numpy()


def charts(at):
    return at.get("vega_lite_chart")


def test_defaults_show_every_step_with_probabilities():
    at = run_page(PAGE)
    assert notices(at) == []
    tokens = at.dataframe[0].value
    assert tokens["token"].tolist() == SEED_TOKENS and tokens["id"].tolist() == [3, 4, 2, 0, 1]
    tables = weight_tables(at)
    assert len(tables) == 4  # one per head
    for table in tables:
        w, row_sums = as_matrix(table)
        assert w.shape == (5, 5) and not np.isnan(w).any()
        assert ((w >= 0) & (w <= 1)).all()
        np.testing.assert_allclose(row_sums, 1.0)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=5 * 0.5e-4)  # rounded cells still add up
    # the numbers on screen are core's numbers
    ref = toy.run_toy(SEED_TOKENS, 16, 4, seed=0)
    np.testing.assert_allclose(as_matrix(tables[2])[0], ref.pattern[2].numpy(), atol=0.5e-4)
    # 4 weight maps, 4 term maps, embeddings, entropy, output
    assert len(charts(at)) == 11
    all_text = texts(at)
    assert "[5, 16] × [4, 16, 4] → [4, 5, 4]" in all_text  # the einsum's shapes, from the tensors
    assert "[4, 5, 4] × [4, 5, 4] → [4, 5, 5]" in all_text
    assert "math.sqrt(4)" in all_text
    assert "concat-vs-sum?d_model=16&heads=4&seed=0&causal=false&seq=5" in all_text
    assert len(at.get("download_button")) >= 8


def test_causal_masks_the_upper_triangle():
    at = run_page(PAGE, {"causal": "true", "sentence": "the cat sat on the mat"})
    for table in weight_tables(at):
        w, row_sums = as_matrix(table)
        upper = np.triu_indices(6, 1)
        assert np.isnan(w[upper]).all()  # shown as "masked", not as 0.0000
        assert not np.isnan(w[np.tril_indices(6)]).any()
        assert w[0, 0] == 1.0
        np.testing.assert_allclose(row_sums, 1.0)
    assert "masked_fill" in texts(at)


def test_other_sentence_and_sizes_from_the_url():
    at = run_page(PAGE, {"sentence": "the cat saw the dog", "d_model": "32", "heads": "8", "seed": "5", "token": "3"})
    assert notices(at) == []
    tokens = at.dataframe[0].value
    ids = tokens["id"].tolist()
    assert ids[0] == ids[3]  # "the" twice, one id
    assert len(weight_tables(at)) == 8
    all_text = texts(at)
    assert "[5, 32] × [8, 32, 4] → [8, 5, 4]" in all_text
    assert "Query token **3**: “the”." in all_text
    ref = toy.run_toy(toy.tokenize("the cat saw the dog"), 32, 8, seed=5)
    np.testing.assert_allclose(as_matrix(weight_tables(at)[7])[0], ref.pattern[7].numpy(), atol=0.5e-4)


def test_each_control_moves_the_page():
    at = run_page(PAGE)
    at.text_input(key="sentence").input("hello there world").run()
    assert at.dataframe[0].value["token"].tolist() == ["hello", "there", "world"]
    assert as_matrix(weight_tables(at)[0])[0].shape == (3, 3)

    before = weight_tables(at)[0].copy()
    at.number_input(key="seed").set_value(9)
    rerun(at)
    assert not weight_tables(at)[0].equals(before)

    at.number_input(key="d_model").set_value(8)
    at.number_input(key="heads").set_value(2)
    rerun(at)
    assert len(weight_tables(at)) == 2 and "[3, 8] × [2, 8, 4] → [2, 3, 4]" in texts(at)

    at.toggle(key="causal").set_value(True)
    rerun(at)
    assert np.isnan(as_matrix(weight_tables(at)[1])[0][0, 2])

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
    assert not at.exception and len(weight_tables(at)) == 4


def test_one_token():
    at = run_page(PAGE, {"sentence": "hello", "token": "3"})
    assert any("only one token" in n for n in notices(at))
    assert any("attend to itself" in i.value for i in at.info)
    for table in weight_tables(at):
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
    assert as_matrix(weight_tables(at)[0])[0].shape == (24, 24)


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
        ({"causal": "maybe"}, "neither true nor false"),
        ({"scale": "2.5"}, "neither true nor false"),
    ],
)
def test_hostile_values_give_a_readable_message(query, expected):
    at = run_page(PAGE, query)
    assert any(expected in n for n in notices(at)), notices(at)
    assert "Traceback" not in texts(at)
