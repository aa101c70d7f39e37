"""Bottleneck adapters inside the layers: Houlsby (two per layer) and Pfeiffer (one, on the FFN); the
adapters library's DoubleSeqBnConfig and SeqBnConfig placements (see docs/methods.md)."""

from __future__ import annotations

from . import arch as A
from .inject import add_then_renormalize, add_to_output, attach
from .modules import Bottleneck
from .registry import Knob, register_one_knob

R = Knob("r", int, None, 1, "adapter bottleneck size")


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def insert_serial_adapters(base, arch: A.ArchMap, r: int, sites=("attn", "ffn")) -> None:
    """A residual bottleneck after each chosen sub-layer's output projection (after its dropout),
    before that sub-layer's Add & Norm."""
    d = base.config.hidden_size
    paths = {"attn": arch.attn_dropout, "ffn": arch.ffn_dropout}
    for layer in A.layers(base, arch):
        for site in sites:
            dropout_path = paths[site]
            host = A.get(layer, _parent(dropout_path))
            adapter = attach(host, "adapter", Bottleneck(d, r))
            add_to_output(A.get(layer, dropout_path), adapter)


def insert_pfeiffer_adapters(base, arch: A.ArchMap, r: int) -> None:
    """One bottleneck per layer on the feed-forward sub-layer, as the adapters library's SeqBnConfig: the
    block's own Add & Norm first, the bottleneck on its output, then the same LayerNorm again over the
    sub-layer output + residual + bottleneck."""
    d = base.config.hidden_size
    for layer in A.layers(base, arch):
        block = A.get(layer, arch.ffn_block)
        adapter = attach(block, "adapter", Bottleneck(d, r))
        add_then_renormalize(block, A.get(layer, arch.ffn_norm), adapter)


register_one_knob(
    "adapter",
    "Houlsby adapters: a bottleneck after each sub-layer, 2 per layer",
    lambda base, arch, r: insert_serial_adapters(base, arch, r),
    R,
    {"0.5": {"r": 16}, "6.7": {"r": 200}},
)
register_one_knob(
    "adapter-pfeiffer",
    "Pfeiffer adapters (SeqBn): one bottleneck per layer on the feed-forward sub-layer's output",
    insert_pfeiffer_adapters,
    R,
    {"0.5": {"r": 32}},
    revision=2,  # 2: the SeqBn placement (1: a Houlsby-style bottleneck before the FFN's Add & Norm)
)
