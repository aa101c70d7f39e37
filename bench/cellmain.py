"""``python -m bench.cellmain --out DIR --cell CELL.json``: the local launcher's worker process (under
torchrun for data parallelism inside a cell)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import BenchError


def main() -> int:
    import signal

    from .interrupts import on_sigterm

    signal.signal(signal.SIGTERM, on_sigterm)  # the launcher's terminate: the claim is released on the way out
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

    try:
        status, _ = execute(Cell.from_json(cell), Path(args.out), reraise_user_errors=False)
    except KeyboardInterrupt:
        return 143
    except BenchError as exc:  # a full disk: one line, the launcher stops the grid
        print(f"bench: error: {exc}", file=sys.stderr)
        return 3
    return 0 if status.finished else 1


if __name__ == "__main__":
    sys.exit(main())
