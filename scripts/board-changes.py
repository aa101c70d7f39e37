"""What a board's new publication changes from its previous one, read from the two sets of records: per
(method, budget) the lr values searched and the one chosen, the headline metric's mean over the trained final
seeds, and which cells are reused, new or left out (with the new cells' wall time). A Markdown table for the
board's hand-written ``changes.md`` (``bench publish`` puts that file under the board's description).

    python scripts/board-changes.py OLD_RECORDS.jsonl NEW_RECORDS.jsonl [--budget B]

OLD: the previous publication's ``results.jsonl`` (e.g. ``git show <commit>:reports/published/<board>/results.jsonl``);
NEW: the new one's (the freshly published file, or ``bench report --format jsonl`` of the store with the
grid's flags, e.g. ``--budgets 0.5``: only then is each cell labelled with that grid's role).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fmt import duration  # noqa: E402
from bench.report.publish import _cost, _lr  # noqa: E402
from bench.results import Status, read_records  # noqa: E402
from bench.systems import role  # noqa: E402


def _chosen(cells) -> dict:
    return {
        (c.result.method, str(c.result.budget)): c.result.selection["chosen"].get("lr")
        for c in cells
        if c.result.selection and c.result.selection.get("chosen")
    }


def _finals(cells) -> dict:
    """(method, budget) -> the headline metric of each trained final seed (the first eval set's nDCG@10)."""
    out = defaultdict(list)
    for c in cells:
        r = c.result
        if r.phase == "final" and c.status is Status.DONE and r.metrics:
            out[(r.method, str(r.budget))].append(r.metrics[sorted(r.metrics)[0]].get("ndcg@10"))
    return out


def _searched(cells) -> dict:
    """(method, budget) -> every lr a cell trained at (the chosen one's final cells were search cells too)."""
    out = defaultdict(set)
    for c in cells:
        if c.result.phase in ("search", "final") and _lr(c.result) is not None:
            out[(c.result.method, str(c.result.budget))].add(_lr(c.result))
    return out


def _fmt_lrs(values, chosen) -> str:
    return ", ".join(f"**{v:g}**" if v == chosen else f"{v:g}" for v in sorted(values)) or "-"


def _mean(values) -> str:
    values = [v for v in values if v is not None]
    return f"{statistics.fmean(values):.4f} ({len(values)})" if values else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--budget", action="append", help="keep only these budgets (and the one-size methods)")
    args = parser.parse_args()
    for path in (args.old, args.new):
        if not Path(path).is_file():
            print(f"board-changes: {path}: no such file (give two results.jsonl record files)", file=sys.stderr)
            return 2
    old, new = read_records(Path(args.old)), read_records(Path(args.new))
    if args.budget:
        keep = set(args.budget) | {"native"}  # the one-size methods sit at every budget
        new = [c for c in new if str(c.result.budget) in keep]
    old_ids, new_ids = {c.result.cell_id for c in old}, {c.result.cell_id for c in new}
    old_chosen, new_chosen = _chosen(old), _chosen(new)
    old_finals, new_finals = _finals(old), _finals(new)
    old_lrs, new_lrs = _searched(old), _searched(new)
    columns = ["method", "budget", "v1 lr searched (chosen)", "v2 lr searched (chosen)", "v1 mean (seeds)"]
    print("| " + " | ".join([*columns, "v2 mean (trained seeds)"]) + " |")
    print("|---|---|---|---|---|---|")
    for key in sorted(set(new_lrs) | set(old_lrs)):
        if not role(key[0]).trains:
            continue
        print(
            f"| {key[0]} | {key[1]} | {_fmt_lrs(old_lrs[key], old_chosen.get(key))} "
            f"| {_fmt_lrs(new_lrs[key], new_chosen.get(key))} | {_mean(old_finals[key])} | {_mean(new_finals[key])} |"
        )
    added = [c for c in new if c.result.cell_id not in old_ids]
    dropped = [c for c in old if c.result.cell_id not in new_ids]
    per_method = defaultdict(float)
    for c in added:
        per_method[c.result.method] += _cost(c.result.times)
    cost = ", ".join(f"{m} {duration(s)}" for m, s in sorted(per_method.items()))
    print(
        f"\nCells: {len(new)} in all, {len(new) - len(added)} reused from the previous publication, {len(added)} new"
        + (f" ({duration(sum(per_method.values()))} of cell wall time: {cost})" if added else "")
        + f"; {len(dropped)} of the previous cells not in this one"
        + (" (" + ", ".join(sorted({c.result.method for c in dropped})) + ")" if dropped else "")
        + "."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
