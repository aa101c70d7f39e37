"""A collapsed cell: one that never trained. Decided from its training losses alone, before any test score
is seen, so a collapse is counted as what it says about stability and kept out of every mean of quality.

The rule: the mean training loss over the last tenth of the steps run is within ``TOLERANCE`` (nats) of
the stage's loss at chance (``Stage.chance_loss``; the listwise softmax over a group of g: ln g). On the
published SciFact rerank board (51 cells) the collapsed cells sit at -0.001 to +0.004 of chance; the
nearest trained cell at -0.016 (prefix at its lowest lr, validation 0.195), every other below -0.24.

The early stop: at ``CHECKPOINT`` of the planned steps, a cell whose trailing tenth is already at chance
stops there. On the same board a trained cell sat at chance at most until 65% of its steps (IAA-S at
1e-3, which then learnt to -0.29); every collapsed cell was at chance from 20% on.

Runs of fewer than ``MIN_STEPS`` planned steps are never judged: such a run may sit at chance for want of
steps (a toy grid's 3), which says nothing about its stability."""

from __future__ import annotations

import math

TOLERANCE = 0.01
WINDOW = 0.1  # of the planned steps
CHECKPOINT = 0.75  # of the planned steps
MIN_STEPS = 100  # a trailing window of 10 steps at least


def window(total_steps: int) -> int:
    return max(1, int(round(WINDOW * total_steps)))


def at_chance(losses: list[float], chance: float | None, total_steps: int | None = None) -> bool:
    """The trailing window's mean loss within the tolerance of chance (False when the stage has no
    chance level, or the run is too short to judge)."""
    planned = total_steps or len(losses)
    if chance is None or planned < MIN_STEPS or len(losses) < window(planned):
        return False
    tail = losses[-window(planned) :]
    return all(math.isfinite(v) for v in tail) and sum(tail) / len(tail) >= chance - TOLERANCE


def checkpoint_step(total_steps: int) -> int | None:
    """The step after which the early stop looks (None when the run is too short to have one)."""
    step = int(math.ceil(CHECKPOINT * total_steps))
    return step if total_steps >= MIN_STEPS else None
