"""Real models' attention sizes, read from their published configuration files, and what follows.

Each preset keeps the fields of the model's Hugging Face ``config.json`` that give its attention
sizes, under the names the file uses (GPT-2's ``n_embd`` and Falcon's ``multi_query`` included),
with the file's address. The sizes the essay uses (D, H, H_kv, L, layers, V) are *read* from those
fields by :func:`read_config`, the way Hugging Face's own model code reads them, so every figure
is written once, next to its source, and everything else is derived:

- the KV cache: a generating model keeps every past token's keys and values, in every layer:
  ``2 (K and V) · layers · H_kv · L · bytes per number`` per token (:func:`kv_cache`), beside the
  same model without sharing (H_kv = H);
- the parameters of W_Q, W_K, W_V and W_O in one layer, counted on torch's meta device from the
  weights' shapes (:func:`attention_parameters`): no memory is allocated, even for a 7-billion-
  parameter model's layer.

The head width: Gemma 2B's file sets ``head_dim`` 256 on its own; with D = 2048 and H = 8 that
happens to equal D / H. Where a file's ``head_dim`` differs from D / H (Gemma 7B: 16 × 256 = 4096
against D = 3072) :class:`core.sizes.LayerSizes` takes it as an explicit ``head_dim`` and W_O
stays [H, L, D]; none of the six presets needs that.

Checked (December 2026) against copies of the config files found with the project's search tool
and against /work/shared/SEEDS.md: Llama 3 8B's config.json (several copies of meta-llama's file);
Gemma 2B's sizes as in google's gemma_pytorch config (``head_dim`` 256, ``num_key_value_heads`` 1);
Qwen2.5 7B's layer shapes (k_proj 3584 → 512 = 4 heads × 128, an embedding of 152,064 rows, 28
layers); Mistral 7B v0.1's (4096, 32 heads, 8 KV heads, head_dim 128, 32 layers, 32,000 tokens);
Falcon 7B's module listing (32 layers, a 65,024 × 4544 embedding, a fused query_key_value of
4544 + 2·64 = 4672 outputs: one key head and one value head).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import pandas as pd

from core.attention import AttentionWeights
from core.device import DTYPES, dtype_bytes
from core.sizes import LayerSizes

__all__ = [
    "ModelPreset",
    "PRESETS",
    "PRESET_NAMES",
    "preset",
    "read_config",
    "kv_cache",
    "kv_cache_bytes",
    "attention_parameters",
    "presets_table",
]


def read_config(config: dict) -> dict[str, int]:
    """D, H, H_kv, L, layers and V from a config.json's fields, as the model code reads them.

    GPT-2 names them ``n_embd, n_head, n_layer`` and has no KV-head field (every head has its
    own keys and values). Falcon 7B says ``multi_query: true`` for one shared key/value head.
    Llama-style files give ``num_key_value_heads``, and ``head_dim`` where it is set on its own;
    without it L = D / H.
    """
    d_model = config.get("hidden_size", config.get("n_embd"))
    n_heads = config.get("num_attention_heads", config.get("n_head"))
    if "num_key_value_heads" in config:
        n_kv_heads = config["num_key_value_heads"]
    elif config.get("multi_query"):
        n_kv_heads = 1
    else:
        n_kv_heads = n_heads
    return {
        "d_model": d_model,
        "n_heads": n_heads,
        "n_kv_heads": n_kv_heads,
        "d_head": config.get("head_dim", d_model // n_heads),
        "layers": config.get("num_hidden_layers", config.get("n_layer")),
        "vocab": config["vocab_size"],
    }


@dataclass(frozen=True)
class ModelPreset:
    """One published model: its config file's attention fields, and the sizes read from them."""

    key: str  # the URL value, model=…
    name: str  # for prose and tables
    source: str  # the config file's address
    config: MappingProxyType = field(repr=False)  # the file's fields that set the attention sizes

    @property
    def sizes_read(self) -> dict[str, int]:
        return read_config(dict(self.config))

    @property
    def d_model(self) -> int:
        return self.sizes_read["d_model"]

    @property
    def n_heads(self) -> int:
        return self.sizes_read["n_heads"]

    @property
    def n_kv_heads(self) -> int:
        return self.sizes_read["n_kv_heads"]

    @property
    def d_head(self) -> int:
        return self.sizes_read["d_head"]

    @property
    def layers(self) -> int:
        return self.sizes_read["layers"]

    @property
    def vocab(self) -> int:
        return self.sizes_read["vocab"]

    @property
    def fields(self) -> str:
        """The config fields the figures come from, for a citation: "hidden_size 4096, …"."""
        return ", ".join(f"{k} {v}" for k, v in self.config.items())

    def sizes(self, batch: int = 1, seq: int = 20) -> LayerSizes:
        """One layer of this model at a batch and sequence length of the reader's choosing."""
        return LayerSizes(batch, seq, self.vocab, self.d_model, self.n_heads, self.n_kv_heads, self.d_head)


def _preset(key: str, name: str, source: str, **config: int | bool) -> ModelPreset:
    return ModelPreset(key, name, source, MappingProxyType(config))


_HF = "https://huggingface.co/{}/blob/main/config.json"

