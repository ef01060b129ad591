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


def test_the_class_link_survives_a_control_and_the_guess_counts_in_the_room(browser, server, page):
    """A student opens a class link (`room`, `quiz`) on a content page and moves a URL-bound control
    (heads on concat-vs-sum): the link keeps `room` and `quiz`, the question follows the new heads,
    and a guess there is counted in the room, as a teacher's tab on the same link shows."""
    import re

    room = new_room_code()
    page.set_viewport_size({"width": 1280, "height": 3000})
    open_app(page, server, "concat-vs-sum", {"seq": "6", "d_model": "32", "heads": "4", "room": room, "quiz": "1"})
    heads = page.get_by_label("Heads H", exact=True)
    with rerun_after(page):
        heads.fill("2")  # not the default (8), so the URL keeps it
        heads.press("Enter")
    expect(page).to_have_url(re.compile(r"[?&]heads=2(&|$)"))
    expect(page).to_have_url(re.compile(rf"[?&]room={room}(&|$)"))
    expect(page).to_have_url(re.compile(r"[?&]quiz=1(&|$)"))

    box = page.locator(".st-key-checkpoint-concat_vs_sum-head_terms")
    expect(box).to_contain_text("H = 2")
    box.scroll_into_view_if_needed()
    with rerun_after(page):
        box.get_by_test_id("stRadioGroup").get_by_text("2", exact=True).click()
    expect(box.locator("[data-testid=stAlertContentSuccess]")).to_contain_text("Right: 2")
    expect(_caption(page, room)).to_contain_text("1 reader so far, 1 reader right")
    # Still the class's link after the guess (a rerun of its own).
    expect(page).to_have_url(re.compile(rf"[?&]room={room}(&|$)"))
    expect(page).to_have_url(re.compile(r"[?&]quiz=1(&|$)"))
    assert_no_exception(page)

    # The teacher opens the student's current URL with teacher=1: the same settings, the same tally.
    teacher = new_context(browser, viewport={"width": 1280, "height": 3000}).new_page()
    try:
        open_app(teacher, server, "concat-vs-sum", {"seq": "6", "d_model": "32", "heads": "2", "room": room,
                                                   "teacher": "1"})
        tally = teacher.locator(".st-key-checkpoint-concat_vs_sum-head_terms").locator(
            "[data-testid=stCaptionContainer]", has_text=f"How room {room} guessed")
        expect(tally).to_contain_text("1 reader so far", timeout=20_000)
    finally:
        teacher.context.close()


def test_the_sidebar_keeps_a_student_in_the_room(page, server):
    """The sidebar opens the next page with a bare URL; the session writes its room and quiz back, so
    the new page's answering figures stay folded and its guesses count in the room."""
    import re

    room = new_room_code()
    page.set_viewport_size({"width": 1280, "height": 3000})
    open_app(page, server, "concat-vs-sum", {"room": room, "quiz": "1"})
    with rerun_after(page):
        page.get_by_role("link", name="The shape table").first.click()
    expect(page).to_have_url(re.compile(r"/shapes\?"))
    expect(page).to_have_url(re.compile(rf"[?&]room={room}(&|$)"))
    expect(page).to_have_url(re.compile(r"[?&]quiz=1(&|$)"))
    box = page.locator(".st-key-checkpoint-shapes-positions_meet")
    expect(page.get_by_text("Make your prediction above").first).to_be_visible()
    box.scroll_into_view_if_needed()
    with rerun_after(page):
        box.get_by_test_id("stRadioGroup").get_by_text("step 6: scores q·kᵀ", exact=True).click()
    expect(box.locator("[data-testid=stAlertContentSuccess]")).to_contain_text("Right: step 6")
    expect(_caption(page, room)).to_contain_text("1 reader so far, 1 reader right")
    assert_no_exception(page)
