"""The reranking stage: a cross-encoder ("[CLS] query [SEP] document [SEP]"; the standard head: the
backbone's pooler, dropout, a linear scorer, as BertForSequenceClassification) trained on groups of one
positive and n-1 first-stage negatives, reranking the first stage's top-k."""

from __future__ import annotations

import contextlib
import math
from typing import Literal

import torch
import torch.nn as nn

from ..data import Collection
from ..evaluate import RERANK_METRICS
from ..packing import pack_encoded, packs
from ..scoring import score_candidates
from ..settings import EvalSettings, PositiveFloat, PositiveInt, TokenBudgetSettings, setting
from . import register
from .base import Built, PerfHooks, Stage


class CrossEncoder(nn.Module):
    """``head="pooler"``: pooler -> dropout -> linear where the backbone has a pooler (so the pooler a
    full or BitFit cell counts is trained), else the first token's state -> dropout -> linear;
    ``head="cls"``: a linear scorer on the first token's state (the harness before the pooler head).
    The scorer runs in fp32 whatever the autocast: bf16 scores would tie."""

    def __init__(self, backbone: nn.Module, head: str = "pooler"):
        super().__init__()
        self.backbone = backbone
        self.use_pooler = head == "pooler" and getattr(backbone, "pooler", None) is not None
        config = backbone.config
        rate = getattr(config, "classifier_dropout", None) or getattr(config, "hidden_dropout_prob", 0.1)
        self.dropout = nn.Dropout(rate) if head == "pooler" else nn.Identity()
        self.head = nn.Linear(config.hidden_size, 1)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, packed=None, **encoded) -> torch.Tensor:
        if packed is not None:  # a token-budget step: its chunks, scores back in the step's order
            return packed.apply(self.forward)
        out = self.backbone(**encoded)
        features = out.pooler_output if self.use_pooler else out.last_hidden_state[:, 0]
        with torch.autocast(features.device.type, enabled=False):
            return self.head(self.dropout(features).float()).squeeze(-1)


def encode_pairs(tokenizer, queries: list[str], docs: list[str], max_length: int):
    """ "[CLS] query [SEP] document [SEP]", padded to the longest pair of the batch."""
    return tokenizer(
        queries, docs, truncation="longest_first", max_length=max_length, padding=True, return_tensors="pt"
    )


def group_batches(groups, train: Collection, tokenizer, batch_queries: int, max_length: int, settings=None):
    """A callable step -> tokenised pairs of ``batch_queries`` groups, positive first in each group; with a
    token budget or a padding multiple in ``settings``, the pairs ``packed`` (``bench.packing``)."""
    packed = settings is not None and packs(settings)

    def batch(step: int) -> dict:
        queries, docs, size = [], [], 0
        for q, pos, negs in groups.batch(step, batch_queries):
            size = 1 + len(negs)
            for d in [pos] + negs:
                queries.append(train.queries[q])
                docs.append(train.corpus[d])
        if packed:
            features = tokenizer(queries, docs, truncation="longest_first", max_length=max_length)
            return {"packed": pack_encoded(tokenizer, features, settings), "group_size": size}
        encoded = encode_pairs(tokenizer, queries, docs, max_length)
        encoded["group_size"] = size
        return dict(encoded)

    return batch


def group_loss(kind: str):
    def loss(model, batch) -> torch.Tensor:
        group_size = batch.pop("group_size")
        scores = model(**batch).view(-1, group_size).float()
        if kind == "bce":
            labels = torch.zeros_like(scores)
            labels[:, 0] = 1.0
            return nn.functional.binary_cross_entropy_with_logits(scores, labels)
        return nn.functional.cross_entropy(scores, torch.zeros(len(scores), dtype=torch.long, device=scores.device))

    return loss


def rerank(
    model,
    tokenizer,
    collection: Collection,
    candidates: dict,
    settings,
    device,
    desc="rerank",
    autocast=contextlib.nullcontext,
    length=None,
    grad_mode=torch.inference_mode,
) -> tuple[dict, dict]:
    """The cross-encoder's scores for the top-``settings.depth`` candidates of every query (``length``: the
    batching order's key, by default the pair's length in characters)."""

    def encode(chunk):
        queries, docs = [collection.queries[q] for q, _ in chunk], [collection.corpus[d] for _, d in chunk]
        return encode_pairs(tokenizer, queries, docs, settings.max_length)

    length = length or (lambda q, d: len(collection.queries[q]) + len(collection.corpus[d]))
    return score_candidates(model, collection, candidates, settings, device, encode, length, desc, autocast, grad_mode)


class RerankTrain(TokenBudgetSettings):
    max_length: PositiveInt = setting(192)
    loss: Literal["softmax", "bce"] = setting("softmax")
    head_lr: PositiveFloat = setting(1e-3)
    head: Literal["pooler", "cls"] = setting("pooler", id_default="cls")  # see CrossEncoder


class RerankEval(EvalSettings):
    max_length: PositiveInt = setting(256)


def _perf_batch(built: Built, length: int, queries: int, group: int) -> dict:
    from ..samples import fixed_batch, passages

    texts = passages(queries * group)
    batch = fixed_batch(built.tokenizer, texts, length, pairs_with=[t[:120] for t in texts[::-1]])
    return {**batch, "group_size": group}


def _reference_model(path: str):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)


def _reference_loss(group: int):
    def loss(model, batch):
        batch = {k: v.reshape(-1, v.shape[-1]) for k, v in batch.items()}  # rows of one query's group
        scores = model(**batch).logits.view(-1, group).float()
        return nn.functional.cross_entropy(scores, torch.zeros(len(scores), dtype=torch.long, device=scores.device))

    return loss


@register
class Rerank(Stage):
    name = "rerank"
    summary = "cross-encoder reranking the first stage's top-k"
    family = "encoder"
    default_model = "minilm"
    smoke_suite = "smoke"
    metrics = RERANK_METRICS
    Train = RerankTrain
    Eval = RerankEval
    perf = PerfHooks(
        batch=_perf_batch,
        examples=lambda queries, group: queries * group,
        tokens=lambda queries, group, length: queries * group * length,
        reference_model=_reference_model,
        reference_loss=_reference_loss,
        peft_task_type="SEQ_CLS",
    )

    def build(self, cell) -> Built:
        from ..models import load_backbone

        tokenizer, backbone = load_backbone(cell.model, seed=cell.seed)
        model = CrossEncoder(backbone, (cell.train or {}).get("head", "pooler"))
        return Built(model, tokenizer, [backbone], head_params=tuple(model.head.parameters()))

    def batches(self, built, groups, train, settings):
        return group_batches(groups, train, built.tokenizer, settings.batch_queries, settings.max_length, settings)

    def loss(self, built, settings):
        return group_loss(settings.loss)

    def chance_loss(self, settings) -> float | None:
        # the listwise softmax over a group of g, every score equal: ln g (BCE's depends on the scores' offset)
        return math.log(settings.group_size) if settings.loss == "softmax" else None

    def score(self, built, collection, candidates, settings, device, autocast):
        return rerank(
            built.model,
            built.tokenizer,
            collection,
            candidates,
            settings,
            device,
            desc=f"rerank {collection.ref}",
            autocast=autocast,
        )
