"""The shape of every tensor on the attention path, traced by running the real code.

A tensor on torch's ``meta`` device has a shape and a dtype but no storage, so every operation
on it works out its output's shape and nothing else. Running the path below (``embed`` here, then
``core.attention.multi_head_attention``) on meta tensors gives the exact shape of every
intermediate at any size (V = 50,000, S = 100,000) in milliseconds, without allocating a
byte; the same walk on CPU tensors gives the values (``step_values``).

While the path runs, a ``TorchFunctionMode`` writes down every torch call it makes: the function,
the file and line of ``core`` that made it, its input tensors and its output. The shape table is
read off that record, so it shows what the code did, not what someone typed. The letters
(B×S×D) are the one thing written by hand, and ``shape_table`` checks them against the traced
shapes on every call.

Steps follow the shape table of the essay's first source (1–9) and its additive ending (8′, 9′).
Sizes: B batch, S sequence, V vocabulary, D d_model, H heads, L = D / H head width.
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

from core.attention import AttentionTrace, AttentionWeights, multi_head_attention
from core.device import dtype_from_name, dtype_name

__all__ = [
    "AXIS_NAMES",
    "STEPS",
    "STEP_IDS",
    "PathError",
    "Sizes",
    "StepSpec",
    "embed",
    "evaluate",
    "flat_table",
    "flow_edges",
    "op_trace",
    "panel_shape",
    "numeric_columns",
    "path_summary",
    "position_mixing",
    "seed_slips",
    "shape_table",
    "step_values",
    "step_words",
    "tensor_numel",
    "trace_path",
]

AXIS_NAMES = {
    "B": "batch",
    "S": "sequence",
    "V": "vocabulary",
    "D": "model width",
    "H": "heads",
    "L": "head width",
}

_ROOT = Path(__file__).resolve().parents[1]
_TORCH_DIR = os.path.dirname(torch.__file__)
_INPUT_STREAM = 2_000_003  # token ids and embeddings draw from their own stream of the seed


# ---- sizes and symbolic shapes ----------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """B, S, V, D, H of one view; L = D / H."""

    B: int
    S: int
    V: int
    D: int
    H: int

    def __post_init__(self) -> None:
        for name in ("B", "S", "V", "D", "H"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive whole number, got {getattr(self, name)!r}")
        if self.D % self.H:
            raise ValueError(f"H = {self.H} heads do not divide D = {self.D}")

    @property
    def L(self) -> int:
        return self.D // self.H

    def letters(self) -> dict[str, int]:
        return {"B": self.B, "S": self.S, "V": self.V, "D": self.D, "H": self.H, "L": self.L}


def evaluate(expr: str, sizes: Sizes) -> int:
    """An integer formula in the size letters: "2·B·S·V·D", "B·S·H·D − B·S·D", "0".

    Terms are products (·) of letters and whole numbers, joined by + or −. Parsed by hand, never
    eval'd, so a formula is data and an exact Python int comes back (no int64 overflow).
    """
    values = sizes.letters()
    total, sign, term = 0, 1, ""
    for ch in expr.replace(" ", "") + "+":
        if ch in "+−-":
            product = 1
            for factor in term.strip("()").split("·"):
                product *= int(factor) if factor.isdigit() else values[factor]
            total += sign * product
            sign, term = (1 if ch == "+" else -1), ""
        else:
            term += ch
    return total


def _shape(symbolic: str, sizes: Sizes) -> tuple[int, ...]:
    """"B×S×D" → (1, 20, 512); an axis may be a product, "(B·S)×D" → (20, 512)."""
    return tuple(evaluate(axis, sizes) for axis in symbolic.split("×"))


# ---- the steps --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepSpec:
    """One row of the shape table, as the essay names it. Shapes are checked against the trace."""

    step: str
    operation: str
    ending: str  # "shared" by both endings, "concat" (8, 9) or "additive" (8′, 9′)
    input_1: str  # symbolic shape, axes joined by ×
    input_2: str | None
    output: str
    contracted: str | None  # the axis a product sums away (it is in both inputs, not in the output)
    params: tuple[str, ...]  # the weights the step uses
    flops: str  # arithmetic: 2 per multiply-add of a product, 1 per add or divide, 5 per softmax entry
    matmul_flops: str  # the product part alone, as torch.utils.flop_counter counts it
    n_outputs: int  # 3 for step 5: q, k and v
    held_as: str | None  # how core holds the output when it differs from the essay's shape
    note: str


STEPS: tuple[StepSpec, ...] = (
    StepSpec("1", "one-hot tokens", "shared", "B×S", None, "B×S×V", None, (), "0", "0", 1, None,
             "The input is the B×S grid of integer token ids; each becomes a row of V zeros with a "
             "single 1 at the token's id."),
    StepSpec("2", "embedding lookup", "shared", "B×S×V", "V×D", "B×S×D", "V", ("W_E",),
             "2·B·S·V·D", "2·B·S·V·D", 1, None,
             "Written as a product with the one-hot rows, as in the table. Real models index the "
             "rows instead, W_E[tokens], which gives the same B×S×D with no arithmetic at all."),
    StepSpec("3", "add positional embeddings", "shared", "B×S×D", "S×D", "B×S×D", None, ("W_pos",),
             "B·S·D", "0", 1, None,
             "One learned row per position, broadcast over the batch (the table says 'same shape': "
             "it is S×D, repeated for each of the B sequences)."),
    StepSpec("4", "copy to the q, k and v branches", "shared", "B×S×D", None, "B×S×D", None, (),
             "0", "0", 1, None,
             "Self-attention: the same x feeds all three projections. Nothing is copied; the one "
             "tensor is read three times."),
    StepSpec("5", "per-head projections W_Q, W_K, W_V", "shared", "B×S×D", "H×D×L", "B×H×S×L", "D",
             ("W_Q", "W_K", "W_V"), "3·2·B·S·H·D·L", "3·2·B·S·H·D·L", 3, None,
             "Three outputs of this shape: the queries q, keys k and values v (lower case: the "
             "letter V is the vocabulary). Each head has its own D×L matrix; the table's input 2 "
             "is one head's, here all H are stacked as H×D×L."),
    StepSpec("6", "scores q·kᵀ, divided by √L", "shared", "B×H×S×L", "B×H×L×S", "B×H×S×S", "L", (),
             "2·B·H·S·S·L + B·H·S·S", "2·B·H·S·S·L", 1, None,
             "Row s, column t is q_s·k_t, how well position s's query matches position t's key, for "
             "each head: the first step where one position meets another. With a causal mask, the "
             "future positions (t > s) are overwritten with −∞, which costs no arithmetic."),
    StepSpec("7", "softmax, then weight the values", "shared", "B×H×S×S", "B×H×S×L", "B×H×S×L", "S",
             (), "5·B·H·S·S + 2·B·H·S·S·L", "2·B·H·S·S·L", 1, None,
             "Softmax turns each row of scores into weights that sum to 1; the product then "
             "averages the S value vectors with those weights, so the key axis S is summed away: "
             "this finishes the mixing of positions that step 6 began."),
    StepSpec("8", "concatenate the heads", "concat", "B×H×S×L", None, "B×S×D", None, (), "0", "0", 1,
             "(B·S)×D",
             "Moves head h's L numbers to columns hL … hL+L−1 of a width-D row (heads 0 … H−1); "
             "D = H·L. "
             "core keeps batch and position on one axis of B·S rows, ready for one 2-D product."),
    StepSpec("9", "output projection W_O", "concat", "B×S×D", "D×D", "B×S×D", "D", ("W_O",),
             "2·B·S·D·D", "2·B·S·D·D", 1, None,
             "One big product. The contracted axis is D = H·L: the heads side by side."),
    StepSpec("8′", "project each head with its W_O slice", "additive", "B×H×S×L", "H×L×D", "B×S×H×D",
             "L", ("W_O",), "2·B·S·H·L·D", "2·B·S·H·L·D", 1, None,
             "The same W_O, viewed as H slices of L×D: W_O[h] is rows hL … hL+L−1. Every head "
             "writes a full width-D vector: H times the memory of step 8, and the same "
             "multiplications as step 9."),
    StepSpec("9′", "sum over the heads", "additive", "B×S×H×D", None, "B×S×D", "H", (),
             "B·S·H·D − B·S·D", "0", 1, None,
             "Adding the H per-head vectors finishes the sum that step 9 does inside its product."),
)
STEP_IDS = tuple(s.step for s in STEPS)
_SPEC = {s.step: s for s in STEPS}


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


def _caller() -> tuple[str, str, int, str]:
    """(path, shown path, line, function) of the nearest frame outside torch: the line that called it."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_TORCH_DIR):
        frame = frame.f_back
    if frame is None:
        return "", "?", 0, "?"
    path = Path(frame.f_code.co_filename)
    try:
        shown = str(path.resolve().relative_to(_ROOT))
    except ValueError:
        shown = path.name
    return str(path), shown, frame.f_lineno, frame.f_code.co_name


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

    sizes: Sizes
    tokens: Tensor  # [B, S] integer ids
    W_E: Tensor  # [V, D]
    W_pos: Tensor  # [S, D]
    weights: AttentionWeights
    one_hot: Tensor  # [B, S, V]
    x_tok: Tensor  # [B, S, D]
    x: Tensor  # [B, S, D]
    attn: AttentionTrace  # q, k, v, scores, pattern, z, per_head, out_concat, out_sum
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
    sizes: Sizes, *, dtype: torch.dtype = torch.float32, device: str = "meta", seed: int = 0,
    causal: bool = False, scale: bool = True,
) -> PathTrace:
    """Run the path once on ``device`` ("meta": shapes only; "cpu": seeded real values).

    On meta, torch allocates nothing, so any size is free; a PathError says which line of core
    torch refused (at absurd sizes a tensor's byte count can overflow 64 bits).
    """
    B, S, V, D, H, L = (sizes.letters()[k] for k in "BSVDHL")
    if device == "meta":
        with torch.device("meta"):
            tokens = torch.zeros(B, S, dtype=torch.long)  # [B, S]
            W_E = torch.empty(V, D, dtype=dtype)  # [V, D]
            W_pos = torch.empty(S, D, dtype=dtype)  # [S, D]
            weights = AttentionWeights(
                torch.empty(H, D, L, dtype=dtype), torch.empty(H, D, L, dtype=dtype),  # W_Q, W_K [H, D, L]
                torch.empty(H, D, L, dtype=dtype), torch.empty(H, L, D, dtype=dtype),  # W_V [H, D, L], W_O [H, L, D]
            )
    else:
        gen = torch.Generator(device="cpu").manual_seed(int(seed) + _INPUT_STREAM)
        tokens = torch.randint(0, V, (B, S), generator=gen)  # [B, S]
        half = 1 / math.sqrt(2)  # token and position rows of variance ½ each: x has variance 1
        W_E = (torch.randn(V, D, generator=gen, dtype=torch.float64) * half).to(device, dtype)  # [V, D]
        W_pos = (torch.randn(S, D, generator=gen, dtype=torch.float64) * half).to(device, dtype)  # [S, D]
        tokens = tokens.to(device)
        weights = AttentionWeights.random(D, H, seed=seed, dtype=dtype, device=device)
    recorder = _Recorder()
    with torch.no_grad(), recorder:
        one_hot, x_tok, x, attn = _walk(tokens, W_E, W_pos, weights, causal, scale)
    return PathTrace(sizes, tokens, W_E, W_pos, weights, one_hot, x_tok, x, attn, recorder.ops)


