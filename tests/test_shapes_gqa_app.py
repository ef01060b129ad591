"""The shape table page with shared keys and values: the kv_heads and model controls, hostile links included."""

from __future__ import annotations

import pytest

from core.presets import PRESETS
from core.shapes import shape_table, sharing_summary
from tests.apptest_utils import notices, rerun, run_page, texts
from ui.format import number, size_bytes


def main_table(at) -> str:
    return next(m.value for m in at.markdown if "| step | operation |" in m.value)


def row(at, step: str) -> str:
    return next(line for line in main_table(at).splitlines() if line.startswith(f"| **{step}** |"))


def test_kv_heads_shrinks_the_key_and_value_rows_and_adds_a_copy():
    at = run_page("shapes", {"kv_heads": "2"})
    assert notices(at) == []
    assert at.radio(key="kv_heads").options == ["8", "4", "2", "1"]
    assert "B×H_kv×S×L = 1×2×20×64 (two: k, v)" in row(at, "5b")
    assert "B×H_kv×S×L = 1×2×20×64" in row(at, "5c") and "B×H×S×L = 1×8×20×64 (two: k, v)" in row(at, "5c")
    assert "| B×H×S×L = 1×8×20×64 |" in row(at, "5a")
    body = texts(at)
    assert "Here 8 query heads share 2 key/value heads: groups of $G = H / H_{kv}$ = 4" in body
    assert "heads 4 … 7 read head 1." in body and "and so on" not in body
    assert "**Step 5c** copies each key/value head to the 4 query heads of its group" in body
    assert "hold 131,072 numbers together, against 524,288 without sharing" in body
    assert "4× smaller" in body and "**1 layer**" in body


def test_multi_query_attention():
    at = run_page("shapes", {"kv_heads": "1"})
    body = texts(at)
    assert "all of them read the one key/value head 0: multi-query attention" in body
    assert "8× smaller" in body
    assert "B×H_kv×S×L = 1×1×20×64 (two: k, v)" in row(at, "5b")


def test_plain_multi_head_attention_says_nothing_is_shared():
    body = texts(run_page("shapes"))
    assert "nothing is shared" in body and "hands k and v on unchanged" in body
    assert "Without sharing it is the same size" in body and "smaller" not in body.split("**The KV cache**")[1][:400]


@pytest.mark.parametrize("key", list(PRESETS))
def test_every_preset_fills_the_sizes_from_its_config(key):
    p = PRESETS[key]
    at = run_page("shapes", {"model": key, "dtype": "bfloat16"}, timeout=120)
    assert notices(at) == []
    assert at.radio(key="model").value == key
    assert not [n for n in at.number_input if n.key in ("vocab", "d_model", "heads")]  # the preset sets them
    L, G = p.d_model // p.n_heads, p.n_heads // p.n_kv_heads
    assert f"B×H×S×L = 1×{number(p.n_heads)}×20×{L}" in row(at, "5a")
    assert f"B×H_kv×S×L = 1×{number(p.n_kv_heads)}×20×{L} (two: k, v)" in row(at, "5b")
    assert f"V×D = {number(p.vocab)}×{number(p.d_model)}" in row(at, "2").replace("*", "")
    body = texts(at)
    s = sharing_summary(p.sizes(), layers=p.layers, dtype="bfloat16", context=8192)
    assert f"**{size_bytes(s['per_token'])} per token**" in body
    assert p.source in body and p.name in body
    assert (f"{G}× smaller" in body) if G > 1 else ("the same size" in body)
    table = shape_table(1, 20, p.vocab, p.d_model, p.n_heads, p.n_kv_heads).set_index("step")
    assert f"| {size_bytes(table.loc['5b', 'output_bytes'] // 2)} |" in row(at, "5b")  # bfloat16: half of float32


