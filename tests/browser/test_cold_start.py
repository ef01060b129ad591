"""The first reader of the day: a fresh server (an app woken from sleep) asked for a deep link.

Streamlit 1.67 takes its old pages-folder route for a server's first run, and there a URL path
that is not a page file's name was "not found". Page files are named after their URL paths, so
each deep link must open its own page on a fresh server, with no "Page not found" dialog.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from tests.apptest_utils import ROOT
from tests.browser.harness import Server, assert_no_exception, new_context, wait_ready
from ui.registry import PAGES as REGISTRY

pytestmark = pytest.mark.browser

# URL path → the page's title (h1). Pages registered in ui/registry.py.
DEEP_LINKS = {
    "shapes": ("The shape table", {"heads": "4"}),
    "toy-sentence": ("Attention on a sentence", {"heads": "2"}),
    "concat-vs-sum": ("Concat versus sum", {"heads": "4"}),
    "induction": (None, {}),  # its title is the page's own; it must not be the home page's
    "timing": ("What the sum costs", {"seq": "16"}),
}
HOME_TITLE = "Multi-head attention is a sum of heads"


def _registered(path: str) -> bool:
    return (ROOT / "pages" / f"{path}.py").exists() and path in {p.url_path for p in REGISTRY}


@pytest.mark.parametrize("path", [p for p in DEEP_LINKS if _registered(p)])
def test_first_request_of_a_fresh_server_is_a_deep_link(browser, tmp_path, path):
    title, query = DEEP_LINKS[path]
    server = Server(tmp_path / "server.log")
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{server.url}/{path}?{urlencode(query)}")
        wait_ready(page)
        heading = page.locator("[data-testid=stMain] h1").first
        if title:
            expect(heading).to_contain_text(title, timeout=30_000)
        else:
            expect(heading).not_to_have_text(HOME_TITLE, timeout=30_000)
        assert_no_exception(page)
        assert page.locator("[role=dialog]", has_text="Page not found").count() == 0
        # The app shell is in force: the sidebar lists the pages by title, not by file name.
        expect(page.locator("[data-testid=stSidebarNavLink]", has_text="The shape table").first).to_be_attached()
        for key, value in query.items():
            assert f"{key}={value}" in page.url, page.url
    finally:
        context.close()
        log = server.log()
        server.stop()
    assert "Traceback" not in log, log[-3000:]
