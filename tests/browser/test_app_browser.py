"""The whole app as a class would use it: every page, shared links, hostile links, both themes,
the keyboard, and many students at once."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

from playwright.sync_api import expect

import pytest

from tests.browser.harness import (
    assert_no_exception,
    charts_drawn,
    new_context,
    open_app,
    rerun_after,
    runs_finished,
    screenshot,
    wait_ready,
)

pytestmark = pytest.mark.browser

# (URL path, does the page draw a chart at its defaults?)
PAGES = [("", False), ("shapes", True), ("toy-sentence", True), ("concat-vs-sum", True), ("timing", False)]

# Links a teacher might share: each must come back with exactly these values in the widgets.
SHARED_LINKS = [
    ("shapes", {"seq": "128", "heads": "16", "d_model": "1024"}),
    ("toy-sentence", {"sentence": "the cat sat on the mat", "heads": "2", "causal": "true", "token": "3"}),
    ("toy-sentence", {"scale": "false", "seed": "7"}),
    ("concat-vs-sum", {"dtype": "bfloat16", "seq": "32", "heads": "4", "causal": "true"}),
    ("concat-vs-sum", {"dtype": "float64", "seed": "3"}),
    ("timing", {"seq": "64", "batch": "2"}),
]

HOSTILE_LINKS = [
    ("shapes", {"heads": "7"}),
    ("shapes", {"d_model": "-5", "seq": "abc"}),
    ("toy-sentence", {"sentence": "x" * 10_000}),
    ("toy-sentence", {"sentence": "   "}),
    ("toy-sentence", {"token": "999"}),
    ("concat-vs-sum", {"device": "cuda", "dtype": "int8"}),
    ("concat-vs-sum", {"heads": "5", "d_model": "512"}),
    ("concat-vs-sum", {"batch": "1e9"}),
    ("timing", {"d_model": "2048", "seq": "1024", "batch": "64", "heads": "64"}),
]


def _url_params(page) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


@pytest.mark.parametrize("path, has_chart", PAGES)
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_in_both_themes(browser, server, path, has_chart, scheme):
    context = new_context(browser, viewport={"width": 1280, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    try:
        open_app(page, server, path)
        if has_chart:
            page.wait_for_function(
                "() => document.querySelectorAll('[data-testid=stVegaLiteChart] canvas, "
                "[data-testid=stVegaLiteChart] svg.marks').length > 0", timeout=30_000
            )
            assert charts_drawn(page) >= 1
        page.set_viewport_size({"width": 1280, "height": 6000})
        wait_ready(page)
        screenshot(page, f"{path or 'home'}-{scheme}")
    finally:
        context.close()


@pytest.mark.parametrize("path, query", SHARED_LINKS)
def test_shared_link_restores_its_state(page, server, path, query):
    open_app(page, server, path, query)
    kept = _url_params(page)
    for key, value in query.items():
        assert kept.get(key) == value, f"{key}={value} was not kept: the URL is now {page.url}"
    assert page.locator("[data-testid=stAlertContentWarning]").count() == 0


@pytest.mark.parametrize("path, query", HOSTILE_LINKS)
def test_hostile_link_gives_a_readable_message(page, server, path, query):
    open_app(page, server, path, query)  # fails on an exception element
    alerts = page.locator("[data-testid=stAlert]")
    expect(alerts.first).to_be_visible(timeout=30_000)  # a refused value must be explained on the page
    assert alerts.count() >= 1
    assert "Traceback" not in page.locator("[data-testid=stMain]").inner_text()


def test_markup_and_emoji_in_a_sentence_are_shown_as_text(page, server):
    """A sentence is data, not markup: `<b>` must not make anything bold, `$x$` no formula."""
    sentence = "🙂🙃 日本語 <b>bold</b> $x$"
    open_app(page, server, "toy-sentence", {"sentence": sentence})
    main = page.locator("[data-testid=stMain]")
    box = main.locator(".st-key-sentence input[type=text], .st-key-sentence textarea").first
    expect(box).to_have_value(sentence, timeout=30_000)  # waits for the box the test reads
    # The sentence's tokens label the charts further down; once one is drawn, nothing is bold
    # and no formula was typeset from the sentence's `$x$`.
    expect(main.locator("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg.marks")
           .first).to_be_attached(timeout=30_000)
    assert main.locator("b", has_text="bold").count() == 0


def test_controls_are_reachable_by_keyboard(page, server):
    open_app(page, server, "concat-vs-sum")
    reached = set()
    for _ in range(60):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("() => (document.activeElement?.getAttribute('aria-label') "
                                  "|| document.activeElement?.tagName || '').toLowerCase()"))
    assert any(tag in reached for tag in ("input", "button")) or len(reached) > 5, reached


def test_ten_students_at_once(browser, server):
    """Ten sessions on different pages and settings, loaded concurrently; each gets its own view."""
    links = [
        ("concat-vs-sum", {"seed": str(s), "seq": "24"}) for s in range(1, 5)
    ] + [
        ("toy-sentence", {"sentence": f"student {s} writes a sentence", "seed": str(s)}) for s in range(1, 4)
    ] + [("shapes", {"seq": str(16 * (s + 1))}) for s in range(3)]
    contexts = [new_context(browser, viewport={"width": 1200, "height": 900}) for _ in links]
    pages = [c.new_page() for c in contexts]
    try:
        from urllib.parse import urlencode

        for pg, (path, query) in zip(pages, links):
            pg.goto(f"{server.url}/{path}?{urlencode(query)}", wait_until="commit")
        for pg, (path, query) in zip(pages, links):
            wait_ready(pg, timeout_ms=120_000)
            assert_no_exception(pg)
            assert _url_params(pg) == {**_url_params(pg), **query}, pg.url
        # Sessions with different seeds see different numbers; nothing leaked through caches.
        metrics = []
        for pg in pages[:4]:
            expect(pg.locator("[data-testid=stMetricValue]").first).to_be_visible(timeout=60_000)
            metrics.append(pg.locator("[data-testid=stMetricValue]").all_inner_texts())
        assert all(metrics), "the concat-vs-sum page shows its readouts"
        assert len({tuple(m) for m in metrics}) > 1
    finally:
        for c in contexts:
            c.close()


def test_same_link_same_numbers_in_two_sessions(browser, server):
    """Seeded: two students opening one link see identical readouts."""
    values = []
    for _ in range(2):
        context = new_context(browser)
        pg = context.new_page()
        open_app(pg, server, "concat-vs-sum", {"seed": "11", "dtype": "float16"})
        pg.wait_for_selector("[data-testid=stMetricValue]")
        values.append(pg.locator("[data-testid=stMetricValue]").all_inner_texts())
        context.close()
    assert values[0] and values[0] == values[1]


def test_navigation_between_pages_keeps_working(page, server):
    open_app(page, server)
    nav = page.locator("[data-testid=stSidebarNav] a, [data-testid=stSidebarNavLink]")
    expect(nav.nth(4)).to_be_attached(timeout=30_000)
    assert nav.count() >= 5
    with rerun_after(page):
        page.locator("[data-testid=stSidebarNavLink]", has_text="The shape table").first.click()
        page.wait_for_url("**/shapes**")
    assert_no_exception(page)
    expect(page.locator("h1").first).to_have_text("The shape table", timeout=30_000)


def test_charts_offer_png_export_and_their_data(page, server):
    """Streamlit's chart toolbar: every chart can be saved as PNG and shows its numbers."""
    open_app(page, server, "concat-vs-sum")
    chart = page.locator("[data-testid=stVegaLiteChart]").first
    chart.scroll_into_view_if_needed()
    chart.hover()
    toolbar = page.locator("[data-testid=stElementToolbar] button")
    expect(toolbar.first).to_be_attached(timeout=10_000)  # the toolbar appears on hover: wait for it
    labels = page.locator("[data-testid=stElementToolbar] button").evaluate_all(
        "els => els.map(e => e.getAttribute('aria-label') || '')"
    )
    assert any(label.startswith("Download as PNG") for label in labels), labels
    assert any(label.startswith("Show data") for label in labels), labels


