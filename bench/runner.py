"""``bench run``, ``bench status`` and ``bench store migrate``: resolve the grid, run the cells not finished
through a launcher, summarise, print the leaderboard. The run store decides what is left to do."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from . import config, results
from .cells import Cell, expand
from .flags import GRID_FLAGS
from .launchers import launch
from .results import Status
from .store import RunStore, set_aside, tidy_finished
from .worker import RETRY_ENV, DiskError


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
    for name, phase_cells in phases:
        chosen = phase_cells()
        cells += chosen
        todo = cells_to_run(chosen, store, retry_failed=retry)
        if not todo:
            continue
        try:
            stopped = _launch(todo, name, args, store)
        except DiskError:
            print(_counts_line(summarise(cells, store)[0]), file=sys.stderr)
            raise
        if stopped:
            return stopped
    cells = _reported(grid, store) if grid.searching else cells
    from .report.stats import build_rows
    from .report.terminal import leaderboard

    loaded = [c for c in (store.loaded(cell) for cell in cells) if c is not None]
    print(f"\nsuite {suite.name}: {len(cells)} cells, run store {store.root}")
    if grid.searching:
        print(_search_line(grid, store))
    print(leaderboard(build_rows(loaded, compare=False, expected=_expected(grid.grid_cells()))))
    if suite.top.note:
        print(f"note: {suite.top.note}")
    counts, problems = summarise(cells, store)
    print(_counts_line(counts))
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
            phases += [("search", group.search_cells), ("selected", lambda group=group: group.final_cells(store))]
        return phases
    return [("search", grid.first_phase), ("selected", lambda: grid.final_phase(store))]


def _launch(todo: list[Cell], phase: str, args, store: RunStore) -> int:
    """Run ``todo``; the exit status when interrupted (the message says how to resume), else 0."""
    bar = tqdm(total=len(todo), desc=phase, unit="cell")
    try:
        launch(
            todo,
            Path(args.out),
            getattr(args, "launcher", "local") or "local",
            getattr(args, "workers", 1) or 1,
            on_done=lambda cell: (bar.update(1), bar.write(_line(cell, store))),
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


def _reported(grid, store: RunStore) -> list[Cell]:
    """The cells a searched grid reports: its fixed cells and the selected configurations' cells (the
    search cells of the other configurations are read by the selection, never by a leaderboard)."""
    return grid.fixed + grid.final_phase(store)


def _search_line(grid, store: RunStore) -> str:
    search = grid.first_phase()[len(grid.fixed) :]
    finished = sum(1 for c in search if store.state(c).finished)
    decided = sum(1 for g in grid.groups if g.final_cells(store))
    capped = next((g.capped for g in grid.groups if g.capped), None)
    cost = f"; search cells on {capped}" if capped else ""
    return (
        f"search: {finished}/{len(search)} search cells done; a configuration selected on validation for "
        f"{decided}/{len(grid.groups)} (stage, dataset, method, budget); the search adds {grid.added_cells()} "
        f"cells to the grid{cost}"
    )


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


def cells_to_run(cells: list[Cell], store: RunStore, retry_failed: bool = False) -> list[Cell]:
    """Pending cells (never started, or interrupted: no result and no live heartbeat), plus failed
    and diverged ones with ``retry_failed``. Finished and running cells are left alone."""
    todo = []
    for cell in cells:
        directory = store.dir_for(cell)
        state = store.state(cell)
        if state.finished or state.retryable:
            tidy_finished(directory)
        if state is Status.PENDING or (retry_failed and state.retryable) or _needs_test_scoring(cell, store):
            todo.append(cell)
        elif state is Status.UNREADABLE:
            found = results.inspect(directory)
            tqdm.write(f"skip {cell.label}: {found.path} is {found.reason}; left as it is: {found.fix}")
        elif state is Status.RUNNING:
            tqdm.write(f"skip {cell.label} (running: {_owner_text(store.owner(cell))}: {directory})")
        else:
            tqdm.write(f"skip {cell.label} ({state.value}: {directory})")
    return todo


def _owner_text(owner: dict | None) -> str:
    if not owner:
        return "owner unknown"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(owner.get("started", 0))))
    return f"pid {owner.get('pid')} on {owner.get('host')} since {started}"


def _needs_test_scoring(cell: Cell, store: RunStore) -> bool:
    """A selected configuration's search cell: done on validation, its test scoring still to come."""
    if cell.scoring != "all":
        return False
    result = store.result(cell)
    return result is not None and result.done and result.phase == "search"


def summarise(cells: list[Cell], store: RunStore):
    counts, problems = Counter(), []
    for cell in cells:
        result = store.result(cell)
        state = result.status if result is not None else store.state(cell)
        counts[state] += 1
        if state.retryable:
            problems.append((cell, state.value, result.error if result else ""))
    return counts, problems


