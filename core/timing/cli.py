"""The command line: ``python -m core.timing`` (needs only torch, numpy and pandas).

    python -m core.timing --device cpu --dtype float32 --batch 8 --seq 128 --d-model 512 \\
        --heads 8 --sweep seq=64,128,256,512 --csv timing.csv

``--kv-heads N --gqa`` also times the whole forward with N shared key/value heads, two ways
(core.timing.gqa), beside the same layer without sharing (``forward_sdpa``).

``--json FILE`` writes a reference run (core.timing.reference): the table with the machine, the
command, the date and the load average, as the timing page draws it on arrival.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from core.device import DTYPE_NAMES, supported_dtypes
from core.timing.machine import environment
from core.timing.memory import peak_rss_bytes
from core.timing.reference import load_average, write_json
from core.timing.runner import run_benchmark
from core.timing.variants import FORWARD_VARIANTS, GQA_COMPARISON, PROJECTION_VARIANTS, VARIANTS, Size, parse_sweep, sweep_sizes


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
    parser.add_argument("--kv-heads", type=_positive, default=None,
                        help="key/value heads for --gqa, dividing --heads (default: as many as --heads, no sharing)")
    parser.add_argument("--sweep", type=_sweep_arg, help="axis=v1,v2,… with axis one of seq, heads, batch, d_model")
    parser.add_argument("--variants", type=_variants_arg, default=list(PROJECTION_VARIANTS),
                        help=f"comma-separated, from {', '.join(VARIANTS)} (default: the projection variants)")
    parser.add_argument("--forward", action="store_true", help="also time the whole attention forward (three ways)")
    parser.add_argument("--gqa", action="store_true",
                        help="also time the forward with --kv-heads shared key/value heads (SDPA with enable_gqa, and "
                        "repeat-then-attend) beside the same layer without sharing")
    parser.add_argument("--budget", type=float, default=60.0, help="total seconds for checks and timing (default 60)")
    parser.add_argument("--max-bytes", type=_positive, default=2**31, help="skip a variant needing more (default 2 GiB)")
    parser.add_argument("--threads", type=_positive, default=None, help="intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, help="write the table here")
    parser.add_argument("--json", type=Path, help="write a reference run here: the table, the machine, the command, "
                        "the date and the load average (core.timing.reference)")
    parser.add_argument("--quiet", action="store_true", help="print nothing (with --csv or --json)")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU here")
    if args.dtype not in supported_dtypes(args.device):
        parser.error(f"--dtype {args.dtype} does not run on {args.device} here")
    try:
        base = Size(args.batch, args.seq, args.d_model, args.heads, args.kv_heads)
    except ValueError as exc:
        parser.error(str(exc))
    if args.gqa and base.n_kv_heads == base.n_heads:
        parser.error(f"--gqa compares shared keys and values with unshared ones: give --kv-heads below --heads "
                     f"({args.heads}), a divisor of it")
    axis, values = args.sweep if args.sweep else (None, [])
    sizes = sweep_sizes(base, axis, values)
    variants = list(dict.fromkeys(args.variants + (list(FORWARD_VARIANTS) if args.forward else [])
                                  + (list(GQA_COMPARISON) if args.gqa else [])))

    def progress(fraction: float, message: str) -> None:
        print(f"\r[{fraction:4.0%}] {message:<60}", end="", file=sys.stderr, flush=True)

    load_before = load_average()
    table = run_benchmark(
        sizes, dtype=args.dtype, device=args.device, variants=variants, budget_s=args.budget,
        max_bytes=args.max_bytes, threads=args.threads, seed=args.seed,
        progress=None if args.quiet else progress,
    )
    table["peak_rss_bytes"] = peak_rss_bytes()  # this process's peak so far: what a fresh child costs
    env = environment(args.device, int(table["threads"].iloc[0]) if len(table) else None)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
    if args.json:
        write_json(args.json, table, env, list(sys.argv[1:] if argv is None else argv), load_before)
    if not args.quiet:
        print(file=sys.stderr)
        print("  ".join(f"{k}: {v}" for k, v in env.items()))
        shown = ["variant", "batch", "seq", "d_model", "n_heads", "n_kv_heads", "median_ms", "iqr_ms", "fraction_of_gemm",
                 "fraction_lo", "fraction_hi", "verdict", "runs", "extra_bytes", "page_faults_per_call", "status", "note"]
        with pd.option_context("display.width", 200, "display.max_colwidth", 60, "display.float_format", "{:,.3f}".format):
            print(table[shown].to_string(index=False))
        for written in (args.csv, args.json):
            if written:
                print(f"wrote {written}")
    return 0
