"""Mix-and-match adapter (He et al. 2022): prefix tuning on attention plus a scaled parallel
bottleneck beside the feed-forward sub-layer (reads the FFN input, adds to the FFN output before
its Add & Norm)."""

from __future__ import annotations

from . import arch as A
from .inject import add_to_output, attach
from .modules import Bottleneck
from .prefix import insert_prefixes
from .registry import Knob, Method, register


def insert_mam(base, arch: A.ArchMap, r: int, l: int, scale: float) -> None:
    insert_prefixes(base, arch, l)
    d = base.config.hidden_size
    for layer in A.layers(base, arch):
        ffn = A.get(layer, arch.ffn_block)
        parallel = attach(ffn, "parallel_adapter", Bottleneck(d, r))
        add_to_output(A.get(layer, arch.ffn_dropout), parallel, source=ffn, arg=(1, "input_tensor"), scale=scale)


register(
    Method(
        name="mam",
        revision=3,  # 2: its prefix rows take no weight decay (methods/decay.py); 3: prefix.py's keys-only rows
        summary="mix-and-match: prefix (l) on attention + parallel FFN adapter (r), scaled by s",
        inject=lambda base, arch, r, l, scale: insert_mam(base, arch, r, l, scale),
        knobs=(
            Knob("r", int, None, 1, "parallel adapter bottleneck"),
            Knob("l", int, None, 1, "prefix length"),
            Knob("scale", float, 4.0, 0.0, "parallel adapter output scale (He et al.: 4)"),
        ),
        primary="r",
        derive=lambda r, budget: {"r": r, "l": r},
        paper={"0.5": {"r": 16, "l": 16}, "6.7": {"r": 200, "l": 200}},
    )
)
