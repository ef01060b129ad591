"""Is the timing page's default run repeatable? Five fresh processes, one summary table.

Runs the page's default measurement (``core.timing.DEFAULT_RUN``: B=8, S=128, D=512, H=8, the
``seq`` sweep, its time budget and thread count) as ``python -m core.timing`` in N fresh Python
processes, one after another, and prints, for every variant at the base size, its ratio to the
bare GEMM (``fraction_of_gemm``) in each run, the spread max/min and whether that is within the
limit (1.10 by default). A benchmark, not a test: it says what this machine did just now.

    .venv/bin/python scripts/timing_repeatability.py                 # the defaults
    .venv/bin/python scripts/timing_repeatability.py --threads 2     # the same with two threads
    .venv/bin/python scripts/timing_repeatability.py --tree /tmp/old # another checkout's core.timing

Also printed: each run's wall time (process start to exit, so it includes importing torch), its
peak resident memory (from the operating system's accounting of the child, ``wait4``), and the
load average before and after, because on a shared machine that is what the spread depends on.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The page's default run, restated only as a fallback for a --tree whose core.timing predates
# DEFAULT_RUN (the measurements "before" the interleaved method).
FALLBACK_RUN = {"batch": 8, "seq": 128, "d_model": 512, "heads": 8, "sweep": "seq=16,32,64,128,256,512",
                "budget_s": 6, "max_bytes": 256 * 2**20, "threads": 1}


def default_run(tree: Path) -> dict:
    """The run the page at ``tree`` makes by default: its core.timing.DEFAULT_RUN, or FALLBACK_RUN."""
    sys.path.insert(0, str(tree))
    try:
        from core.timing import DEFAULT_RUN
    except ImportError:
        return dict(FALLBACK_RUN)
    return dict(DEFAULT_RUN)


def command(run: dict, threads: int, csv_path: Path) -> list[str]:
    return [
        sys.executable, "-m", "core.timing", "--batch", str(run["batch"]), "--seq", str(run["seq"]),
        "--d-model", str(run["d_model"]), "--heads", str(run["heads"]), "--sweep", run["sweep"],
        "--budget", str(run["budget_s"]), "--max-bytes", str(run["max_bytes"]), "--threads", str(threads),
        "--csv", str(csv_path), "--quiet",
    ]


def one_run(cmd: list[str], tree: Path) -> tuple[float, int, int, str]:
    """(wall seconds, peak RSS bytes, exit status, last stderr line) of one fresh process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = [ln for ln in err.read().decode(errors="replace").splitlines() if ln.strip()]
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)  # Linux reports KiB
    return wall, peak, child.returncode, lines[-1] if lines else ""


