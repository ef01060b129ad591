"""The machine the numbers come from: CPU, threads, torch, libc and malloc settings, load."""

from __future__ import annotations

import os
import platform

import torch

from core.device import cpu_model, describe
from core.timing.clock import CLOCKS, clock_for


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
