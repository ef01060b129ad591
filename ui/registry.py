"""The essay's pages, listed once: the navigation, home's guide and the scripts all read this list.

Plain data, no Streamlit import, so a benchmark script can read it without starting a session.
The URL paths are stable because links shared in class point at them; each page file is named
after its URL path (``pages/concat-vs-sum.py`` is ``/concat-vs-sum``) because a fresh server's
first request takes Streamlit's old pages-folder route, which finds pages by file name
(tests/browser/test_cold_start.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

__all__ = ["Page", "PAGES", "HOME", "CONTENT_PAGES", "ROOT", "by_url_path"]

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Page:
    file: str  # relative to the repository root, e.g. "pages/shapes.py"
    title: str  # in the navigation and on home's guide
    url_path: str  # "" for home, which is the default page at "/"
    icon: str  # a Material icon name as st.Page takes it
    summary: str  # one line for home's guide

    @property
    def name(self) -> str:
        """The page's name in scripts and tests: its URL path, "home" for "/"."""
        return self.url_path or "home"

    @cached_property
    def exists(self) -> bool:
        """Whether the page's file is there (checked once per process: home's guide asks on every run)."""
        return (ROOT / self.file).exists()


PAGES: tuple[Page, ...] = (
    Page("pages/home.py", "Attention is a sum", "", ":material/home:",
         "The thesis, the two formulas, a live check of the identity, and how to run a class with the essay."),
    Page("pages/shapes.py", "The shape table", "shapes", ":material/table_chart:",
         "Every tensor on the way from token ids to the output, with its shape at any size you type in, "
         "and which axis each product contracts."),
    Page("pages/toy-sentence.py", "Attention on a sentence", "toy-sentence", ":material/chat:",
         "A tiny model with four heads reads your own sentence; every query, key, value and attention "
         "weight is on screen."),
    Page("pages/concat-vs-sum.py", "Concat versus sum", "concat-vs-sum", ":material/functions:",
         "The identity, live: both endings computed side by side, with diff readouts in four precisions "
         "and one output number taken apart head by head."),
    Page("pages/induction.py", "The sum at work", "induction", ":material/psychology:",
         "A trained two-layer model whose heads you can read: find its previous-token and induction "
         "heads, split a prediction into one term per head, and knock heads out."),
    Page("pages/timing.py", "Timing", "timing", ":material/timer:",
         "What the additive view costs on the machine in front of you, measured against a bare matrix "
         "product."),
)
HOME = PAGES[0]
CONTENT_PAGES = PAGES[1:]


def by_url_path(url_path: str) -> Page:
    """The page at a URL path ("" or "home" for home); KeyError for an unknown one."""
    for page in PAGES:
        if url_path in (page.url_path, page.name):
            return page
    raise KeyError(url_path)
