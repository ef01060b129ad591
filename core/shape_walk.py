"""Running the attention path with a recorder on: the tensors and torch calls the table is read from.

A tensor on torch's ``meta`` device has a shape and a dtype but no storage, so every operation
on it works out its output's shape and nothing else. Running the path below (``embed`` here, then
``core.attention.multi_head_attention``) on meta tensors gives the exact shape of every
intermediate at any size (V = 50,000, S = 100,000) in milliseconds, without allocating a
byte; the same walk on CPU tensors gives the values (:func:`step_values`).

While the path runs, a ``TorchFunctionMode`` writes down every torch call it makes: the function,
the file and line of ``core`` that made it, its input tensors and its output. ``core.shapes``
reads the shape table off that record, so the table shows what the code did, not what someone
typed. :func:`step_rows` finds each row's tensors in the record by following the data.
"""

from __future__ import annotations

import inspect
import linecache
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from core import attention
from core.attention import AttentionTrace, AttentionWeights, multi_head_attention
from core.device import dtype_from_name
from core.shape_steps import STEP_IDS, spec, symbolic_shape
from core.sizes import LayerSizes

__all__ = [
    "Op", "PathError", "PathTrace", "Row", "embed", "trace_path", "step_rows", "step_of_ops", "source_line",
    "op_trace", "tensor_numel", "panel_shape", "step_values", "as_dtype",
]

_ROOT = Path(__file__).resolve().parents[1]
_TORCH_DIR = os.path.dirname(torch.__file__)
_INPUT_STREAM = 2_000_003  # token ids and embeddings draw from their own stream of the seed


def as_dtype(dtype: str | torch.dtype) -> torch.dtype:
    return dtype_from_name(dtype) if isinstance(dtype, str) else dtype


# ---- the path itself --------------------------------------------------------------------------


def embed(tokens: Tensor, W_E: Tensor, W_pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Steps 1–3: token ids [B, S] → one-hot [B, S, V] → embeddings [B, S, D] → + positions."""
    B, S = tokens.shape
    V = W_E.shape[0]
    one_hot = torch.zeros(B, S, V, dtype=W_E.dtype, device=W_E.device)  # [B, S, V]
    one_hot = one_hot.scatter_(-1, tokens[..., None], 1)  # [B, S, V]: a 1 at each token's id
    x_tok = one_hot @ W_E  # [B, S, V] @ [V, D] → [B, S, D]: the V axis is summed away
    x = x_tok + W_pos[:S]  # [B, S, D] + [S, D], broadcast over the batch
    return one_hot, x_tok, x


def _walk(tokens: Tensor, W_E: Tensor, W_pos: Tensor, weights: AttentionWeights, causal: bool, scale: bool):
    """The whole path, steps 1 to 9′; the attention half is core.attention's own code."""
    one_hot, x_tok, x = embed(tokens, W_E, W_pos)  # [B, S, V], [B, S, D], [B, S, D]
    trace = multi_head_attention(x, weights, causal=causal, scale=scale)  # x feeds W_Q, W_K, W_V
    return one_hot, x_tok, x, trace


@dataclass
class Op:
    """One torch call the path made, and where in core it was made."""

    name: str  # the torch function, e.g. "einsum", "matmul", "softmax"
    file: str  # "core/attention.py"
    line: int
    function: str  # the Python function holding that line
    code: str  # the source line, stripped
    inputs: tuple[Tensor, ...]
    output: Tensor

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


class PathError(RuntimeError):
    """torch refused an operation of the path (e.g. a tensor too large for 64-bit sizes)."""

    def __init__(self, message: str, where: str, code: str):
        super().__init__(message)
        self.where, self.code = where, code


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(_ROOT))
    except ValueError:
        return path.name


def _caller() -> tuple[str, str, int, str]:
    """(path, shown path, line, function) of the nearest frame outside torch: the line that called it."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_TORCH_DIR):
        frame = frame.f_back
    if frame is None:
        return "", "?", 0, "?"
    path = Path(frame.f_code.co_filename)
    return str(path), _shown_path(path), frame.f_lineno, frame.f_code.co_name


def _tensors(items) -> tuple[Tensor, ...]:
    found: list[Tensor] = []
    for item in items:
        if isinstance(item, Tensor):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            found += [t for t in item if isinstance(t, Tensor)]
    return tuple(found)


class _Recorder(TorchFunctionMode):
    """Writes down every torch call made inside it (nested calls inside torch are not seen)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[Op] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        path, file, line, function = _caller()
        code = linecache.getline(path, line).strip() if path else ""
        try:
            out = func(*args, **kwargs)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise PathError(first, f"{file}:{line}", code) from err
        if isinstance(out, Tensor):
            name = getattr(func, "__name__", str(func))
            self.ops.append(Op(name, file, line, function, code, _tensors([*args, *kwargs.values()]), out))
        return out


