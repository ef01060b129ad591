"""The shape table page under AppTest: defaults, every control, other sizes and hostile links."""

from __future__ import annotations

import pytest

from tests.apptest_utils import notices, rerun, run_page, texts, run_page_with_numbers

TABLE_HEADER = "| step | operation | input 1 | input 2 | output | sums over | FLOPs | output memory |"
TINY = {"batch": "1", "seq": "5", "vocab": "10", "d_model": "16", "heads": "4"}


def main_table(at) -> str:
    block = next(m.value for m in at.markdown if TABLE_HEADER in m.value)
    return block[block.index(TABLE_HEADER):]


def charts(at) -> int:
    return len(at.get("vega_lite_chart"))


def test_defaults_show_the_posts_table():
    at = run_page_with_numbers("shapes")
    assert at.title[0].value == "The shape table"
    assert notices(at) == []
    table = main_table(at)
    assert table.count("\n") == 14  # header, rule and thirteen steps
    # The seed's numbers, traced; the contracted axis in italics, letters and numbers alike.
    assert "| B×S×*V* = 1×20×*50,000* | *V*×D = *50,000*×512 | B×S×D = 1×20×512 |" in table
    assert "| B×H×S×L = 1×8×20×64 |" in table and "B×H_kv×S×L = 1×8×20×64 (two: k, v)" in table
    assert "B×S×H×D = 1×20×8×512" in table and "| **8′** |" in table
    assert "3.81 MiB" in table  # the one-hot rows, 20 × 50,000 float32
    assert charts(at) == 3  # the flow picture, the KV cache and the endings' memory
    body = texts(at)
    assert "(320 KiB against 40 KiB)" in body  # step 8′ against step 8
    assert "5,242,880 multiplications" in body  # B·S·D·D, either ending
    assert "Real values are shown for small models only" in body  # V×D is 25.6 M numbers
    assert "`core/attention.py:" in body or "(core/attention.py:" in body
    assert "1×1×20×64" in body and "64×20×8×1" in body  # the two slips, checked by torch
    assert {b.label for b in at.button} >= {"The post's sizes", "A tiny model"}
    assert len(at.get("download_button")) >= 2


def test_each_size_control_retraces_the_table():
    at = run_page("shapes")
    at.number_input(key="seq").set_value(64)
    rerun(at)
    assert "B×H×S×S = 1×8×64×64" in main_table(at)
    at.number_input(key="heads").set_value(16)
    rerun(at)
    assert "B×H_kv×S×L = 1×16×64×32 (two: k, v)" in main_table(at)
    at.radio(key="kv_heads").set_value(4)
    rerun(at)
    assert "B×H_kv×S×L = 1×4×64×32 (two: k, v)" in main_table(at) and "| B×H×S×L = 1×16×64×32 |" in main_table(at)
    at.radio(key="kv_heads").set_value(16)  # back to plain multi-head attention
    at.number_input(key="d_model").set_value(256)
    rerun(at)
    assert "H×*D*×L = 16×*256*×16" in main_table(at)
    at.number_input(key="vocab").set_value(1000)
    rerun(at)
    assert "B×S×*V* = 1×64×*1,000*" in main_table(at)
    at.number_input(key="batch").set_value(3)
    rerun(at)
    assert "B×S×H×D = 3×64×16×256" in main_table(at)
    assert "| 192 KiB |" in main_table(at)  # 3·64·256 float32 numbers
    at.radio(key="dtype").set_value("float64")
    rerun(at)
    assert "| 384 KiB |" in main_table(at) and "| 192 KiB |" not in main_table(at)
    assert notices(at) == []


def test_presets_and_the_live_view():
    at = run_page("shapes")
    next(b for b in at.button if b.label == "A tiny model").click()
    rerun(at)
    assert "B×S×*V* = 1×5×*10*" in main_table(at)
    assert charts(at) == 4  # the live heatmap of the default step (6) joined
    at.radio(key="step").set_value("5b")
    rerun(at)
    assert charts(at) == 5  # k and v side by side
    at.radio(key="step").set_value("8′")
    at.slider(key="at_head").set_value(3)
    rerun(at)
    assert any("per_head[0, :, 3]" in c.value for c in at.caption)
    at.toggle(key="causal").set_value(True)
    at.number_input(key="seed").set_value(7)
    at.radio(key="step").set_value("6")
    rerun(at)
    assert any("Blank cells are masked" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "The post's sizes").click()
    rerun(at)
    assert "1×20×*50,000*" in main_table(at) and charts(at) == 3


