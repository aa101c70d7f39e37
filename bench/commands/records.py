"""The store's record commands: ``bench store migrate``, ``bench store import``, ``bench store recompute``
and ``bench verify`` (published cells run again and compared)."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

from .. import results
from ..cells import Cell
from ..launchers import launch
from ..results import Status
from ..runner import check_inputs, owner_text, resolve_grid, writable_folder
from ..store import RunStore, set_aside


def migrate_from_cli(args) -> int:
    suite, _, store = resolve_grid(args)
    moves = store.migrate()
    for old, new in moves:
        print(f"{old.name} -> {new.name}")
    print(f"suite {suite.name}: {len(moves)} folder(s) renamed to today's cell ids in {store.root}")
    return 0


def import_records(paths: list[Path], store: RunStore) -> dict:
    """Every record of ``paths`` (results.jsonl files) into ``store``: cells already here are kept."""
    from ..errors import BenchError

    counts: Counter = Counter()
    for path in paths:
        if not Path(path).is_file():
            raise BenchError(f"{path}: no such records file (a results.jsonl written by bench report)")
        for loaded in results.read_records(Path(path)):
            counts[store.import_record(judged(loaded), str(path))] += 1
    return counts


def judged(loaded: results.LoadedCell) -> results.LoadedCell:
    """A record written before the collapse rule: a trained cell recorded done whose last tenth of losses
    sits at chance is recorded collapsed (the rule of bench/collapse.py, on its logged losses)."""
    import dataclasses

    from .. import collapse
    from ..stages import get_stage

    result = loaded.result
    if result.status is not Status.DONE or not loaded.losses or not (result.config or {}).get("train"):
        return loaded
    try:
        cell = Cell.from_json(result.config)
        stage = get_stage(cell.stage)
        chance = stage.chance_loss(stage.Train(**cell.train))
    except Exception:  # noqa: BLE001  (a record this version cannot rebuild is imported as it is)
        return loaded
    if not collapse.at_chance(loaded.losses, chance):
        return loaded
    return dataclasses.replace(loaded, result=dataclasses.replace(result, status=Status.COLLAPSED))


def import_from_cli(args) -> int:
    """``bench store import RESULTS.jsonl ... --suite S --out DIR``: another store's finished cells into this
    one (a grid continued on another machine or cluster); ``bench run`` then computes only the rest."""
    suite, _, store = resolve_grid(args)
    writable_folder(Path(args.out), "--out")
    counts = import_records([Path(p) for p in args.records], store)
    print(
        f"suite {suite.name}: " + ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) + f" in {store.root}"
    )
    return 0


def verify_from_cli(args) -> int:
    """``bench verify BOARD_DIR``: a seeded sample of ``-k`` published cells (spread over methods: at most one
    per method, trained systems first) run again in a fresh store through the normal launcher; per metric
    the published value, the re-run value and whether they agree within ``--tolerance``. Exit 1 if any
    does not."""
    import random
    import tempfile

    from ..errors import BenchError
    from ..fmt import render

    folder = Path(args.board)
    records = folder / "results.jsonl" if folder.is_dir() else folder
    if not records.is_file():
        raise BenchError(f"{args.board}: no results.jsonl there (a published board folder, or a records file)")
    cells = [c for c in results.read_records(records) if c.status is Status.DONE]
    if getattr(args, "budget", None):
        cells = [c for c in cells if c.result.budget == args.budget]
        if not cells:
            raise BenchError(f"{records}: no finished cell at budget {args.budget!r}")
    if args.same_machine:
        here = _this_machine(cells)
        cells = [c for c in cells if c.result.device in here]
        if not cells:
            raise BenchError(
                f"{records}: no finished cell ran on this machine ({here}); drop --same-machine and give a --tolerance"
            )
    chosen = _sample(cells, args.k, random.Random(args.seed))
    if not chosen:
        raise BenchError(f"{records}: no finished cell to verify")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-verify-"))
    rows, agree, elsewhere = [], True, []
    for loaded in chosen:
        cell = Cell.from_json(loaded.result.config)
        check_inputs([cell])
        store = RunStore(out, cell.suite)
        print(f"verify: {cell.label} ({cell.id}) in {store.root}", flush=True)
        launch([cell], out, "local", _workers_for(loaded.result.device))  # the threads it recorded
        rerun = store.result(cell)
        if rerun is None or not rerun.done:
            raise BenchError(f"{cell.label}: the re-run did not finish ({rerun.error if rerun else 'no result'})")
        if rerun.device != loaded.result.device:
            elsewhere.append(f"{cell.label}: published on {loaded.result.device}, re-run on {rerun.device}")
        # a search cell publishes its validation metrics (and its test metrics once selected and scored)
        compared = [(d, m, rerun.metrics) for d, m in sorted(loaded.result.metrics.items())]
        compared += [(d, m, rerun.validation) for d, m in sorted(loaded.result.validation.items())]
        for dataset, metrics, rerun_metrics in compared:
            for metric, published in sorted(metrics.items()):
                again = rerun_metrics.get(dataset, {}).get(metric)
                same = again is not None and abs(again - published) <= args.tolerance
                agree &= same
                shown = "-" if again is None else f"{again:.6f}"
                rows.append([cell.label, dataset, metric, f"{published:.6f}", shown, "yes" if same else "NO"])
    print(render(["cell", "dataset", "metric", "published", "re-run", f"agree (within {args.tolerance:g})"], rows))
    for line in elsewhere:  # rounding differs across CPU models and thread counts: 1e-6 holds on the same one
        print(f"verify: {line} (another machine: 1e-6 holds on the same CPU model and threads; see --tolerance)")
    print(f"verify: {'every metric agrees' if agree else 'DISAGREEMENT'} ({len(chosen)} cells, re-run store {out})")
    return 0 if agree else 1


def _this_machine(cells) -> set[str]:
    """The devices a cell re-run here can record: the card where the board ran on one and this machine has
    one, else this CPU at any thread count up to its cores (a grid of several workers gives each fewer; the
    re-run uses the count the cell recorded)."""
    import torch

    from ..environment import cpu_device_name, device_name

    if any((c.result.device or "").startswith("cuda") for c in cells) and torch.cuda.is_available():
        return {device_name("cuda")}
    return {cpu_device_name(n) for n in range(1, (os.cpu_count() or 1) + 1)}


def _workers_for(device: str | None) -> int:
    """The local workers whose share of this CPU is the thread count ``device`` records (one alone runs
    with that share), so a cell trained by a worker of a 2-worker grid is re-run on 1 thread."""
    found = re.search(r" x(\d+) threads$", device or "")
    if not found or not (device or "").startswith("cpu:"):
        return 1
    return max(1, (os.cpu_count() or 1) // int(found.group(1)))


def _sample(cells, k: int, rng) -> list:
    """At most one cell per method, ``k`` methods, trained systems first, chosen by ``rng``."""
    by_method: dict[str, list] = {}
    for cell in sorted(cells, key=lambda c: (c.result.method, c.result.seed, c.result.cell_id)):
        by_method.setdefault(cell.result.method, []).append(cell)
    trained = sorted(m for m, c in by_method.items() if c[0].result.trainable)
    others = sorted(m for m in by_method if m not in trained)
    rng.shuffle(trained)
    rng.shuffle(others)
    return [rng.choice(by_method[m]) for m in (trained + others)[:k]]


def recompute_from_cli(args) -> int:
    """``bench store recompute CELL_DIR ...``: a cell's folder (an unreadable result, or one to run again) set
    aside whole under ``<suite>/_set_aside/`` (never deleted); the next ``bench run`` computes the cell."""
    from ..errors import BenchError
    from ..store import owner

    for raw in args.cells:
        folder = Path(raw)
        if not (folder / "config.json").is_file() and not (folder / results.RESULT).is_file():
            raise BenchError(f"{folder}: not a cell folder of a run store (config.json or result.json needed)")
        if owner(folder) is not None:
            raise BenchError(f"{folder}: the cell is at work ({owner_text(owner(folder))}); wait for it to finish")
    for raw in args.cells:
        target = set_aside(Path(raw))
        print(f"{Path(raw).name}: set aside as {target}; the next bench run computes the cell")
    return 0