@dataclass
class PathTrace:
    """The tensors of one walk and every torch call that made them."""

    sizes: LayerSizes
    tokens: Tensor  # [B, S] integer ids
    W_E: Tensor  # [V, D]
    W_pos: Tensor  # [S, D]
    weights: AttentionWeights  # W_Q [H, D, L], W_K and W_V [H_kv, D, L], W_O [H, L, D]
    one_hot: Tensor  # [B, S, V]
    x_tok: Tensor  # [B, S, D]
    x: Tensor  # [B, S, D]
    attn: AttentionTrace  # q, k, v (H_kv heads), k_expanded, v_expanded, scores, pattern, z, …
    ops: list[Op]

    def producer(self, t: Tensor) -> Op:
        """The last recorded op whose output is ``t`` (in-place ops return their input)."""
        for op in reversed(self.ops):
            if op.output is t:
                return op
        raise LookupError("no recorded op made this tensor")

    def consumers(self, t: Tensor) -> list[Op]:
        return [op for op in self.ops if any(i is t for i in op.inputs)]


def trace_path(
    sizes: LayerSizes, *, dtype: torch.dtype = torch.float32, device: str = "meta", seed: int = 0,
    causal: bool = False, scale: bool = True,
) -> PathTrace:
    """Run the path once on ``device`` ("meta": shapes only; "cpu": seeded real values).

    On meta, torch allocates nothing, so any size is free; a PathError says which line of core
    torch refused (at absurd sizes a tensor's byte count can overflow 64 bits).
    """
    B, S, V, D, H, H_kv = sizes.batch, sizes.seq, sizes.vocab, sizes.d_model, sizes.n_heads, sizes.n_kv_heads
    if device == "meta":
        with torch.device("meta"):
            tokens = torch.zeros(B, S, dtype=torch.long)  # [B, S]
            W_E = torch.empty(V, D, dtype=dtype)  # [V, D]
            W_pos = torch.empty(S, D, dtype=dtype)  # [S, D]
        weights = AttentionWeights.meta(D, H, n_kv_heads=H_kv, d_head=sizes.d_head, dtype=dtype)
    else:
        gen = torch.Generator(device="cpu").manual_seed(int(seed) + _INPUT_STREAM)
        tokens = torch.randint(0, V, (B, S), generator=gen)  # [B, S]
        half = 1 / math.sqrt(2)  # token and position rows of variance ½ each: x has variance 1
        W_E = (torch.randn(V, D, generator=gen, dtype=torch.float64) * half).to(device, dtype)  # [V, D]
        W_pos = (torch.randn(S, D, generator=gen, dtype=torch.float64) * half).to(device, dtype)  # [S, D]
        tokens = tokens.to(device)
        weights = AttentionWeights.random(D, H, n_kv_heads=H_kv, seed=seed, dtype=dtype, device=device)
    recorder = _Recorder()
    with torch.no_grad(), recorder:
        one_hot, x_tok, x, attn = _walk(tokens, W_E, W_pos, weights, causal, scale)
    return PathTrace(sizes, tokens, W_E, W_pos, weights, one_hot, x_tok, x, attn, recorder.ops)


# ---- each row's tensors -----------------------------------------------------------------------


@dataclass
class Row:
    """What the trace says about one step: its tensors and the op that made its output."""

    inputs: tuple[Tensor | None, Tensor | None]
    outputs: tuple[Tensor, ...]
    op: Op | None  # None where the step makes no torch call (4; 5c without sharing)


def step_rows(t: PathTrace) -> dict[str, Row]:
    """Find each step's tensors in the trace, following the data rather than line numbers."""
    a = t.attn
    first_on_q = t.consumers(a.q)[0]  # the scores product: q @ (transposed, expanded k)
    k_T = next(i for i in first_on_q.inputs if i is not a.q)  # [B, H, L, S]
    # Walk back from the output through reshapes/views to the product that made it.
    product = t.producer(a.out_concat)
    while len(product.inputs) == 1:
        product = t.producer(product.inputs[0])
    concat, W_O_flat = product.inputs[-2:]  # [B·S, H·L], [H·L, D] (a bias, if any, comes first)
    shared = a.k_expanded is not a.k  # H_kv < H: step 5c copied k and v
    return {
        "1": Row((t.tokens, None), (t.one_hot,), t.producer(t.one_hot)),
        "2": Row((t.one_hot, t.W_E), (t.x_tok,), t.producer(t.x_tok)),
        "3": Row((t.x_tok, t.producer(t.x).inputs[1]), (t.x,), t.producer(t.x)),
        "4": Row((t.x, None), (t.x,), None),
        "5a": Row((t.x, t.weights.W_Q), (a.q,), t.producer(a.q)),
        "5b": Row((t.x, t.weights.W_K), (a.k, a.v), t.producer(a.k)),
        "5c": Row((a.k, None), (a.k_expanded, a.v_expanded), t.producer(a.k_expanded) if shared else None),
        "6": Row((a.q, k_T), (a.scores,), first_on_q),
        "7": Row((a.pattern, a.v_expanded), (a.z,), t.producer(a.z)),
        "8": Row((a.z, None), (concat,), t.producer(concat)),
        "9": Row((concat, W_O_flat), (a.out_concat,), product),
        "8′": Row((a.z, t.weights.W_O), (a.per_head,), t.producer(a.per_head)),
        "9′": Row((a.per_head, None), (a.out_sum,), t.producer(a.out_sum)),
    }