@dataclass
class _Row:
    """What the trace says about one step: its tensors and the op that made its output."""

    inputs: tuple[Tensor | None, Tensor | None]
    outputs: tuple[Tensor, ...]
    op: Op | None


def _rows(t: PathTrace) -> dict[str, _Row]:
    """Find each step's tensors in the trace, following the data rather than line numbers."""
    a = t.attn
    first_on_q = t.consumers(a.q)[0]  # the scores product: q @ (transposed k)
    k_T = next(i for i in first_on_q.inputs if i is not a.q)  # [B, H, L, S]
    # Walk back from the output through reshapes/views to the product that made it.
    product = t.producer(a.out_concat)
    while len(product.inputs) == 1:
        product = t.producer(product.inputs[0])
    concat, W_O_flat = product.inputs[-2:]  # [B·S, H·L], [H·L, D] (a bias, if any, comes first)
    return {
        "1": _Row((t.tokens, None), (t.one_hot,), t.producer(t.one_hot)),
        "2": _Row((t.one_hot, t.W_E), (t.x_tok,), t.producer(t.x_tok)),
        "3": _Row((t.x_tok, t.producer(t.x).inputs[1]), (t.x,), t.producer(t.x)),
        "4": _Row((t.x, None), (t.x,), None),
        "5": _Row((t.x, t.weights.W_Q), (a.q, a.k, a.v), t.producer(a.q)),
        "6": _Row((a.q, k_T), (a.scores,), first_on_q),
        "7": _Row((a.pattern, a.v), (a.z,), t.producer(a.z)),
        "8": _Row((a.z, None), (concat,), t.producer(concat)),
        "9": _Row((concat, W_O_flat), (a.out_concat,), product),
        "8′": _Row((a.z, t.weights.W_O), (a.per_head,), t.producer(a.per_head)),
        "9′": _Row((a.per_head, None), (a.out_sum,), t.producer(a.out_sum)),
    }


