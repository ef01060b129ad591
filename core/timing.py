"""What the additive view of attention costs on the hardware at hand, measured.

Every projection variant turns the same z [B, H, S, L] and W_O [H, L, D] into the same
out [B, S, D]; they differ only in how the sum over (h, l) is laid out in memory:

    gemm              x [B·S, D] @ W [D, D], inputs prepared in advance: the hardware reference
    concat            core.attention.concat_then_project: copy heads side by side, one GEMM
    einsum            torch.einsum('bhsl,hld->bsd'): the sum over h and l as one contraction
    per_head_sum      core.attention.project_then_sum: materialize every head's result [H, B·S, D], then sum over H
    per_head_sum_out  the same arithmetic into buffers allocated once (no allocation per call)
    head_loop         a Python loop over heads: out += z_h @ W_O[h]
    broadcast         (z[..., None] * W_O).sum(-2): [B, S, H, L, D] products, then two sums

All of them do the same 2·B·S·D² floating-point operations. Optional whole-forward variants
(``forward_trace``, ``forward_mha``, ``forward_sdpa``) time core's instrumented forward pass
against torch.nn.MultiheadAttention and F.scaled_dot_product_attention.

Method (run_benchmark): every variant is first checked against a float64 reference of the same
inputs, to a tolerance set per dtype (check_tolerance; a wrong variant is never timed). Then the
variants are timed in interleaved rounds: each round times one block of calls of every variant,
in a fresh random order, and keeps the block's fastest call once its calls have stopped getting
faster (clock_for: with one CPU thread, that
thread's CPU time; otherwise torch.utils.benchmark's wall clock, which synchronizes CUDA). A slow
spell of a shared machine then lands on every variant alike; each variant's ratio to the bare
GEMM is taken within a round and reported as the median over rounds with a distribution-free
interval (median_interval), and the page's headlines follow the interval (verdict), saying
"could not tell" where it straddles the claim. Also reported per variant: the median and
interquartile range of its time per call over rounds, GFLOP/s, the extra bytes its
intermediates need (from the shapes), the bytes it allocates per call and its peak (counted by
intercepting every aten op), on CUDA the peak from torch.cuda.max_memory_allocated, and on
Linux the minor page faults per call, which is where glibc's habit of returning large freed
blocks to the operating system shows up.

Command line (needs only torch, numpy and pandas):

    python -m core.timing --device cpu --dtype float32 --batch 8 --seq 128 --d-model 512 \\
        --heads 8 --sweep seq=64,128,256,512 --csv timing.csv
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.benchmark.utils.timer import timer as bench_clock
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from core.attention import AttentionWeights, concat_then_project, merge_heads, multi_head_attention, project_then_sum
from core.busy import Busy, OneAtATime
from core.compare import eps
from core.device import DTYPE_NAMES, cpu_model, describe, dtype_from_name, supported_dtypes, torch_threads
from core.identity import random_input

try:  # Unix only; page faults are reported as missing elsewhere
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None

__all__ = [
    "Size", "Variant", "VARIANTS", "PROJECTION_VARIANTS", "FORWARD_VARIANTS", "SWEEP_AXES", "CSV_COLUMNS",
    "CONFIDENCE", "MIN_ROUNDS", "MAX_ROUNDS", "TARGET_ROUNDS", "BASE_SHARE", "NOISY_WIDTH", "DEFAULT_RUN",
    "SETTLE_GAIN", "SETTLE_CALLS", "SETTLE_MAX_S",
    "HOLDS", "MALLOC_SETTINGS", "PAGE_BYTES", "GLIBC_MMAP_THRESHOLD_START", "GLIBC_MMAP_THRESHOLD_MAX",
    "flops", "extra_bytes", "estimated_bytes", "element_size", "memory_table",
    "projection_inputs", "make_variant", "forward_inputs", "make_forward", "check_tolerance", "rel_error",
    "float64_reference", "first_call", "count_allocations", "median_interval", "verdict", "interleave",
    "paired_fractions", "round_times", "CLOCKS", "clock_for", "run_benchmark", "at_base", "paired", "summarize", "growth",
    "parse_sweep", "sweep_sizes", "environment", "malloc_setting", "run_in_fresh_process", "peak_rss_bytes",
    "available_memory", "fresh_process_bytes", "fresh_process_problem",
    "ResultStore", "exclusive", "Busy", "main",
]

ROOT = Path(__file__).resolve().parents[1]


# ---- sizes and variants ------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    batch: int
    seq: int
    d_model: int
    n_heads: int

    def __post_init__(self) -> None:
        if min(self.batch, self.seq, self.d_model, self.n_heads) < 1:
            raise ValueError(f"every size must be positive, got {self}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads = {self.n_heads} does not divide d_model = {self.d_model}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def bsd(self) -> int:
        """Elements in one [B, S, D] tensor: the unit every variant's memory is counted in."""
        return self.batch * self.seq * self.d_model


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # "reference", "projection" or "forward"
    label: str  # one line for legends and tables
    code: str  # the line(s) that do the work, as printed on the page


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("gemm", "reference", "bare GEMM [B·S, D] × [D, D]", "x @ W"),
    Variant("concat", "projection", "concat heads, then one GEMM", "concat_then_project(z, W_O)"),
    Variant("einsum", "projection", "one einsum over (h, l)", "torch.einsum('bhsl,hld->bsd', z, W_O)"),
    Variant("per_head_sum", "projection", "per-head results [H,B·S,D], then sum", "project_then_sum(z, W_O)"),
    Variant("per_head_sum_out", "projection", "per-head results into preallocated buffers",
            "torch.bmm(z_heads, W_O, out=per_head); torch.sum(per_head, 0, out=out)"),
    Variant("head_loop", "projection", "Python loop over heads", "for h in range(H): out += z[:, h] @ W_O[h]"),
    Variant("broadcast", "projection", "broadcast to [B,S,H,L,D], then sum",
            "(z.transpose(1, 2)[..., None] * W_O).sum(-2).sum(-2)"),
    Variant("forward_trace", "forward", "whole forward: core (every intermediate kept)",
            "multi_head_attention(x, weights).out_concat"),
    Variant("forward_mha", "forward", "whole forward: torch.nn.MultiheadAttention",
            "mha(x, x, x, need_weights=False)[0]"),
    Variant("forward_sdpa", "forward", "whole forward: F.scaled_dot_product_attention",
            "concat_then_project(F.scaled_dot_product_attention(q, k, v), W_O)"),
]}
PROJECTION_VARIANTS = tuple(n for n, v in VARIANTS.items() if v.kind != "forward")
FORWARD_VARIANTS = tuple(n for n, v in VARIANTS.items() if v.kind == "forward")
SWEEP_AXES = ("seq", "heads", "batch", "d_model")

# How the rounds are run (run_benchmark) and read (median_interval, verdict).
CONFIDENCE = 0.95  # of the interval around each median ratio
MIN_ROUNDS = 6  # the fewest rounds whose order statistics give a 95 % interval (coverage 1 − 2/2⁶)
TARGET_ROUNDS = 15  # blocks are sized so that about this many rounds fill a size's share
MAX_ROUNDS = 60
BLOCK_MIN_S = 0.002  # a block shorter than this is mostly clock and loop overhead
PER_CALL_MIN_S = 20e-6  # calls shorter than this are timed as a block, not one by one
BLOCK_MAX_S = 0.025  # longer blocks would pair a variant with gemm across a longer spell: more rounds instead
BASE_SHARE = 3.0  # the base size, which the headlines are about, gets this many shares of the budget
NOISY_WIDTH = 0.2  # a ratio whose interval spans more than this fraction of its median is flagged
# A block keeps calling until its calls stop speeding up (_time_one_block): settled once
# SETTLE_CALLS calls in a row were none more than SETTLE_GAIN faster than the best so far, or the
# block has taken SETTLE_MAX_S (or its own number of calls, if that is longer). Memory-heavy
# variants need it: on the development machine their first calls after other work or a pause ran
# up to twice as slow, speeding up over tens of milliseconds (docs/timing.md, "Ramping up").
SETTLE_GAIN = 0.01
SETTLE_CALLS = 3
SETTLE_MAX_S = 0.06

