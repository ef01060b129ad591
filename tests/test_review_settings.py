"""The reviewer's reading settings (issue 18's last bullet): every page at three settings of the
reviewer's own choosing, not the defaults, scanned with ``tests.edge_scan``, and one assertion per
sentence the read found wrong, each failing on the old wording.

The settings are the ones the review read as a student would (all text, checkpoint questions,
options and, after revealing, their answers). What was found, page by page:

- shapes, ``batch=3&seq=1&heads=2&kv_heads=1``: "so all of them read the one key/value head 0" and
  "W_Q and W_O keep all 2 heads" for two heads;
- shapes, ``model=falcon-7b``: the real-values notice said the embedding matrix's size twice ("the
  largest, `W_E`, has N; the embedding matrix alone is V×D = N");
- shapes, ``d_model=6&heads=3&causal=true``: "Step 2 … would add 12 M on its own, 100% of the 12 M of
  steps 1–9" for a share of 99.8 %;
- shapes, ``seq=1``: the answer to "at which step does one position meet another" said nothing of
  there being a single position;
- toy-sentence, ``sentence=I I I I&heads=1``: the option "Some heads get sharper and others
  flatter" with one head; "a panel per head" and "coincide for every head" for one head;
- toy-sentence, ``d_model=8&heads=8&scale=false``: "Switch the ÷√d_k off" with the switch already off;
- concat-vs-sum, ``batch=2&seq=3&d_model=12&heads=6&kv_heads=3``: "1.2× in float16 and 1× in
  bfloat16", a bare "1×" beside two-digit ratios;
- concat-vs-sum, ``seq=1&causal=true``: "6.66 ε from the concat path and 6.66 ε from the sum path";
- timing, ``heads=1``: "that is 1 output of 2 MiB each"; ``kv_heads=1``: "writes every head's
  full-width result … that is 9 outputs" for 8 heads (the ninth is the heads-first copy of z);
- timing, ``batch=1&seq=1``: "4 KiB … per token, 4 KiB for the 1 token of this page's run";
  "slower at all 2 values of seq"; growth factors "4×" beside "6.1×", and "the least `einsum`
  (4×)" when `per_head_sum_out` grew by the same 4×.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from tests.apptest_utils import rerun, run_page
from tests.edge_scan import assert_clean, page_text

# Three reading settings per page, none of them the defaults. Timing gets a short budget: its
# arrival shows the reference run, and nothing here presses the button.
READINGS = {
    "home": [{"room": "ABC"}, {"quiz": "1", "teacher": "1"}, {"room": "abc9", "quiz": "1"}],
    "shapes": [{"model": "falcon-7b"}, {"batch": "3", "seq": "1", "heads": "2", "kv_heads": "1"},
               {"d_model": "6", "heads": "3", "causal": "true"}],
    "toy-sentence": [{"sentence": "I I I I", "heads": "1"},
                     {"sentence": "<b>🐱 **cat** $x$</b> 🐱 sat", "kv_heads": "2"},
                     {"d_model": "8", "heads": "8", "scale": "false"}],
    "concat-vs-sum": [{"heads": "1", "kv_heads": "1", "dtype": "float16"},
                      {"batch": "2", "seq": "3", "d_model": "12", "heads": "6", "kv_heads": "3"},
                      {"seq": "1", "causal": "true"}],
    "timing": [{"batch": "1", "seq": "1", "budget": "1", "threads": "1"},
               {"heads": "1", "budget": "1", "threads": "1"},
               {"kv_heads": "1", "budget": "1", "threads": "1"}],
}
CASES = [(page, query) for page, queries in READINGS.items() for query in queries]


def _revealed(at) -> str:
    """Press every checkpoint's *Reveal the answer* and return all the page's text afterwards."""
    for _ in range(8):
        buttons = [b for b in at.button if b.label == "Reveal the answer"]
        if not buttons:
            break
        buttons[0].click()
        rerun(at)
    return page_text(at)


def _predict(at, start: str):
    """The checkpoint radio whose label starts with ``Predict: `` + ``start``."""
    (radio,) = [r for r in at.radio if r.label.startswith("Predict: " + start)]
    return radio


@pytest.mark.parametrize("page, query", CASES, ids=[f"{p}-{'&'.join(f'{k}={v}' for k, v in q.items())}"
                                                    for p, q in CASES])
def test_every_reading_setting_is_clean_before_and_after_the_answers(page, query):
    at = run_page(page, query, timeout=120)
    assert_clean(at)
    _revealed(at)
    assert_clean(at)  # the answers are read too


# ---- shapes ----------------------------------------------------------------------------------------


def test_shapes_two_heads_sharing_one_say_both():
    text = page_text(run_page("shapes", {"batch": "3", "seq": "1", "heads": "2", "kv_heads": "1"}))
    assert "so both read the one key/value head 0" in text
    assert "$W_Q$ and $W_O$ keep both heads" in text
    assert "all of them read" not in text and "keep all 2 heads" not in text


def test_shapes_real_values_notice_names_the_embedding_matrix_once():
    at = run_page("shapes", {"model": "falcon-7b"})
    (notice,) = [str(i.value) for i in at.info if "Real values are shown for small models only" in str(i.value)]
    assert "the largest, the embedding matrix `W_E`, is V×D = 295,469,056" in notice
    assert notice.count("295,469,056") == 1


def test_shapes_a_share_just_under_all_is_not_rounded_to_100_percent():
    from ui.prose.shapes import percent_share

    text = page_text(run_page("shapes", {"d_model": "6", "heads": "3", "causal": "true"}))
    assert "99.8% of the 12 M of steps 1–9" in text and "100% of the" not in text
    assert [percent_share(x) for x in (0.88, 0.998, 0.0004, 1.0)] == ["88%", "99.8%", "0.04%", "100%"]


def test_shapes_positions_meet_says_what_one_position_means():
    at = run_page("shapes", {"batch": "3", "seq": "1", "heads": "2", "kv_heads": "1"})
    text = _revealed(at)
    assert "Here S = 1, so step 6's S×S table is 1×1 and the one position meets only itself" in text
    assert "Here S = 1" not in _revealed(run_page("shapes", {"model": "falcon-7b"}))


# ---- toy-sentence ------------------------------------------------------------------------------------


def test_toy_one_head_asks_no_question_about_other_heads():
    at = run_page("toy-sentence", {"sentence": "I I I I", "heads": "1"})
    options = _predict(at, "Switch the ÷√d_k off").options
    assert "Some rows get sharper and others flatter" in options
    assert not any("heads" in o for o in options)
    text = page_text(at)
    assert "Query 0, one panel for the one head:" in text and "a panel per head" not in text
    assert "The two marks coincide for the one head" in text and "for every head" not in text


def test_toy_scale_question_with_the_switch_already_off():
    at = run_page("toy-sentence", {"d_model": "8", "heads": "8", "scale": "false"})
    radio = _predict(at, "The ÷√d_k is switched off on this page (here $d_k = 1$)")
    assert not [r for r in at.radio if r.label.startswith("Predict: Switch the ÷√d_k off")]
    assert "Some heads get sharper and others flatter" in radio.options  # eight heads: the heads' option
    on = run_page("toy-sentence", {"d_model": "8", "heads": "8"})
    assert _predict(on, "Switch the ÷√d_k off (here $d_k = 1$)")


# ---- concat-vs-sum -----------------------------------------------------------------------------------


def test_concat_ratios_keep_two_significant_figures():
    from ui.prose.concat_vs_sum import _ratio

    assert [_ratio(x) for x in (1.017, 0.64, 1.2, 0.0031, 12.3, 150.0)] == \
        ["1.0×", "0.64×", "1.2×", "0.0031×", "12×", "150×"]
    text = page_text(run_page("concat-vs-sum", {"batch": "2", "seq": "3", "d_model": "12", "heads": "6",
                                                "kv_heads": "3"}))
    listed = re.search(r"the gap between the endings is (.*?): ", text)
    assert listed, "the per-format ratios against the layer's own error"
    assert not re.search(r"(?<![\d.,])\d× in ", listed.group(1)), listed.group(1)  # never a bare "1× in"


def test_concat_one_distance_to_pytorch_is_said_once():
    from ui.prose.concat_vs_sum import against_pytorch

    same_eps = {"concat": {"dtype": "float32", "eps_units": 6.66, "bitwise_equal": 0.04, "max_abs": 1.0},
                "sum": {"dtype": "float32", "eps_units": 6.661, "bitwise_equal": 0.06, "max_abs": 2.0}}
    said = against_pytorch(same_eps, "float32")
    assert "it lands 6.66 ε from each ending" in said and "from the concat path and" not in said
    text = page_text(run_page("concat-vs-sum", {"seq": "1", "causal": "true"}))
    assert not re.search(r"lands ([\d.]+ ε) from the concat path and \1 from the sum path", text)


# ---- timing --------------------------------------------------------------------------------------------


def test_timing_memory_answer_counts_what_it_names():
    one_head = _revealed(run_page("timing", {"heads": "1", "budget": "1", "threads": "1"}))
    assert "with one head it writes that head's full-width result, one output of 2 MiB" in one_head
    assert "1 output of" not in one_head
    shared = _revealed(run_page("timing", {"kv_heads": "1", "budget": "1", "threads": "1"}))
    assert ("8 outputs of 2 MiB each, and keeps the heads-first copy of z it made them from, one output more"
            in shared)
    assert "that is 9 outputs" not in shared


def test_timing_kv_cache_of_one_token_is_said_once():
    text = page_text(run_page("timing", {"batch": "1", "seq": "1", "budget": "1", "threads": "1"}))
    assert "this page's run has a single token (B × S = 1), so that is all it keeps" in text
    assert "for the 1 token" not in text


def test_timing_sweep_sentences_say_both_and_name_ties_together():
    from tests.test_timing_app import _einsum_rows
    from ui.prose import timing as prose

    both = prose.einsum_sentence(_einsum_rows({1: (1.24, 1.20, 1.28), 256: (1.5, 1.4, 1.6)}))
    assert "slower at both values of seq it measured" in both and "all 2" not in both
    rows = pd.DataFrame([{"variant": v, "from": 1, "to": 256, "ms_from": 1.0, "ms_to": f, "factor": f}
                         for v, f in (("gemm", 56.2), ("concat", 13.1), ("head_loop", 6.1),
                                      ("per_head_sum_out", 4.02), ("einsum", 3.98))])
    said = prose.growth_sentence(rows, "seq")
    assert "`per_head_sum_out` 4.0×, `einsum` 4.0×" in said
    assert "the least `per_head_sum_out` and `einsum` (4.0×)" in said
    assert [prose.factor(x) for x in (0.95, 4.0, 9.96, 13.2)] == ["0.95×", "4.0×", "10×", "13×"]


# ---- the class's link (issue 21) -------------------------------------------------------------------


def _class_script():
    """One checkpoint and what the link view reads, as a page would."""
    import streamlit as st

    from core.checkpoints import choice, fingerprint
    from ui.checkpoint import checkpoint, link_view

    checkpoint(choice("demo.square", "What is 2 squared?", "4", ["2", "8"], "2 × 2 = 4.", fingerprint(n=2)))
    view = link_view()
    st.markdown(f"VIEW room={view.room} quiz={view.quiz} teacher={view.teacher}")


def test_a_page_opened_without_the_class_link_gets_it_back_in_the_same_session():
    """The sidebar opens the next page with a bare URL; the session keeps its room and quiz."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_class_script, default_timeout=30)
    at.query_params.update({"room": "abc", "quiz": "1", "teacher": "maybe"})
    at.run()
    assert "VIEW room=ABC quiz=True teacher=False" in [m.value for m in at.markdown]
    at.query_params.clear()  # what a page switch from the sidebar sends
    at.run()
    assert not at.exception
    assert "VIEW room=ABC quiz=True teacher=False" in [m.value for m in at.markdown]
    assert dict(at.query_params) == {"room": "abc", "quiz": "1"}  # the usable values, not the junk
    at.query_params.clear()
    at.query_params["quiz"] = "0"  # a link that names any class value is the class's word
    at.run()
    assert "VIEW room=None quiz=False teacher=False" in [m.value for m in at.markdown]
    at.query_params.clear()
    at.run()
    assert "VIEW room=None quiz=False teacher=False" in [m.value for m in at.markdown]


