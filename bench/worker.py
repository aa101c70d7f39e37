"""One grid cell brought to a final state in the run store, whatever happens inside: the same code path
for every launcher (in process, worker subprocess, torchrun ranks, Ray task, SLURM job)."""

from __future__ import annotations

import errno
import os
import traceback
from dataclasses import replace
from pathlib import Path

from methods import BudgetUnreachable

from . import environment, results, store
from .cells import Cell
from .errors import BenchError
from .files import write_json
from .results import Status
from .stages import get_stage, run_cell, score_test_from_tensors
from .stages.base import FAULTS_ENV, raise_forced_fault
from .store import CONFIG, Heartbeat, RunStore, reset
from .train import Diverged

__all__ = ["FAULTS_ENV", "DiskError", "execute", "is_main_rank"]


def is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


RETRY_ENV = "BENCH_RETRY_FAILED"  # set by bench run --retry-failed: a failed cell claimed here runs again
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG}


class DiskError(BenchError):
    """A write the disk refused (full, quota, read-only, I/O error): the grid stops, nothing half-written."""


def _disk_error(exc: OSError, cell: Cell) -> DiskError:
    where = exc.filename or "the run store"
    return DiskError(
        f"cell {cell.label}: cannot write {where} ([Errno {exc.errno}] {os.strerror(exc.errno)}): free space "
        "(or fix the disk) and run the same command again; finished cells are kept and this one resumes"
    )


def execute(cell: Cell, out: Path, reraise_user_errors: bool = True) -> tuple[Status, str]:
    """(status, one-line error) of ``cell`` after running it. The cell is claimed first (``store.claim``), and
    its state checked again once claimed: a cell another process holds, or finished meanwhile, is left
    alone. A write the disk refuses raises ``DiskError``; an interrupt releases the claim and propagates."""
    if isinstance(cell, dict):
        cell = Cell.from_json(cell)
    stage = get_stage(cell.stage)
    directory = RunStore(out, cell.suite).dir_for(cell)
    cache = Path(out) / "_cache"
    if not is_main_rank():  # data parallel: the other ranks only train; rank 0 owns the store
        run_cell(stage, cell, directory, cache)
        return Status.DONE, ""
    held = store.claim(directory)
    if held is None:
        return Status.RUNNING, "claimed by another process"
    event = "release"
    try:
        status, error, event = _run_claimed(stage, cell, directory, cache, held, reraise_user_errors)
        return status, error
    except OSError as exc:
        if exc.errno in DISK_ERRORS:
            event = "disk-error"
            raise _disk_error(exc, cell) from None
        raise
    except KeyboardInterrupt:
        event = "interrupted"
        raise
    finally:
        held.release(event)
        environment.free_gpu_caches()


def _run_claimed(stage, cell: Cell, directory: Path, cache: Path, held, reraise_user_errors: bool):
    found = results.inspect(directory)  # again, now that the cell is ours: the grid was listed earlier
    if isinstance(found, results.Unreadable):
        return Status.UNREADABLE, f"{found.path} is {found.reason}: left as it is; {found.fix}", "skip"
    if found is not None:
        if cell.scoring == "all" and found.scored and found.phase == "search":
            if (directory / "trainable").is_dir():
                status, error = _score_selected(cell, directory, cache, found, held, reraise_user_errors)
                return status, error, f"scored:{status.value}"
            store.set_aside(directory / results.RESULT)  # imported from records (no tensors): trained again
            found = None
    if found is not None:
        retry = os.environ.get(RETRY_ENV) or found.extra.get("out_of_memory_share") is not None
        if found.status.finished or (found.status.retryable and not retry):
            return found.status, found.error, "skip"  # finished by another process meanwhile
    attempts = _earlier_attempts(directory)
    reset(directory, held)  # an interrupted or failed attempt left partial files: start clean
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / CONFIG, cell.to_json())
    status, error, trace, extra = Status.DONE, "", None, {}
    with Heartbeat(held):
        try:
            raise_forced_fault(cell)
            run_cell(stage, cell, directory, cache)
        except BenchError as exc:
            if reraise_user_errors:
                raise
            status, error = Status.FAILED, str(exc)
        except BudgetUnreachable as exc:  # recorded, never silently run at another budget
            status, error = Status.NOT_APPLICABLE, str(exc)
        except Diverged as exc:
            status, error, trace = Status.DIVERGED, str(exc), traceback.format_exc()
        except OSError as exc:
            if exc.errno in DISK_ERRORS:
                raise
            status, error, trace = _failure(exc)
        except Exception as exc:  # noqa: BLE001  (out of memory included: one broken cell must not stop the grid)
            status, error, trace = _failure(exc)
            if environment.is_out_of_memory(exc):
                share = environment.gpu_share()
                if share < 1.0:  # the launcher runs it again with the card to itself
                    extra["out_of_memory_share"] = share
                    error = f"out of memory on a shared card (share {share:g}): {error}"
                else:
                    error = f"out of memory with the card to itself: {error}"
        if status is not Status.DONE:
            results.write(directory, results.failure(cell, status, error, trace, extra))
        if attempts:
            _record_attempts(directory, attempts)
    return status, error, f"end:{status.value}"


def _failure(exc: Exception) -> tuple[Status, str, str]:
    return Status.FAILED, f"{type(exc).__name__}: {exc}".splitlines()[0][:300], traceback.format_exc()


def _score_selected(cell: Cell, directory: Path, cache: Path, earlier, held, reraise_user_errors: bool):
    """The selected configuration's search cell: scored on the test data from its saved tensors. Its
    training and validation result stay as they are whatever happens here (nothing is reset; the next run
    tries again)."""
    with Heartbeat(held):
        try:
            score_test_from_tensors(cell, directory, cache, earlier)
        except BenchError as exc:
            if reraise_user_errors:
                raise
            return Status.FAILED, f"scoring on the test data: {exc}"
        except Exception as exc:  # noqa: BLE001  (one broken cell must not stop the grid; a full disk does)
            if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
                raise
            return Status.FAILED, "scoring on the test data: " + _failure(exc)[1]
    return Status.DONE, ""


def _earlier_attempts(directory: Path) -> list[dict]:
    """The attempts a retry follows (an out-of-memory failure on a shared card), kept in its result."""
    earlier = results.load(directory, quiet=True)
    if earlier is None or earlier.extra.get("out_of_memory_share") is None:
        return []
    return earlier.extra.get("attempts", []) + [
        {"status": earlier.status.value, "error": earlier.error, "gpu_share": earlier.extra["out_of_memory_share"]}
    ]


def _record_attempts(directory: Path, attempts: list[dict]) -> None:
    result = results.load(directory, quiet=True)
    if result is not None:
        extra = {k: v for k, v in result.extra.items() if k != "out_of_memory_share"}
        results.write(directory, replace(result, extra={**extra, "attempts": attempts}))