def _line(cell: Cell, store: RunStore) -> str:
    result = store.result(cell)
    state = result.status if result is not None else store.state(cell)
    error = result.error if result is not None else ""
    return f"{state.value:<14} {cell.label}" + (f": {error}" if error and state is not Status.DONE else "")


def _counts_line(counts: Counter) -> str:
    return "cells: " + ", ".join(f"{counts.get(s, 0)} {s.value}" for s in Status)


def status_from_cli(args) -> int:
    """``bench status``: per state counts of the grid the same flags give ``bench run``, the running
    cells and the failed cells' errors."""
    suite, grid, store = resolve_plan(args)
    cells = grid.first_phase()
    if grid.searching:
        search = cells[len(grid.fixed) :]
        finals = grid.final_phase(store)
        searched = {c.id for c in search}
        cells = grid.fixed + search + [c for c in finals if c.id not in searched]
        pending = [c for c in finals if _needs_test_scoring(c, store)]
        print(_search_line(grid, store))
        waiting = [g for g in grid.groups if not g.final_cells(store)]
        print(
            f"selected: {len(grid.groups) - len(waiting)} of {len(grid.groups)} (stage, dataset, method, budget); "
            f"{len(pending)} selected search cells to score on the test data; "
            f"{sum(len(g.cells) for g in waiting)} final cells wait for their search"
        )
    counts, problems = summarise(cells, store)
    print(f"suite {suite.name}: {len(cells)} cells in {store.root}")
    print(_counts_line(counts))
    for cell in cells:
        state = store.state(cell)
        if state is Status.RUNNING:
            print(f"running: {cell.label} ({store.dir_for(cell).name}): {_owner_text(store.owner(cell))}")
        elif state is Status.UNREADABLE:
            found = results.inspect(store.dir_for(cell))
            print(f"unreadable: {cell.label}: {found.path} is {found.reason}; {found.fix}")
    for cell, status, error in problems:
        print(f"{status}: {cell.label} ({store.dir_for(cell).name}): {error}")
    return 0


def migrate_from_cli(args) -> int:
    suite, _, store = resolve_grid(args)
    moves = store.migrate()
    for old, new in moves:
        print(f"{old.name} -> {new.name}")
    print(f"suite {suite.name}: {len(moves)} folder(s) renamed to today's cell ids in {store.root}")
    return 0


def import_records(paths: list[Path], store: RunStore) -> dict:
    """Every record of ``paths`` (results.jsonl files) into ``store``: cells already here are kept."""
    from .errors import BenchError

    counts: Counter = Counter()
    for path in paths:
        if not Path(path).is_file():
            raise BenchError(f"{path}: no such records file (a results.jsonl written by bench report)")
        for loaded in results.read_records(Path(path)):
            counts[store.import_record(loaded, str(path))] += 1
    return counts


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

    from .errors import BenchError
    from .fmt import render

    folder = Path(args.board)
    records = folder / "results.jsonl" if folder.is_dir() else folder
    if not records.is_file():
        raise BenchError(f"{args.board}: no results.jsonl there (a published board folder, or a records file)")
    cells = [c for c in results.read_records(records) if c.status is Status.DONE]
    if args.same_machine:
        here = _this_machine(cells)
        cells = [c for c in cells if c.result.device == here]
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
        launch([cell], out, "local", 1)
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


def _this_machine(cells) -> str:
    """The device a cell re-run here records: the card where the board ran on one and this machine has one,
    else this CPU with one local worker's threads."""
    import torch

    from .environment import cpu_device_name, device_name
    from .launchers import cpu_threads

    if any((c.result.device or "").startswith("cuda") for c in cells) and torch.cuda.is_available():
        return device_name("cuda")
    return cpu_device_name(cpu_threads())


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
    from .errors import BenchError
    from .store import owner

    for raw in args.cells:
        folder = Path(raw)
        if not (folder / "config.json").is_file() and not (folder / results.RESULT).is_file():
            raise BenchError(f"{folder}: not a cell folder of a run store (config.json or result.json needed)")
        if owner(folder) is not None:
            raise BenchError(f"{folder}: the cell is at work ({_owner_text(owner(folder))}); wait for it to finish")
    for raw in args.cells:
        target = set_aside(Path(raw))
        print(f"{Path(raw).name}: set aside as {target}; the next bench run computes the cell")
    return 0


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


