"""``bench run``: resolve the grid, run the cells not finished through a launcher phase by phase (search,
then the selected configurations), summarise, print the leaderboard. The run store decides what is left."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ..cells import Cell
from ..launchers import launch
from ..results import Status
from ..runner import (
    cell_line,
    cells_to_run,
    check_inputs,
    counts_line,
    expected_seeds,
    reported_cells,
    resolve_plan,
    search_line,
    summarise,
    writable_folder,
)
from ..store import RunStore
from ..worker import RETRY_ENV, DiskError
from .records import import_records


def run_from_cli(args) -> int:
    import shlex

    os.environ.setdefault("BENCH_COMMAND", "bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    suite, grid, store = resolve_plan(args)
    check_inputs(grid.first_phase())
    writable_folder(Path(args.out), "--out")
    if getattr(args, "resume_from", None):
        counts = import_records([Path(p) for p in args.resume_from], store)
        print(
            f"resume: {counts.get('imported', 0)} cells imported from the records, {counts.get('kept', 0)} already here"
        )
    retry = getattr(args, "retry_failed", False)
    if retry:
        os.environ[RETRY_ENV] = "1"
    phases = _phases(grid, store, args)
    cells: list[Cell] = []
    launched: set[tuple] = set()  # (id, what it scores): a search cell is launched again to score its test data
    for name, phase_cells in phases:
        while True:  # a search extended at its edge adds cells once the ones before it finish
            chosen = phase_cells()
            cells += [c for c in chosen if c not in cells]
            todo = [c for c in cells_to_run(chosen, store, retry_failed=retry) if (c.id, c.scoring) not in launched]
            if not todo:
                break
            launched |= {(c.id, c.scoring) for c in todo}
            try:
                stopped = _launch(todo, name, args, store)
            except DiskError:
                print(counts_line(summarise(cells, store)[0]), file=sys.stderr)
                raise
            if stopped:
                return stopped
    cells = reported_cells(grid, store) if grid.searching else cells
    from ..report.stats import build_rows
    from ..report.terminal import leaderboard

    loaded = [c for c in (store.loaded(cell) for cell in cells) if c is not None]
    print(f"\nsuite {suite.name}: {len(cells)} cells, run store {store.root}")
    if grid.searching:
        print(search_line(grid, store))
    print(leaderboard(build_rows(loaded, compare=False, expected=expected_seeds(grid.grid_cells()))))
    if suite.top.note:
        print(f"note: {suite.top.note}")
    counts, problems = summarise(cells, store)
    print(counts_line(counts))
    for cell, status, error in problems:
        print(f"{status}: {cell.label} ({store.dir_for(cell).name}): {error}", file=sys.stderr)
    if counts.get(Status.RUNNING):
        print(
            f"{counts[Status.RUNNING]} cells are being run by another process (bench status shows who); "
            "run the same command again once they finish",
            file=sys.stderr,
        )
    for cell in cells:
        if store.state(cell) is Status.UNREADABLE:
            print(f"unreadable: {cell.label} ({store.dir_for(cell).name}): left as it is", file=sys.stderr)
    unfinished = counts.get(Status.PENDING) or counts.get(Status.RUNNING) or counts.get(Status.UNREADABLE)
    return 1 if problems or unfinished else 0


def _phases(grid, store: RunStore, args) -> list[tuple]:
    """(name, cells) in run order. Cells run one at a time (the local launcher, one worker): the fixed cells,
    then method after method its search and at once its selected configuration's seeds, so a grid cut short
    has whole rows. Several at a time: every search cell first (they run in parallel), then the selected."""
    if not grid.searching:
        return [("cells", grid.first_phase)]
    launcher = getattr(args, "launcher", "local") or "local"
    if launcher == "local" and (getattr(args, "workers", 1) or 1) <= 1:
        phases = [("cells", lambda: grid.fixed)]
        for group in grid.groups:
            phases += [
                ("search", lambda group=group: group.search_cells(store)),
                ("selected", lambda group=group: group.final_cells(store)),
            ]
        return phases
    return [("search", lambda: grid.first_phase(store)), ("selected", lambda: grid.final_phase(store))]


def _launch(todo: list[Cell], phase: str, args, store: RunStore) -> int:
    """Run ``todo``; the exit status when interrupted (the message says how to resume), else 0."""
    bar = tqdm(total=len(todo), desc=phase, unit="cell")
    try:
        launch(
            todo,
            Path(args.out),
            getattr(args, "launcher", "local") or "local",
            getattr(args, "workers", 1) or 1,
            on_done=lambda cell: (bar.update(1), bar.write(cell_line(cell, store))),
            **_launcher_options(args),
        )
    except KeyboardInterrupt as exc:
        bar.close()
        signal_name = getattr(exc, "signal_name", "SIGINT")
        print(
            f"bench: interrupted ({signal_name}): the cell at work stopped and its claim was released; run the same "
            "command again to resume (finished cells are kept)",
            file=sys.stderr,
        )
        return 143 if signal_name == "SIGTERM" else 130
    bar.close()
    return 0


def _launcher_options(args) -> dict:
    keys = (
        "processes_per_cell",
        "ray_address",
        "gpus_per_cell",
        "cpus_per_cell",
        "slurm_cluster",
        "slurm_partition",
        "slurm_time_min",
    )
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
