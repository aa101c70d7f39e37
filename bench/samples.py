"""Sample texts for measurements (bench perf, stage perf hooks): SciFact passages of every length, tokenised
to a fixed length."""

from __future__ import annotations

import functools

QUERY_LENGTH = 32  # bi-encoder and query-likelihood queries, in tokens


@functools.lru_cache(maxsize=1)
def _texts() -> tuple[str, ...]:
    from .data import load_collection

    corpus = load_collection("scifact/test").corpus
    return tuple(corpus[d] for d in sorted(corpus))


def passages(count: int) -> list[str]:
    """``count`` SciFact passages (repeated if the corpus is smaller)."""
    texts = _texts()
    return [texts[i % len(texts)] for i in range(count)]


def fixed_batch(tokenizer, texts: list[str], length: int, pairs_with: list[str] | None = None) -> dict:
    """Tokenised to exactly ``length`` tokens (truncated and padded): throughput at a known length."""
    args = (pairs_with, texts) if pairs_with is not None else (texts,)
    return dict(tokenizer(*args, truncation=True, max_length=length, padding="max_length", return_tensors="pt"))
