"""A published board's README: how it was made (commands, commit, machine, wall time per cell and in
total), its headline table, and what it finds on the IAA paper's claims, each answered by the board's own
tests and intervals (nothing chosen by a test score: every claim is read the same way on any board)."""

from __future__ import annotations

import statistics
from collections import Counter

from ..fmt import duration, metric_label
from ..results import LoadedCell, Status
from . import budget_table, curves, qlm_claims
from .claims import claims
from .export import PROCEDURES, headline_markdown
from .stats import Row, metric_order

SHOWN_VERSIONS = {"python", "torch", "transformers", "ranx", "peft-ir-bench", "accelerate", "numpy"}


def board_readme(
    board: str,
    suite: str,
    about: str,
    cells: list[LoadedCell],
    rows: list[Row],
    commands: list[str],
    margin: float | None = None,
    changes: str = "",
) -> str:
    """``board``: the published folder's name; ``suite``: the suite its cells belong to; ``margin``: its
    declared non-inferiority margin (claim 2); ``changes``: what this publication changes from the board's
    previous one (the folder's hand-written ``changes.md``: the records cannot say why a protocol moved)."""
    out = [f"# {board}\n", about.strip() + "\n"] if about.strip() else [f"# {board}\n"]
    if changes.strip():
        out += [changes.strip() + "\n"]
    out += ["## How it was made\n", *_provenance(cells), ""]
    out += ["Commands (run from the repository root; the store resumes, so a grid spans sittings):\n", "```"]
    out += commands or [f"bench run --suite {suite}"]
    out += ["```\n", "Check it, or continue it on another machine:\n", "```"]
    out += [
        f"bench verify reports/published/{board} --same-machine   # re-runs 2 cells, compares every metric (1e-6)",
        f"bench run --suite {suite} --resume-from reports/published/{board}/results.jsonl",
        "```\n",
    ]
    out += ["## Wall time\n", *_wall_times(cells), ""]
    out += ["## Search\n", *_search_table(cells), ""]
    out += ["## Seeds\n", *seed_table(cells), ""]
    out += ["## Headline\n", headline_markdown(rows), *[f"- {line}" for line in PROCEDURES], ""]
    if budget_table.several_budgets(rows):
        out += ["## By budget\n", budget_table.to_markdown(rows, cells), *_curve_images(rows), ""]
    if {r.stage for r in rows} == {"qlm"}:
        out += ["## What the board answers\n", *qlm_claims.claims(rows, in_domain(cells), margin), ""]
    else:
        out += ["## The IAA paper's claims at this scale\n", *claims(rows, margin, cells), ""]
    return "\n".join(out).rstrip() + "\n"


def in_domain(cells: list[LoadedCell]) -> set[str]:
    """The eval datasets from a collection some cell trained on (SciFact's test after SciFact's training)."""
    trained_on = {str(c.result.datasets.get("train") or "").split("/")[0] for c in cells} - {""}
    return {d for c in cells for d in c.datasets if d.split("/")[0] in trained_on}


def _curve_images(rows: list[Row]) -> list[str]:
    """The headline metric's curves against % trainable parameters (files ``bench report`` wrote)."""
    stems = [(name, title) for name, title, _rows, _axis in curves.listed(rows) if name.endswith("-params")]
    return [f"![{title}](curves/{name}.svg)\n" for name, title in stems if "ndcg-10" in name] or [
        f"![{title}](curves/{name}.svg)\n" for name, title in stems
    ]


def _provenance(cells: list[LoadedCell]) -> list[str]:
    done = [c.result for c in cells if c.status.scored]
    commits = Counter(r.git_commit or "unknown" for r in done)
    devices = Counter(r.device or "unknown" for r in done)
    versions = done[0].versions if done else {}
    status = Counter(c.status.value for c in cells)
    lines = [
        "- code: " + ", ".join(f"commit {c} ({_cell_count(n)})" for c, n in commits.most_common()),
        "- machine: " + ", ".join(f"{d} ({_cell_count(n)})" for d, n in devices.most_common()),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if k in SHOWN_VERSIONS),
        "- cells: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items())),
    ]
    problems = [c for c in cells if c.status in (Status.FAILED, Status.DIVERGED)]
    lines += [f"  - {c.result.method} seed {c.result.seed}: {c.status.value}: {c.result.error}" for c in problems]
    return lines


