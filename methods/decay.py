"""Weight decay: one rule for every method and every head.

Decay applies to the weight matrices of linear maps that train (``nn.Linear.weight``, the input projection
of ``nn.MultiheadAttention``, transformers' ``Conv1D.weight``): adapter, aside and LoRA matrices, a fully
fine-tuned backbone's projections, a scoring head. It never applies to biases, LayerNorm parameters,
embedding tables, or vectors that stand in for tokens (prefix key/value rows, soft-prompt vectors,
Q-PEFT's query table): shrinking those towards zero moves them away from the token embeddings they
start from, and for rows that receive no gradient it is the only update they get.
"""

from __future__ import annotations

import torch.nn as nn


def _linear_kinds() -> tuple:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        return (nn.Linear,)
    return (nn.Linear, Conv1D)


def decayed(model: nn.Module) -> set[int]:
    """Ids of ``model``'s trainable parameters that get weight decay."""
    linear = _linear_kinds()
    ids = set()
    for module in model.modules():
        if isinstance(module, linear) and module.weight.requires_grad:
            ids.add(id(module.weight))
        elif isinstance(module, nn.MultiheadAttention) and module.in_proj_weight is not None:
            if module.in_proj_weight.requires_grad:
                ids.add(id(module.in_proj_weight))
    return ids