# The page's default run, which scripts/timing_repeatability.py repeats in fresh processes.
# One thread: on the 2-core shared machine it gave the steadier ratios (docs/timing.md,
# "Repeatability"): a second thread waits for a core that another process holds.
DEFAULT_RUN = {"batch": 8, "seq": 128, "d_model": 512, "heads": 8, "sweep": "seq=16,32,64,128,256",
               "budget_s": 8, "max_bytes": 256 * 2**20, "threads": 1}

# A fresh measuring process (run_in_fresh_process) is Python with torch imported plus its work.
FRESH_CHILD_BASE_BYTES = 400 * 2**20
FRESH_HEADROOM = 1.25

CSV_COLUMNS = [
    "variant", "device", "dtype", "batch", "seq", "d_model", "n_heads", "median_ms", "iqr_ms",
    "gflop_per_s", "fraction_of_gemm", "extra_bytes",
    # the interval around fraction_of_gemm (median over rounds) and where it lies against 1:
    "fraction_lo", "fraction_hi", "interval_coverage", "verdict",
    # beyond the required columns:
    "kind", "d_head", "threads", "q1_ms", "q3_ms", "runs", "calls", "gflop", "extra_bytes_from", "alloc_bytes",
    "peak_bytes", "cuda_peak_bytes", "page_faults_per_call", "rel_error", "tolerance", "status", "note",
    "malloc", "device_name", "torch", "clock", "peak_rss_bytes", "round_ms",
]


def flops(variant: str, size: Size) -> int:
    """Floating-point operations of the useful work (one multiply and one add per term).

    Every projection variant computes the same D·D products for each of the B·S tokens; the
    forward adds Q, K, V (3× that), scores and the weighted sum of values (2·B·S·S·D each).
    """
    B, S, D = size.batch, size.seq, size.d_model
    if VARIANTS[variant].kind == "forward":
        return 8 * B * S * D * D + 4 * B * S * S * D
    return 2 * B * S * D * D


def extra_bytes(variant: str, size: Size, element_size: int) -> int | None:
    """Memory a projection variant needs beyond its inputs and its [B, S, D] result, from shapes.

    Defined as peak footprint during a call (buffers allocated once included) minus the result,
    which any method must hold. None for the forward variants, whose intermediates are measured.
    """
    if VARIANTS[variant].kind == "forward":
        return None
    bsd, H, D = size.bsd, size.n_heads, size.d_model
    # z [B, H, S, L] read as [B·S, H·L] is a copy, unless size-1 axes make it a view (or, with
    # B = L = 1, a transposed matrix that the GEMM reads in place).
    is_view = H == 1 or size.seq == 1 or (size.batch == 1 and size.d_head == 1)
    side_by_side = 0 if is_view else bsd
    # z read heads first, [H, B·S, L], is a view when B, H or S is 1 (project_then_sum)
    heads_first = 0 if 1 in (size.batch, H, size.seq) else bsd
    elements = {
        "gemm": 0,
        "concat": side_by_side,  # the heads copied side by side, [B·S, H·L]
        "einsum": side_by_side,  # einsum permutes z to [B·S, H·L] (the same copy), then one GEMM
        "per_head_sum": H * bsd + heads_first,  # [H, B·S, D] per-head results and z [H, B·S, L], both alive until the sum is done
        "per_head_sum_out": (H + 1) * bsd,  # z_heads [H, B·S, L] and per_head [H, B·S, D], kept between calls
        "head_loop": bsd if H > 1 else 0,  # one head's [B, S, D] product alive next to the running sum
        "broadcast": bsd * D + (H - 1) * bsd,  # [B,S,H,L,D] products and [B,S,H,D] partial sums
    }[variant]
    return elements * element_size


# What each projection variant holds besides its inputs and its [B, S, D] result (the page's table
# and memory_table's "holds" column).
HOLDS = {
    "gemm": "nothing: a bare matrix product on inputs concatenated before the clock started (the reference)",
    "concat": "z copied with the heads side by side, [B·S, H·L]",
    "einsum": "the same side-by-side copy, made inside einsum",
    "per_head_sum": "a heads-first copy of z and every head's result, [H, B·S, D], until the sum is done",
    "per_head_sum_out": "a heads-first copy of z and every head's result, allocated once",
    "head_loop": "one head's [B, S, D] product next to the running sum",
    "broadcast": "every single product z·W_O, [B, S, H, L, D], then [B, S, H, D]",
}


PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def element_size(dtype: str) -> int:
    """Bytes per number of a dtype named as in core.device."""
    return torch.empty((), dtype=dtype_from_name(dtype)).element_size()


def memory_table(size: Size, dtype: str) -> pd.DataFrame:
    """Per projection variant: what it holds besides its inputs and result, in bytes and in results.

    From shapes alone (extra_bytes), so it can be shown before anything runs. ``pages`` is how
    many memory pages the extra bytes span: the page faults a call takes if all of it is fresh.
    """
    element_size_ = element_size(dtype)
    out_bytes = size.bsd * element_size_
    rows = []
    for name in PROJECTION_VARIANTS:
        extra = extra_bytes(name, size, element_size_)
        rows.append({
            "variant": name, "holds": HOLDS[name], "extra_bytes": extra, "extra_mib": extra / 2**20,
            "times_output": extra / out_bytes, "output_bytes": out_bytes, "pages": math.ceil(extra / PAGE_BYTES),
            "needs_bytes": estimated_bytes(name, size, element_size_),
        })
    return pd.DataFrame(rows)


def estimated_bytes(variant: str, size: Size, element_size: int) -> int:
    """An upper estimate of the memory one call needs (inputs excluded): what the caps check."""
    extra = extra_bytes(variant, size, element_size)
    if extra is not None:
        return extra + size.bsd * element_size
    B, S, H = size.batch, size.seq, size.n_heads
    scores = B * H * S * S  # [B, H, S, S]
    if variant == "forward_trace":  # q, k, v, z, two outputs, per_head, einsum copies; scores and pattern
        return ((6 + H + 2) * size.bsd + 2 * scores) * element_size
    return (6 * size.bsd + 2 * scores) * element_size  # packed qkv, z, output; weights if a path materializes them


# ---- inputs and the variants themselves --------------------------------------------------------


def projection_inputs(size: Size, dtype: torch.dtype, device: str = "cpu", seed: int = 0) -> tuple[Tensor, Tensor]:
    """Seeded z [B, H, S, L] (unit variance) and W_O [H, L, D] (std 1/√D), drawn on the CPU."""
    B, S, D, H, L = size.batch, size.seq, size.d_model, size.n_heads, size.d_head
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    draw_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    z = torch.randn(B, H, S, L, generator=gen, dtype=draw_dtype).to(device=device, dtype=dtype)  # [B, H, S, L]
    W_O = (torch.randn(H, L, D, generator=gen, dtype=draw_dtype) / math.sqrt(D)).to(device=device, dtype=dtype)  # [H, L, D]
    return z, W_O


