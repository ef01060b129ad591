"""The trained-model page under AppTest: defaults, each control, hostile links, training on a press only."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hyp

import re


from core import induction as ind
from tests.apptest_utils import notices, rerun, run_page, texts, run_page_with_numbers
from ui import jobs
from ui.views import induction as views

PAGE = "induction"


@pytest.fixture(scope="module")
def default_page():
    return run_page(PAGE, timeout=120)


def test_defaults_draw_every_section(default_page):
    at = default_page
    assert at.title[0].value == "The sum at work"
    headers = [h.value for h in at.header]
    assert any(h.startswith("1 ·") for h in headers) and any(h.startswith("6 ·") for h in headers)
    assert not notices(at)
    said = texts(at)
    for phrase in ("Elhage et al.", "Olsson et al.", "phase change", "K-composition", "ln V"):
        assert phrase in said
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["loss on repeated positions"]) < float(metrics["loss on the other positions"])
    assert abs(float(metrics["difference"])) < 1e-10  # the sum of the terms is the logit
    assert len(at.get("vega_lite_chart")) == 8  # sequence, curve (2), patterns, waterfall, ablation, composition, QK path
    # the page never trains on load: the training section waits for a press
    assert any("Press **Train**" in i.value for i in at.info)


def test_numbers_in_prose_come_from_the_shipped_metrics(default_page):
    m = ind.load()[1]["metrics"]
    said = texts(default_page)
    assert f"{m['loss_repeat']:.3f} nats" in said
    assert f"{m['loss_repeat_without_induction_heads']:.3f}" in said
    assert m["prev_token_head"] in said


def _scores_table(at):
    return next(df for df in at.dataframe if "induction score" in df.value.columns)


def test_tables_stay_numeric_and_blank_is_blank(default_page):
    table = _scores_table(default_page)
    assert table.value["induction score"].dtype.kind == "f"
    assert table.value.isna().any().any()  # the 512-sequence columns are missing for the other layer...
    assert table.proto.placeholder == ""  # ...and drawn as empty cells, as the caption says (not "None")
    assert any("blank where the score is not what that layer is for" in c.value for c in default_page.caption)


def test_a_degenerate_sequence_is_described_from_its_numbers():
    """sequence=zzzzzzzz (issue 18, item 9): 1.640 against 1.649 nats is about the same, not "1.0× less";
    every earlier z is one back, so the per-sequence induction score is blank, with the reason."""
    at = run_page(PAGE, {"sequence": "zzzzzzzz"}, timeout=120)
    said = texts(at)
    assert "1.0× less" not in said and not re.search(r"\b1\.0× (less|more)", said)
    assert "about the same" in said
    scores = _scores_table(at).value
    assert scores["induction score"].isna().all()  # not 0.857 for the layer-0 heads
    assert "the induction score is blank" in said and "6 repeated positions are left out" in said


def test_a_sequence_of_the_task_scores_its_induction_heads_above_layer_0(default_page):
    scores = _scores_table(default_page).value.set_index("head")["induction score"]
    assert min(scores["L1H0"], scores["L1H1"]) > max(scores["L0H0"], scores["L0H1"])
    n_scored = views.sequence_view(0, "")["n_scored"]
    assert f"averages over {n_scored} repeated positions" in texts(default_page)


@pytest.mark.parametrize("query, last, note", [
    ({"sequence": "abcabcabc", "position": "27"}, 7, "the position moved from 27 to 7"),
    ({"sequence": "abc", "position": "20"}, 1, "the position moved from 20 to 1"),
])
def test_a_position_past_the_sequence_moves_slider_link_and_section_together(query, last, note):
    """Issue 18, item 10: the slider, the URL and the section all say the last valid position."""
    at = run_page(PAGE, query, timeout=120)
    assert at.slider(key="position").value == last
    assert at.query_params["position"] in (str(last), [str(last)])
    assert f"At position {last} " in texts(at)
    assert any(note in n for n in notices(at)), notices(at)
    rerun(at)  # the notice belonged to the clamping run; the position stays
    assert at.slider(key="position").value == last and f"At position {last} " in texts(at)


def test_the_default_position_moves_into_a_short_typed_sequence():
    at = run_page(PAGE, {"sequence": "abcabcabc"}, timeout=120)
    assert at.slider(key="position").value == 7
    assert "At position 7 " in texts(at) and not notices(at)
    assert any("moved to 7, its last repeated position" in c.value for c in at.caption)


def test_a_chosen_position_moves_when_the_sequence_gets_shorter(default_page):
    at = run_page(PAGE, {"position": "25"}, timeout=120)
    at.text_input(key="sequence").input("abcdabcd")
    rerun(at)
    assert at.slider(key="position").value == 6
    assert "At position 6 " in texts(at)
    assert any("the position moved from 25 to 6" in n for n in notices(at)), notices(at)


@pytest.mark.parametrize("query, expect", [
    ({"seed": "7"}, "Seed 7 draws"),
    ({"sequence": "theCatSatOnTheCatSat"}, "Your sequence has 20 tokens"),
    ({"sequence": "1, 2, 3, 1, 2, 3"}, "Your sequence has 6 tokens"),
    ({"position": "5"}, "At position 5"),
    ({"ablate": "0.0"}, "Your choice, 0.0"),
    ({"ablate": "L1H0,1.1", "ablation": "mean"}, "With mean ablation"),
])
def test_each_control_from_the_link(query, expect):
    at = run_page(PAGE, query, timeout=120)
    assert expect in texts(at), texts(at)[:3000]
    assert not notices(at)


def test_widgets_move(default_page):
    at = default_page
    at.slider(key="position").set_value(23)
    rerun(at)
    assert "At position 23" in texts(at)
    at.text_input(key="ablate").input("1.1")
    rerun(at)
    assert "Your choice, 1.1" in texts(at)
    at.text_input(key="sequence").input("abcdefabcdef")
    rerun(at)
    assert "Your sequence has 12 tokens" in texts(at)
    at.number_input(key="seed").set_value(3)
    rerun(at)


@pytest.mark.parametrize("query, expect", [
    ({"sequence": "😀" * 20 + "<b>x</b>"}, "not in the model's alphabet"),
    ({"sequence": "a" * 10_000}, "characters long"),
    ({"sequence": "é€"}, "Showing the random sequence"),
    ({"sequence": "99, 100"}, "outside 0–51"),
    ({"sequence": "abc", "position": "20"}, "last position with a next letter is 1"),
    ({"position": "999"}, "outside the allowed range"),
    ({"position": "inf"}, "not a finite number"),
    ({"position": "two"}, "not a number"),
    ({"ablate": "x.y,9.9,1.0"}, "is not a head"),
    ({"ablate": "<script>alert(1)</script>"}, "is not a head"),
    ({"ablation": "half"}, "not one of zero, mean"),
    ({"heads": "3"}, "don't divide"),
    ({"heads": "64"}, "outside the allowed range"),
    ({"steps": "100000000"}, "outside the allowed range"),
    ({"train_seed": "-1"}, "outside the allowed range"),
    ({"seed": "1e400"}, "not a finite number"),
])
def test_hostile_links_get_a_notice_and_a_working_page(query, expect):
    at = run_page(PAGE, query, timeout=120)
    assert any(expect in n for n in notices(at)), notices(at)
    assert at.title[0].value == "The sum at work"
    assert any(h.value.startswith("5 ·") for h in at.header)  # the essay goes on


def test_a_link_to_an_untrained_setting_does_not_train(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the page trained on load")

    monkeypatch.setattr(ind, "train", refuse)
    at = run_page(PAGE, {"train_seed": "31337", "heads": "1", "steps": "100"}, timeout=120)
    assert any("Press **Train**" in i.value for i in at.info)


def test_training_on_a_press_then_a_shared_link_shows_it_without_training(monkeypatch):
    query = {"train_seed": "777", "heads": "1", "steps": "100"}
    at = run_page(PAGE, query, timeout=120)
    at.button(key="train").click()
    rerun(at)
    assert any("Trained 100 steps from seed 777 with 1 head" in s.value for s in at.success), texts(at)[-2000:]
    assert any("your run" in df.value.columns for df in at.dataframe)

    def refuse(*args, **kwargs):
        raise AssertionError("a shared link retrained")

    monkeypatch.setattr(ind, "train", refuse)
    other = run_page(PAGE, query, timeout=120)  # another reader opens the same link
    assert any("Trained 100 steps from seed 777" in s.value for s in other.success)


def test_a_second_reader_pressing_train_while_one_trains_is_told_to_wait_then_sees_that_run(monkeypatch):
    """Training goes through ui.jobs.run_job: one long job per server, the result stored for every
    reader of the same settings. The second reader presses Train while the first reader's training
    is running (inside it, so the order is certain), is told to wait, and on its next run sees the
    first reader's result without training."""
    from streamlit.runtime import Runtime

    query = {"train_seed": "4040", "heads": "1", "steps": "100"}
    jobs.result_store().discard(views.train_key(4040, 1, 100))
    first, second = run_page(PAGE, query, timeout=120), run_page(PAGE, query, timeout=120)
    real_train, trained = ind.train, []

    def train_while_another_reader_presses(cfg, progress=None):
        saved = Runtime._instance  # AppTest's stand-in runtime is global: keep the first run's
        try:
            second.button(key="train").click()
            rerun(second)
        finally:
            Runtime._instance = saved
        trained.append(cfg.seed)
        return real_train(cfg, progress)

    monkeypatch.setattr(ind, "train", train_while_another_reader_presses)
    first.button(key="train").click()
    rerun(first)
    assert trained == [4040]  # the second press did not train
    assert any("Another reader is training a model or running a benchmark" in w.value for w in second.warning)
    assert any("Press **Train**" in i.value for i in second.info)
    assert any("Trained 100 steps from seed 4040 with 1 head" in s.value for s in first.success), texts(first)[-2000:]
    rerun(second)  # the second reader's next run, without a press: the first reader's run, shared
    assert any("Trained 100 steps from seed 4040 with 1 head" in s.value for s in second.success)
    assert trained == [4040]


