"""The same measurement in a fresh Python process (the command line, in a subprocess).

A fresh process has no allocation history, and its glibc malloc settings can be chosen before it
starts: the two things that decide whether large freed blocks go back to the operating system
(docs/timing.md, "The allocator"). It is started only when the memory for one more Python with
torch is free (``fresh_process_problem``), so one reader's experiment never pushes a shared
server over its container's limit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from core.timing.memory import element_size, estimated_bytes, mib
from core.timing.runner import one_line
from core.timing.variants import Size

ROOT = Path(__file__).resolve().parents[2]

# A fresh measuring process (run_in_fresh_process) is Python with torch imported plus its work.
FRESH_CHILD_BASE_BYTES = 400 * 2**20
FRESH_HEADROOM = 1.25


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
    return (f"This server has {mib(have)} of memory free for a new process right now, and a fresh Python with "
            f"torch timing this size needs about {mib(need)} (with room to spare). Try again later, or a smaller size.")


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
            raise RuntimeError(f"the fresh process failed: {one_line(RuntimeError(last))}")
        return pd.read_csv(csv)
