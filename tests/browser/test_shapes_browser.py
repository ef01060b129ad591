"""The shape table page in a real browser: it renders, draws, reacts, and survives a bad link."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.harness import assert_no_exception, charts_drawn, new_context, open_app, rerun_after, screenshot

pytestmark = pytest.mark.browser

TALL = {"width": 1280, "height": 5600}  # full_page shots of Streamlit only capture the viewport


def _wait_for_charts(page, at_least: int) -> int:
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=stVegaLiteChart] canvas, "
        "[data-testid=stVegaLiteChart] svg.marks').length >= n", arg=at_least, timeout=30_000)
    return charts_drawn(page)


def _open_through_home(page, server, query=None):
    # A fresh server that is first asked for /shapes runs the page without streamlit_app.py
    # (Streamlit's legacy pages/ mode); going through / first gives the deployed app shell.
    open_app(page, server, "")
    open_app(page, server, "shapes", query)


def test_shape_table_renders_at_the_posts_sizes(page, server):
    _open_through_home(page, server)
    assert page.locator("h1").first.inner_text().strip() == "The shape table"
    table = page.locator("[data-testid=stMarkdownContainer] table").first
    assert table.locator("tbody tr").count() == 13  # the post's eleven, its step 5 split in three (5a–5c)
    # The contracted axis is set in italics, in letters and in numbers (step 2 sums over V).
    italics = [t.strip() for t in table.locator("em").all_inner_texts()]
    assert "V" in italics and "50,000" in italics
    expect(page.locator(".katex").nth(4)).to_be_attached()  # at least 5 formulas typeset, not raw TeX
    page.set_viewport_size(TALL)
    assert _wait_for_charts(page, 2) >= 2  # the flow picture and the endings' memory
    page.wait_for_timeout(500)
    screenshot(page, "shapes")


def test_tiny_model_button_shows_real_values_and_updates_the_link(page, server):
    open_app(page, server, "shapes")
    with rerun_after(page):
        page.get_by_role("button", name="A tiny model").click()
        page.wait_for_function("() => window.location.search.includes('d_model=16')", timeout=30_000)
    assert_no_exception(page)
    assert "vocab=10" in page.url and "heads=4" in page.url
    page.set_viewport_size(TALL)
    assert _wait_for_charts(page, 3) >= 3  # the heatmap of the chosen step joined the page


def test_dark_theme_and_a_step_with_heads(browser, server):
    context = new_context(browser, viewport=TALL, color_scheme="dark")
    page = context.new_page()
    try:
        _open_through_home(page, server, {"batch": "2", "seq": "6", "vocab": "12", "d_model": "24",
                                          "heads": "3", "step": "8", "causal": "true", "at_batch": "1"})
        assert _wait_for_charts(page, 3) >= 3
        captions = " ".join(page.locator("[data-testid=stCaptionContainer]").all_inner_texts())
        assert "Dashed lines separate the heads" in captions
        page.wait_for_timeout(500)
        screenshot(page, "shapes_dark_step8")
    finally:
        context.close()


def test_hostile_link_gives_a_message_not_a_traceback(page, server):
    open_app(page, server, "shapes", {"heads": "7", "seq": "<b>x</b>", "step": "🙂" * 50})
    alerts = " ".join(page.locator("[data-testid=stAlert]").all_inner_texts())
    assert "don't divide a width of 512" in alerts
    assert "seq=<b>x</b>" in alerts  # the refused value is quoted back as text, not rendered
    assert page.locator("h1").first.inner_text().strip() == "The shape table"


TINY = {"batch": "1", "seq": "5", "vocab": "10", "d_model": "16", "heads": "4"}


def test_the_step_picker_reruns_its_section_and_updates_the_link(page, server):
    """"Look inside a step" is a fragment: picking a step redraws that section and rewrites the URL."""
    import re

    from playwright.sync_api import expect

    _open_through_home(page, server, TINY)
    page.set_viewport_size(TALL)
    captions = page.locator("[data-testid=stCaptionContainer]", has_text="core.shapes.step_values")
    expect(captions).to_contain_text("scores[0, 0]")  # the default step, 6
    step_group = page.get_by_role("radiogroup", name="Step")
    with rerun_after(page):
        step_group.get_by_text("5b", exact=True).click()
    expect(page).to_have_url(re.compile(r"[?&]step=5b(&|$)"))
    expect(captions).to_contain_text("k[0, 0], v[0, 0]")  # the section redrew: k and v
    assert _wait_for_charts(page, 5) >= 5  # two heatmaps beside the three charts above them
    with rerun_after(page):
        page.get_by_role("slider", name="Head").press("ArrowRight")
    expect(page).to_have_url(re.compile(r"[?&]at_head=1(&|$)"))
    expect(captions).to_contain_text("k[0, 1]")
    link = page.locator("[data-testid=stCode]", has_text="seq=5")
    expect(link).to_contain_text("step=5b")  # the copyable link follows the section's controls
    expect(link).to_contain_text("at_head=1")
    assert_no_exception(page)
    screenshot(page, "shapes_step5b_head1")
    # The URL reopens this exact view in a fresh tab.
    url = page.url
    other = page.context.new_page()
    other.goto(url)
    expect(other.locator("[data-testid=stCaptionContainer]", has_text="core.shapes.step_values")).to_contain_text(
        "k[0, 1]", timeout=60_000)
    other.close()


def test_causal_at_the_posts_sizes_acts_and_stays_in_the_url(page, server):
    """Issue 18 §12: `causal=true` at the default sizes was ignored and dropped from the link. Now
    it is a switch of the page: on, step 6's extra torch calls are named, and a dtype change (a
    full rerun) keeps it, and the hidden section's `step`, in the address bar."""
    open_app(page, server, "shapes", {"causal": "true", "step": "5"})
    expect(page.get_by_text("The causal mask is on", exact=False)).to_be_visible()
    with rerun_after(page):
        page.get_by_text("float64", exact=True).click()
        page.wait_for_function("() => window.location.search.includes('dtype=float64')", timeout=30_000)
    assert_no_exception(page)
    assert "causal=true" in page.url and "step=5" in page.url
    expect(page.get_by_text("The causal mask is on", exact=False)).to_be_visible()


