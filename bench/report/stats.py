"""Aggregates over seeds and significance: paired tests over queries (ranx's paired t-test) on
per-query metrics averaged over seeds, Holm-corrected across every comparison of a report."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from ..results import LoadedCell, Status
from ..systems import Role, role

ALPHA = 0.05
METRIC_ORDER = ("ndcg@10", "mrr@10", "mrr@100", "ndcg@100", "recall@100", "recall@1000")


def metric_order(names) -> list[str]:
    """The headline metric (nDCG@10) first, then the usual order, then anything else by name."""
    return sorted(set(names), key=lambda m: (METRIC_ORDER.index(m) if m in METRIC_ORDER else len(METRIC_ORDER), m))


@dataclass
class Row:
    stage: str
    dataset: str
    metric: str
    method: str
    budget: str
    values: list[float]  # one per finished seed
    pct: float | None
    per_query: dict[str, float]  # query -> value averaged over seeds
    role: Role = Role.PEFT
    failed: int = 0
    diverged: int = 0
    errors: list[str] = field(default_factory=list)
    train_s: list[float] = field(default_factory=list)
    diff_to_full: float | None = None
    p_vs_full: float | None = None  # Holm-corrected
    p_vs_best: float | None = None
    best_other: str | None = None
    marks: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.mean(self.values) if self.values else math.nan

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def seeds(self) -> int:
        return len(self.values)


def _role(method: str) -> Role:
    try:
        return role(method)
    except Exception:  # noqa: BLE001  (a method this version does not know, from another store)
        return Role.PEFT


def build_rows(cells: list[LoadedCell], metrics: dict[str, list[str]] | None = None, compare: bool = True) -> list[Row]:
    """One row per (stage, dataset, metric, method, budget); ``metrics`` maps stage -> metric names
    (default: those the stage's results hold). ``compare``: fill the significance tests and marks."""
    groups: dict[tuple, list[LoadedCell]] = {}
    for cell in cells:
        for dataset in cell.datasets:
            groups.setdefault((cell.key[0], dataset) + cell.key[1:], []).append(cell)
    if metrics is None:
        found: dict[str, set] = {}
        for cell in cells:
            for values in cell.result.metrics.values():
                found.setdefault(cell.key[0], set()).update(values)
        metrics = {stage: metric_order(names) for stage, names in found.items()}
    rows = []
    for (stage, dataset, method, budget), members in sorted(groups.items()):
        done = [c for c in members if c.status is Status.DONE and dataset in c.result.metrics]
        failed = [c for c in members if c.status is Status.FAILED]
        diverged = [c for c in members if c.status is Status.DIVERGED]
        if not done and not (failed or diverged):
            continue  # not applicable at this budget
        for metric in metrics.get(stage, []):
            values = [c.result.metrics[dataset][metric] for c in done if metric in c.result.metrics[dataset]]
            if not values and not (failed or diverged):
                continue
            pct = statistics.mean(c.result.pct for c in done) if done else None
            rows.append(
                Row(
                    stage,
                    dataset,
                    metric,
                    method,
                    budget,
                    values,
                    pct,
                    _average_per_query(done, dataset, metric),
                    _role(method),
                    len(failed),
                    len(diverged),
                    [c.result.error for c in failed + diverged if c.result.error],
                    [c.result.times.get("train_s", 0.0) for c in done],
                )
            )
    if compare:
        _compare(rows)
    return rows


def _average_per_query(cells: list[LoadedCell], dataset: str, metric: str) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for cell in cells:
        for query, values in cell.per_query.get(dataset, {}).items():
            if metric in values:
                sums.setdefault(query, []).append(values[metric])
    return {q: statistics.mean(v) for q, v in sums.items() if len(v) == len(cells)}


def paired_p_value(a: dict[str, float], b: dict[str, float]) -> float | None:
    """Two-sided paired t-test (ranx) over the queries both systems share; None with fewer than two."""
    import numpy as np
    from ranx.statistical_tests import paired_student_t_test

    queries = sorted(set(a) & set(b))
    if len(queries) < 2:
        return None
    x, y = np.array([a[q] for q in queries]), np.array([b[q] for q in queries])
    if np.allclose(x, y):
        return 1.0
    p_value, _ = paired_student_t_test(x, y, max_p=ALPHA)
    return None if math.isnan(p_value) else float(p_value)


def holm(p_values: list[float]) -> list[float]:
    from statsmodels.stats.multitest import multipletests

    if not p_values:
        return []
    return [float(p) for p in multipletests(p_values, alpha=ALPHA, method="holm")[1]]


def _compare(rows: list[Row]) -> None:
    """Fill diff to full, corrected p-values against full and against the best other PEFT method at the
    same budget, and the paper's marks (* beats full FT, † beats the best other PEFT method)."""
    by_setting: dict[tuple, list[Row]] = {}
    for row in rows:
        by_setting.setdefault((row.stage, row.dataset, row.metric), []).append(row)
    pending = []  # (row, field, raw p)
    for setting_rows in by_setting.values():
        full = next((r for r in setting_rows if r.role is Role.REFERENCE and r.values), None)
        peft = [r for r in setting_rows if r.role is Role.PEFT and r.values]
        for row in setting_rows:
            if full is not None and row is not full and row.values:
                row.diff_to_full = row.mean - full.mean
                if row.role is not Role.FIRST_STAGE:
                    pending.append((row, "p_vs_full", paired_p_value(row.per_query, full.per_query)))
        for row in peft:
            others = [r for r in peft if r.budget == row.budget and r is not row]
            if not others:
                continue
            best = max(others, key=lambda r: r.mean)
            row.best_other = best.method
            pending.append((row, "p_vs_best", paired_p_value(row.per_query, best.per_query)))
    testable = [(row, name, p) for row, name, p in pending if p is not None]
    for (row, name, _), corrected in zip(testable, holm([p for _, _, p in testable])):
        setattr(row, name, corrected)
    for row, name, p in pending:
        if p is None:
            row.notes.append(
                "no test: fewer than two shared queries"
                if name == "p_vs_full"
                else "no test against the best other method: fewer than two shared queries"
            )
    for setting_rows in by_setting.values():
        full = next((r for r in setting_rows if r.role is Role.REFERENCE and r.values), None)
        for row in setting_rows:
            if full is not None and row.p_vs_full is not None and row.mean > full.mean and row.p_vs_full <= ALPHA:
                row.marks += "*"
            best = next((r for r in setting_rows if r.method == row.best_other and r.budget == row.budget), None)
            if best is not None and row.p_vs_best is not None and row.mean > best.mean and row.p_vs_best <= ALPHA:
                row.marks += "†"
            if row.seeds == 1:
                row.notes.append("1 seed: no spread")
            if row.failed or row.diverged:
                row.notes.append(f"{row.failed} failed, {row.diverged} diverged")
