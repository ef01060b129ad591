"""The timing page in a real browser: the reference run drawn on arrival, nothing timed until the button,
charts in both themes."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.harness import assert_no_exception, charts_drawn, element_screenshot, open_app, rerun_after, screenshot

pytestmark = pytest.mark.browser

TINY = {"batch": "2", "seq": "8", "d_model": "32", "heads": "4", "sweep": "seq", "sweep_values": "4,8,16",
        "budget": "2", "threads": "1"}
DRAWN = ("document.querySelectorAll('[data-testid=stVegaLiteChart] canvas, "
         "[data-testid=stVegaLiteChart] svg.marks').length >= {n}")


def test_timing_page_runs_on_click_draws_in_both_themes_and_shares(page, server):
    # Hostile links are AppTest's job (tests/test_timing_app.py); here, the real thing end to end.
    # On arrival: the shipped reference run, drawn and labelled as its machine's, before any button.
    open_app(page, server, "timing", TINY)
    assert "What the sum costs" in page.locator("h1").first.inner_text()
    expect(page.locator(".katex").nth(2)).to_be_attached()  # at least 3 formulas typeset
    # (the grouped-query section has a reference alert of its own; this one offers the button)
    expect(page.locator("[data-testid=stAlert]", has_text="Not measured on this server yet").filter(
        has_text="Run benchmark")).to_contain_text("python -m core.timing")
    page.wait_for_function(DRAWN.format(n=3), timeout=30_000)  # memory, the reference's ratios and its sweep

    with rerun_after(page, timeout_ms=120_000):
        page.get_by_role("button", name="Run benchmark").click()
    page.get_by_text("Measured just now").wait_for(timeout=60_000)
    assert_no_exception(page)
    page.set_viewport_size({"width": 1280, "height": 5600})
    page.wait_for_function(DRAWN.format(n=3), timeout=30_000)
    assert charts_drawn(page) >= 3  # memory, bars at one size, the sweep
    page.wait_for_timeout(500)
    screenshot(page, "timing")

    # Same page in the dark theme (the app follows the system setting): no rerun needed.
    page.emulate_media(color_scheme="dark")
    page.wait_for_timeout(800)
    assert_no_exception(page)
    screenshot(page, "timing_dark")

    # A shared link (same parameters, new tab) shows the stored result without pressing anything.
    other = page.context.new_page()
    open_app(other, server, "timing", TINY)
    other.get_by_text("Measured").first.wait_for()
    other.wait_for_function(DRAWN.format(n=3), timeout=30_000)
    other.close()


def test_the_measurement_section_is_a_fragment_that_keeps_the_url(page, server):
    """Moving a control of the measurement section reruns that section and rewrites the URL."""
    query = {**TINY, "seq": "5"}  # a link nobody has run yet
    open_app(page, server, "timing", query)
    announced = page.locator("[data-testid=stCaptionContainer]", has_text="Nothing is timed until")
    expect(announced).to_contain_text("within 2 s")
    page.wait_for_function(DRAWN.format(n=1))  # the page has drawn before it is touched
    step_up = page.locator("[data-testid=stNumberInput]", has_text="Time budget").get_by_test_id("stNumberInputStepUp")
    with rerun_after(page):
        step_up.click()
    expect(page).to_have_url(re.compile(r"[?&]budget=3(&|$)"))
    expect(announced).to_contain_text("within 3 s")  # the section redrew
    with rerun_after(page):
        page.get_by_role("radiogroup", name="Also sweep one size over several values").get_by_text("heads", exact=True).click()
    expect(page).to_have_url(re.compile(r"[?&]sweep=heads(&|$)"))
    expect(announced).to_contain_text("heads = 4, 8, 16")  # the sweep values of the link, now over heads
    main_command = page.locator("[data-testid=stCode]", has_text="python -m core.timing").filter(has_text="--csv")
    expect(main_command).to_contain_text("--budget 3")
    expect(page.locator("[data-testid=stCode]", has_text="--gqa")).to_contain_text("--budget 3")  # the GQA command too
    expect(page.locator("[data-testid=stCode]", has_text="budget=")).to_contain_text("budget=3")  # the link follows
    page.wait_for_function(DRAWN.format(n=3))  # the memory figure and the reference run's charts are still there
    assert_no_exception(page)
    # A hostile value for a control inside the fragment still gets its notice on a shared link.
    open_app(page, server, "timing", {**query, "budget": "lots"})
    expect(page.locator("[data-testid=stAlert]", has_text="budget=lots")).to_be_visible()


def test_sharing_keys_and_values_at_kv_heads_1(page, server):
    """kv_heads=1 (multi-query): the KV-cache checkpoint answered, the shared forward timed, screenshots."""
    query = {**TINY, "sweep": "none", "kv_heads": "1"}
    open_app(page, server, "timing", query)
    expect(page.locator("[data-testid=stRadio]", has_text="Key/value heads")).to_contain_text("1")
    section = page.get_by_role("heading", name="Sharing keys and values")
    expect(section).to_be_attached()
    cp = page.locator(".st-key-checkpoint-timing-kv_cache")
    expect(cp).to_contain_text("H_kv = 1 key/value head, each of width L = 8")
    with rerun_after(page):
        cp.get_by_text("64 bytes", exact=True).click()  # 2 · 1 · 8 numbers of 4 bytes
    expect(cp.locator("[data-testid=stAlert]")).to_contain_text("Right: 64 bytes")
    expect(page.get_by_text("4 times smaller", exact=False).first).to_be_visible()
    with rerun_after(page, timeout_ms=120_000):
        page.get_by_role("button", name="Time the shared forward").click()
    page.get_by_text("Measured on this server").first.wait_for(timeout=60_000)
    assert_no_exception(page)
    page.wait_for_function(DRAWN.format(n=3), timeout=30_000)  # memory, ratios, the shared forward's
    expect(page.get_by_text("as long as the same layer without sharing").first).to_be_visible()
    page.wait_for_timeout(500)
    screenshot(page, "timing_kv_heads_1")
    element_screenshot(cp, "timing_checkpoint_kv_cache")
