"""Rank intervals over the rows of each headline table: the table shows every PEFT row (each at its budget)
beside full fine-tuning and the baselines, so its intervals are ranks among those rows, from a family of
pairwise tests of their own (Holm over its pairs), not the per-budget families' ranks."""

from __future__ import annotations

from dataclasses import replace

from ..systems import Role
from .significance import seed_variance
from .stats import Row, _aligned, _beats, _borrow, _matrix, _pairwise, _rank_interval


def headline_rows(rows: list[Row]) -> dict[tuple, list[Row]]:
    """Per (stage, dataset, metric): the rows of its headline table, every PEFT row (each at its budget) and
    full fine-tuning and the baselines once (the copy in their first budget's family)."""
    first: dict[tuple, str] = {}
    for r in rows:
        key = (r.stage, r.dataset, r.metric, r.method, r.budget)
        first[key] = min(first.get(key, r.family_budget), r.family_budget)
    out: dict[tuple, list[Row]] = {}
    for r in rows:
        if r.role is Role.PEFT or r.family_budget == first[(r.stage, r.dataset, r.metric, r.method, r.budget)]:
            out.setdefault((r.stage, r.dataset, r.metric), []).append(r)
    return out


def headline_ranks(rows: list[Row]) -> None:
    """Rank intervals over the rows of each headline table (every budget together): its own family of
    pairwise tests, Holm over its pairs, so an interval reads as a rank among the rows printed beside it."""
    for members in headline_rows(rows).values():
        tested, queries = _aligned([r for r in members if r.runs])
        if len(tested) < 2 or len(queries) < 2:
            continue
        # a copy per row, named method@budget: two budgets of one method are two rows here
        copies = {id(r): replace(r, method=f"{r.method}@{r.budget}", tests={}, adjusted={}, notes=[]) for r in tested}
        matrices = {id(c): _matrix(r, queries) for r, c in ((r, copies[id(r)]) for r in tested)}
        for c in copies.values():
            c.seed_variance = seed_variance(matrices[id(c)]) if c.role.trains else None
        _borrow(list(copies.values()))
        _pairwise(list(copies.values()), matrices)
        for row in tested:
            row.headline_rank_low, row.headline_rank_high = _rank_interval(
                copies[id(row)], list(copies.values()), _beats
            )