def source_line(func, needle: str) -> tuple[str, int, str]:
    """(file, line, code) of the first line of ``func`` containing ``needle``: for a step that
    makes no torch call (step 4 passes x on; step 5c without sharing passes k and v on)."""
    lines, start = inspect.getsourcelines(func)
    for offset, text in enumerate(lines):
        if needle in text:
            return _shown_path(Path(inspect.getsourcefile(func))), start + offset, text.strip()
    raise LookupError(needle)


def quiet_step_line(step: str) -> tuple[str, int, str]:
    """The line a step without a torch call points at."""
    if step == "4":
        return source_line(_walk, "multi_head_attention(")
    return source_line(attention.multi_head_attention, "k = expand_kv(")


def step_of_ops(t: PathTrace, rows: dict[str, Row]) -> list[str | None]:
    """Each op's step: the earliest step whose output it is or flows into."""
    order = {s: i for i, s in enumerate(STEP_IDS)}
    owner = {}
    for s, row in rows.items():
        if row.op is None:  # 4 and (without sharing) 5c make nothing: their outputs are others'
            continue
        for out in row.outputs:
            owner.setdefault(id(out), s)
    memo: dict[int, str | None] = {}

    def step_of(i: int, op: Op) -> str | None:
        if id(op.output) in owner:
            return owner[id(op.output)]
        if i in memo:
            return memo[i]
        memo[i] = None  # guards against in-place cycles
        found = [step_of(j, c) for j, c in enumerate(t.ops) if j > i and any(x is op.output for x in c.inputs)]
        found = [s for s in found if s is not None]
        memo[i] = min(found, key=order.__getitem__) if found else None
        return memo[i]

    return [step_of(i, op) for i, op in enumerate(t.ops)]


def op_trace(
    batch: int = 1, seq: int = 20, vocab: int = 50_000, d_model: int = 512, n_heads: int = 8,
    n_kv_heads: int | None = None, *, causal: bool = False, scale: bool = True,
) -> pd.DataFrame:
    """Every torch call of the path in the order it ran, with its step, shapes and source line."""
    t = trace_path(LayerSizes(batch, seq, vocab, d_model, n_heads, n_kv_heads), causal=causal, scale=scale)
    steps = step_of_ops(t, step_rows(t))
    return pd.DataFrame([
        {
            "order": i,  # counts from 0, as the essay's heads, rows and positions do
            "step": step or "",
            "torch call": op.name,
            "inputs": " , ".join("×".join(map(str, x.shape)) or "scalar" for x in op.inputs),
            "output": "×".join(map(str, op.output.shape)),
            "code": op.code,
            "where": op.where,
            "function": op.function,
        }
        for i, (op, step) in enumerate(zip(t.ops, steps))
    ])


def tensor_numel(batch: int, seq: int, vocab: int, d_model: int, n_heads: int,
                 n_kv_heads: int | None = None) -> dict[str, int]:
    """Element count of every tensor a real (CPU) walk makes, read off a meta walk: for budgets.

    Counts views (a transpose, a reshape) as if they were copies, so it errs on the safe side.
    """
    t = trace_path(LayerSizes(batch, seq, vocab, d_model, n_heads, n_kv_heads))
    named = {"tokens": t.tokens, "W_E": t.W_E, "W_pos": t.W_pos, "one_hot": t.one_hot, "x_tok": t.x_tok, "x": t.x}
    named |= {f"W_{p}": getattr(t.weights, f"W_{p}") for p in "QKVO"}
    named |= {f: getattr(t.attn, f) for f in ("q", "k", "v", "k_expanded", "v_expanded", "scores", "pattern",
                                               "z", "per_head", "out_concat", "out_sum")}
    counts, seen = {}, set()
    for name, x in named.items():
        if id(x) not in seen:  # without sharing k_expanded is k itself: counted once
            seen.add(id(x))
            counts[name] = x.numel()
    for op in t.ops:
        if id(op.output) not in seen:
            seen.add(id(op.output))
            counts[f"{op.name} at {op.where}"] = op.output.numel()
    return counts


