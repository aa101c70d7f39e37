"""Launchers: how cells reach ``worker.execute``. ``local`` runs them in this process (one worker) or
in N worker subprocesses (one GPU each when there are GPUs, else a share of the CPU cores); ``ray``
sends them as tasks to a Ray cluster; ``slurm`` submits a job array through submitit. Every launcher
runs the same ``execute`` and the run store is the only channel back."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .errors import BenchError

LAUNCHERS = ("local", "ray", "slurm")
FORWARDED_ENV = (
    "BENCH_DATA_PATH",
    "BENCH_MPNET_PATH",
    "BENCH_FAULTS",
    "BENCH_PLUGINS",
    "BENCH_COMMAND",
    "BENCH_MODEL_CACHE",
    "IR_DATASETS_HOME",
    "HF_HOME",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
    "PYTHONPATH",
)


def launch(
    cells: list,
    out: Path,
    launcher: str = "local",
    workers: int = 1,
    on_done=None,
    processes_per_cell: int = 1,
    **options,
):
    """Run ``cells``; ``on_done(cell)`` after each one finishes (whatever its status).
    ``processes_per_cell`` > 1: data parallel inside each cell (torchrun + accelerate DDP)."""
    on_done = on_done or (lambda cell: None)
    if launcher == "local":
        return run_local(cells, out, workers, on_done, processes_per_cell)
    if launcher == "ray":
        return run_ray(cells, out, on_done, **options)
    if launcher == "slurm":
        return run_slurm(cells, out, on_done, **options)
    raise BenchError(f"unknown launcher {launcher!r}: choose one of {', '.join(LAUNCHERS)}")


def run_local(cells: list, out: Path, workers: int, on_done, processes_per_cell: int = 1) -> None:
    if workers <= 1 and processes_per_cell <= 1:
        from .worker import execute

        for cell in cells:
            execute(cell, out)
            on_done(cell)
        return
    _run_subprocesses(cells, out, max(1, workers), on_done, processes_per_cell)


SHARE_ENV = "BENCH_GPU_SHARE"  # the share of its card a worker may allocate (torch's memory fraction)


def _worker_env(slot: int, workers: int, processes: int, alone: bool = False) -> dict:
    """A worker's environment: its card(s) and, when several workers share a card, its share of the card's
    memory (``alone``: the card to itself); without GPUs, its share of the CPU cores."""
    env = dict(os.environ)
    gpus = _gpu_count()
    if gpus:
        first = slot * processes
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str((first + i) % gpus) for i in range(processes))
        per_card = math.ceil(workers * processes / gpus)
        env[SHARE_ENV] = "1.0" if alone or per_card <= 1 else f"{1.0 / per_card:.6f}"
    else:
        env["BENCH_THREADS"] = str(cpu_threads(workers, processes))
    return env


def cpu_threads(workers: int = 1, processes: int = 1) -> int:
    """Each process's share of the CPU cores when ``workers`` x ``processes`` run at once."""
    return max(1, (os.cpu_count() or 1) // (workers * processes))


def _worker_command(cell_file: Path, out: Path, processes: int) -> list[str]:
    entry = ["-m", "bench.cellmain", "--out", str(out), "--cell", str(cell_file)]
    if processes <= 1:
        return [sys.executable, *entry]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *entry]


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def _die_with_parent() -> None:  # a killed launcher takes its workers with it (Linux)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_subprocesses(cells: list, out: Path, workers: int, on_done, processes: int) -> None:
    """Worker processes, ``workers`` at a time. A cell that ran out of memory on a shared card runs again
    afterwards with the card to itself (one cell at a time) before it counts as failed."""
    retry = _pool(cells, out, workers, processes, on_done=None, alone=False)
    for cell in cells:
        if cell not in retry:
            on_done(cell)
    if retry:
        _pool(retry, out, 1, processes, on_done=on_done, alone=True)


def _out_of_memory_on_a_share(cell, out: Path) -> bool:
    from .results import load
    from .store import RunStore

    result = load(RunStore(out, cell.suite).dir_for(cell), quiet=True)
    return result is not None and result.extra.get("out_of_memory_share") is not None


