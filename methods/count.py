"""Exact counts without weights: a model built from a transformers config on the meta device, the
method injected, its trainable tensors counted."""

from __future__ import annotations

import torch

from .core import inject

_COUNTS: dict = {}


def count(config, name: str, knobs: dict, pooler: bool = True) -> tuple[int, int]:
    """(trainable, backbone) of ``name`` with ``knobs``, counted on an injected meta-device model
    (``pooler=False``: built without its pooling layer, as a bi-encoder uses it)."""
    key = (config.to_json_string(use_diff=False), name, tuple(sorted(knobs.items())), pooler)
    if key not in _COUNTS:
        from transformers import AutoModel

        # initialising modules draws from the CPU generator even on the meta device: counting must leave it
        # as it was, or a cell's weights would depend on whether an earlier cell in the process had already
        # counted (cached) these knobs
        with torch.random.fork_rng(devices=[]):
            with torch.device("meta"):
                model = AutoModel.from_config(config, **({} if pooler else {"add_pooling_layer": False}))
            record = inject(model, name, knobs)
        _COUNTS[key] = (record.trainable, record.backbone)
    return _COUNTS[key]
