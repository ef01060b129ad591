"""The trained-model page under AppTest: defaults, each control, hostile links, training on a press only."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hyp

from core import induction as ind
from tests.apptest_utils import notices, rerun, run_page, texts

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


def test_tables_stay_numeric(default_page):
    frames = [df.value for df in default_page.dataframe]
    assert frames
    scores = next(f for f in frames if "induction score" in f.columns)
    assert scores["induction score"].dtype.kind == "f"


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


def test_a_second_trainer_is_told_to_wait():
    at = run_page(PAGE, {"train_seed": "4040", "heads": "1", "steps": "100"}, timeout=120)
    with ind.exclusive():  # someone else's training holds the server
        at.button(key="train").click()
        rerun(at)
    assert any("Another reader is training" in w.value for w in at.warning)
    assert any("Press **Train**" in i.value for i in at.info)


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
