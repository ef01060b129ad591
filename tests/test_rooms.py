"""core.rooms: one vote per reader, checkpoint and settings; bounded; nothing lost under threads."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.rooms import RoomError, RoomStore, normalize_room, valid_room


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_reader_counts_once_and_a_changed_guess_moves_the_count():
    store = RoomStore()
    store.vote("abc", "p.q", "s", "reader-a", 1)
    store.vote("abc", "p.q", "s", "reader-a", 1)  # a rerun sends the same guess again
    store.vote("ABC", "p.q", "s", "reader-b", 2)  # codes are case-blind
    assert store.tally("abc", "p.q", "s", 4) == [0, 1, 1, 0]
    store.vote("abc", "p.q", "s", "reader-a", 2)
    assert store.tally("Abc", "p.q", "s", 4) == [0, 0, 2, 0]


def test_tallies_are_per_room_checkpoint_and_settings():
    store = RoomStore()
    store.vote("r1", "p.q", "s1", "a", 0)
    assert store.tally("r2", "p.q", "s1", 2) == [0, 0]
    assert store.tally("r1", "p.other", "s1", 2) == [0, 0]
    assert store.tally("r1", "p.q", "s2", 2) == [0, 0]
    assert store.tally("r1", "p.q", "s1", 2) == [1, 0]
    assert len(store) == 1  # reading an unknown room opens nothing


def test_tally_is_a_fresh_list():
    store = RoomStore()
    store.vote("r", "p.q", "s", "a", 0)
    store.tally("r", "p.q", "s", 2)[0] = 99
    assert store.tally("r", "p.q", "s", 2) == [1, 0]


@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 3)), max_size=60))
def test_tally_equals_each_readers_last_guess(votes):
    store = RoomStore()
    last: dict[int, int] = {}
    for reader, option in votes:
        store.vote("room", "p.q", "s", f"r{reader}", option)
        last[reader] = option
    expected = [list(last.values()).count(i) for i in range(4)]
    assert store.tally("room", "p.q", "s", 4) == expected


def test_thirty_readers_at_once_lose_and_double_nothing():
    store = RoomStore()
    barrier = threading.Barrier(30)
    final = {}

    def reader(i: int) -> None:
        barrier.wait()
        for round_ in range(200):  # each reader changes its mind 200 times
            store.vote("class", "p.q", "s", f"reader-{i}", (i + round_) % 4)
        final[i] = (i + 199) % 4

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = store.tally("class", "p.q", "s", 4)
    assert sum(counts) == 30
    assert counts == [list(final.values()).count(k) for k in range(4)]


def test_quiet_rooms_expire_and_a_full_store_refuses_new_rooms():
    clock = Clock()
    store = RoomStore(max_rooms=2, ttl_s=3600, clock=clock)
    store.vote("a", "p.q", "s", "x", 0)
    store.check_room("b")
    with pytest.raises(RoomError, match="2 active rooms"):
        store.check_room("c")
    store.check_room("a")  # an open room stays reachable when full
    clock.now = 1800
    store.check_room("a")  # activity keeps "a" alive
    clock.now = 3601 + 1  # "b" has been quiet for more than an hour, "a" for half
    store.check_room("c")
    assert len(store) == 2
    assert store.tally("a", "p.q", "s", 1) == [1]
    clock.now = 1800 + 3601 + 1
    assert store.tally("a", "p.q", "s", 1) == [1]  # reading does not expire…
    store.check_room("a")  # …but the next use finds it quiet too long and starts it afresh
    assert store.tally("a", "p.q", "s", 1) == [0]


def test_caps_on_checkpoints_per_room_and_voters_per_checkpoint():
    store = RoomStore(max_checkpoints=2, max_voters=3)
    store.vote("r", "p.a", "s", "v", 0)
    store.vote("r", "p.b", "s", "v", 0)
    with pytest.raises(RoomError, match="fresh room"):
        store.vote("r", "p.a", "other settings", "v", 0)
    for voter in "xyz":
        store.vote("r2", "p.a", "s", voter, 1)
    store.vote("r2", "p.a", "s", "x", 0)  # a known voter may still change their guess
    with pytest.raises(RoomError):
        store.vote("r2", "p.a", "s", "w", 0)
    assert store.tally("r2", "p.a", "s", 2) == [1, 2]


@pytest.mark.parametrize("code", ["", "a" * 13, "ab-c", "a b", "ä", "<b>", "١٢", "🎓"])
def test_invalid_codes_are_refused(code):
    assert not valid_room(code)
    with pytest.raises(ValueError):
        normalize_room(code)
    with pytest.raises(ValueError):
        RoomStore().vote(code, "p.q", "s", "v", 0)


def test_valid_codes():
    assert valid_room("a") and valid_room("Z9" * 6) and normalize_room("phys101") == "PHYS101"
