"""apply(): knobs from a budget (the solver) or given, then the one injection; apply_towers for models
holding several transformers."""

from __future__ import annotations

import torch.nn as nn

from .budget import solve
from .core import RECORD_ATTR, MethodRecord, check_family, inject, numel


def apply(model: nn.Module, name: str, budget_pct=None, token_ids=None, **knobs) -> MethodRecord:
    """Turn ``model`` into a parameter-efficient model in place and return what trains.

    ``budget_pct`` (a float, or "paper:0.5"/"paper:6.7") picks the knobs through the solver; explicit
    knobs override or complete them. ``token_ids``: for methods with a sparse embedding table
    (``Method.token_sources``), the vocabulary rows that may train; the count includes exactly them.
    """
    if budget_pct is not None:
        base = check_family(model, name)
        pooler = not (hasattr(base, "pooler") and base.pooler is None)  # a bi-encoder drops its pooler
        knobs = {**solve(base.config, name, budget_pct, pooler), **knobs}
    return inject(model, name, knobs, token_ids)


def apply_towers(model: nn.Module, towers: list[nn.Module], name: str, budget_pct=None, **knobs) -> MethodRecord:
    """Apply the method to each of several transformers inside ``model`` (e.g. a two-tower encoder),
    each with the same knobs, and record their sum on ``model``. One tower is plain ``apply``."""
    if len(towers) == 1:
        return apply(model, name, budget_pct, **knobs)
    records = [apply(tower, name, budget_pct, **knobs) for tower in towers]
    for tower in towers:
        object.__delattr__(tower, RECORD_ATTR)  # the model as a whole carries the record
    tower_ids = {id(p) for tower in towers for p in tower.parameters()}
    for param in model.parameters():
        if id(param) not in tower_ids:
            param.requires_grad_(True)
    trainable, backbone = sum(r.trainable for r in records), sum(r.backbone for r in records)
    head = numel(p for p in model.parameters() if p.requires_grad and id(p) not in tower_ids)
    record = MethodRecord(
        method=name,
        knobs=records[0].knobs,
        trainable=trainable,
        backbone=backbone,
        pct=100.0 * trainable / backbone,
        head=head,
        backbone_name=records[0].backbone_name,
    )
    object.__setattr__(model, RECORD_ATTR, record)
    return record
