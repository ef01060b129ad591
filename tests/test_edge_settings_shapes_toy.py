"""The shape-table and sentence pages at edge settings (issue 18 §2, items 1, 3, 5, 8, 11, 12).

Each page is rendered at H = 1, S = 1, B = 1, D = H, one-token and repeated-token sentences,
emoji and markup, with and without the causal mask, and everything it wrote is scanned
(``tests.edge_scan``) for plurals after one, "−0", "0×", "X against X" and 1-based counters.
Each item the issue found has a test of its own that fails on the old wording.
"""

from __future__ import annotations

import pytest

from tests.apptest_utils import run_page, run_page_with_numbers
from tests.edge_scan import assert_clean, page_text, scan_text

TINY = {"batch": "1", "seq": "5", "vocab": "10", "d_model": "16", "heads": "4"}
ONES = {"batch": "1", "seq": "1", "vocab": "1", "d_model": "1", "heads": "1"}

SHAPES_GRID = [
    {"heads": "1"},
    {"heads": "2"},  # the FLOP totals round alike (10.5 M) though they differ
    {"seq": "1"},
    {"batch": "3", "seq": "1", "heads": "1"},
    ONES,
    {**ONES, "causal": "true"},
    {"d_model": "8", "heads": "8"},  # D = H: L = 1
    {"causal": "true", "seed": "3", "step": "5"},  # the real-values section is hidden at these sizes
    {**TINY, "d_model": "4", "heads": "4", "causal": "true", "step": "8"},
    {**TINY, "seq": "1", "causal": "true", "step": "6"},
    {"batch": "2", "seq": "1", "vocab": "3", "d_model": "2", "heads": "2", "step": "8′", "at_batch": "1"},
    # grouped-query attention: multi-query, one head, groups of two, a published model, one token of context
    {"kv_heads": "1"},
    {"heads": "1", "kv_heads": "1", "context": "1"},
    {"heads": "2", "kv_heads": "1", "batch": "3"},
    {**TINY, "kv_heads": "2", "step": "5b", "at_head": "3"},
    {**TINY, "kv_heads": "1", "step": "5c", "causal": "true"},
    {**ONES, "kv_heads": "1", "context": "1"},
    {"model": "falcon-7b", "context": "1"},
    {"model": "gemma-2b", "dtype": "bfloat16"},
    {"model": "gpt2-small"},
]
TOY_GRID = [
    {"sentence": "hello"},
    {"sentence": "hello", "causal": "true", "heads": "1"},
    {"sentence": "a a a", "causal": "true"},
    {"sentence": "a b", "causal": "true", "token": "1", "head": "1"},
    {"d_model": "4", "heads": "4"},  # D = H: d_k = 1
    {"d_model": "1", "heads": "1", "sentence": "a b", "causal": "true"},
    {"sentence": "the cat sat on the mat the cat", "heads": "2", "d_model": "8"},
    {"sentence": "<b>hi</b> **bold** $x$ 👩‍💻 我的 🇮🇹", "token": "9"},
    {"causal": "true", "token": "4", "head": "3"},
    # grouped-query attention (issue 20): one K/V head, one query head, one token, groups of 2
    {"kv_heads": "1"},
    {"kv_heads": "2", "causal": "true", "scale": "false"},
    {"kv_heads": "1", "sentence": "hello"},
    {"kv_heads": "1", "sentence": "a a a", "causal": "true"},
    {"kv_heads": "1", "heads": "1", "sentence": "hello"},
    {"kv_heads": "1", "d_model": "2", "heads": "2", "sentence": "a b"},  # d_k = 1, groups of 2
    {"kv_heads": "4", "heads": "8", "d_model": "8", "causal": "true"},
]


def _id(query: dict) -> str:
    return "&".join(f"{k}={v}" for k, v in query.items()) or "defaults"


@pytest.mark.parametrize("query", SHAPES_GRID, ids=_id)
def test_shapes_reads_right_at_edge_settings(query):
    assert_clean(run_page("shapes", query, timeout=120))


