"""The concat-versus-sum page at edge settings: every sentence agrees with the numbers beside it.

Issue 18 found sentences that the numbers contradicted at settings other than the defaults: at
H = 1 "the worst ratio here is 0.00e+00 … the denominator is just tiny", "between 0.00 ε and
0.00 ε", "0× … smaller in every format", "The 1 head term, each … make", "Of the 1 head, 0 push",
"H = 1 product of L = 512 terms each"; at bfloat16, 16 heads, D = 256 a gap of ~80 % of the
layer's error called "smaller in every format, so picking an ending is not where precision is
lost" while the sum path's worst error was 34 % larger. Two kinds of test here: the sentence
writers of ``ui.prose.concat_vs_sum`` fed the numbers of those settings (fast), and the page
rendered by AppTest at a grid of edge settings with every rendered text scanned for the patterns
that gave those sentences away.
"""

from __future__ import annotations

import re

import pytest

from tests.apptest_utils import run_page, texts
from tests.edge_scan import assert_clean
from ui.prose import concat_vs_sum as prose

PAGE = "concat-vs-sum"

# ---- the sentence writers, fed the numbers of the settings the issue named -----------------------


def _row(dtype: str, eps: float, max_rel: float, layer: float | None, concat_err: float | None,
         sum_err: float | None, **extra) -> dict:
    return {"dtype": dtype, "eps": eps, "max_rel": max_rel, "max_abs": max_rel * 1.5,
            "eps_units": max_rel / eps, "layer_err_rel": layer, "concat_err_rel": concat_err,
            "sum_err_rel": sum_err, **extra}


# What the page measured at dtype=bfloat16&heads=16&d_model=256 (issue 18, item 7).
ITEM_7 = [
    _row("float64", 2.22e-16, 9.6e-16, None, 5e-16, 6e-16),
    _row("float32", 1.19e-07, 2.8e-07, 2.96e-07, 2.96e-07, 1.31e-07),
    _row("float16", 9.77e-04, 2.9e-04, 3.41e-04, 3.08e-04, 3.39e-04),
    _row("bfloat16", 7.81e-03, 5.2e-03, 6.26e-03, 2.58e-03, 3.46e-03),
]


def test_a_gap_near_the_layers_error_is_not_called_smaller():
    text = prose.precision_summary(ITEM_7, heads=16)
    assert "smaller in every format" not in text and "not where precision is lost" not in text
    assert "comparable to the layer's own error in float32, float16 and bfloat16" in text
    # … and where one ending is measurably less accurate, the page says which and by how much.
    assert "In bfloat16 the sum path is measurably less accurate" in text
    assert "34% larger than the concat path's (3.46e-03 against 2.58e-03)" in text


def test_a_gap_far_below_the_layers_error_is_called_much_smaller():
    rows = [_row(d, e, e * 0.5, e * 40, e * 20, e * 20.5) for d, e in
            (("float32", 1.19e-07), ("float16", 9.77e-04), ("bfloat16", 7.81e-03))]
    text = prose.precision_summary(rows, heads=8)
    assert "much smaller (under 0.1×) in every format, so picking an ending is not where precision is lost" in text
    assert "neither ending's worst error is more than 10% above the other's" in text


def test_identical_endings_give_no_range_of_zeros_and_no_zero_ratio():
    rows = [dict(r, max_rel=0.0, max_abs=0.0, eps_units=0.0) for r in ITEM_7]
    text = prose.precision_summary(rows, heads=1)
    assert "0.00 ε" not in text and "0×" not in text and "smaller in every format" not in text
    assert "the same bits in every format (one head: the two endings are one computation)" in text


def test_equal_gaps_are_not_written_as_a_range():
    rows = [dict(r, eps_units=0.5) for r in ITEM_7]
    text = prose.precision_summary(rows, heads=4)
    assert "is 0.50 ε in every format" in text and "from 0.50 ε" not in text


@pytest.mark.parametrize("heads, up, down", [(1, 0, 1), (1, 1, 0), (8, 0, 8), (8, 1, 7), (3, 1, 1)])
def test_the_waterfall_sentence_counts_heads_in_words_that_fit(heads, up, down):
    wf = {"rounded_terms_summed": -0.307036549, "float64_product": -0.307036557, "rounding_in_terms": 8.04e-09,
          "concat_minus_sum": 0.0, "ulps_apart": 0.0, "ulp": 2.98e-08, "heads_up": up, "heads_down": down}
    text = prose.one_number(wf, heads, "float32")
    for wrong in ("The 1 head term", "each already rounded to float32 by the layer and then added in float64, make",
                  "Of the 1 head", "0 push", "0 pull", "1 push ", "1 pull "):
        if heads == 1 or wrong in {"0 push", "0 pull", "1 push ", "1 pull "}:
            assert wrong not in text, (wrong, text)
    if heads == 1:
        assert "The one head term" in text and "nothing to split" in text
    elif up + down < heads:
        assert f"{heads - up - down} adds exactly 0" in text


