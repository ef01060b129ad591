"""ui.gate: never more heavy computations at once than slots; reentrant; a failure frees its slot."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ui.gate import Gate, cgroup_cpu_quota, cores, heavy


def test_default_gate_has_one_slot_per_available_core():
    assert cores() >= 1
    assert heavy.slots >= 1


@pytest.mark.parametrize("v2, v1, quota", [
    ("max 100000\n", None, None), ("50000 100000\n", None, 0.5), ("150000 100000\n", None, 1.5),
    (None, ("-1", "100000"), None), (None, ("200000", "100000"), 2.0), (None, None, None),
])
def test_a_cgroup_quota_narrows_the_core_count(tmp_path, v2, v1, quota):
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2)
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(v1[0])
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(v1[1])
    assert cgroup_cpu_quota(str(tmp_path)) == quota
    n = cores(str(tmp_path))
    assert 1 <= n <= cores(str(tmp_path / "absent"))
    if quota is not None:
        assert n <= max(1, -(-quota // 1))  # a quota of 0.5 or 1.5 cores: at most 1 or 2 slots


@settings(max_examples=10, deadline=None)
@given(slots=st.integers(1, 4), threads=st.integers(1, 12))
def test_never_more_running_than_slots_and_every_call_passes(slots, threads):
    gate = Gate(slots)
    inside = threading.Semaphore(0)  # each body reports that it has entered
    release = threading.Event()  # ...and stays inside until the test has counted
    seen: list[int] = []

    @gate
    def work(i: int) -> int:
        seen.append(gate.running)
        inside.release()
        release.wait(10)
        return i * i

    results: dict[int, int] = {}
    pool = [threading.Thread(target=lambda i=i: results.__setitem__(i, work(i))) for i in range(threads)]
    for t in pool:
        t.start()
    for _ in range(min(slots, threads)):  # as many as fit are inside at once; the rest queue
        assert inside.acquire(timeout=10)
    assert gate.running == min(slots, threads)
    release.set()
    for t in pool:
        t.join(10)
    assert results == {i: i * i for i in range(threads)}
    assert max(seen) <= slots and gate.most_running == min(slots, threads)
    assert gate.passed == threads and gate.running == 0 and gate.waiting == 0


def test_a_thread_inside_passes_through_again_without_deadlock():
    gate = Gate(1)

    @gate
    def outer() -> str:
        return inner() + "!"

    @gate
    def inner() -> str:
        assert gate.running == 1  # the outer call's slot, not a second one
        return "done"

    worker = threading.Thread(target=lambda: outer())
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert outer() == "done!" and gate.passed == 2 and gate.running == 0


def test_an_exception_gives_the_slot_back():
    gate = Gate(1)

    @gate
    def fails() -> None:
        raise ValueError("boom")

    for _ in range(3):
        with pytest.raises(ValueError):
            fails()
    assert gate.running == 0 and gate.passed == 3
    with gate.hold():  # the one slot is free again
        assert gate.running == 1


def test_released_lets_another_thread_in_and_takes_the_slot_back():
    gate = Gate(1)
    other_ran = threading.Event()

    def other() -> None:
        with gate.hold():
            other_ran.set()

    with gate.hold():
        with gate.released():  # long work: the one slot is free meanwhile
            t = threading.Thread(target=other)
            t.start()
            assert other_ran.wait(10)
            t.join(10)
        assert gate.running == 1  # back inside
        with gate.hold():  # still reentrant after stepping back in
            assert gate.running == 1
    assert gate.running == 0 and gate.passed == 2
    with gate.released():  # outside the gate: just runs
        assert gate.running == 0


def test_a_thread_that_waits_too_long_goes_ahead_without_a_slot():
    gate = Gate(1, wait_limit_s=0.05)
    ran = threading.Event()

    def late() -> None:
        with gate.hold():
            ran.set()

    with gate.hold():  # the only slot is taken and not given back while the other thread waits
        t = threading.Thread(target=late)
        t.start()
        t.join(10)
        assert ran.is_set() and gate.overflowed == 1
    assert gate.running == 0 and gate.passed == 1  # the overflowed run neither took nor gave a slot
    with gate.hold():
        assert gate.running == 1


def test_released_comes_back_without_a_slot_after_the_wait_limit_and_gives_none_back():
    gate = Gate(1, wait_limit_s=0.05)
    taken, done = threading.Event(), threading.Event()

    def squatter() -> None:  # takes the slot while the other thread is stepped out, and keeps it
        with gate.hold():
            taken.set()
            done.wait(10)

    with gate.hold():
        t = threading.Thread(target=squatter)
        with gate.released():
            t.start()
            assert taken.wait(10)
        assert gate.overflowed == 1  # came back in without a slot, no deadlock
    done.set()
    t.join(10)
    assert gate.running == 0 and gate.waiting == 0
    with gate.hold():  # the one slot is intact: neither lost nor given back twice
        assert gate.running == 1


# ---- the page gate in the app: long jobs step out, fragments, pages run alone ----------------------------


def test_run_job_steps_out_of_the_gate_while_its_job_runs(monkeypatch):
    """Every long job (benchmark, fresh-process repeat, training) lets other readers' page runs through."""
    from ui import jobs

    gate = Gate(1)
    monkeypatch.setattr(jobs, "heavy", gate)
    seen: dict = {}

    def job(progress) -> dict:
        got = threading.Event()

        def reader() -> None:  # another reader's page run, while this job runs
            with gate.hold():
                seen["running_beside_the_job"] = gate.running
                got.set()

        other = threading.Thread(target=reader)
        other.start()
        seen["reader_served"] = got.wait(10)
        other.join(10)
        return {"ok": True}

    with gate.hold():  # this page run's slot
        item = jobs.run_job(("gate-test", 1), job)
        assert gate.running == 1  # back in after the job
    assert item["result"] == {"ok": True}
    assert seen == {"reader_served": True, "running_beside_the_job": 1}
    assert gate.running == 0 and gate.overflowed == 0


