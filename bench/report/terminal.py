"""The terminal leaderboard: one row per (dataset, stage, method, budget) from the report's aggregation."""

from __future__ import annotations

import statistics

from ..fmt import dataset_name, duration, mean_std, metric_label, render
from .stats import Row


def leaderboard(rows: list[Row]) -> str:
    """Headline metrics (the first two of each stage) as mean±std over seeds; baselines without budget
    or percentage; failed and diverged cells with their reason."""
    groups: dict[tuple, dict[str, Row]] = {}
    stage_metrics: dict[str, list[str]] = {}
    for row in rows:  # full fine-tuning and the baselines sit in every budget's table: once here
        groups.setdefault((row.dataset, row.stage, row.method, row.budget), {}).setdefault(row.metric, row)
        names = stage_metrics.setdefault(row.stage, [])
        if row.metric not in names:
            names.append(row.metric)
    headline = sorted(
        {m for names in stage_metrics.values() for m in names[:2]},
        key=lambda m: min(names.index(m) for names in stage_metrics.values() if m in names),
    )
    lines, problems = [], []
    for (dataset, stage, method, budget), by_metric in groups.items():
        first = next(iter(by_metric.values()))
        baseline = first.role.baseline
        line = [
            dataset_name(dataset),
            stage,
            method,
            "-" if baseline else budget,
            "-" if baseline or first.pct is None else f"{first.pct:.3f}",
        ]
        line += [mean_std(by_metric[m].values) if m in by_metric else "" for m in headline]
        line += [
            first.seeds if baseline else first.seeds_label,
            duration(statistics.mean(first.train_s)) if first.train_s and not baseline else "-",
        ]
        head = by_metric.get(headline[0]) if headline else None
        lines.append((dataset, stage, -(head.mean if head is not None and head.values else float("-inf")), line))
        if first.failed or first.diverged:
            reason = first.errors[0] if first.errors else ""
            problems.append(
                f"{method} {budget} ({stage}, {dataset_name(dataset)}): {first.failed} failed, "
                f"{first.diverged} diverged" + (f": {reason}" if reason else "")
            )
        if first.collapsed:
            problems.append(
                f"{method} {budget} ({stage}, {dataset_name(dataset)}): {first.collapse_label} seeds collapsed "
                "(training loss at chance): the mean is over the trained seeds"
            )
    lines.sort(key=lambda item: item[:3])
    table = render(
        ["dataset", "stage", "method", "budget", "% params", *map(metric_label, headline), "trained", "train time"],
        [line for *_, line in lines],
    )
    return table + ("\n" + "\n".join(problems) if problems else "")