def read_base(csv_path: Path) -> tuple[dict[str, dict], dict[tuple, dict[str, float]], int]:
    """Per variant at the base (first) size: its row; per size: {variant: fraction}; rows in all."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}, {}, 0
    key = lambda r: (r["batch"], r["seq"], r["d_model"], r["n_heads"])  # noqa: E731
    base = key(rows[0])
    at_base = {r["variant"]: r for r in rows if key(r) == base and r["status"] == "ok"}
    per_size: dict[tuple, dict[str, float]] = {}
    for r in rows:
        if r["status"] == "ok" and r["fraction_of_gemm"]:
            per_size.setdefault(key(r), {})[r["variant"]] = float(r["fraction_of_gemm"])
    done = sum(1 for r in rows if r["status"] == "ok")
    return at_base, per_size, done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="default: the tree's DEFAULT_RUN threads")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose core.timing runs (default: this one)")
    parser.add_argument("--limit", type=float, default=1.10, help="largest max/min counted as repeatable")
    args = parser.parse_args(argv)
    run = default_run(args.tree)  # the tree's own defaults, so --tree repeats the run that page made
    if args.threads is None:
        args.threads = int(run.get("threads", 1))

    print(f"command ({args.runs} fresh processes, one after another, from {args.tree}):")
    print("  " + " ".join(command(run, args.threads, Path("run.csv"))[1:]).replace("run.csv", "<csv>"))
    fractions: dict[str, list[float]] = {}
    faults: dict[str, list[str]] = {}
    intervals: dict[str, list[str]] = {}
    worst_by_size: dict[tuple, dict[str, list[float]]] = {}
    walls, peaks, loads = [], [], [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            path = Path(tmp) / f"run{i}.csv"
            wall, peak, code, last = one_run(command(run, args.threads, path), args.tree)
            if code != 0 or not path.exists():
                print(f"run {i + 1} failed ({code}): {last}")
                return 1
            at_base, per_size, done = read_base(path)
            walls.append(wall)
            peaks.append(peak)
            loads.append(os.getloadavg()[0])
            for name, row in at_base.items():
                fractions.setdefault(name, []).append(float(row["fraction_of_gemm"]))
                if row.get("page_faults_per_call"):
                    faults.setdefault(name, []).append(f"{float(row['page_faults_per_call']):,.0f}")
                if row.get("fraction_lo"):
                    intervals.setdefault(name, []).append(f"{float(row['fraction_lo']):.2f}–{float(row['fraction_hi']):.2f}")
            for size, values in per_size.items():
                for name, value in values.items():
                    worst_by_size.setdefault(size, {}).setdefault(name, []).append(value)
            print(f"run {i + 1}: {wall:.1f} s wall, peak RSS {peak / 2**20:.0f} MiB, {done} timings, "
                  f"load average {loads[-1]:.2f}", flush=True)

    print(f"\nfraction_of_gemm at the base size B={run['batch']} S={run['seq']} D={run['d_model']} "
          f"H={run['heads']}, {args.threads} thread{'s' if args.threads != 1 else ''}:")
    header = f"{'variant':<18}" + "".join(f"{'run ' + str(i + 1):>8}" for i in range(args.runs)) + f"{'max/min':>9}  within {args.limit:.2f}"
    print(header)
    print("-" * len(header))
    worst = 1.0
    for name, values in fractions.items():
        if name == "gemm":
            continue
        spread = max(values) / min(values) if min(values) > 0 else float("inf")
        worst = max(worst, spread)
        cells = "".join(f"{v:>8.3f}" for v in values) + " " * 8 * (args.runs - len(values))
        print(f"{name:<18}{cells}{spread:>9.3f}  {'yes' if spread <= args.limit else 'NO'}")
    if intervals:
        print("\nthe runs' own 95 % intervals for the median ratio:")
        for name, spans in intervals.items():
            if name != "gemm":
                print(f"  {name:<18}" + "  ".join(spans))
    if "per_head_sum" in faults:
        # glibc either reuses the freed per-head block or maps it afresh on every call, depending
        # on the process's allocation history: a real difference between processes, shown here.
        print("\npage faults per call of per_head_sum, run by run: " + ", ".join(faults["per_head_sum"]))
    print("\nworst max/min over all sizes of the sweep:")
    for size, per_variant in sorted(worst_by_size.items(), key=lambda kv: [int(x) for x in kv[0]]):
        spreads = {n: max(v) / min(v) for n, v in per_variant.items() if n != "gemm" and len(v) == args.runs and min(v) > 0}
        if spreads:
            name = max(spreads, key=spreads.get)
            print(f"  B={size[0]} S={size[1]} D={size[2]} H={size[3]}: {name} {spreads[name]:.3f}")
    print(f"\nsummary: worst spread at the base size {worst:.3f} (limit {args.limit:.2f}); wall per run "
          f"{min(walls):.1f}–{max(walls):.1f} s; child peak RSS {min(peaks) / 2**20:.0f}–{max(peaks) / 2**20:.0f} MiB; "
          f"load average {min(loads):.2f}–{max(loads):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
