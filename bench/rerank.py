"""The reranking stage: a cross-encoder ("[CLS] query [SEP] document [SEP]", linear head on the
first token) trained on groups of one positive and n-1 first-stage negatives."""
from __future__ import annotations

import contextlib
import time

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .data import Collection
from .sampling import EpochGroups


class CrossEncoder(nn.Module):
    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.hidden_size, 1)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, **encoded) -> torch.Tensor:
        return self.head(self.backbone(**encoded).last_hidden_state[:, 0]).squeeze(-1)


def encode_pairs(tokenizer, queries: list[str], docs: list[str], max_length: int):
    """"[CLS] query [SEP] document [SEP]", padded to the longest pair of the batch."""
    return tokenizer(queries, docs, truncation="longest_first", max_length=max_length, padding=True,
                     return_tensors="pt")


def group_batches(groups: EpochGroups, train: Collection, tokenizer, batch_queries: int, max_length: int):
    """A callable step -> tokenised pairs of ``batch_queries`` groups, positive first in each group."""
    def batch(step: int) -> dict:
        queries, docs, size = [], [], 0
        for q, pos, negs in groups.batch(step, batch_queries):
            size = 1 + len(negs)
            for d in [pos] + negs:
                queries.append(train.queries[q])
                docs.append(train.corpus[d])
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


def score_candidates(model, collection: Collection, candidates: dict, depth: int, batch_size: int, device,
                     encode, length, desc: str, autocast=contextlib.nullcontext,
                     grad_mode=torch.inference_mode) -> tuple[dict, dict]:
    """Score the top-``depth`` candidates of every query in batches of similar length (little padding).
    ``encode(pairs)`` makes the model's tensors for a batch of (query id, doc id); ``length(q, d)`` sorts."""
    with grad_mode():
        return _score_candidates(model, collection, candidates, depth, batch_size, device, encode, length, desc,
                                 autocast)


def _score_candidates(model, collection, candidates, depth, batch_size, device, encode, length, desc, autocast):
    model.eval()
    pairs = [(q, d) for q in collection.queries for d in list(candidates.get(q, {}))[:depth]
             if d in collection.corpus]
    order = sorted(range(len(pairs)), key=lambda i: length(*pairs[i]))
    run: dict[str, dict[str, float]] = {q: {} for q in collection.queries}
    start = time.perf_counter()
    for i in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        chunk = [pairs[j] for j in order[i:i + batch_size]]
        encoded = encode(chunk)
        with autocast():
            scores = model(**{k: v.to(device) for k, v in encoded.items()}).float().cpu().tolist()
        for (q, d), s in zip(chunk, scores):
            run[q][d] = s
    seconds = time.perf_counter() - start
    return run, {"pairs": len(pairs), "eval_s": seconds, "pairs_per_s": len(pairs) / max(seconds, 1e-9)}


def rerank(model, tokenizer, collection: Collection, candidates: dict, depth: int, batch_size: int,
           max_length: int, device, desc: str = "rerank", autocast=contextlib.nullcontext,
           length=None, grad_mode=torch.inference_mode) -> tuple[dict, dict]:
    """The cross-encoder's scores for the top-``depth`` candidates of every query (``length``: the
    batching order's key, by default the pair's length in characters)."""
    def encode(chunk):
        return encode_pairs(tokenizer, [collection.queries[q] for q, _ in chunk],
                            [collection.corpus[d] for _, d in chunk], max_length)
    length = length or (lambda q, d: len(collection.queries[q]) + len(collection.corpus[d]))
    return score_candidates(model, collection, candidates, depth, batch_size, device, encode, length, desc, autocast,
                            grad_mode)
