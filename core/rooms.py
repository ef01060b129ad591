"""Rooms: how a class guessed, counted in the server's memory.

A teacher shares a link with ``room=CODE``; every reader who opens it and answers a checkpoint
adds one vote to that room's tally for that checkpoint at those settings. The store keeps counts
only: a vote is filed under a random id the reader's session made up (never a name or an
address), so a changed guess moves that reader's one vote and a rerun that sends the same guess
changes nothing.

Why a class in memory and not a database: the essay runs as one Streamlit process (Community
Cloud runs one per app), and a lecture's votes matter for an hour. With several processes each
would hold its own rooms and a class split between them would see part of its tally; a shared
store (Redis, a database) would then implement the same three methods: ``vote``, ``tally`` and
``check_room``. The store is bounded: rooms expire after hours of quiet, and there are caps on
rooms, on checkpoints per room and on voters per checkpoint, so hostile links can't fill memory.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RoomStore", "RoomError", "valid_room", "normalize_room", "new_room_code", "MAX_ROOM_CHARS"]

MAX_ROOM_CHARS = 12
_ROOM = re.compile(rf"[A-Za-z0-9]{{1,{MAX_ROOM_CHARS}}}")


def valid_room(code: str) -> bool:
    """Whether a room code is 1–12 ASCII letters and digits."""
    return bool(_ROOM.fullmatch(code))


def normalize_room(code: str) -> str:
    """The store's spelling of a code: upper case, so 'abc' typed from a slide joins 'ABC'."""
    if not valid_room(code):
        raise ValueError(f"a room code is 1–{MAX_ROOM_CHARS} letters and digits")
    return code.upper()


class RoomError(Exception):
    """A vote or a room the store refuses, with a message a reader can act on."""


@dataclass
class _Room:
    last_seen: float
    # (checkpoint key, settings fingerprint) -> voter id -> option index
    votes: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)


class RoomStore:
    """Votes per room, per checkpoint and settings; one lock, so thirty readers at once lose nothing.

    Every method takes the lock for a few dictionary operations; none does I/O under it.
    """

    def __init__(
        self,
        *,
        max_rooms: int = 200,
        max_checkpoints: int = 100,
        max_voters: int = 500,
        ttl_s: float = 6 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_rooms = max_rooms
        self.max_checkpoints = max_checkpoints  # per room
        self.max_voters = max_voters  # per checkpoint and settings
        self.ttl_s = ttl_s  # a room quiet for this long is forgotten
        self._clock = clock
        self._lock = threading.Lock()
        self._rooms: dict[str, _Room] = {}

    # -- the interface a shared store would implement -----------------------------------------

    def check_room(self, room: str) -> None:
        """Open the room (or keep it alive); RoomError when the store is full of other rooms."""
        with self._lock:
            self._room(normalize_room(room))

    def vote(self, room: str, checkpoint_key: str, settings: str, voter_id: str, option_index: int) -> None:
        """File this voter's guess; a second vote by the same voter replaces the first."""
        if option_index < 0:
            raise ValueError("an option index counts from 0")
        with self._lock:
            entry = self._room(normalize_room(room))
            slot = (checkpoint_key, settings)
            ballots = entry.votes.get(slot)
            if ballots is None:
                if len(entry.votes) >= self.max_checkpoints:
                    raise RoomError(
                        f"This room has counted {self.max_checkpoints} checkpoints (each page setting "
                        "counts anew); start a fresh room code for more."
                    )
                ballots = entry.votes[slot] = {}
            if voter_id not in ballots and len(ballots) >= self.max_voters:
                raise RoomError(f"This checkpoint has counted {self.max_voters} readers in this room, the most it holds.")
            ballots[voter_id] = option_index

    def tally(self, room: str, checkpoint_key: str, settings: str, n_options: int = 0) -> list[int]:
        """Votes per option index (a fresh list, at least ``n_options`` long); zeros for an
        unknown room, so reading never opens a room or refuses."""
        with self._lock:
            entry = self._rooms.get(normalize_room(room))
            ballots = dict(entry.votes.get((checkpoint_key, settings), {})) if entry else {}
        counts = [0] * max(n_options, 1 + max(ballots.values(), default=-1))
        for index in ballots.values():
            counts[index] += 1
        return counts

    # -- housekeeping ---------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return len(self._rooms)

    def _room(self, code: str) -> _Room:
        """The room, opened if new (under the lock). Quiet rooms are forgotten first."""
        now = self._clock()
        entry = self._rooms.get(code)
        if entry is not None and now - entry.last_seen > self.ttl_s:
            del self._rooms[code]
            entry = None
        if entry is None:
            if len(self._rooms) >= self.max_rooms:
                self._expire(now)
            if len(self._rooms) >= self.max_rooms:
                raise RoomError(
                    f"This server is holding {self.max_rooms} active rooms, the most it keeps; "
                    "a room is forgotten after a few quiet hours. Try again later, or read on without a room."
                )
            entry = self._rooms[code] = _Room(now)
        entry.last_seen = now
        return entry

    def _expire(self, now: float) -> None:
        for code in [c for c, r in self._rooms.items() if now - r.last_seen > self.ttl_s]:
            del self._rooms[code]


_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread from a slide


def new_room_code(length: int = 6) -> str:
    """A fresh random room code, easy to read aloud and type (32⁶ ≈ 10⁹ codes)."""
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(length))
