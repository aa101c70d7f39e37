"""Grid overhead: a suite's wall time against the time its cells spent training and evaluating."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def measure_grid_overhead(suite: str = "smoke") -> dict:
    from ..commands.run import run_from_cli
    from ..results import scan

    with tempfile.TemporaryDirectory() as out:
        args = argparse.Namespace(suite=suite, out=out)
        start = time.perf_counter()
        run_from_cli(args)
        wall = time.perf_counter() - start
        inside = 0.0
        for root in Path(out).iterdir():
            for cell in scan(root):
                inside += cell.result.times.get("train_s", 0.0)
                inside += sum(t.get("eval_s", 0.0) for t in cell.result.eval.values())
    return {
        "suite": suite,
        "wall_s": wall,
        "train_and_eval_s": inside,
        "overhead_s": wall - inside,
        "overhead_fraction": (wall - inside) / wall,
    }
