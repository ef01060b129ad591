"""Nothing leaks between sessions through caches, and no cache grows without bound.

Thirty students on one small server share its caches. `st.cache_data` hands every caller its own
copy (pickled), so a session that edits a cached table can't change another's view; the
`st.cache_resource` stores (the timing page's finished runs, the rooms' tallies) hand out copies
themselves (tests/test_timing_core.py, tests/test_rooms.py). Every cache with arguments is bounded, so hostile links can't fill
the memory with entries.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
# Pages and the UI modules they call (figure builders cache their specs there).
PAGE_FILES = sorted([*(ROOT / "pages").glob("*.py"), *(ROOT / "ui").rglob("*.py")])
SHARED_RESOURCES = {
    "result_store",  # returns core.timing.ResultStore, which copies on get/put
    "room_store",  # ui.checkpoint: core.rooms.RoomStore, shared on purpose; tally() returns fresh lists
}


def _cached_functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                call = dec if isinstance(dec, ast.Call) else None
                target = call.func if call else dec
                if isinstance(target, ast.Attribute) and target.attr in ("cache_data", "cache_resource"):
                    yield node, target.attr, call


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda p: p.name)
def test_caches_are_copies_and_bounded(path):
    for func, kind, call in _cached_functions(path):
        if kind == "cache_resource":
            assert func.name in SHARED_RESOURCES, f"{path.name}:{func.name} shares one object between sessions"
            continue
        takes_arguments = bool(func.args.args or func.args.kwonlyargs)
        bounded = call is not None and any(k.arg == "max_entries" for k in call.keywords)
        assert bounded or not takes_arguments, f"{path.name}:{func.name} is a cache with no max_entries"


def _script():
    import pandas as pd
    import streamlit as st

    @st.cache_data(max_entries=4)
    def table(seed: int) -> pd.DataFrame:
        return pd.DataFrame({"value": [seed, seed + 1]})

    mine = table(1)
    if st.query_params.get("vandal"):
        mine.loc[0, "value"] = -999  # one session edits what the cache gave it
    st.write(f"first={int(table(1).loc[0, 'value'])}")


def test_a_session_editing_cached_data_does_not_change_anothers_view():
    vandal = AppTest.from_function(_script, default_timeout=30)
    vandal.query_params["vandal"] = "1"
    vandal.run()
    student = AppTest.from_function(_script, default_timeout=30)
    student.run()
    assert student.markdown[0].value == "first=1"
