"""The home page in a real browser."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.harness import open_app, screenshot

pytestmark = pytest.mark.browser


def test_home_renders_with_live_number(page, server):
    open_app(page, server)
    assert "Multi-head attention is a sum of heads" in page.locator("h1").first.inner_text()
    metric = page.locator("[data-testid=stMetric]").first
    value = metric.locator("[data-testid=stMetricValue]").inner_text()
    assert re.fullmatch(r"\d\.\d\de[-+]\d\d", value.strip()), value
    expect(page.locator(".katex").nth(2)).to_be_attached()  # at least 3 formulas typeset, not raw TeX
    screenshot(page, "home")