# The published figures, written once. Field names and values as in each file.
PRESETS: MappingProxyType = MappingProxyType({p.key: p for p in [
    _preset("gpt2-small", "GPT-2 small", _HF.format("openai-community/gpt2"),
            n_embd=768, n_head=12, n_layer=12, vocab_size=50_257),
    _preset("llama-3-8b", "Llama 3 8B", _HF.format("meta-llama/Meta-Llama-3-8B"),
            hidden_size=4096, num_attention_heads=32, num_key_value_heads=8, num_hidden_layers=32,
            vocab_size=128_256),
    _preset("mistral-7b", "Mistral 7B", _HF.format("mistralai/Mistral-7B-v0.1"),
            hidden_size=4096, num_attention_heads=32, num_key_value_heads=8, num_hidden_layers=32,
            vocab_size=32_000),
    _preset("qwen2.5-7b", "Qwen2.5 7B", _HF.format("Qwen/Qwen2.5-7B"),
            hidden_size=3584, num_attention_heads=28, num_key_value_heads=4, num_hidden_layers=28,
            vocab_size=152_064),
    _preset("gemma-2b", "Gemma 2B", _HF.format("google/gemma-2b"),
            hidden_size=2048, num_attention_heads=8, num_key_value_heads=1, head_dim=256,
            num_hidden_layers=18, vocab_size=256_000),
    _preset("falcon-7b", "Falcon 7B", _HF.format("tiiuae/falcon-7b"),
            hidden_size=4544, num_attention_heads=71, multi_query=True, num_hidden_layers=32,
            vocab_size=65_024),
]})
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


def preset(key: str) -> ModelPreset:
    """The preset for a ``model=`` value; a readable ValueError for anything else."""
    try:
        return PRESETS[key]
    except (KeyError, TypeError):
        shown = str(key)[:40].replace("`", "'")
        raise ValueError(f"no model preset called {shown!r}; choose one of {', '.join(PRESET_NAMES)}") from None


# ---- the KV cache -------------------------------------------------------------------------------


def kv_cache_bytes(*, layers: int, n_kv_heads: int, d_head: int, dtype: str, tokens: int = 1, batch: int = 1) -> int:
    """Bytes of keys and values kept for ``tokens`` past tokens of ``batch`` sequences.

    2 (a key and a value vector) · layers · H_kv · L numbers per token, each ``dtype_bytes(dtype)``
    bytes: the cache a model fills while it generates, one token at a time.
    """
    return 2 * layers * n_kv_heads * d_head * dtype_bytes(dtype) * tokens * batch


def kv_cache(model: ModelPreset, *, dtype: str = "bfloat16", tokens: int = 8192, batch: int = 1) -> dict:
    """The model's KV cache with its key/value sharing and without it (H_kv = H), side by side.

    Plain numbers for a page: bytes per token and for ``tokens`` tokens, both ways, and the
    factor H / H_kv that sharing saves.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    common = dict(layers=model.layers, d_head=model.d_head, dtype=dtype)
    shared = dict(common, n_kv_heads=model.n_kv_heads)
    unshared = dict(common, n_kv_heads=model.n_heads)
    return {
        "model": model.key,
        "dtype": dtype,
        "bytes_per_number": dtype_bytes(dtype),
        "layers": model.layers,
        "n_heads": model.n_heads,
        "n_kv_heads": model.n_kv_heads,
        "d_head": model.d_head,
        "tokens": tokens,
        "batch": batch,
        "per_token": kv_cache_bytes(**shared),
        "per_token_without_sharing": kv_cache_bytes(**unshared),
        "total": kv_cache_bytes(**shared, tokens=tokens, batch=batch),
        "total_without_sharing": kv_cache_bytes(**unshared, tokens=tokens, batch=batch),
        "saving_factor": model.n_heads // model.n_kv_heads,
    }


# ---- parameters ---------------------------------------------------------------------------------


def attention_parameters(sizes: LayerSizes) -> dict[str, int]:
    """Parameters of W_Q, W_K, W_V, W_O in one layer, counted from meta-device tensors.

    W_Q and W_O hold H·D·L each; W_K and W_V hold H_kv·D·L, smaller by H / H_kv. Biases are
    left out (most of these models have none; Qwen2.5 has q, k and v biases of H·L, H_kv·L, H_kv·L).
    """
    w = AttentionWeights.meta(sizes.d_model, sizes.n_heads, n_kv_heads=sizes.n_kv_heads, d_head=sizes.d_head)
    return {name: getattr(w, name).numel() for name in ("W_Q", "W_K", "W_V", "W_O")}


def presets_table(*, dtype: str = "bfloat16", tokens: int = 8192) -> pd.DataFrame:
    """Every preset in one table: sizes, per-layer attention parameters, KV cache both ways."""
    rows = []
    for p in PRESETS.values():
        params = attention_parameters(p.sizes())
        unshared = attention_parameters(p.sizes().without_sharing())
        cache = kv_cache(p, dtype=dtype, tokens=tokens)
        rows.append({
            "model": p.key, "name": p.name, "d_model": p.d_model, "n_heads": p.n_heads,
            "n_kv_heads": p.n_kv_heads, "d_head": p.d_head, "group_size": p.n_heads // p.n_kv_heads,
            "layers": p.layers, "vocab": p.vocab,
            **{f"{k}_params": v for k, v in params.items()},
            "W_K_params_without_sharing": unshared["W_K"],
            "kv_cache_per_token": cache["per_token"],
            "kv_cache_per_token_without_sharing": cache["per_token_without_sharing"],
            "kv_cache_total": cache["total"],
            "kv_cache_total_without_sharing": cache["total_without_sharing"],
            "source": p.source,
        })
    return pd.DataFrame(rows)