def report_from_cli(args) -> int:
    """``bench report``: every cell in the suite's run store folder (only the grid's cells when grid flags
    are given) and the cells of ``--include`` record files (other stores' ``results.jsonl``), then the
    leaderboard files and the static site, or (``--format jsonl``) only the records."""
    from .errors import BenchError, warn
    from .files import atomic_write_text
    from .report.site import build
    from .results import read_records, scan, to_record

    includes = [Path(p) for p in (getattr(args, "include", None) or [])]
    restricted = any(getattr(args, flag, None) is not None for flag in GRID_FLAGS)
    try:
        suite, cells, store = resolve_grid(args, Path(args.runs))
        name, note = suite.name, suite.top.note or ""
    except BenchError:  # not a suite here (a store from elsewhere, or only --include): its folder alone
        if restricted or not args.suite or not ((Path(args.runs) / args.suite).is_dir() or includes):
            raise
        name, note, cells, store = args.suite, "", None, RunStore(Path(args.runs), args.suite)
    if not store.root.is_dir() and not includes:
        raise BenchError(
            f"no run store for suite {name!r} under {store.out}: run `bench run --suite {args.suite or name}`"
            " first, pass --runs, or --include another store's results.jsonl"
        )
    for path in includes:
        if not path.is_file():
            raise BenchError(f"--include {path}: no such file (a results.jsonl written by bench report)")
    markdown = getattr(args, "format", "site") == "md"
    if not markdown:
        writable_folder(Path(args.out), "--out")
    if not store.root.is_dir():
        loaded = []
    elif restricted:
        grid = resolve_plan(args, Path(args.runs))[1]
        wanted = _reported(grid, store) if grid.searching else cells
        loaded = [c for c in (store.loaded(cell) for cell in wanted) if c is not None]
    else:
        loaded = scan(store.root)
    seen = {c.result.cell_id for c in loaded}
    for path in includes:
        for cell in read_records(path):
            if cell.result.cell_id in seen:
                warn(f"{path}: cell {cell.result.cell_id} is already in the report: the first copy kept")
                continue
            seen.add(cell.result.cell_id)
            loaded.append(cell)
    if markdown:
        return _print_headline(loaded, cells, name)
    target = Path(args.out) / (getattr(args, "publish_as", None) or name)
    records = "".join(json.dumps(to_record(c), sort_keys=True) + "\n" for c in loaded)
    if getattr(args, "format", "site") == "jsonl":
        atomic_write_text(target / "results.jsonl", records)
        print(f"records: {target / 'results.jsonl'} ({len(loaded)} cells)")
        return 0
    expected = _expected(cells) if cells is not None else None
    source = ", ".join([str(store.root)] * store.root.is_dir() + [str(p) for p in includes])
    index = build(loaded, name, Path(args.out), source, expected, getattr(args, "publish_as", None), note)
    atomic_write_text(target / "results.jsonl", records)
    print(f"report: {index} (and leaderboard.csv / .md / .tex, results.jsonl beside it)")
    return 0


def publish_from_cli(args) -> int:
    """``bench publish``: the report of a board's store (its leaderboards, site and records) under
    ``--out/<suite>/`` plus a README: the commands, commit, machine, wall times, headline and claims."""
    from .config import _locate
    from .files import atomic_write_text
    from .report.publish import board_readme
    from .report.stats import build_rows
    from .results import read_records

    args.format = "site"
    report_from_cli(args)
    suite, cells, _ = resolve_grid(args, Path(args.runs))
    folder = Path(args.out) / (args.publish_as or suite.name)
    loaded = read_records(folder / "results.jsonl")
    rows = build_rows(loaded, expected=_expected(cells))
    about = _leading_comment(_locate(args.suite or suite.name, None)[0])
    readme = board_readme(folder.name, suite.name, about, loaded, rows, list(args.command or []))
    atomic_write_text(folder / "README.md", readme)
    print(f"published: {folder} (README.md, index.html, leaderboard.csv / .md / .tex, results.jsonl)")
    return 0


def _leading_comment(text: str) -> str:
    """The comment block a suite file starts with (what the board is), as prose."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def _print_headline(loaded, cells, name: str) -> int:
    """``bench report --format md``: the headline tables on stdout (the README's table is this rendering)."""
    from .errors import BenchError
    from .report.export import headline_markdown
    from .report.stats import build_rows

    if not loaded:
        raise BenchError(f"suite {name!r}: no cell has a result yet: nothing to report")
    rows = build_rows(loaded, expected=_expected(cells) if cells is not None else None)
    print(headline_markdown(rows), end="")
    return 0


def _expected(cells: list[Cell]) -> dict[tuple, int]:
    """(stage, dataset, method, budget) -> the seeds the grid asks for (k/n finished in the leaderboards)."""
    expected: dict[tuple, int] = {}
    for cell in cells:
        for ref in cell.datasets["eval"]:
            key = (cell.stage, ref, cell.method, cell.budget)
            expected[key] = expected.get(key, 0) + 1
    return expected
