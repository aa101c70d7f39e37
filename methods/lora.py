"""LoRA: W x + (alpha/r) B A x on chosen attention projections (default query and value)."""

from __future__ import annotations

from . import arch as A
from .errors import MethodError
from .inject import add_to_output, attach
from .modules import LowRank
from .registry import Knob, Method, register


def target_paths(arch: A.ArchMap, targets: str) -> list[str]:
    chosen = [t.strip() for t in targets.split(",") if t.strip()]
    bad = [t for t in chosen if t not in arch.projections]
    if bad or not chosen:
        raise MethodError(f"lora targets {targets!r}: choose from {', '.join(arch.projections)} (comma-separated)")
    return [arch.projections[t] for t in chosen]


def insert_lora(base, arch: A.ArchMap, r: int, alpha: float, dropout: float, targets: str) -> None:
    for layer in A.layers(base, arch):
        for path in target_paths(arch, targets):
            linear = A.get(layer, path)
            if r > min(linear.in_features, linear.out_features):
                raise MethodError(f"lora r={r} exceeds the projection size {linear.in_features}")
            delta = attach(linear, "lora", LowRank(linear.in_features, linear.out_features, r, alpha, dropout))
            add_to_output(linear, delta, source=linear, arg=(0, "input"))


def _alpha_defaults(knobs: dict) -> dict:
    if knobs.get("alpha") is None and knobs.get("r") is not None:
        knobs["alpha"] = 2.0 * float(knobs["r"])
    return knobs


register(
    Method(
        name="lora",
        summary="LoRA on the attention projections (default q,v); B starts at zero",
        inject=lambda base, arch, r, alpha, dropout, targets: insert_lora(base, arch, r, alpha, dropout, targets),
        knobs=(
            Knob("r", int, None, 1, "rank"),
            Knob("alpha", float, None, 1e-9, "scale numerator; default 2r"),
            Knob("dropout", float, 0.0, 0.0, "dropout on the LoRA input"),
            Knob("targets", str, "q,v", None, "projections among q,k,v,o"),
        ),
        primary="r",
        derive=lambda r, budget: {"r": r},
        paper={"0.5": {"r": 16}, "6.7": {"r": 200}},
        defaults=_alpha_defaults,
        families=("encoder", "causal-lm"),
    )
)
