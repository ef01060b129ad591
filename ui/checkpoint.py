"""The checkpoint widget: predict, then see — alone, or as a room.

``checkpoint(cp)`` asks the question right before the figure that answers it; ``unfolded(cp)``
says whether that figure may be drawn. A guess lives in the reader's session (never in the URL,
which the whole class shares). Three link values change how it behaves:

- ``quiz=1``: the answering figures stay folded until the reader has guessed or revealed;
- ``room=CODE``: the reader's guess is counted in that room (``core.rooms``), and after guessing
  they see how the room guessed;
- ``teacher=1``: the room's tally shows before any guess, without the answer until the teacher
  presses *Reveal the answer*: the view a teacher projects. A teacher's own guess is not counted.

Before a guess or a reveal nothing on the page (text, chart, table, tooltip) says which option is
right: the answer index stays in Python until then.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.checkpoints import Checkpoint
from core.rooms import MAX_ROOM_CHARS, RoomError, RoomStore, normalize_room, valid_room
from ui.format import count

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["checkpoint", "unfolded", "link_view", "LinkView", "room_store", "TALLY_EVERY_S"]

TALLY_EVERY_S = 3  # seconds between refreshes of an open tally
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# Okabe–Ito: bluish green for the right option, orange for the others, sky blue before the reveal.
_RIGHT, _OTHER, _HIDDEN = "#009E73", "#E69F00", "#56B4E9"


@st.cache_resource
def room_store() -> RoomStore:
    """The process-wide store of room tallies: shared on purpose (it is how a class sees itself),
    and it hands out counts as fresh lists, never its own dictionaries."""
    return RoomStore()


# ---- what the link asks for --------------------------------------------------------------------


@dataclass(frozen=True)
class LinkView:
    quiz: bool = False
    teacher: bool = False
    room: str | None = None  # normalized (upper case), or None
    notices: tuple[str, ...] = ()


def _short(raw: str, limit: int = 40) -> str:
    """A raw URL value made safe inside a code span: cut, one line, no backticks."""
    flat = " ".join(raw.split())
    cut = flat if len(flat) <= limit else flat[:limit] + "…"
    return cut.replace("`", "'") or " "


def _flag(name: str, notices: list[str]) -> bool:
    values = st.query_params.get_all(name)
    if not values:
        return False
    raw = values[-1]
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() not in _FALSE:
        notices.append(f"The link asked for `{name}={_short(raw)}`, which is neither on nor off "
                       f"(`{name}=1` turns it on); it stays off.")
    return False


_CLASS_KEYS = ("room", "quiz", "teacher")
_CLASS_STATE = "_cp_class_link"


def _carry_class_link() -> None:
    """Keep a session in its class when it moves to another page.

    Moving a control keeps ``room``, ``quiz`` and ``teacher`` in the URL (they are never a widget's,
    so Streamlit leaves them alone), but the sidebar opens the next page with a bare URL, and a
    student's guesses there would silently stop counting in the room. So the usable class values a
    link brought are remembered in this session, and written back into the URL of a page opened
    without any of them. A link that names any of them is the class's word and replaces the memory;
    a reload starts a new session, and so forgets.
    """
    present = {k: st.query_params.get_all(k) for k in _CLASS_KEYS}
    if any(present.values()):
        usable = {}
        if present["room"] and valid_room(present["room"][-1]):
            usable["room"] = present["room"][-1]
        for flag in ("quiz", "teacher"):
            if present[flag] and present[flag][-1].strip().lower() in _TRUE:
                usable[flag] = "1"
        st.session_state[_CLASS_STATE] = usable
    else:
        for key, value in st.session_state.get(_CLASS_STATE, {}).items():
            st.query_params[key] = value


def link_view() -> LinkView:
    """``quiz``, ``teacher`` and ``room`` read from the URL (or, on a page the session reached by
    the sidebar, from the class link it opened: ``_carry_class_link``); a value that can't be used
    becomes a notice and its default (off, no room)."""
    _carry_class_link()
    notices: list[str] = []
    quiz, teacher = _flag("quiz", notices), _flag("teacher", notices)
    room = None
    rooms = st.query_params.get_all("room")
    if rooms and rooms[-1] != "":
        if valid_room(rooms[-1]):
            room = normalize_room(rooms[-1])
        else:
            notices.append(f"The link asked for `room={_short(rooms[-1])}`, which is not a room code "
                           f"(1–{MAX_ROOM_CHARS} letters and digits); reading on without a room.")
    if teacher and room is None and not rooms:
        notices.append("The link has `teacher=1` but no room: add `room=` and a code (home makes one) "
                       "to see how a room guesses.")
    return LinkView(quiz, teacher, room, tuple(notices))


_notice_lock = threading.Lock()
_noticed: OrderedDict[str, object] = OrderedDict()


def _first_in_this_run() -> bool:
    """True for the first checkpoint of a script run, so a page with three checkpoints shows a
    link's notice once. A run is told apart by its cursor table, which Streamlit makes anew for
    every run (holding it here keeps its identity from being reused)."""
    ctx = get_script_run_ctx()
    if ctx is None:
        return True
    with _notice_lock:
        if _noticed.get(ctx.session_id) is ctx.cursors:
            return False
        _noticed[ctx.session_id] = ctx.cursors
        _noticed.move_to_end(ctx.session_id)
        while len(_noticed) > 1000:
            _noticed.popitem(last=False)
    return True


# ---- the reader's state ------------------------------------------------------------------------


def _guess_key(cp: Checkpoint) -> str:
    # The settings are part of the widget's key: new settings draw a fresh radio with nothing chosen.
    return f"_cp_guess:{cp.key}:{cp.settings}"


def _revealed_key(cp: Checkpoint) -> str:
    return f"_cp_revealed:{cp.key}"


def _guess(cp: Checkpoint) -> int | None:
    chosen = st.session_state.get(_guess_key(cp))
    return cp.options.index(chosen) if chosen in cp.options else None


def _revealed(cp: Checkpoint) -> bool:
    return st.session_state.get(_revealed_key(cp)) == cp.settings


def _done(cp: Checkpoint) -> bool:
    return _guess(cp) is not None or _revealed(cp)


def _reveal(state_key: str, settings: str) -> None:
    st.session_state[state_key] = settings


def _voter_id() -> str:
    """A random id for this session's votes: it names no one and lives only in session state."""
    if "_cp_voter" not in st.session_state:
        st.session_state["_cp_voter"] = secrets.token_hex(8)
    return st.session_state["_cp_voter"]


