"""Keep a board's grid progress as records between sittings: the cells of an export (`bench report --format
jsonl`) that the board's published records do not hold as they are now, written to PROGRESS (default
progress-v2.jsonl) beside them. A cell already in PROGRESS is replaced when the export holds a later
version of it (a selected search cell scored on the test data since, or trained again from its seed).

    python scripts/board-progress.py BOARD EXPORT.jsonl [PROGRESS]

Resume a grid from them with the newer file first: `--resume-from PROGRESS --resume-from results.jsonl`.
BENCH_RECORDS_ROOT: the checkout whose reports/published/ receives them (default: this one; a grid run from
a worktree writes into the main checkout).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(os.environ.get("BENCH_RECORDS_ROOT") or Path(__file__).resolve().parents[1])


def records(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    return {r["cell_id"]: r for r in (json.loads(line) for line in path.read_text().splitlines() if line.strip())}


def version(record: dict) -> tuple:
    """Later is larger: a final over a search record, then the later finish."""
    times = record.get("times") or {}
    return (record.get("phase") == "final", times.get("finished_at") or 0.0)


def main(board: str, export: str, progress_name: str = "progress-v2.jsonl") -> int:
    folder = ROOT / "reports" / "published" / board
    published, progress = records(folder / "results.jsonl"), records(folder / progress_name)
    added, replaced = [], []
    for cell_id, record in records(Path(export)).items():
        if record.get("status") not in ("done", "collapsed", "failed", "diverged", "not_applicable"):
            continue
        known = progress.get(cell_id) or published.get(cell_id)
        if known is not None and version(record) <= version(known):
            continue
        (replaced if cell_id in progress else added).append(cell_id)
        progress[cell_id] = record
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in progress.values())
    target = folder / progress_name
    temporary = target.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(target)
    print(f"{target}: {len(added)} cells added, {len(replaced)} replaced by a later version, {len(progress)} in all")
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        print("usage: python scripts/board-progress.py BOARD EXPORT.jsonl [PROGRESS]", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