def make_variant(name: str, z: Tensor, W_O: Tensor) -> Callable[[], Tensor]:
    """A zero-argument callable computing out [B, S, D] from z [B, H, S, L] and W_O [H, L, D]."""
    B, H, S, L = z.shape
    D = W_O.shape[-1]
    if name == "gemm":
        x = z.transpose(1, 2).reshape(B * S, H * L).contiguous()  # [B·S, D] concatenated once, outside the clock
        W = W_O.reshape(H * L, D)  # [D, D]
        return lambda: (x @ W).view(B, S, D)  # [B, S, D]
    if name == "concat":
        return lambda: concat_then_project(z, W_O)  # [B, S, D]
    if name == "einsum":
        return lambda: torch.einsum("bhsl,hld->bsd", z, W_O)  # [B, S, D]
    if name == "per_head_sum":
        return lambda: project_then_sum(z, W_O)  # [B, S, D]
    if name == "per_head_sum_out":
        # The same copy, batched GEMM and sum as per_head_sum, into memory allocated once: the
        # difference between the two is the price of allocating (and page-faulting) per call.
        z_heads = torch.empty(H, B * S, L, dtype=z.dtype, device=z.device)  # [H, B·S, L]
        per_head = torch.empty(H, B * S, D, dtype=z.dtype, device=z.device)  # [H, B·S, D]
        out = torch.empty(B * S, D, dtype=z.dtype, device=z.device)  # [B·S, D]

        def per_head_sum_out() -> Tensor:
            z_heads.view(H, B, S, L).copy_(z.transpose(0, 1))  # [H, B, S, L] heads first
            torch.bmm(z_heads, W_O, out=per_head)  # [H, B·S, L] @ [H, L, D] → [H, B·S, D]
            torch.sum(per_head, dim=0, out=out)  # [B·S, D]
            return out.view(B, S, D)

        return per_head_sum_out
    if name == "head_loop":

        def head_loop() -> Tensor:
            out = z[:, 0] @ W_O[0]  # [B, S, L] @ [L, D] → [B, S, D]
            for h in range(1, H):
                out += z[:, h] @ W_O[h]  # [B, S, D]
            return out

        return head_loop
    if name == "broadcast":

        def broadcast() -> Tensor:
            z_bshl = z.transpose(1, 2)  # [B, S, H, L] a view
            per_head = (z_bshl[..., None] * W_O).sum(-2)  # [B, S, H, L, 1] * [H, L, D] → [B, S, H, L, D] → [B, S, H, D]
            return per_head.sum(-2)  # [B, S, D]

        return broadcast
    raise ValueError(f"unknown projection variant {name!r}; choose from {', '.join(PROJECTION_VARIANTS)}")


def forward_inputs(size: Size, dtype: torch.dtype, device: str = "cpu", seed: int = 0) -> tuple[Tensor, AttentionWeights]:
    """Seeded x [B, S, D] and attention weights, as everywhere in the essay (core.identity)."""
    weights = AttentionWeights.random(size.d_model, size.n_heads, seed=seed, dtype=dtype, device=device)
    x = random_input(size.batch, size.seq, size.d_model, seed=seed, dtype=dtype, device=device)  # [B, S, D]
    return x, weights


def make_forward(name: str, x: Tensor, weights: AttentionWeights) -> Callable[[], Tensor]:
    """A zero-argument callable computing the attention output [B, S, D] (no mask, scores divided by √L)."""
    B, S, D = x.shape
    H, L = weights.n_heads, weights.d_head
    if name == "forward_trace":
        return lambda: multi_head_attention(x, weights).out_concat  # [B, S, D]
    if name == "forward_mha":
        mha = weights.to_torch()  # eval mode, batch_first
        return lambda: mha(x, x, x, need_weights=False)[0]  # [B, S, D]
    if name == "forward_sdpa":
        W_qkv = torch.cat([merge_heads(W) for W in (weights.W_Q, weights.W_K, weights.W_V)], dim=1)  # [D, 3D]

        def forward_sdpa() -> Tensor:
            qkv = x @ W_qkv  # [B, S, 3D] one GEMM for all three projections
            q, k, v = qkv.view(B, S, 3, H, L).permute(2, 0, 3, 1, 4).unbind(0)  # 3 × [B, H, S, L]
            z = F.scaled_dot_product_attention(q, k, v)  # [B, H, S, L] softmax(q kᵀ/√L) v
            return concat_then_project(z, weights.W_O)  # [B, S, D]

        return forward_sdpa
    raise ValueError(f"unknown forward variant {name!r}; choose from {', '.join(FORWARD_VARIANTS)}")


def check_tolerance(dtype: torch.dtype, d_model: int, kind: str = "projection", *, reduced_accumulation: bool = False) -> float:
    """Largest relative RMS difference from the float64 reference that still counts as correct.

    The reference is the same sum computed in float64 from the same (already rounded) inputs, so
    the difference is only what the variant's own arithmetic rounds away. Two sources, each
    with room to spare: the output's roundings in the dtype (the deepest chain is head_loop's H
    roundings of a running sum; measured up to 1.3 steps RMS at H = 64, D = 2048), and the
    accumulation over D products in the accumulating dtype (float32 for the half types, whose
    products accumulate in float32 on the CPU and in cuBLAS). So: 4·eps(dtype) + √D·eps(accumulator),
    twice that for the whole forward.

    What it catches: a head missing among H changes the output by 1/√H of its RMS (heads are
    independent), so in bfloat16 (eps = 2⁻⁷, tolerance ≈ 0.031 at D ≤ 2048) any head missing
    among up to 64 heads (0.125), a swapped head, a missing transpose; in float32 anything larger
    than a few rounding steps of float32.
    """
    half = dtype in (torch.float16, torch.bfloat16)
    accumulator = torch.float32 if half else dtype
    # cuBLAS's reduced-precision split-K adds a few roundings of the partial sums in the dtype
    # (not measured here: no GPU was at hand); the model allows four more steps for them.
    steps = 8 if half and reduced_accumulation else 4
    tol = steps * eps(dtype) + math.sqrt(max(d_model, 1)) * eps(accumulator)
    return 2 * tol if kind == "forward" else tol


def rel_error(a: Tensor, ref: Tensor) -> float:
    """‖a − ref‖₂ / ‖ref‖₂ in float64; inf for a wrong shape or a non-finite difference."""
    if a.shape != ref.shape:
        return math.inf
    diff = float((a.detach().double() - ref.detach().double()).norm())
    scale = float(ref.detach().double().norm())
    if not math.isfinite(diff):
        return math.inf
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


def float64_reference(kind: str, inputs: tuple) -> Tensor:
    """The output computed in float64 from the same inputs: concat (projection) or core's forward."""
    with torch.no_grad():
        if kind == "forward":
            x, weights = inputs
            return multi_head_attention(x.double(), weights.to(torch.float64)).out_concat  # [B, S, D] float64
        z, W_O = inputs
        return concat_then_project(z.double(), W_O.double())  # [B, S, D] float64


def _reduced_accumulation(device: str, dtype: torch.dtype) -> bool:
    """Whether cuBLAS may accumulate a half-precision GEMM in half precision (a torch setting)."""
    if not str(device).startswith("cuda"):
        return False
    matmul = torch.backends.cuda.matmul
    if dtype == torch.float16:
        return bool(getattr(matmul, "allow_fp16_reduced_precision_reduction", False))
    if dtype == torch.bfloat16:
        return bool(getattr(matmul, "allow_bf16_reduced_precision_reduction", False))
    return False


# ---- what a call allocates ---------------------------------------------------------------------


