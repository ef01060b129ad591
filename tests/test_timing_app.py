"""pages/timing.py under AppTest: the reference run on arrival, nothing timed until asked, the button
runs, every control and any link work; the page's sentences at edge sizes; ui.jobs."""

from __future__ import annotations

import json
import re
import time

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import timing
from core.timing import fresh
from tests.apptest_utils import ROOT, rerun, run_page, notices, texts, run_page_with_numbers
from ui import jobs
from ui.charts import OKABE_ITO
from ui.prose import timing as prose

# Tiny sizes and a one-second budget: each click of the button takes about a second.
TINY = {"batch": "1", "seq": "4", "d_model": "16", "heads": "2", "sweep": "seq", "sweep_values": "2,4,8",
        "budget": "1", "threads": "1"}


def charts(at) -> int:
    return len(at.get("vega_lite_chart"))


def tables_with(at, column: str) -> list[pd.DataFrame]:
    return [df.value for df in at.dataframe if column in df.value.columns]


def test_defaults_teach_show_the_reference_run_and_time_nothing_until_asked(monkeypatch):
    monkeypatch.setattr(timing, "run_benchmark", lambda *a, **k: pytest.fail("timed something on arrival"))
    at = run_page_with_numbers("timing")
    said = texts(at)
    assert "What the sum costs" in said
    assert "537 MFLOP" in said  # 2·B·S·D² at B=8, S=128, D=512, from core.timing.flops
    # A shared link shows timing on arrival: the shipped reference run, labelled as its machine's.
    ref = timing.read_json(timing.reference_path("cpu"))
    assert "Not measured on this server yet" in said and ref["machine"]["cpu_model"] in said
    assert ref["command"] in said and ref["date"][:10] in said
    assert charts(at) >= 3  # memory, ratios at the base size, the sweep: before any button
    assert tables_with(at, "median_ms"), "the reference run's numbers, as a table"
    assert "of a bare GEMM" in said  # its headlines
    assert not notices(at)
    assert at.button(key="run").disabled is False
    # broadcast at the default size would need about 1 GiB: the page says it will be skipped
    assert "`broadcast` (1.02 GiB)" in said
    start = time.perf_counter()
    rerun(at)
    print(f"warm rerun at defaults, before any run: {(time.perf_counter() - start) * 1e3:.0f} ms")


# Runs whose sweep chart a test reads get 3 s: at a 1 s budget a machine loaded several times over its
# cores (wall clock running ahead of CPU time) can leave every sweep size without its rounds.
ROOMY = {**TINY, "budget": "3"}


def test_the_button_runs_checks_times_and_draws():
    at = run_page_with_numbers("timing", ROOMY)
    assert "Not measured on this server yet" in texts(at)  # the reference run, until the button is pressed
    at.button(key="run").click()
    rerun(at)
    said = texts(at)
    assert "Measured just now" in said
    assert charts(at) >= 3  # memory, bars at the base size, the sweep
    measured = tables_with(at, "median_ms")
    assert measured and set(timing.PROJECTION_VARIANTS) <= set(measured[0]["variant"])
    assert "variant" in measured[0].columns
    assert "`concat`" in said and "of a bare GEMM" in said  # the headline, worded by its interval
    base = measured[0]
    for column in ("median_ms", "fraction_of_gemm", "fraction_lo", "fraction_hi", "extra_MiB", "rel_error"):
        assert pd.api.types.is_numeric_dtype(base[column]), column  # numeric tables stay numeric
    start = time.perf_counter()
    rerun(at)  # a rerun re-shows the stored result; nothing is timed again
    print(f"warm rerun with a stored result: {(time.perf_counter() - start) * 1e3:.0f} ms")
    assert "Measured" in texts(at) and charts(at) >= 3


