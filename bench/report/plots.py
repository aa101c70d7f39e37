"""Inline SVG plots with matplotlib: loss bands per method, the metric against each cost (% trainable
parameters, training time, peak memory) with its Pareto frontier."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Axis:
    """A cost a Pareto plot puts on its x axis: the row's value (None: not plotted) and the axis label."""

    label: str
    value: Callable[[Row], float | None]
    log: bool = True


COST_AXES = (
    Axis("% trainable parameters", lambda r: r.pct if r.pct and r.pct > 0 else None),
    Axis("training time (s, mean over seeds)", lambda r: r.train_time or None),
    Axis("peak memory (MB, mean over seeds)", lambda r: r.memory or None, log=False),
)


def pareto(rows: list[Row], title: str, axis: Axis = COST_AXES[0]) -> str | None:
    """Metric against a cost (``axis``): seed error bars, the frontier (lower cost, higher metric) as a
    step line. Peft's method_comparison plots time and memory without seeds; here each point has them."""
    points = [(axis.value(r), r) for r in rows if r.values and not r.role.baseline]
    points = [(x, r) for x, r in points if x is not None]
    if not points:
        return None
    fig, ax = _figure()
    for x, row in points:
        ax.errorbar(x, row.mean, yerr=row.std or 0.0, fmt="o", capsize=3, label=f"{row.method} {row.budget}")
    frontier, best = [], -math.inf
    for x, row in sorted(points, key=lambda p: p[0]):
        if row.mean > best:
            frontier.append((x, row.mean))
            best = row.mean
    ax.plot([x for x, _ in frontier], [y for _, y in frontier], "k--", linewidth=1, label="Pareto frontier")
    if axis.log:
        ax.set_xscale("log")
    ax.set_xlabel(axis.label + (" (log)" if axis.log else ""))
    ax.set_ylabel(points[0][1].metric)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return _svg(fig)