# ---- drawing -----------------------------------------------------------------------------------


def checkpoint(cp: Checkpoint) -> bool:
    """Ask ``cp``; once guessed or revealed, say whether the guess was right and why.

    Returns True once this reader has guessed or revealed at these settings.
    """
    view = link_view()
    room = view.room
    problems = list(view.notices)
    if room is not None:
        try:
            room_store().check_room(room)
        except RoomError as err:
            problems.append(str(err))
            room = None
    if problems and _first_in_this_run():
        for notice in problems:
            st.warning(notice, icon="🔗")

    with st.container(border=True, key=f"checkpoint-{cp.key.replace('.', '-')}"):
        chosen = st.radio(f"Predict: {cp.question}", cp.options, index=None, key=_guess_key(cp))
        guess = cp.options.index(chosen) if chosen is not None else None
        if guess is None and not _revealed(cp):
            # A callback, so the run the click causes already knows: the button is gone at once.
            st.button("Reveal the answer", key=f"_cp_reveal:{cp.key}:{cp.settings}", icon=":material/visibility:",
                      on_click=_reveal, args=(_revealed_key(cp), cp.settings))
        done = guess is not None or _revealed(cp)

        if guess is not None and guess == cp.answer:
            st.success(f"Right: {cp.right}. {cp.why}", icon=":material/check_circle:")
        elif guess is not None:
            st.error(f"Not quite: the answer is {cp.right}. {cp.why}", icon=":material/cancel:")
        elif done:
            st.info(f"The answer: {cp.right}. {cp.why}", icon=":material/lightbulb:")

        if room is not None:
            if guess is not None and not view.teacher:
                try:
                    room_store().vote(room, cp.key, cp.settings, _voter_id(), guess)
                except RoomError as err:
                    st.warning(str(err), icon="🔗")
            if done or view.teacher:
                _live_tally(room, cp.key, cp.settings, cp.options, cp.answer if done else -1)
    return done


