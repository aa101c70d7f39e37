"""inject(): freeze the backbone, attach a method with known knobs, count exactly what trains.

The lowest layer above the registry: it knows nothing of budgets (``methods.budget`` solves knobs by
calling it on meta-device models; ``methods.api.apply`` puts the two together)."""

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


def numel(params) -> int:
    return sum(p.numel() for p in params)


def check_family(model: nn.Module, name: str) -> nn.Module:
    """The transformer inside ``model``, after checking that ``name`` tunes its family."""
    method = get_method(name)
    base = A.find_base_model(model)
    family = A.family_of(base.config)
    if family is not None and family not in method.families:
        fits = ", ".join(n for n in names() if family in get_method(n).families)
        raise MethodError(
            f"method {name!r} does not tune {family} backbones ({base.config.model_type}); methods for them: {fits}"
        )
    return base


def inject(model: nn.Module, name: str, knobs: dict, token_ids=None) -> MethodRecord:
    """Freeze ``model``'s backbone, inject ``name`` with ``knobs`` (resolved and checked here) and record
    what trains. ``token_ids``: the vocabulary rows a sparse embedding table trains (methods with
    ``token_sources``); the count includes exactly them."""
    method = get_method(name)
    if getattr(model, RECORD_ATTR, None) is not None:
        raise MethodError(
            f"model already has method {getattr(model, RECORD_ATTR).method!r} applied; start from a fresh backbone"
        )
    base = check_family(model, name)
    arch = A.arch_for(base) if not method.fixed else None
    knobs = method.resolve_knobs(knobs)
    backbone = numel(base.parameters())
    for param in model.parameters():
        param.requires_grad_(True)  # the head (anything outside the backbone) always trains
    for param in base.parameters():
        param.requires_grad_(False)
    if A.family_of(base.config) == "causal-lm":
        _freeze_output_embeddings(model)
    if method.inject:
        extra = {"token_ids": token_ids} if method.takes_token_ids else {}
        method.inject(base, arch, **knobs, **extra)
    if method.selects:
        for pname, param in base.named_parameters():
            if PREFIX not in pname and method.selects(pname, param):
                param.requires_grad_(True)
    trainable = numel(p for p in base.parameters() if p.requires_grad)
    base_ids = {id(p) for p in base.parameters()}
    head = numel(p for p in model.parameters() if p.requires_grad and id(p) not in base_ids)
    record = MethodRecord(
        method=name,
        knobs=knobs,
        trainable=trainable,
        backbone=backbone,
        pct=100.0 * trainable / backbone,
        head=head,
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
