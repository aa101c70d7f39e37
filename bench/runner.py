"""``bench run``: expand the suite into cells, run those not done, print the leaderboard."""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from tqdm.auto import tqdm

from methods import BudgetUnreachable

from . import store
from .errors import BenchError
from .leaderboard import leaderboard
from .suites import FIRST_STAGE, apply_overrides, expand, load_suite


def run_from_cli(args) -> int:
    name = args.suite or ("smoke-dense" if getattr(args, "stage", None) == "dense" else "smoke")
    suite = apply_overrides(load_suite(name), args)
    cells = expand(suite)
    out = Path(args.out)
    _check_inputs(cells)
    failed = run_cells(cells, out)
    results = [json.loads((store.cell_dir(out, c["suite"], c["cell_id"]) / store.RESULT).read_text())
               for c in cells if (store.cell_dir(out, c["suite"], c["cell_id"]) / store.RESULT).exists()]
    print(f"\nsuite {suite['name']}: {len(cells)} cells, run store {out / suite['name']}")
    print(leaderboard(results))
    if failed:
        print(f"{len(failed)} cell(s) failed: " + "; ".join(f"{c['method']} {c['budget']} seed {c['seed']}: {e}"
                                                       for c, e in failed), file=sys.stderr)
        return 1
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


def run_cells(cells: list[dict], out: Path) -> list:
    from .worker import run_cell

    failed = []
    bar = tqdm(cells, desc="cells", unit="cell")
    for cell in bar:
        directory = store.cell_dir(out, cell["suite"], cell["cell_id"])
        label = f"{cell['method']} {cell['budget']} s{cell['seed']}"
        if store.is_done(directory):
            bar.write(f"skip {label} (done: {directory})")
            continue
        bar.set_postfix_str(label)
        try:
            run_cell(cell, out)
        except BenchError:
            raise  # a user error (bad dataset, model) would fail every cell alike
        except BudgetUnreachable as exc:  # recorded, never silently run at another budget
            store.write_json(directory / store.RESULT, {"status": "not_applicable", "error": str(exc),
                                                        "cell_id": cell["cell_id"], "method": cell["method"],
                                                        "config": cell})
            bar.write(f"n/a  {label}: {exc}")
        except Exception as exc:  # one broken cell must not stop the grid
            error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            store.write_json(directory / store.RESULT, {"status": "failed", "error": error, "cell_id": cell["cell_id"],
                                                        "method": cell["method"], "config": cell,
                                                        "traceback": traceback.format_exc()})
            failed.append((cell, error))
            bar.write(f"FAILED {label}: {error}")
    return failed
