"""The trained-model page in a real browser: every figure draws, the ablation picker (a fragment)
reruns its section and writes the URL, and the page reads in the light and the dark theme."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from tests.browser.harness import (
    assert_no_exception, charts_drawn, element_screenshot, open_app, rerun_after, screenshot,
)

pytestmark = pytest.mark.browser

PATH = "induction"
CHARTS = "[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg.marks"
N_CHARTS = 8  # sequence losses, training curve (losses, scores), patterns, waterfall, ablation, composition, QK path


def _params(page) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


def test_figures_draw_and_the_ablation_picker_reruns_its_section(page, server):
    open_app(page, server, PATH)
    main = page.locator("[data-testid=stMain]")
    expect(main.locator("h1").first).to_have_text("The sum at work")
    page.wait_for_function(f"document.querySelectorAll('{CHARTS}').length >= {N_CHARTS}", timeout=60_000)
    assert charts_drawn(page) >= N_CHARTS
    expect(page.locator(".katex").nth(4)).to_be_attached()  # at least 5 formulas typeset, not raw TeX
    expect(main.get_by_text("Press Train", exact=False)).to_be_visible()  # nothing trained on load
    screenshot(page, "induction")

    box = page.locator(".st-key-ablate input")
    with rerun_after(page):
        box.fill("0.0")
        box.press("Enter")
    assert_no_exception(page)
    expect(main.get_by_text("Your choice, 0.0", exact=False)).to_be_visible(timeout=30_000)
    expect(page).to_have_url(re.compile(r"[?&]ablate=0\.0(&|$)"))  # the URL waits for the run's update
    assert _params(page).get("ablate") == "0.0"
    expect(page.locator(".st-key-seed input")).to_have_value("0")  # page-level controls untouched


def test_dark_theme_and_a_hostile_link(page, server):
    page.emulate_media(color_scheme="dark")
    open_app(page, server, PATH, {"sequence": "theCatSatOnTheCatSat<b>!</b>", "ablate": "9.9", "position": "12"})
    main = page.locator("[data-testid=stMain]")
    page.wait_for_function(f"document.querySelectorAll('{CHARTS}').length >= {N_CHARTS}", timeout=60_000)
    expect(main.get_by_text("not in the model's alphabet", exact=False)).to_be_visible()
    expect(main.get_by_text(re.compile("this model has layers 0–1"))).to_be_visible()
    expect(main.locator("b", has_text="!")).to_have_count(0)  # markup stays text
    background = page.evaluate("getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor")
    assert background != "rgb(255, 255, 255)", background
    screenshot(page, "induction_dark")


def test_a_position_past_a_short_sequence_moves_slider_link_and_section_together(page, server):
    """Issue 18, item 10, in a real browser: the link is rewritten before the slider is drawn."""
    open_app(page, server, PATH, {"sequence": "abcabcabc", "position": "27"})
    main = page.locator("[data-testid=stMain]")
    expect(main.get_by_text("the position moved from 27 to 7", exact=False)).to_be_visible()
    expect(page).to_have_url(re.compile(r"[?&]position=7(&|$)"))
    expect(page.get_by_role("slider", name="Position i")).to_have_value("7")
    expect(main.get_by_text("At position 7 the letter is", exact=False)).to_be_visible()


def test_a_checkpoint_asks_before_the_heatmaps_and_quiz_folds_them(page, server):
    open_app(page, server, PATH, {"quiz": "1", "sequence": "abcdabcd"})
    main = page.locator("[data-testid=stMain]")
    box = page.locator(".st-key-checkpoint-induction-attend_most")
    expect(box.get_by_text("Predict:", exact=False)).to_be_visible()
    expect(main.get_by_text("Make your prediction above", exact=False).first).to_be_visible()
    element_screenshot(box, "induction_checkpoint_before")
    drawn = charts_drawn(page)
    with rerun_after(page):
        box.get_by_role("button", name="Reveal the answer").click()
    expect(box.get_by_text("The answer:", exact=False)).to_be_visible()
    page.wait_for_function(f"document.querySelectorAll('{CHARTS}').length > {drawn}", timeout=60_000)
    element_screenshot(box, "induction_checkpoint_after")
