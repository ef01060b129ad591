"""The shape table: every tensor of the attention path at any size, read off the running code.

``shape_table`` runs the path on torch's meta device (``core.shape_walk``: shapes, no memory) and
turns the record of torch calls into one row per step (``core.shape_steps`` names the steps and
writes their letters; every letter is checked here against the traced shapes). The rest of this
module derives what the page says from that table: the totals (``path_summary``), what sharing
keys and values saves (``sharing_summary``: parameters and the KV cache), the source's two
notational slips (``seed_slips``) and the arrows of the flow picture (``flow_edges``).

Sizes are ``core.sizes.LayerSizes``; ``Sizes`` is kept as its old name here. Letters: B batch,
S sequence, V vocabulary, D d_model, H query heads, H_kv key/value heads, L = D / H head width,
G = H / H_kv query heads per key/value head.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from core.device import DTYPES, dtype_bytes, dtype_name
from core.presets import attention_parameters, kv_cache_bytes
from core.shape_steps import (
    AXIS_NAMES,
    LEGACY_STEP_IDS,
    STEP_IDS,
    STEPS,
    StepSpec,
    evaluate,
    position_mixing,
    spec,
    step_words,
    symbolic_shape,
)
from core.shape_walk import (
    PathError,
    PathTrace,
    as_dtype,
    op_trace,
    panel_shape,
    quiet_step_line,
    step_rows,
    step_values,
    tensor_numel,
    trace_path,
)
from core.sizes import LayerSizes

Sizes = LayerSizes  # the table's old size type: LayerSizes(batch, seq, vocab, d_model, n_heads, …)

__all__ = [
    "AXIS_NAMES", "LEGACY_STEP_IDS", "STEPS", "STEP_IDS", "MAX_CONTEXT", "PathError", "PathTrace", "Sizes",
    "StepSpec", "evaluate", "flat_table", "flow_edges", "kv_rows", "numeric_columns", "op_trace",
    "panel_shape", "path_summary", "position_mixing", "seed_slips", "shape_table", "sharing_summary",
    "step_values", "step_words", "tensor_numel", "trace_path",
]


def _sym_of(t: torch.Tensor, symbolic: str, sizes: LayerSizes, what: str) -> None:
    if tuple(t.shape) != symbolic_shape(symbolic, sizes):
        raise AssertionError(f"{what}: the code made {tuple(t.shape)}, the table's letters {symbolic} say "
                             f"{symbolic_shape(symbolic, sizes)}")


def _contracted_positions(s: StepSpec) -> tuple[int | None, int | None]:
    """Which axis of each input a step sums away.

    A product pairs the *last* axis of its left input carrying the letter with the *first* one of
    its right input (``D×D`` at step 9: the rows of W_O; ``B×H×S×S`` at step 7: the key axis).
    """
    if s.contracted is None:
        return None, None
    axes_1 = s.input_1.split("×")
    pos_1 = len(axes_1) - 1 - axes_1[::-1].index(s.contracted)
    if s.input_2 is None:
        return pos_1, None
    return pos_1, s.input_2.split("×").index(s.contracted)


def shape_table(
    batch: int = 1, seq: int = 20, vocab: int = 50_000, d_model: int = 512, n_heads: int = 8,
    n_kv_heads: int | None = None, *, dtype: str | torch.dtype = "float32",
) -> pd.DataFrame:
    """One row per step (1–9, 8′, 9′; the projections as 5a, 5b, 5c), read off a meta-device run.

    Shape columns hold tuples of ints (``input_2`` is None where a step has one input); ``*_sym``
    hold the letters. ``held_as`` is the shape core actually holds (step 8 keeps B·S rows on one
    axis). ``flops`` counts 2 per multiply-add, 1 per add or divide, 5 per softmax entry;
    ``output_bytes`` is the output(s) at ``dtype``; ``copies`` says whether the step's output is a
    new tensor or one the path already held (step 4; step 5c without sharing). ``n_kv_heads``
    left out is ``n_heads``: plain multi-head attention. Raises PathError if torch refuses a size.
    """
    sizes = LayerSizes(batch, seq, vocab, d_model, n_heads, n_kv_heads)
    t = trace_path(sizes, dtype=as_dtype(dtype))
    rows = step_rows(t)
    weights = {"W_E": t.W_E, "W_pos": t.W_pos, "W_Q": t.weights.W_Q, "W_K": t.weights.W_K,
               "W_V": t.weights.W_V, "W_O": t.weights.W_O}
    out = []
    for s in STEPS:
        row = rows[s.step]
        in_1, in_2 = row.inputs
        first = row.outputs[0]
        held = s.held_as or s.output
        for i, o in enumerate(row.outputs):
            _sym_of(o, held, sizes, f"step {s.step} output {i}")
        _sym_of(in_1, s.input_1 if s.step != "9" else spec("8").held_as, sizes, f"step {s.step} input 1")
        if in_2 is not None:
            _sym_of(in_2, s.input_2, sizes, f"step {s.step} input 2")
        if math.prod(symbolic_shape(s.output, sizes)) != first.numel():
            raise AssertionError(f"step {s.step}: {s.output} and {held} hold different counts")
        if row.op is None:
            file, line, code = quiet_step_line(s.step)
        else:
            file, line, code = row.op.file, row.op.line, row.op.code
        out.append({
            "step": s.step,
            "operation": s.operation,
            "ending": s.ending,
            "input_1": symbolic_shape(s.input_1, sizes),
            "input_2": None if in_2 is None else tuple(in_2.shape),
            "output": symbolic_shape(s.output, sizes),
            "held_as": tuple(first.shape),
            "input_1_sym": s.input_1,
            "input_2_sym": s.input_2,
            "output_sym": s.output,
            "held_as_sym": held,
            "n_outputs": s.n_outputs,
            "copies": row.op is not None,
            "contracted": s.contracted,
            "contracted_size": None if s.contracted is None else sizes.letters()[s.contracted],
            "contracted_in_1": _contracted_positions(s)[0],
            "contracted_in_2": _contracted_positions(s)[1],
            "params": ", ".join(s.params),
            "param_count": sum(weights[p].numel() for p in s.params),
            "flops": evaluate(s.flops, sizes),
            "flops_formula": s.flops,
            "matmul_flops": evaluate(s.matmul_flops, sizes),
            "output_elements": sum(o.numel() for o in row.outputs),
            "output_bytes": sum(o.numel() * o.element_size() for o in row.outputs),
            "dtype": dtype_name(first.dtype),
            "code": code,
            "where": f"{file}:{line}",
            "note": s.note,
        })
    # object columns keep Python ints: exact at any size (a FLOP count can pass 2**63) and None as None
    return pd.DataFrame(out, dtype=object)


def path_summary(table: pd.DataFrame, n_heads: int) -> dict:
    """The few totals the page states in words, from a ``shape_table``.

    The exact counts settle a fair question: does the additive ending do more work? With 2 FLOPs
    per multiply-add it seems to (step 9′'s adds come on top), but counted exactly, one output
    number of step 9 is D multiplies and D − 1 adds, while 8′ + 9′ do H·L = D multiplies, H·(L − 1)
    adds inside the heads and H − 1 adds across them: D − 1 adds again. Same work, other order.
    """
    by = table.set_index("step")
    out_elements = int(by.loc["9", "output_elements"])  # B·S·D numbers in the output
    D, H = int(by.loc["9", "output"][-1]), int(n_heads)
    L = D // H
    largest = table.loc[table["output_bytes"].map(int).idxmax()]
    total_flops = int(sum(table["flops"][table["ending"] != "additive"]))  # steps 1–9
    lookup_flops = int(by.loc["2", "flops"])
    return {
        "largest_step": largest["step"],
        "largest_bytes": int(largest["output_bytes"]),
        "largest_sym": largest["output_sym"],
        "total_flops": total_flops,
        # Step 2 as the one-hot product of the table; real models index W_E's rows instead.
        "lookup_flops": lookup_flops,
        "lookup_share": lookup_flops / total_flops if total_flops else 0.0,
        # Steps 3–9: what the path costs with step 2 done as a lookup.
        "attention_path_flops": total_flops - lookup_flops,
        "total_params": int(sum(table["param_count"][table["step"] != "8′"])),
        "concat_bytes": int(by.loc["8", "output_bytes"]),
        "additive_bytes": int(by.loc["8′", "output_bytes"]),
        "memory_ratio": int(by.loc["8′", "output_elements"]) // int(by.loc["8", "output_elements"]),
        "concat_flops": int(by.loc["8", "flops"] + by.loc["9", "flops"]),
        "additive_flops": int(by.loc["8′", "flops"] + by.loc["9′", "flops"]),
        # What the 2-per-multiply-add convention charges the additive ending on top: step 9′'s
        # additions (B·S·(H − 1)·D), zero with one head, where 8′ is step 9's product itself.
        "additive_surplus_flops": int(by.loc["8′", "flops"] + by.loc["9′", "flops"] - by.loc["8", "flops"]
                                      - by.loc["9", "flops"]),
        "sum_flops": int(by.loc["9′", "flops"]),
        "concat_multiplies": out_elements * D,
        "concat_adds": out_elements * (D - 1),
        "additive_multiplies": out_elements * H * L,
        "additive_adds": out_elements * (H * (L - 1) + (H - 1)),
    }


# ---- what sharing keys and values saves ----------------------------------------------------------

MAX_CONTEXT = 1_048_576  # tokens of context the page's KV-cache figure goes up to (Llama 3.1: 131,072)


def sharing_summary(sizes: LayerSizes, *, layers: int = 1, dtype: str = "bfloat16", context: int = 8192) -> dict:
    """What grouped-query attention saves at these sizes: parameters of one layer and the KV cache.

    A model that generates text keeps, for every past token and every layer, that token's key
    and value vector in each key/value head, so that a new token's query can be scored against
    them without running the old tokens again: 2 (k and v) · layers · H_kv · L numbers per token
    (``core.presets.kv_cache_bytes``). The same model without sharing (H_kv = H) keeps G = H / H_kv
    times as much. The parameters are counted on meta tensors (``core.presets.attention_parameters``);
    only W_K and W_V shrink. ``context`` tokens of ``sizes.batch`` sequences make the total.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if not (isinstance(layers, int) and layers >= 1 and isinstance(context, int) and context >= 1):
        raise ValueError("layers and context must be whole numbers of at least 1")
    plain = sizes.without_sharing()
    params, params_plain = attention_parameters(sizes), attention_parameters(plain)
    common = dict(layers=layers, d_head=sizes.d_head, dtype=dtype)
    per_token = kv_cache_bytes(n_kv_heads=sizes.n_kv_heads, **common)
    per_token_plain = kv_cache_bytes(n_kv_heads=sizes.n_heads, **common)
    return {
        "n_heads": sizes.n_heads, "n_kv_heads": sizes.n_kv_heads, "group_size": sizes.group_size,
        "d_head": sizes.d_head, "layers": layers, "dtype": dtype, "bytes_per_number": dtype_bytes(dtype),
        "context": context, "batch": sizes.batch,
        "kv_params": params["W_K"] + params["W_V"],
        "kv_params_without_sharing": params_plain["W_K"] + params_plain["W_V"],
        "qo_params": params["W_Q"] + params["W_O"],
        "layer_params": sum(params.values()),
        "layer_params_without_sharing": sum(params_plain.values()),
        "per_token": per_token,
        "per_token_without_sharing": per_token_plain,
        "total": per_token * context * sizes.batch,
        "total_without_sharing": per_token_plain * context * sizes.batch,
        "saving_factor": per_token_plain // per_token,  # = G, read off the two byte counts
    }


def kv_rows(summary: dict) -> pd.DataFrame:
    """The KV cache with and without sharing, as a table a chart and a CSV can use."""
    s = summary
    return pd.DataFrame([
        {"attention": label, "key/value heads": kv, "bytes per token": per_token,
         "tokens": s["context"], "sequences": s["batch"], "bytes": total,
         "W_K + W_V parameters per layer": params}
        for label, kv, per_token, total, params in (
            ("with sharing" if s["group_size"] > 1 else "as set (no sharing)", s["n_kv_heads"], s["per_token"],
             s["total"], s["kv_params"]),
            ("without sharing (H_kv = H)", s["n_heads"], s["per_token_without_sharing"],
             s["total_without_sharing"], s["kv_params_without_sharing"]),
        )
    ])


_INT64_MAX = 2**63 - 1


def numeric_columns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame`` with ``columns`` as numbers a table can sort: int64 (nullable Int64 where a step
    has none) while every value fits, float64 past 2**63 − 1 (FLOP counts at absurd sizes)."""
    out = frame.copy()
    for c in columns:
        values = [None if v is None else int(v) for v in frame[c]]
        present = [v for v in values if v is not None]
        if present and max(abs(v) for v in present) > _INT64_MAX:
            out[c] = pd.Series([float("nan") if v is None else float(v) for v in values], index=frame.index)
        else:
            out[c] = pd.array(values, dtype="Int64" if len(present) < len(values) else "int64")
    return out


_SHAPE_COLUMNS = ("input_1", "input_2", "output", "held_as")
_NUMBER_COLUMNS = ["n_outputs", "contracted_size", "contracted_in_1", "contracted_in_2", "param_count",
                   "flops", "matmul_flops", "output_elements", "output_bytes"]


def flat_table(table: pd.DataFrame, *, exact: bool = False) -> pd.DataFrame:
    """A ``shape_table`` for a table widget or a CSV: shapes as "1×20×512" labels, numbers as numbers.

    ``exact=True`` keeps the counts as Python ints (a CSV then holds every digit at any size);
    otherwise they become int64/float64 columns (see ``numeric_columns``) that sort as numbers.
    """
    flat = table.assign(**{c: table[c].map(lambda s: "" if s is None else "×".join(map(str, s)))
                           for c in _SHAPE_COLUMNS})
    flat["input_2_sym"] = flat["input_2_sym"].map(lambda s: s or "")
    flat["contracted"] = flat["contracted"].map(lambda s: s or "")
    return flat if exact else numeric_columns(flat, _NUMBER_COLUMNS)


# ---- the two notational slips of the source table --------------------------------------------


def seed_slips(batch: int = 1, seq: int = 20, d_model: int = 512, n_heads: int = 8) -> dict:
    """The source's one-head shapes and its reversed Kᵀ, each next to what torch does, on meta.

    * The table prints q, k, v as B×1×S×L: one head taken out, ``q[:, h:h+1]``, not all H.
    * It writes Kᵀ as L×S×H×B, every axis reversed (NumPy's ``.T``); the scores need only the
      last two swapped, ``k.transpose(-1, -2)``: B×H×L×S. Multiplying by the reversed one fails
      (or, for unlucky sizes, silently broadcasts into something else).
    """
    sizes = LayerSizes(batch, seq, 1, d_model, n_heads)
    B, S, H, L = sizes.batch, sizes.seq, sizes.n_heads, sizes.d_head
    with torch.device("meta"):
        q = torch.empty(B, H, S, L)  # [B, H, S, L]
        k = torch.empty(B, H, S, L)  # [B, H, S, L]
    one_head = q[:, :1]  # [B, 1, S, L]: head 0 alone
    k_reversed = k.permute(3, 2, 1, 0)  # [L, S, H, B]: every axis reversed
    k_T = k.transpose(-1, -2)  # [B, H, L, S]: the last two swapped
    scores = q @ k_T  # [B, H, S, S]
    try:
        wrong = q @ k_reversed
        reversed_result, reversed_error = tuple(wrong.shape), None
    except RuntimeError as err:
        reversed_result, reversed_error = None, str(err).strip().splitlines()[0]
    return {
        "all_heads": tuple(q.shape),
        "one_head": tuple(one_head.shape),
        "k": tuple(k.shape),
        "k_reversed": tuple(k_reversed.shape),
        "k_T": tuple(k_T.shape),
        "scores": tuple(scores.shape),
        "reversed_result": reversed_result,
        "reversed_error": reversed_error,
    }


# ---- the flow picture's edges ----------------------------------------------------------------

# (from box, to box, the tensor on the arrow, the step whose output it is, the ending it belongs to);
# "in:1" is step 1's input, the token ids.
_EDGES = (
    ("ids", "1", "token ids", "in:1", "shared"),
    ("1", "2", "one-hot", "1", "shared"),
    ("2", "3", "token embeddings", "2", "shared"),
    ("3", "4", "x", "3", "shared"),
    ("4", "5Q", "x", "4", "shared"),
    ("4", "5K", "x", "4", "shared"),
    ("4", "5V", "x", "4", "shared"),
    ("5Q", "6", "q", "5a", "shared"),
    ("5K", "5cK", "k", "5b", "shared"),
    ("5V", "5cV", "v", "5b", "shared"),
    ("5cK", "6", "k per query head", "5c", "shared"),
    ("5cV", "7", "v per query head", "5c", "shared"),
    ("6", "7", "scores", "6", "shared"),
    ("7", "8", "z", "7", "concat"),
    ("7", "8′", "z", "7", "additive"),
    ("8", "9", "heads concatenated", "8", "concat"),
    ("8′", "9′", "per-head results", "8′", "additive"),
    ("9", "out", "output", "9", "concat"),
    ("9′", "out", "output", "9′", "additive"),
)


def flow_edges(table: pd.DataFrame) -> pd.DataFrame:
    """The path as a graph: one row per arrow, carrying a tensor whose shape comes from ``table``."""
    by_step = table.set_index("step")
    rows = []
    for src, dst, tensor, source, ending in _EDGES:
        r = by_step.loc[source.removeprefix("in:")]
        if source == "in:1":  # the token ids: int64 whatever the dtype
            shape, sym = r["input_1"], r["input_1_sym"]
            elements = math.prod(shape)
            nbytes = elements * torch.empty((), dtype=torch.long).element_size()
        else:  # one of the step's outputs (5b and 5c make two alike: k and v)
            shape, sym = r["output"], r["output_sym"]
            elements = r["output_elements"] // r["n_outputs"]
            nbytes = r["output_bytes"] // r["n_outputs"]
        rows.append({"from": src, "to": dst, "tensor": tensor, "shape": shape, "shape_sym": sym,
                     "elements": int(elements), "bytes": int(nbytes), "ending": ending})
    return pd.DataFrame(rows, dtype=object)


