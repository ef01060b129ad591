"""The sentence page in a real browser: the heatmaps draw, a control writes the URL, markup stays text."""

from __future__ import annotations

import pytest

from tests.browser.harness import assert_no_exception, charts_drawn, open_app, rerun_after, screenshot
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

PATH = "toy-sentence"


def _dismiss_dialogs(page) -> None:
    """A fresh server greets its first deep link with Streamlit's "Page not found" modal
    (streamlit/streamlit#9992) over the right page; close it so the screenshot shows the page."""
    if page.locator("[role=dialog]").count():
        page.keyboard.press("Escape")
        page.wait_for_timeout(300)


def _full_page_shot(page, name: str) -> None:
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": 1280, "height": min(height + 100, 16_000)})
    page.wait_for_timeout(1200)  # charts re-fit to the new width
    screenshot(page, name)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_heatmaps_draw_and_controls_write_the_url(page, server):
    open_app(page, server, PATH, {"causal": "true"})
    _dismiss_dialogs(page)
    main = page.locator("[data-testid=stMain]")
    assert "Attention on a sentence" in main.locator("h1").first.inner_text()
    # embeddings, entropy, 4 weight maps, the first head's term map, output (other head tabs are hidden)
    page.wait_for_function("document.querySelectorAll('[data-testid=stVegaLiteChart] canvas, "
                           "[data-testid=stVegaLiteChart] svg.marks').length >= 8", timeout=30_000)
    assert charts_drawn(page) >= 8
    assert page.locator(".katex").count() >= 10  # the formulas are typeset, not raw TeX
    _full_page_shot(page, "toy_sentence_causal")

    # A control writes its value into the address bar, so the view can be shared.
    heads = page.locator(".st-key-heads input")
    with rerun_after(page):
        heads.fill("2")
        heads.press("Enter")
        page.wait_for_url("**heads=2**", timeout=30_000)
    assert_no_exception(page)
    assert "causal=true" in page.url
    expect(page.locator("text=Head 1").first).to_be_visible(timeout=30_000)
    assert page.locator("text=Head 2").count() == 0


def test_markup_in_the_sentence_stays_text(page, server):
    sentence = "<b>bold</b> <img src=x onerror=alert(1)> **not bold** $x$ 👩‍💻"
    open_app(page, server, PATH, {"sentence": sentence, "token": "30", "heads": "3"})
    _dismiss_dialogs(page)
    main = page.locator("[data-testid=stMain]")
    assert main.locator("img[src=x]").count() == 0
    assert main.locator("b:has-text('bold'), strong:has-text('not bold')").count() == 0
    said = main.inner_text()
    assert "don't divide" in said and "token=30" in said