def test_the_norm_wise_paragraph_only_blames_a_tiny_denominator_when_there_is_one():
    base = {"elementwise_at": (0, 0, 0), "output_scale": 2.27}
    zero = prose.why_norm_wise({**base, "elementwise_max_rel": 0.0, "elementwise_magnitude": 0.307}, 10_240)
    assert "0.00e+00" not in zero and "denominator is just tiny" not in zero
    big = prose.why_norm_wise({**base, "elementwise_max_rel": 3e-7, "elementwise_magnitude": 1.9}, 1)
    assert "denominator is just tiny" not in big and "the one output" in big
    tiny = prose.why_norm_wise({**base, "elementwise_max_rel": 1.57, "elementwise_magnitude": 4.52e-4}, 5_120)
    assert "denominator is just tiny" in tiny


def test_the_work_paragraph_at_one_head_says_the_two_are_one_computation():
    text = prose.work_of_each_path(1, 512, 512, 5_242_880, 0, 10_240, 10_240)
    assert "H = 1 product of" not in text and "0 additions" not in text and "H times" not in text
    assert "With H = 1 the sum path is the same computation" in text
    one = prose.work_of_each_path(1, 1, 1, 1, 0, 1, 1)
    assert "1 multiply-add," in one and "D = 1 product in one go" in one and "1 number." in one


@pytest.mark.parametrize("x, shown", [(0.0, "0%"), (0.003, "under 1%"), (0.41, "41%"), (0.997, "over 99%"),
                                      (1.0, "100%")])
def test_shares_never_round_to_an_edge_they_did_not_reach(x, shown):
    assert prose.share(x) == shown
    assert prose.share(0.9996, digits=1) == "over 99.9%" and prose.share(0.0004, digits=1) == "under 0.1%"
    assert prose.share(0.25, digits=1) == "25.0%"


def test_the_reshape_sentence_at_a_rounding_gap_of_zero():
    pit = {"out_max_rel": 1.2, "out_max_abs": 2.0, "rows_differ": 1.0, "shape_right": [1, 3, 8]}
    text = prose.reshape_outcome(pit, 3, 0.0, "float64")
    assert "0.00e+00" not in text and "does not move them at all in float64" in text
    assert "agree exactly" in prose.reshape_outcome({**pit, "out_max_rel": 0.0}, 1, 0.0, "float32")


@pytest.mark.parametrize("args, says, never", [
    ((1, 1, [0], 1, 1, 1), "The one entry.", "All 1 entries"),
    ((6, 48, [0, 102], 1, 512, 512), "(l = 0, 102 of the one head)", "of each head"),
    ((6, 48, [0, 9], 1, 48, 48), "all 48 columns", "48 of the 48 columns"),
    ((48, 48, [0, 13], 8, 64, 512), "48 of the 512 rows (l = 0, 13 of each head)", "of the one head"),
])
def test_the_w_o_sample_note_fits_its_counts(args, says, never):
    note = prose.w_o_sample_note(*args)
    assert says in note and never not in note


def test_the_pytorch_route_counts_its_calls():
    tc = {"fast_path": False, "has_in_proj_bias": False, "linear_calls": 1, "sdpa_calls": 1}
    text = prose.pytorch_route(tc)
    assert "1 `linear` call and 1 `scaled_dot_product_attention` call," in text
    assert "this one has none" in text


# ---- the page itself at a grid of edge settings ---------------------------------------------------

GRID = {
    "H=1": {"heads": "1"},
    "S=1": {"seq": "1"},
    "B=3 S=1": {"batch": "3", "seq": "1", "heads": "4", "d_model": "64"},
    "heads=D": {"d_model": "8", "heads": "8", "seq": "3"},
    "D=H=S=1": {"d_model": "1", "heads": "1", "seq": "1"},
    "H=1 fp16": {"heads": "1", "dtype": "float16"},
    "H=1 bf16 causal": {"heads": "1", "dtype": "bfloat16", "causal": "true", "seq": "5"},
    "S=1 causal fp64": {"seq": "1", "causal": "true", "dtype": "float64", "d_model": "64", "heads": "4"},
    "item 7": {"dtype": "bfloat16", "heads": "16", "d_model": "256"},
    # grouped-query attention (issue 20): multi-query, one head, one token, two heads sharing
    "kv=1": {"kv_heads": "1"},
    "H=1 kv=1": {"heads": "1", "kv_heads": "1"},
    "S=1 kv=1": {"seq": "1", "kv_heads": "1", "heads": "4", "d_model": "64"},
    "H=2 kv=1 B=3 causal": {"heads": "2", "kv_heads": "1", "batch": "3", "seq": "4", "d_model": "16",
                            "causal": "true"},
    "kv=2 bf16": {"kv_heads": "2", "dtype": "bfloat16"},
}
GQA = [name for name, query in GRID.items() if "kv_heads" in query]

PLURALS = ("heads", "tokens", "terms", "products", "numbers", "outputs", "entries", "multiply-adds", "additions",
           "blocks", "calls", "columns", "rows", "sequences", "ulps", "sums")
