"""The shared UI helpers: cached chart specs carry their data as Arrow, and imports are frozen once."""

from __future__ import annotations

import gc

import altair as alt
import pandas as pd
import pyarrow as pa
from streamlit.testing.v1 import AppTest

from ui.charts import chart_spec
from ui.shell import freeze_imports_once


def _chart() -> alt.Chart:
    df = pd.DataFrame({"head": ["h0", "h1"], "value": [0.25, -1.5]})
    return alt.Chart(df).mark_bar().encode(x="head:N", y="value:Q", tooltip=["head", "value"])


def test_chart_spec_holds_its_data_as_arrow_bytes_with_the_same_rows():
    spec = chart_spec(_chart())
    (name, data), = spec["datasets"].items()
    assert isinstance(data, bytes)  # Streamlit passes bytes through instead of converting each view
    assert spec["data"] == {"name": name}
    table = pa.ipc.open_stream(data).read_all().to_pandas()
    assert table["head"].tolist() == ["h0", "h1"]
    assert table["value"].tolist() == [0.25, -1.5]  # numbers stay numbers


def _draws_a_cached_spec():

    from ui.charts import chart_spec, figure
    from tests.test_ui_helpers import _chart

    figure(chart_spec(_chart()), caption="two heads", key="t")


def test_a_spec_with_arrow_data_draws_with_its_dataset():
    at = AppTest.from_function(_draws_a_cached_spec, default_timeout=30)
    at.run()
    assert not at.exception
    (chart,) = at.get("vega_lite_chart")
    assert len(chart.proto.datasets) == 1 and chart.proto.datasets[0].data.data  # the rows travel as Arrow
    assert '"datasets"' not in chart.proto.spec  # and not a second time inside the JSON


def test_imports_are_frozen_once_per_page():
    before = gc.get_freeze_count()
    junk = [[] for _ in range(1000)]  # lists are tracked by the collector
    freeze_imports_once("tests/a-page-that-does-not-exist.py")
    after_first = gc.get_freeze_count()
    assert after_first >= before + len(junk)  # live objects moved out of the collector's reach
    more = [[] for _ in range(1000)]
    freeze_imports_once("tests/a-page-that-does-not-exist.py")
    assert gc.get_freeze_count() == after_first  # the second visit of that page freezes nothing
    del junk, more


def test_chart_specs_are_checked_against_the_vega_lite_schema_under_the_tests(monkeypatch):
    """The server skips Altair's schema check (ui.charts.VALIDATE_SPECS); the tests, which build every
    page's specs, keep it on, so a spec that Vega-Lite would reject still fails a test."""
    import jsonschema
    import pytest

    from ui import charts

    assert charts.VALIDATE_SPECS  # on for every spec the test suite builds
    bad = alt.Chart(pd.DataFrame({"x": [1]})).mark_bar().encode(x=alt.X("x:Q", bin="sometimes"))
    with pytest.raises(jsonschema.ValidationError):
        chart_spec(bad)
    checked = chart_spec(_chart())
    monkeypatch.setattr(charts, "VALIDATE_SPECS", False)  # as on the server: no check, the same spec
    assert chart_spec(_chart()) == checked


def test_chart_spec_data_is_the_arrow_streamlit_itself_would_send():
    from streamlit.dataframe_util import convert_anything_to_arrow_bytes

    df = pd.DataFrame({"head": pd.Categorical(["h0", "h1"]), "value": [0.25, -1.5]})
    spec = chart_spec(alt.Chart(df).mark_bar().encode(x="head:N", y="value:Q"))
    (data,) = spec["datasets"].values()
    assert data == convert_anything_to_arrow_bytes(df)  # categories stay a dictionary column, as Streamlit sends them
