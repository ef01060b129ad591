"""Shared chart conventions: colour-blind-safe colours, heatmaps, and a figure's numbers and caption.

All charts use Streamlit's Altair theme (``theme="streamlit"``), which follows the light or
dark theme the reader picked; colours come from palettes that stay distinguishable under the
common colour-vision deficiencies.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

import altair as alt
import pandas as pd
import pyarrow as pa
import streamlit as st
from streamlit.dataframe_util import convert_anything_to_arrow_bytes

try:  # the lock Streamlit holds while it switches Altair's global settings
    from streamlit.elements.vega_charts import _altair_globals_lock
except ImportError:  # a future Streamlit: fall back to a lock of our own
    import threading

    _altair_globals_lock = threading.RLock()
try:  # the data transformer st.altair_chart uses: a DataFrame straight to Arrow IPC bytes
    from streamlit.elements.vega_charts import _to_arrow_dataset
except ImportError:  # a future Streamlit: inline the rows as JSON, then convert them below
    _to_arrow_dataset = None

# Altair checks every chart against the Vega-Lite JSON schema in ``to_dict()``: about half the time
# a distinct link spends building its specs (docs/class-load.md). A spec's shape does not depend on
# the reader's numbers, so the tests, which build every page's specs, validate them all and the
# server does not. tests/test_ui_helpers.py checks that validation is on there.
VALIDATE_SPECS = "pytest" in sys.modules

# Okabe & Ito (2008), the standard colour-blind-safe qualitative palette (black dropped: it
# vanishes on the dark theme). Pages pick colours from it by index, so keep the order.
OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999"]
# Heads take the yellow last: it has little contrast on the light theme. Heads beyond eight
# cycle, and are always labelled as well.
_HEAD_ORDER = [OKABE_ITO[i] for i in (0, 1, 2, 4, 5, 6, 7, 3)]

# Perceptually uniform and colour-blind-safe sequential / diverging schemes (Vega names).
SEQUENTIAL = "viridis"
DIVERGING = "blueorange"


def head_colors(n_heads: int) -> alt.Scale:
    """A categorical scale for head labels ``h0 … h{H-1}``."""
    domain = [f"h{h}" for h in range(n_heads)]
    return alt.Scale(domain=domain, range=[_HEAD_ORDER[h % len(_HEAD_ORDER)] for h in range(n_heads)])


def heatmap(
    df: pd.DataFrame,
    *,
    x: str,
    y: str,
    value: str,
    x_order: list | None = None,
    y_order: list | None = None,
    domain: tuple[float, float] | None = None,
    diverging: bool = False,
    tooltip: list[str] | None = None,
    value_format: str = ".4f",
    cell_text: bool = False,
    height: int | None = None,
    title: str | None = None,
) -> alt.Chart:
    """A rect heatmap of ``value`` over ``x`` and ``y`` (long-form ``df``), exact values in tooltips.

    ``domain`` fixes the colour range (e.g. (0, 1) for probabilities) so that two heatmaps can
    be compared by colour; a diverging scheme is centred on zero.
    """
    if domain is not None:
        scale = alt.Scale(scheme=DIVERGING if diverging else SEQUENTIAL, domain=list(domain))
    elif diverging:
        scale = alt.Scale(scheme=DIVERGING, domainMid=0)
    else:
        scale = alt.Scale(scheme=SEQUENTIAL)
    tips = tooltip or [y, x]
    # Altair 6 rejects title=None, so only pass a title that exists.
    base = alt.Chart(df, **({} if title is None else {"title": title})).encode(
        x=alt.X(f"{x}:O", sort=x_order, axis=alt.Axis(labelAngle=-45)),
        y=alt.Y(f"{y}:O", sort=y_order),
    )
    rect = base.mark_rect().encode(
        color=alt.Color(f"{value}:Q", scale=scale, legend=alt.Legend(title=value)),
        tooltip=[*tips, alt.Tooltip(f"{value}:Q", format=value_format)],
    )
    chart = rect
    if cell_text:
        lo, hi = domain if domain is not None else (float(df[value].min()), float(df[value].max()))
        middle = (lo + hi) / 2
        text = base.mark_text(fontSize=10).encode(
            text=alt.Text(f"{value}:Q", format=".2f"),
            # viridis is dark at the low end and light at the high end: flip the ink to match.
            color=alt.condition(alt.datum[value] > middle, alt.value("black"), alt.value("white")),
        )
        chart = rect + text
    if height is not None:
        # "fit-x" keeps the given height for the cells instead of squeezing the axes into it.
        chart = chart.properties(height=height, autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))
    return chart


def chart_spec(chart: alt.TopLevelMixin) -> dict:
    """An Altair chart as a plain Vega-Lite dict, to build once inside ``st.cache_data``.

    ``st.altair_chart`` validates the chart against the Vega-Lite schema on every rerun (tens of
    ms per layered chart); drawing a cached spec with ``st.vega_lite_chart`` skips that, and the
    schema check runs only under the tests (``VALIDATE_SPECS``). Built as Streamlit builds it:
    Altair's "none" theme (no fixed default sizes, so Streamlit's light/dark theme applies) and
    its Arrow data transformer, both switched under Streamlit's own lock because Altair's theme and
    data-transformer settings are global to all threads (sessions).
    """
    datasets: dict = {}
    if _to_arrow_dataset is not None:
        alt.data_transformers.register("to_arrow_dataset", _to_arrow_dataset)
        transformer = {"name": "to_arrow_dataset", "datasets": datasets}
    else:
        transformer = {"name": "default", "max_rows": 20_000}
    with _altair_globals_lock, alt.theme.enable("none"), alt.data_transformers.enable(**transformer):
        spec = chart.to_dict(validate=VALIDATE_SPECS)
    # Streamlit turns every named dataset into Arrow IPC bytes on every view (its
    # `_marshall_chart_data`, ~13 % of a busy server's time), but passes bytes through untouched:
    # the transformer above converted each DataFrame once, with the function Streamlit would call
    # (no detour through JSON rows); whatever is still rows is converted here.
    spec["datasets"] = {**spec.get("datasets", {}), **datasets}
    for name, rows in spec["datasets"].items():
        if not isinstance(rows, bytes | dict):  # GeoJSON/TopoJSON (dicts) stay as they are
            spec["datasets"][name] = convert_anything_to_arrow_bytes(rows)
    return spec


def figure(
    chart: alt.TopLevelMixin | dict,
    *,
    caption: str,
    table: pd.DataFrame | pa.Table | None = None,
    csv_name: str | None = None,
    key: str,
    table_label: str = "The numbers behind this figure",
    column_config: dict | None = None,
    csv: bytes | None = None,
) -> None:
    """Draw a chart with its caption, and its numbers as a table (with a CSV download) beneath.

    A cached view may hand over the table as Arrow already (``pa.Table.from_pandas``) with its
    ``csv_bytes``: then a rerun converts neither (``st.dataframe`` passes Arrow through, while a
    DataFrame is converted on every run, and the CSV would be encoded again).

    The caption doubles as the chart's accessible description: Streamlit makes ``alt`` the chart's
    ``aria-label`` (and the label of its "Show data" button), read out as plain text, so the
    caption's Markdown marks are dropped there. The numbers table is a native, keyboard-reachable
    expander right after the caption.
    """
    alt = plain_text(caption)
    if isinstance(chart, dict):  # a precomputed (e.g. cached) Vega-Lite spec: skips Altair's validation
        st.vega_lite_chart(spec=chart, width="stretch", theme="streamlit", alt=alt)
    else:
        st.altair_chart(chart, width="stretch", theme="streamlit", alt=alt)
    st.caption(caption)
    if table is not None and (box := numbers_section(table_label, key=key)) is not None:
        with box:
            st.dataframe(table, width="stretch", hide_index=True, column_config=column_config)
            csv_download(table if csv is None else csv, csv_name or f"{key}.csv", key=f"{key}_csv")


def numbers_section(label: str, *, key: str, expanded: bool = False):
    """A collapsed section for a figure's numbers, built only while it is open; None while closed.

    ``st.expander(on_change="rerun")`` tracks whether it is open, so a closed section's table and
    CSV button are neither built nor sent (most readers open few of them, and a page has up to
    ten): opening one reruns the page, or only the fragment it sits in, to draw its contents, and
    it stays open on later runs. Its state lives in the session under ``numbers_<key>``, never in
    the URL. Draw into it with ``with``.
    """
    box = st.expander(label, key=f"numbers_{key}", on_change="rerun", expanded=expanded)
    return box if box.open else None


_TEX_SYMBOLS = {"cdot": "·", "times": "×", "to": "→", "le": "≤", "ge": "≥", "approx": "≈", "sqrt": "√"}


def plain_text(markdown: str) -> str:
    """A caption's Markdown as a screen reader should hear it: no code ticks, emphasis marks or
    math dollars (what they enclose stays), and TeX's few symbol commands as the symbols."""
    text = re.sub(r"\*\*|`|\$", "", markdown)
    return re.sub(r"\\([A-Za-z]+)", lambda m: _TEX_SYMBOLS.get(m.group(1), m.group(1)), text)


def csv_bytes(table: pd.DataFrame) -> bytes:
    """A table as the bytes of its CSV download (every digit: the CSV is for computing with)."""
    return table.to_csv(index=False).encode()


Table = pd.DataFrame | pa.Table | bytes


def csv_download(table: Table | Callable[[], Table], file_name: str, *, key: str,
                 label: str = "Download CSV") -> None:
    """A download button for a table, its ``csv_bytes`` built once in a cached view, or a function
    that returns either (e.g. a cached view's call, so a run does not even fetch the table); it
    does not rerun the page.

    The file is made when the button is pressed (Streamlit's deferred download: ``data`` is a
    callable), not on every run: a run neither encodes the CSV nor hands its bytes to the server's
    media store, where each session's copy would wait until the session ends.
    """
    def data() -> bytes:
        got = table() if callable(table) else table
        if isinstance(got, bytes):
            return got
        return csv_bytes(got.to_pandas() if isinstance(got, pa.Table) else got)
    st.download_button(
        label, data, file_name=file_name, mime="text/csv",
        key=key, on_click="ignore", icon=":material/download:",
    )
