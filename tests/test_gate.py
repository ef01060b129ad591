"""ui.gate: never more heavy computations at once than slots; reentrant; a failure frees its slot."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ui.gate import Gate, cores, heavy


def test_default_gate_has_one_slot_per_available_core():
    assert cores() >= 1
    assert heavy.slots >= 1


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
