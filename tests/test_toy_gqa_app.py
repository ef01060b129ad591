"""The sentence page's grouped-query attention and checkpoints in AppTest.

At several settings (defaults, one token, one head, groups of two, one K/V head over repeated
tokens) every checkpoint is revealed and its right option is checked against what the page shows
below it: the code block's shape, the entropy metrics, head 0's weights table, the shared-keys
metrics. Then a guess, a wrong guess, a reset when a control moves, quiz=1 folding, and hostile
``kv_heads`` links."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from core.checkpoints import toy_sentence as cps
from tests.apptest_utils import notices, rerun, run_page, texts
from tests.edge_scan import assert_clean, scan_text

PAGE = "toy-sentence"


def predicts(at) -> dict:
    """The checkpoint radios by name ("top_key", …), read off their widget keys."""
    return {r.key.split(":")[1].removeprefix("toy."): r for r in at.radio if r.label.startswith("Predict:")}


def reveal_all(at):
    for button in [b for b in at.button if b.label == "Reveal the answer"]:
        at.button(key=button.key).click()
        rerun(at)
    return at


def answers(at) -> dict[str, str]:
    """After reveal_all: each checkpoint's right option, matched in the reveal's text."""
    revealed = [i.value for i in at.info if i.value.startswith("The answer: ")]
    out = {}
    for name, radio in predicts(at).items():
        hits = [o for o in radio.options if any(r.startswith(f"The answer: {o}. ") for r in revealed)]
        assert len(hits) == 1, (name, radio.options, revealed)
        out[name] = hits[0]
    return out


def metric(at, label: str) -> str:
    (value,) = [m.value for m in at.metric if m.label == label]
    return value


def weights_table(at):
    (table,) = [df.value for df in at.dataframe if "Σ row" in getattr(df.value, "columns", [])]
    return table


SETTINGS = [
    {},
    {"sentence": "hello"},
    {"heads": "1"},
    {"kv_heads": "2"},
    {"kv_heads": "1", "sentence": "a a a", "causal": "true"},
]


@pytest.mark.parametrize("query", SETTINGS, ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items()) or "defaults")
def test_each_right_option_agrees_with_the_page_below(query):
    at = reveal_all(run_page(PAGE, query, timeout=120))
    found = answers(at)
    tokens = at.dataframe[0].value["token"].tolist()
    heads, kv = int(query.get("heads", 4)), int(query.get("kv_heads", query.get("heads", 4)))
    assert len(found) >= 2  # every setting asks at least two questions

    # The scores' shape: the code block below prints it.
    code = texts(at)
    assert re.search(rf"→ {re.escape(found['scores_shape'])}  \[H, S, S\]", code)
    assert found["scores_shape"] == f"[{heads}, {len(tokens)}, {len(tokens)}]"

    # The scale: the metrics below, with and without it.
    scaled = float(metric(at, "Mean row entropy, ÷√d_k").split()[0])
    raw = float(metric(at, "Mean row entropy, no scale").split()[0])
    if found["scale_direction"] == cps.SCALE_OPTIONS["sharper"]:
        assert raw < scaled
    else:
        assert found["scale_direction"] == cps.SCALE_OPTIONS["same"] and raw == scaled

    # The top key: head 0's table (the close-up's default head), the last token's row.
    if "top_key" in found:
        table = weights_table(at)
        keys = [c for c in table.columns if c not in ("Σ row", "entropy (bits)")]
        last = table.iloc[-1][keys].to_numpy(dtype=float)
        assert found["top_key"] == f"`{keys[int(np.argmax(last))]}`"
    else:
        assert len(tokens) == 1 or len(set(tokens)) < len(tokens)  # one token, or a tie at the top

    # Shared keys: the metrics of the comparison below.
    if kv < heads:
        same = metric(at, "Weights, every row") == "0"
        assert found["shared_weights"] == cps.SHARED_OPTIONS["same" if same else "differ"]
        assert metric(at, "Keys") == "0"
        assert metric(at, "Queries") != "0"
    else:
        assert "shared_weights" not in found
    # Revealed, the whys read right at these settings too.
    assert not scan_text("\n".join(i.value for i in at.info))
    assert_clean(at)


def test_a_right_guess_succeeds_and_a_wrong_one_states_the_answer():
    at = run_page(PAGE, {"kv_heads": "2"}, timeout=120)
    radio = predicts(at)["shared_weights"]
    radio.set_value(cps.SHARED_OPTIONS["differ"])
    rerun(at)
    (ok,) = [s.value for s in at.success]
    assert ok.startswith("Right: Different") and "Heads 0 and 1 read the same keys" in ok
    assert "Keys" in [m.label for m in at.metric]

    radio = predicts(at)["scores_shape"]
    radio.set_value("[4, 5, 4]")  # the head width where the key position belongs
    rerun(at)
    (wrong,) = [e.value for e in at.error]
    assert wrong.startswith("Not quite: the answer is [4, 5, 5].")


def test_a_changed_control_resets_the_checkpoints_it_decides():
    at = run_page(PAGE, {"kv_heads": "2"}, timeout=120)
    radios = predicts(at)
    radios["top_key"].set_value(radios["top_key"].options[0])
    radios["shared_weights"].set_value(cps.SHARED_OPTIONS["same"])
    radios["scores_shape"].set_value("[4, 5, 5]")
    rerun(at)
    assert all(r.value is not None for r in predicts(at).values() if r.key.split(":")[1] != "toy.scale_direction")

    at.radio(key="kv_heads").set_value(1)  # new sharing: the shared-keys question starts afresh
    rerun(at)
    radios = predicts(at)
    assert radios["shared_weights"].value is None
    # The shape's answer stays [4, 5, 5], but its options name H_kv ([H_kv, S, S]), so it is asked afresh.
    assert radios["scores_shape"].value is None

    at.number_input(key="seed").set_value(7)
    rerun(at)
    assert predicts(at)["top_key"].value is None


def test_quiz_folds_the_shared_keys_comparison_until_a_guess():
    at = run_page(PAGE, {"kv_heads": "2", "quiz": "1"}, timeout=120)
    labels = [m.label for m in at.metric]
    assert "Keys" not in labels
    assert "Make your prediction above" in texts(at)
    predicts(at)["shared_weights"].set_value(cps.SHARED_OPTIONS["same"])
    rerun(at)
    assert "Keys" in [m.label for m in at.metric]
    assert any(e.value.startswith("Not quite: the answer is Different") for e in at.error)


# ---- kv_heads from the link --------------------------------------------------------------------


@pytest.mark.parametrize("raw, used", [
    ("0", 1), ("3", 2), ("8", 4), ("junk", 4), ("9" * 10_000, 4), ("2.5", 2), ("-2", 1), ("💥", 4),
])
def test_hostile_kv_heads_gets_the_nearest_valid_value_with_a_notice(raw, used):
    at = run_page(PAGE, {"kv_heads": raw}, timeout=120)
    said = " ".join(notices(at))
    assert "kv_heads" in said and f"`kv_heads={used}`" in said
    assert at.radio(key="kv_heads").value == used
    assert len(said) < 2_000  # the 10,000 characters are not repeated back
    if used < 4:
        assert "Shared keys, different weights?" in texts(at)


def test_grouped_tables_name_the_groups_and_their_readers():
    at = run_page(PAGE, {"kv_heads": "2"}, timeout=120)
    said = texts(at)
    assert "K/V group 0 is read by heads 0, 1; K/V group 1 is read by heads 2, 3" in said
    assert 'k = torch.einsum("id,gdl->gil", x, W_K)' in said and "[5, 16] × [2, 16, 4] → [2, 5, 4]" in said
    assert "k = k.repeat_interleave(2, dim=0)" in said
    kv = [df.value for df in at.dataframe if "g1 l0" in getattr(df.value, "columns", [])]
    assert len(kv) == 1 and kv[0]["tensor"].tolist() == ["k"] * 5 + ["v"] * 5
    # the overview's panels name the group each head reads
    spec = json.loads(at.get("vega_lite_chart")[2].proto.spec)
    assert spec["facet"]["sort"] == ["head 0 · K/V 0", "head 1 · K/V 0", "head 2 · K/V 1", "head 3 · K/V 1"]


def test_one_head_has_nothing_to_share():
    at = run_page(PAGE, {"heads": "1", "d_model": "8", "sentence": "hello"}, timeout=120)
    assert at.radio(key="kv_heads").options == ["1"]
    assert "With one head there is nothing to share" in texts(at)
    assert "Shared keys, different weights?" not in texts(at)


def test_changing_heads_keeps_kv_heads_valid():
    at = run_page(PAGE, {"kv_heads": "4"}, timeout=120)  # H_kv = H = 4
    at.number_input(key="heads").set_value(2)
    rerun(at)  # 4 no longer divides 2: back to H_kv = H = 2, plain multi-head attention
    assert at.radio(key="kv_heads").options == ["2", "1"] and at.radio(key="kv_heads").value == 2
    assert "Shared keys, different weights?" not in texts(at)
    at = run_page(PAGE, {"kv_heads": "2"}, timeout=120)
    at.number_input(key="heads").set_value(8)
    rerun(at)  # 2 still divides 8: kept, now groups of 4
    assert at.radio(key="kv_heads").value == 2 and "groups of $G = 4$ heads" in texts(at)


# ---- the sentences about sharing, at their edges ---------------------------------------------------


def test_sharing_sentences_read_right_at_the_edges():
    from ui.prose import toy_sentence as prose

    assert "nothing to share" in prose.kv_line(1, 1)
    assert prose.kv_line(4, 4).startswith("$H_{kv} = H = 4$")
    assert "multi-query attention" in prose.kv_line(4, 1) and "1$ key/value head for" in prose.kv_line(4, 1)
    assert "2$ key/value heads for 8 query heads: 2 groups of $G = 4$" in prose.kv_line(8, 2)
    assert prose.groups_said([[0], [1]]) == "K/V group 0 is read by head 0; K/V group 1 is read by head 1"
    assert prose.groups_said([[0, 1]] * 6).endswith("; and so on")
    pair = {"query": 0, "q_diff": 1.5, "score_diff": 0.25, "weight_diff_all": 0.0, "weights_differ": False}
    one = prose.shared_said(pair, 1)
    assert "with one token each row has a single key" in one and "0.250" in one
    assert "identical tokens have identical keys" in prose.shared_said(pair, 3)
    assert prose.gap(0.0) == "0" and prose.gap(-0.0) == "0" and prose.gap(0.1234) == "0.123"
    for text in (one, prose.kv_line(4, 1), prose.kv_line(2, 1), prose.groups_said([[0, 1]])):
        assert not scan_text(text)
