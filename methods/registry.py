"""The method registry: every PEFT method is one ``Method`` registered by its family's file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import MethodError

# what a sparse embedding table may be built from: the hint's own wrapper text ("hints:", "\n"), the
# training queries' tokens, the tokens of the passages a training query can meet
TOKEN_SOURCES = frozenset({"hint_wrapper", "train_queries", "train_passages", "template"})


@dataclass(frozen=True)
class Knob:
    name: str
    kind: type  # int, float or str
    default: object = None  # None: required (or derived, see Method.defaults)
    minimum: float | None = None
    help: str = ""


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    # attaches the method's modules to the base model (through methods.inject); knobs as keywords
    inject: Callable | None = None
    # for methods that train existing backbone tensors: (name, parameter) -> trains it?
    selects: Callable | None = None
    knobs: tuple = ()
    # knob solved by the budget solver, and a function (primary value, budget pct) -> all knobs
    primary: str | None = None
    derive: Callable | None = None
    # knobs the IAA paper used at its named budgets ("0.5", "6.7")
    paper: dict = field(default_factory=dict)
    # fills derived defaults (e.g. lora alpha = 2r) after the user's knobs are known
    defaults: Callable | None = None
    # the backbone families it can tune (see arch.ArchMap.family)
    families: tuple = ("encoder",)
    # where the vocabulary rows of a sparse embedding table come from (its inject then takes ``token_ids``):
    # any of TOKEN_SOURCES; the caller (a stage) collects them from its data
    token_sources: frozenset = frozenset()
    # the reference every other method is compared with (full fine-tuning)
    reference: bool = False
    # raised whenever what the method trains or how it trains changes, so that results of the earlier
    # revision are not taken for today's (a cell's id includes it past 1)
    revision: int = 1

    def __post_init__(self):
        object.__setattr__(self, "token_sources", frozenset(self.token_sources))
        unknown = sorted(self.token_sources - TOKEN_SOURCES)
        if unknown:
            raise ValueError(
                f"method {self.name}: unknown token source {unknown[0]!r} (known: {sorted(TOKEN_SOURCES)})"
            )

    @property
    def takes_token_ids(self) -> bool:
        return bool(self.token_sources)

    @property
    def fixed(self) -> bool:
        """No knob to solve: the method has exactly one size (full, bitfit)."""
        return self.primary is None

    def resolve_knobs(self, given: dict) -> dict:
        known = {k.name: k for k in self.knobs}
        unknown = sorted(set(given) - set(known))
        if unknown:
            valid = ", ".join(known) or "none"
            raise MethodError(f"method {self.name!r} has no knob {unknown[0]!r} (its knobs: {valid})")
        knobs = {k.name: given.get(k.name, k.default) for k in self.knobs}
        if self.defaults:
            knobs = self.defaults(knobs)
        for knob in self.knobs:
            knobs[knob.name] = _check(self.name, knob, knobs[knob.name])
        return knobs


def _check(method: str, knob: Knob, value):
    if value is None:
        raise MethodError(f"method {method!r} needs knob {knob.name!r} ({knob.help}); give it or a budget")
    try:
        if knob.kind is int and (isinstance(value, bool) or float(value) != int(float(value))):
            raise ValueError
        value = knob.kind(value) if knob.kind is not int else int(float(value))
    except (TypeError, ValueError):
        raise MethodError(f"method {method!r}: knob {knob.name}={value!r} must be {knob.kind.__name__}") from None
    if knob.minimum is not None and value < knob.minimum:
        raise MethodError(f"method {method!r}: knob {knob.name}={value} is out of range (minimum {knob.minimum})")
    return value


def solved_by(knob: Knob) -> dict:
    """The Method fields of a method whose one knob is what the budget solver turns."""
    return {"knobs": (knob,), "primary": knob.name, "derive": lambda value, budget: {knob.name: value}}


def register_one_knob(name: str, summary: str, inject: Callable, knob: Knob, paper: dict, revision: int = 1) -> Method:
    """A method with one knob, solved from the budget; ``paper``: its knobs at the IAA paper's budgets."""
    return register(
        Method(name=name, summary=summary, inject=inject, paper=paper, revision=revision, **solved_by(knob))
    )


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in _REGISTRY:
        raise RuntimeError(f"method {method.name} registered twice")
    _REGISTRY[method.name] = method
    return method


def get_method(name: str) -> Method:
    if name not in _REGISTRY:
        raise MethodError(f"unknown method {name!r}: choose from {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def names() -> list[str]:
    return list(_REGISTRY)