# ---- grouped-query attention (issue 20) and checkpoints (issue 21) ----------------------------------


def test_llama_3_8b_preset_shows_its_kv_cache(page, server):
    _open_through_home(page, server, {"model": "llama-3-8b", "dtype": "bfloat16"})
    expect(page.get_by_text("128 KiB per token", exact=False)).to_be_visible()
    table = page.locator("[data-testid=stMarkdownContainer] table").first
    expect(table.locator("tbody tr").nth(5)).to_contain_text("1×8×20×128")  # step 5b: 8 key/value heads
    assert page.get_by_role("spinbutton", name="Heads").count() == 0  # the preset sets the sizes
    # A guess at the scores' shape: right is acknowledged, and says why.
    question = page.get_by_role("radiogroup", name=re.compile("Predict: At"))
    with rerun_after(page):
        question.get_by_text("[1, 32, 20, 20]", exact=True).click()
    expect(page.locator("[data-testid=stAlertContentSuccess]").first).to_contain_text("Right: [1, 32, 20, 20]")
    page.set_viewport_size(TALL)
    assert _wait_for_charts(page, 3) >= 3
    assert_no_exception(page)
    page.wait_for_timeout(500)
    screenshot(page, "shapes_llama_3_8b")


def test_multi_query_attention_dark(browser, server):
    context = new_context(browser, viewport=TALL, color_scheme="dark")
    page = context.new_page()
    try:
        _open_through_home(page, server, {"kv_heads": "1"})
        expect(page.get_by_text("multi-query attention", exact=False).first).to_be_visible()
        expect(page.get_by_text("8× smaller", exact=False).first).to_be_visible()
        assert _wait_for_charts(page, 3) >= 3
        assert_no_exception(page)
        page.wait_for_timeout(500)
        screenshot(page, "shapes_kv_heads_1_dark")
    finally:
        context.close()