def color_scales(at) -> list[dict[str, str]]:
    """Every colour scale in the page's charts, as {domain value: colour}."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            scale = node.get("scale")
            if isinstance(scale, dict) and isinstance(scale.get("domain"), list) and str(scale.get("range", [""])[0]).startswith("#"):
                found.append(dict(zip(scale["domain"], scale["range"])))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for chart in at.get("vega_lite_chart"):
        walk(json.loads(chart.proto.spec))
    return found


def test_each_variant_keeps_its_colour_on_every_chart_and_it_is_colour_blind_safe():
    at = run_page("timing", {**ROOMY, "seq": "9"})
    at.button(key="run").click()
    rerun(at)
    scales = color_scales(at)
    assert len(scales) >= 3  # memory, bars, sweep
    for scale in scales:
        assert set(scale.values()) <= set(OKABE_ITO)
        if "concat" in scale:  # the grouped-query chart has variants of its own
            assert scale["concat"] == scales[0]["concat"] and scale["per_head_sum"] == scales[0]["per_head_sum"]
        assert len(set(scale.values())) == len(scale)
    assert len(set(scales[0].values())) == len(scales[0])  # seven variants, seven colours


def test_a_shared_link_reshows_a_finished_run_without_running():
    query = {**TINY, "seq": "6", "sweep": "none"}
    first = run_page("timing", query)
    first.button(key="run").click()
    rerun(first)
    assert "Measured just now" in texts(first)
    # A second reader opens the same link: the result is there, and no button was pressed.
    second = run_page("timing", query)
    assert "Measured" in texts(second) and charts(second) >= 2
    # A different link has no result from this server yet: it shows the reference run, saying so.
    third = run_page("timing", {**query, "seq": "7"})
    assert "Not measured on this server yet" in texts(third) and "not the settings above" in texts(third)


def test_every_control_moves_the_page():
    at = run_page_with_numbers("timing", TINY)
    at.number_input(key="batch").set_value(2)
    at.number_input(key="seq").set_value(8)
    at.number_input(key="d_model").set_value(24)
    at.number_input(key="heads").set_value(3)
    rerun(at)
    assert "B=2, S=8, D=24, H=3" in texts(at)
    at.radio(key="dtype").set_value("float64")
    rerun(at)
    assert "float64" in " ".join(c.value for c in at.caption)
    at.radio(key="sweep").set_value("heads")
    at.text_input(key="sweep_values").set_value("1,3,5")
    rerun(at)
    assert any("heads = 5" in n and "don't divide" in n for n in notices(at))  # 5 doesn't divide 24
    at.number_input(key="budget").set_value(3)  # 2 sizes × 10 variants: room even on a busy machine
    at.number_input(key="threads").set_value(1)
    at.toggle(key="forward").set_value(True)
    rerun(at)
    at.button(key="run").click()
    rerun(at)
    measured = tables_with(at, "median_ms")
    assert measured, texts(at)
    rows = pd.concat(measured)
    assert set(timing.FORWARD_VARIANTS) <= set(rows["variant"])
    assert charts(at) >= 4, rows[["variant", "n_heads", "status", "note"]]  # memory, bars, both sweeps
    link = [c.value for c in at.code if "?" in c.value]
    assert link and "forward=true" in link[0] and "sweep=heads" in link[0] and "dtype=float64" in link[0]
    assert any("--forward" in c.value and "--sweep heads=1,3" in c.value for c in at.code)


def test_the_fresh_process_experiment(monkeypatch):
    def fake(size, *, malloc, variants, **kwargs):
        return pd.DataFrame([{"variant": v, "median_ms": 1.0 + i, "iqr_ms": 0.1, "page_faults_per_call": 0.0,
                              "fraction_of_gemm": 1 / (1.0 + i), "alloc_bytes": 0, "malloc": malloc, "status": "ok",
                              "peak_rss_bytes": 420 * 2**20} for i, v in enumerate(variants)])

    monkeypatch.setattr(timing, "run_in_fresh_process", fake)
    at = run_page_with_numbers("timing", {**TINY, "seq": "5"})
    at.button(key="fresh").click()
    rerun(at, numbers=True)
    fresh = tables_with(at, "process")
    assert fresh, texts(at)
    assert {"fresh process, malloc default", "fresh process, malloc thresholds raised"} <= set(fresh[0]["process"])
    assert "420 MiB (fresh process, malloc default)" in texts(at)  # the children's peak memory, reported


def test_the_fresh_repeat_is_refused_when_the_memory_is_not_there(monkeypatch):
    monkeypatch.setattr(fresh, "available_memory", lambda: {"available": 100 * 2**20})
    monkeypatch.setattr(timing, "run_in_fresh_process", lambda *a, **k: pytest.fail("started a child without memory"))
    at = run_page("timing", {**TINY, "seq": "6"})
    at.button(key="fresh").click()
    rerun(at)
    assert any("100.0 MiB of memory free" in n for n in notices(at))
    assert "What the sum costs" in texts(at)


def _crafted(concat: tuple[float, float, float], head_loop: tuple[float, float, float]):
    """A run_benchmark stand-in returning one size's rows with the given (median, low, high) ratios."""

    def fake(sizes, **kwargs):
        size = sizes[0]
        rows = []
        for name in timing.PROJECTION_VARIANTS:
            mid, lo, hi = {"gemm": (1.0, 1.0, 1.0), "concat": concat, "head_loop": head_loop}.get(name, (0.5, 0.45, 0.55))
            rows.append({**{c: float("nan") for c in timing.CSV_COLUMNS}, "variant": name, "device": "cpu",
                         "dtype": "float32", "batch": size.batch, "seq": size.seq, "d_model": size.d_model,
                         "n_heads": size.n_heads, "median_ms": 1 / mid, "iqr_ms": 0.01, "fraction_of_gemm": mid,
                         "fraction_lo": lo, "fraction_hi": hi, "verdict": "reference" if name == "gemm" else timing.verdict(lo, hi),
                         "kind": timing.VARIANTS[name].kind, "runs": 9, "status": "ok", "note": "",
                         "round_ms": " ".join([f"{1 / mid:.4f}"] * 9)})
        return pd.DataFrame(rows, columns=timing.CSV_COLUMNS)

    return fake


