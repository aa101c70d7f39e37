"""``bench run`` and ``bench status``: expand the suite into cells, run those not finished through a
launcher, summarise, print the leaderboard. The run store decides what is left to do."""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from . import store
from .launchers import launch
from .leaderboard import leaderboard
from .suites import FIRST_STAGE, apply_overrides, expand, load_suite


def _suite_from_args(args) -> dict:
    stage = getattr(args, "stage", None)
    name = args.suite or {"dense": "smoke-dense", "qlm": "smoke-qlm"}.get(stage, "smoke")
    return apply_overrides(load_suite(name), args)


def run_from_cli(args) -> int:
    suite = _suite_from_args(args)
    cells = expand(suite)
    out = Path(args.out)
    _check_inputs(cells)
    todo = cells_to_run(cells, out, retry_failed=getattr(args, "retry_failed", False))
    bar = tqdm(total=len(todo), desc="cells", unit="cell")
    try:
        launch(todo, out, getattr(args, "launcher", "local") or "local", getattr(args, "workers", 1) or 1,
               on_done=lambda cell: (bar.update(1), bar.write(_line(cell, out))), **_launcher_options(args))
    except KeyboardInterrupt:
        bar.close()
        print("bench: interrupted; run the same command again to resume (finished cells are kept)", file=sys.stderr)
        return 130
    bar.close()
    results = [r for r in (store.read_json(store.cell_dir(out, c["suite"], c["cell_id"]) / store.RESULT)
                           for c in cells) if r]
    print(f"\nsuite {suite['name']}: {len(cells)} cells, run store {out / suite['name']}")
    print(leaderboard(results))
    counts, problems = summarise(cells, out)
    print(_counts_line(counts))
    for cell, status, error in problems:
        print(f"{status}: {_label(cell)} ({cell['cell_id']}): {error}", file=sys.stderr)
    return 1 if problems or counts.get("pending") or counts.get("running") else 0


def _launcher_options(args) -> dict:
    keys = ("processes_per_cell", "ray_address", "gpus_per_cell", "cpus_per_cell", "slurm_cluster", "slurm_partition", "slurm_time_min")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def cells_to_run(cells: list[dict], out: Path, retry_failed: bool = False) -> list[dict]:
    """Pending cells (never started, or interrupted: no result and no live heartbeat), plus failed
    and diverged ones with ``retry_failed``. Finished and running cells are left alone."""
    todo = []
    for cell in cells:
        state = store.state(store.cell_dir(out, cell["suite"], cell["cell_id"]))
        if state in store.FINISHED + store.FAILED:
            store.tidy_finished(store.cell_dir(out, cell["suite"], cell["cell_id"]))
        if state == "pending" or (retry_failed and state in store.FAILED):
            todo.append(cell)
        else:
            tqdm.write(f"skip {_label(cell)} ({state}: {store.cell_dir(out, cell['suite'], cell['cell_id'])})")
    return todo


def summarise(cells: list[dict], out: Path):
    counts, problems = Counter(), []
    for cell in cells:
        directory = store.cell_dir(out, cell["suite"], cell["cell_id"])
        state = store.state(directory)
        counts[state] += 1
        if state in store.FAILED:
            problems.append((cell, state, store.error_of(directory)))
    return counts, problems


def _label(cell: dict) -> str:
    return f"{cell['stage']} {cell['method']} {cell['budget']} s{cell['seed']}"


def _line(cell: dict, out: Path) -> str:
    directory = store.cell_dir(out, cell["suite"], cell["cell_id"])
    state = store.state(directory)
    error = store.error_of(directory)
    return f"{state:<14} {_label(cell)}" + (f": {error}" if error and state != "done" else "")


def _counts_line(counts: Counter) -> str:
    return "cells: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in store.STATES)


def status_from_cli(args) -> int:
    """``bench status``: per state counts of the suite's grid (as ``bench run`` with the same flags would
    expand it), the running cells and the failed cells' errors."""
    suite = _suite_from_args(args)
    cells = expand(suite)
    out = Path(args.out)
    counts, problems = summarise(cells, out)
    print(f"suite {suite['name']}: {len(cells)} cells in {out / suite['name']}")
    print(_counts_line(counts))
    for cell in cells:
        if store.state(store.cell_dir(out, cell["suite"], cell["cell_id"])) == "running":
            print(f"running: {_label(cell)} ({cell['cell_id']})")
    for cell, status, error in problems:
        print(f"{status}: {_label(cell)} ({cell['cell_id']}): {error}")
    return 0


def _check_inputs(cells: list[dict]) -> None:
    """Load every dataset and model config once before any cell starts: bad input stops the run
    before anything is written."""
    from .models import load_config
    from .worker import collection

    for model in sorted({c["model"] for c in cells if "model" in c}):
        load_config(model)
    refs = {c["datasets"]["train"] for c in cells if c["method"] != FIRST_STAGE and c["datasets"]["train"]}
    for ref in sorted(refs | {r for c in cells for r in c["datasets"]["eval"]}):
        collection(ref)


