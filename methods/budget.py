"""Budget solver: knobs whose exact count (from a model injected on the meta device) is closest to a
target percentage of the backbone. Needs only a transformers config, never weights."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .count import count
from .errors import BudgetUnreachable, MethodError
from .registry import get_method

TOLERANCE = 0.1  # a solution must land within this share of the target (0.5 accepts 0.45 to 0.55)
NAMED = ("0.5", "6.7")


@dataclass(frozen=True)
class Plan:
    method: str
    budget: str  # as asked: "0.5", "paper:6.7", or "native" for methods with one size
    knobs: dict
    trainable: int
    backbone: int
    pct: float
    applicable: bool
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def parse_budget(budget) -> tuple[str, float | None]:
    """("solve", pct) for a number, ("paper", pct) for "paper:0.5", ("native", None) for None/"native"."""
    if budget is None or budget == "native":
        return "native", None
    text = str(budget).strip()
    mode = "solve"
    if text.startswith("paper:"):
        mode, text = "paper", text[len("paper:") :]
    try:
        pct = float(text)
    except ValueError:
        raise MethodError(f"budget {budget!r} is not a percentage (e.g. 0.5, 6.7, paper:0.5)") from None
    if not 0 < pct <= 100:
        raise MethodError(f"budget {budget!r} must be a percentage in (0, 100]")
    if mode == "paper" and text not in NAMED and f"{pct:g}" not in NAMED:
        raise MethodError(f"budget {budget!r}: the paper's named budgets are {', '.join('paper:' + n for n in NAMED)}")
    return mode, pct


def within(got: float, target: float, tolerance: float = TOLERANCE) -> bool:
    """Whether ``got`` percent matches a budget of ``target`` percent (relative tolerance)."""
    return abs(got - target) <= tolerance * target + 1e-12


def plan(config, name: str, budget=None, pooler: bool = True) -> Plan:
    """Knobs and exact counts for ``name`` at ``budget`` (None: the paper's 0.5% setting; a fixed-size
    method's only setting). ``pooler=False``: the backbone without its pooling layer."""
    method = get_method(name)
    mode, pct = parse_budget(budget)
    label = "native" if mode == "native" else str(budget)
    if method.fixed:
        trainable, backbone = count(config, name, {}, pooler)
        got = 100.0 * trainable / backbone
        ok = pct is None or within(got, pct)
        reason = "" if ok else f"{name} trains {got:.3f}% and has no knob to reach {pct:g}%"
        return Plan(name, label, {}, trainable, backbone, got, ok, reason)
    if mode == "native":
        mode, pct = "paper", 0.5
    if mode == "paper":
        key = f"{pct:g}"
        if key in method.paper:
            knobs = method.resolve_knobs(dict(method.paper[key]))
            trainable, backbone = count(config, name, knobs, pooler)
            return Plan(
                name,
                label,
                knobs,
                trainable,
                backbone,
                100.0 * trainable / backbone,
                True,
                "" if label != "native" else "paper's 0.5% knobs",
            )
    return _solve_primary(config, method, pct, label, pooler)


def _solve_primary(config, method, pct: float, label: str, pooler: bool) -> Plan:
    def evaluate(k: int):
        knobs = method.resolve_knobs(method.derive(k, pct))
        trainable, backbone = count(config, method.name, knobs, pooler)
        return knobs, trainable, backbone

    _, t1, backbone = evaluate(1)
    _, t2, _ = evaluate(2)
    target = pct / 100.0 * backbone
    slope = max(t2 - t1, 1)
    estimate = 1 + (target - t1) / slope
    candidates = range(max(1, math.floor(estimate) - 1), max(1, math.ceil(estimate) + 1) + 1)
    best = None
    for k in candidates:
        try:
            knobs, trainable, _ = evaluate(k)
        except MethodError:
            continue  # past the knob's range (e.g. lora r above the projection size)
        gap = abs(100.0 * trainable / backbone - pct)
        if best is None or gap < best[0]:
            best = (gap, knobs, trainable)
    if best is None:
        knobs, trainable, _ = evaluate(1)
        best = (abs(100.0 * trainable / backbone - pct), knobs, trainable)
    gap, knobs, trainable = best
    got = 100.0 * trainable / backbone
    ok = within(got, pct)
    reason = (
        ""
        if ok
        else (
            f"closest {method.name} setting {knobs} trains {got:.3f}%, not within "
            f"{100 * TOLERANCE:g}% of {pct:g}% ({pct * (1 - TOLERANCE):.4g} to {pct * (1 + TOLERANCE):.4g})"
        )
    )
    return Plan(method.name, label, knobs, trainable, backbone, got, ok, reason)


def solve(config, name: str, budget, pooler: bool = True) -> dict:
    """Knobs for ``name`` at ``budget``; raises BudgetUnreachable rather than pick another budget."""
    result = plan(config, name, budget, pooler)
    if not result.applicable:
        raise BudgetUnreachable(f"budget {budget}% is not reachable: {result.reason}")
    return result.knobs
