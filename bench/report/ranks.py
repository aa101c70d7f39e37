"""Rank intervals over the rows of each headline table: the table shows every PEFT row (each at its budget)
beside full fine-tuning and the baselines, so its intervals are ranks among those rows, from a family of
pairwise tests of their own (Holm over its pairs), not the per-budget families' ranks."""

from __future__ import annotations

from dataclasses import replace

from ..systems import Role
from .significance import seed_variance
from .stats import Row, _aligned, _beats, _borrow, _matrix, _pairwise, _rank_interval


def in_headline(rows: list[Row], row: Row) -> bool:
    """Whether the headline shows this row: every PEFT row; a reference or baseline row sits in every
    budget's family, and the headline shows it once, its first budget's copy."""
    if row.role is Role.PEFT:
        return True
    key = (row.stage, row.method, row.dataset, row.metric)
    return row.family_budget == min(r.family_budget for r in rows if (r.stage, r.method, r.dataset, r.metric) == key)


def headline_rows(rows: list[Row]) -> dict[tuple, list[Row]]:
    """Per (stage, dataset, metric): the rows of its headline table."""
    out: dict[tuple, list[Row]] = {}
    for r in rows:
        if in_headline(rows, r):
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
