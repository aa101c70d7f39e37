"""Evaluation throughput: our reranking and encoding against sentence-transformers' CrossEncoder.predict and
SentenceTransformer.encode (same model, SciFact passages of every length, batch size); the qlm stage's
scoring on its own; each evaluation speed-up on and off; the caches every cell shares."""

from __future__ import annotations

import contextlib
import tempfile
import time

from ..samples import passages
from .machine import device, precision_context


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def eval_data(count: int, queries: int, depth: int):
    from ..data import Collection

    texts = passages(count)
    corpus = {f"d{i}": t for i, t in enumerate(texts)}
    query_texts = {f"q{i}": t[:100] for i, t in enumerate(texts[::-1][:queries])}
    coll = Collection(ref="perf", corpus=corpus, queries=query_texts, qrels={}, fingerprint="perf")
    candidates = {q: {d: 0.0 for d in list(corpus)[:depth]} for q in query_texts}
    return texts, coll, candidates


def time_rerank(model, tokenizer, coll, candidates, depth: int, batch_size: int, max_length: int, **options) -> float:
    """Seconds our cross-encoder takes to score every candidate (``options``: autocast, length, grad_mode)."""
    from ..stages.rerank import RerankEval, rerank

    settings = RerankEval(depth=depth, batch_size=batch_size, max_length=max_length)
    return timed(lambda: rerank(model, tokenizer, coll, candidates, settings, device(), **options))


def _cross_encoder(model_name: str, attn: str = "sdpa"):
    from transformers import AutoModel

    from ..models import load_tokenizer, resolve_path
    from ..stages.rerank import CrossEncoder

    backbone = AutoModel.from_pretrained(resolve_path(model_name), attn_implementation=attn)
    return load_tokenizer(model_name), CrossEncoder(backbone).to(device()).eval()


def measure(
    model_name: str, precision: str, count: int, batch_size: int, max_length: int, queries: int = 10, depth: int = 100
) -> dict:
    """Ours in fp32 and at ``precision`` against sentence-transformers at the same precision (bf16 through
    its model dtype) and its default fp32."""
    import torch
    from sentence_transformers import CrossEncoder as STCrossEncoder
    from sentence_transformers import SentenceTransformer

    from ..models import load_backbone, resolve_path
    from ..stages.dense import BiEncoder, encode_texts

    texts, coll, candidates = eval_data(count, queries, depth)
    pairs = [(coll.queries[q], coll.corpus[d]) for q in coll.queries for d in candidates[q]]
    precisions = ["no"] + ([precision] if precision != "no" else [])
    out = {"rerank": {"pairs": len(pairs)}, "encode": {"passages": len(texts)}}

    tokenizer, ours = _cross_encoder(model_name)
    reference = STCrossEncoder(resolve_path(model_name), num_labels=1, max_length=max_length, device=device())
    reference.predict(pairs[:batch_size], batch_size=batch_size, show_progress_bar=False)  # warm-up
    ref_s = timed(lambda: reference.predict(pairs, batch_size=batch_size, show_progress_bar=False))
    out["rerank"]["reference_pairs_per_s"] = len(pairs) / ref_s
    for p in precisions:
        s = time_rerank(ours, tokenizer, coll, candidates, depth, batch_size, max_length, autocast=precision_context(p))
        out["rerank"][f"ours_{p}_pairs_per_s"] = len(pairs) / s
        out["rerank"][f"ratio_{p}"] = ref_s / s
    if precision == "bf16":  # equal precision: the reference's own model in bf16
        reference.model.to(torch.bfloat16)
        s = timed(lambda: reference.predict(pairs, batch_size=batch_size, show_progress_bar=False))
        out["rerank"]["reference_bf16_pairs_per_s"] = len(pairs) / s
        out["rerank"]["ratio_bf16_equal_precision"] = out["rerank"]["ours_bf16_pairs_per_s"] / (len(pairs) / s)

    tokenizer, backbone = load_backbone(model_name)
    encoder = BiEncoder(backbone, "mean", "cos").to(device())
    reference = SentenceTransformer(resolve_path(model_name), device=device())
    reference.max_seq_length = max_length
    reference.encode(texts[:batch_size], batch_size=batch_size, show_progress_bar=False)  # warm-up
    ref_s = timed(lambda: reference.encode(texts, batch_size=batch_size, show_progress_bar=False))
    out["encode"]["reference_passages_per_s"] = len(texts) / ref_s
    for p in precisions:
        s = timed(
            lambda p=p: encode_texts(
                encoder, "doc", tokenizer, texts, batch_size, max_length, device(), precision_context(p)
            )
        )
        out["encode"][f"ours_{p}_passages_per_s"] = len(texts) / s
        out["encode"][f"ratio_{p}"] = ref_s / s
    if precision == "bf16":
        reference.to(torch.bfloat16)
        s = timed(lambda: reference.encode(texts, batch_size=batch_size, show_progress_bar=False))
        out["encode"]["reference_bf16_passages_per_s"] = len(texts) / s
        out["encode"]["ratio_bf16_equal_precision"] = out["encode"]["ours_bf16_passages_per_s"] / (len(texts) / s)
    return out