WRONG = {
    "plural after one": re.compile(r"(?<![\d.,])1 (?:" + "|".join(PLURALS) + r")\b"),
    "negative zero": re.compile(r"(?<![\w.])[-−]0(?:\.0+)?(?:e[+-]\d+)?(?![\d.])"),
    "zero times": re.compile(r"(?<![\d.])0(?:\.0+)?×"),
    "nonzero printed as 0.00 ε": re.compile(r"(?<![\d.])0\.00 ε"),
    "equal range": re.compile(r"between (\S+ ?\S*) and \1(?![\d])"),
    "equal pair as different": re.compile(r"(?<![\d.])(\d[\d.,]*(?:e[+-]\d+)?(?: ?[kMG%ε×])?) against \1(?![\d.e])"),
    "a zero ratio blamed on its denominator": re.compile(r"\*\*0\.00e\+00\*\*[\s\S]{0,200}denominator"),
    "counted heads where there is one": re.compile(r"(?:The|Of the) 1 head\b|\b0 (?:push|pull)|H = 1 products? of"),
}


def all_text(at) -> str:
    """Markdown, captions, alerts, metrics, code, LaTeX (``texts``) and every expander's label."""
    return texts(at) + "\n" + "\n".join(str(e.label) for e in at.expander)


@pytest.fixture(scope="module")
def pages():
    return {name: run_page(PAGE, query, timeout=120) for name, query in GRID.items()}


@pytest.mark.parametrize("name", list(GRID))
def test_no_sentence_gives_itself_away(pages, name):
    body = all_text(pages[name])
    found = {kind: m.group(0) for kind, pattern in WRONG.items() if (m := pattern.search(body))}
    assert not found, found


@pytest.mark.parametrize("name", ["H=1", "D=H=S=1", "H=1 fp16", "H=1 bf16 causal"])
def test_one_head_is_called_one_computation(pages, name):
    body = all_text(pages[name])
    assert "With H = 1 the sum path is the same computation" in body
    assert "(one head: the two endings are one computation)" in body
    assert "With one head there is nothing to split" in body
    assert "smaller in every format" not in body and "denominator is just tiny" not in body


def test_item_7_names_the_less_accurate_ending(pages):
    body = all_text(pages["item 7"])
    assert "smaller in every format" not in body
    assert "comparable to the layer's own error in" in body
    assert re.search(r"In bfloat16 the sum path is measurably less accurate: its worst error is \d+% larger", body)


def test_transformerlens_names_say_which_class_and_version_they_belong_to(pages):
    body = all_text(pages["H=1"])
    assert "hook_result" in body and "use_attn_result=True" in body
    assert "`HookedTransformer`, its model class through version 2.x" in body
    assert "TransformerBridge" in body and "enable_compatibility_mode()" in body


@pytest.mark.parametrize("name", GQA)
def test_grouped_settings_pass_the_shared_edge_scan(pages, name):
    """The scan every page shares (plurals after one, −0, 0×, X against X, 1-based counters), with the
    checkpoints' questions and answers revealed, so their sentences are scanned too."""
    at = pages[name]
    for _ in range(3):  # one click per run: each run draws the buttons anew
        [b for b in at.button if b.label == "Reveal the answer"][0].click()
        at.run()
        assert not at.exception
    assert len([i for i in at.info if str(i.value).startswith("The answer:")]) == 3
    # "1 pulls it down", "1 pushes this number up": verbs after one head, not plurals.
    assert_clean(at, allow=("1 pulls", "1 pushes", "1 adds"))


# ---- grouped-query sentences, fed their edge settings ------------------------------------------------


@pytest.mark.parametrize("heads, kv, says", [
    (8, 4, "heads 0 and 1 read key/value head 0, heads 2 and 3 read key/value head 1, heads 4 and 5 read "
           "key/value head 2 and heads 6 and 7 read key/value head 3"),
    (8, 1, "heads 0–7 read key/value head 0"),
    (32, 8, "heads 0–3 read key/value head 0, …, heads 28–31 read key/value head 7"),
])
def test_the_groups_are_listed_in_words(heads, kv, says):
    assert prose.kv_groups(heads, kv) == says


def test_sharing_sentences_at_the_edges():
    shapes = {"z": [1, 1, 1, 8], "k": [1, 1, 1, 8], "k_expanded": [1, 1, 1, 8]}
    one = prose.sharing_here(1, 1, shapes)
    assert "nothing to share" in one and "1 key/value heads" not in one
    plain = prose.sharing_here(4, 4, {**shapes, "z": [1, 4, 3, 2], "k": [1, 4, 3, 2]})
    assert "every head has its own keys and values (k is [1, 4, 3, 2], like z)" in plain
    mqa = prose.sharing_here(2, 1, {"z": [2, 2, 3, 4], "k": [2, 1, 3, 4], "k_expanded": [2, 2, 3, 4]})
    assert "share one key/value head (multi-query attention), G = 2" in mqa and "heads 0 and 1 read" in mqa
    assert "one key/value head serves 2 query heads" in prose.referee_here(2, 1)
    assert "`torch.nn.MultiheadAttention`" in prose.referee_here(4, 4)
    assert prose.w_o_unshared(4, 4) == "" and "(one key/value head for 8 query heads here)" in prose.w_o_unshared(8, 1)