def _pool(cells: list, out: Path, workers: int, processes: int, on_done, alone: bool) -> list:
    from .files import write_json

    pending, running, retry = list(cells), {}, []
    try:
        while pending or running:
            while pending and len(running) < workers:
                slot = next(i for i in range(workers) if i not in {s for s, _, _ in running.values()})
                cell = pending.pop(0)
                cell_file = Path(out) / "_queue" / f"{cell.id}.json"
                write_json(cell_file, cell.to_json())
                proc = subprocess.Popen(
                    _worker_command(cell_file, out, processes),
                    env=_worker_env(slot, workers, processes, alone),
                    preexec_fn=_die_with_parent,
                )
                running[proc] = (slot, cell, cell_file)
            time.sleep(0.2)
            for proc in [p for p in running if p.poll() is not None]:
                _, cell, cell_file = running.pop(proc)
                cell_file.unlink(missing_ok=True)
                if proc.returncode == 3:  # the worker's disk refused a write (its line is above): stop the grid
                    from .worker import DiskError

                    raise DiskError(
                        f"cell {cell.label}: stopped on a disk error; free space and run the same command again"
                    )
                if not alone and _out_of_memory_on_a_share(cell, out):
                    retry.append(cell)
                elif on_done is not None:
                    on_done(cell)
    finally:
        for proc in running:  # interrupted: each worker stops its cell and releases its claim, then exits
            proc.terminate()
        deadline = time.time() + 30
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
        try:
            (Path(out) / "_queue").rmdir()  # gone once empty: nothing left behind after a run
        except OSError:
            pass
    return retry


def _execute_remote(cell: dict, out: str) -> str:
    from .cells import Cell
    from .worker import execute

    return execute(Cell.from_json(cell), Path(out), reraise_user_errors=False)[0].value


def run_ray(cells, out: Path, on_done, ray_address=None, gpus_per_cell=0.0, cpus_per_cell=1.0, **_unused) -> None:
    try:
        import ray
    except ImportError:
        raise BenchError("launcher ray: ray is not installed; pip install 'peft-ir-bench[ray]'") from None
    env_vars = {k: v for k, v in os.environ.items() if k in FORWARDED_ENV}  # workers started elsewhere lack them
    ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False, runtime_env={"env_vars": env_vars})
    task = ray.remote(num_gpus=gpus_per_cell, num_cpus=cpus_per_cell, max_retries=0)(_execute_remote)
    refs = {task.remote(cell.to_json(), str(Path(out).resolve())): cell for cell in cells}
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        for ref in ready:
            cell = refs.pop(ref)
            try:
                ray.get(ref)
            except Exception:  # noqa: BLE001  (a task lost with its node: no result, the cell stays pending)
                pass
            on_done(cell)


def run_slurm(
    cells,
    out: Path,
    on_done,
    slurm_cluster=None,
    slurm_partition=None,
    slurm_time_min=240,
    gpus_per_cell=0.0,
    cpus_per_cell=1.0,
    **_unused,
) -> None:
    try:
        import submitit
    except ImportError:
        raise BenchError("launcher slurm: submitit is not installed; pip install submitit") from None
    folder = Path(out) / "_slurm" / "%j"
    executor = submitit.AutoExecutor(folder=str(folder), cluster=slurm_cluster)
    parameters = {"timeout_min": slurm_time_min, "cpus_per_task": int(cpus_per_cell)}
    if executor.cluster == "slurm":
        parameters.update(slurm_partition=slurm_partition, gpus_per_node=int(gpus_per_cell) or None)
        parameters = {k: v for k, v in parameters.items() if v is not None}
    executor.update_parameters(**parameters)
    jobs = executor.map_array(_execute_remote, [c.to_json() for c in cells], [str(Path(out).resolve())] * len(cells))
    for job, cell in zip(jobs, cells):
        try:
            job.result()
        except Exception:  # noqa: BLE001  (a job killed by the scheduler: no result in the store, the cell stays pending)
            pass
        on_done(cell)
