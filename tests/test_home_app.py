"""The home page and the app shell under AppTest."""

from __future__ import annotations

import re

from tests.apptest_utils import run_page, texts


def test_home_shows_live_identity_check():
    at = run_page("home")
    assert at.title[0].value == "Multi-head attention is a sum of heads"
    labels = [m.label for m in at.metric]
    assert labels[0].startswith("Max abs diff")
    value = float(at.metric[0].value)
    assert 0 <= value < 1e-4  # float32 rounding, computed at load, not typed in
    assert re.fullmatch(r"\d+%", at.metric[2].value)
    body = texts(at)
    for symbol in ("$B$", "$S$", "$V$", "$D$", "$H$", "$L$"):
        assert symbol in body
    assert len(at.get("latex")) >= 3
    assert "Mathematical Framework for Transformer" in body


def test_app_shell_runs_home_by_default():
    at = run_page("streamlit_app.py")
    assert at.title[0].value == "Multi-head attention is a sum of heads"


def test_home_ignores_unknown_and_hostile_query_parameters():
    at = run_page("home", {"heads": "-1", "sentence": "<script>alert(1)</script>", "zzz": "💥" * 500})
    assert float(at.metric[0].value) < 1e-4


def _predict(at):
    (radio,) = [r for r in at.radio if r.label.startswith("Predict:")]
    return radio


def test_home_checkpoint_agrees_with_the_readout_below_it():
    from core.checkpoints.home import wo_slice, wo_slice_sizes

    at = run_page("home")
    radio = _predict(at)
    cp = wo_slice()
    assert radio.options == list(cp.options) and radio.value is None
    numel = wo_slice_sizes(512, 8)["slice_numel"]
    readout = [m.value for m in at.markdown if "`W_O[0]`" in m.value]
    assert readout and f"{numel:,} numbers" in readout[0]
    assert [o for o in radio.options if o == f"{numel:,}"] == [cp.right]
    radio.set_value(cp.right).run()
    assert at.success and f"{numel:,}" in at.success[0].value


def test_home_quiz_folds_the_readout_until_guessed():
    at = run_page("home", {"quiz": "1"})
    assert not [m for m in at.markdown if "`W_O[0]`" in m.value]
    assert "Make your prediction above" in texts(at)
    [b for b in at.button if b.label == "Reveal the answer"][0].click().run()
    assert [m for m in at.markdown if "`W_O[0]`" in m.value]


def test_home_room_links_carry_the_code():
    at = run_page("home", {"room": "phys101"})
    assert at.text_input(key="home_room_code").value == "phys101"
    links = [c.value for c in at.code]
    assert "/?room=PHYS101" in links[0] and links[1].endswith("/?room=PHYS101&teacher=1")
    at.selectbox(key="home_room_page").select_index(1).run()
    assert [c.value for c in at.code][0].endswith("/shapes?room=PHYS101")
    old = at.text_input(key="home_room_code").value
    [b for b in at.button if b.label == "New room code"][0].click().run()
    fresh = at.text_input(key="home_room_code").value
    assert fresh != old and re.fullmatch(r"[A-Z2-9]{6}", fresh)
    at.text_input(key="home_room_code").input("no way!").run()
    assert any("letters and digits" in e.value for e in at.error)


def test_home_room_setup_is_built_only_when_opened():
    """A student's view of home does not build the teacher's room setup (a lazy expander); opening
    it draws a fresh code and both links."""
    at = run_page("home")
    assert [e.label for e in at.expander] == ["Set up a room: a code and the two links"]
    assert not at.text_input and not at.code
    at.session_state["home_rooms"] = True
    at.run()
    assert not at.exception
    code = at.text_input(key="home_room_code").value
    assert re.fullmatch(r"[A-Z2-9]{6}", code)
    assert [c.value for c in at.code][0].endswith(f"/?room={code}")


def test_home_hostile_room_gives_a_notice_and_a_fresh_code():
    at = run_page("home", {"room": "<script>" * 100})
    assert any("`room=" in w.value for w in at.warning)
    assert re.fullmatch(r"[A-Z2-9]{6}", at.text_input(key="home_room_code").value)


def test_the_page_registry_lists_every_page_file_once():
    from tests.apptest_utils import ROOT
    from ui.registry import HOME, PAGES

    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py"))
    assert sorted(p.file for p in PAGES) == files
    assert HOME.url_path == "" and len({p.url_path for p in PAGES}) == len(PAGES)
    for page in PAGES[1:]:
        assert page.file == f"pages/{page.url_path}.py"  # the cold-start route finds pages by file name
    assert "PAGES" in (ROOT / "streamlit_app.py").read_text()
