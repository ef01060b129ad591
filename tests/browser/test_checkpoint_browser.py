"""Checkpoints in a real browser: a guess in one tab shows in a teacher tab's tally; screenshots."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core.rooms import new_room_code
from tests.browser.harness import (
    assert_no_exception, dark_context, element_screenshot, new_context, open_app, rerun_after,
)

pytestmark = pytest.mark.browser

BOX = ".st-key-checkpoint-home-wo_slice"  # the home checkpoint's container (its key)


def _caption(page, room: str):
    return page.locator("[data-testid=stCaptionContainer]", has_text=f"How room {room} guessed")


def test_a_guess_in_one_tab_shows_in_the_teacher_tab(browser, server, page):
    room = new_room_code()
    teacher = new_context(browser, viewport={"width": 1280, "height": 900}).new_page()
    try:
        open_app(teacher, server, "", {"room": room, "teacher": "1"})
        expect(_caption(teacher, room)).to_contain_text("0 readers so far")
        assert "right" not in _caption(teacher, room).inner_text()

        open_app(page, server, "", {"room": room, "quiz": "1"})
        box = page.locator(BOX)
        expect(box.locator("[data-testid=stRadio]")).to_contain_text("Predict:")
        # No spoiler in the DOM before a guess: neither the why nor the folded readout.
        html = page.content()
        assert "rows hL" not in html and "`W_O[0]`" not in html and "W_O[0]</code> is" not in html
        expect(page.get_by_text("Make your prediction above")).to_be_visible()
        element_screenshot(box, "checkpoint-light-before")

        with rerun_after(page):
            box.get_by_test_id("stRadioGroup").get_by_text("512", exact=True).click()
        expect(box.locator("[data-testid=stAlertContentError]")).to_contain_text("the answer is 32,768")
        expect(_caption(page, room)).to_contain_text("1 reader so far, 0 readers right")
        expect(page.get_by_text("Make your prediction above")).to_have_count(0)
        assert_no_exception(page)
        element_screenshot(box, "checkpoint-light-after")

        # The teacher's tally refreshes on its own (a fragment every few seconds).
        expect(_caption(teacher, room)).to_contain_text("1 reader so far", timeout=20_000)
        with rerun_after(teacher):
            teacher.locator(BOX).get_by_role("button", name="Reveal the answer").click()
        expect(teacher.locator(BOX).locator("[data-testid=stAlertContentInfo]")).to_contain_text("32,768")
        expect(_caption(teacher, room)).to_contain_text("1 reader so far, 0 readers right")
        element_screenshot(teacher.locator(BOX), "checkpoint-teacher-revealed")
    finally:
        teacher.context.close()


def test_checkpoint_in_the_dark_theme(browser, server):
    room = new_room_code()
    context = dark_context(browser)
    try:
        page = context.new_page()
        open_app(page, server, "", {"room": room})
        box = page.locator(BOX)
        element_screenshot(box, "checkpoint-dark-before")
        with rerun_after(page):
            box.get_by_test_id("stRadioGroup").get_by_text("32,768", exact=True).click()
        expect(box.locator("[data-testid=stAlertContentSuccess]")).to_contain_text("Right: 32,768")
        expect(_caption(page, room)).to_contain_text("1 reader so far, 1 reader right")
        expect(box.locator("[data-testid=stVegaLiteChart] svg.marks, [data-testid=stVegaLiteChart] canvas")
               .first).to_be_attached()
        assert_no_exception(page)
        element_screenshot(box, "checkpoint-dark-after")
    finally:
        context.close()