def test_llama_3_8b_quotes_128_kib_a_token_in_bfloat16():
    at = run_page("shapes", {"model": "llama-3-8b", "dtype": "bfloat16", "context": "8192"})
    body = texts(at)
    assert "**128 KiB per token**, against 512 KiB for the same model without sharing" in body
    assert "**1 GiB** against 4 GiB: 4× smaller" in body
    assert "all 32 layers" in body and "Published models run in bfloat16" not in body
    latex = " ".join(str(x.value) for x in at.latex)
    assert r"2 \cdot 32 \cdot 8 \cdot 128 \cdot 2\ \text{B} \;=\; 131{,}072\ \text{B}" in latex


def test_choosing_custom_again_brings_the_controls_back():
    at = run_page("shapes", {"model": "gemma-2b"})
    at.radio(key="model").set_value("custom")
    rerun(at)
    assert at.number_input(key="heads").value == 8 and at.radio(key="kv_heads").value == 8
    at.radio(key="model").set_value("mistral-7b")
    rerun(at)
    assert "1×8×20×128 (two: k, v)" in row(at, "5b")


def test_a_size_button_returns_to_custom_sizes_without_sharing():
    at = run_page("shapes", {"model": "qwen2.5-7b"})
    next(b for b in at.button if b.label == "A tiny model").click()
    rerun(at)
    assert at.radio(key="model").value == "custom" and at.radio(key="kv_heads").value == 4
    assert "B×H_kv×S×L = 1×4×5×4 (two: k, v)" in row(at, "5b")


def test_the_context_control_scales_the_cache():
    at = run_page("shapes", {"kv_heads": "2", "context": "1024", "batch": "4"})
    s = next(m.value for m in at.markdown if " per token**" in m.value)
    assert "for 4 sequences of 1,024 tokens" in s
    assert "for one sequence of 1 token" in texts(run_page("shapes", {"context": "1", "kv_heads": "4"}))


@pytest.mark.parametrize("query, phrase", [
    ({"kv_heads": "0"}, "`kv_heads=0`"),
    ({"kv_heads": "5"}, "5 key/value heads don't divide 8 query heads"),
    ({"kv_heads": "99"}, "more than the 8 query heads"),
    ({"kv_heads": "abc"}, "it is not a number"),
    ({"kv_heads": "2.5"}, "not a whole number"),
    ({"kv_heads": "9" * 10_000}, "which can't be used"),
    ({"kv_heads": "<b>x</b> $y$ 🙂"}, "it is not a number"),
    ({"model": "llama-9"}, "`model=llama-9`, which is not one of custom, gpt2-small"),
    ({"model": "x" * 10_000}, "not one of"),
    ({"model": "🙂<script>"}, "not one of"),
    ({"context": "0"}, "outside the allowed range 1–1,048,576"),
    ({"context": "99999999999"}, "outside the allowed range"),
    ({"context": "lots"}, "not a number"),
])
def test_hostile_values_get_a_notice_and_a_working_page(query, phrase):
    at = run_page("shapes", query)
    said = " ".join(notices(at))
    assert phrase in said, said
    assert "| step | operation |" in main_table(at)
    assert any(" per token**" in m.value for m in at.markdown)  # the KV-cache readout still draws
    if "model" in query:
        assert at.radio(key="model").value == "custom"
    if "kv_heads" in query:
        assert 8 % at.radio(key="kv_heads").value == 0


def test_a_preset_ignores_the_links_custom_sizes():
    at = run_page("shapes", {"model": "gpt2-small", "heads": "7", "kv_heads": "5"})
    assert notices(at) == []  # the preset sets them: nothing of the link was used
    assert "B×H×S×L = 1×12×20×64" in row(at, "5a")
    assert any("This link's `heads` and `kv_heads` are not used: GPT-2 small's own sizes replace them." in c.value
               for c in at.caption)


def test_an_old_link_to_step_5_opens_the_queries():
    at = run_page("shapes", {"batch": "1", "seq": "5", "vocab": "10", "d_model": "16", "heads": "4", "step": "5"})
    assert notices(at) == [] and at.radio(key="step").value == "5a"
