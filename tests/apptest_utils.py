"""Driving a page with Streamlit's AppTest: run it with a query string, read everything it says."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def run_page(page: str, query: dict[str, str | list[str]] | None = None, timeout: float = 30,
             numbers: bool = False) -> AppTest:
    """Run ``pages/<page>.py`` (or ``streamlit_app.py``) with URL query parameters; fail on exceptions.

    With ``numbers`` every numbers section is opened too (``open_numbers``: one more run, after which
    a link's one-time notices are gone), so a test reads every table a reader can open; without it
    the page is as a link first draws it.
    """
    path = ROOT / (page if page.endswith(".py") else f"pages/{page}.py")
    at = AppTest.from_file(str(path), default_timeout=timeout)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, f"{page} raised: {[e.value for e in at.exception]}"
    return open_numbers(at) if numbers else at


def run_page_with_numbers(page: str, query: dict[str, str | list[str]] | None = None, timeout: float = 30) -> AppTest:
    """``run_page`` with every numbers section open: for tests that read a page's tables."""
    return run_page(page, query, timeout, numbers=True)


def open_numbers(at: AppTest) -> AppTest:
    """Open every "numbers" section the page drew (``ui.charts.numbers_section``: built only while
    open, its state under ``numbers_<key>``) and rerun, as a reader clicking each of them would."""
    for _ in range(3):  # a section may appear only once another is open (none does today)
        closed = [k for k in at.session_state.keys() if str(k).startswith("numbers_") and not at.session_state[k]]
        if not closed:
            break
        for key in closed:
            at.session_state[key] = True
        at.run()
        assert not at.exception, f"raised: {[e.value for e in at.exception]}"
    return at


def rerun(at: AppTest, numbers: bool = False) -> AppTest:
    at.run()
    assert not at.exception, f"raised: {[e.value for e in at.exception]}"
    return open_numbers(at) if numbers else at


def texts(at: AppTest) -> str:
    """Everything the page wrote as text (markdown, captions, notices, metrics, code), joined."""
    parts: list[str] = []
    for kind in ("markdown", "caption", "latex", "code", "title", "header", "subheader", "text"):
        parts += [str(el.value) for el in at.get(kind)]
    for kind in ("warning", "error", "info", "success"):
        parts += [str(el.value) for el in at.get(kind)]
    parts += [f"{m.label}: {m.value}" for m in at.metric]
    return "\n".join(parts)


def notices(at: AppTest) -> list[str]:
    """The readable messages a page shows about bad input (warnings and errors)."""
    return [str(el.value) for el in at.warning] + [str(el.value) for el in at.error]
