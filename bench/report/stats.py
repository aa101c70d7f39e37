"""The report's numbers: per (stage, dataset, metric, budget) a table of systems, each with its mean over
seeds, a 95% t-interval, k/n finished seeds, significance marks and a rank interval.

- Family: one table, (stage, dataset, metric, budget): the PEFT methods at that budget, full fine-tuning
  and the baselines. Every pair of its systems is tested (``significance.compare``: queries and seeds as
  sources of variance, a seed variance per system) and Holm-corrected within the table alone, so adding a
  dataset, suite or budget to a report changes no p-value or mark of an existing table.
- One query set per table: the queries every tested system scored in every kept seed. Every test, mark,
  rank, difference to full FT and the mean shown beside them are computed on it; a row that scored more
  says how many it lost. A system that scored under half of the table's queries is left out of the tests
  (it would shrink everyone's set) and says so. A seed whose per-query file is missing is dropped alone.
- One cell per (stage, dataset, method, budget, seed): duplicates (an older cell id, an included store)
  count once: a finished one over an unfinished one, then the most recently finished; a warning names both.
- Marks: * significantly above full fine-tuning; † significantly above every other PEFT method of the
  table (no method is picked by its test score: each is tested against all). The direction is the test's
  own difference. A system with failed or diverged seeds (k/n finished, k < n), or whose seed variance is
  borrowed (one seed), gets no mark; with no multi-seed trained system in the table nothing is marked.
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
from .dedup import deduplicated
from .significance import ONE_SEED, SeedVariance, Test, compare, holm, pooled, seed_variance, t_interval

ALPHA = 0.05
METRIC_ORDER = ("ndcg@10", "mrr@10", "mrr@100", "ndcg@100", "recall@100", "recall@1000")


def metric_order(names) -> list[str]:
    """The headline metric (nDCG@10) first, then the usual order, then anything else by name."""
    return sorted(set(names), key=lambda m: (METRIC_ORDER.index(m) if m in METRIC_ORDER else len(METRIC_ORDER), m))


def cutoff(metric: str) -> int | None:
    match = re.search(r"@(\d+)", metric)
    return int(match.group(1)) if match else None


def _role(cell: LoadedCell) -> Role:
    """The role recorded with the cell, else the one this version gives its method; a method this version
    does not know, with no recorded role (another store's), is a system of its own: tested, never marked."""
    recorded = cell.result.role
    if recorded in {r.value for r in Role}:
        return Role(recorded)
    try:
        return role(cell.result.method)
    except Exception:  # noqa: BLE001
        return Role.OTHER


@dataclass
class Row:
    stage: str
    dataset: str
    metric: str
    method: str
    budget: str
    family_budget: str  # the budget of the table the row sits in (full and baselines sit in every one)
    runs: list[dict[str, float]]  # per finished seed with per-query values: query -> value
    values: list[float]  # per finished seed: its mean (over the table's queries once the table is tested)
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
    headline_rank_low: int | None = None  # the rank interval among the rows of the stage's headline table
    headline_rank_high: int | None = None
    family_size: int = 0
    notes: list[str] = field(default_factory=list)
    recorded: list[float] = field(default_factory=list)  # per finished seed: the mean its result records
    folders: list[str] = field(default_factory=list)  # per finished seed with per-query values
    queries: int | None = None  # the table's query set, once tested
    seed_variance: SeedVariance | None = None
    peak_memory_mb: list[float] = field(default_factory=list)  # per finished seed: the process's peak (RSS or GPU)
    trainable: int | None = None  # trainable parameters counted (the head included)
    collapsed: int = 0  # seeds that never trained (bench/collapse.py): out of every mean, test and rank

    @property
    def train_time(self) -> float | None:
        return statistics.mean(self.train_s) if self.train_s else None

    @property
    def memory(self) -> float | None:
        return statistics.mean(self.peak_memory_mb) if self.peak_memory_mb else None

    @property
    def mean(self) -> float:
        return statistics.mean(self.values) if self.values else math.nan

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def ci(self) -> tuple[float, float] | None:
        """The 95% t-interval over the trained seeds, clipped to the metric's range [0, 1]."""
        ci = t_interval(self.values)
        return (max(ci[0], 0.0), min(ci[1], 1.0)) if ci else None

    @property
    def ci_clipped(self) -> bool:
        ci = t_interval(self.values)
        return ci is not None and (ci[0] < 0.0 or ci[1] > 1.0)

    @property
    def seeds(self) -> int:
        return len(self.values)

    @property
    def complete(self) -> bool:
        """Every seed finished (trained or collapsed) and at least one trained."""
        return self.seeds + self.collapsed == self.expected and self.seeds > 0

    @property
    def seeds_label(self) -> str:  # k/n trained
        return f"{self.seeds}/{self.expected}"

    @property
    def collapse_label(self) -> str:
        return f"{self.collapsed}/{self.expected}"

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
    # a search cell that was not selected is read by the selection alone, never by a table
    every = cells
    cells = deduplicated([c for c in cells if c.status is not Status.NOT_APPLICABLE and c.result.phase != "search"])
    groups: dict[tuple, list[LoadedCell]] = {}
    for cell in cells:
        for dataset in cell.datasets:
            groups.setdefault((cell.key[0], dataset) + cell.key[1:], []).append(cell)
    unreachable = _unreachable(every, groups)
    for key, (_why, members) in unreachable.items():
        groups[key] = members
    metrics = metrics or shown_metrics(cells)
    budgets: dict[tuple, set] = {}
    for (stage, dataset, _method, budget), members in groups.items():
        if _role(members[0]) is Role.PEFT:
            budgets.setdefault((stage, dataset), set()).add(budget)
    rows = []
    for (stage, dataset, method, budget), members in sorted(groups.items()):
        system = _role(members[0])
        homes = [budget] if system is Role.PEFT else sorted(budgets.get((stage, dataset), {budget}))
        done = sorted(
            (c for c in members if c.status is Status.DONE and dataset in c.result.metrics), key=lambda c: c.result.seed
        )
        failed = [c for c in members if c.status is Status.FAILED]
        diverged = [c for c in members if c.status is Status.DIVERGED]
        collapsed = [c for c in members if c.status is Status.COLLAPSED]
        want = (expected or {}).get(
            (stage, dataset, method, budget), len(done) + len(failed) + len(diverged) + len(collapsed)
        )
        for metric in metrics.get(stage, []):
            scored = [c for c in done if metric in c.result.metrics[dataset]]
            values = [c.result.metrics[dataset][metric] for c in scored]
            with_queries = [(c, _per_query(c, dataset, metric)) for c in scored]
            missing = [c for c, run in with_queries if not run]
            kept = [(c, run) for c, run in with_queries if run]
            for home in homes:
                row = Row(
                    stage,
                    dataset,
                    metric,
                    method,
                    budget,
                    home,
                    [run for _, run in kept],
                    list(values),
                    max(want, 1),
                    statistics.mean(c.result.pct for c in done) if done else None,
                    system,
                    done[0].result.knobs if done else {},
                    len(failed),
                    len(diverged),
                    [c.result.error for c in failed + diverged if c.result.error],
                    [c.result.times.get("train_s", 0.0) for c in done],
                    recorded=list(values),
                    folders=[str(c.directory) for c, _ in kept],
                    peak_memory_mb=[m for m in (_peak_memory(c.result) for c in done) if m is not None],
                    trainable=_trainable(done),
                    collapsed=len(collapsed),
                )
                if (stage, dataset, method, budget) in unreachable:
                    row.notes.append(unreachable[(stage, dataset, method, budget)][0])
                edge = next((c.result.selection.get("edge_at_cap") for c in done if c.result.selection), None)
                if edge:
                    row.notes.append(
                        f"the chosen configuration is at the {edge} edge of its search after the cap of extensions: "
                        "the best may lie beyond it"
                    )
                if missing and kept:
                    names = ", ".join(c.directory.name for c in missing)
                    row.notes.append(f"seed folder {names} has no per-query values: left out of its tests")
                elif missing:
                    row.notes.append("no per-query values: not tested")
                rows.append(row)
    for row in rows:
        _notes(row)
    if compare:
        for family in families(rows).values():
            _test_family(family)
    return rows


def _unreachable(cells: list[LoadedCell], groups: dict) -> dict[tuple, tuple[str, list[LoadedCell]]]:
    """(stage, dataset, method, budget) -> (why, its cells), for a method and budget every cell of which is
    not applicable (a budget the method cannot reach: the reason names the nearest size it can): a row of its
    own that says so, never a row silently missing."""
    out = {}
    for cell in cells:
        if cell.status is not Status.NOT_APPLICABLE or _role(cell) is not Role.PEFT:
            continue
        for dataset in cell.datasets:
            key = (cell.key[0], dataset) + cell.key[1:]
            if key not in groups:
                out.setdefault(key, (f"not run: {cell.result.error or 'not applicable'}", []))[1].append(cell)
    return out


def _per_query(cell: LoadedCell, dataset: str, metric: str) -> dict[str, float]:
    values = cell.per_query.get(dataset) if isinstance(cell.per_query, dict) else None
    if not isinstance(values, dict):
        return {}
    return {q: float(v[metric]) for q, v in values.items() if isinstance(v, dict) and metric in v}


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
    if row.collapsed:
        row.notes.append(
            f"{row.collapsed} of {row.expected} seeds collapsed (training loss at chance): the mean, interval, "
            f"tests and rank are over the {row.seeds} trained"
        )
    if row.seeds + row.collapsed < row.expected and not any(n.startswith("not run:") for n in row.notes):
        row.notes.append(f"{row.seeds}/{row.expected} seeds finished: the mean is over those; no marks")
    if row.failed or row.diverged:
        reason = f": {row.errors[0]}" if row.errors else ""
        row.notes.append(f"{row.failed} failed, {row.diverged} diverged{reason}")


def _matrix(row: Row, queries: list[str]) -> np.ndarray:
    return np.array([[run[q] for q in queries] for run in row.runs])


def _aligned(rows: list[Row]) -> tuple[list[Row], list[str]]:
    """The rows to test and the table's query set: the queries every kept seed of every tested row scored. A
    row that scored under half of the union is left out (noted) rather than shrinking everyone's set."""
    candidates = [r for r in rows if r.runs]
    union = set().union(*(set(run) for r in candidates for run in r.runs)) if candidates else set()
    tested = []
    for row in candidates:
        own = set.intersection(*(set(run) for run in row.runs))
        if len(own) * 2 < len(union):
            row.notes.append(
                f"scored {len(own)} of the table's {len(union)} queries in every seed: too few to align, not tested"
            )
            continue
        tested.append(row)
    if not tested:
        return [], []
    return tested, sorted(set.intersection(*(set(run) for r in tested for run in r.runs)))


def _test_family(rows: list[Row]) -> None:
    """Every pair of the family's systems tested on one query set, Holm-corrected within the family; marks
    and ranks."""
    tested, queries = _aligned(rows)
    if len(queries) < 2:
        if len(tested) > 1:
            for row in tested:
                row.notes.append("no test: fewer than two queries shared by every system")
        return
    matrices = {id(r): _matrix(r, queries) for r in tested}
    for row in tested:
        own = set.union(*(set(run) for run in row.runs))
        if len(own) > len(queries):
            row.notes.append(
                f"{len(own) - len(queries)} of its {len(own)} queries left out: not scored by every system and seed "
                f"of this table (the table compares {len(queries)})"
            )
        row.values = [float(v) for v in matrices[id(row)].mean(1)]
        row.queries = len(queries)
        if row.role.trains:
            row.seed_variance = seed_variance(matrices[id(row)])
    _borrow(tested)
    pairs = _pairwise(tested, matrices)
    for row in rows:
        row.family_size = len(pairs)
    full = next((r for r in tested if r.role is Role.REFERENCE), None)
    ordered = sorted(tested, key=lambda r: -r.mean)
    for position, row in enumerate(ordered, 1):
        row.rank = position
        row.rank_low, row.rank_high = _rank_interval(row, tested, _beats)
    for row in tested:
        if full is not None and row is not full and full.method in row.tests:
            row.diff_to_full = row.tests[full.method].difference
            row.p_vs_full = row.adjusted.get(full.method)
        if row.role is not Role.PEFT or not _markable(row):
            continue
        if full is not None and _markable(full) and _beats(row, full):
            row.marks += "*"
        others = [o for o in tested if o.role is Role.PEFT and o is not row]
        if others and all(_beats(row, o) for o in others):
            row.marks += "†"
    for row in tested:
        if any(t.procedure == ONE_SEED for t in row.tests.values()) and row.role.trains:
            row.notes.append("1 seed: seed variance not accounted for; no marks")


def _borrow(tested: list[Row]) -> None:
    """A trained row with one seed borrows the pooled seed variance of the multi-seed rows beside it."""
    own = [r.seed_variance for r in tested if r.seed_variance is not None and not r.seed_variance.borrowed]
    borrowed = pooled(own)
    for row in tested:
        if row.role.trains and row.seed_variance is None and borrowed is not None:
            row.seed_variance = borrowed
            row.notes.append(f"1 seed: its seed variance is borrowed from the table's {len(own)} multi-seed systems")


def _pairwise(tested: list[Row], matrices: dict) -> list[tuple[Row, Row]]:
    """Every pair tested, Holm-corrected over the pairs; filled into the rows' ``tests`` and ``adjusted``."""
    pairs, raw = [], []
    for a, b in combinations(tested, 2):
        test = compare(matrices[id(a)], matrices[id(b)], _seeds_of(a), _seeds_of(b))
        if test is None:
            continue
        a.tests[b.method], b.tests[a.method] = test, test.flipped()
        pairs.append((a, b))
        raw.append(test.p)
    for (a, b), p in zip(pairs, holm(raw, ALPHA)):
        a.adjusted[b.method] = b.adjusted[a.method] = p
    return pairs


def _rank_interval(row: Row, rows: list[Row], beats) -> tuple[int, int]:
    above = sum(1 for o in rows if o is not row and beats(o, row))
    below = sum(1 for o in rows if o is not row and beats(row, o))
    return 1 + above, len(rows) - below


def _seeds_of(row: Row):
    if not row.role.trains:
        return False
    return row.seed_variance if row.seed_variance is not None else True


def _markable(row: Row) -> bool:
    """Complete, and with a seed variance of its own (a deterministic system needs none)."""
    if not row.complete:
        return False
    return not row.role.trains or (row.seed_variance is not None and not row.seed_variance.borrowed)


def _beats(a: Row, b: Row) -> bool:
    """Significantly above, in the direction of the test's own difference on the table's queries."""
    p, test = a.adjusted.get(b.method), a.tests.get(b.method)
    return p is not None and p <= ALPHA and test is not None and test.difference > 0


def _peak_memory(result) -> float | None:
    """A cell's peak memory in MB: the GPU's where it ran on one, else the process's resident peak."""
    return result.peak_gpu_memory_mb or result.peak_memory_mb


def _trainable(done) -> int | None:
    counts = [c.result.trainable + (c.result.head or 0) for c in done if c.result.trainable is not None]
    return round(statistics.mean(counts)) if counts else None
