"""Build a suite's report: leaderboard files and a self-contained static site (inline CSS, JS, SVG)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from ..errors import BenchError
from ..files import atomic_write_text
from ..fmt import metric_label, num
from ..results import LoadedCell, Status
from ..systems import Role
from . import budget_table, export, plots, search_views
from . import curves as budget_curves
from .ranks import in_headline
from .stability import Stability, smooth, stability
from .stats import Row, build_rows, hidden_metrics


def paper_numbers() -> dict[tuple, float]:
    data = json.loads(resources.files("bench.report").joinpath("paper_tables.json").read_text())
    return {(e["stage"], e["dataset"], e["metric"], e["method"], e["budget"]): e["value"] for e in data["entries"]}


def _paper_value(row: Row, cells: list[LoadedCell], table: dict) -> float | None:
    """The paper's figure where the cell repeats its setting: BERT-base, same dataset, method, budget."""
    models = {c.result.model for c in cells if c.key == (row.stage, row.method, row.budget)}
    if models != {"bert-base"}:
        return None
    budget = row.budget.removeprefix("paper:")
    return table.get((row.stage, row.dataset, row.metric, row.method, budget))


def page_name(cell: LoadedCell) -> str:
    """The cell's page: named after its folder (one path component, never a path read from a file)."""
    return cell.directory.name


def _view_rows(rows: list[Row], cells: list[LoadedCell]) -> list[dict]:
    table, views = paper_numbers(), []
    for r in rows:
        members = [c for c in cells if c.key == (r.stage, r.method, r.budget) and c.status is Status.DONE]
        paper = _paper_value(r, cells, table)
        chosen = search_views.row_selection(members, r.stage, r.method, r.budget)
        setting = export.paper_setting(r)
        ci = r.ci
        views.append(
            {
                "stage": r.stage,
                "dataset": r.dataset,
                "metric": r.metric,
                "method": r.method,
                "budget": r.budget,
                "table": r.family_budget,
                "cell": page_name(members[0]) if len(members) == 1 else None,
                "pct": num(r.pct, 3) if r.pct else "-",
                "pct_v": r.pct or 0,
                "knobs": export.knobs_text(r.knobs),
                "paper_knobs": f"{export.knobs_text(setting[0])}, {setting[1]:g}%" if setting else "",
                "seeds": r.seeds_label,
                "complete": r.complete or r.role.baseline,
                "collapsed": "-" if r.role.baseline else r.collapse_label,
                "collapsed_n": r.collapsed,
                "mean": num(r.mean) if r.values else "-",
                "mean_v": r.mean if r.values else "",
                "std": num(r.std),
                "ci": f"{ci[0]:.4f} to {ci[1]:.4f}" if ci else "",
                "diff": num(r.diff_to_full),
                "diff_v": "" if r.diff_to_full is None else r.diff_to_full,
                "p_full": num(r.p_vs_full),
                "p_full_v": "" if r.p_vs_full is None else r.p_vs_full,
                "marks": r.marks,
                "rank": ""
                if r.rank_low is None
                else (f"{r.rank_low}" if r.rank_low == r.rank_high else f"{r.rank_low}-{r.rank_high}"),
                "rank_v": r.rank or "",
                "family": r.family_size,
                "paper": num(paper, 3),
                "notes": "; ".join(r.notes),
                "searched": chosen["searched"],
                "chosen": chosen["chosen"],
                "validation": chosen["validation"],
            }
        )
    return views


def _headline_views(rows: list[Row]) -> list[dict]:
    views = []
    for stage, metric, datasets, lines in export.headline(rows):
        views.append(
            {
                "stage": stage,
                "metric": metric_label(metric),
                "datasets": datasets,
                "lines": [
                    {
                        "method": method,
                        "budget": "-" if role.baseline else budget,
                        "pct": num(pct, 3) if pct else "-",
                        "seeds": "-" if role.baseline else seeds,
                        "reference": role is not Role.PEFT,
                        "cells": [export.cell_text(by_dataset.get(d), headline=True) for d in datasets],
                        "cost": export.cost_text(by_dataset.get(datasets[0]) or next(iter(by_dataset.values()))),
                    }
                    for method, budget, pct, seeds, role, by_dataset in lines
                ],
            }
        )
    return views


def _stability_views(items: list[Stability]) -> list[dict]:
    def steps(values):
        return ", ".join("-" if v is None else str(v) for v in values) or "-"

    return [
        {
            "stage": s.stage,
            "train": s.train,
            "method": s.method,
            "budget": s.budget,
            "runs": s.runs,
            "unstable": f"{s.diverged} diverged, {s.failed} failed" if s.unstable else "0",
            "threshold": num(s.threshold),
            "steps": steps(s.steps_to_threshold),
            "area": ", ".join(f"{a:.3f}" for a in s.areas) or "-",
            "spikes": ", ".join(map(str, s.spikes)) or "-",
        }
        for s in items
    ]


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("bench.report", "templates"), autoescape=True)


