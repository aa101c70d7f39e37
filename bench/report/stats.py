"""The report's numbers: per (stage, dataset, metric, budget) a table of systems, each with its mean over
seeds, a 95% t-interval, k/n finished seeds, significance marks and a rank interval.

- Family: one table, (stage, dataset, metric, budget): the PEFT methods at that budget, full fine-tuning
  and the baselines. Every pair of its systems is tested (``significance.compare``: queries and seeds as
  sources of variance) and Holm-corrected within the table alone, so adding a dataset, suite or budget
  to a report changes no p-value or mark of an existing table.
- Marks: * significantly above full fine-tuning; † significantly above every other PEFT method of the
  table (no method is picked by its test score: each is tested against all). A system with failed or
  diverged seeds (k/n finished, k < n) gets no mark and its mean is flagged.
- Rank interval: the best and worst rank a system can take given the corrected tests: 1 + the systems
  significantly above it, n - the systems significantly below it.
- A metric whose cutoff exceeds the candidate depth (nDCG@100 over a top-20 rerank) is not shown.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from ..results import LoadedCell, Status
from ..systems import Role, role
from .significance import Test, compare, holm, t_interval

ALPHA = 0.05
METRIC_ORDER = ("ndcg@10", "mrr@10", "mrr@100", "ndcg@100", "recall@100", "recall@1000")


def metric_order(names) -> list[str]:
    """The headline metric (nDCG@10) first, then the usual order, then anything else by name."""
    return sorted(set(names), key=lambda m: (METRIC_ORDER.index(m) if m in METRIC_ORDER else len(METRIC_ORDER), m))


def cutoff(metric: str) -> int | None:
    match = re.search(r"@(\d+)", metric)
    return int(match.group(1)) if match else None


def _role(method: str) -> Role:
    try:
        return role(method)
    except Exception:  # noqa: BLE001  (a method this version does not know, from another store)
        return Role.PEFT


@dataclass
class Row:
    stage: str
    dataset: str
    metric: str
    method: str
    budget: str
    family_budget: str  # the budget of the table the row sits in (full and baselines sit in every one)
    runs: list[dict[str, float]]  # per finished seed: query -> value
    values: list[float]  # per finished seed: the mean over its queries (as its result records)
    expected: int  # seeds the grid asks for
    pct: float | None
    role: Role = Role.PEFT
    knobs: dict = field(default_factory=dict)
    failed: int = 0
    diverged: int = 0
    errors: list[str] = field(default_factory=list)
    train_s: list[float] = field(default_factory=list)
    diff_to_full: float | None = None
    p_vs_full: float | None = None  # Holm-corrected within the family
    tests: dict[str, Test] = field(default_factory=dict)  # other method -> raw test
    adjusted: dict[str, float] = field(default_factory=dict)  # other method -> corrected p
    marks: str = ""
    rank: int | None = None
    rank_low: int | None = None
    rank_high: int | None = None
    family_size: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.mean(self.values) if self.values else math.nan

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def ci(self) -> tuple[float, float] | None:
        return t_interval(self.values)

    @property
    def seeds(self) -> int:
        return len(self.values)

    @property
    def complete(self) -> bool:
        return self.seeds == self.expected and self.seeds > 0

    @property
    def seeds_label(self) -> str:
        return f"{self.seeds}/{self.expected}"

    @property
    def family(self) -> str:
        return f"{self.stage} · {self.dataset} · {self.metric} · budget {self.family_budget}"


def _depth(cell: LoadedCell) -> int | None:
    depth = (cell.result.config.get("eval") or {}).get("depth")
    return int(depth) if depth else None


def build_rows(
    cells: list[LoadedCell],
    metrics: dict[str, list[str]] | None = None,
    compare: bool = True,
    expected: dict[tuple, int] | None = None,
) -> list[Row]:
    """Rows per family (stage, dataset, metric, budget) and system. ``metrics``: stage -> metric names
    (default: those the results hold, less those deeper than the candidates); ``expected``: (stage,
    dataset, method, budget) -> seeds the grid asks for (default: the cells present); ``compare``: fill the
    tests, marks and ranks."""
    groups: dict[tuple, list[LoadedCell]] = {}
    for cell in cells:
        if cell.status is Status.NOT_APPLICABLE:
            continue
        for dataset in cell.datasets:
            groups.setdefault((cell.key[0], dataset) + cell.key[1:], []).append(cell)
    metrics = metrics or shown_metrics(cells)
    budgets: dict[tuple, set] = {}
    for stage, dataset, method, budget in groups:
        if _role(method) is Role.PEFT:
            budgets.setdefault((stage, dataset), set()).add(budget)
    rows = []
    for (stage, dataset, method, budget), members in sorted(groups.items()):
        system = _role(method)
        homes = [budget] if system is Role.PEFT else sorted(budgets.get((stage, dataset), {budget}))
        done = [c for c in members if c.status is Status.DONE and dataset in c.result.metrics]
        failed = [c for c in members if c.status is Status.FAILED]
        diverged = [c for c in members if c.status is Status.DIVERGED]
        want = (expected or {}).get((stage, dataset, method, budget), len(done) + len(failed) + len(diverged))
        for metric in metrics.get(stage, []):
            values = [c.result.metrics[dataset][metric] for c in done if metric in c.result.metrics[dataset]]
            runs = [{q: v[metric] for q, v in c.per_query.get(dataset, {}).items() if metric in v} for c in done]
            for home in homes:
                rows.append(
                    Row(
                        stage,
                        dataset,
                        metric,
                        method,
                        budget,
                        home,
                        runs,
                        values,
                        max(want, 1),
                        statistics.mean(c.result.pct for c in done) if done else None,
                        system,
                        done[0].result.knobs if done else {},
                        len(failed),
                        len(diverged),
                        [c.result.error for c in failed + diverged if c.result.error],
                        [c.result.times.get("train_s", 0.0) for c in done],
                    )
                )
    for row in rows:
        _notes(row)
    if compare:
        for family in families(rows).values():
            _test_family(family)
    return rows


def shown_metrics(cells: list[LoadedCell]) -> dict[str, list[str]]:
    """Per stage, the metrics its results hold whose cutoff does not exceed the candidate depth (all of them,
    labelled with the depth in the report, when none would be left)."""
    found: dict[str, set] = {}
    depth: dict[str, int] = {}
    for cell in cells:
        for values in cell.result.metrics.values():
            found.setdefault(cell.key[0], set()).update(values)
        if _depth(cell):
            depth[cell.key[0]] = min(depth.get(cell.key[0], _depth(cell)), _depth(cell))
    out = {}
    for stage, names in found.items():
        honest = [m for m in metric_order(names) if not (cutoff(m) and stage in depth and cutoff(m) > depth[stage])]
        out[stage] = honest or metric_order(names)
    return out


def hidden_metrics(cells: list[LoadedCell]) -> dict[str, tuple[list[str], int | None, bool]]:
    """Per stage: (the metrics whose cutoff exceeds the candidate depth, that depth, whether they are shown
    anyway because no other metric is left)."""
    shown = shown_metrics(cells)
    out = {}
    for cell in cells:
        depth = _depth(cell)
        deep = sorted(
            m for values in cell.result.metrics.values() for m in values if cutoff(m) and depth and cutoff(m) > depth
        )
        if deep:
            out[cell.key[0]] = (metric_order(deep), depth, all(m in shown.get(cell.key[0], []) for m in deep))
    return out


def families(rows: list[Row]) -> dict[tuple, list[Row]]:
    out: dict[tuple, list[Row]] = {}
    for row in rows:
        out.setdefault((row.stage, row.dataset, row.metric, row.family_budget), []).append(row)
    return out


def _notes(row: Row) -> None:
    if row.seeds < row.expected:
        row.notes.append(f"{row.seeds}/{row.expected} seeds finished: the mean is over those; no marks")
    if row.failed or row.diverged:
        reason = f": {row.errors[0]}" if row.errors else ""
        row.notes.append(f"{row.failed} failed, {row.diverged} diverged{reason}")
    if row.runs:
        every = set.intersection(*(set(r) for r in row.runs))
        partial = set.union(*(set(r) for r in row.runs)) - every
        if partial:
            row.notes.append(f"{len(partial)} queries scored in some seeds only: left out of its tests")


def _matrix(row: Row, queries: list[str]) -> np.ndarray:
    return np.array([[run[q] for q in queries] for run in row.runs])


def _test_family(rows: list[Row]) -> None:
    """Every pair of the family's systems tested, Holm-corrected within the family; marks and ranks."""
    tested = [r for r in rows if r.runs]
    pairs, raw = [], []
    for a, b in combinations(tested, 2):
        queries = sorted(set.intersection(*(set(run) for run in a.runs + b.runs)))
        test = compare(_matrix(a, queries), _matrix(b, queries), a.role.trains, b.role.trains) if queries else None
        if test is None:
            continue
        a.tests[b.method], b.tests[a.method] = test, test
        pairs.append((a, b))
        raw.append(test.p)
    for (a, b), p in zip(pairs, holm(raw, ALPHA)):
        a.adjusted[b.method] = b.adjusted[a.method] = p
    for row in rows:
        row.family_size = len(pairs)
    full = next((r for r in tested if r.role is Role.REFERENCE), None)
    ordered = sorted(tested, key=lambda r: -r.mean)
    for position, row in enumerate(ordered, 1):
        row.rank = position
        above = sum(1 for o in tested if o is not row and _beats(o, row))
        below = sum(1 for o in tested if o is not row and _beats(row, o))
        row.rank_low, row.rank_high = 1 + above, len(tested) - below
    for row in tested:
        if full is not None and row is not full:
            row.diff_to_full = row.mean - full.mean
            row.p_vs_full = row.adjusted.get(full.method)
        if row.role is not Role.PEFT or not row.complete:
            continue
        if full is not None and full.complete and _beats(row, full):
            row.marks += "*"
        others = [o for o in tested if o.role is Role.PEFT and o is not row]
        if others and all(_beats(row, o) for o in others):
            row.marks += "†"
    for row in tested:
        procedures = {t.procedure for t in row.tests.values()}
        if any("1 seed" in p for p in procedures):
            row.notes.append("1 seed: seed variance not accounted for")
        if not row.tests and len(tested) > 1:
            row.notes.append("no test: fewer than two shared queries")


def _beats(a: Row, b: Row) -> bool:
    p = a.adjusted.get(b.method)
    return p is not None and p <= ALPHA and a.mean > b.mean
