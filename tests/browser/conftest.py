"""Fixtures for the browser tests; the machinery lives in harness.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser.harness import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, Server, new_context, warm_up


def _skip_or_fail(reason: str) -> None:
    """Skip where the browser is missing, but never in CI, which installs it (.ci/run)."""
    if os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def server(tmp_path_factory, browser):
    srv = Server(tmp_path_factory.mktemp("streamlit") / "server.log")
    warm_up(browser, srv)
    yield srv
    log = srv.log()
    srv.stop()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"server-{srv.port}.log").write_text(log)
    assert "Traceback" not in log, f"the server logged a traceback:\n{log[-4000:]}"


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("Playwright is not installed (pip install -r requirements-dev.txt)")
    if not Path(CHROMIUM).exists():
        _skip_or_fail(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    yield pg
    context.close()




@pytest.fixture(scope="session")
def axe(browser):
    """axe-core, as shipped by the pinned axe-playwright-python (requirements-dev.txt)."""
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        _skip_or_fail("axe-playwright-python is not installed (pip install -r requirements-dev.txt)")
    return Axe()
