"""One grid cell brought to a final state in the run store, whatever happens inside: the same code path
for every launcher (in process, worker subprocess, torchrun ranks, Ray task, SLURM job)."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

from methods import BudgetUnreachable

from . import results
from .cells import Cell
from .errors import BenchError
from .files import write_json
from .results import Status
from .stages import get_stage, run_cell
from .stages.base import FAULTS_ENV, _forced_fault
from .store import CONFIG, Heartbeat, RunStore, reset
from .train import Diverged

__all__ = ["FAULTS_ENV", "execute", "is_main_rank"]


def is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def execute(cell: Cell, out: Path, reraise_user_errors: bool = True) -> tuple[Status, str]:
    """(status, one-line error) of ``cell`` after running it; its result is in the store either way."""
    if isinstance(cell, dict):
        cell = Cell.from_json(cell)
    stage = get_stage(cell.stage)
    directory = RunStore(out, cell.suite).dir_for(cell)
    cache = Path(out) / "_cache"
    if not is_main_rank():  # data parallel: the other ranks only train; rank 0 owns the store
        run_cell(stage, cell, directory, cache)
        return Status.DONE, ""
    reset(directory)  # an interrupted or failed attempt left partial files: start clean
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / CONFIG, cell.to_json())
    status, error, trace = Status.DONE, "", None
    with Heartbeat(directory):
        try:
            if _forced_fault(cell) == "raise":
                raise RuntimeError(f"fault forced by {FAULTS_ENV}")
            run_cell(stage, cell, directory, cache)
        except BenchError as exc:
            if reraise_user_errors:
                raise
            status, error = Status.FAILED, str(exc)
        except BudgetUnreachable as exc:  # recorded, never silently run at another budget
            status, error = Status.NOT_APPLICABLE, str(exc)
        except Diverged as exc:
            status, error, trace = Status.DIVERGED, str(exc), traceback.format_exc()
        except Exception as exc:  # noqa: BLE001  (out of memory included: one broken cell must not stop the grid)
            status, error, trace = (
                Status.FAILED,
                f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                traceback.format_exc(),
            )
        if status is not Status.DONE:
            results.write(directory, results.failure(cell, status, error, trace))
    return status, error