@pytest.mark.parametrize("query", TOY_GRID, ids=_id)
def test_toy_sentence_reads_right_at_edge_settings(query):
    assert_clean(run_page("toy-sentence", query, timeout=120))


# ---- the scan is not vacuous: the old wording of each item is caught, the new one is not --------


@pytest.mark.parametrize("old, rule", [
    ("The sentence as 1 tokens: position in the sentence", "plural after one"),  # item 8
    ("The vocabulary: V = 1 distinct tokens, sorted", "plural after one"),  # item 8
    ("each head works in $L = D/H = 1$ dimensions; that", "plural after one"),
    ("both do 1 multiplications and 0 additions", "plural after one"),
    ("The FLOP column seems to charge the additive ending extra (10.5 M against 10.5 M), but", "equal pair described as different"),  # item 5
    ("holds (40 KiB against 40 KiB), the long bar below", "equal pair described as different"),  # item 5
    ("5,232,640 against 5,232,640 additions", "equal pair described as different"),
    ("lowers the mean row entropy from 0.86 to 0.86 bits", "equal pair described as different"),
    ("got: [10240, 1].*. Attention needs only", "doubled full stop"),  # item 12
    ("per_head_sum was -0.000 (-0.000–-0.000) ms a call faster", "negative zero"),
    ("the largest gap is 0.0 times float64's rounding unit", "zero multiple"),
    ("0× smaller in every format", "zero multiple"),
    ("1.649 elsewhere: 1.0× less", "one-times difference"),
    (r"\sum_{h=1}^{H} z^{h} W_O^{h}", "1-based counter"),
])
def test_the_scan_catches_the_old_wording(old, rule):
    assert rule in {f.rule for f in scan_text(old)}, old


@pytest.mark.parametrize("new", [
    "The sentence as 1 token: position in the sentence", "V = 5 distinct tokens", "$D - 1$ additions",
    "(320 KiB against 40 KiB)", "(10,496,000 against 10,485,760)", "got: [10240, 1]`. Attention",
    "a gap of 1.0e-05 at 2.0e-01", "heads 0 to 3", "1×20×512", "scores / math.sqrt(1)\nweights = scores",
    r"\sum_{h=0}^{H-1}", "1 is the only id",
])
def test_the_scan_passes_the_new_wording(new):
    assert scan_text(new) == []


# ---- issue 18, item by item ---------------------------------------------------------------------


def test_item_1_one_hot_shape_is_read_from_core():
    at = run_page_with_numbers("toy-sentence", {"sentence": "the cat sat on the mat the cat", "heads": "2", "d_model": "8"})
    labels = [e.label for e in at.expander]
    assert "The one-hot rows of this sentence, [8, 5] = [S, V]" in labels, labels  # was [8, 6]
    one_hot = next(d.value for d in at.dataframe if d.value.shape == (8, 5))
    assert (one_hot.sum(axis=1) == 1).all()


def test_item_8_one_token_with_the_mask_counts_right_and_mentions_no_masked_cells():
    at = run_page("toy-sentence", {"causal": "true", "sentence": "hello"})
    said = page_text(at)
    assert "The sentence as 1 token:" in said and "V = 1 distinct token," in said
    assert "1 tokens" not in said and "distinct tokens," not in said
    assert "Masked: the 0 cells" not in said and "Masked:" not in said
    assert "grey ×" not in said and "Grey ×" not in said  # nothing is masked, so no grey cells
    assert "Masked keys are ticked" not in said and "hides no key from it" in said


def test_item_8_one_masked_cell_is_singular():
    said = page_text(run_page("toy-sentence", {"causal": "true", "sentence": "a b"}))
    assert "Masked: the one cell right of the diagonal (key j after query i); its weight is exactly 0" in said
    assert "Grey × cells are masked" in said


def test_item_3_the_einsum_paragraph_claims_no_measurement():
    said = page_text(run_page("shapes"))
    assert "measures it at that speed" not in said and "runs as the same single product" not in said
    assert "a single matrix product" in said and "The *Timing* page measures the endings on this server" in said