_values = hyp.one_of(
    hyp.integers(-(2**70), 2**70).map(str),
    hyp.floats(allow_nan=True, allow_infinity=True).map(repr),
    hyp.sampled_from(["", " ", "nan", "inf", "0.0,1.1", "L1H0", "1.", ".1", "1..1", "٣.٣", "\u202e", "\x00",
                      "<script>alert(1)</script>", "**bold** $x$ `code`", "🙂" * 300, "a" * 10_000, "mean"]),
    hyp.text(max_size=60),
)


@settings(max_examples=12, deadline=None)
@given(query=hyp.dictionaries(
    hyp.sampled_from(["seed", "sequence", "position", "ablate", "ablation", "train_seed", "heads", "steps"]),
    hyp.one_of(_values, hyp.lists(_values, min_size=2, max_size=3)), max_size=5))
def test_any_value_of_this_pages_controls_gives_a_working_page(query):
    at = run_page(PAGE, query, timeout=120)
    assert at.title[0].value == "The sum at work"
    assert "Traceback" not in texts(at)


def _nudged_shipped_training(monkeypatch, nudge: float):
    """Stand in for core.induction.train: the shipped weights with one entry moved by ``nudge``, as a
    retrain on another processor would move them (the real retrain is tests/test_induction_core.py's)."""
    model, meta = ind.load()
    state = model.state_dict()
    state["blocks.1.attn.W_K"][0, 3, 5] += nudge

    def fake_train(cfg, progress=None):
        if progress is not None:
            progress(cfg.steps, cfg.steps, meta["metrics"]["loss_repeat"])
        curve = ind.curve_frame(meta)
        return ind.TrainResult(ind.InductionModel.from_state_dict(state), cfg, curve, 1.0, 1.0)

    monkeypatch.setattr(ind, "train", fake_train)
    return state