@pytest.mark.parametrize("step, panels", [("1", 1), ("4", 1), ("7", 1), ("9", 1), ("9′", 1)])
def test_every_kind_of_step_draws(step, panels):
    at = run_page("shapes", {**TINY, "batch": "2", "step": step, "at_batch": "1"})
    assert charts(at) == 3 + panels
    assert notices(at) == []


def test_large_sizes_are_free_and_exact():
    at = run_page("shapes", {"seq": "100000"})
    table = main_table(at)
    assert "B×H×S×S = 1×8×100,000×100,000" in table
    assert "298 GiB" in table  # 8e10 float32 scores: the meta device does not allocate them
    assert notices(at) == []


def test_a_slice_too_wide_to_draw_says_so():
    at = run_page("shapes", {"seq": "64", "vocab": "1000", "d_model": "256", "heads": "4", "step": "1"})
    assert any("too many to draw" in i.value for i in at.info)


@pytest.mark.parametrize(
    "query, phrase",
    [
        ({"heads": "7"}, "7 heads don't divide a width of 512"),
        ({"d_model": "4", "heads": "8"}, "8 heads don't divide a width of 4"),
        ({"seq": "-5"}, "outside the allowed range"),
        ({"d_model": "0"}, "outside the allowed range"),
        ({"batch": "nan"}, "not a number"),
        ({"vocab": "1e400"}, "not a finite number"),
        ({"seq": "-inf", "at_head": "inf"}, "`seq=-inf`, which is not a finite number; showing `seq=20`"),
        ({"seq": "2.5"}, "not a whole number"),
        ({"heads": "🙂" * 300}, "not a number"),
        ({"dtype": "float8"}, "not one of"),
        ({"seq": "a" * 10_000}, "not a number"),
        ({"batch": "4096", "seq": "1048576", "vocab": "10000000", "d_model": "65536", "heads": "1024"},
         "torch refused to trace these sizes"),
        ({**TINY, "step": "<script>alert(1)</script>"}, "not one of"),
        ({**TINY, "at_head": "99"}, "outside the allowed range 0–3"),
        ({**TINY, "causal": "maybe"}, "neither true nor false"),
    ],
)
def test_hostile_links_get_a_message_and_a_working_page(query, phrase):
    at = run_page("shapes", query)  # fails on any exception
    said = " ".join(notices(at))
    assert phrase in said, said
    assert at.title[0].value == "The shape table"
    assert "Traceback" not in texts(at)
    assert len(at.number_input) >= 5  # the controls are still there to fix it


def test_shrinking_the_batch_under_a_chosen_sequence():
    at = run_page("shapes", {**TINY, "batch": "4", "at_batch": "3", "heads": "4", "at_head": "3", "step": "7"})
    assert any("z[3, 3]" in c.value for c in at.caption)
    at.number_input(key="batch").set_value(2)
    at.number_input(key="heads").set_value(2)
    rerun(at)  # the sliders' ranges shrink under their values: no exception, a valid slice
    caption = next(c.value for c in at.caption if "`z[" in c.value)
    b, h = caption.split("z[")[1].split("]")[0].split(", ")
    assert int(b) < 2 and int(h) < 2


# ---- trust (issue 10): indices, words that the numbers beside them support, numeric tables -------

import json  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import streamlit.testing.v1.local_script_runner as local_script_runner  # noqa: E402

from core.shapes import path_summary, shape_table  # noqa: E402
from ui.format import flops  # noqa: E402

SETTINGS = [{}, TINY, {"batch": "2", "seq": "6", "vocab": "12", "d_model": "24", "heads": "3", "step": "8",
                       "at_batch": "1", "causal": "true"}]


