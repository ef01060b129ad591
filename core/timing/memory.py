"""Memory: what each variant needs beyond its inputs and result (from shapes), and what a call allocates.

``extra_bytes`` predicts from the shapes alone, so the page can show it before anything runs;
``count_allocations`` and ``first_call`` measure it by watching every aten op, so the tests can
hold the prediction to the measurement. Page faults and the process's peak memory are read here
too: they are where a fresh allocation's cost shows up.
"""

from __future__ import annotations

import math
import os
import sys
import time
import weakref
from collections.abc import Callable

import pandas as pd
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from core.device import dtype_from_name
from core.timing.variants import PROJECTION_VARIANTS, VARIANTS, Size

try:  # Unix only; page faults are reported as missing elsewhere
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None


def extra_bytes(variant: str, size: Size, element_size: int) -> int | None:
    """Memory a projection variant needs beyond its inputs and its [B, S, D] result, from shapes.

    Defined as peak footprint during a call (buffers allocated once included) minus the result,
    which any method must hold. None for the forward variants, whose intermediates are measured.
    """
    if VARIANTS[variant].kind in ("forward", "gqa"):
        return None
    bsd, H, D = size.bsd, size.n_heads, size.d_model
    views = copy_is_view(size)
    side_by_side = 0 if views["side_by_side"] else bsd
    heads_first = 0 if views["heads_first"] else bsd
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


def copy_is_view(size: Size) -> dict[str, str | None]:
    """Which of z's two rearranged copies are views at this size, and why (None: a real copy).

    z [B, H, S, L] read side by side as [B·S, H·L] (concat, einsum) is a view when H = 1 or S = 1
    (or, with B = L = 1, a transposed matrix that the GEMM reads in place); read heads first as
    [H, B·S, L] (project_then_sum) it is a view when B, H or S is 1. A view costs no memory, so
    what a variant holds, and every sentence about it, depends on the size.
    """
    def first(conditions: list[tuple[bool, str]]) -> str | None:
        return next((why for holds, why in conditions if holds), None)

    B, H, S, L = size.batch, size.n_heads, size.seq, size.d_head
    return {
        "side_by_side": first([(H == 1, "H = 1"), (S == 1, "S = 1"), (B == 1 and L == 1, "B = 1 and L = 1")]),
        "heads_first": first([(B == 1, "B = 1"), (H == 1, "H = 1"), (S == 1, "S = 1")]),
    }


# What each projection variant holds besides its inputs and its [B, S, D] result, in general
# (holds() says it for one size, where size-1 axes turn copies into views).
HOLDS = {
    "gemm": "nothing: a bare matrix product on inputs concatenated before the clock started (the reference)",
    "concat": "z copied with the heads side by side, [B·S, H·L]",
    "einsum": "the same side-by-side copy, made inside einsum",
    "per_head_sum": "a heads-first copy of z and every head's result, [H, B·S, D], until the sum is done",
    "per_head_sum_out": "a heads-first copy of z and every head's result, allocated once",
    "head_loop": "one head's [B, S, D] product next to the running sum",
    "broadcast": "every single product z·W_O, [B, S, H, L, D], then [B, S, H, D]",
}


def holds(variant: str, size: Size | None = None) -> str:
    """HOLDS[variant], said for ``size``: a copy that is a view there is named as one (extra_bytes agrees)."""
    if size is None:
        return HOLDS[variant]
    views = copy_is_view(size)
    side, heads = views["side_by_side"], views["heads_first"]
    if variant in ("concat", "einsum") and side:
        return f"nothing: with {side}, z read as [B·S, H·L] is a view, not a copy"
    if variant == "per_head_sum" and heads:
        return f"every head's result, [H, B·S, D], until the sum is done (with {heads}, z read heads first is a view)"
    if variant == "head_loop" and size.n_heads == 1:
        return "nothing: with H = 1, the one head's product is the result"
    return HOLDS[variant]


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
            "variant": name, "holds": holds(name, size), "extra_bytes": extra, "extra_mib": extra / 2**20,
            "times_output": extra / out_bytes, "output_bytes": out_bytes, "pages": math.ceil(extra / PAGE_BYTES),
            "needs_bytes": estimated_bytes(name, size, element_size_),
        })
    return pd.DataFrame(rows)


def estimated_bytes(variant: str, size: Size, element_size: int) -> int:
    """An upper estimate of the memory one call needs (inputs excluded): what the caps check."""
    extra = extra_bytes(variant, size, element_size)
    if extra is not None:
        return extra + size.bsd * element_size
    if VARIANTS[variant].kind == "gqa":
        from core.timing.gqa import gqa_estimated_bytes  # gqa builds on this module's neighbours

        return gqa_estimated_bytes(size, element_size)
    B, S, H = size.batch, size.seq, size.n_heads
    scores = B * H * S * S  # [B, H, S, S]
    if variant == "forward_trace":  # q, k, v, z, two outputs, per_head, einsum copies; scores and pattern
        return ((6 + H + 2) * size.bsd + 2 * scores) * element_size
    return (6 * size.bsd + 2 * scores) * element_size  # packed qkv, z, output; weights if a path materializes them


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


def mib(n: float) -> str:
    return f"{n / 2**30:,.2f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