def _walk_line(needle: str) -> tuple[str, int, str]:
    """Where ``_walk`` does something that is not a torch call (step 4: passing x on)."""
    lines, start = inspect.getsourcelines(_walk)
    for offset, text in enumerate(lines):
        if needle in text:
            return str(Path(__file__).resolve().relative_to(_ROOT)), start + offset, text.strip()
    raise LookupError(needle)


def _step_of_ops(t: PathTrace, rows: dict[str, _Row]) -> list[str | None]:
    """Each op's step: the earliest step whose output it is or flows into."""
    order = {s: i for i, s in enumerate(STEP_IDS)}
    owner = {}
    for s, row in rows.items():
        if s == "4":
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


def _sym_of(t: Tensor, spec: str, sizes: Sizes, what: str) -> None:
    if tuple(t.shape) != _shape(spec, sizes):
        raise AssertionError(f"{what}: the code made {tuple(t.shape)}, the table's letters {spec} say "
                             f"{_shape(spec, sizes)}")


def _contracted_positions(spec: StepSpec) -> tuple[int | None, int | None]:
    """Which axis of each input a step sums away.

    A product pairs the *last* axis of its left input carrying the letter with the *first* one of
    its right input (``D×D`` at step 9: the rows of W_O; ``B×H×S×S`` at step 7: the key axis).
    """
    if spec.contracted is None:
        return None, None
    axes_1 = spec.input_1.split("×")
    pos_1 = len(axes_1) - 1 - axes_1[::-1].index(spec.contracted)
    if spec.input_2 is None:
        return pos_1, None
    return pos_1, spec.input_2.split("×").index(spec.contracted)


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    return dtype_from_name(dtype) if isinstance(dtype, str) else dtype


