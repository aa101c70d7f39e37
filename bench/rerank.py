"""The reranking stage: a cross-encoder ("[CLS] query [SEP] document [SEP]", linear head on the
first token) trained on groups of one positive and n-1 first-stage negatives."""
from __future__ import annotations

import contextlib
import random
import time

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .data import Collection


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


def training_queries(train: Collection, rng: random.Random, max_queries: int | None = None) -> list[str]:
    """The judged queries training draws from (a fixed, seeded subset when ``max_queries`` is set)."""
    query_ids = [q for q in train.queries if any(g > 0 and d in train.corpus for d, g in train.qrels[q].items())]
    rng.shuffle(query_ids)
    return query_ids[:max_queries] if max_queries else query_ids


def training_groups(train: Collection, candidates: dict, query_ids: list[str], group_size: int,
                    rng: random.Random) -> list[tuple[str, str, list[str]]]:
    """One group (query, positive, negatives) per query, in a shuffled order; negatives from the first
    stage's unjudged-or-irrelevant candidates, topped up with random corpus documents if too few."""
    doc_ids = list(train.corpus)
    order = list(query_ids)
    rng.shuffle(order)
    groups = []
    for q in order:
        positives = [d for d, g in train.qrels[q].items() if g > 0 and d in train.corpus]
        pool = [d for d in candidates.get(q, {}) if train.qrels[q].get(d, 0) <= 0]
        negatives = rng.sample(pool, min(len(pool), group_size - 1))
        while len(negatives) < group_size - 1:
            d = rng.choice(doc_ids)
            if train.qrels[q].get(d, 0) <= 0 and d not in negatives:
                negatives.append(d)
        groups.append((q, rng.choice(positives), negatives))
    return groups


class EpochGroups:
    """Training groups drawn afresh every epoch: a new order, positive and negatives per query, so a
    second epoch does not replay the first. Seeded per (seed, epoch): reruns give the same groups."""

    def __init__(self, train: Collection, candidates: dict, group_size: int, seed: int,
                 max_queries: int | None = None):
        self.train, self.candidates, self.group_size, self.seed = train, candidates, group_size, seed
        self.query_ids = training_queries(train, random.Random(seed), max_queries)
        self._epoch, self._groups = -1, []

    def __len__(self) -> int:
        return len(self.query_ids)

    def epoch(self, epoch: int) -> list[tuple[str, str, list[str]]]:
        if epoch != self._epoch:
            rng = random.Random(self.seed * 1_000_003 + epoch)
            self._epoch, self._groups = epoch, training_groups(self.train, self.candidates, self.query_ids,
                                                               self.group_size, rng)
        return self._groups


def group_batches(groups: EpochGroups, train: Collection, tokenizer, batch_queries: int, max_length: int):
    """A callable step -> tokenised batch of ``batch_queries`` consecutive groups; the epoch is given by
    the position, so any step can be rebuilt on its own."""
    def batch(step: int) -> dict:
        queries, docs, size = [], [], 0
        for position in range(step * batch_queries, (step + 1) * batch_queries):
            q, pos, negs = groups.epoch(position // len(groups))[position % len(groups)]
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


@torch.no_grad()
def rerank(model, tokenizer, collection: Collection, candidates: dict, depth: int, batch_size: int,
           max_length: int, device, desc: str = "rerank", autocast=contextlib.nullcontext) -> tuple[dict, dict]:
    """Score the top-``depth`` candidates of every query; batches sorted by length (little padding)."""
    model.eval()
    pairs = [(q, d) for q in collection.queries for d in list(candidates.get(q, {}))[:depth]
             if d in collection.corpus]
    lengths = [len(collection.queries[q]) + len(collection.corpus[d]) for q, d in pairs]
    order = sorted(range(len(pairs)), key=lambda i: lengths[i])
    run: dict[str, dict[str, float]] = {q: {} for q in collection.queries}
    start = time.perf_counter()
    for i in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        chunk = [pairs[j] for j in order[i:i + batch_size]]
        encoded = encode_pairs(tokenizer, [collection.queries[q] for q, _ in chunk],
                               [collection.corpus[d] for _, d in chunk], max_length)
        with autocast():
            scores = model(**{k: v.to(device) for k, v in encoded.items()}).float().cpu().tolist()
        for (q, d), s in zip(chunk, scores):
            run[q][d] = s
    seconds = time.perf_counter() - start
    return run, {"pairs": len(pairs), "eval_s": seconds, "pairs_per_s": len(pairs) / max(seconds, 1e-9)}
