"""Budget curves: a metric against a cost (% trainable parameters, training time, peak memory), one line per
PEFT method through its budgets, the band of its trained seeds (lowest to highest) at each point, full
fine-tuning (its mean and seed band) and the untrained systems (first stage, zero-shot) as horizontal
references, and a point's collapsed seeds written beside it. Rendered from the rows alone, as SVG: inline in
the site and as files ``bench report`` writes for a README."""

from __future__ import annotations

import re
from pathlib import Path

from ..files import atomic_write_text
from ..fmt import metric_label
from ..systems import Role
from .plots import COST_AXES, Axis, _figure, _svg
from .ranks import headline_rows
from .stats import Row

AXIS_NAMES = ("params", "time", "memory")  # file-name part per COST_AXES entry


def _x(axis: Axis, row: Row) -> float | None:
    return axis.value(row) if row.values else None


def curve(rows: list[Row], title: str, axis: Axis = COST_AXES[0]) -> str | None:
    """One table's rows (a stage, dataset and metric; every budget): the curve plot, None without a PEFT
    point to draw."""
    if not _lines(rows, axis):
        return None
    fig, ax = _figure(7.2, 4.2)
    draw(ax, rows, axis)
    ax.set_title(title, fontsize=9)
    return _svg(fig)


def _lines(rows: list[Row], axis: Axis) -> dict[str, list[tuple[float, Row]]]:
    lines: dict[str, list[tuple[float, Row]]] = {}
    for row in rows:
        x = _x(axis, row)
        if row.role is Role.PEFT and x is not None:
            lines.setdefault(row.method, []).append((x, row))
    return lines


def draw(ax, rows: list[Row], axis: Axis) -> None:
    lines = _lines(rows, axis)
    for method, points in sorted(lines.items()):
        points.sort(key=lambda p: p[0])
        xs = [x for x, _ in points]
        (line,) = ax.plot(xs, [r.mean for _, r in points], "o-", linewidth=1.3, markersize=4, label=method)
        lows, highs = [min(r.values) for _, r in points], [max(r.values) for _, r in points]
        if len(points) > 1:
            ax.fill_between(xs, lows, highs, alpha=0.15, color=line.get_color(), linewidth=0)
        ax.vlines(xs, lows, highs, color=line.get_color(), linewidth=1, alpha=0.6)
        for x, row in points:
            if row.collapsed:
                ax.annotate(
                    f"{row.collapse_label} collapsed",
                    (x, row.mean),
                    textcoords="offset points",
                    xytext=(4, -10),
                    fontsize=6,
                    color=line.get_color(),
                )
    _references(ax, rows)
    if axis.log:
        ax.set_xscale("log")
    ax.set_xlabel(axis.label + (" (log)" if axis.log else ""))
    ax.set_ylabel(metric_label(rows[0].metric) + " (mean; band: lowest to highest trained seed)")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the lines stay visible


def _references(ax, rows: list[Row]) -> None:
    """Full fine-tuning's mean (solid) and seed band, the untrained systems' values (dashed)."""
    for row in rows:
        if not row.values:
            continue
        if row.role is Role.REFERENCE:
            ax.axhline(row.mean, color="black", linewidth=1.2, label=f"{row.method} ({row.seeds_label} seeds)")
            ax.axhspan(min(row.values), max(row.values), color="black", alpha=0.08, linewidth=0)
        elif row.role.baseline:
            ax.axhline(row.mean, color="gray", linestyle="--", linewidth=1, label=row.method)


def tables(rows: list[Row]) -> dict[tuple, list[Row]]:
    """Per (stage, dataset, metric): its headline rows (each PEFT row once, at its budget)."""
    return dict(sorted(headline_rows(rows).items()))


def listed(rows: list[Row]) -> list[tuple[str, str, list[Row], Axis]]:
    """(file stem, title, the table's rows, axis) per table and cost axis that has a PEFT point."""
    out = []
    for (stage, dataset, metric), members in tables(rows).items():
        for name, axis in zip(AXIS_NAMES, COST_AXES, strict=True):
            if _lines(members, axis):
                title = f"{stage} · {dataset} · {metric_label(metric)} against {axis.label}"
                out.append((stem(stage, dataset, metric, name), title, members, axis))
    return out


def figures(rows: list[Row]) -> list[tuple[str, str, str]]:
    """(file stem, title, svg) per table and cost axis that has a PEFT point."""
    return [(name, title, curve(members, title, axis)) for name, title, members, axis in listed(rows)]


def stem(stage: str, dataset: str, metric: str, axis: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", f"{stage}-{dataset}-{metric}-{axis}").strip("-")


def write(rows: list[Row], folder: Path) -> list[tuple[str, Path]]:
    """Every figure as ``folder/curves/<stem>.svg``; (title, path) per file written."""
    written = []
    for name, title, svg in figures(rows):
        path = Path(folder) / "curves" / f"{name}.svg"
        atomic_write_text(path, '<?xml version="1.0" encoding="utf-8" standalone="no"?>\n' + svg)
        written.append((title, path))
    return written
