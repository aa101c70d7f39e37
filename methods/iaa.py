"""IAA, "inside and aside" (Ma et al., CIKM 2022): Houlsby adapters inside every layer plus aside
bottlenecks that read the input of a block and add to its output after the block's last LayerNorm,
so the inserted modules form a connected pathway. Three block sizes: sub-layer, layer, model."""

from __future__ import annotations

from . import arch as A
from .adapter import insert_serial_adapters
from .inject import add_to_output, attach
from .modules import Bottleneck
from .registry import Knob, Method, register

HIDDEN = (0, "hidden_states")


def aside_sublayers(base, arch, ar: int) -> None:
    d = base.config.hidden_size
    for layer in A.layers(base, arch):
        attention = A.get(layer, arch.attn_sublayer)
        add_to_output(attention, attach(layer, "aside_attn", Bottleneck(d, ar)), source=attention, arg=HIDDEN)
        ffn = A.get(layer, arch.ffn_block)
        add_to_output(ffn, attach(layer, "aside_ffn", Bottleneck(d, ar)), source=ffn, arg=(1, "input_tensor"))


def aside_layers(base, arch, ar: int) -> None:
    d = base.config.hidden_size
    for layer in A.layers(base, arch):
        add_to_output(layer, attach(layer, "aside", Bottleneck(d, ar)), source=layer, arg=HIDDEN)


def aside_model(base, arch, ar: int) -> None:
    stack = A.layers(base, arch)
    host = A.get(base, arch.layers.rpartition(".")[0])
    aside = attach(host, "aside", Bottleneck(base.config.hidden_size, ar))
    add_to_output(stack[-1], aside, source=stack[0], arg=HIDDEN)


def _iaa(name: str, aside, ratios: dict, paper: dict, where: str) -> Method:
    def inject(base, arch, r, ar):
        insert_serial_adapters(base, arch, r)
        aside(base, arch, ar)

    def derive(r: int, budget: float) -> dict:
        nearest = min(ratios, key=lambda named: abs(float(named) - budget))
        return {"r": r, "ar": max(1, round(ratios[nearest] * r))}

    return register(
        Method(
            name=name,
            summary=f"Houlsby adapters (r) inside + aside bottleneck (ar) beside each {where}",
            inject=inject,
            knobs=(Knob("r", int, None, 1, "inside adapter bottleneck"), Knob("ar", int, None, 1, "aside bottleneck")),
            primary="r",
            derive=derive,
            paper=paper,
        )
    )


_iaa(
    "iaa-s",
    aside_sublayers,
    {"0.5": 1.0, "6.7": 1.0},
    {"0.5": {"r": 8, "ar": 8}, "6.7": {"r": 100, "ar": 100}},
    "sub-layer",
)
_iaa(
    "iaa-l", aside_layers, {"0.5": 1.0, "6.7": 6.0}, {"0.5": {"r": 12, "ar": 12}, "6.7": {"r": 50, "ar": 300}}, "layer"
)
_iaa(
    "iaa-m",
    aside_model,
    {"0.5": 1.6, "6.7": 960 / 185},
    {"0.5": {"r": 15, "ar": 24}, "6.7": {"r": 185, "ar": 960}},
    "encoder stack",
)
