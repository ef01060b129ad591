"""An axe-core audit of every page, in the light and the dark theme, at the defaults and with the
page's interactive sections open (issue 23).

axe-core comes from the pinned `axe-playwright-python` package (requirements-dev.txt), which ships
the script and runs it in the page through Playwright: no hand-copied JavaScript to go stale.

Each page is loaded once. It is audited as it opens, in both themes (the app follows the browser's
colour scheme, so switching needs no rerun); then every expander is opened and, where it is cheap,
a result is produced (the induction page trains 100 steps, the timing page runs a one-second
benchmark at a small size), and it is audited again in both themes. A critical or serious violation
fails the test; a moderate or minor one fails too unless its rule is in ``EXPLAINED`` below with
the reason it stays. Every finding, passing or not, is written to artifacts/a11y/<page>.json.
"""

from __future__ import annotations

import json

import pytest

from tests.browser.harness import (
    ARTIFACTS, assert_no_exception, new_context, open_app, rerun_after, runs_finished, wait_ready,
)

pytestmark = pytest.mark.browser

FAILING_IMPACTS = {"critical", "serious"}
# Moderate or minor rules that stay, each with the reason. Add a rule here only with its reason.
EXPLAINED: dict[str, str] = {}

CHARTS = "[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg.marks"
# page path → (query for a small, cheap view, minimum number of charts drawn at the defaults)
PAGES = {
    "": ({}, 0),
    "shapes": ({}, 1),
    "toy-sentence": ({}, 1),
    "concat-vs-sum": ({}, 1),
    "induction": ({"steps": "100"}, 1),
    "timing": ({"batch": "1", "seq": "16", "d_model": "64", "heads": "2", "sweep": "none", "budget": "1"}, 1),
}


def _audit(axe, page, scheme: str) -> list[dict]:
    """axe's violations in ``scheme``, as plain records (rule, impact, where, what)."""
    page.emulate_media(color_scheme=scheme)
    # The theme switch is a React state change: wait until the app's background shows it.
    page.wait_for_function(
        "(light) => (getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor"
        " === 'rgb(255, 255, 255)') === light", arg=scheme == "light", timeout=10_000,
    )
    page.wait_for_timeout(300)  # and let the charts repaint in the new theme
    result = axe.run(page)
    return [
        {"rule": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [{"target": n["target"], "html": n["html"][:300], "summary": n.get("failureSummary", "")[:400]}
                   for n in v["nodes"]]}
        for v in result.response["violations"]
    ]


def _open_sections(page, path: str) -> None:
    """Open every collapsed expander, and show a result where the page computes one on request."""
    if path == "induction":
        with rerun_after(page, timeout_ms=120_000):
            page.get_by_role("button", name="Train", exact=True).click()
        page.get_by_text("Trained 100 steps").wait_for(timeout=120_000)
    if path == "timing":
        with rerun_after(page, timeout_ms=60_000):
            page.get_by_role("button", name="Run benchmark", exact=True).click()
        page.get_by_text("Measured just now").wait_for(timeout=60_000)
    summaries = page.locator("[data-testid=stExpander] details:not([open]) > summary")
    for _ in range(summaries.count()):  # re-query each time: opening one changes the list
        summary = summaries.first
        # A lazy section (ui.charts.numbers_section, home's rooms) is built by the run its opening
        # causes: wait for that run, so the audit reads what the section holds.
        lazy = summary.evaluate("s => !!s.closest('[class*=\"st-key-numbers_\"], .st-key-home_rooms')")
        if lazy:
            with rerun_after(page):
                summary.click()
        else:
            summary.click()
    page.wait_for_timeout(500)
    wait_ready(page, after=0)
    assert page.locator("[data-testid=stExpander] details:not([open])").count() == 0
    assert_no_exception(page)


# Every Vega chart's text alternative: Streamlit turns `alt=` into the chart's aria-label (role
# graphics-document), read as plain text, so no Markdown marks may be left in it.
_CHART_LABELS = """() => [...document.querySelectorAll('[data-testid=stVegaLiteChart]')].map(e => e.getAttribute('aria-label') || '')"""


def _assert_charts_labelled(page) -> None:
    labels = page.evaluate(_CHART_LABELS)
    for label in labels:
        assert len(label) >= 20, f"a chart without a text alternative: {label!r}"
        assert not any(mark in label for mark in ("`", "**", "$")), f"Markdown in a chart's aria-label: {label!r}"