def test_headlines_say_could_not_tell_where_the_interval_straddles_one(monkeypatch):
    monkeypatch.setattr(timing, "run_benchmark", _crafted(concat=(0.99, 0.95, 1.02), head_loop=(0.7, 0.65, 0.75)))
    at = run_page("timing", {**TINY, "seq": "10", "sweep": "none"})
    at.button(key="run").click()
    rerun(at)
    said = texts(at)
    assert "`concat`: **0.99 (0.95–1.02)** of a bare GEMM" in said and "could not" in said
    assert "runs at **0.99" not in said  # no claim either way
    assert not any("measured faster than the bare GEMM" in n for n in notices(at))


def test_headlines_claim_only_what_the_interval_shows_and_flag_a_variant_above_gemm(monkeypatch):
    monkeypatch.setattr(timing, "run_benchmark", _crafted(concat=(0.94, 0.91, 0.96), head_loop=(1.06, 1.02, 1.1)))
    at = run_page("timing", {**TINY, "seq": "11", "sweep": "none"})
    at.button(key="run").click()
    rerun(at)
    assert "`concat` runs at **0.94 (0.91–0.96)** of a bare GEMM" in texts(at)
    assert any("`head_loop` measured faster than the bare GEMM" in n and "noise" in n for n in notices(at))


def test_the_default_run_is_announced_complete_within_its_budget():
    at = run_page("timing")
    said = texts(at)
    sizes = len(timing.DEFAULT_RUN["sweep"].split(","))
    assert f"{sizes} sizes (seq = {timing.DEFAULT_RUN['sweep'].partition('=')[2].replace(',', ', ')})" in said
    assert f"within {timing.DEFAULT_RUN['budget_s']} s" in said
    assert at.number_input(key="threads").value == timing.DEFAULT_RUN["threads"]
    assert timing.DEFAULT_RUN["max_bytes"] == timing_page_cap()


