"""The machine's limits and meters: peak matmul FLOP/s, peak memory of one measurement, precision."""

from __future__ import annotations

import contextlib
import resource
import time
from pathlib import Path


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def precision_context(precision: str):
    import torch

    if precision == "bf16":
        return lambda: torch.autocast(device(), dtype=torch.bfloat16)
    return contextlib.nullcontext


def peak_matmul_flops(size: int = 2048, seconds: float = 2.0) -> dict:
    """Best FLOP/s of square matmuls, fp32 and bf16, on this device."""
    import torch

    where = device()
    size = 8192 if where == "cuda" else size  # a card needs big matrices to reach its peak
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(size, size, device=where, dtype=dtype)
        b = torch.randn(size, size, device=where, dtype=dtype)
        best, deadline = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            if where == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            a @ b
            if where == "cuda":
                torch.cuda.synchronize()
            best = max(best, 2 * size**3 / (time.perf_counter() - start))
        out[name] = best
    return out


_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_memory() -> None:
    """Start a new peak: CUDA's allocator statistics, or on Linux the process's resident high-water mark."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        _CLEAR_REFS.write_text("5")  # resets VmHWM (Linux >= 4.0)
    except OSError:
        pass


def peak_memory_mb() -> float:
    """The peak since ``reset_peak_memory``: allocated CUDA memory, else the resident high-water mark."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
