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
