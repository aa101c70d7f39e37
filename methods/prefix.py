"""Prefix tuning on the attention module itself: l key and l value rows prepended per layer,
the additive attention mask (and MPNet's position bias) widened to match."""

from __future__ import annotations

import torch

from . import arch as A
from .inject import attach, prepend_positions
from .modules import PrefixKV
from .registry import Knob, register_one_knob

L = Knob("l", int, None, 1, "prefix length")


def insert_prefixes(base, arch: A.ArchMap, l: int) -> None:
    d = base.config.hidden_size
    for layer in A.layers(base, arch):
        attention = A.get(layer, arch.self_attention)
        prefix = attach(attention, "prefix", PrefixKV(l, d))
        key, value = A.get(layer, arch.projections["k"]), A.get(layer, arch.projections["v"])
        _init_from_vocabulary(base, prefix, key, value)
        prepend_positions(attention, key, value, prefix.key, prefix.value, arch.widen_args)


@torch.no_grad()
def _init_from_vocabulary(base, prefix: PrefixKV, key, value) -> None:
    """Start from the keys/values of random vocabulary embeddings (Li & Liang found real activations
    train far better than random vectors)."""
    embeddings = base.get_input_embeddings().weight
    if embeddings.is_meta:
        return
    ids = torch.randint(0, embeddings.shape[0], (prefix.key.shape[0],))
    rows = embeddings[ids]
    prefix.key.copy_(key(rows))
    prefix.value.copy_(value(rows))


register_one_knob(
    "prefix",
    "prefix tuning: l trainable key/value rows per layer (2*L*l*d parameters)",
    lambda base, arch, l: insert_prefixes(base, arch, l),
    L,
    {"0.5": {"l": 32}, "6.7": {"l": 200}},
    revision=2,  # 2: prefix rows take no weight decay (methods/decay.py)
)
