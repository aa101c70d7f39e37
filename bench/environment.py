"""What a result records about where it ran: versions, git commit, device, memory."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "peft-ir-bench",
    "torch",
    "transformers",
    "accelerate",
    "peft",
    "ranx",
    "ir_datasets",
    "bm25s",
    "safetensors",
    "numpy",
    "pyserini",
)


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def git_commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if done.returncode != 0:
        return "unknown"
    return done.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def device_name(device) -> str:
    import torch

    if str(device).startswith("cuda"):
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return cpu_device_name(torch.get_num_threads())


def cpu_device_name(threads: int) -> str:
    return f"cpu:{cpu_model()} x{threads} threads"


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo) and architecture, e.g. ``Intel(R) Xeon(R) Gold 6338
    (x86_64)``; the architecture alone where the model cannot be read."""
    arch = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({arch})"
    except OSError:
        pass
    return arch


def peak_memory_mb(device) -> float:
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak (KiB on Linux)


PRECISIONS = ("no", "bf16", "fp16", "auto")


def resolve_precision(value: str) -> str:
    """``auto`` -> bf16 where this machine computes it natively (CUDA with bf16, or a CPU with AMX or
    AVX512-BF16, where it is about twice as fast as fp32), else ``no``. Other values pass through."""
    import torch

    value = str(value)
    if value not in PRECISIONS:
        from .errors import BenchError

        raise BenchError(f"mixed precision {value!r}: choose one of {', '.join(PRECISIONS)}")
    if value != "auto":
        return value
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    try:
        native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    except AttributeError:  # private probes; absent in some torch builds
        native = False
    return "bf16" if native else "no"


SHARE_ENV = "BENCH_GPU_SHARE"


def gpu_share() -> float:
    """This worker's share of its card (1.0: the card to itself)."""
    try:
        return float(os.environ.get(SHARE_ENV, "1.0"))
    except ValueError:
        return 1.0


def claim_gpu_share() -> None:
    """Several workers on one card: each may allocate its share of the card's memory, no more."""
    import torch

    share = gpu_share()
    if share < 1.0 and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(share)


def start_gpu_meter(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def peak_gpu_memory_mb(device) -> float | None:
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


def free_gpu_caches() -> None:
    """Between cells: the memory a finished cell held goes back to the card."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()
