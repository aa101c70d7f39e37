"""One cell per (stage, method, budget, seed, eval datasets): what a report counts when two stores (or an
older cell id) hold the same cell."""

from __future__ import annotations

from ..errors import warn
from ..results import LoadedCell, Status


def deduplicated(cells: list[LoadedCell]) -> list[LoadedCell]:
    """One cell per (stage, method, budget, seed, eval datasets): a finished one over an unfinished one, then
    the most recently finished (the result's ``finished_at``, else its file's time); a warning names both."""
    kept: dict[tuple, LoadedCell] = {}
    for cell in cells:
        r = cell.result
        key = (r.stage, r.method, r.budget, r.seed, tuple(sorted(cell.datasets)))
        other = kept.get(key)
        if other is None:
            kept[key] = cell
            continue
        winner, loser = (cell, other) if _preference(cell) > _preference(other) else (other, cell)
        kept[key] = winner
        warn(
            f"{loser.directory} and {winner.directory} are the same cell ({r.stage}, {r.method}, budget {r.budget}, "
            f"seed {r.seed}): counted once, keeping {winner.directory.name} ({_why(winner, loser)})"
        )
    return [c for c in cells if kept.get(_cell_key(c)) is c]


def _cell_key(cell: LoadedCell) -> tuple:
    r = cell.result
    return (r.stage, r.method, r.budget, r.seed, tuple(sorted(cell.datasets)))


def _finished_at(cell: LoadedCell) -> float:
    stamp = cell.result.times.get("finished_at")
    if isinstance(stamp, (int, float)):
        return float(stamp)
    try:
        return (cell.directory / "result.json").stat().st_mtime
    except OSError:
        return 0.0


def _preference(cell: LoadedCell) -> tuple:
    return (cell.status is Status.DONE, _finished_at(cell), str(cell.directory))


def _why(winner: LoadedCell, loser: LoadedCell) -> str:
    if winner.status is not loser.status:
        return f"{winner.status} over {loser.status}"
    return "the more recently finished"