def shape_table(
    batch: int = 1, seq: int = 20, vocab: int = 50_000, d_model: int = 512, n_heads: int = 8,
    *, dtype: str | torch.dtype = "float32",
) -> pd.DataFrame:
    """One row per step (1–9, 8′, 9′), read off a meta-device run of the real path.

    Shape columns hold tuples of ints (``input_2`` is None where a step has one input); ``*_sym``
    hold the letters. ``held_as`` is the shape core actually holds (step 8 keeps B·S rows on one
    axis). ``flops`` counts 2 per multiply-add, 1 per add or divide, 5 per softmax entry;
    ``output_bytes`` is the output(s) at ``dtype``. Raises PathError if torch refuses a size.
    """
    sizes = Sizes(batch, seq, vocab, d_model, n_heads)
    t = trace_path(sizes, dtype=_dtype(dtype))
    rows = _rows(t)
    out = []
    for spec in STEPS:
        row = rows[spec.step]
        in_1, in_2 = row.inputs
        first = row.outputs[0]
        held = spec.held_as or spec.output
        _sym_of(first, held, sizes, f"step {spec.step} output")
        _sym_of(in_1, spec.input_1 if spec.step != "9" else _SPEC["8"].held_as, sizes, f"step {spec.step} input 1")
        if in_2 is not None:
            _sym_of(in_2, spec.input_2, sizes, f"step {spec.step} input 2")
        if math.prod(_shape(spec.output, sizes)) != first.numel():
            raise AssertionError(f"step {spec.step}: {spec.output} and {held} hold different counts")
        if spec.step == "4":
            file, line, code = _walk_line("multi_head_attention(")
        else:
            file, line, code = row.op.file, row.op.line, row.op.code
        weights = {"W_E": t.W_E, "W_pos": t.W_pos, "W_Q": t.weights.W_Q, "W_K": t.weights.W_K,
                   "W_V": t.weights.W_V, "W_O": t.weights.W_O}
        out.append({
            "step": spec.step,
            "operation": spec.operation,
            "ending": spec.ending,
            "input_1": _shape(spec.input_1, sizes),
            "input_2": None if in_2 is None else tuple(in_2.shape),
            "output": _shape(spec.output, sizes),
            "held_as": tuple(first.shape),
            "input_1_sym": spec.input_1,
            "input_2_sym": spec.input_2,
            "output_sym": spec.output,
            "held_as_sym": held,
            "n_outputs": spec.n_outputs,
            "contracted": spec.contracted,
            "contracted_size": None if spec.contracted is None else sizes.letters()[spec.contracted],
            "contracted_in_1": _contracted_positions(spec)[0],
            "contracted_in_2": _contracted_positions(spec)[1],
            "params": ", ".join(spec.params),
            "param_count": sum(weights[p].numel() for p in spec.params),
            "flops": evaluate(spec.flops, sizes),
            "flops_formula": spec.flops,
            "matmul_flops": evaluate(spec.matmul_flops, sizes),
            "output_elements": sum(o.numel() for o in row.outputs),
            "output_bytes": sum(o.numel() * o.element_size() for o in row.outputs),
            "dtype": dtype_name(first.dtype),
            "code": code,
            "where": f"{file}:{line}",
            "note": spec.note,
        })
    # object columns keep Python ints: exact at any size (a FLOP count can pass 2**63) and None as None
    return pd.DataFrame(out, dtype=object)


