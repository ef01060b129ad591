"""pages/timing.py under AppTest: the kv_heads control, the grouped-query section and the checkpoints.

Each checkpoint's right option is read against what the page shows below it (the memory table, the
run's ratio table, the KV-cache figure, the score count), at the defaults, small sizes, H = 1 with
B = 1, and GQA settings; a guess is acknowledged, a wrong one corrected, and a changed control resets
it. Hostile kv_heads values give a notice and a working page, and the edge settings read right.
"""

from __future__ import annotations

import re
import statistics
import time

import pytest

from core import timing
from tests.apptest_utils import rerun, run_page, notices, texts, run_page_with_numbers
from tests.edge_scan import assert_clean
from ui.format import size_bytes

SETTINGS = {
    "defaults": {},
    "small": {"batch": "2", "seq": "4", "d_model": "16", "heads": "4", "kv_heads": "2", "sweep": "none"},
    "one head, one sequence": {"batch": "1", "heads": "1", "sweep": "none"},
    "gqa": {"kv_heads": "2"},
    "mqa": {"kv_heads": "1", "seq": "64"},
}


def predict(at, starts: str):
    (radio,) = [r for r in at.radio if r.label.startswith("Predict:") and starts in r.label]
    return radio


def _size(query: dict) -> timing.Size:
    d = {"batch": 8, "seq": 128, "d_model": 512, "heads": 8}
    d.update({k: int(v) for k, v in query.items() if k in d})
    return timing.Size(d["batch"], d["seq"], d["d_model"], d["heads"], int(query.get("kv_heads", d["heads"])))


@pytest.mark.parametrize("name", list(SETTINGS))
def test_each_checkpoints_right_option_is_what_the_page_shows_below(name):
    query = SETTINGS[name]
    at = run_page_with_numbers("timing", query, timeout=120)
    said = texts(at)
    size = _size(query)

    # the materialized sum's memory: the memory table's bar for per_head_sum
    memory = predict(at, "how much memory")
    mem = [df.value for df in at.dataframe if "holds" in df.value.columns][0].set_index("variant")
    shown = size_bytes(mem.at["per_head_sum", "extra_bytes"])
    assert [o for o in memory.options if o == shown] == [shown]

    # the slowest arrangement: the lowest ratio in the run's table at its base size
    slowest = predict(at, "the slowest")
    measured = [df.value for df in at.dataframe if "fraction_of_gemm" in df.value.columns][0]
    ok = measured[(measured["status"] == "ok") & (measured["variant"] != "gemm")
                  & measured["variant"].isin(timing.PROJECTION_VARIANTS)]
    lowest = f"`{ok.loc[ok['fraction_of_gemm'].idxmin(), 'variant']}`"
    assert lowest in slowest.options

    # the KV cache per token: the figure's first row, bold in its sentence
    cache = predict(at, "keys and values does this one layer keep")
    per_token = size_bytes(timing.kv_cache_table(size, "float32")["bytes_per_token"].iloc[0])
    assert f"keeps **{per_token}** of keys and values per token" in said
    assert per_token in cache.options

    # the scores: the count the sentence below prints in bold
    scores = predict(at, "query–key scores")
    count = re.search(r"\*\*([\d,]+)\*\* scores?", said).group(1)
    assert count in scores.options and int(count.replace(",", "")) == size.batch * size.n_heads * size.seq**2

    # guessing each right option is acknowledged; no other element says "Not quite"
    for radio, right in ((memory, shown), (slowest, lowest), (cache, per_token), (scores, count)):
        radio.set_value(right).run()
    assert not at.exception
    assert len(at.success) >= 4 and not [e for e in at.error if "Not quite" in e.value]


def test_a_wrong_guess_states_the_answer_and_a_changed_control_resets_it():
    at = run_page("timing", {"kv_heads": "2"}, timeout=120)
    cache = predict(at, "keys and values does this one layer keep")
    right = size_bytes(timing.kv_cache_table(timing.Size(8, 128, 512, 8, 2), "float32")["bytes_per_token"].iloc[0])
    wrong = next(o for o in cache.options if o != right)
    cache.set_value(wrong).run()
    errors = [e.value for e in at.error if "Not quite" in e.value]
    assert len(errors) == 1 and f"the answer is {right}" in errors[0]
    assert "2 × 2 × 64 = 256 numbers" in errors[0]
    at.radio(key="kv_heads").set_value(1).run()
    cache = predict(at, "keys and values does this one layer keep")
    assert cache.value is None and "H_kv = 1" in cache.label
    assert not [e for e in at.error if "Not quite" in e.value]


