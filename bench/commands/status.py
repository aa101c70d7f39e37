"""``bench status``: the per-state counts of a grid, its search, the running and the failed cells."""

from __future__ import annotations

from .. import results
from ..results import Status
from ..runner import counts_line, needs_test_scoring, owner_text, resolve_plan, search_line, summarise


def status_from_cli(args) -> int:
    """``bench status``: per state counts of the grid the same flags give ``bench run``, the running
    cells and the failed cells' errors."""
    suite, grid, store = resolve_plan(args)
    cells = grid.first_phase(store)
    if grid.searching:
        search = cells[len(grid.fixed) :]
        finals = grid.final_phase(store)
        searched = {c.id for c in search}
        cells = grid.fixed + search + [c for c in finals if c.id not in searched]
        pending = [c for c in finals if needs_test_scoring(c, store)]
        print(search_line(grid, store))
        waiting = [g for g in grid.groups if not g.final_cells(store)]
        print(
            f"selected: {len(grid.groups) - len(waiting)} of {len(grid.groups)} (stage, dataset, method, budget); "
            f"{len(pending)} selected search cells to score on the test data; "
            f"{sum(len(g.cells) for g in waiting)} final cells wait for their search"
        )
    counts, problems = summarise(cells, store)
    print(f"suite {suite.name}: {len(cells)} cells in {store.root}")
    print(counts_line(counts))
    to_score = len(pending) + sum(len(g.cells) for g in waiting) if grid.searching else 0
    line = remaining_line(cells, store, to_score)
    if line:
        print(line)
    for cell in cells:
        state = store.state(cell)
        if state is Status.RUNNING:
            print(f"running: {cell.label} ({store.dir_for(cell).name}): {owner_text(store.owner(cell))}")
        elif state is Status.UNREADABLE:
            found = results.inspect(store.dir_for(cell))
            print(f"unreadable: {cell.label}: {found.path} is {found.reason}; {found.fix}")
    for cell, status, error in problems:
        print(f"{status}: {cell.label} ({store.dir_for(cell).name}): {error}")
    return 0


def remaining_line(cells, store, to_score: int) -> str:
    """What is left, in cell wall time: each unfinished cell at the mean of the finished cells of its method
    and budget (else of its method, else of all), a running one at half that, a selected search cell still to
    score on the test data (``to_score``: those and the finals still waiting for their search) at the mean
    test scoring time. Extensions a search may still add are not known."""
    from statistics import fmean

    from ..fmt import duration

    finished: dict[tuple, list[float]] = {}
    scoring = []
    for cell in cells:
        result = store.result(cell)
        if result is not None and result.scored and result.times.get("total_s"):
            finished.setdefault((cell.method, cell.budget), []).append(float(result.times["total_s"]))
            if result.times.get("test_scoring_s"):
                scoring.append(float(result.times["test_scoring_s"]))
    if not finished:
        return ""
    every = [t for times in finished.values() for t in times]

    def mean_of(cell) -> float:
        same = finished.get((cell.method, cell.budget)) or [
            t for (m, _), times in finished.items() if m == cell.method for t in times
        ]
        return fmean(same or every)

    left, running, waiting = 0.0, 0, 0
    for cell in cells:
        state = store.state(cell)
        if state is Status.RUNNING:
            left, running = left + mean_of(cell) / 2, running + 1
        elif state is Status.PENDING:
            left, waiting = left + mean_of(cell), waiting + 1
    left += to_score * (fmean(scoring) if scoring else 0.0)
    if not (running or waiting or to_score):
        return ""
    return (
        f"left: about {duration(left)} of cell wall time ({waiting} pending, {running} running, {to_score} to "
        f"score on test; at the finished cells' mean per method and budget; with --workers N about 1/N of it; "
        "extensions a search may still add not counted)"
    )
