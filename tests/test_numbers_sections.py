"""A figure's numbers sit in a collapsed section that is built only while it is open
(``ui.charts.numbers_section``): a default view neither builds nor sends its tables and CSV
buttons, a reader who opens one gets them, and an open section stays open."""

from __future__ import annotations

import pytest

from tests.apptest_utils import open_numbers, rerun, run_page

PAGES = ["shapes", "toy-sentence", "concat-vs-sum", "induction", "timing"]


def _keys(at) -> list[str]:
    return sorted(str(k) for k in at.session_state.keys() if str(k).startswith("numbers_"))


@pytest.mark.parametrize("page", PAGES)
def test_numbers_are_built_when_their_section_is_opened_and_stay_open(page):
    at = run_page(page)
    keys = _keys(at)
    assert keys, "the page has numbers sections"
    closed = [k for k in keys if not at.session_state[k]]
    assert closed, "at the defaults most numbers sections start closed"
    tables, buttons = len(at.dataframe), len(at.get("download_button"))
    open_numbers(at)
    assert all(at.session_state[k] for k in _keys(at))
    assert len(at.dataframe) > tables and len(at.get("download_button")) > buttons
    rerun(at)  # a later run of the page keeps them open
    assert all(at.session_state[k] for k in keys) and len(at.dataframe) > tables


def test_a_closed_section_costs_its_table_nothing():
    """The shape table's torch-call list: closed, no table and no button; open, both."""
    at = run_page("shapes")
    assert at.session_state["numbers_ops"] is False
    assert not [d for d in at.dataframe if "torch call" in d.value.columns]
    at.session_state["numbers_ops"] = True
    rerun(at)
    assert [d for d in at.dataframe if "torch call" in d.value.columns]
    assert [b for b in at.get("download_button") if "ops_csv" in str(b.proto.id)]