def test_quiz_folds_the_kv_cache_figure_until_guessed():
    at = run_page("timing", {"kv_heads": "2", "quiz": "1"}, timeout=120)
    assert "of keys and values per token" not in texts(at)
    predict(at, "keys and values does this one layer keep").set_value("1 KiB").run()
    assert "keeps **1 KiB** of keys and values per token" in texts(at)


HOSTILE_KV = ["0", "3", "16", "abc", "2.5", "x" * 10_000, "🔥", "<b>2</b>", "-1", "inf"]


@pytest.mark.parametrize("value", HOSTILE_KV, ids=lambda v: v[:12])
def test_hostile_kv_heads_get_a_notice_and_a_working_page(value):
    at = run_page("timing", {"kv_heads": value, "sweep": "none"}, timeout=120)
    said = notices(at)
    assert any("kv_heads=" in n for n in said), said
    assert "Sharing keys and values" in texts(at)
    kv = at.radio(key="kv_heads").value
    assert 8 % kv == 0
    expected = {"0": 1, "3": 2, "16": 8, "-1": 1}.get(value)
    if expected is not None:
        assert kv == expected


def test_kv_heads_does_not_change_the_variants_of_the_ending():
    plain = run_page_with_numbers("timing", {"sweep": "none"}, timeout=120)
    shared = run_page_with_numbers("timing", {"sweep": "none", "kv_heads": "1"}, timeout=120)
    for at in (plain, shared):
        assert "every number above and below about these variants is the same at any" in texts(at)
    tables = [[df.value for df in at.dataframe if "holds" in df.value.columns][0] for at in (plain, shared)]
    assert tables[0].equals(tables[1])


def test_the_shared_forward_is_timed_on_the_button_and_not_without_sharing():
    query = {"batch": "1", "seq": "8", "d_model": "16", "heads": "4", "kv_heads": "1", "sweep": "none",
             "budget": "2", "threads": "1"}
    at = run_page_with_numbers("timing", query, timeout=120)
    assert "Not measured on this server yet" in texts(at)
    at.button(key="run_gqa").click()
    rerun(at)
    said = texts(at)
    assert "Measured on this server" in said
    table = [df.value for df in at.dataframe if "ratio" in df.value.columns][0]
    assert set(table["variant"]) == set(timing.GQA_COMPARISON) and set(table["n_kv_heads"]) == {1}
    assert "as long as the same layer without sharing" in said
    assert "--kv-heads 1 --gqa" in said
    unshared = run_page_with_numbers("timing", {**query, "kv_heads": "4"}, timeout=120)
    assert unshared.button(key="run_gqa").disabled
    assert "there is nothing to share, so there is nothing to time" in texts(unshared)


EDGES = [{"kv_heads": "1"}, {"heads": "1"}, {"batch": "1"}, {"seq": "1"},
         {"batch": "1", "seq": "1", "heads": "1", "kv_heads": "1"}, {"seq": "1", "kv_heads": "1"},
         {"d_model": "8", "heads": "8", "kv_heads": "2"}]


@pytest.mark.parametrize("query", EDGES, ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items()))
def test_the_page_reads_right_at_edge_settings(query):
    assert_clean(run_page("timing", {**query, "sweep": "none"}, timeout=120))


def test_warm_rerun_of_the_default_view():
    """Not an assertion on time: prints the default view's warm rerun for the report (wall and CPU)."""
    at = run_page("timing", timeout=120)
    rerun(at)
    walls = []
    for _ in range(5):
        start = time.perf_counter()
        rerun(at)
        walls.append(time.perf_counter() - start)
    print(f"warm rerun at defaults: median {statistics.median(walls) * 1e3:.0f} ms wall")


@pytest.mark.parametrize("query", [{"batch": "1", "seq": "1", "heads": "1", "kv_heads": "1"},
                                   {"seq": "1", "kv_heads": "1"}, {"kv_heads": "2"}],
                         ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items()))
def test_every_revealed_answer_reads_right_at_edge_settings(query):
    at = run_page("timing", {**query, "sweep": "none"}, timeout=120)
    while reveal := [b for b in at.button if b.label == "Reveal the answer"]:
        reveal[0].click()
        rerun(at)
    assert len(at.info) >= 4
    assert_clean(at)
