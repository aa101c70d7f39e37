"""Which cells a grid has and which are still to run: the grid resolver behind every command, the run
store's per-cell state, its one-line summaries. The commands themselves live in ``bench/commands/``."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from . import config, results
from .cells import Cell, expand
from .results import Status
from .store import RunStore, tidy_finished


def resolve_grid(args, runs: Path | None = None) -> tuple[config.Suite, list[Cell], RunStore]:
    """The one resolver behind run, status and report: suite + grid flags -> cells and their store
    (``runs``, default ``args.out``)."""
    suite, over = config.resolve(args)
    cells = expand(suite, over)
    return suite, cells, RunStore(Path(runs if runs is not None else args.out), suite.name)


def resolve_plan(args, runs: Path | None = None):
    """(suite, search plan, store) of the grid the flags give: run and status share it."""
    from .search import plan

    suite, over = config.resolve(args)
    return suite, plan(suite, over), RunStore(Path(runs if runs is not None else args.out), suite.name)


def writable_folder(path: Path, flag: str) -> Path:
    """``path`` as an output folder, created if needed; one clear error before any work when it cannot be."""
    from .errors import BenchError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BenchError(f"{flag} {path}: is a file, not a folder; give a folder for the output")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"{flag} {path}: cannot create it ({exc.strerror}); give a folder you can write to") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise BenchError(f"{flag} {path}: not writable; give a folder you can write to")
    return path


def check_inputs(cells: list[Cell]) -> None:
    """Load every dataset and model config once before any cell starts: bad input stops the run before
    anything is written."""
    from .data import cached_collection
    from .models import load_config

    for model in sorted({c.model for c in cells if c.model}):
        load_config(model)
    refs = {c.datasets["train"] for c in cells if c.train is not None and c.datasets["train"]}
    for ref in sorted(refs | {r for c in cells for r in c.datasets["eval"]}):
        cached_collection(ref)


def cells_to_run(cells: list[Cell], store: RunStore, retry_failed: bool = False) -> list[Cell]:
    """Pending cells (never started, or interrupted: no result and no live heartbeat), plus failed
    and diverged ones with ``retry_failed``. Finished and running cells are left alone."""
    todo = []
    for cell in cells:
        directory = store.dir_for(cell)
        state = store.state(cell)
        if state.finished or state.retryable:
            tidy_finished(directory)
        if state is Status.PENDING or (retry_failed and state.retryable) or needs_test_scoring(cell, store):
            todo.append(cell)
        elif state is Status.UNREADABLE:
            found = results.inspect(directory)
            tqdm.write(f"skip {cell.label}: {found.path} is {found.reason}; left as it is: {found.fix}")
        elif state is Status.RUNNING:
            tqdm.write(f"skip {cell.label} (running: {owner_text(store.owner(cell))}: {directory})")
        else:
            tqdm.write(f"skip {cell.label} ({state.value}: {directory})")
    return todo


def needs_test_scoring(cell: Cell, store: RunStore) -> bool:
    """A selected configuration's search cell: scored on validation (collapsed ones too), its test scoring
    still to come."""
    if cell.scoring != "all":
        return False
    result = store.result(cell)
    return result is not None and result.scored and result.phase == "search"


def reported_cells(grid, store: RunStore) -> list[Cell]:
    """The cells a searched grid reports: its fixed cells and the selected configurations' cells (the
    search cells of the other configurations are read by the selection, never by a leaderboard)."""
    return grid.fixed + grid.final_phase(store)


def grid_records(grid, store: RunStore) -> list[results.LoadedCell]:
    """Every finished cell of a searched grid (fixed, search, selected), each labelled with the role this
    grid gives it: a selected configuration's cell is "final" with this grid's selection, any other search
    cell is "search" with none. The stored result may say otherwise when it was made under another protocol
    (a cell of an earlier one-seed search, selected there, is a plain search cell of an every-seed search), and
    the tables read the label: an earlier protocol's choice never reaches this grid's leaderboard."""
    from dataclasses import replace

    fixed = {c.id for c in grid.fixed}
    finals = {c.id: c for c in grid.final_phase(store)}
    out, seen = [], set()
    for cell in [*grid.first_phase(store), *finals.values()]:
        loaded = None if cell.id in seen else store.loaded(cell)
        seen.add(cell.id)
        if loaded is None:
            continue
        if cell.id in finals:
            loaded = replace(loaded, result=replace(loaded.result, phase="final", selection=finals[cell.id].selection))
        elif cell.id not in fixed:
            loaded = replace(loaded, result=replace(loaded.result, phase="search", selection={}))
        out.append(loaded)
    return out


def expected_seeds(cells: list[Cell]) -> dict[tuple, int]:
    """(stage, dataset, method, budget) -> the seeds the grid asks for (k/n finished in the leaderboards)."""
    expected: dict[tuple, int] = {}
    for cell in cells:
        for ref in cell.datasets["eval"]:
            key = (cell.stage, ref, cell.method, cell.budget)
            expected[key] = expected.get(key, 0) + 1
    return expected


def summarise(cells: list[Cell], store: RunStore):
    counts, problems = Counter(), []
    for cell in cells:
        result = store.result(cell)
        state = result.status if result is not None else store.state(cell)
        counts[state] += 1
        if state.retryable:
            problems.append((cell, state.value, result.error if result else ""))
    return counts, problems


def cell_line(cell: Cell, store: RunStore) -> str:
    result = store.result(cell)
    state = result.status if result is not None else store.state(cell)
    error = result.error if result is not None else ""
    return f"{state.value:<14} {cell.label}" + (f": {error}" if error and state is not Status.DONE else "")


def counts_line(counts: Counter) -> str:
    return "cells: " + ", ".join(f"{counts.get(s, 0)} {s.value}" for s in Status)


def owner_text(owner: dict | None) -> str:
    if not owner:
        return "owner unknown"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(owner.get("started", 0))))
    return f"pid {owner.get('pid')} on {owner.get('host')} since {started}"


def search_line(grid, store: RunStore) -> str:
    search = grid.first_phase(store)[len(grid.fixed) :]
    finished = sum(1 for c in search if store.state(c).finished)
    decided = sum(1 for g in grid.groups if g.final_cells(store))
    capped = next((g.capped for g in grid.groups if g.capped), None)
    cost = f"; search cells on {capped}" if capped else ""
    waiting = sum(1 for g in grid.groups if g.waiting(store))
    cost += f"; {waiting} searches wait for the winner at their neighbouring budget (search_centre)" if waiting else ""
    return (
        f"search: {finished}/{len(search)} search cells done; a configuration selected on validation for "
        f"{decided}/{len(grid.groups)} (stage, dataset, method, budget); the search adds {grid.added_cells()} "
        f"cells to the grid{cost}"
    )