_ENTRY = '''
import streamlit as st
from ui.gate import heavy

navigation = st.navigation([st.Page({page!r}, title="page", url_path="page", default=True)])
with heavy.hold():
    navigation.run()
'''

_PAGE = '''
import streamlit as st
from ui.gate import heavy

st.session_state["page_runs"] = st.session_state.get("page_runs", 0) + 1
st.markdown(f"page runs={st.session_state['page_runs']} inside={heavy.running}")


@st.fragment
@heavy
def section() -> None:
    st.session_state["fragment_runs"] = st.session_state.get("fragment_runs", 0) + 1
    st.markdown(f"fragment runs={st.session_state['fragment_runs']} inside={heavy.running}")


section()
'''


def test_a_fragment_rerun_runs_the_fragment_alone_and_it_takes_the_gate_itself(tmp_path, monkeypatch):
    """A fragment rerun does not go through the entry script's ``navigation.run()``, so the page gate
    does not cover it; a heavy fragment takes the gate at its top (before any cache lock) and gives it
    back; in a full run it passes through on the page's slot. No run leaves a slot taken."""
    from streamlit.testing.v1 import AppTest
    from streamlit.testing.v1 import local_script_runner as lsr

    page = tmp_path / "page.py"
    page.write_text(_PAGE)
    entry = tmp_path / "app.py"
    entry.write_text(_ENTRY.format(page=str(page)))
    before = heavy.running
    at = AppTest.from_file(str(entry), default_timeout=30)
    at.run()
    assert not at.exception
    said = [m.value for m in at.markdown]
    # In a full run the fragment is inside the page's slot: one slot, not two.
    assert said == [f"page runs=1 inside={before + 1}", f"fragment runs=1 inside={before + 1}"]
    assert heavy.running == before

    fragment_ids = list(at._fragment_storage._fragments)
    assert len(fragment_ids) == 1
    real = lsr.RerunData
    monkeypatch.setattr(lsr, "RerunData", lambda **kw: real(**kw, fragment_id_queue=fragment_ids))
    at.run()  # what a widget inside the fragment asks for: the fragment alone
    assert not at.exception
    said = [m.value for m in at.markdown]
    assert f"fragment runs=2 inside={before + 1}" in said  # the fragment holds a slot of its own
    assert at.session_state["page_runs"] == 1  # the entry script and the page did not run again
    assert heavy.running == before and heavy.waiting == 0


def test_the_app_runs_each_page_inside_the_gate_and_a_page_alone_outside_it():
    """streamlit_app.py takes one slot per run and gives it back; a page run alone (AppTest, the
    pages-folder cold start) takes none, and its jobs' ``released()`` just runs the body."""
    from tests.apptest_utils import run_page

    passed, running = heavy.passed, heavy.running
    at = run_page("streamlit_app.py")
    assert at.title and heavy.passed == passed + 1 and heavy.running == running
    at = run_page("home")
    assert at.title and heavy.passed == passed + 1 and heavy.running == running