def timing_page_cap() -> int:
    from ui.controls import MAX_TRACE_BYTES
    return MAX_TRACE_BYTES


def test_indices_start_at_zero_and_the_memory_point_matches_the_shapes_page():
    at = run_page("timing")
    said = texts(at)
    assert r"\sum_{h=0}^{H-1}" in said and "z^{0}" in said and "z^{H-1}" in said
    assert "hL, \\dots, hL+L-1" in said
    for one_based in (r"\sum_{h=1}", "z^{1}\\;", "z^{H}\\,", "(h-1)L", "(h+1)L"):
        assert one_based not in said, one_based
    assert "rises fastest" not in said
    assert "**materializing** the per-head results" in said
    assert "D + H - 1" in said and "H \\times L = D" in said


def test_the_page_script_reads_as_prose_and_imports_no_altair():
    import ast

    source = (ROOT / "pages" / "timing.py").read_text()
    tree = ast.parse(source)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "altair" not in imported
    first_defs = min(n.lineno for n in tree.body if isinstance(n, ast.FunctionDef))
    first_prose = min(n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
                      and getattr(n.func, "attr", "") == "markdown")
    assert first_prose < first_defs and first_prose < 40  # open the script: the essay comes first


def test_a_second_benchmark_waits_its_turn(monkeypatch):
    monkeypatch.setattr(timing, "run_benchmark", lambda *a, **k: pytest.fail("ran while another run held the lock"))
    at = run_page("timing", {**TINY, "seq": "3"})
    with jobs.exclusive():
        at.button(key="run").click()
        rerun(at)
    assert any("Another reader's benchmark or training run" in n for n in notices(at))


HOSTILE = [
    {"batch": "-1"}, {"batch": "abc"}, {"seq": "1e9"}, {"d_model": "NaN"}, {"heads": "0"}, {"heads": "2.5"},
    {"dtype": "float8"}, {"device": "cuda"}, {"device": "tpu"}, {"sweep": "time"}, {"budget": "99999"},
    {"budget": "-5"}, {"threads": "1000"}, {"forward": "maybe"},
    {"sweep_values": "<script>alert(1)</script>"}, {"sweep_values": "9" * 10_000}, {"sweep_values": ",,,"},
    {"sweep_values": "1,2,3,4,5,6,7,8,9"}, {"sweep_values": "🔥,**x**"}, {"sweep_values": "4096,2"},
    {"budget": "inf"}, {"seq": "-inf"}, {"sweep_values": "1e400"},
]


@pytest.mark.parametrize("query", HOSTILE, ids=lambda q: "-".join(f"{k}={str(v)[:12]}" for k, v in q.items()))
def test_hostile_links_get_a_message_and_a_working_page(query):
    at = run_page("timing", {**TINY, **query})
    assert notices(at), f"no message for {query}"
    assert "What the sum costs" in texts(at)
    assert at.button(key="run") is not None
    assert not any("Traceback" in n for n in notices(at))


def test_a_repeated_parameter_uses_its_last_value():
    at = run_page("timing", {**TINY, "batch": ["1", "2"]})
    assert "B=2, S=4" in texts(at)


def test_heads_that_do_not_divide_and_sizes_over_the_cap_say_so_and_disable_the_run():
    at = run_page("timing", {"d_model": "512", "heads": "7"})
    assert any("don't divide" in n for n in notices(at))
    assert at.button(key="run").disabled
    at = run_page("timing", {"batch": "64", "seq": "1024", "d_model": "2048", "heads": "8"})
    assert any("too big for this shared server" in n for n in notices(at))
    assert at.button(key="run").disabled
    assert "What the sum costs" in texts(at)