def test_shapes_the_posts_one_head_shape_met_at_its_own_sizes_is_called_the_same():
    """falcon-7b has the post's S = 20 and L = 64: 'printed as 1×1×20×64 … which here is 1×1×20×64'."""
    text = page_text(run_page("shapes", {"model": "falcon-7b"}))
    assert "the shape of a single head, `q[:, h:h+1]`, the same here." in text
    assert "which here is 1×1×20×64" not in text
    assert "which here is 3×1×1×256" in page_text(run_page("shapes", {"batch": "3", "seq": "1", "heads": "2"}))


# ---- two heads sharing one key/value head, at the smallest sizes (a fourth reading) ----------------

TWO_SHARING_ONE_CONCAT = {"d_model": "2", "heads": "2", "kv_heads": "1", "seq": "2", "dtype": "bfloat16"}
TWO_SHARING_ONE_TOY = {"sentence": "a b", "heads": "2", "kv_heads": "1", "causal": "true", "d_model": "2"}


def test_concat_two_heads_are_both_and_all_ties_are_said_once():
    at = run_page("concat-vs-sum", TWO_SHARING_ONE_CONCAT)
    assert_clean(at)
    text = _revealed(at)
    assert "All 2 heads" not in text and "over all 2 query heads" not in text and "the 1 key/value head" not in text
    assert "so the sum runs over both query heads, not the one key/value head" in text
    assert re.search(r"Both heads (push|pull) this number (up|down)|pushes this number up", text)
    from ui.prose.concat_vs_sum import why_either_can_win

    ties = why_either_can_win(2, {"float64": "tie", "float32": "tie", "float16": "tie", "bfloat16": "tie"})
    assert "neither wins: the two paths tie on average in every precision measured" in ties
    assert "float64: tie" not in ties
    mixed = why_either_can_win(2, {"float64": "sum", "float32": "tie"})
    assert "per precision: float64: sum, float32: tie" in mixed


def test_toy_two_heads_sharing_one_are_both():
    at = run_page("toy-sentence", TWO_SHARING_ONE_TOY)
    assert_clean(at)
    text = page_text(at)
    assert "both heads share one key and one value matrix (multi-query attention)" in text
    assert "The weights of both heads, heads 0 and 1" in text
    assert "all 2 heads" not in text and "heads 0 to 1" not in text