def build(
    cells: list[LoadedCell],
    suite: str,
    out: Path,
    source: str = "",
    expected: dict | None = None,
    folder: str | None = None,
    note: str = "",
) -> Path:
    """Leaderboard files and the static site of ``cells`` under ``out/<folder or suite>/``; the path of
    index.html. ``expected``: (stage, dataset, method, budget) -> the seeds the grid asks for; ``note``:
    the suite's note, shown under its leaderboards."""
    if not cells:
        raise BenchError(
            f"suite {suite!r}: no cell has a result yet under {source or 'the run store'}: nothing to report"
        )
    rows = build_rows(cells, expected=expected)
    items = stability(cells)
    notes = []
    for stage, (names, depth, kept) in hidden_metrics(cells).items():
        listed = ", ".join(map(metric_label, names))
        notes.append(
            f"{stage}: {listed} cut off deeper than the {depth} candidates: shown, as no metric is shallower"
            if kept
            else f"{stage}: {listed} not shown: their cutoff exceeds the candidate depth ({depth})"
        )
    target = Path(out) / (folder or suite)
    atomic_write_text(target / "leaderboard.csv", export.to_csv(rows))
    searches = search_views.selections(cells)
    search_notes = search_views.summary_lines(searches, cells)
    atomic_write_text(target / "leaderboard.md", export.to_markdown(rows, [note] * bool(note) + notes + search_notes))
    atomic_write_text(target / "leaderboard.tex", export.to_latex(rows))
    figures = [(title, path.relative_to(target).as_posix()) for title, path in budget_curves.write(rows, target)]
    if budget_table.several_budgets(rows):
        atomic_write_text(target / "budgets.csv", budget_table.to_csv(rows, cells))
        atomic_write_text(target / "budgets.md", budget_table.to_markdown(rows, cells))
        atomic_write_text(target / "budgets.tex", budget_table.to_latex(rows, cells))
    env = _environment()
    for cell in cells:
        atomic_write_text(target / "cells" / f"{page_name(cell)}.html", _cell_page(env, suite, cell))
    index = _index_page(
        env, suite, source, cells, rows, items, notes, searches, search_notes[len(searches) :], note, figures
    )
    atomic_write_text(target / "index.html", index)
    return target / "index.html"


def _index_page(
    env,
    suite: str,
    runs: str,
    cells: list[LoadedCell],
    rows: list[Row],
    items: list[Stability],
    notes: list[str],
    searches: list[dict],
    cost: list[str],
    note: str = "",
    figures: list[tuple[str, str]] = (),
) -> str:
    trained = [c for c in cells if c.status is Status.DONE and c.result.model]
    first = trained[0].result if trained else cells[0].result
    counts = {}
    for cell in cells:
        counts[cell.status.value] = counts.get(cell.status.value, 0) + 1
    stages = sorted({r.stage for r in rows})
    unique = [r for r in rows if in_headline(rows, r)]
    pareto = [
        (
            f"{stage} · {dataset} · nDCG@10 against {axis.label}",
            plots.pareto(
                [r for r in unique if (r.stage, r.dataset, r.metric) == (stage, dataset, "ndcg@10")],
                f"{stage} · {dataset}",
                axis,
            ),
        )
        for stage, dataset in sorted({(r.stage, r.dataset) for r in rows})
        for axis in plots.COST_AXES
    ]
    curves = [
        (f"{stage}: training loss", plots.loss_curves([s for s in items if s.stage == stage], stage))
        for stage in stages
    ]
    filters = [
        ("stage", stages),
        ("dataset", sorted({r.dataset for r in rows})),
        ("metric", sorted({r.metric for r in rows})),
        ("table", sorted({r.family_budget for r in rows})),
        ("method", sorted({r.method for r in rows})),
    ]
    return env.get_template("index.html").render(
        suite=suite,
        note=note,
        runs=str(runs),
        rows=_view_rows(rows, cells),
        headline=_headline_views(rows),
        filters=filters,
        default_metric="ndcg@10",
        counts=", ".join(f"{n} {status}" for status, n in sorted(counts.items())),
        procedures=export.PROCEDURES + notes + cost,
        searches=searches,
        model=first.model or "-",
        device=first.device or "-",
        commit=first.git_commit or "-",
        pareto=[(t, s) for t, s in pareto if s],
        budget_curves=list(figures),
        curves=[(t, s) for t, s in curves if s],
        stability=_stability_views(items),
        cells=[
            {
                "id": page_name(c),
                "stage": c.key[0],
                "method": c.key[1],
                "budget": c.key[2],
                "seed": c.result.seed,
                "status": c.status.value,
                "error": c.result.error,
            }
            for c in cells
        ],
    )


def _cell_page(env, suite: str, cell: LoadedCell) -> str:
    r = cell.result
    metrics = r.metrics
    names = sorted({m for values in metrics.values() for m in values})
    curve = None
    if cell.losses:
        smoothed = smooth(cell.losses)
        curve = plots.loss_curves(
            [
                Stability(
                    cell.key[0], "", cell.key[1], cell.key[2], 1, 0, 0, None, [], [], [], (smoothed, smoothed, smoothed)
                )
            ],
            "training loss (smoothed)",
        )
    return env.get_template("cell.html").render(
        suite=suite,
        cell_id=r.cell_id or page_name(cell),
        method=cell.key[1],
        budget=cell.key[2],
        stage=cell.key[0],
        seed=r.seed,
        status=cell.status.value,
        error=r.error,
        knobs=json.dumps(r.knobs),
        trainable=r.trainable,
        backbone=r.backbone,
        pct=num(r.pct, 3),
        device=r.device or "-",
        commit=r.git_commit or "-",
        times=json.dumps(r.times),
        memory=num(r.peak_memory_mb, 0),
        metric_names=names,
        metrics=[(d, {m: num(v) for m, v in values.items()}) for d, values in metrics.items()],
        validation=[(d, {m: num(v) for m, v in values.items()}) for d, values in r.validation.items()],
        phase=r.phase or "",
        selection=search_views.selections([cell]),
        curve=curve,
        config=json.dumps(r.config, indent=2, sort_keys=True, default=str),
        versions=json.dumps(r.versions, indent=2, sort_keys=True),
    )