def op_trace(
    batch: int = 1, seq: int = 20, vocab: int = 50_000, d_model: int = 512, n_heads: int = 8,
    *, causal: bool = False, scale: bool = True,
) -> pd.DataFrame:
    """Every torch call of the path in the order it ran, with its step, shapes and source line."""
    sizes = Sizes(batch, seq, vocab, d_model, n_heads)
    t = trace_path(sizes, causal=causal, scale=scale)
    steps = _step_of_ops(t, _rows(t))
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


def tensor_numel(batch: int, seq: int, vocab: int, d_model: int, n_heads: int) -> dict[str, int]:
    """Element count of every tensor a real (CPU) walk makes, read off a meta walk: for budgets.

    Counts views (a transpose, a reshape) as if they were copies, so it errs on the safe side.
    """
    t = trace_path(Sizes(batch, seq, vocab, d_model, n_heads))
    named = {"tokens": t.tokens, "W_E": t.W_E, "W_pos": t.W_pos, "one_hot": t.one_hot, "x_tok": t.x_tok, "x": t.x}
    named |= {f"W_{p}": getattr(t.weights, f"W_{p}") for p in "QKVO"}
    named |= {f: getattr(t.attn, f)
              for f in ("q", "k", "v", "scores", "pattern", "z", "per_head", "out_concat", "out_sum")}
    counts = {name: x.numel() for name, x in named.items()}
    seen = {id(x) for x in named.values()}
    for op in t.ops:
        if id(op.output) not in seen:
            seen.add(id(op.output))
            counts[f"{op.name} at {op.where}"] = op.output.numel()
    return counts


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


def position_mixing() -> dict:
    """Where positions meet, read off the letters of the steps (the same at every size).

    One position can only read another where a tensor carries the position axis twice (S×S):
    the first step whose output does is where query s first meets key t (step 6); the step
    whose product sums that second S away is where the mixing is finished (step 7).
    """
    twice = [s.step for s in STEPS if s.output.split("×").count("S") == 2]
    summed = [s.step for s in STEPS if s.contracted == "S"]
    return {"first_meet": twice[0], "sums_positions": summed[0],
            "steps": sorted({*twice, *summed}, key=STEP_IDS.index)}


def step_words(step: str, *, scale: bool = True) -> tuple[str, str]:
    """(operation, note) of a step as a run with these settings made it: the table is traced with
    the scores divided by √L, and a run without the scale must not be described as dividing."""
    spec = _SPEC[step]
    if step == "6" and not scale:
        return ("scores q·kᵀ, not divided by √L (the scale is off)",
                spec.note + " Without the scale, the scores are the raw dot products.")
    return spec.operation, spec.note


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
    sizes = Sizes(batch, seq, 1, d_model, n_heads)
    B, S, H, L = sizes.B, sizes.S, sizes.H, sizes.L
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
    ("5Q", "6", "q", "5", "shared"),
    ("5K", "6", "k", "5", "shared"),
    ("5V", "7", "v", "5", "shared"),
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
        else:  # one of the step's outputs (step 5 makes three alike)
            shape, sym = r["output"], r["output_sym"]
            elements = r["output_elements"] // r["n_outputs"]
            nbytes = r["output_bytes"] // r["n_outputs"]
        rows.append({"from": src, "to": dst, "tensor": tensor, "shape": shape, "shape_sym": sym,
                     "elements": int(elements), "bytes": int(nbytes), "ending": ending})
    return pd.DataFrame(rows, dtype=object)


