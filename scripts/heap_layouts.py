"""Does the materialized sum's speed depend on where the heap puts its per-call buffers?

One process, many heap layouts. Before each layout is measured, a few blocks of random size are
allocated and kept, and others freed, as a page's other work would. Then five ways of writing
the same arithmetic are timed against the bare GEMM (the fastest of 30 calls each, in a random
order per layout):

    project_then_sum   core.attention.project_then_sum: the heads-first copy of z lives until the sum is done
    einsum_then_sum    per_head_results(z, W_O).sum(dim=2): einsum frees its copy before the sum allocates
    copy_freed_first   the same bmm as project_then_sum, with the copy deleted before the sum
    kept_view_sum      the copy kept, the sum taken through the [B, S, H, D] view, as einsum's result is
    freed_view_sum     the copy deleted first, the sum through that view

Printed per form: the ratio's min, median and max over the layouts, and in how many layouts it
fell below SLOW times the median of all forms (a layout the form handles badly rather than
timing noise, which moves them all alike). A benchmark, not a test: it says what this machine did
just now. (Counting the result's addresses needs a dispatch mode around the calls, which changes
the allocations it counts, so it is not done here; docs/timing.md has the direct measurement.)

    .venv/bin/python scripts/heap_layouts.py                 # 30 layouts at the page's default size
    .venv/bin/python scripts/heap_layouts.py --layouts 60 --seed 3 --seq 64
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core import timing  # noqa: E402
from core.attention import per_head_results, project_then_sum  # noqa: E402

CALLS = 30  # timed calls per form and layout; the fastest counts
SLOW = 0.85  # a layout is slow for a form below this fraction of the median over all forms


def forms(z: torch.Tensor, W_O: torch.Tensor) -> dict:
    B, H, S, L = z.shape

    def written_out(free_first: bool, through_view: bool) -> Callable[[], torch.Tensor]:
        """project_then_sum's bmm, with its copy freed before the sum or not, summed over [H, B·S, D]
        or through the [B, S, H, D] view that einsum returns."""
        def call() -> torch.Tensor:
            z_heads = z.transpose(0, 1).reshape(H, B * S, L)  # [H, B·S, L]
            result = torch.bmm(z_heads, W_O)  # [H, B·S, D]
            if free_first:
                del z_heads  # freed before the sum's output is allocated, as inside einsum
            if through_view:
                return result.view(H, B, S, -1).permute(1, 2, 0, 3).sum(dim=2)  # [B, S, H, D] → [B, S, D]
            return result.sum(dim=0).view(B, S, -1)  # [B, S, D]
        return call

    return {
        "project_then_sum": lambda: project_then_sum(z, W_O),
        "einsum_then_sum": lambda: per_head_results(z, W_O).sum(dim=2),
        "copy_freed_first": written_out(free_first=True, through_view=False),
        "kept_view_sum": written_out(free_first=False, through_view=True),
        "freed_view_sum": written_out(free_first=True, through_view=True),
    }


def fastest(fn, calls: int = CALLS) -> float:
    best = float("inf")
    for _ in range(calls):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=timing.DEFAULT_RUN["batch"])
    parser.add_argument("--seq", type=int, default=timing.DEFAULT_RUN["seq"])
    parser.add_argument("--d-model", type=int, default=timing.DEFAULT_RUN["d_model"])
    parser.add_argument("--heads", type=int, default=timing.DEFAULT_RUN["heads"])
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # the page's default; one thread's CPU time is the clock
    size = timing.Size(args.batch, args.seq, args.d_model, args.heads)
    z, W_O = timing.projection_inputs(size, torch.float32)
    variants = forms(z, W_O)
    gemm = timing.make_variant("gemm", z, W_O)
    others = [timing.make_variant(n, z, W_O) for n in ("concat", "head_loop")]
    rng = random.Random(args.seed)
    kept: list[torch.Tensor] = []
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    print(f"B={size.batch} S={size.seq} D={size.d_model} H={size.n_heads}, float32, 1 thread; "
          f"ratio to gemm, fastest of {CALLS} calls each")
    with torch.no_grad():
        for layout in range(args.layouts):
            for _ in range(rng.randint(1, 4)):  # 1–24 MiB blocks, not page multiples
                kept.append(torch.empty(rng.randint(1, 24) * 2**18 + rng.randint(0, 9999)))
            while len(kept) > 3:
                kept.pop(rng.randrange(len(kept)))
            for fn in others:  # the allocations of a round's other variants
                for _ in range(3):
                    fn()
            order = list(variants)
            rng.shuffle(order)
            gemm_s = fastest(gemm)
            seconds = {}
            for name in order:
                seconds[name] = fastest(variants[name])
            gemm_s = min(gemm_s, fastest(gemm))  # gemm before and after the three
            line = []
            for name in variants:
                ratios[name].append(gemm_s / seconds[name])
                line.append(f"{name} {ratios[name][-1]:.3f}")
            print(f"layout {layout:3d}: " + "   ".join(line), flush=True)

    print()
    overall = statistics.median(x for r in ratios.values() for x in r)
    print(f"{'form':18s} {'min':>6s} {'median':>7s} {'max':>6s} {'max/min':>8s}  layouts below {SLOW:g} × {overall:.3f}")
    for name, r in ratios.items():
        slow = sum(x < SLOW * overall for x in r)
        print(f"{name:18s} {min(r):6.3f} {statistics.median(r):7.3f} {max(r):6.3f} {max(r) / min(r):8.3f}  {slow} of {len(r)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