@pytest.mark.parametrize("nudge", [0.0, 0.004])
def test_retraining_the_shipped_configuration_says_how_far_it_landed(monkeypatch, nudge):
    """Issue 18 §1 on the page: a retrain of seed 0 reports the largest weight difference from the
    shipped weights and the metric differences, beside both processors (core's numbers)."""
    jobs.result_store().discard(views.train_key(ind.Config().seed, ind.Config().n_heads, ind.Config().steps))
    try:
        _nudged_shipped_training(monkeypatch, nudge)
        at = run_page(PAGE, timeout=120)  # the training controls start at the shipped configuration
        at.button(key="train").click()
        rerun(at)
        said = texts(at)
        shipped_w = ind.load()[0].state_dict()["blocks.1.attn.W_K"]
        if nudge:
            assert f"the largest difference is {nudge:.2e} in `blocks.1.attn.W_K`" in said, said[-3000:]
            assert f"{nudge / float(shipped_w.abs().max()):.2%} of that tensor's largest entry" in said
            assert "the same heads form the circuit" in said
        else:
            assert "equals the shipped one bit for bit" in said
        frames = {tuple(df.value.columns): df.value for df in at.dataframe}
        machines = next(f for cols, f in frames.items() if cols == ("trained with", "your run", "shipped run"))
        mine, record = ind.this_machine(), ind.load()[1]["trained_on"]
        assert machines["your run"].tolist() == [mine["cpu"], mine["capability"], mine["torch"]]
        assert machines["shipped run"].tolist() == [record["cpu"], record["capability"], record["torch"]]
        versus = next(f for cols, f in frames.items() if "difference" in cols)
        assert (versus["difference"].abs() < 0.05).all()
        weights = next(f for cols, f in frames.items() if "largest entry" in cols)
        assert weights["largest difference"].max() == pytest.approx(nudge, abs=1e-7)
    finally:  # a nudged run must not stand for the shipped configuration in later tests
        jobs.result_store().discard(views.train_key(ind.Config().seed, ind.Config().n_heads, ind.Config().steps))