def _blocking(violations: list[dict]) -> list[dict]:
    return [v for v in violations if v["impact"] in FAILING_IMPACTS or v["rule"] not in EXPLAINED]


@pytest.mark.parametrize("path", list(PAGES))
def test_page_passes_axe_in_both_themes_closed_and_open(browser, server, axe, path):
    query, min_charts = PAGES[path]
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    found: dict[str, list[dict]] = {}
    try:
        open_app(page, server, path, query)
        page.wait_for_function(f"document.querySelectorAll('{CHARTS}').length >= {min_charts}", timeout=60_000)
        for scheme in ("light", "dark"):
            found[f"defaults-{scheme}"] = _audit(axe, page, scheme)
        page.emulate_media(color_scheme="light")
        _open_sections(page, path)
        for scheme in ("light", "dark"):
            found[f"open-{scheme}"] = _audit(axe, page, scheme)
        _assert_charts_labelled(page)
    finally:
        context.close()
        out = ARTIFACTS / "a11y"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{path or 'home'}.json").write_text(json.dumps(found, indent=1))
    blocking = {state: _blocking(v) for state, v in found.items() if _blocking(v)}
    assert not blocking, "axe violations:\n" + "\n".join(
        f"{state}: {v['rule']} ({v['impact']}) ×{len(v['nodes'])}: {v['help']}; first: {v['nodes'][0]['html'][:160]}"
        for state, vs in blocking.items() for v in vs
    )


# For each chart drawn with its numbers (ui.charts.figure): is there an expander within the next
# two elements after the chart's own, and is its summary in the tab order?
_NUMBERS_AFTER_CHARTS = """() => [...document.querySelectorAll('[data-testid=stVegaLiteChart]')].map(chart => {
  let box = chart.closest('[data-testid=stElementContainer]');
  for (let i = 0; i < 2 && box; i++) {
    box = box.nextElementSibling;
    const summary = box && box.querySelector('[data-testid=stExpander] summary');
    if (summary) return {label: summary.innerText.split('\\n').pop(), tabbable: summary.tabIndex >= 0 && !summary.closest('[inert], [aria-hidden=true]')};
  }
  return null;
}).filter(Boolean)"""
_ACTIVE = """() => { const a = document.activeElement;
  return {tag: a.tagName, inGrid: !!a.closest('[data-testid=stDataFrame]'), label: a.getAttribute('aria-label')}; }"""


def test_a_charts_numbers_are_reachable_by_keyboard_and_announced(browser, server):
    """The shape page's flow chart: its numbers table follows it in the tab order, opens with Enter,
    and the grid inside is focusable and exposed as a table (role grid, header cells, row count)."""
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        open_app(page, server, "shapes")
        page.wait_for_function(f"document.querySelectorAll('{CHARTS}').length >= 1", timeout=60_000)
        tables = page.evaluate(_NUMBERS_AFTER_CHARTS)
        assert tables and all(t["tabbable"] for t in tables), tables
        summary = page.locator("[data-testid=stExpander] summary", has_text=tables[0]["label"])
        summary.focus()
        before = runs_finished(page)
        page.keyboard.press("Enter")
        page.wait_for_function("(s) => s.parentElement.open", arg=summary.element_handle())
        # The section is built when opened (ui.charts.numbers_section): its grid arrives with that run.
        wait_ready(page, after=before)
        page.locator("details[open] [data-testid=stDataFrame]").first.wait_for(timeout=30_000)
        assert page.evaluate("() => document.activeElement.tagName") == "SUMMARY"  # focus stays on the section
        for _ in range(6):  # the grid's toolbar buttons first, then the grid itself
            page.keyboard.press("Tab")
            active = page.evaluate(_ACTIVE)
            if active["inGrid"] and active["tag"] == "CANVAS":
                break
        assert active["inGrid"] and active["tag"] == "CANVAS", f"Tab never reached the numbers grid: {active}"
        grid = page.locator("details[open] [data-testid=stDataFrame] table[role=grid]").first
        assert int(grid.get_attribute("aria-rowcount")) >= 2
        headers = grid.locator("th[role=columnheader]").all_text_contents()
        assert len(headers) >= 2 and all(h.strip() for h in headers), headers
    finally:
        context.close()