# ---- ui.jobs: one lock, one store, one run_job ------------------------------------------------------------


def test_result_store_hands_out_copies_and_forgets_the_oldest():
    store = jobs.ResultStore(capacity=2)
    store.put(("a",), {"result": {"table": pd.DataFrame({"x": [1]})}, "finished": 1.0})
    got = store.get(("a",))
    got["result"]["table"].loc[0, "x"] = 99  # a reader edits its copy, nested as deep as it likes
    assert store.get(("a",))["result"]["table"].loc[0, "x"] == 1
    store.put(("b",), {"result": pd.DataFrame()})
    store.get(("a",))  # a is now the most recently used
    store.put(("c",), {"result": pd.DataFrame()})
    assert store.get(("b",)) is None and store.get(("a",)) is not None and len(store) == 2


def test_only_one_long_job_at_a_time():
    import threading

    with jobs.exclusive():
        with pytest.raises(jobs.Busy):
            with jobs.exclusive():
                pass
        other: list = []

        def try_elsewhere():
            try:
                with jobs.exclusive(timeout_s=0.05):
                    other.append("ran")
            except jobs.Busy:
                other.append("busy")

        t = threading.Thread(target=try_elsewhere)
        t.start()
        t.join()
        assert other == ["busy"]
    with jobs.exclusive():
        pass  # released


def _job_script():
    import streamlit as st

    from ui import jobs

    key = ("test-job", int(st.query_params.get("n", "0")))
    if st.button("go", key="go"):
        jobs.run_job(key, lambda progress: progress(0.5, "half way") or {"value": key[1] * 2}, busy_message="busy here")
    item = jobs.stored(key)
    st.markdown(f"stored={item['result']['value'] if item else None}")


def test_run_job_stores_the_result_for_every_reader_of_the_same_key_and_says_busy():
    first = AppTest.from_function(_job_script, default_timeout=30)
    first.query_params["n"] = "21"
    first.run()
    assert first.markdown[0].value == "stored=None"  # opening a link never runs the job
    first.button(key="go").click().run()
    assert first.markdown[0].value == "stored=42"
    second = AppTest.from_function(_job_script, default_timeout=30)  # another session, same settings
    second.query_params["n"] = "21"
    second.run()
    assert second.markdown[0].value == "stored=42"
    third = AppTest.from_function(_job_script, default_timeout=30)
    third.query_params["n"] = "5"
    third.run()
    with jobs.exclusive():  # another session holds the server
        third.button(key="go").click().run()
    assert [w.value for w in third.warning] == ["busy here"] and third.markdown[0].value == "stored=None"


def test_job_keys_are_plain_values():
    with pytest.raises(TypeError):
        jobs.stored(("timing", pd.DataFrame()))
    with pytest.raises(TypeError):
        jobs.stored(["not", "a", "tuple"])
    assert jobs.stored(("never-stored", 1, 2.5, None, True, ("nested", 3))) is None


# ---- the page's sentences, fed crafted numbers (issue 18, items 2–4) ----------------------------------------


@pytest.mark.parametrize("mid, lo, hi, unit", [
    (-0.00015, -0.0002, -0.0001, "ns"), (0.4, 0.3, 0.5, "µs"), (12.0, 9.0, 14.0, "ms"), (-2e-7, -3e-7, -1e-7, "ns"),
    (1500.0, 1200.0, 1800.0, "s"),
])
def test_a_faster_difference_is_printed_in_a_unit_that_fits_and_never_as_minus_zero(mid, lo, hi, unit):
    said = prose.allocation_sentence({"allocation_ms": mid, "allocation_lo": lo, "allocation_hi": hi,
                                     "allocation_verdict": timing.verdict(lo, hi, 0.0)})
    assert f" {unit}**" in said
    assert "-0" not in said and "−0" not in said and "0.000 (" not in said
    numbers = said.split("**")[1].split()
    assert float(numbers[0]) != 0  # the difference is shown at a scale where it is not zero


