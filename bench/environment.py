"""What a result records about where it ran: versions, git commit, device, memory."""
from __future__ import annotations

import platform
import resource
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("peft-ir-bench", "torch", "transformers", "accelerate", "peft", "ranx", "ir_datasets", "bm25s",
            "safetensors", "numpy", "pyserini")


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
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if done.returncode != 0:
        return "unknown"
    return done.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def device_name(device) -> str:
    import torch

    if str(device).startswith("cuda"):
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def peak_memory_mb(device) -> float:
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak (KiB on Linux)