# ---- real values of one step ------------------------------------------------------------------

# The 2-D slice of each step's output that step_values draws: (row axis, column axis).
_PANEL_AXES = {"1": "S×V", "2": "S×D", "3": "S×D", "4": "S×D", "5a": "S×L", "5b": "S×L", "5c": "S×L",
               "6": "S×S", "7": "S×L", "8": "S×D", "9": "S×D", "8′": "S×D", "9′": "S×D"}


def panel_shape(step: str, batch: int, seq: int, vocab: int, d_model: int, n_heads: int,
                n_kv_heads: int | None = None) -> tuple[int, int]:
    """(rows, columns) of one panel of ``step_values``: check it before drawing."""
    sizes = LayerSizes(batch, seq, vocab, d_model, n_heads, n_kv_heads)
    return symbolic_shape(_PANEL_AXES[spec(step).step], sizes)  # type: ignore[return-value]


def step_values(
    step: str, batch: int, seq: int, vocab: int, d_model: int, n_heads: int, n_kv_heads: int | None = None, *,
    seed: int = 0, dtype: str | torch.dtype = "float32", causal: bool = False, scale: bool = True,
    at_batch: int = 0, at_head: int = 0,
) -> list[dict]:
    """The real output of one step (seeded CPU run), as 2-D panels a heatmap can draw.

    One panel per output tensor (two for steps 5b and 5c: k and v), sliced at sequence
    ``at_batch`` and, where the tensor has a head axis, query head ``at_head`` (step 5b, whose
    head axis is the key/value heads, shows the one that head reads: ``at_head // G``). Each
    panel: title, the slice's code, row and column axis names, and ``values`` as a float64 numpy
    array (−inf where masked). Callers check the size first: this allocates every tensor of the path.
    """
    spec(step)  # a readable error for an unknown step
    sizes = LayerSizes(batch, seq, vocab, d_model, n_heads, n_kv_heads)
    if not (0 <= at_batch < sizes.batch and 0 <= at_head < sizes.n_heads):
        raise ValueError("at_batch or at_head is outside the tensor")
    t = trace_path(sizes, dtype=as_dtype(dtype), device="cpu", seed=seed, causal=causal, scale=scale)
    a, b, h = t.attn, at_batch, at_head
    g = sizes.kv_head_of(h)
    B, S = sizes.batch, sizes.seq
    panels: list[tuple[str, str, Tensor, str, str]] = {  # (title, code, 2-D slice, row axis, column axis)
        "1": [("one-hot", f"one_hot[{b}]", t.one_hot[b], "position", "token id")],
        "2": [("token embeddings", f"x_tok[{b}]", t.x_tok[b], "position", "model dim")],
        "3": [("x = embeddings + positions", f"x[{b}]", t.x[b], "position", "model dim")],
        "4": [("x (read by all three projections)", f"x[{b}]", t.x[b], "position", "model dim")],
        "5a": [("queries", f"q[{b}, {h}]", a.q[b, h], "position", "head dim")],
        "5b": [(name, f"{var}[{b}, {g}]", getattr(a, var)[b, g], "position", "head dim")
               for name, var in (("keys", "k"), ("values", "v"))],
        "5c": [(name, f"{var}_expanded[{b}, {h}]", getattr(a, f"{var}_expanded")[b, h], "position", "head dim")
               for name, var in ((f"keys head {h} reads", "k"), (f"values head {h} reads", "v"))],
        "6": [("scores", f"scores[{b}, {h}]", a.scores[b, h], "query position", "key position")],
        "7": [("z = pattern @ v", f"z[{b}, {h}]", a.z[b, h], "position", "head dim")],
        "8": [("heads concatenated", f"z_concat.view(B, S, D)[{b}]",
               step_rows(t)["8"].outputs[0].view(B, S, sizes.d_model)[b], "position", "model dim")],
        "9": [("output, concat then project", f"out_concat[{b}]", a.out_concat[b], "position", "model dim")],
        "8′": [(f"head {h}'s result", f"per_head[{b}, :, {h}]", a.per_head[b, :, h], "position", "model dim")],
        "9′": [("output, sum of heads", f"out_sum[{b}]", a.out_sum[b], "position", "model dim")],
    }[step]
    return [
        {"title": title, "code": code, "rows": rows, "cols": cols,
         "values": value.detach().to(torch.float64).numpy().copy()}
        for title, code, value, rows, cols in panels
    ]
