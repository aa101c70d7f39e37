"""The systems a grid compares: baselines and PEFT methods, each with a role. Callers ask the role
(``role(name)``), never match names (after pyterrier's Experiment(baseline=...))."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .errors import BenchError


class Role(str, Enum):
    FIRST_STAGE = "first_stage"  # the candidates themselves (BM25): no model, nothing trained
    UNTRAINED = "untrained"  # the backbone scored as it is (zero-shot)
    REFERENCE = "reference"  # full fine-tuning: what every method is compared with
    PEFT = "peft"  # a parameter-efficient method
    OTHER = "other"  # a system this version does not know (another store's, no role recorded): never marked

    @property
    def trains(self) -> bool:
        return self in (Role.REFERENCE, Role.PEFT, Role.OTHER)

    @property
    def baseline(self) -> bool:
        return self in (Role.FIRST_STAGE, Role.UNTRAINED)


@dataclass(frozen=True)
class Baseline:
    name: str
    role: Role
    stages: tuple[str, ...] | None  # None: every stage
    summary: str

    def fits(self, stage) -> bool:
        return self.stages is None or stage.name in self.stages


BASELINES = {
    b.name: b
    for b in (
        Baseline("bm25", Role.FIRST_STAGE, None, "the first stage's own ranking (BM25 or the given run)"),
        Baseline("none", Role.UNTRAINED, ("dense",), "dense: the backbone as a bi-encoder, untrained"),
        Baseline("zero-shot", Role.UNTRAINED, ("qlm",), "qlm: the causal LM's query likelihood, untrained"),
    )
}


def register_baseline(baseline: Baseline) -> Baseline:
    BASELINES[baseline.name] = baseline
    return baseline


def names() -> list[str]:
    import methods

    return list(BASELINES) + methods.names()


def role(name: str) -> Role:
    if name in BASELINES:
        return BASELINES[name].role
    import methods

    if name not in methods.names():
        raise BenchError(f"unknown method {name!r}: choose from all, {', '.join(names())}")
    return Role.REFERENCE if methods.get_method(name).reference else Role.PEFT


def fits(name: str, stage) -> bool:
    """Whether ``name`` has a place in ``stage`` (a baseline's stages, a method's backbone families)."""
    if name in BASELINES:
        return BASELINES[name].fits(stage)
    import methods

    return stage.family in methods.get_method(name).families


def first_stage_name() -> str:
    return next(b.name for b in BASELINES.values() if b.role is Role.FIRST_STAGE)
