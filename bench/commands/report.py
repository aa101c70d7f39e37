"""``bench report`` (the leaderboards, the static site, the records) and ``bench publish`` (the same under a
board folder, with its README)."""

from __future__ import annotations

import json
from pathlib import Path

from ..flags import GRID_FLAGS
from ..runner import expected_seeds, grid_records, resolve_grid, resolve_plan, writable_folder
from ..store import RunStore


def report_from_cli(args) -> int:
    """``bench report``: every cell in the suite's run store folder (only the grid's cells when grid flags
    are given) and the cells of ``--include`` record files (other stores' ``results.jsonl``), then the
    leaderboard files and the static site, or (``--format jsonl``) only the records."""
    from ..errors import BenchError, warn
    from ..files import atomic_write_text
    from ..report.site import build
    from ..results import read_records, scan, to_record

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
        if grid.searching:  # the search cells too: the records rebuild the store, and its choices rest on them
            loaded = grid_records(grid, store)
        else:
            loaded = [c for c in (store.loaded(cell) for cell in cells) if c is not None]
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
    expected = expected_seeds(cells) if cells is not None else None
    source = ", ".join([str(store.root)] * store.root.is_dir() + [str(p) for p in includes])
    index = build(loaded, name, Path(args.out), source, expected, getattr(args, "publish_as", None), note)
    atomic_write_text(target / "results.jsonl", records)
    print(f"report: {index} (and leaderboard.csv / .md / .tex, results.jsonl beside it)")
    return 0


def publish_from_cli(args) -> int:
    """``bench publish``: the report of a board's store (its leaderboards, site and records) under
    ``--out/<suite>/`` plus a README: the commands, commit, machine, wall times, headline and claims, and the
    folder's ``changes.md`` (what changed from the previous publication) under the board's description."""
    from ..files import atomic_write_text
    from ..report.publish import board_readme
    from ..report.stats import build_rows
    from ..results import read_records
    from ..suite_files import locate_suite

    args.format = "site"
    report_from_cli(args)
    suite, cells, _ = resolve_grid(args, Path(args.runs))
    folder = Path(args.out) / (args.publish_as or suite.name)
    loaded = read_records(folder / "results.jsonl")
    rows = build_rows(loaded, expected=expected_seeds(cells))
    about = _leading_comment(locate_suite(args.suite or suite.name, None)[0])
    margin = suite.top.non_inferiority_margin
    changes_file = folder / "changes.md"
    changes = changes_file.read_text(encoding="utf-8") if changes_file.is_file() else ""
    readme = board_readme(folder.name, suite.name, about, loaded, rows, list(args.command or []), margin, changes)
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
    from ..errors import BenchError
    from ..report.export import headline_markdown
    from ..report.stats import build_rows

    if not loaded:
        raise BenchError(f"suite {name!r}: no cell has a result yet: nothing to report")
    rows = build_rows(loaded, expected=expected_seeds(cells) if cells is not None else None)
    print(headline_markdown(rows), end="")
    return 0
