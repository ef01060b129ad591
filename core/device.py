"""Devices and dtypes: what is present here, and what runs where."""

from __future__ import annotations

import contextlib
import os
import platform
import threading
from collections.abc import Iterator

import torch

__all__ = [
    "DTYPES",
    "DTYPE_NAMES",
    "available_devices",
    "dtype_from_name",
    "dtype_name",
    "dtype_bytes",
    "supported_dtypes",
    "is_supported",
    "describe",
    "cpu_model",
    "torch_threads",
]

# The four floating dtypes the essay compares, from most to least precise.
DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
DTYPE_NAMES: tuple[str, ...] = tuple(DTYPES)


def available_devices() -> list[str]:
    """'cpu' always; 'cuda' when torch sees a GPU."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def dtype_from_name(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPE_NAMES)}") from None


def dtype_name(dtype: torch.dtype) -> str:
    for name, dt in DTYPES.items():
        if dt == dtype:
            return name
    raise ValueError(f"{dtype} is not one of {', '.join(DTYPE_NAMES)}")


def dtype_bytes(name: str) -> int:
    """Bytes per number of a named dtype: 8, 4, 2, 2 (torch's own ``itemsize``)."""
    return dtype_from_name(name).itemsize


def supported_dtypes(device: str) -> list[str]:
    """Dtype names whose matmul and softmax run on ``device``.

    The CPU runs all four (float16 and bfloat16 through slower kernels). On CUDA, bfloat16 needs
    compute capability 8.0 (Ampere) or newer for fast kernels; torch reports that.
    """
    if device == "cpu":
        return list(DTYPE_NAMES)
    if device == "cuda":
        if not torch.cuda.is_available():
            return []
        names = ["float64", "float32", "float16"]
        if torch.cuda.is_bf16_supported():
            names.append("bfloat16")
        return names
    raise ValueError(f"unknown device {device!r}; choose cpu or cuda")


def is_supported(dtype: str, device: str) -> bool:
    try:
        return dtype in supported_dtypes(device)
    except ValueError:
        return False


def describe(device: str) -> dict[str, str]:
    """What a timing or precision result was measured on, for tables and captions."""
    info = {
        "device": device,
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
    }
    if device == "cuda" and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        info["name"] = torch.cuda.get_device_name()
        info["capability"] = f"{major}.{minor}"
        info["cuda"] = str(torch.version.cuda)
    else:
        info["name"] = cpu_model()
        info["cores"] = str(os.cpu_count())
    return info


def cpu_model() -> str:
    """The CPU's marketing name on Linux (platform.processor() often says only "x86_64")."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---- torch's thread count ----------------------------------------------------------------------
# torch's intra-op thread count is one setting for the whole process, and a server runs many
# sessions at once: a "set, run, restore the old value" in two overlapping sessions can restore in
# the wrong order and leave the server on a count nobody asked for. Every change goes through
# `torch_threads`, which keeps the requests of the sections still running and, when one ends,
# sets the latest remaining request, or the process's own count once none is left.
_threads_lock = threading.Lock()
_thread_requests: list[int] = []
_base_threads: int | None = None


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the body with ``n`` intra-op threads; safe to nest and to overlap across sessions."""
    global _base_threads
    with _threads_lock:
        if not _thread_requests:
            _base_threads = torch.get_num_threads()
        _thread_requests.append(n)
        torch.set_num_threads(n)
    try:
        yield
    finally:
        with _threads_lock:
            _thread_requests.remove(n)
            torch.set_num_threads(_thread_requests[-1] if _thread_requests else _base_threads)