def test_a_difference_inside_its_interval_is_no_measurable_difference():
    said = prose.allocation_sentence({"allocation_ms": -0.00015, "allocation_lo": -0.0004, "allocation_hi": 0.0002,
                                     "allocation_verdict": "could not tell"})
    assert "no measurable difference" in said and "faster" not in said and "costs" not in said
    assert "-0" not in said
    assert prose.allocation_sentence({"allocation_verdict": "not measured"}) == ""


def test_durations_choose_one_unit_and_drop_the_sign_of_zero():
    assert prose.duration_interval(-0.00015, -0.0002, -0.0001) == "-150 (-200–-100) ns"  # the issue's ~0.15 µs
    assert prose.duration_interval(0.0015, 0.001, 0.002) == "1.50 (1.00–2.00) µs"
    assert prose.duration_interval(0.0, -0.0, 0.0) == "0 (0–0) ns"
    assert prose.duration_interval(12.3456, 10.0, 15.0) == "12.3 (10.0–15.0) ms"


def _einsum_rows(ratios: dict[int, tuple[float, float, float]]) -> pd.DataFrame:
    rows = []
    for seq, (mid, lo, hi) in ratios.items():  # base size first, as a run lists it
        for name, ms in (("concat", 1.0), ("einsum", mid)):
            # per-round times whose ratio's median interval is (lo, hi): spread the rounds between them
            times = [ms] * 9 if name == "concat" else [lo] * 3 + [mid] * 3 + [hi] * 3
            rows.append({"variant": name, "batch": 1, "seq": seq, "d_model": 64, "n_heads": 4, "status": "ok",
                         "kind": "projection", "round_ms": " ".join(map(str, times))})
    return pd.DataFrame(rows)


def test_the_einsum_sentence_says_what_the_run_shows_at_each_size():
    slow = _einsum_rows({16: (2.0, 1.8, 2.2), 32: (1.9, 1.7, 2.1), 64: (1.01, 0.95, 1.05), 128: (1.0, 0.97, 1.03)})
    said = prose.einsum_sentence(slow)
    assert "At B=1, S=16, D=64, H=4, `einsum` took **2.00 (1.80–2.20)×** as long as `concat`: slower" in said
    assert "slower at seq = 16, 32; not told apart at seq = 64, 128" in said
    assert "free" not in said
    everywhere = prose.einsum_sentence(_einsum_rows({16: (2.0, 1.8, 2.2), 32: (1.5, 1.4, 1.6)}))
    assert "slower at both values of seq it measured" in everywhere
    one_size = prose.einsum_sentence(_einsum_rows({16: (1.0, 0.9, 1.1)}))
    assert "could not tell them apart" in one_size and "Across" not in one_size
    assert prose.einsum_sentence(_einsum_rows({}).reindex(columns=["variant", "batch", "seq", "d_model", "n_heads",
                                                                  "status", "kind", "round_ms"])) == ""


@pytest.mark.parametrize("size, units, copy", [
    (timing.Size(8, 128, 512, 8), "9 units", "heads-first copy"),
    (timing.Size(1, 16, 64, 4), "4 units", "B = 1"),  # the issue's link: the copy is a view
    (timing.Size(2, 1, 64, 4), "4 units", "S = 1"),
    (timing.Size(2, 8, 64, 1), "1 unit:", "H = 1"),
])
def test_the_memory_sentences_follow_extra_bytes_at_every_size(size, units, copy):
    said = " ".join(prose.memory_sentences(size, "float32"))
    per_head = next(s for s in prose.memory_sentences(size, "float32") if s.startswith("`per_head_sum`"))
    assert units in per_head and copy in per_head
    expected = timing.extra_bytes("per_head_sum", size, 4) // (size.bsd * 4)
    assert f"{expected} unit" in per_head
    if size.n_heads == 1:
        assert "the one head's full-width result" in per_head and "they are added" not in per_head
        assert "hold nothing extra" in said