class _AllocationCounter(TorchDispatchMode):
    """Watches every aten op: counts the bytes of storage it creates and how many are alive at once.

    An op's output is a new allocation when its storage is none of the op's inputs' storages (views,
    in-place ops and ``out=`` ops reuse memory). A storage is freed when the last tensor using it
    is garbage-collected. This sees tensors, not allocator internals (cuBLAS or MKL workspaces).
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Nothing here runs under torch.compile; saying so spares importing torch._dynamo
        # (a second and ~75 MB on first use), which a 1 GB server cannot spare.
        return False

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # data_ptr → [nbytes, tensors using it]
        self.current = self.peak = self.total = 0

    def _release(self, ptr: int) -> None:
        record = self.live.get(ptr)
        if record is None:
            return
        record[1] -= 1
        if record[1] == 0:
            self.current -= record[0]
            del self.live[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in self.live:
                if ptr in inputs or storage.nbytes() == 0:
                    continue
                self.live[ptr] = [storage.nbytes(), 0]
                self.current += storage.nbytes()
                self.total += storage.nbytes()
                self.peak = max(self.peak, self.current)
            self.live[ptr][1] += 1
            weakref.finalize(t, self._release, ptr)
        return out


def first_call(
    fn: Callable[[], Tensor], device: str, clock: Callable[[], float] = time.perf_counter, stats=None,
) -> tuple[Tensor, float, tuple[int, int, int], int | None]:
    """Call ``fn`` once, for the check: (a copy of its result, seconds, allocations, CUDA peak).

    The one call serves the correctness check, the allocation count (as count_allocations) and,
    on CUDA, the caching allocator's peak during the call, result included
    (torch.cuda.max_memory_allocated), so a slow variant is not called three times before it is
    timed. ``stats`` is torch.cuda on a CUDA device unless a test passes a stand-in; elsewhere the
    peak is None. The seconds include the counting's per-op overhead: they only predict.
    """
    counter = _AllocationCounter()
    if stats is None and str(device).startswith("cuda"):
        stats = torch.cuda
    if stats is not None:
        stats.synchronize()
        before = stats.memory_allocated()
        stats.reset_peak_memory_stats()
    start = clock()
    with torch.no_grad(), counter:
        out = fn()
        out_bytes = out.numel() * out.element_size()
    if stats is not None:
        stats.synchronize()
    seconds = clock() - start
    cuda_peak = int(stats.max_memory_allocated() - before) if stats is not None else None
    copy = out.clone()  # [B, S, D]; a copy, because some variants hand back a buffer they reuse
    return copy, seconds, (counter.total, counter.peak, out_bytes), cuda_peak


def count_allocations(fn: Callable[[], Tensor]) -> tuple[int, int, int]:
    """(bytes allocated by one call, peak bytes alive during it, bytes of its result)."""
    counter = _AllocationCounter()
    # no_grad, not inference_mode: under inference_mode composite ops such as einsum reach the
    # counter whole, hiding the copies they make inside.
    with torch.no_grad(), counter:
        out = fn()
        out_bytes = out.numel() * out.element_size()
        del out
    return counter.total, counter.peak, out_bytes


def _minor_faults() -> int | None:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else None


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


# ---- the run -----------------------------------------------------------------------------------


def parse_sweep(text: str) -> tuple[str, list[int]]:
    """'seq=64,128,256' → ('seq', [64, 128, 256]); raises ValueError with a readable reason."""
    axis, sep, values = text.partition("=")
    axis = axis.strip().replace("-", "_")
    axis = {"n_heads": "heads"}.get(axis, axis)
    if not sep or axis not in SWEEP_AXES:
        raise ValueError(f"a sweep is written axis=v1,v2,… with axis one of {', '.join(SWEEP_AXES)}; got {text!r}")
    try:
        numbers = sorted({int(v) for v in values.split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"sweep values must be whole numbers separated by commas; got {values!r}") from None
    if not numbers or min(numbers) < 1:
        raise ValueError(f"sweep values must be positive whole numbers; got {values!r}")
    return axis, numbers


def sweep_sizes(base: Size, axis: str | None, values: Sequence[int]) -> list[Size]:
    """The base size first, then the sweep's sizes in increasing order (the base counted once).

    Values that would make heads not divide d_model are dropped (the caller says so).
    """
    sizes = [base]
    if axis:
        field = {"heads": "n_heads"}.get(axis, axis)
        for v in sorted(set(values)):
            try:
                size = replace(base, **{field: int(v)})
            except ValueError:
                continue
            if size not in sizes:
                sizes.append(size)
    return sizes


def malloc_setting() -> str:
    """How glibc malloc is tuned in this process's environment, in words."""
    keys = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES")
    set_ = [f"{k}={os.environ[k]}" for k in keys if os.environ.get(k)]
    return " ".join(set_) if set_ else "default"


