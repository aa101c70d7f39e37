"""Exact counts without weights: a model built from a transformers config on the meta device, the
method injected, its trainable tensors counted."""

from __future__ import annotations

import torch

from .core import inject

_COUNTS: dict = {}


def count(config, name: str, knobs: dict) -> tuple[int, int]:
    """(trainable, backbone) of ``name`` with ``knobs``, counted on an injected meta-device model."""
    key = (config.to_json_string(use_diff=False), name, tuple(sorted(knobs.items())))
    if key not in _COUNTS:
        from transformers import AutoModel

        with torch.device("meta"):
            model = AutoModel.from_config(config)
        record = inject(model, name, knobs)
        _COUNTS[key] = (record.trainable, record.backbone)
    return _COUNTS[key]
