"""Build a suite's report: leaderboard files and a self-contained static site (inline CSS, JS, SVG)."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from .. import store
from ..evaluate import STAGE_METRICS
from . import export, plots
from .load import Cell, load_cells
from .stability import Stability, smooth, stability
from .stats import Row, build_rows


def paper_numbers() -> dict[tuple, float]:
    data = json.loads(resources.files("bench.report").joinpath("paper_tables.json").read_text())
    return {(e["stage"], e["dataset"], e["metric"], e["method"], e["budget"]): e["value"] for e in data["entries"]}


def _paper_value(row: Row, cells: list[Cell], table: dict) -> float | None:
    """The paper's figure where the cell repeats its setting: BERT-base, same dataset, method, budget."""
    models = {c.result.get("model") for c in cells if c.key == (row.stage, row.method, row.budget)}
    if models != {"bert-base"}:
        return None
    budget = row.budget.removeprefix("paper:")
    return table.get((row.stage, row.dataset, row.metric, row.method, budget))


def _fmt(value, digits=4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _view_rows(rows: list[Row], cells: list[Cell]) -> list[dict]:
    table, views = paper_numbers(), []
    for r in rows:
        members = [c for c in cells if c.key == (r.stage, r.method, r.budget) and c.status == "done"]
        paper = _paper_value(r, cells, table)
        views.append({
            "stage": r.stage, "dataset": r.dataset, "metric": r.metric, "method": r.method, "budget": r.budget,
            "cell": members[0].result["cell_id"] if len(members) == 1 else None,
            "pct": _fmt(r.pct, 3) if r.pct else "-", "pct_v": r.pct or 0, "seeds": r.seeds,
            "mean": _fmt(r.mean) if r.values else "-", "mean_v": r.mean if r.values else "",
            "std": _fmt(r.std), "diff": _fmt(r.diff_to_full), "diff_v": "" if r.diff_to_full is None else r.diff_to_full,
            "p_full": _fmt(r.p_vs_full), "p_full_v": "" if r.p_vs_full is None else r.p_vs_full,
            "best_other": r.best_other or "", "p_best": _fmt(r.p_vs_best),
            "p_best_v": "" if r.p_vs_best is None else r.p_vs_best, "marks": r.marks,
            "paper": _fmt(paper, 3), "notes": "; ".join(r.notes)})
    return views


def _stability_views(items: list[Stability], rows: list[Row]) -> list[dict]:
    views = []
    for s in items:
        finals = [r for r in rows if (r.stage, r.method, r.budget) == (s.stage, s.method, s.budget)
                  and r.metric == "ndcg@10"]
        spread = "; ".join(f"{r.dataset}: {r.std:.4f}" for r in finals if r.std is not None) or "1 seed"
        views.append({"stage": s.stage, "method": s.method, "budget": s.budget, "runs": s.runs,
                      "diverged": f"{s.diverged} ({100 * s.diverged_share:.0f}%)",
                      "steps": ", ".join(map(str, s.steps_to_90)) or "-", "spikes": ", ".join(map(str, s.spikes)) or "-",
                      "spread": spread})
    return views


def _environment() -> "jinja2.Environment":
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("bench.report", "templates"), autoescape=True)


def build(runs: Path, suite: str, out: Path) -> Path:
    cells = load_cells(runs, suite)
    if not cells:
        from ..errors import BenchError
        raise BenchError(f"suite {suite!r} under {runs} has no finished cells yet: nothing to report")
    rows = build_rows(cells, {stage: list(metrics) for stage, metrics in STAGE_METRICS.items()})
    items = stability(cells)
    target = Path(out) / suite
    store.atomic_write_text(target / "leaderboard.csv", export.to_csv(rows))
    store.atomic_write_text(target / "leaderboard.md", export.to_markdown(rows))
    store.atomic_write_text(target / "leaderboard.tex", export.to_latex(rows))
    env = _environment()
    for cell in cells:
        store.atomic_write_text(target / "cells" / f"{cell.result['cell_id']}.html", _cell_page(env, suite, cell))
    store.atomic_write_text(target / "index.html", _index_page(env, suite, runs, cells, rows, items))
    return target / "index.html"


def _index_page(env, suite: str, runs: Path, cells: list[Cell], rows: list[Row], items: list[Stability]) -> str:
    trained = [c for c in cells if c.status == "done" and c.result.get("model")]
    first = trained[0].result if trained else cells[0].result
    counts = {}
    for cell in cells:
        counts[cell.status] = counts.get(cell.status, 0) + 1
    stages = sorted({r.stage for r in rows})
    pareto = [(f"{stage} · {dataset} · nDCG@10", plots.pareto(
        [r for r in rows if (r.stage, r.dataset, r.metric) == (stage, dataset, "ndcg@10")], f"{stage} · {dataset}"))
        for stage, dataset in sorted({(r.stage, r.dataset) for r in rows})]
    curves = [(f"{stage}: training loss", plots.loss_curves([s for s in items if s.stage == stage], stage))
              for stage in stages]
    filters = [("stage", stages), ("dataset", sorted({r.dataset for r in rows})),
               ("metric", sorted({r.metric for r in rows})), ("method", sorted({r.method for r in rows})),
               ("budget", sorted({r.budget for r in rows}))]
    n_tests = sum((r.p_vs_full is not None) + (r.p_vs_best is not None) for r in rows)
    return env.get_template("index.html").render(
        suite=suite, runs=str(runs), rows=_view_rows(rows, cells), filters=filters, default_metric="ndcg@10",
        counts=", ".join(f"{n} {status}" for status, n in sorted(counts.items())), n_tests=n_tests,
        model=first.get("model") or first.get("config", {}).get("model", "-"), device=first.get("device", "-"),
        commit=first.get("git_commit", "-"), pareto=[(t, s) for t, s in pareto if s],
        curves=[(t, s) for t, s in curves if s], stability=_stability_views(items, rows),
        cells=[{"id": c.result.get("cell_id"), "stage": c.key[0], "method": c.key[1], "budget": c.key[2],
                "seed": c.result.get("seed", c.result.get("config", {}).get("seed")), "status": c.status,
                "error": c.result.get("error", "")} for c in cells])


def _cell_page(env, suite: str, cell: Cell) -> str:
    r = cell.result
    metrics = r.get("metrics", {})
    names = sorted({m for values in metrics.values() for m in values})
    curve = None
    if cell.losses:
        smoothed = smooth(cell.losses)
        curve = plots.loss_curves([Stability(cell.key[0], cell.key[1], cell.key[2], 1, 0, [], [],
                                             (smoothed, smoothed, smoothed))], "training loss (smoothed)")
    return env.get_template("cell.html").render(
        suite=suite, cell_id=r.get("cell_id"), method=cell.key[1], budget=cell.key[2], stage=cell.key[0],
        seed=r.get("seed"), status=cell.status, error=r.get("error", ""), knobs=json.dumps(r.get("knobs", {})),
        trainable=r.get("trainable", "-"), backbone=r.get("backbone", "-"), pct=_fmt(r.get("pct"), 3),
        device=r.get("device", "-"), commit=r.get("git_commit", "-"), times=json.dumps(r.get("times", {})),
        memory=_fmt(r.get("peak_memory_mb"), 0), metric_names=names,
        metrics=[(d, {m: _fmt(v) for m, v in values.items()}) for d, values in metrics.items()],
        curve=curve, config=json.dumps(r.get("config", {}), indent=2, sort_keys=True),
        versions=json.dumps(r.get("versions", {}), indent=2, sort_keys=True))