def test_growth_and_noise_sentences_at_the_edges():
    rows = pd.DataFrame([{"variant": "concat", "from": 16, "to": 256, "ms_from": 1.0, "ms_to": 0.9, "factor": 0.9}])
    said = prose.growth_sentence(rows, "seq")
    assert "0.90×" in said and "The most" not in said  # one variant: no "most" and "least" of the same one
    big = pd.DataFrame([{"variant": "per_head_sum", "from": 1, "to": 64, "ms_from": 8.5, "ms_to": 112.0, "factor": 13.2},
                        {"variant": "concat", "from": 1, "to": 64, "ms_from": 3.4, "ms_to": 3.7, "factor": 1.09}])
    assert "`per_head_sum` 13×" in prose.growth_sentence(big, "heads") and "e+" not in prose.growth_sentence(big, "heads")
    one_noisy = pd.DataFrame({"note": ["noisy: x", ""], "status": ["ok", "ok"]})
    assert prose.noisy_caption(one_noisy).startswith("1 of the 2 ratios has an interval")


# ---- the page at edge sizes (issue 18, item 2) --------------------------------------------------------------


@pytest.mark.parametrize("query, per_head", [
    ({"batch": "1", "seq": "16", "d_model": "64", "heads": "4"}, "`per_head_sum` holds 4 units"),
    ({"batch": "2", "seq": "1", "d_model": "64", "heads": "4"}, "`per_head_sum` holds 4 units"),
    ({"batch": "2", "seq": "8", "d_model": "64", "heads": "1"}, "`per_head_sum` holds 1 unit:"),
])
def test_the_page_says_what_the_memory_table_shows_at_b1_s1_h1(query, per_head):
    at = run_page_with_numbers("timing", {**query, "sweep": "none", "budget": "1"})
    said = texts(at)
    assert per_head in said
    assert "and the heads-first copy of `z` it made them from, kept" not in said  # it is a view here
    mem = tables_with(at, "holds")[0].set_index("variant")
    assert "is a view" in mem.loc["per_head_sum", "holds"]
    assert "heads-first copy of z and every head" not in mem.loc["per_head_sum", "holds"]


@pytest.mark.parametrize("edge", [{"batch": "1"}, {"seq": "1"}, {"heads": "1"},
                                  {"batch": "1", "seq": "1", "heads": "1"}], ids=lambda q: "-".join(q))
def test_a_run_at_b1_s1_h1_reads_right(edge):
    """A real (tiny) run at B = 1, S = 1, H = 1: sentences stay singular, signless and true."""
    query = {"batch": "2", "seq": "3", "d_model": "8", "heads": "2", "sweep": "none", "budget": "1", "threads": "1",
             **edge}
    at = run_page("timing", query)
    at.button(key="run").click()
    rerun(at)
    said = texts(at)
    assert "Measured just now" in said
    assert "1 size ×" in said and "1 sizes" not in said
    # a signed zero ("-0", "-0.00", "−0.0 µs"), not a small negative number such as "-0.03"
    assert not re.search(r"[-−]0(?:\.0*)?(?![\d.])", said), re.search(r".{60}[-−]0(?:\.0*)?(?![\d.]).{20}", said)
    # "1 rounds" as a count of one, not the end of "21 rounds"
    assert not re.search(r"(?<![\d,.])1 (threads|rounds|pages|units)\b", said)
    assert "the additive view is free" not in said
    if query["heads"] == "1":
        assert "`per_head_sum` holds 1 unit: the one head's full-width result" in said  # nothing to add
    size = timing.Size(int(query["batch"]), int(query["seq"]), 8, int(query["heads"]))
    units = timing.extra_bytes("per_head_sum", size, 4) // (size.bsd * 4)
    assert f"`per_head_sum` holds {units} unit" in said
