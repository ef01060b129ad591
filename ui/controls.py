"""Controls that live in the URL, the caps that keep a public server safe, and the link to a view.

Every page builds its widgets through :class:`Controls`, so the shared query-parameter names
(``batch, seq, vocab, d_model, heads, kv_heads, seed, dtype, device, sentence, token, causal,
scale``) mean the same thing everywhere, and a link whose value could not be used says so in words
instead of silently falling back. Streamlit's ``bind="query-params"`` does the syncing; this module
adds the message, the combination checks (their rules and wording live in ``core.sizes``) and the
memory caps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

import streamlit as st

from core.sizes import divisors, heads_rule, kv_heads_rule, nearest_kv_heads

SHARED_NAMES = (
    "batch", "seq", "vocab", "d_model", "heads", "kv_heads", "seed",
    "dtype", "device", "sentence", "token", "causal", "scale",
)

# ---- caps -------------------------------------------------------------------------------------
# Pages that allocate real tensors. One forward pass at the caps stays under MAX_TRACE_BYTES
# (see core.attention.trace_numel), which a 1 GB Community Cloud container can afford for a
# handful of concurrent sessions.
MAX_BATCH = 64
MAX_SEQ = 1024
MAX_D_MODEL = 2048
MAX_HEADS = 64
MAX_SEED = 2**31 - 1
MAX_TENSOR_ELEMENTS = 2**23  # 8,388,608 elements: 32 MiB in float32
MAX_TRACE_BYTES = 256 * 2**20  # every intermediate of one forward pass, at its dtype

# The shape table allocates nothing (it runs on torch's meta device), so it may go far larger.
MAX_SYMBOLIC_BATCH = 4096
MAX_SYMBOLIC_SEQ = 1_048_576
MAX_SYMBOLIC_VOCAB = 10_000_000
MAX_SYMBOLIC_D_MODEL = 65_536
MAX_SYMBOLIC_HEADS = 1024

# Text: a sentence is for reading, not for loading a book into a heatmap.
MAX_SENTENCE_CHARS = 200
MAX_TOKENS = 24

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _short(raw: str, limit: int = 40) -> str:
    """A raw URL value made safe to print: cut, and free of Markdown markup."""
    cut = raw if len(raw) <= limit else raw[:limit] + "…"
    return cut.replace("`", "'")


@dataclass
class Controls:
    """Widgets bound to the URL; collects a readable notice for every link value that was refused.

    Use one instance per page (call ``show_notices`` after each group of widgets): when a link
    value forces a restart, the instance carries all of the run's notices into the next run.
    """

    notices: list[str] = field(default_factory=list)
    values: dict[str, object] = field(default_factory=dict)
    _shown: int = 0  # notices already shown: a page with two groups of controls calls show_notices twice

    def __post_init__(self) -> None:
        # Notices from a run that had to restart (see _defuse_infinity) are shown by the next one.
        self.notices[:0] = st.session_state.pop("_carried_link_notices", [])

    def _defuse_infinity(self, name: str, raw: str | None, default: int) -> None:
        """Drop `name=inf` (or `1e400`) from the URL before the widget reads it, and rerun once.

        Streamlit 1.67's bound number_input converts the URL value with int(float(raw)), and
        int() of an infinity raises OverflowError inside the widget, where no page can catch it.
        """
        if raw is None:
            return
        try:
            infinite = math.isinf(float(raw))
        except ValueError:
            return
        if infinite:
            del st.query_params[name]
            st.session_state["_carried_link_notices"] = [
                *self.notices,
                f"The link asked for `{name}={_short(raw)}`, which is not a finite number; "
                f"showing `{name}={default}` instead.",
            ]
            st.rerun()

    def _raw(self, name: str) -> str | None:
        """The URL's value on the widget's first run in this session (later runs read widgets)."""
        if name in st.session_state:
            return None
        raw = st.query_params.get_all(name)
        return raw[-1] if raw else None

    def integer(
        self,
        name: str,
        label: str,
        *,
        default: int,
        lo: int,
        hi: int,
        slider: bool = False,
        step: int = 1,
        help: str | None = None,
        where=st,
    ) -> int:
        raw = self._raw(name)
        self._defuse_infinity(name, raw, default)
        if slider:
            value = where.slider(label, lo, hi, default, step=step, key=name, bind="query-params", help=help)
        else:
            value = where.number_input(
                label, lo, hi, default, step=step, key=name, bind="query-params", help=help
            )
        if raw is not None:
            try:
                as_float = float(raw)
                if as_float != as_float or as_float in (float("inf"), float("-inf")):
                    raise ValueError
                if not as_float.is_integer():
                    self._refuse(name, raw, "not a whole number", value)
                elif not lo <= int(as_float) <= hi:
                    self._refuse(name, raw, f"outside the allowed range {lo:,}–{hi:,}", value)
            except ValueError:
                self._refuse(name, raw, "not a number", value)
        self.values[name] = int(value)
        return int(value)

    def choice(
        self,
        name: str,
        label: str,
        options: Sequence[str],
        *,
        default: str,
        help: str | None = None,
        horizontal: bool = True,
        format_func: Callable[[str], str] = str,
        unavailable: dict[str, str] | None = None,
        where=st,
    ) -> str:
        """A radio of named options. ``unavailable`` maps a known-but-absent option to why."""
        raw = self._raw(name)
        value = where.radio(
            label, list(options), index=list(options).index(default), key=name,
            bind="query-params", help=help, horizontal=horizontal, format_func=format_func,
        )
        if raw is not None and raw not in options and raw not in [format_func(o) for o in options]:
            why = (unavailable or {}).get(raw, f"not one of {', '.join(options)}")
            self._refuse(name, raw, why, value)
        self.values[name] = value
        return value

    def flag(self, name: str, label: str, *, default: bool = False, help: str | None = None, where=st) -> bool:
        raw = self._raw(name)
        value = where.toggle(label, default, key=name, bind="query-params", help=help)
        if raw is not None and raw.strip().lower() not in _TRUE | _FALSE:
            self._refuse(name, raw, "neither true nor false", value)
        self.values[name] = bool(value)
        return bool(value)

    def text(
        self, name: str, label: str, *, default: str, max_chars: int, help: str | None = None, where=st
    ) -> str:
        raw = self._raw(name)
        value = where.text_input(label, default, max_chars=max_chars, key=name, bind="query-params", help=help)
        if raw is not None and len(raw) > max_chars:
            self.notices.append(
                f"The link's `{name}` was {len(raw):,} characters long; this page reads at most "
                f"{max_chars}, so it was cut to the first {max_chars}."
            )
        self.values[name] = value
        return value

    def kv_heads(
        self,
        heads: int,
        label: str = "Key/value heads (H_kv)",
        *,
        help: str | None = None,
        where=st,
    ) -> int:
        """How many key/value heads the ``heads`` query heads share: a divisor of ``heads``.

        A radio of the divisors, largest first, so the default is H_kv = H (plain multi-head
        attention, today's behaviour) and the last is 1 (multi-query attention). A link value
        that is not a divisor (0, 5 with 8 heads, more than the heads, ``2.5``) becomes the
        nearest divisor, with a notice; junk becomes the default. When ``heads`` changes so that
        the chosen value no longer divides it, the widget returns to H_kv = H.
        """
        name = "kv_heads"
        options = sorted(divisors(heads), reverse=True)  # [H, …, 1]; index 0, the default, is H
        raw = self._raw(name)
        if raw is not None and raw not in [str(o) for o in options]:
            try:
                asked = float(raw)
                if asked != asked or math.isinf(asked):
                    raise ValueError
            except ValueError:
                used, why = heads, "it is not a number."
            else:
                used = nearest_kv_heads(heads, round(asked))
                why = kv_heads_rule(heads, int(asked)) if asked.is_integer() else "it is not a whole number."
                why = f"{why} The nearest that works is {used}."
            # Setting the state before the widget exists is the one way to give a bound widget a
            # value other than its default; index 0 keeps Streamlit from warning about it.
            st.session_state[name] = used
            self.notices.append(
                f"The link asked for `{name}={_short(raw)}`, which can't be used: {why} "
                f"Showing `{name}={used}` instead."
            )
        value = where.radio(
            label, options, index=0, key=name, bind="query-params", horizontal=True, help=help,
        )
        self.values[name] = int(value)
        return int(value)

    def _refuse(self, name: str, raw: str, why: str, used: object) -> None:
        self.notices.append(
            f"The link asked for `{name}={_short(raw)}`, which is {why}; showing `{name}={used}` instead."
        )

    def show_notices(self) -> None:
        """One warning per refused link value not shown yet (call after a group of widgets)."""
        for notice in self.notices[self._shown:]:
            st.warning(notice, icon="🔗")
        self._shown = len(self.notices)


# ---- combination checks ------------------------------------------------------------------------


def heads_problem(d_model: int, heads: int, hi: int = MAX_HEADS) -> str | None:
    """A readable message when ``heads`` does not divide ``d_model``, else None.

    The rule and its wording are ``core.sizes.heads_rule`` (the one that ``LayerSizes`` applies).
    """
    return heads_rule(d_model, heads, hi)


def kv_heads_problem(heads: int, kv_heads: int) -> str | None:
    """A readable message when ``kv_heads`` cannot serve ``heads`` query heads, else None.

    ``Controls.kv_heads`` already snaps link values to a divisor; this is for values that come
    from elsewhere (a preset, a computed default). The rule is ``core.sizes.kv_heads_rule``.
    """
    return kv_heads_rule(heads, kv_heads)


def _shrink_hint(tensor: str) -> str:
    """Which sizes make a named tensor of the attention trace smaller."""
    return {"scores": "batch, heads or seq", "pattern": "batch, heads or seq",
            "per_head": "batch, seq, heads or d_model"}.get(tensor, "batch, seq or d_model")


def budget_problem(numel: dict[str, int], bytes_per_element: int) -> str | None:
    """A readable message when a computation would be too large for a shared server, else None.

    ``numel`` maps tensor names to element counts (e.g. from ``core.attention.trace_numel``).
    """
    name, biggest = max(numel.items(), key=lambda kv: kv[1])
    total = sum(numel.values()) * bytes_per_element
    if biggest > MAX_TENSOR_ELEMENTS:
        return (
            f"That is too big for this shared server: `{name}` alone would hold {biggest:,} numbers "
            f"(the cap is {MAX_TENSOR_ELEMENTS:,} per tensor). Make {_shrink_hint(name)} smaller."
        )
    if total > MAX_TRACE_BYTES:
        return (
            f"That is too big for this shared server: the tensors would take {total / 2**20:,.0f} MiB "
            f"(the cap is {MAX_TRACE_BYTES / 2**20:,.0f} MiB). Make batch, seq or d_model smaller."
        )
    return None


# ---- links -------------------------------------------------------------------------------------


def view_link(values: dict[str, object]) -> str:
    """The full URL of this page with every control's current value in the query string."""
    query = urlencode({k: (str(v).lower() if isinstance(v, bool) else v) for k, v in values.items()})
    base = st.context.url or ""
    return f"{base}?{query}" if query else base


def show_link(values: dict[str, object], label: str = "Link to this view") -> None:
    """A copyable link that reproduces the page exactly: paste it into slides or a chat."""
    with st.expander(f"🔗 {label}"):
        st.caption("Every control lives in the URL. This link opens the page with these exact settings.")
        st.code(view_link(values), language=None, wrap_lines=True)