def everything(at) -> str:
    """The page's text plus every chart's spec (titles, axis titles, tooltips) and table columns."""
    specs = [c.proto.spec for c in at.get("vega_lite_chart")]
    columns = [" ".join(map(str, d.value.columns)) for d in at.dataframe]
    return "\n".join([texts(at), *specs, *columns, *(e.label for e in at.expander)])


@pytest.mark.parametrize("query", SETTINGS)
def test_heads_rows_and_sums_count_from_zero(query):
    body = everything(run_page("shapes", query))
    for one_based in ("h=1}^{H}", "i=1}^{D}", "l=1}^{L}", "(h+1)L", "(h+1)·L", "(h+1)\\cdot", "(h-1)L", "(h−1)L",
                      "z^1", "z^{1}", "h=1,"):
        assert one_based not in body, one_based
    assert r"\sum_{h=0}^{H-1}" in body and r"\sum_{i=0}^{D-1}" in body and r"\sum_{l=0}^{L-1}" in body
    assert r"rows $hL \dots hL+L-1$" in body


@pytest.mark.parametrize("query", [{}, TINY, {"seq": "64", "heads": "16", "vocab": "1000"}])
def test_flops_report_the_lookup_apart_from_the_attention_path(query):
    at = run_page("shapes", query)
    size = {**{"batch": "1", "seq": "20", "vocab": "50000", "d_model": "512", "heads": "8"}, **query}
    B, S, V, D, H = (int(size[k]) for k in ("batch", "seq", "vocab", "d_model", "heads"))
    s = path_summary(shape_table(B, S, V, D, H), H)
    body = texts(at)
    assert f"Steps 3–9, the path with the embedding read as a lookup: **{flops(s['attention_path_flops'])} FLOPs**" in body
    assert f"would add {flops(s['lookup_flops'])} on its own, {s['lookup_share']:.0%} of the {flops(s['total_flops'])}" in body
    assert "Total, through steps 1–9" not in body


def test_the_posts_sizes_spend_96_percent_on_the_one_hot_product():
    body = texts(run_page("shapes"))
    assert "**42.8 M FLOPs**" in body and "would add 1.02 G on its own, 96% of the 1.07 G" in body


def test_positions_meet_at_step_6_and_the_additive_price_is_materializing():
    body = texts(run_page("shapes"))
    assert "Step 6 is also where positions first meet" in body and r"$q_s \cdot k_t$" in body
    assert "Step 7 finishes what it began" in body and "Steps 6 and 7 are\nthe only steps" in body
    assert "S goes at step 7" not in body and "the only step where" not in body
    assert "The price of the additive view is memory" not in body
    assert "only if you materialize the heads' results" in body and 'torch.einsum("bhsl,hld->bsd", z, W_O)' in body
    assert "scaled by √L" not in body and "divided by √L" in body


@pytest.mark.parametrize("query", SETTINGS)
def test_symbols_mean_one_thing(query):
    body = everything(run_page("shapes", query))
    # V is the vocabulary; the values are v. "·" multiplies; "×" separates a shape's axes.
    for collision in ("Q, K and V", "(×3)", "softmax · V", "softmax(scores) · V", "  ·  ", "× W_", "Q·Kᵀ"):
        assert collision not in body, collision


def _stringified_numbers(frame) -> list[str]:
    bad = []
    for c in frame.columns:
        if frame[c].dtype.kind in "iuf" or str(frame[c].dtype) in ("Int64", "Float64"):
            continue
        cells = [str(v) for v in frame[c] if str(v) not in ("", "nan", "None", "<NA>")]
        numeric = [v for v in cells if v.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()]
        if cells and len(numeric) == len(cells) and c != "step":  # step ids are names: 8′ and 9′
            bad.append(c)
    return bad


@pytest.mark.parametrize("query", [*SETTINGS, {"seq": "100000"}])
def test_every_table_stays_numeric(query):
    at = run_page_with_numbers("shapes", query)
    assert at.dataframe, "the page shows its tables"
    for frame in (d.value for d in at.dataframe):
        assert _stringified_numbers(frame) == [], list(frame.columns)
    main = at.dataframe[0].value
    assert all(main[c].dtype.kind in "if" for c in ("flops", "matmul_flops", "output_bytes", "param_count"))


# ---- one section reruns alone (issue 13) ---------------------------------------------------------