def environment(device: str, threads: int | None = None) -> dict[str, str]:
    """What the numbers were measured on, for the table, the CSV and the page's caption."""
    info = describe(device)
    if threads is not None:
        info["threads"] = str(threads)
    info["cpu_model"] = cpu_model()
    info["cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
    libc, libc_version = platform.libc_ver()
    info["libc"] = f"{libc} {libc_version}".strip() or "unknown"
    info["malloc"] = malloc_setting()
    info["platform"] = platform.platform(terse=True)
    if threads is not None:
        info["clock"] = CLOCKS[clock_for(device, threads)]
    return info


# ---- statistics over rounds --------------------------------------------------------------------


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(median, low, high, coverage): a distribution-free interval for the median of ``values``.

    The k-th smallest and k-th largest of n independent draws bracket the true median with
    probability 1 − 2·P(Binomial(n, ½) < k), whatever the distribution. k is the largest that
    still reaches ``confidence``; with fewer than 6 values none does (6 give 1 − 2/64 ≈ 0.97),
    and the interval is the smallest to the largest value, with the coverage it really has.
    """
    xs = sorted(float(v) for v in values if v == v)
    n = len(xs)
    if n == 0:
        nan = float("nan")
        return nan, nan, nan, nan
    median = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

    def coverage(k: int) -> float:
        return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n

    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(k + 1) >= confidence:
        k += 1
    return median, xs[k - 1], xs[n - k], coverage(k)


def verdict(low: float, high: float, reference: float = 1.0) -> str:
    """Where an interval lies against a reference value: "below", "above" or "could not tell"."""
    if not (low == low and high == high):
        return "not measured"
    if high < reference:
        return "below"
    if low > reference:
        return "above"
    return "could not tell"


def interleave(
    names: Sequence[str], time_block: Callable[[str], float], *, rng: random.Random,
    max_rounds: int = MAX_ROUNDS, another_round: Callable[[int], bool] = lambda done: True,
) -> tuple[dict[str, list[float]], list[list[str]]]:
    """Time every name once per round, in a fresh random order each round: (times, orders).

    ``time_block(name)`` times one block of that variant and returns seconds per call;
    ``another_round(rounds_done)`` decides whether one more round fits. Because each round
    visits every variant within a short spell, a slow spell of a shared machine lands on all of
    them alike, and a ratio taken within one round cancels it.
    """
    times: dict[str, list[float]] = {n: [] for n in names}
    orders: list[list[str]] = []
    while len(orders) < max_rounds and another_round(len(orders)):
        order = list(names)
        rng.shuffle(order)
        for name in order:
            times[name].append(time_block(name))
        orders.append(order)
    return times, orders


def paired_fractions(times: dict[str, list[float]], work: dict[str, float], reference: str = "gemm") -> dict[str, list[float]]:
    """Per round, each variant's throughput as a fraction of the reference's in the same round.

    (work_v / t_v) / (work_ref / t_ref) with the round's own two times; for variants doing the
    same work this is t_ref / t_v.
    """
    ref = times[reference]
    return {
        name: [(work[name] / t) / (work[reference] / r) for t, r in zip(ts, ref)]
        for name, ts in times.items()
    }


def _round_text(seconds_per_call: Sequence[float]) -> str:
    return " ".join(f"{s * 1e3:.6g}" for s in seconds_per_call)


def round_times(row: pd.Series | dict) -> list[float]:
    """A row's per-round median-free times per call, in ms (the ``round_ms`` column, in order)."""
    text = row["round_ms"] if isinstance(row, dict) else row.get("round_ms", "")
    if not isinstance(text, str) or not text.strip():
        return []
    return [float(v) for v in text.split()]


CLOCKS = {
    "wall": "wall time, torch.utils.benchmark's clock (synchronizes CUDA)",
    "thread cpu": "CPU time of the one thread doing the work (time.thread_time)",
}


def clock_for(device: str, threads: int) -> str:
    """Which clock times the blocks: the work's own CPU time where that is the whole call.

    With one intra-op thread on the CPU, torch runs every op in the calling thread, so that
    thread's CPU time (user + kernel, page faults included) is the call's cost, and time spent
    waiting for a core that another process holds is not in it: on a shared machine, the
    difference between a ratio of the code and a ratio of the neighbours. With more threads, or
    on a GPU, part of the work happens elsewhere, and only wall time on torch.utils.benchmark's
    clock (which synchronizes CUDA first) covers it.
    """
    return "thread cpu" if str(device) == "cpu" and threads == 1 else "wall"


def _time_one_block(
    fn: Callable[[], object], number: int, clock_name: str = "wall", *,
    settle_s: float = SETTLE_MAX_S, calls: list[int] | None = None,
) -> float:
    """Seconds per call of ``fn`` in one block: its fastest call, once the calls have settled.

    Each call is timed on its own (clock_for says which clock). The fastest is the cost of the
    code while it has the processor; on a shared machine a slower call is mostly a preemption
    or another process evicting caches. A block makes ``number`` calls and then goes on while its
    calls are still speeding up: until SETTLE_CALLS calls in a row were none more than
    SETTLE_GAIN faster than the best so far, while the block has taken less than ``settle_s``.
    Without that, a variant whose first calls after a switch are slow (memory-heavy ones, on the
    machines measured) is timed before it reaches its own speed, by an amount that differs from
    process to process. Calls under PER_CALL_MIN_S are too short to time one by one against the
    clock's own overhead: one call warms up, then the block is timed whole and divided.
    ``calls``, if given, gets the number of calls made appended (for page faults per call).
    """
    read = time.thread_time if clock_name == "thread cpu" else bench_clock
    start = read()
    fn()
    best = read() - start
    if best < PER_CALL_MIN_S and number > 1:
        start = read()
        for _ in range(number - 1):
            fn()
        if calls is not None:
            calls.append(number)
        return max(min(best, (read() - start) / (number - 1)), 1e-9)
    made, quiet, spent = 1, 0, best
    last = best
    while made < number or (quiet < SETTLE_CALLS and spent + last <= settle_s):
        start = read()
        fn()
        last = read() - start
        spent += last
        made += 1
        quiet = 0 if last < best * (1 - SETTLE_GAIN) else quiet + 1
        best = min(best, last)
    if calls is not None:
        calls.append(made)
    return max(best, 1e-9)


def _calibrate(device: str, dtype: torch.dtype, threads: int) -> float:
    """A pessimistic FLOP/s for (device, dtype): one small GEMM, used only to skip hopeless sizes."""
    a = torch.randn(64, 256, device=device).to(dtype)  # [64, 256]
    b = torch.randn(256, 256, device=device).to(dtype)  # [256, 256]
    with torch_threads(threads):
        a @ b
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        elapsed = max(time.perf_counter() - start, 1e-7)
    return 2 * 64 * 256 * 256 / elapsed


def run_benchmark(
    sizes: Sequence[Size],
    *,
    dtype: str = "float32",
    device: str = "cpu",
    variants: Sequence[str] = PROJECTION_VARIANTS,
    budget_s: float = 10.0,
    max_bytes: int = 2**31,
    threads: int | None = None,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    time_block: Callable[[str, Callable[[], object], int], float] | None = None,
    order_seed: int = 0,
) -> pd.DataFrame:
    """Check every variant at every size, then time them in interleaved rounds, within ``budget_s``.

    First pass, per size: each variant is checked against a float64 reference of the same
    inputs (off by more than check_tolerance: ``wrong``, never timed) and called once more to
    learn its time per call. Second pass, per size: rounds, each timing one block of every
    variant in a fresh random order (seeded by ``order_seed``), until the size's share of what
    is left of the budget is spent. Shares follow each size's cost of one round, so every size
    gets about as many rounds; the base size (the first) gets BASE_SHARE times more and is timed
    last, so a size whose rounds run over their plan eats into the base's extra rounds, and what
    a size leaves unused passes on. Every size timed gets at least MIN_ROUNDS rounds; a block
    settles first (_time_one_block).

    One row per (size, variant), in CSV_COLUMNS order: the median and IQR over rounds of the
    time per call, and ``fraction_of_gemm``: the median over rounds of the throughput ratio to
    gemm *within the same round*, with its interval (median_interval) and verdict. ``status``:
    ok, skipped (memory cap or time budget; ``note`` says which), wrong, failed (torch raised).

    ``time_block(name, fn, number)`` (seconds per call) and ``clock`` can be replaced in tests.
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose cpu or cuda")
    if dtype not in supported_dtypes(device):
        raise ValueError(f"{dtype} does not run on {device} here")
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    torch_dtype = dtype_from_name(dtype)
    element_size_ = torch.empty((), dtype=torch_dtype).element_size()
    threads = int(threads or torch.get_num_threads())
    clock_name = clock_for(device, threads)
    made: dict[str, list[int]] = {}  # calls each block of a variant made (the default timer settles)

    def default_timer(name: str, fn: Callable[[], object], number: int) -> float:
        return _time_one_block(fn, number, clock_name, calls=made.setdefault(name, []))

    timer = time_block or default_timer
    order = [v for v in ("gemm",) if v in variants] + [v for v in variants if v != "gemm"]  # the reference first
    env = environment(device, threads)
    reduced = _reduced_accumulation(device, torch_dtype)
    deadline = clock() + budget_s
    rng = random.Random(order_seed)
    jobs_total = 2 * len(sizes) * len(order)
    rows: list[dict] = []
    size_rows: list[dict[str, dict]] = []
    per_call: list[dict[str, float]] = []  # per size: seconds per call of every variant that passed
    least: list[dict[str, float]] = []  # per size: seconds the variant's shortest block took (its settling)
    flops_per_s = _calibrate(device, torch_dtype, threads)

    def report(done: int, message: str) -> None:
        if progress is not None:
            progress(min(done / max(jobs_total, 1), 1.0), message)

    def build(size: Size, name: str, inputs: dict) -> Callable[[], Tensor]:
        kind = "forward" if VARIANTS[name].kind == "forward" else "projection"
        if kind not in inputs:
            inputs[kind] = (forward_inputs if kind == "forward" else projection_inputs)(size, torch_dtype, device, seed)
        return (make_forward if kind == "forward" else make_variant)(name, *inputs[kind])

    # ---- first pass: check, and learn each variant's time per call
    for i, size in enumerate(sizes):
        where = f"B={size.batch} S={size.seq} D={size.d_model} H={size.n_heads}"
        by_name: dict[str, dict] = {}
        known: dict[str, float] = {}
        shortest: dict[str, float] = {}
        inputs: dict[str, tuple] = {}
        references: dict[str, Tensor] = {}
        seconds_per_flop = 1 / flops_per_s  # refined by this size's gemm
        for j, name in enumerate(order):
            variant = VARIANTS[name]
            row = _empty_row(name, size, dtype, device, threads, env, element_size_)
            row["tolerance"] = check_tolerance(torch_dtype, size.d_model, variant.kind, reduced_accumulation=reduced)
            by_name[name] = row
            rows.append(row)
            report(i * len(order) + j, f"checking {name} at {where}")
            need = estimated_bytes(name, size, element_size_)
            if need > max_bytes:
                row.update(status="skipped", note=f"would need {_mib(need)} for its intermediates; the cap is {_mib(max_bytes)}")
                continue
            remaining = deadline - clock()
            predicted = flops(name, size) * seconds_per_flop
            if remaining <= 0:
                row.update(status="skipped", note=f"time budget of {budget_s:g} s used up")
                continue
            if (MIN_ROUNDS + 2) * predicted > remaining:
                row.update(status="skipped", note=f"one call would take about {predicted:.2g} s; a check and "
                           f"{MIN_ROUNDS} rounds would not fit the {remaining:.1f} s left of the budget")
                continue
            try:
                with torch.no_grad(), torch_threads(threads):
                    fn = build(size, name, inputs)
                    out, _, (alloc, peak, out_bytes), cuda_peak = first_call(fn, device, clock)
                    kind = "forward" if variant.kind == "forward" else "projection"
                    if kind not in references:
                        references[kind] = float64_reference(kind, inputs[kind])  # [B, S, D] float64
                    error = rel_error(out, references[kind])
                    del out
                row.update(alloc_bytes=alloc, peak_bytes=peak, cuda_peak_bytes=cuda_peak, rel_error=error)
                if variant.kind == "forward":
                    row.update(extra_bytes=max(peak - out_bytes, 0), extra_bytes_from="measured")
                if not error <= row["tolerance"]:
                    row.update(status="wrong", note=f"differs from the float64 reference by {error:.2e} (relative RMS; "
                               f"the {dtype} tolerance is {row['tolerance']:.2e}); not timed")
                    continue
                with torch.no_grad(), torch_threads(threads):
                    started = clock()
                    known[name] = timer(name, fn, 1)  # the checked call ran under the allocation counter
                    shortest[name] = max(clock() - started, known[name])  # a block of one call, settled
                if name == "gemm":
                    seconds_per_flop = known[name] / flops(name, size)
            except (RuntimeError, NotImplementedError, TypeError) as exc:  # e.g. a kernel missing for a dtype
                row.update(status="failed", note=_one_line(exc))
        del inputs, references
        size_rows.append(by_name)
        per_call.append(known)
        least.append(shortest)

    # ---- second pass: interleaved rounds, size by size
    def round_costs() -> list[float]:  # per size: the least one round of it takes (settled blocks of one call)
        return [sum(least[i][n] for n in known) for i, known in enumerate(per_call)]

    def weights() -> list[float]:  # a size's share follows the cost of its round; the base size gets more
        return [cost * (BASE_SHARE if i == 0 else 1.0) for i, cost in enumerate(round_costs())]

    # Every size should get MIN_ROUNDS rounds: while it can't, leave out the slowest block of all (never gemm).
    while MIN_ROUNDS * sum(round_costs()) > deadline - clock():
        slow = [(least[i][n], i, n) for i, known in enumerate(per_call) for n in known if n != "gemm"]
        if not slow:
            break
        seconds, i, name = max(slow)
        size_rows[i][name].update(status="skipped", note=(
            f"one block takes {seconds * 1e3:,.1f} ms; with it, {MIN_ROUNDS} interleaved rounds at every size would "
            f"not fit the {max(deadline - clock(), 0):.1f} s left of the budget"))
        del per_call[i][name]
    costs, shares = round_costs(), weights()
    # The base size is timed last. It has BASE_SHARE shares, so a sweep size whose rounds run over
    # their plan takes from the base's extra rounds, never from another size's MIN_ROUNDS.
    timing_order = list(range(1, len(sizes))) + [0]
    for step, i in enumerate(timing_order):
        size = sizes[i]
        report(len(sizes) * len(order) + step * len(order), f"timing at B={size.batch} S={size.seq} D={size.d_model} H={size.n_heads}")
        known, by_name = per_call[i], size_rows[i]
        if not known:
            continue
        later = timing_order[step + 1:]
        remaining = max(deadline - clock(), 0.0)
        share = remaining * shares[i] / max(shares[i] + sum(shares[j] for j in later), 1e-12)
        room = remaining - MIN_ROUNDS * sum(costs[j] for j in later)  # the most this size's MIN_ROUNDS may take
        size_deadline = clock() + share
        shortest = least[i]
        while MIN_ROUNDS * sum(shortest[n] for n in known) > room:  # drop the slowest (never gemm) until MIN_ROUNDS fit
            slowest = max((n for n in known if n != "gemm"), key=shortest.get, default=None)
            if slowest is None:
                break
            by_name[slowest].update(status="skipped", note=(
                f"one block takes {shortest[slowest] * 1e3:,.1f} ms; {MIN_ROUNDS} interleaved rounds with it would "
                f"not fit the {max(room, 0):.2f} s the budget leaves this size"))
            del known[slowest]
        if MIN_ROUNDS * sum(shortest[n] for n in known) > room:
            for name in known:
                by_name[name].update(status="skipped", note=f"time budget of {budget_s:g} s used up")
            continue
        names = list(known)
        block = min(max(share / (TARGET_ROUNDS * len(names)), BLOCK_MIN_S), BLOCK_MAX_S)
        number = {n: max(1, int(block / max(known[n], 1e-9))) for n in names}
        faults = {n: 0 for n in names}
        counting = _minor_faults() is not None
        made.clear()  # from here on, the calls of this size's rounds
        try:
            with torch.no_grad(), torch_threads(threads):
                inputs = {}
                fns = {n: build(size, n, inputs) for n in names}
                for fn in fns.values():  # untimed (not through `timer`), settled: buffers allocated, each up to speed
                    _time_one_block(fn, 1, clock_name)
                _sync(device)

                def one_block(name: str) -> float:
                    before = _minor_faults() if counting else 0
                    seconds = timer(name, fns[name], number[name])
                    if counting:
                        faults[name] += _minor_faults() - before
                    return seconds

                mark = [clock()]

                def another_round(done: int) -> bool:
                    now = clock()
                    estimate = now - mark[0] if done else sum(max(number[n] * known[n], shortest[n]) for n in names)
                    mark[0] = now
                    return done < MIN_ROUNDS or now + estimate <= size_deadline  # MIN_ROUNDS were planned to fit

                times, _ = interleave(names, one_block, rng=rng, another_round=another_round)
                fns.clear()  # free this size's buffers before the next size builds its own
                inputs.clear()
        except (RuntimeError, NotImplementedError, TypeError) as exc:  # pragma: no cover - each was checked
            for name in names:
                by_name[name].update(status="failed", note=_one_line(exc))
            continue
        work = {n: float(flops(n, size)) for n in times}
        fractions = paired_fractions(times, work) if "gemm" in times else {}
        for name, ts in times.items():
            row = by_name[name]
            calls = sum(made[name]) if made.get(name) else number[name] * len(ts)
            median, q1, q3 = (_quantile(ts, q) for q in (0.5, 0.25, 0.75))
            row.update(
                status="ok", median_ms=median * 1e3, iqr_ms=(q3 - q1) * 1e3, q1_ms=q1 * 1e3, q3_ms=q3 * 1e3,
                runs=len(ts), calls=calls, gflop_per_s=work[name] / median / 1e9,
                page_faults_per_call=faults[name] / calls if counting else float("nan"),
                round_ms=_round_text(ts),
            )
            if name in fractions:
                mid, lo, hi, cover = median_interval(fractions[name])
                row.update(fraction_of_gemm=mid, fraction_lo=lo, fraction_hi=hi, interval_coverage=cover,
                           verdict="reference" if name == "gemm" else verdict(lo, hi))
                if name != "gemm" and VARIANTS[name].kind == "projection" and lo > 1:
                    row["note"] = ("noise: measured faster than the bare GEMM, whose work it contains (plus a copy or "
                                   "more); the machine changed speed within rounds")
                elif name != "gemm" and mid > 0 and (hi - lo) / mid > NOISY_WIDTH:
                    row["note"] = f"noisy: its interval spans {(hi - lo) / mid:.0%} of the median"
    report(jobs_total, "done")
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def _quantile(values: Sequence[float], q: float) -> float:
    """The same interpolated quantile that torch.utils.benchmark uses for its IQR."""
    return float(torch.tensor(list(values), dtype=torch.float64).quantile(q))


def at_base(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the table's first (base) size: the size the headlines are about."""
    first = table.iloc[0]
    return table[(table["batch"] == first["batch"]) & (table["seq"] == first["seq"])
                 & (table["d_model"] == first["d_model"]) & (table["n_heads"] == first["n_heads"])]


def paired(table: pd.DataFrame, numerator: str, denominator: str, how: str = "ratio") -> tuple[float, float, float, float]:
    """(median, low, high, coverage) over rounds of numerator's time ÷ (or −, in ms) denominator's.

    Both from the same rounds of the table's base size (the ``round_ms`` column), so the pair
    shares every slow spell; NaNs where either is missing.
    """
    nan = float("nan")
    if table.empty:
        return nan, nan, nan, nan
    ok = at_base(table)
    ok = ok[ok["status"] == "ok"].set_index("variant")
    if numerator not in ok.index or denominator not in ok.index:
        return nan, nan, nan, nan
    a, b = round_times(ok.loc[numerator].to_dict()), round_times(ok.loc[denominator].to_dict())
    if not a or len(a) != len(b):
        return nan, nan, nan, nan
    values = [x / y for x, y in zip(a, b)] if how == "ratio" else [x - y for x, y in zip(a, b)]
    return median_interval(values)


def summarize(table: pd.DataFrame) -> dict[str, float | str]:
    """The headline facts at the table's first (base) size, each with its interval and verdict.

    ``concat`` and ``einsum``: the median per-round fraction of the bare GEMM's throughput, its
    interval, and where the interval lies against 1 ("below", "above", "could not tell").
    ``per_head_sum_over_concat``: per-round time ratio; ``allocation_ms``: per-round difference
    between per_head_sum and the same arithmetic into buffers allocated once (per_head_sum_out),
    with its verdict against 0. NaN where a variant has no time.
    """
    nan = float("nan")
    if table.empty:
        return {}
    ok = at_base(table)
    ok = ok[ok["status"] == "ok"].set_index("variant")

    def get(variant: str, column: str) -> float:
        return float(ok.at[variant, column]) if variant in ok.index and column in ok.columns else nan

    facts: dict[str, float | str] = {}
    for name in ("concat", "einsum"):
        lo, hi = get(name, "fraction_lo"), get(name, "fraction_hi")
        facts.update({f"{name}_fraction_of_gemm": get(name, "fraction_of_gemm"), f"{name}_fraction_lo": lo,
                      f"{name}_fraction_hi": hi, f"{name}_verdict": verdict(lo, hi)})
    mid, lo, hi, _ = paired(table, "per_head_sum", "concat")
    facts.update(per_head_sum_over_concat=mid, per_head_sum_over_concat_lo=lo, per_head_sum_over_concat_hi=hi,
                 per_head_sum_over_concat_verdict=verdict(lo, hi))
    mid, lo, hi, _ = paired(table, "per_head_sum", "per_head_sum_out", how="difference")
    per_head = get("per_head_sum", "median_ms")
    facts.update(allocation_ms=mid, allocation_lo=lo, allocation_hi=hi, allocation_verdict=verdict(lo, hi, 0.0),
                 allocation_share=mid / per_head if per_head == per_head else nan,
                 per_head_sum_faults=get("per_head_sum", "page_faults_per_call"),
                 per_head_sum_out_faults=get("per_head_sum_out", "page_faults_per_call"),
                 gemm_gflop_per_s=get("gemm", "gflop_per_s"),
                 above_gemm=", ".join(n for n in ok.index if ok.at[n, "verdict"] == "above"
                                      and VARIANTS[n].kind == "projection"))
    return facts


def growth(table: pd.DataFrame, axis: str) -> pd.DataFrame:
    """How each variant's median time changed along a sweep, from the smallest value to the largest.

    One row per variant measured at both ends: the two values, the two times and ``factor`` (time
    at the largest ÷ time at the smallest), sorted by factor, largest first: what the run shows,
    so the page can say which rose most without guessing.
    """
    column = {"heads": "n_heads"}.get(axis, axis)
    ok = table[(table["status"] == "ok") & (table["kind"] != "forward")]
    rows = []
    for name, group in ok.groupby("variant", sort=False):
        if group[column].nunique() < 2:
            continue
        g = group.sort_values(column)
        first, last = g.iloc[0], g.iloc[-1]
        rows.append({"variant": name, "from": int(first[column]), "to": int(last[column]),
                     "ms_from": float(first["median_ms"]), "ms_to": float(last["median_ms"]),
                     "factor": float(last["median_ms"] / first["median_ms"])})
    return pd.DataFrame(rows, columns=["variant", "from", "to", "ms_from", "ms_to", "factor"]).sort_values(
        "factor", ascending=False, ignore_index=True)


def _empty_row(name: str, size: Size, dtype: str, device: str, threads: int, env: dict, element_size: int) -> dict:
    extra = extra_bytes(name, size, element_size)
    nan = float("nan")
    return {
        "variant": name, "device": device, "dtype": dtype, "batch": size.batch, "seq": size.seq,
        "d_model": size.d_model, "n_heads": size.n_heads, "median_ms": nan, "iqr_ms": nan,
        "gflop_per_s": nan, "fraction_of_gemm": nan, "extra_bytes": nan if extra is None else extra,
        "fraction_lo": nan, "fraction_hi": nan, "interval_coverage": nan, "verdict": "not measured",
        "kind": VARIANTS[name].kind, "d_head": size.d_head, "threads": threads, "q1_ms": nan, "q3_ms": nan,
        "runs": 0, "calls": 0,
        "gflop": flops(name, size) / 1e9, "extra_bytes_from": "shapes" if extra is not None else "measured",
        "alloc_bytes": nan, "peak_bytes": nan, "cuda_peak_bytes": nan, "page_faults_per_call": nan,
        "rel_error": nan, "tolerance": nan, "status": "skipped", "note": "", "malloc": env["malloc"],
        "device_name": env.get("name", ""), "torch": env["torch"], "peak_rss_bytes": nan, "round_ms": "",
        "clock": env.get("clock", ""),
    }


def _mib(n: float) -> str:
    return f"{n / 2**30:,.2f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "…"


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# ---- memory for child processes ------------------------------------------------------------------


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (no limit) reads as None


def available_memory(root: Path = Path("/")) -> dict[str, int | None]:
    """What memory a new process could still get: MemAvailable and the cgroup's headroom, in bytes.

    ``available`` is the smaller of /proc/meminfo's MemAvailable and, where a cgroup limit is set
    (v2 memory.max, or v1 memory.limit_in_bytes), the limit minus the cgroup's current use: a
    container is killed at its cgroup limit however much the host has free.
    """
    info: dict[str, int | None] = {"meminfo_available": None, "cgroup_limit": None, "cgroup_current": None}
    try:
        for line in (root / "proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                info["meminfo_available"] = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    cg = root / "sys/fs/cgroup"
    limit, current = _read_int(cg / "memory.max"), _read_int(cg / "memory.current")
    if limit is None:
        limit, current = _read_int(cg / "memory/memory.limit_in_bytes"), _read_int(cg / "memory/memory.usage_in_bytes")
        if limit is not None and limit >= 2**60:  # v1 writes "no limit" as a huge number
            limit = None
    info["cgroup_limit"], info["cgroup_current"] = limit, current
    candidates = [v for v in (info["meminfo_available"],) if v is not None]
    if limit is not None:
        candidates.append(max(limit - (current or 0), 0))
    info["available"] = min(candidates) if candidates else None
    return info


def fresh_process_bytes(size: Size, dtype: str, variants: Sequence[str]) -> int:
    """What one fresh measuring process may hold at its peak: Python with torch, plus the work.

    The children run one at a time, so the largest variant counts, not their sum; inputs (z,
    W_O, the gemm's prepared copy) and the float64 reference are added on top.
    """
    es = element_size(dtype)
    work = max((estimated_bytes(v, size, es) for v in variants), default=0)
    inputs = (2 * size.bsd + size.d_model**2) * es + size.bsd * 8
    return FRESH_CHILD_BASE_BYTES + work + inputs


def fresh_process_problem(size: Size, dtype: str, variants: Sequence[str], memory: dict | None = None) -> str | None:
    """A readable reason not to start a fresh measuring process now, or None if it fits.

    It fits when the memory available (available_memory) covers the child's estimate
    (fresh_process_bytes) with FRESH_HEADROOM to spare, so a server shared by a class is never
    pushed over its container's limit by one reader's experiment.
    """
    memory = available_memory() if memory is None else memory
    need = int(fresh_process_bytes(size, dtype, variants) * FRESH_HEADROOM)
    have = memory.get("available")
    if have is None or have >= need:
        return None
    return (f"This server has {_mib(have)} of memory free for a new process right now, and a fresh Python with "
            f"torch timing this size needs about {_mib(need)} (with room to spare). Try again later, or a smaller size.")


# ---- a repeat in a fresh process ---------------------------------------------------------------

# glibc malloc (64-bit): a block above the mmap threshold gets its own mmap and goes back to the
# operating system on free, so the next call page-faults it in again, one page at a time. The
# threshold starts at 128 KiB and, unless set in the environment, rises to the size of each large
# block freed, up to 32 MiB (DEFAULT_MMAP_THRESHOLD_MIN / _MAX in glibc's malloc.c).
GLIBC_MMAP_THRESHOLD_START = 128 * 2**10
GLIBC_MMAP_THRESHOLD_MAX = 32 * 2**20

# Two ways to run it: glibc's defaults, and both thresholds raised so freed blocks stay for reuse.
MALLOC_SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "thresholds raised": {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**30)},
}