# ---- real values of one step ------------------------------------------------------------------

# The 2-D slice of each step's output that step_values draws: (row axis, column axis).
_PANEL_AXES = {"1": "S×V", "2": "S×D", "3": "S×D", "4": "S×D", "5": "S×L", "6": "S×S", "7": "S×L",
               "8": "S×D", "9": "S×D", "8′": "S×D", "9′": "S×D"}


def panel_shape(step: str, batch: int, seq: int, vocab: int, d_model: int, n_heads: int) -> tuple[int, int]:
    """(rows, columns) of one panel of ``step_values``: check it before drawing."""
    return _shape(_PANEL_AXES[step], Sizes(batch, seq, vocab, d_model, n_heads))  # type: ignore[return-value]


def step_values(
    step: str, batch: int, seq: int, vocab: int, d_model: int, n_heads: int, *, seed: int = 0,
    dtype: str | torch.dtype = "float32", causal: bool = False, scale: bool = True,
    at_batch: int = 0, at_head: int = 0,
) -> list[dict]:
    """The real output of one step (seeded CPU run), as 2-D panels a heatmap can draw.

    One panel per output tensor (three for step 5: q, k, v), sliced at sequence ``at_batch`` and,
    where the tensor has a head axis, head ``at_head``. Each panel: title, the slice's code,
    row and column axis names, and ``values`` as a float64 numpy array (−inf where masked).
    Callers check the size first: this allocates every tensor of the path.
    """
    if step not in _SPEC:
        raise ValueError(f"unknown step {step!r}; choose one of {', '.join(STEP_IDS)}")
    sizes = Sizes(batch, seq, vocab, d_model, n_heads)
    if not (0 <= at_batch < sizes.B and 0 <= at_head < sizes.H):
        raise ValueError("at_batch or at_head is outside the tensor")
    t = trace_path(sizes, dtype=_dtype(dtype), device="cpu", seed=seed, causal=causal, scale=scale)
    a, b, h = t.attn, at_batch, at_head
    B, S = sizes.B, sizes.S
    panels: list[tuple[str, str, Tensor, str, str]] = {  # (title, code, 2-D slice, row axis, column axis)
        "1": [("one-hot", f"one_hot[{b}]", t.one_hot[b], "position", "token id")],
        "2": [("token embeddings", f"x_tok[{b}]", t.x_tok[b], "position", "model dim")],
        "3": [("x = embeddings + positions", f"x[{b}]", t.x[b], "position", "model dim")],
        "4": [("x (read by all three projections)", f"x[{b}]", t.x[b], "position", "model dim")],
        "5": [(name, f"{var}[{b}, {h}]", getattr(a, var)[b, h], "position", "head dim")
              for name, var in (("queries", "q"), ("keys", "k"), ("values", "v"))],
        "6": [("scores", f"scores[{b}, {h}]", a.scores[b, h], "query position", "key position")],
        "7": [("z = pattern @ v", f"z[{b}, {h}]", a.z[b, h], "position", "head dim")],
        "8": [("heads concatenated", f"z_concat.view(B, S, D)[{b}]",
               _rows(t)["8"].outputs[0].view(B, S, sizes.D)[b], "position", "model dim")],
        "9": [("output, concat then project", f"out_concat[{b}]", a.out_concat[b], "position", "model dim")],
        "8′": [(f"head {h}'s result", f"per_head[{b}, :, {h}]", a.per_head[b, :, h], "position", "model dim")],
        "9′": [("output, sum of heads", f"out_sum[{b}]", a.out_sum[b], "position", "model dim")],
    }[step]
    return [
        {"title": title, "code": code, "rows": rows, "cols": cols,
         "values": value.detach().to(torch.float64).numpy().copy()}
        for title, code, value, rows, cols in panels
    ]
