"""The sentence page in a real browser: the heatmaps draw, controls write the URL, the two fragments
(head picker, token picker) rerun their section and keep the URL and the page's link current,
and markup stays text."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from tests.browser.harness import (
    assert_no_exception, charts_drawn, element_screenshot, open_app, rerun_after, screenshot,
)

pytestmark = pytest.mark.browser

PATH = "toy-sentence"
CHARTS = "[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg.marks"


def _params(page) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


def _set_number(page, key: str, value: str) -> None:
    """Type into the bound number input ``key`` and wait for the run that the Enter caused."""
    box = page.locator(f".st-key-{key} input")
    with rerun_after(page):
        box.fill(value)
        box.press("Enter")
    assert_no_exception(page)


def _link_box(page):
    """The "Link to this view" code block (inside a collapsed expander: read its text content)."""
    return page.locator("[data-testid=stExpander]", has_text="Link to this view").locator("code")


def test_heatmaps_draw_and_controls_write_the_url(page, server):
    open_app(page, server, PATH, {"causal": "true"})
    main = page.locator("[data-testid=stMain]")
    expect(main.locator("h1").first).to_have_text("Attention on a sentence")
    # embeddings, entropy, all heads' weights, one head close up, the terms of all heads, output
    page.wait_for_function(f"document.querySelectorAll('{CHARTS}').length >= 6", timeout=30_000)
    assert charts_drawn(page) >= 6
    expect(page.locator(".katex").nth(9)).to_be_attached()  # at least 10 formulas typeset, not raw TeX
    screenshot(page, "toy_sentence_causal")

    # A page-level control writes its value into the address bar, so the view can be shared.
    _set_number(page, "heads", "2")
    assert _params(page).get("heads") == "2" and _params(page).get("causal") == "true"
    expect(main.get_by_text("The weights of both heads, heads 0 and 1")).to_be_visible(timeout=30_000)
    found = main.get_by_text(re.compile(r"\b[Hh]eads? 2\b|\bh2 l")).all_inner_texts()  # heads are 0 and 1
    assert not found, found


def test_head_picker_fragment_reruns_its_section_and_keeps_the_url(page, server):
    open_app(page, server, PATH, {"head": "x", "causal": "true"})
    main = page.locator("[data-testid=stMain]")
    # a hostile value of a control inside the fragment still gets its notice
    expect(main.get_by_text("The link asked for head=x", exact=False)).to_be_visible(timeout=30_000)
    expect(main.get_by_text("Head 0's weights as numbers")).to_be_visible()

    _set_number(page, "head", "2")
    expect(main.get_by_text("Head 2's weights as numbers")).to_be_visible(timeout=30_000)
    assert _params(page).get("head") == "2" and _params(page).get("causal") == "true"
    expect(_link_box(page)).to_contain_text("head=2")  # the page's link follows the picker
    expect(page.locator(".st-key-heads input")).to_have_value("4")  # page-level controls untouched

    _set_number(page, "head", "7")  # more than this layer has: said, and the last head shown
    expect(main.get_by_text("There is no head 7", exact=False)).to_be_visible(timeout=30_000)
    expect(main.get_by_text("Head 3's weights as numbers")).to_be_visible()
    assert _params(page).get("head") == "7"
    screenshot(page, "toy_sentence_head_picker")


def test_token_picker_fragment_reruns_its_section_and_keeps_the_url(page, server):
    open_app(page, server, PATH, {"seed": "3"})
    main = page.locator("[data-testid=stMain]")
    expect(main.get_by_text("Query token 0: “my”.")).to_be_visible(timeout=30_000)

    _set_number(page, "token", "3")
    expect(main.get_by_text("Query token 3: “Marcello”.")).to_be_visible(timeout=30_000)
    expect(main.get_by_text("Largest gap between the term-by-term z_3 and row 3", exact=False)).to_be_visible()
    assert _params(page).get("token") == "3" and _params(page).get("seed") == "3"
    expect(_link_box(page)).to_contain_text("token=3")
    expect(_link_box(page)).to_contain_text("seed=3")

    _set_number(page, "head", "1")  # then the other fragment: both values stay in the URL and the link
    assert _params(page).get("token") == "3" and _params(page).get("head") == "1"
    expect(_link_box(page)).to_contain_text("token=3")
    expect(_link_box(page)).to_contain_text("head=1")


def test_a_shared_link_restores_both_pickers(page, server):
    open_app(page, server, PATH, {"sentence": "the cat sat on the mat", "token": "4", "head": "3", "causal": "true"})
    main = page.locator("[data-testid=stMain]")
    expect(page.locator(".st-key-token input")).to_have_value("4")
    expect(page.locator(".st-key-head input")).to_have_value("3")
    expect(main.get_by_text("Query token 4: “the”.")).to_be_visible(timeout=30_000)
    expect(main.get_by_text("Head 3's weights as numbers")).to_be_visible()


def test_markup_in_the_sentence_stays_text(page, server):
    sentence = "<b>bold</b> <img src=x onerror=alert(1)> **not bold** $x$ 👩‍💻"
    open_app(page, server, PATH, {"sentence": sentence, "token": "30", "heads": "3"})
    main = page.locator("[data-testid=stMain]")
    expect(main.get_by_text("don't divide", exact=False).first).to_be_visible(timeout=30_000)
    expect(main.get_by_text("token=30", exact=False).first).to_be_visible()
    assert main.locator("img[src=x]").count() == 0
    assert main.locator("b:has-text('bold'), strong:has-text('not bold')").count() == 0


def test_one_token_with_the_mask_reads_in_the_singular(page, server):
    """Issue 18 §8: "The sentence as 1 tokens", "V = 1 distinct tokens" and a caption about the 0
    masked cells; as drawn, the captions count one token and say nothing of masked cells."""
    open_app(page, server, PATH, {"sentence": "hello", "causal": "true"})
    captions = page.locator("[data-testid=stCaptionContainer]")
    expect(captions.filter(has_text="The sentence as 1 token:")).to_have_count(1)
    expect(captions.filter(has_text="V = 1 distinct token,")).to_have_count(1)
    expect(captions.filter(has_text="Masked:")).to_have_count(0)
    assert_no_exception(page)


def test_one_kv_head_shares_keys_and_the_checkpoint_answers(page, server):
    """kv_heads=1 (multi-query attention): the grouped tables draw, the shared-keys checkpoint takes
    a guess and then shows the comparison, and the URL keeps the setting."""
    open_app(page, server, PATH, {"kv_heads": "1"})
    main = page.locator("[data-testid=stMain]")
    expect(main.get_by_text("all 4 heads share one key and one value matrix (multi-query attention)")).to_be_visible()
    expect(main.get_by_text("K/V group 0 is read by heads 0, 1, 2, 3")).to_be_visible()
    page.wait_for_function(f"document.querySelectorAll('{CHARTS}').length >= 6", timeout=30_000)
    screenshot(page, "toy_sentence_kv_heads_1")

    box = page.locator(".st-key-checkpoint-toy-shared_weights")
    expect(box).to_contain_text("Predict:")
    with rerun_after(page):
        box.get_by_text("Different: the two heads weigh the keys differently").click()
    assert_no_exception(page)
    expect(box.locator("[data-testid=stAlertContentSuccess]")).to_contain_text("Right: Different")
    expect(main.get_by_text("Heads 0 and 1, the largest difference between their numbers")).to_be_visible()
    assert _params(page).get("kv_heads") == "1"
    element_screenshot(box, "toy_sentence_shared_keys_checkpoint")
    screenshot(page, "toy_sentence_kv_heads_1_answered")