def test_item_5_one_head_has_no_surplus_and_no_long_bar():
    at = run_page("shapes", {"heads": "1"})
    said = page_text(at)
    assert "surplus" not in said and "long bar" not in said and "seems to charge" not in said
    assert "The FLOP column charges both endings the same, 10.5 M" in said
    assert "as large as step 8's output (40 KiB each)" in said and "no bar is longer" in said


def test_item_5_totals_that_round_alike_are_printed_whole():
    said = page_text(run_page("shapes", {"heads": "2"}))
    assert "(10,496,000 against 10,485,760)" in said and "10.5 M against 10.5 M" not in said
    assert "The surplus, 10.2 k, is exactly step 9′'s additions, counted twice." in said
    assert "8′ and 9′ do the last addition of each sum outside" in said


def test_item_11_the_torch_calls_count_from_zero():
    at = run_page_with_numbers("shapes", {"causal": "true"})
    ops = next(d.value for d in at.dataframe if "order" in d.value.columns)
    assert ops["order"].tolist() == list(range(len(ops)))


def test_item_12_the_quoted_torch_error_ends_once():
    said = page_text(run_page("shapes", {"heads": "1"}))
    assert ".*." not in said and "[10240, 1]`." in said


def test_item_12_causal_at_default_sizes_acts_and_stays_in_the_link():
    at = run_page_with_numbers("shapes", {"causal": "true"})
    assert at.toggle(key="causal").value is True
    said = page_text(at)
    assert "**The causal mask is on**, so step 6 makes 3 more torch calls" in said
    link = next(c.value for c in at.code if "?" in c.value and "seq=" in c.value)
    assert "causal=true" in link
    ops = next(d.value for d in at.dataframe if "order" in d.value.columns)
    assert "masked_fill" in set(ops["torch call"])


def test_item_12_hidden_section_settings_stay_in_the_link_with_a_word():
    at = run_page("shapes", {"seed": "3", "step": "5", "scale": "false"})
    link = next(c.value for c in at.code if "?" in c.value and "seq=" in c.value)
    assert "seed=3" in link and "step=5" in link and "scale=false" in link
    assert any("`seed=3`, `step=5` and `scale=false`" in i.value and "They stay in the link" in i.value
               for i in at.info)


# ---- relatives found at the same settings -------------------------------------------------------


def test_one_head_says_the_posts_slip_is_no_slip():
    said = page_text(run_page("shapes", {"heads": "1"}))
    assert "With one head, as here, that is all of them" in said
    assert "The layer computes all $H$ heads at once" not in said


def test_all_ones_the_reversed_keys_happen_to_be_right():
    said = page_text(run_page("shapes", {**ONES, "causal": "true"}))
    assert "a silent bug" not in said and "every axis has length 1" in said
    assert "1 multiplication and 0 additions" in said
    assert "there is no later key, so here it overwrites nothing" in said


def test_repeated_tokens_say_why_the_scale_changes_nothing():
    said = page_text(run_page("toy-sentence", {"sentence": "a a a"}))
    assert "That is an even spread over the visible keys: within each row every key scores alike" in said


def test_one_head_toy_page_speaks_of_one_head():
    said = page_text(run_page("toy-sentence", {"heads": "1", "d_model": "8", "sentence": "hello"}))
    assert "Every output is bitwise identical between the two endings: with one head" in said
    assert "the heads are column blocks" not in said and "With one head, its block is the whole" in said
    assert "of the product, head 0" in said and "all heads:" not in said


def test_hostile_hidden_settings_are_shown_inert_and_kept():
    at = run_page("shapes", {"seed": "a" * 10_000, "step": "`x`\n**b** $y$"})
    note = next(i.value for i in at.info if "This link also sets" in i.value)
    assert "a" * 41 not in note and "\n" not in note and "`x`" not in note
    link = next(c.value for c in at.code if "?" in c.value and "seq=" in c.value)
    assert "step=%60x%60" in link