def test_another_configuration_has_no_weights_to_compare(monkeypatch):
    at = run_page(PAGE, {"train_seed": "5150", "heads": "1", "steps": "100"}, timeout=120)
    at.button(key="train").click()
    rerun(at)
    said = texts(at)
    assert "is not the shipped configuration" in said and "Seed 5150 with 1 head and 100 steps" in said
    assert not any("largest entry" in df.value.columns for df in at.dataframe)


def test_the_page_names_both_processors_and_no_longer_promises_identical_weights(default_page):
    said = texts(default_page)
    assert "same model on any CPU" not in said
    mine = ind.this_machine()
    assert f"{mine['capability']} kernels on {mine['cpu']}" in said
    assert ind.load()[1]["trained_on"]["cpu"] in said


# ---- checkpoints (issue 21) ------------------------------------------------------------------------

from core.checkpoints import induction as cps  # noqa: E402


def _predicts(at):
    return {r.label: r for r in at.radio if r.label.startswith("Predict:")}


def _radio(at, start):
    (radio,) = [r for label, r in _predicts(at).items() if label.startswith(f"Predict: {start}")]
    return radio


CHECKPOINT_SETTINGS = [
    ({}, 0, ""),  # defaults: seed 0's drawn sequence, the induction heads, zero ablation
    ({"sequence": "abcabc", "ablate": "0.1"}, 0, "abcabc"),  # small, and the reader's own head
    ({"sequence": "zzzzzzzz", "ablate": "0.0", "ablation": "mean"}, 0, "zzzzzzzz"),  # degenerate, mean
    ({"sequence": "ab", "ablate": "1.0"}, 0, "ab"),  # two tokens: one key to choose besides the query
    ({"seed": "11"}, 11, ""),
]