def run_in_fresh_process(
    size: Size, *, dtype: str, device: str, variants: Sequence[str], budget_s: float, max_bytes: int,
    threads: int, malloc: str = "default", seed: int = 0, timeout_s: float | None = None,
) -> pd.DataFrame:
    """The same measurement in a new Python process (the CLI), with glibc malloc set as named.

    A fresh process has no allocation history, and its malloc environment can be chosen before it
    starts: the two things that decide whether large freed blocks are handed back to the OS.
    Raises RuntimeError, with a one-line reason, if the process fails or outlives ``timeout_s``.
    """
    if malloc not in MALLOC_SETTINGS:
        raise ValueError(f"unknown malloc setting {malloc!r}; choose from {', '.join(MALLOC_SETTINGS)}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.update(MALLOC_SETTINGS[malloc])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "timing.csv"
        cmd = [
            sys.executable, "-m", "core.timing", "--device", device, "--dtype", dtype,
            "--batch", str(size.batch), "--seq", str(size.seq), "--d-model", str(size.d_model),
            "--heads", str(size.n_heads), "--variants", ",".join(variants), "--budget", str(budget_s),
            "--max-bytes", str(int(max_bytes)), "--threads", str(threads), "--seed", str(seed),
            "--csv", str(csv), "--quiet",
        ]
        limit = timeout_s if timeout_s is not None else budget_s + 60
        try:
            done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the fresh process did not finish within {limit:g} s") from None
        if done.returncode != 0 or not csv.exists():
            # The last line of its stderr says why; the traceback above it is for a terminal, not a page.
            last = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), "no message")
            raise RuntimeError(f"the fresh process failed: {_one_line(RuntimeError(last))}")
        return pd.read_csv(csv)


