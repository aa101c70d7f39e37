"""apply(): freeze the backbone, inject a method, count exactly what trains."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch.nn as nn

from . import arch as A
from .errors import MethodError
from .inject import PREFIX
from .registry import get_method, names

RECORD_ATTR = "peft_record"


@dataclass(frozen=True)
class MethodRecord:
    method: str
    knobs: dict
    trainable: int  # the method's own trainable parameters (head excluded)
    backbone: int  # parameters of the pre-trained backbone, injected modules excluded
    pct: float  # 100 * trainable / backbone
    head: int  # trainable parameters outside the backbone (e.g. a scoring head)
    backbone_name: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _numel(params) -> int:
    return sum(p.numel() for p in params)


def apply(model: nn.Module, name: str, budget_pct=None, token_ids=None, **knobs) -> MethodRecord:
    """Turn ``model`` into a parameter-efficient model in place and return what trains.

    ``budget_pct`` (a float, or "paper:0.5"/"paper:6.7") picks the knobs through the solver; explicit
    knobs override or complete them. ``token_ids``: for methods with a sparse embedding table
    (``Method.takes_token_ids``), the vocabulary rows that may train; the count includes exactly them.
    """
    method = get_method(name)
    if getattr(model, RECORD_ATTR, None) is not None:
        raise MethodError(f"model already has method {getattr(model, RECORD_ATTR).method!r} applied; "
                          "start from a fresh backbone")
    base = A.find_base_model(model)
    family = A.family_of(base.config)
    if family is not None and family not in method.families:
        fits = ", ".join(n for n in names() if family in get_method(n).families)
        raise MethodError(f"method {name!r} does not tune {family} backbones ({base.config.model_type}); "
                          f"methods for them: {fits}")
    arch = A.arch_for(base) if not method.fixed else None
    if budget_pct is not None:
        from .budget import solve  # the solver itself calls apply on meta models

        knobs = {**solve(base.config, name, budget_pct), **knobs}
    knobs = method.resolve_knobs(knobs)

    backbone = _numel(base.parameters())
    for param in model.parameters():
        param.requires_grad_(True)  # the head (anything outside the backbone) always trains
    for param in base.parameters():
        param.requires_grad_(False)
    if family == "causal-lm":
        _freeze_output_embeddings(model)
    if method.inject:
        extra = {"token_ids": token_ids} if method.takes_token_ids else {}
        method.inject(base, arch, **knobs, **extra)
    if method.selects:
        for pname, param in base.named_parameters():
            if PREFIX not in pname and method.selects(pname, param):
                param.requires_grad_(True)

    trainable = _numel(p for p in base.parameters() if p.requires_grad)
    base_ids = {id(p) for p in base.parameters()}
    head = _numel(p for p in model.parameters() if p.requires_grad and id(p) not in base_ids)
    record = MethodRecord(
        method=name, knobs=knobs, trainable=trainable, backbone=backbone,
        pct=100.0 * trainable / backbone, head=head,
        backbone_name=str(getattr(base.config, "_name_or_path", "") or ""),
    )
    object.__setattr__(model, RECORD_ATTR, record)
    return record


def _freeze_output_embeddings(model: nn.Module) -> None:
    """A causal LM's head is part of the frozen model, not a task head (it may be untied from the input
    embeddings, which are already frozen as part of the backbone)."""
    for module in model.modules():
        if hasattr(module, "get_output_embeddings"):
            head = module.get_output_embeddings()
            if head is not None:
                head.requires_grad_(False)
            return


def record_of(model: nn.Module) -> MethodRecord:
    record = getattr(model, RECORD_ATTR, None)
    if record is None:
        raise MethodError("no method applied to this model: call methods.apply first")
    return record


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
    head = _numel(p for p in model.parameters() if p.requires_grad and id(p) not in tower_ids)
    record = MethodRecord(method=name, knobs=records[0].knobs, trainable=trainable, backbone=backbone,
                          pct=100.0 * trainable / backbone, head=head, backbone_name=records[0].backbone_name)
    object.__setattr__(model, RECORD_ATTR, record)
    return record
