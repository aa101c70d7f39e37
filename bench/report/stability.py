"""Training stability per (stage, method, budget) over seeds: loss band, steps to 90% of the final loss
drop, loss spikes, spread of the final metric, share of diverged runs."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ..results import LoadedCell, Status
from .stats import _role

SPIKE_WINDOW = 20
SPIKE_MADS = 5.0  # a spike sits this many median absolute deviations above the recent median


def steps_to_90(losses: list[float]) -> int | None:
    """First step whose loss (mean of a small window) has covered 90% of the drop from the first tenth
    of training to the last tenth; None when the loss did not drop."""
    if len(losses) < 10:
        return None
    tenth = max(1, len(losses) // 10)
    start, end = statistics.mean(losses[:tenth]), statistics.mean(losses[-tenth:])
    if end >= start:
        return None
    target = start - 0.9 * (start - end)
    window = max(1, tenth // 2)
    for step in range(len(losses)):
        if statistics.mean(losses[max(0, step - window + 1) : step + 1]) <= target:
            return step + 1
    return len(losses)


def spikes(losses: list[float]) -> int:
    """Steps whose loss is more than 5 median absolute deviations above the median of the previous 20
    steps (robust to the ordinary noise of small batches)."""
    count = 0
    for step in range(SPIKE_WINDOW, len(losses)):
        window = losses[step - SPIKE_WINDOW : step]
        median = statistics.median(window)
        mad = statistics.median(abs(x - median) for x in window) or 1e-3
        if losses[step] > median + SPIKE_MADS * mad:
            count += 1
    return count


def smooth(losses: list[float]) -> list[float]:
    """Trailing mean over 2% of the run, for plots: per-step losses of small batches are mostly noise."""
    window = max(1, len(losses) // 50)
    return [statistics.mean(losses[max(0, i - window + 1) : i + 1]) for i in range(len(losses))]


@dataclass
class Stability:
    stage: str
    method: str
    budget: str
    runs: int
    diverged: int
    steps_to_90: list[int]
    spikes: list[int]
    band: tuple[list[float], list[float], list[float]]  # mean, low, high per step over seeds

    @property
    def diverged_share(self) -> float:
        return self.diverged / self.runs if self.runs else 0.0


def loss_band(curves: list[list[float]]) -> tuple[list[float], list[float], list[float]]:
    length = min((len(c) for c in curves), default=0)
    mean, low, high = [], [], []
    for step in range(length):
        values = [c[step] for c in curves]
        m = statistics.mean(values)
        s = statistics.stdev(values) if len(values) > 1 else 0.0
        mean.append(m)
        low.append(m - s)
        high.append(m + s)
    return mean, low, high


def stability(cells: list[LoadedCell]) -> list[Stability]:
    groups: dict[tuple, list[LoadedCell]] = {}
    for cell in cells:
        if not _role(cell.key[1]).trains or cell.status is Status.NOT_APPLICABLE:
            continue
        groups.setdefault(cell.key, []).append(cell)
    out = []
    for (stage, method, budget), members in sorted(groups.items()):
        curves = [c.losses for c in members if c.losses and c.status is Status.DONE]
        out.append(
            Stability(
                stage,
                method,
                budget,
                len(members),
                sum(c.status is Status.DIVERGED for c in members),
                [s for s in (steps_to_90(c) for c in curves) if s is not None],
                [spikes(c) for c in curves],
                loss_band([smooth(c) for c in curves]),
            )
        )
    return out