@pytest.mark.parametrize("query, seed, text", CHECKPOINT_SETTINGS)
def test_checkpoints_agree_with_the_figures_below_them(query, seed, text):
    at = run_page_with_numbers(PAGE, query, timeout=120)
    assert len(_predicts(at)) == 2

    # Where the induction head looks: the right key is the largest weight in the heatmaps' own table.
    attend = _radio(at, "In the heatmaps below")
    cp = views.attend_checkpoint(seed, text)
    assert attend.options == list(cp.options) and attend.value is None
    view = views.sequence_view(seed, text)
    head = int(ind.load()[1]["metrics"]["induction_head"][3:])
    query_label = view["labels"][cps.question_position(view["repeat_positions"], len(view["ids"]))]
    patterns = view["patterns"]["arrow"].to_pandas()  # the heatmaps' own table, as the page draws it
    row = patterns[(patterns["layer"] == 1) & (patterns["head"] == head) & (patterns["query"] == query_label)]
    biggest = row.loc[row["weight"].idxmax()]
    assert [o for o in attend.options if o == biggest["key"]] == [cp.right]
    assert f"query {query_label}" in attend.label

    # Removing heads: the right band is the one the ablation chart's own number falls in.
    knock = _radio(at, "Remove")
    table = next(df.value for df in at.dataframe if "loss_repeat_zero" in df.value.columns)
    mode = query.get("ablation", "zero")
    asked = table["removed"].iloc[-1] if "ablate" in query else "the induction heads"
    by = table.set_index("removed")
    band = cps.knockout_category(by.loc[asked, f"loss_repeat_{mode}"], by.loc["nothing", f"loss_repeat_{mode}"],
                                 ind.load()[1]["metrics"]["ln_vocab"])
    right = [o for o in knock.options if o.startswith(cps.KNOCKOUT_OPTIONS[band].split("{")[0][:18])]
    assert len(right) == 1
    knock.set_value(right[0]).run()
    assert at.success and f"{by.loc[asked, f'loss_repeat_{mode}']:.3f} nats" in at.success[0].value


def test_the_attention_answer_changes_with_the_sequence():
    rights = {views.attend_checkpoint(seed, text).right for _, seed, text in CHECKPOINT_SETTINGS}
    assert len(rights) >= 3


def test_a_wrong_guess_names_the_right_key_and_a_new_sequence_resets_it():
    at = run_page(PAGE, {"sequence": "abcdabcd"}, timeout=120)
    cp = views.attend_checkpoint(0, "abcdabcd")
    wrong = next(o for o in cp.options if o != cp.right)
    _radio(at, "In the heatmaps below").set_value(wrong).run()
    assert any(f"the answer is {cp.right}" in e.value for e in at.error)
    at.text_input(key="sequence").input("xyzxyzxyz")
    rerun(at)
    fresh = _radio(at, "In the heatmaps below")
    assert fresh.value is None and fresh.options == list(views.attend_checkpoint(0, "xyzxyzxyz").options)


def test_quiz_folds_the_heatmaps_and_the_ablation_until_answered():
    at = run_page(PAGE, {"quiz": "1"}, timeout=120)
    assert len(at.get("vega_lite_chart")) == 6  # the heatmaps and the ablation chart wait
    assert not any("takes the loss on repeated positions" in m.value for m in at.markdown)
    for _ in range(2):  # one reveal per checkpoint; each run redraws the buttons
        next(b for b in at.button if b.label == "Reveal the answer").click()
        rerun(at)
    assert not [b for b in at.button if b.label == "Reveal the answer"]
    assert len(at.get("vega_lite_chart")) == 8
    assert any("takes the loss on repeated positions" in m.value for m in at.markdown)


def test_a_two_token_sequence_moves_the_default_position_quietly():
    at = run_page(PAGE, {"sequence": "ab"}, timeout=120)
    assert at.slider(key="position").value == 0 and "At position 0 " in texts(at)
    assert not notices(at)
    assert any("moved to 0, its last position with a next letter" in c.value for c in at.caption)
    assert "0 of its positions are followed" in texts(at)
