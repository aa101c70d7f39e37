"""Build a suite's report: leaderboard files and a self-contained static site (inline CSS, JS, SVG)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from ..errors import BenchError
from ..files import atomic_write_text
from ..fmt import num
from ..results import LoadedCell, Status
from . import export, plots
from .stability import Stability, smooth, stability
from .stats import Row, build_rows


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
        views.append(
            {
                "stage": r.stage,
                "dataset": r.dataset,
                "metric": r.metric,
                "method": r.method,
                "budget": r.budget,
                "cell": page_name(members[0]) if len(members) == 1 else None,
                "pct": num(r.pct, 3) if r.pct else "-",
                "pct_v": r.pct or 0,
                "seeds": r.seeds,
                "mean": num(r.mean) if r.values else "-",
                "mean_v": r.mean if r.values else "",
                "std": num(r.std),
                "diff": num(r.diff_to_full),
                "diff_v": "" if r.diff_to_full is None else r.diff_to_full,
                "p_full": num(r.p_vs_full),
                "p_full_v": "" if r.p_vs_full is None else r.p_vs_full,
                "best_other": r.best_other or "",
                "p_best": num(r.p_vs_best),
                "p_best_v": "" if r.p_vs_best is None else r.p_vs_best,
                "marks": r.marks,
                "paper": num(paper, 3),
                "notes": "; ".join(r.notes),
            }
        )
    return views


def _stability_views(items: list[Stability], rows: list[Row]) -> list[dict]:
    views = []
    for s in items:
        finals = [
            r for r in rows if (r.stage, r.method, r.budget) == (s.stage, s.method, s.budget) and r.metric == "ndcg@10"
        ]
        spread = "; ".join(f"{r.dataset}: {r.std:.4f}" for r in finals if r.std is not None) or "1 seed"
        views.append(
            {
                "stage": s.stage,
                "method": s.method,
                "budget": s.budget,
                "runs": s.runs,
                "diverged": f"{s.diverged} ({100 * s.diverged_share:.0f}%)",
                "steps": ", ".join(map(str, s.steps_to_90)) or "-",
                "spikes": ", ".join(map(str, s.spikes)) or "-",
                "spread": spread,
            }
        )
    return views


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("bench.report", "templates"), autoescape=True)


def build(cells: list[LoadedCell], suite: str, out: Path, source: str = "") -> Path:
    """Leaderboard files and the static site of ``cells`` under ``out/<suite>/``; the path of index.html."""
    if not cells:
        raise BenchError(
            f"suite {suite!r}: no cell has a result yet under {source or 'the run store'}: nothing to report"
        )
    rows = build_rows(cells)
    items = stability(cells)
    target = Path(out) / suite
    atomic_write_text(target / "leaderboard.csv", export.to_csv(rows))
    atomic_write_text(target / "leaderboard.md", export.to_markdown(rows))
    atomic_write_text(target / "leaderboard.tex", export.to_latex(rows))
    env = _environment()
    for cell in cells:
        atomic_write_text(target / "cells" / f"{page_name(cell)}.html", _cell_page(env, suite, cell))
    atomic_write_text(target / "index.html", _index_page(env, suite, source, cells, rows, items))
    return target / "index.html"


def _index_page(env, suite: str, runs: str, cells: list[LoadedCell], rows: list[Row], items: list[Stability]) -> str:
    trained = [c for c in cells if c.status is Status.DONE and c.result.model]
    first = trained[0].result if trained else cells[0].result
    counts = {}
    for cell in cells:
        counts[cell.status.value] = counts.get(cell.status.value, 0) + 1
    stages = sorted({r.stage for r in rows})
    pareto = [
        (
            f"{stage} · {dataset} · nDCG@10",
            plots.pareto(
                [r for r in rows if (r.stage, r.dataset, r.metric) == (stage, dataset, "ndcg@10")],
                f"{stage} · {dataset}",
            ),
        )
        for stage, dataset in sorted({(r.stage, r.dataset) for r in rows})
    ]
    curves = [
        (f"{stage}: training loss", plots.loss_curves([s for s in items if s.stage == stage], stage))
        for stage in stages
    ]
    filters = [
        ("stage", stages),
        ("dataset", sorted({r.dataset for r in rows})),
        ("metric", sorted({r.metric for r in rows})),
        ("method", sorted({r.method for r in rows})),
        ("budget", sorted({r.budget for r in rows})),
    ]
    n_tests = sum((r.p_vs_full is not None) + (r.p_vs_best is not None) for r in rows)
    return env.get_template("index.html").render(
        suite=suite,
        runs=str(runs),
        rows=_view_rows(rows, cells),
        filters=filters,
        default_metric="ndcg@10",
        counts=", ".join(f"{n} {status}" for status, n in sorted(counts.items())),
        n_tests=n_tests,
        model=first.model or "-",
        device=first.device or "-",
        commit=first.git_commit or "-",
        pareto=[(t, s) for t, s in pareto if s],
        curves=[(t, s) for t, s in curves if s],
        stability=_stability_views(items, rows),
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
            [Stability(cell.key[0], cell.key[1], cell.key[2], 1, 0, [], [], (smoothed, smoothed, smoothed))],
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
        curve=curve,
        config=json.dumps(r.config, indent=2, sort_keys=True, default=str),
        versions=json.dumps(r.versions, indent=2, sort_keys=True),
    )
