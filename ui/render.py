"""Render helpers shared by the pages: a code block with aligned comments, a chart with its
caption, a numeric table, and the note that stands where a figure cannot be drawn yet.

One module so that every page draws these the same way: tables stay numbers (formatted by the
column, never turned into text), every chart carries its caption as its alt text too, and a
figure that cannot be drawn says why instead of vanishing.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import streamlit as st

from ui.charts import csv_bytes, plain_text

__all__ = ["arrow", "numbers", "code", "chart", "table", "waiting"]


def arrow(frame: pd.DataFrame) -> pa.Table:
    """A table as the Arrow table ``st.dataframe`` draws, converted once inside a cached view.

    ``st.dataframe`` converts a DataFrame on every run, and a cached view's DataFrame is unpickled
    on every run too (its Arrow-backed text columns slowly); an Arrow table is passed through.
    """
    return pa.Table.from_pandas(frame, preserve_index=False)


def numbers(frame: pd.DataFrame) -> dict:
    """A figure's numbers, prepared once inside a cached view: the Arrow table ``st.dataframe``
    draws and the bytes of its CSV download (``ui.charts.figure``'s ``table`` and ``csv``)."""
    return {"arrow": arrow(frame), "csv": csv_bytes(frame)}


def code(*lines: tuple[str, str]) -> None:
    """A Python block of (statement, comment) pairs with the comments aligned."""
    width = max((len(stmt) for stmt, note in lines if note), default=0)
    st.code("\n".join(f"{stmt.ljust(width)}  # {note}" if note else stmt for stmt, note in lines), language="python")


def chart(spec: dict, caption: str, *, width: str = "stretch") -> None:
    """A cached Vega-Lite spec, in Streamlit's theme (light or dark), with its caption."""
    st.vega_lite_chart(spec, width=width, theme="streamlit", alt=plain_text(caption))
    st.caption(caption)


def table(data: pa.Table, *, hide_index: bool = False, pinned: tuple[str, ...] = ()) -> None:
    """A numeric table: floats stay floats (4 decimals on screen, every digit on copy, sort and in
    the CSVs), formatted by the column, never turned into text. No Styler: marshalling one costs
    more than the rest of a fragment's run, so masked cells are named in captions instead."""
    config = {f.name: st.column_config.NumberColumn(format="%.4f") for f in data.schema if pa.types.is_floating(f.type)}
    for c in pinned:
        config[c] = {**config.get(c, {}), "pinned": True}
    st.dataframe(data, hide_index=hide_index, column_config=config)


def waiting(why: str) -> None:
    """Stands where a figure would be when the settings above make it impossible."""
    st.info(f"{why} This figure appears once that is fixed; the controls keep working.", icon=":material/pending:")
