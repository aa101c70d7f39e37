"""Training stability per (stage, training data, method, budget) over seeds: loss bands, a convergence
measure common to every row, loss spikes, and unstable runs (diverged or failed seeds count as
instability, they are not left out).

Convergence: the threshold is the smoothed loss full fine-tuning ends at (its seeds' mean, same stage and
training data); a run's ``steps to full FT's final loss`` is the first step its smoothed loss reaches that
threshold ("-" when it never does). Beside it, the area under the smoothed loss curve (its mean over the
steps; lower: learnt more and earlier). Neither rewards a run for learning less, as the old "steps to 90%
of the run's own drop" did.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ..results import LoadedCell, Status
from ..systems import Role
from .dedup import deduplicated
from .stats import _role

SPIKE_WINDOW = 20
SPIKE_MADS = 5.0  # a spike sits this many median absolute deviations above the recent median


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
    """Trailing mean over 2% of the run: per-step losses of small batches are mostly noise."""
    window = max(1, len(losses) // 50)
    return [statistics.mean(losses[max(0, i - window + 1) : i + 1]) for i in range(len(losses))]


def steps_to(losses: list[float], threshold: float) -> int | None:
    """The first step whose smoothed loss is at or below ``threshold``; None when it never is."""
    for step, value in enumerate(smooth(losses), 1):
        if value <= threshold:
            return step
    return None


def area(losses: list[float]) -> float:
    """The area under the smoothed loss curve per step (its mean)."""
    return statistics.mean(smooth(losses))


@dataclass
class Stability:
    stage: str
    train: str  # training dataset
    method: str
    budget: str
    runs: int
    diverged: int
    failed: int
    threshold: float | None  # full fine-tuning's final smoothed loss (mean over its seeds)
    steps_to_threshold: list[int | None]  # per finished seed
    areas: list[float]
    spikes: list[int]
    band: tuple[list[float], list[float], list[float]]  # mean, low, high per step over seeds

    @property
    def unstable(self) -> int:
        return self.diverged + self.failed

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
    roles = {}
    for cell in deduplicated([c for c in cells if c.result.phase != "search"]):
        roles[cell.key[1]] = _role(cell)
        if not roles[cell.key[1]].trains or cell.status is Status.NOT_APPLICABLE:
            continue
        train = str(cell.result.datasets.get("train"))
        groups.setdefault((cell.key[0], train) + cell.key[1:], []).append(cell)
    thresholds = {}
    for (stage, train, method, _), members in groups.items():
        if roles[method] is Role.REFERENCE:
            finals = [smooth(c.losses)[-1] for c in members if c.losses and c.status is Status.DONE]
            if finals:
                thresholds[(stage, train)] = statistics.mean(finals)
    out = []
    for (stage, train, method, budget), members in sorted(groups.items()):
        curves = [c.losses for c in members if c.losses and c.status is Status.DONE]
        threshold = thresholds.get((stage, train))
        out.append(
            Stability(
                stage,
                train,
                method,
                budget,
                len(members),
                sum(c.status is Status.DIVERGED for c in members),
                sum(c.status is Status.FAILED for c in members),
                threshold,
                [steps_to(c, threshold) if threshold is not None else None for c in curves],
                [area(c) for c in curves],
                [spikes(c) for c in curves],
                loss_band([smooth(c) for c in curves]),
            )
        )
    return out