@contextmanager
def fragment_scoped(at):
    """Runs of ``at`` inside this block rerun only the page's fragments, as a widget inside one would."""
    ids = list(at._fragment_storage._fragments)
    assert ids, "the page registered no fragment"
    original = local_script_runner.RerunData

    def rerun_data(*args, **kwargs):
        kwargs.setdefault("fragment_id_queue", list(ids))
        return original(*args, **kwargs)

    local_script_runner.RerunData = rerun_data
    try:
        yield
    finally:
        local_script_runner.RerunData = original


def _link(at) -> str:
    return next(c.value for c in at.code if "?" in c.value and "seq=" in c.value)


def test_look_inside_a_step_reruns_alone_and_keeps_the_link_current():
    at = run_page("shapes", TINY)
    assert "step=6" in _link(at)
    at.radio(key="step").set_value("8′")
    at.slider(key="at_head").set_value(2)
    with fragment_scoped(at):
        rerun(at)
    assert any("per_head[0, :, 2]" in c.value for c in at.caption)  # the section redrew
    # Only the section ran: the run sent none of the page's own elements (the browser keeps them).
    assert len(at.title) == 0 and len(at.number_input) == 0 and len(at.radio) == 1
    link = _link(at)
    assert "step=8%E2%80%B2" in link and "at_head=2" in link and "d_model=16" in link and "seed=0" in link
    at.radio(key="step").set_value("9")  # no head axis: the head slider goes, and so does its value
    with fragment_scoped(at):
        rerun(at)
    assert "at_head" not in _link(at) and "step=9" in _link(at)


def test_a_shared_link_restores_every_control():
    query = {**TINY, "batch": "2", "at_batch": "1", "step": "5a", "at_head": "2", "causal": "true",
             "scale": "false", "seed": "7", "dtype": "float64"}
    at = run_page("shapes", query)
    assert notices(at) == []
    assert at.radio(key="step").value == "5a" and at.slider(key="at_head").value == 2
    assert at.slider(key="at_batch").value == 1 and at.toggle(key="causal").value is True
    assert at.toggle(key="scale").value is False and at.number_input(key="seed").value == 7
    assert at.radio(key="dtype").value == "float64"
    link = _link(at)
    for key, value in query.items():
        assert f"{key}={value}" in link, key
    assert any("q[1, 2]" in c.value and "seed 7, float64" in c.value for c in at.caption)


@pytest.mark.parametrize("query, phrase", [
    ({**TINY, "at_head": "inf"}, "`at_head=inf`, which is not a finite number"),
    ({**TINY, "step": "8′; drop table"}, "not one of"),
    ({**TINY, "scale": "🙂"}, "neither true nor false"),
    ({**TINY, "batch": "3", "at_batch": "-1"}, "outside the allowed range 0–2"),
])
def test_a_hostile_value_inside_the_section_gets_its_notice(query, phrase):
    at = run_page("shapes", query)
    assert phrase in " ".join(notices(at))
    assert len(at.get("vega_lite_chart")) >= 3  # the section still draws


def test_the_script_opens_with_prose():
    source = (Path(__file__).resolve().parents[1] / "pages" / "shapes.py").read_text()
    assert "altair" not in source and "alt." not in source
    first_def = min(source.index(w) for w in ("\ndef ", "\n@st.") if w in source)
    assert source.index("st.title(") < first_def and source.index("st.markdown(") < first_def
    assert source.count("st.cache_data") == 0  # cached calls live in ui/views/shapes.py
    spec = json.loads(run_page("shapes", TINY).get("vega_lite_chart")[3].proto.spec)
    assert spec["layer"][0]["mark"]["type"] == "rect"  # the heatmap, built in ui/views/shapes.py


def test_the_step_header_follows_the_scale_toggle():
    on = texts(run_page("shapes", {**TINY, "step": "6"}))
    off = texts(run_page("shapes", {**TINY, "step": "6", "scale": "false"}))
    assert "**Step 6: scores q·kᵀ, divided by √L.**" in on
    assert "**Step 6: scores q·kᵀ, not divided by √L (the scale is off).**" in off
    assert "**Step 6: scores q·kᵀ, divided by √L.**" not in off
