"""The one place numbers, spreads, durations and plain-text tables are formatted."""

from __future__ import annotations

import statistics
from pathlib import Path


def num(value, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def mean_std(values: list[float], digits: int = 4) -> str:
    if not values:
        return "-"
    if len(values) > 1:
        return f"{statistics.mean(values):.{digits}f}±{statistics.stdev(values):.{digits}f}"
    return f"{values[0]:.{digits}f}"


def duration(seconds: float | None) -> str:
    """``0.4 s``, ``12 s``, ``3 min 04 s``, ``2 h 05 min``."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def dataset_name(ref: str) -> str:
    """A dataset reference as people say it: ``scifact/test``; a folder path shortened to ``folder/split``."""
    if "/" in ref and Path(ref).is_absolute():
        path = Path(ref)
        return f"{path.parent.name}/{path.name}"
    return ref


def render(header: list[str], rows: list[list]) -> str:
    """A plain-text table for the terminal."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


_METRIC_LABELS = {"ndcg": "nDCG", "mrr": "MRR", "recall": "R", "map": "MAP", "precision": "P"}


def metric_label(metric: str) -> str:
    """``ndcg@10`` -> ``nDCG@10`` (the way papers write them)."""
    name, _, cut = metric.partition("@")
    return _METRIC_LABELS.get(name, name) + (f"@{cut}" if cut else "")
