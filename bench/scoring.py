"""Scoring helpers every reranking stage shares: length-sorted batches over candidates, padded rows."""

from __future__ import annotations

import contextlib
import time

import torch
from tqdm.auto import tqdm

from .data import Collection


def padded(rows: list[list[int]], value: int, width: int) -> torch.Tensor:
    """Rows of integers right-padded with ``value`` to ``width`` columns."""
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def pad_rows(rows: list[list[int]], pad_id: int, mask_dtype=torch.long) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of rows of token ids right-padded to the longest (at least one column: empty rows allowed)."""
    width = max(1, max((len(r) for r in rows), default=0))
    return padded(rows, pad_id, width), padded([[1] * len(r) for r in rows], 0, width).to(mask_dtype)


def candidate_pairs(collection: Collection, candidates: dict, depth: int) -> list[tuple[str, str]]:
    return [(q, d) for q in collection.queries for d in list(candidates.get(q, {}))[:depth] if d in collection.corpus]


def score_candidates(
    model,
    collection: Collection,
    candidates: dict,
    settings,
    device,
    encode,
    length,
    desc: str,
    autocast=contextlib.nullcontext,
    grad_mode=torch.inference_mode,
) -> tuple[dict, dict]:
    """Score the top-``settings.depth`` candidates of every query in batches of ``settings.batch_size`` pairs of
    similar length (little padding). ``encode(pairs)`` makes the model's tensors for a batch of (query id,
    doc id); ``length(q, d)`` sorts."""
    model.eval()
    depth, batch_size = settings.depth, settings.batch_size
    pairs = candidate_pairs(collection, candidates, depth)
    order = sorted(range(len(pairs)), key=lambda i: length(*pairs[i]))
    run: dict[str, dict[str, float]] = {q: {} for q in collection.queries}
    start = time.perf_counter()
    with grad_mode():
        for i in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
            chunk = [pairs[j] for j in order[i : i + batch_size]]
            encoded = encode(chunk)
            with autocast():
                scores = model(**{k: v.to(device) for k, v in encoded.items()}).float().cpu().tolist()
            for (q, d), s in zip(chunk, scores):
                run[q][d] = s
    seconds = time.perf_counter() - start
    return run, {"pairs": len(pairs), "eval_s": seconds, "pairs_per_s": len(pairs) / max(seconds, 1e-9)}
