"""``python -m bench.cellmain --out DIR --cell CELL.json``: the local launcher's worker process (under
torchrun for data parallelism inside a cell)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--cell", required=True, help="the cell's resolved config (JSON)")
    args = parser.parse_args()
    cell = json.loads(Path(args.cell).read_text())
    if os.environ.get("BENCH_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
    from .environment import claim_gpu_share

    claim_gpu_share()
    from .cells import Cell
    from .worker import execute

    status, _ = execute(Cell.from_json(cell), Path(args.out), reraise_user_errors=False)
    return 0 if status.finished else 1


if __name__ == "__main__":
    sys.exit(main())