# ---- sharing finished results between reruns and sessions --------------------------------------


class ResultStore:
    """A small least-recently-used map from a run's parameters to its finished result.

    Why not st.cache_data: it cannot be asked "do you have this?" without computing on a miss, and
    a page must never start a benchmark because a link was opened. This store can, and it hands
    every reader a copy so one session can't alter another's table.
    """

    def __init__(self, capacity: int = 32):
        self.capacity = capacity
        self._items: OrderedDict[tuple, dict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> dict | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return _copy(item)

    def put(self, key: tuple, item: dict) -> None:
        with self._lock:
            self._items[key] = _copy(item)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def _copy(item: dict) -> dict:
    return {k: (v.copy() if isinstance(v, (pd.DataFrame, dict, list)) else v) for k, v in item.items()}


# One benchmark at a time per server: two at once would time each other (core.busy).
exclusive = OneAtATime("another benchmark is running on this server").hold


# ---- command line ------------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def _sweep_arg(text: str) -> tuple[str, list[int]]:
    try:
        return parse_sweep(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _variants_arg(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {', '.join(unknown) or text!r}; choose from {', '.join(VARIANTS)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.timing",
        description="Time concat-then-project against the additive forms of the attention output projection.",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=DTYPE_NAMES)
    parser.add_argument("--batch", type=_positive, default=8)
    parser.add_argument("--seq", type=_positive, default=128)
    parser.add_argument("--d-model", type=_positive, default=512)
    parser.add_argument("--heads", type=_positive, default=8)
    parser.add_argument("--sweep", type=_sweep_arg, help="axis=v1,v2,… with axis one of seq, heads, batch, d_model")
    parser.add_argument("--variants", type=_variants_arg, default=list(PROJECTION_VARIANTS),
                        help=f"comma-separated, from {', '.join(VARIANTS)} (default: the projection variants)")
    parser.add_argument("--forward", action="store_true", help="also time the whole attention forward (three ways)")
    parser.add_argument("--budget", type=float, default=60.0, help="total seconds for checks and timing (default 60)")
    parser.add_argument("--max-bytes", type=_positive, default=2**31, help="skip a variant needing more (default 2 GiB)")
    parser.add_argument("--threads", type=_positive, default=None, help="intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, help="write the table here")
    parser.add_argument("--quiet", action="store_true", help="print nothing (with --csv)")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU here")
    if args.dtype not in supported_dtypes(args.device):
        parser.error(f"--dtype {args.dtype} does not run on {args.device} here")
    try:
        base = Size(args.batch, args.seq, args.d_model, args.heads)
    except ValueError as exc:
        parser.error(str(exc))
    axis, values = args.sweep if args.sweep else (None, [])
    sizes = sweep_sizes(base, axis, values)
    variants = list(dict.fromkeys(args.variants + (list(FORWARD_VARIANTS) if args.forward else [])))

    def progress(fraction: float, message: str) -> None:
        print(f"\r[{fraction:4.0%}] {message:<60}", end="", file=sys.stderr, flush=True)

    table = run_benchmark(
        sizes, dtype=args.dtype, device=args.device, variants=variants, budget_s=args.budget,
        max_bytes=args.max_bytes, threads=args.threads, seed=args.seed,
        progress=None if args.quiet else progress,
    )
    table["peak_rss_bytes"] = peak_rss_bytes()  # this process's peak so far: what a fresh child costs
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
    if not args.quiet:
        print(file=sys.stderr)
        env = environment(args.device, int(table["threads"].iloc[0]) if len(table) else None)
        print("  ".join(f"{k}: {v}" for k, v in env.items()))
        shown = ["variant", "batch", "seq", "d_model", "n_heads", "median_ms", "iqr_ms", "fraction_of_gemm",
                 "fraction_lo", "fraction_hi", "verdict", "runs", "extra_bytes", "page_faults_per_call", "status", "note"]
        with pd.option_context("display.width", 200, "display.max_colwidth", 60, "display.float_format", "{:,.3f}".format):
            print(table[shown].to_string(index=False))
        if args.csv:
            print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