@pytest.mark.parametrize("path, section, button, first_column", [
    ("shapes", "Every column, as numbers", "Download the table (CSV)", "step"),  # a DataFrame, encoded on the click
    ("toy-sentence", None, "Download every weight and score as CSV", None),  # bytes from a cached view
])
def test_a_csv_download_is_made_when_pressed(browser, server, path, section, button, first_column):
    """Downloads are deferred (the file is made when the button is pressed, not on every run): the
    press still delivers a CSV with a header and numeric rows, and the page does not rerun."""
    import csv
    import io

    context = new_context(browser, viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    try:
        open_app(page, server, path)
        where = page
        if section is not None:  # a numbers section: built by the run that opening it causes
            where = page.locator("[data-testid=stExpander]", has_text=section).first
            with rerun_after(page):
                where.locator("summary").first.click()
        target = where.get_by_role("button", name=button)
        target.scroll_into_view_if_needed()
        expect(target).to_be_visible()
        before = runs_finished(page)
        with page.expect_download(timeout=30_000) as info:
            target.click()
        download = info.value
        text = Path(download.path()).read_text()
        rows = list(csv.reader(io.StringIO(text)))
        assert len(rows) >= 2, text[:500]
        assert download.suggested_filename.endswith(".csv")
        if first_column is not None:
            assert rows[0][0] == first_column, rows[0]
        numeric = [cell for row in rows[1:] for cell in row if cell.replace(".", "", 1).replace("-", "", 1).replace("e", "", 1).isdigit()]
        assert numeric, rows[:3]
        page.wait_for_timeout(500)
        assert runs_finished(page) == before  # on_click="ignore": pressing it ran nothing
    finally:
        context.close()