def unfolded(cp: Checkpoint) -> bool:
    """True when the figure answering ``cp`` may be drawn: always, unless the link has ``quiz=1``
    and this reader has not guessed or revealed yet (then a short placeholder is drawn)."""
    if _done(cp) or not link_view().quiz:
        return True
    st.info("Make your prediction above to see the figure that answers it.", icon=":material/lock:")
    return False


@st.fragment(run_every=TALLY_EVERY_S)
def _live_tally(room: str, key: str, settings: str, options: tuple[str, ...], answer: int) -> None:
    """The room's tally, redrawn every few seconds while it is on screen (``answer`` = -1 hides
    which option is right)."""
    counts = tuple(room_store().tally(room, key, settings, len(options)))[: len(options)]
    total = sum(counts)
    from ui.charts import figure  # altair loads only on a page that shows a tally

    caption = (f"How room {room} guessed: {count(total, 'reader')} so far"
               + ("" if answer < 0 else f", {count(counts[answer], 'reader')} right")
               + f". Refreshes every {TALLY_EVERY_S} seconds.")
    figure(_tally_spec(options, counts, answer), caption=caption, table=_tally_table(options, counts, answer),
           csv_name=f"room-{room}-{key}.csv", key=f"_cp_tally:{key}", table_label="The room's counts")


def _tally_table(options: tuple[str, ...], counts: tuple[int, ...], answer: int) -> pd.DataFrame:
    import pandas as pd  # here, not at the top: home's first view (no room open) never needs pandas

    table = pd.DataFrame({"option": list(options), "count": list(counts)})
    if answer >= 0:
        table["right"] = ["yes" if i == answer else "no" for i in range(len(options))]
    return table


@st.cache_data(show_spinner=False, max_entries=512)
def _tally_spec(options: tuple[str, ...], counts: tuple[int, ...], answer: int) -> dict:
    """A horizontal bar per option, in the order the readers saw them; the right one in green
    (and named in the tooltip) once revealed."""
    import altair as alt

    from ui.charts import chart_spec

    table = _tally_table(options, counts, answer)
    table["status"] = ["not revealed" if answer < 0 else ("right" if i == answer else "not right")
                       for i in range(len(options))]
    # The right option is named on its axis label too, so colour is never the only sign.
    # Markdown and TeX delimiters mean nothing on a chart axis.
    plain = [o.replace("$", "").replace("`", "").replace("**", "") for o in options]
    if len(set(plain)) < len(plain):  # two options told apart only by markup: keep them as written
        plain = list(options)
    table["label"] = [o + ("  ✓" if i == answer else "") for i, o in enumerate(plain)]
    scale = alt.Scale(domain=["right", "not right", "not revealed"], range=[_RIGHT, _OTHER, _HIDDEN])
    base = alt.Chart(table).encode(
        y=alt.Y("label:N", sort=list(table["label"]), title=None, axis=alt.Axis(labelLimit=320)),
        # Room to the right of the longest bar for its count.
        x=alt.X("count:Q", title="readers", axis=alt.Axis(tickMinStep=1, format="d"),
                scale=alt.Scale(domain=[0, max(max(counts, default=0), 1) * 1.15], nice=False)),
    )
    bars = base.mark_bar().encode(
        color=alt.Color("status:N", scale=scale, legend=None),
        tooltip=[alt.Tooltip("option:N"), alt.Tooltip("count:Q", title="readers"),
                 alt.Tooltip("status:N", title="answer")],
    )
    # Grey ink reads on the light and the dark theme alike (Vega's default text is black).
    labels = base.mark_text(align="left", dx=4, color="#999999").encode(text=alt.Text("count:Q", format="d"))
    return chart_spec((bars + labels).properties(height=36 * len(options) + 20))
