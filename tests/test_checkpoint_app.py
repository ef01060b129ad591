"""The checkpoint widget under AppTest: guess, reveal, reset, quiz folding, hostile links, rooms."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest_utils import open_numbers, texts


def _script():
    """A page with one checkpoint whose right answer depends on a control (`n`), and its figure."""
    import streamlit as st

    from core.checkpoints import choice, fingerprint
    from ui.checkpoint import checkpoint, unfolded

    n = st.number_input("n", 1, 50, 4, key="n", bind="query-params")
    cp = choice("demo.square", f"What is {n} squared?", str(n * n),
                [str(2 * n), str(n + n + 1), str(n * n + 1)],
                f"The figure shows {n} × {n} = {n * n}.", fingerprint(n=n))
    checkpoint(cp)
    if unfolded(cp):
        st.markdown(f"FIGURE: {n * n}")


def _run(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_function(_script, default_timeout=30)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _radio(at: AppTest):
    (radio,) = [r for r in at.radio if r.label.startswith("Predict:")]
    return radio


def _click(at: AppTest, label: str) -> AppTest:
    [b for b in at.button if b.label == label][0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_question_has_no_preselected_option_and_no_spoiler():
    at = _run()
    radio = _radio(at)
    assert radio.label == "Predict: What is 4 squared?"
    assert radio.value is None
    assert "16" in radio.options
    body = texts(at)
    assert "The figure shows" not in body and not at.success and not at.error and not at.info
    assert "FIGURE: 16" in body  # nothing of the essay is hidden by default


def test_right_guess_is_acknowledged_with_why():
    at = _run()
    _radio(at).set_value("16").run()
    assert len(at.success) == 1 and "16" in at.success[0].value
    assert "The figure shows 4 × 4 = 16." in at.success[0].value
    assert not at.error


def test_wrong_guess_states_the_right_answer():
    at = _run()
    _radio(at).set_value("8").run()
    assert len(at.error) == 1
    assert "the answer is 16" in at.error[0].value and "4 × 4 = 16" in at.error[0].value
    assert not at.success


def test_reveal_without_guessing():
    at = _run()
    _click(at, "Reveal the answer")
    assert len(at.info) == 1 and "16" in at.info[0].value
    assert not [b for b in at.button if b.label == "Reveal the answer"]


def test_a_changed_setting_resets_the_guess():
    at = _run()
    _radio(at).set_value("16").run()
    assert at.success
    at.number_input(key="n").set_value(5).run()
    assert _radio(at).value is None and _radio(at).label == "Predict: What is 5 squared?"
    assert not at.success and not at.error and not at.info


def test_a_reveal_is_reset_by_a_changed_setting():
    at = _run()
    _click(at, "Reveal the answer")
    at.number_input(key="n").set_value(3).run()
    assert not at.info and [b for b in at.button if b.label == "Reveal the answer"]


def test_quiz_folds_the_figure_until_guessed():
    at = _run({"quiz": "1"})
    body = texts(at)
    assert "FIGURE" not in body and "Make your prediction above" in body
    _radio(at).set_value("8").run()
    assert "FIGURE: 16" in texts(at)


def test_quiz_unfolds_on_reveal():
    at = _run({"quiz": "true"})
    _click(at, "Reveal the answer")
    assert "FIGURE: 16" in texts(at)


HOSTILE = ["x" * 10_000, "🎓🔥", "<b>**bold**</b>", "`$x$`", "a b", "-1"]


@pytest.mark.parametrize(("name", "value"), [
    *[(n, v) for n in ("quiz", "teacher", "room") for v in HOSTILE],
    ("quiz", "maybe"), ("teacher", "2"), ("room", "THIRTEENCHARS"), ("room", "ä1"),
])
def test_hostile_link_values_give_a_notice_and_a_working_page(name, value):
    at = _run({name: value})
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and f"`{name}=" in warnings[0], warnings
    assert len(warnings[0]) < 400
    assert "FIGURE: 16" in texts(at)  # quiz stays off: nothing folded
    _radio(at).set_value("16").run()
    assert at.success


def _tally(at: AppTest) -> dict[str, int]:
    open_numbers(at)  # the counts table sits in the tally's numbers section
    (table,) = [d.value for d in at.dataframe if "count" in d.value.columns]
    return dict(zip(table["option"], table["count"]))


def test_several_sessions_in_one_room_give_the_right_counts():
    room = "T" + __import__("secrets").token_hex(4)
    guesses = ["16", "16", "8", "9", "16", "8"]
    readers = []
    for g in guesses:
        at = _run({"room": room})
        assert not at.dataframe  # no tally before this reader has guessed
        _radio(at).set_value(g).run()
        readers.append(at)
    readers[0].run()  # a rerun never counts twice
    _radio(readers[1]).set_value("9").run()  # a changed guess moves the count
    final = ["16", "9", "8", "9", "16", "8"]
    counts = _tally(readers[0].run())
    assert counts == {o: final.count(o) for o in _radio(readers[0]).options}
    assert sum(counts.values()) == len(guesses)
    captions = " ".join(c.value for c in readers[0].caption)
    assert f"How room {room.upper()} guessed: 6 readers so far, 2 readers right" in captions


def test_teacher_sees_the_tally_before_guessing_without_the_answer():
    room = "T" + __import__("secrets").token_hex(4)
    student = _run({"room": room})
    _radio(student).set_value("8").run()
    teacher = open_numbers(_run({"room": room, "teacher": "1"}))
    (table,) = [d.value for d in teacher.dataframe]
    assert "right" not in table.columns and dict(zip(table["option"], table["count"]))["8"] == 1
    assert not teacher.success and not teacher.error and not teacher.info
    assert "right" not in " ".join(c.value for c in teacher.caption)
    _click(teacher, "Reveal the answer")
    (table,) = [d.value for d in teacher.dataframe]
    assert list(table.loc[table["right"] == "yes", "option"]) == ["16"]
    _radio(teacher).set_value("16").run()  # the teacher's own guess is not counted
    assert sum(_tally(teacher).values()) == 1


def _two_checkpoints():
    import streamlit as st

    from core.checkpoints import choice, fingerprint
    from ui.checkpoint import checkpoint

    for name in ("one", "two"):
        checkpoint(choice(f"demo.{name}", f"Question {name}?", "yes", ["no"], "Because.", fingerprint()))
    st.markdown("END")


def test_a_bad_link_value_is_noticed_once_per_page_run():
    at = AppTest.from_function(_two_checkpoints, default_timeout=30)
    at.query_params["room"] = "bad room!"
    at.query_params["quiz"] = "perhaps"
    at.run()
    assert not at.exception
    assert len(at.warning) == 2  # one for room, one for quiz: not repeated by the second checkpoint
    [r for r in at.radio if r.label == "Predict: Question two?"][0].set_value("no").run()
    assert len(at.warning) == 2 and len(at.error) == 1


def test_teacher_without_a_room_is_told_what_is_missing():
    at = _run({"teacher": "1"})
    assert len(at.warning) == 1 and "no room" in at.warning[0].value
    assert not at.dataframe and "FIGURE: 16" in texts(at)
