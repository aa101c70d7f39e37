"""Inline SVG plots with matplotlib: loss bands per method, metric against % trainable parameters."""

from __future__ import annotations

import io
import math

from .stability import Stability
from .stats import Row


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})  # same store, same page
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prologue: the SVG sits inside HTML


def _figure(width=6.4, height=3.6):
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "bench"  # stable ids: the same store gives the same page
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def loss_curves(items: list[Stability], title: str) -> str | None:
    items = [s for s in items if s.band[0]]
    if not items:
        return None
    fig, ax = _figure()
    for item in items:
        mean, low, high = item.band
        steps = range(1, len(mean) + 1)
        (line,) = ax.plot(steps, mean, label=f"{item.method} {item.budget}", linewidth=1.2)
        ax.fill_between(steps, low, high, alpha=0.2, color=line.get_color())
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean ± std over seeds)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return _svg(fig)


def pareto(rows: list[Row], title: str) -> str | None:
    """Metric against % trainable parameters (log scale), seed error bars, the frontier as a step line."""
    points = [r for r in rows if r.values and r.pct and r.pct > 0]
    if not points:
        return None
    fig, ax = _figure()
    for row in points:
        ax.errorbar(row.pct, row.mean, yerr=row.std or 0.0, fmt="o", capsize=3, label=f"{row.method} {row.budget}")
    frontier, best = [], -math.inf
    for row in sorted(points, key=lambda r: r.pct):
        if row.mean > best:
            frontier.append(row)
            best = row.mean
    ax.plot([r.pct for r in frontier], [r.mean for r in frontier], "k--", linewidth=1, label="Pareto frontier")
    ax.set_xscale("log")
    ax.set_xlabel("% trainable parameters (log)")
    ax.set_ylabel(points[0].metric)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return _svg(fig)
