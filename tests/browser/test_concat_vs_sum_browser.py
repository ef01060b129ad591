"""The concat-versus-sum page in a real browser: the charts draw, the readouts are numbers, links work."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.harness import assert_no_exception, charts_drawn, open_app, rerun_after, screenshot, wait_ready

pytestmark = pytest.mark.browser

SCI = re.compile(r"-?\d\.\d\de[-+]\d\d")


def metric_value(page, label_start: str) -> str:
    metric = page.locator("[data-testid=stMetric]").filter(
        has=page.locator("[data-testid=stMetricLabel]", has_text=re.compile("^" + re.escape(label_start)))
    ).first
    return metric.locator("[data-testid=stMetricValue]").inner_text().strip()


def test_page_draws_charts_and_readouts(page, server):
    page.set_viewport_size({"width": 1280, "height": 5200})
    open_app(page, server, "concat-vs-sum")
    assert page.locator("h1").first.inner_text().strip() == "Concat versus sum"
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=stVegaLiteChart] canvas, "
        "[data-testid=stVegaLiteChart] svg.marks').length >= 5",
        timeout=30_000,
    )
    assert charts_drawn(page) >= 5  # reshape right and wrong, precision dots, waterfall, W_O twice
    assert SCI.fullmatch(metric_value(page, "Max abs diff")), metric_value(page, "Max abs diff")
    assert SCI.fullmatch(metric_value(page, "Max rel diff")), metric_value(page, "Max rel diff")
    expect(page.locator(".katex").nth(4)).to_be_attached()  # at least 5 formulas typeset, not raw TeX
    screenshot(page, "concat_vs_sum")

    # A widget writes its value into the URL, and the readouts follow.
    with rerun_after(page):
        page.locator("[data-testid=stRadio] label", has_text="float64").first.click()
        page.wait_for_url(re.compile(r"dtype=float64"), timeout=30_000)
    assert float(metric_value(page, "Max abs diff")) < 1e-12


def test_dark_theme_draws_the_same_figures(page, server):
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 1280, "height": 5200})
    open_app(page, server, "concat-vs-sum", {"token": "5", "coord": "17"})
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=stVegaLiteChart] canvas, "
        "[data-testid=stVegaLiteChart] svg.marks').length >= 5",
        timeout=30_000,
    )
    background = page.evaluate("getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor")
    assert background != "rgb(255, 255, 255)", background  # Streamlit's dark theme is in force
    screenshot(page, "concat_vs_sum_dark")


def test_link_sets_controls_and_bad_values_say_so(page, server):
    page.set_viewport_size({"width": 1280, "height": 2400})
    open_app(page, server, "concat-vs-sum", {"dtype": "bfloat16", "heads": "7", "seq": "lots", "device": "cuda"})
    expect(page.locator("[data-testid=stAlert]", has_text="device=cuda").first).to_be_visible(timeout=30_000)
    alerts = page.locator("[data-testid=stAlert]").all_inner_texts()  # read once the notices are drawn
    joined = " ".join(alerts)
    assert "seq=lots" in joined and "not a number" in joined
    assert "device=cuda" in joined
    assert "don't divide" in joined  # 7 heads into a width of 512
    assert page.locator("[data-testid=stMetric]").count() == 0  # no figure on a bad setting...
    assert page.locator("h2", has_text="Heads are channels").count() == 1  # ...but the essay stays
    screenshot(page, "concat_vs_sum_bad_link")



SMALL = {"seq": "6", "d_model": "32", "heads": "4"}


def waterfall_caption(page):
    return page.locator("[data-testid=stCaptionContainer]", has_text="core.concat_vs_sum.head_terms")


def set_number(page, label: str, value: str) -> None:
    """Type into a number input and commit it; waits for the run (full or fragment) it caused."""
    box = page.get_by_label(label, exact=True)
    with rerun_after(page):
        box.fill(value)
        box.press("Enter")


def test_token_and_coordinate_pickers_rerun_their_section_and_update_the_url(page, server):
    """The two pickers live in a fragment: moving one redraws that section, the URL and the link."""
    page.set_viewport_size({"width": 1280, "height": 4000})
    open_app(page, server, "concat-vs-sum", SMALL)
    expect(waterfall_caption(page)).to_contain_text("Coordinate j = 0 of token s = 0")
    set_number(page, "Token s", "3")
    expect(page).to_have_url(re.compile(r"[?&]token=3(&|$)"))
    expect(waterfall_caption(page)).to_contain_text("Coordinate j = 0 of token s = 3")
    set_number(page, "Output coordinate j", "17")
    expect(page).to_have_url(re.compile(r"[?&]coord=17(&|$)"))
    expect(waterfall_caption(page)).to_contain_text("Coordinate j = 17 of token s = 3")
    link = page.locator("[data-testid=stCode]", has_text="seq=6")
    expect(link).to_contain_text("token=3")  # the copyable link follows the section's pickers
    expect(link).to_contain_text("coord=17")
    assert_no_exception(page)
    screenshot(page, "concat_vs_sum_fragment_s3_j17")
    # The URL reopens this exact view in a fresh tab.
    other = page.context.new_page()
    other.goto(page.url)
    wait_ready(other)  # the new document's run (and the rerun its URL-bound widgets ask for) has finished
    expect(waterfall_caption(other)).to_contain_text("Coordinate j = 17 of token s = 3", timeout=60_000)
    expect(other.get_by_label("Token s", exact=True)).to_have_value("3", timeout=30_000)
    expect(other.get_by_label("Output coordinate j", exact=True)).to_have_value("17", timeout=30_000)
    other.close()


def test_a_bad_picker_value_in_a_link_is_explained_in_its_section(page, server):
    open_app(page, server, "concat-vs-sum", {**SMALL, "token": "99", "coord": "abc"})
    expect(page.locator("[data-testid=stAlert]", has_text="token=99")).to_contain_text("outside the allowed range 0–5")
    expect(page.locator("[data-testid=stAlert]", has_text="coord=abc")).to_contain_text("not a number")
    expect(waterfall_caption(page)).to_contain_text("Coordinate j = 0 of token s = 0")


def test_a_shorter_sequence_moves_the_token_with_a_notice(page, server):
    page.set_viewport_size({"width": 1280, "height": 4000})
    open_app(page, server, "concat-vs-sum", {**SMALL, "token": "5"})
    expect(waterfall_caption(page)).to_contain_text("of token s = 5")
    set_number(page, "Sequence S", "3")
    expect(page.locator("[data-testid=stAlert]", has_text="token=5")).to_contain_text("past the end of its new range 0–2")
    expect(waterfall_caption(page)).to_contain_text("of token s = 2")
    expect(page).to_have_url(re.compile(r"[?&]token=2(&|$)"))


def test_the_essay_ends_with_a_link_to_the_trained_model(page, server):
    open_app(page, server, "concat-vs-sum", SMALL)
    link = page.locator("a", has_text="What the sum buys:")
    expect(link).to_be_visible()
    with rerun_after(page):
        link.click()
    expect(page).to_have_url(re.compile(r"/induction(\?|$)"))


def test_multi_query_link_draws_every_readout_against_sdpa(page, server):
    """kv_heads=1 (issue 20): one key/value head for all eight query heads; the referee is SDPA."""
    page.set_viewport_size({"width": 1280, "height": 5200})
    open_app(page, server, "concat-vs-sum", {"kv_heads": "1"})
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=stVegaLiteChart] canvas, "
        "[data-testid=stVegaLiteChart] svg.marks').length >= 5",
        timeout=30_000,
    )
    expect(page.locator(".st-key-kv_heads").get_by_role("radio", name="1", exact=True)).to_be_checked()
    assert metric_value(page, "k and v handed to SDPA") == "[1, 1, 20, 64]"
    assert SCI.fullmatch(metric_value(page, "Max rel diff")), metric_value(page, "Max rel diff")
    assert page.locator("[data-testid=stMetric]").filter(has_text="out_proj.weight is W_O").count() == 0
    expect(page.get_by_text("share one key/value head (multi-query attention)")).to_be_visible()
    assert page.locator("[data-testid=stAlert]").count() == 0  # no notice, no error on a valid link
    assert_no_exception(page)
    screenshot(page, "concat_vs_sum_kv_heads_1")


def test_a_checkpoint_guess_is_answered_in_the_browser(page, server):
    """The head-terms question at kv_heads=2: the tempting wrong count (2) is told the answer (8)."""
    page.set_viewport_size({"width": 1280, "height": 3000})
    open_app(page, server, "concat-vs-sum", {**SMALL, "heads": "4", "kv_heads": "2"})
    box = page.locator(".st-key-checkpoint-concat_vs_sum-head_terms")
    expect(box).to_contain_text("Predict:")
    box.scroll_into_view_if_needed()
    with rerun_after(page):
        box.get_by_test_id("stRadioGroup").get_by_text("2", exact=True).click()
    expect(box.locator("[data-testid=stAlert]")).to_contain_text("the answer is 4.")
    expect(box.locator("[data-testid=stAlert]")).to_contain_text("The waterfall below has 4 bars.")
    assert_no_exception(page)