def measure_qlm(
    model_name: str, precision: str, count: int, batch_size: int, queries: int = 4, depth: int = 25
) -> dict:
    """The qlm stage's scoring pairs/s (no reference stack scores query likelihood)."""
    from ..stages.qlm import QlmEval, rerank
    from .training import base_model

    model = base_model("qlm", model_name).model.to(device())
    _, coll, candidates = eval_data(count, queries, depth)
    pairs = sum(len(c) for c in candidates.values())
    settings = QlmEval(depth=depth, batch_size=batch_size)
    out = {"pairs": pairs}
    for p in ["no"] + ([precision] if precision != "no" else []):
        s = timed(lambda p=p: rerank(model, coll, candidates, settings, device(), autocast=precision_context(p)))
        out[f"ours_{p}_pairs_per_s"] = pairs / s
    return out


def ablations(
    model_name: str, precision: str, count: int, batch_size: int, max_length: int, queries: int = 10, depth: int = 100
) -> dict:
    """Each evaluation speed-up on and off, the rest unchanged: pairs/s of reranking."""
    import torch

    _, coll, candidates = eval_data(count, queries, depth)
    pairs = sum(len(c) for c in candidates.values())
    fast = precision_context(precision)
    tokenizer, model = _cross_encoder(model_name)

    def pairs_per_s(model=model, autocast=fast, sort=True, grad_mode=torch.inference_mode):
        length = None if sort else (lambda q, d: 0)  # unsorted: the candidates' own order
        seconds = time_rerank(
            model,
            tokenizer,
            coll,
            candidates,
            depth,
            batch_size,
            max_length,
            autocast=autocast,
            length=length,
            grad_mode=grad_mode,
        )
        return pairs / seconds

    out = {
        "length_sorted": {"on": pairs_per_s(), "off": pairs_per_s(sort=False)},
        "bf16_autocast": {"on": pairs_per_s(), "off": pairs_per_s(autocast=contextlib.nullcontext)},
        "inference_mode": {"on": pairs_per_s(), "off": pairs_per_s(grad_mode=torch.no_grad)},
    }
    _, eager = _cross_encoder(model_name, attn="eager")
    eager.load_state_dict(model.state_dict())
    out["sdpa_attention"] = {"on": pairs_per_s(), "off": pairs_per_s(model=eager)}
    for row in out.values():
        row["speedup"] = row["on"] / row["off"]
    return out


def caches(model_name: str, dataset: str = "scifact/test", depth: int = 100) -> dict:
    """First-stage candidates computed (BM25 over the corpus) against read back from the shared cache,
    and the model load every cell pays once."""
    from ..data import load_collection
    from ..firststage import candidates
    from ..models import load_backbone

    coll = load_collection(dataset)
    with tempfile.TemporaryDirectory() as cache:
        computed = timed(lambda: candidates(coll, "bm25s", depth, cache))
        cached = timed(lambda: candidates(coll, "bm25s", depth, cache))
    tokenizer, _ = load_backbone(model_name)
    texts = list(coll.corpus.values())
    return {
        "candidates": {"dataset": dataset, "computed_s": computed, "cached_s": cached, "speedup": computed / cached},
        "model_load_s": timed(lambda: load_backbone(model_name)),
        # what a tokenisation cache could save per dense cell: the corpus tokenised once
        "tokenize_corpus_s": timed(lambda: tokenizer(texts, truncation=True, max_length=256)),
        "corpus_passages": len(texts),
    }