def _cell_count(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"


def _wall_times(cells: list[LoadedCell]) -> list[str]:
    """Per method: cells, mean wall time of a cell and its training; the total over every cell (the search's
    included: it is what the board cost)."""
    by_method: dict[tuple, list] = {}
    by_budget: dict[str, list[float]] = {}
    for cell in cells:
        if cell.status.scored:  # a collapsed cell cost its time too
            key = (cell.result.method, cell.result.phase or "grid")
            by_method.setdefault(key, []).append(cell.result.times)
            by_budget.setdefault(cell.result.budget, []).append(_cost(cell.result.times))
    total = sum(_cost(t) for times in by_method.values() for t in times)
    lines = [
        "| method | phase | cells | wall time per cell (mean) | training per cell (mean) |",
        "|---|---|---|---|---|",
    ]
    for (method, phase), times in sorted(by_method.items()):
        cell_s = statistics.mean(t.get("total_s", 0.0) for t in times)
        train_s = statistics.mean(t.get("train_s", 0.0) for t in times)
        lines.append(
            f"| {method} | {phase} | {len(times)} | {duration(cell_s)} | {duration(train_s) if train_s else '-'} |"
        )
    budgets = sorted(by_budget, key=lambda b: (b == "native", float(b) if b.replace(".", "", 1).isdigit() else 0))
    per_budget = [
        f"{b}{'%' if b != 'native' else ''}: {len(by_budget[b])} cells, {duration(sum(by_budget[b]))}" for b in budgets
    ]
    return [
        f"Total: {duration(total)} of cell wall time over {sum(map(len, by_method.values()))} finished cells "
        "(a selected search cell's later test scoring included); per budget: " + "; ".join(per_budget) + ".\n"
    ] + lines


def _cost(times: dict) -> float:
    """A cell's wall time: its run and, for a selected search cell, its later test scoring."""
    return float(times.get("total_s", 0.0)) + float(times.get("test_scoring_s", 0.0))


def _lr(result) -> float | None:
    return (result.config.get("train") or {}).get("lr")


def _search_table(cells: list[LoadedCell]) -> list[str]:
    """Every searched configuration's validation score (the search cells' seed), and whether it was selected:
    what the board's choices rest on (the test data never enter them)."""
    searched = [c for c in cells if c.status.scored and c.result.validation and c.result.phase]
    if not searched:
        return ["No search cell has finished yet."]
    chosen = {
        (c.result.stage, c.result.method, c.result.budget): c.result.selection["chosen"].get("lr")
        for c in cells
        if c.result.selection and c.result.selection.get("chosen")
    }
    lines = [
        "Each trained method's learning rate is chosen by its mean validation score over the search seeds "
        "(`bench/search.py`); the chosen configuration's search cell is then scored on the test data "
        "(selected: pending until every configuration of the method has its score); status: `collapsed` where the "
        "training loss stayed at chance (bench/collapse.py).\n",
        "| stage | method | budget | lr | seed | validation | metric | value | selected | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(
        searched, key=lambda c: (c.result.stage, c.result.method, c.result.budget, _lr(c.result), c.result.seed)
    )
    for cell in ordered:
        r = cell.result
        lr = _lr(r)
        group = (r.stage, r.method, r.budget)
        picked = "pending" if group not in chosen else ("yes" if chosen[group] == lr else "no")
        for dataset, metrics in sorted(r.validation.items()):
            metric = metric_order(set(metrics))[0]
            lines.append(
                f"| {r.stage} | {r.method} | {r.budget} | {lr:g} | {r.seed} | {dataset} | {metric_label(metric)} "
                f"| {metrics[metric]:.4f} | {picked} | {cell.status.value} |"
            )
    return lines


def seed_table(cells: list[LoadedCell]) -> list[str]:
    """Every trained cell scored on the test data, one row per seed: its headline metric beside its training
    loss at the start and at the end (the mean over the first and the last tenth of the steps), so that a seed
    that never trained (a flat loss) is seen, not only its row's wider interval."""
    scored = [c for c in cells if c.status.scored and c.losses and c.result.metrics]
    if not scored:
        return ["No trained cell has a test score yet."]
    lines = [
        "Each trained cell on the test data, per seed; training loss: the mean over the first and over the last "
        "tenth of its steps.\n",
        "| stage | method | budget | lr | seed | dataset | metric | value | training loss (start → end) | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(scored, key=lambda c: (c.result.stage, c.result.method, str(c.result.budget), c.result.seed))
    for cell in ordered:
        r = cell.result
        lr = _lr(r)
        tenth = max(1, len(cell.losses) // 10)
        start, end = statistics.fmean(cell.losses[:tenth]), statistics.fmean(cell.losses[-tenth:])
        for dataset, metrics in sorted(r.metrics.items()):
            metric = metric_order(set(metrics))[0]
            lines.append(
                f"| {r.stage} | {r.method} | {r.budget} | {'-' if lr is None else f'{lr:g}'} | {r.seed} | {dataset} "
                f"| {metric_label(metric)} | {metrics[metric]:.4f} | {start:.3f} → {end:.3f} | {cell.status.value} |"
            )
    return lines
