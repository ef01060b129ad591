"""core.presets: published models' sizes, their KV cache, and their attention parameters."""

from __future__ import annotations

import pytest

from core.presets import (
    PRESET_NAMES,
    PRESETS,
    attention_parameters,
    kv_cache,
    kv_cache_bytes,
    preset,
    presets_table,
    read_config,
)
from core.sizes import LayerSizes

KiB, GiB = 2**10, 2**30

# The same figures as written in /work/shared/SEEDS.md ("Published configs"), a second, separate
# writing of them: (D, H, H_kv, L, layers, V). core.presets reads its own from the config fields.
SEEDS = {
    "gpt2-small": (768, 12, 12, 64, 12, 50_257),
    "llama-3-8b": (4096, 32, 8, 128, 32, 128_256),
    "mistral-7b": (4096, 32, 8, 128, 32, 32_000),
    "qwen2.5-7b": (3584, 28, 4, 128, 28, 152_064),
    "gemma-2b": (2048, 8, 1, 256, 18, 256_000),
    "falcon-7b": (4544, 71, 1, 64, 32, 65_024),
}


def test_the_six_presets():
    assert PRESET_NAMES == ("gpt2-small", "llama-3-8b", "mistral-7b", "qwen2.5-7b", "gemma-2b", "falcon-7b")


@pytest.mark.parametrize("key", PRESET_NAMES)
def test_preset_figures_match_the_published_configs(key):
    p = preset(key)
    assert (p.d_model, p.n_heads, p.n_kv_heads, p.d_head, p.layers, p.vocab) == SEEDS[key]
    assert p.source.startswith("https://huggingface.co/") and p.source.endswith("/config.json")
    s = p.sizes(batch=1, seq=20)
    assert isinstance(s, LayerSizes) and s.problems() == []
    assert (s.d_model, s.n_heads, s.n_kv_heads, s.d_head, s.vocab) == (p.d_model, p.n_heads, p.n_kv_heads, p.d_head, p.vocab)


def test_config_field_names_are_the_files_own():
    assert read_config({"n_embd": 768, "n_head": 12, "n_layer": 12, "vocab_size": 50_257})["n_kv_heads"] == 12
    falcon = read_config({"hidden_size": 4544, "num_attention_heads": 71, "multi_query": True,
                          "num_hidden_layers": 32, "vocab_size": 65_024})
    assert (falcon["n_kv_heads"], falcon["d_head"]) == (1, 64)
    # An explicit head_dim wins over D / H (Gemma 7B: 16 × 256 ≠ 3072).
    gemma7 = read_config({"hidden_size": 3072, "num_attention_heads": 16, "num_key_value_heads": 16,
                          "head_dim": 256, "num_hidden_layers": 28, "vocab_size": 256_000})
    assert gemma7["d_head"] == 256
    assert "num_key_value_heads 8" in PRESETS["llama-3-8b"].fields


def test_llama_3_8b_kv_cache():
    cache = kv_cache(preset("llama-3-8b"), dtype="bfloat16", tokens=8192)
    assert cache["per_token"] == 128 * KiB  # 2 · 32 · 8 · 128 · 2 bytes
    assert cache["per_token_without_sharing"] == 512 * KiB
    assert cache["total"] == 1 * GiB and cache["total_without_sharing"] == 4 * GiB
    assert cache["saving_factor"] == 4


@pytest.mark.parametrize("key", PRESET_NAMES)
@pytest.mark.parametrize("dtype, nbytes", [("float64", 8), ("float32", 4), ("float16", 2), ("bfloat16", 2)])
def test_kv_cache_is_the_formula(key, dtype, nbytes):
    p = preset(key)
    cache = kv_cache(p, dtype=dtype, tokens=100, batch=3)
    assert cache["per_token"] == 2 * p.layers * p.n_kv_heads * p.d_head * nbytes
    assert cache["total"] == cache["per_token"] * 100 * 3
    assert cache["per_token_without_sharing"] == cache["per_token"] * p.n_heads // p.n_kv_heads
    if key == "gpt2-small":
        assert cache["per_token"] == cache["per_token_without_sharing"] and cache["saving_factor"] == 1


def test_kv_cache_bytes_for_one_layer_of_the_running_example():
    assert kv_cache_bytes(layers=1, n_kv_heads=8, d_head=64, dtype="float32", tokens=20) == 2 * 8 * 64 * 4 * 20
    with pytest.raises(ValueError, match="unknown dtype"):
        kv_cache(preset("gemma-2b"), dtype="int8")


@pytest.mark.parametrize("key", PRESET_NAMES)
def test_attention_parameters_shrink_by_the_group_size(key):
    p = preset(key)
    params = attention_parameters(p.sizes())
    D, H, H_kv, L = p.d_model, p.n_heads, p.n_kv_heads, p.d_head
    assert params == {"W_Q": H * D * L, "W_K": H_kv * D * L, "W_V": H_kv * D * L, "W_O": H * L * D}
    unshared = attention_parameters(p.sizes().without_sharing())
    assert unshared["W_K"] == params["W_K"] * (H // H_kv) and unshared["W_Q"] == params["W_Q"]


def test_llama_parameters_per_layer():
    params = attention_parameters(preset("llama-3-8b").sizes())
    assert params["W_Q"] == params["W_O"] == 4096 * 4096 and params["W_K"] == params["W_V"] == 4096 * 1024


def test_table_has_every_preset_once():
    table = presets_table(dtype="bfloat16", tokens=8192)
    assert list(table["model"]) == list(PRESET_NAMES)
    llama = table.set_index("model").loc["llama-3-8b"]
    assert llama["kv_cache_total"] == GiB and llama["W_K_params_without_sharing"] == 4096 * 4096


@pytest.mark.parametrize("bad", ["gpt-5", "", "<b>x</b>", "👋" * 100, None])
def test_unknown_presets_are_refused_readably(bad):
    with pytest.raises(ValueError, match="choose one of gpt2-small"):
        preset(bad)
