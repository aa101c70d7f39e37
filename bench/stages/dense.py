"""The dense retrieval stage: a bi-encoder (one shared encoder, or two towers) pooling token states into
one vector per text; contrastive training over the positive, first-stage hard negatives and every other
document of the batch; length-sorted corpus encoding and exact top-k search."""

from __future__ import annotations

import contextlib
import copy
import math
import time
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import Collection
from ..errors import BenchError
from ..evaluate import DENSE_METRICS
from ..packing import pack_encoded, packs
from ..scoring import pad_rows
from ..settings import EvalSettings, PositiveFloat, PositiveInt, Settings, StrictBool, TokenBudgetSettings, setting
from . import register
from .base import Built, PerfHooks, Stage

POOLINGS = ("first", "mean")
SIMILARITIES = ("dot", "cos")
SEARCH_BACKENDS = ("torch", "faiss")
ENCODE_SHARD = 65_536  # texts tokenised and length-sorted together (bounds memory on large corpora)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "first":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class BiEncoder(nn.Module):
    def __init__(
        self, backbone: nn.Module, pooling: str = "mean", similarity: str = "cos", separate_towers: bool = False
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise BenchError(f"pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
        if similarity not in SIMILARITIES:
            raise BenchError(f"similarity {similarity!r}: choose one of {', '.join(SIMILARITIES)}")
        self.pooling, self.similarity = pooling, similarity
        self.encoder = backbone  # queries, and documents too unless there are two towers
        self.doc_encoder = copy.deepcopy(backbone) if separate_towers else None

    def towers(self) -> list[nn.Module]:
        return [self.encoder] + ([self.doc_encoder] if self.doc_encoder is not None else [])

    def forward(self, **batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: ``q_*`` tensors (the queries) and ``d_*`` tensors (their documents) -> both vectors."""
        return self.encode("query", **_side(batch, "q_")), self.encode("doc", **_side(batch, "d_"))

    def encode(self, side: str, packed=None, **encoded) -> torch.Tensor:
        if packed is not None:  # a token-budget step: its chunks, vectors back in the step's order
            return packed.apply(lambda **chunk: self.encode(side, **chunk))
        encoder = self.doc_encoder if side == "doc" and self.doc_encoder is not None else self.encoder
        hidden = encoder(**encoded).last_hidden_state
        vectors = pool(hidden.float(), encoded["attention_mask"], self.pooling)  # fp32: bf16 vectors would tie
        return F.normalize(vectors, dim=-1) if self.similarity == "cos" else vectors


def _tokenize(tokenizer, texts: list[str], max_length: int):
    return tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")


def _encoded(prefix: str, tokenizer, texts: list[str], max_length: int, settings) -> dict:
    """One side of a training batch: padded tensors, or with a token budget / padding multiple ``packed``."""
    if packs(settings):
        features = tokenizer(texts, truncation=True, max_length=max_length)
        return {f"{prefix}packed": pack_encoded(tokenizer, features, settings)}
    return {f"{prefix}{k}": v for k, v in _tokenize(tokenizer, texts, max_length).items()}


def false_negatives(chosen: list, train: Collection) -> torch.Tensor:
    """(queries, documents) True where a document of the batch must stay out of a query's softmax
    denominator: judged relevant to that query (qrels > 0) or a copy of its own positive, its own positive
    slot excepted. ``chosen``: the batch's (query, positive, negatives) groups in the loss's order."""
    docs = [d for _, pos, negs in chosen for d in [pos] + list(negs)]
    size = len(docs) // max(1, len(chosen))
    mask = torch.zeros(len(chosen), len(docs), dtype=torch.bool)
    for i, (q, pos, _) in enumerate(chosen):
        judged = train.qrels.get(q, {})
        for j, d in enumerate(docs):
            if j != i * size and (d == pos or judged.get(d, 0) > 0):
                mask[i, j] = True
    return mask


def contrastive_batches(groups, train: Collection, tokenizer, settings, counters: dict | None = None):
    """A callable step -> the batch's queries (``q_*``) and, per query, its positive then its hard
    negatives (``d_*``); with ``settings.mask_false_negatives``, ``exclude``: the false negatives of the
    whole (gathered) batch. ``counters`` tallies the batches and pairs the mask touched."""
    counters = counters if counters is not None else {}

    def batch(step: int) -> dict:
        chosen = groups.batch(step, settings.batch_queries)
        queries = [train.queries[q] for q, _, _ in chosen]
        docs = [train.corpus[d] for _, pos, negs in chosen for d in [pos] + list(negs)]
        out = {
            **_encoded("q_", tokenizer, queries, settings.query_max_length, settings),
            **_encoded("d_", tokenizer, docs, settings.max_length, settings),
            "group_size": 1 + len(chosen[0][2]),
        }
        if settings.mask_false_negatives:
            exclude = false_negatives(groups.gathered(step, settings.batch_queries), train)
            counters["batches"] = counters.get("batches", 0) + 1
            counters["masked_batches"] = counters.get("masked_batches", 0) + int(exclude.any())
            counters["masked_pairs"] = counters.get("masked_pairs", 0) + int(exclude.sum())
            out["exclude"] = exclude
        return out

    return batch


def _side(batch: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in batch.items() if k.startswith(prefix)}


def in_batch_loss(
    query_vectors: torch.Tensor,
    doc_vectors: torch.Tensor,
    group_size: int,
    temperature: float,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy of each query over every document of the batch; query i's positive sits
    at row i * group_size, the rest (its hard negatives, other queries' documents) are negatives, except
    those ``exclude`` marks (false negatives: out of the denominator)."""
    scores = (query_vectors @ doc_vectors.T).float() / temperature
    if exclude is not None:
        scores = scores.masked_fill(exclude.to(scores.device), float("-inf"))
    target = torch.arange(len(query_vectors), device=scores.device) * group_size
    return F.cross_entropy(scores, target)


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, in rank order; this rank's own rows keep their gradient (the others' cannot)."""
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[dist.get_rank()] = tensor
    return torch.cat(parts)


def contrastive_loss(temperature: float, distributed: bool = False):
    """The in-batch loss; ``distributed``: over the batch gathered from every data-parallel rank (each rank's
    queries against every rank's documents), as one process computes it on the whole batch."""

    def loss(model, batch) -> torch.Tensor:
        size, exclude = batch.pop("group_size"), batch.pop("exclude", None)
        query_vectors, doc_vectors = model(**batch)  # through forward: data-parallel wrappers need it
        if distributed:
            query_vectors, doc_vectors = gather_with_grad(query_vectors), gather_with_grad(doc_vectors)
        return in_batch_loss(query_vectors, doc_vectors, size, temperature, exclude)

    loss.global_batch = distributed  # the train loop scales its gradient by the number of processes
    return loss


PLURAL = {"query": "queries", "doc": "docs"}


@torch.inference_mode()
def encode_texts(
    model: BiEncoder,
    side: str,
    tokenizer,
    texts: list[str],
    batch_size: int,
    max_length: int,
    device,
    autocast=contextlib.nullcontext,
    desc: str = "encode",
) -> torch.Tensor:
    """One vector per text, in input order. Batches are formed from texts sorted by token length, so
    padding is at most a few tokens per batch."""
    model.eval()
    vectors = [None] * len(texts)
    with tqdm(total=len(texts), desc=desc, leave=False, unit="text") as bar:
        for start in range(0, len(texts), ENCODE_SHARD):
            shard = texts[start : start + ENCODE_SHARD]
            ids = tokenizer(shard, truncation=True, max_length=max_length)["input_ids"]
            order = sorted(range(len(shard)), key=lambda i: len(ids[i]))
            for i in range(0, len(order), batch_size):
                chosen = order[i : i + batch_size]
                input_ids, attention_mask = pad_rows([ids[j] for j in chosen], tokenizer.pad_token_id or 0)
                encoded = {"input_ids": input_ids, "attention_mask": attention_mask}
                with autocast():
                    out = model.encode(side, **{k: v.to(device) for k, v in encoded.items()}).float().cpu()
                for j, vector in zip(chosen, out):
                    vectors[start + j] = vector
                bar.update(len(chosen))
    return torch.stack(vectors) if vectors else torch.empty(0)


def exact_search(
    query_vectors: torch.Tensor, doc_vectors: torch.Tensor, k: int, backend: str = "torch", chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, document indices), each [queries, min(k, documents)], best first; inner product (equal
    to cosine on normalised vectors). ``faiss`` uses IndexFlatIP, ``torch`` chunked matmul + topk."""
    k = min(k, len(doc_vectors))
    if backend == "faiss":
        try:
            import faiss
        except ImportError:
            raise BenchError(
                "search backend faiss: faiss is not installed; pip install faiss-cpu, or use search: torch"
            ) from None
        index = faiss.IndexFlatIP(doc_vectors.shape[1])
        index.add(doc_vectors.float().contiguous().numpy())
        scores, indices = index.search(query_vectors.float().contiguous().numpy(), k)
        return torch.from_numpy(scores), torch.from_numpy(indices).long()
    if backend != "torch":
        raise BenchError(f"search backend {backend!r}: choose one of {', '.join(SEARCH_BACKENDS)}")
    scores, indices = [], []
    for i in range(0, len(query_vectors), chunk):
        top = torch.topk(query_vectors[i : i + chunk].float() @ doc_vectors.float().T, k, dim=1)
        scores.append(top.values)
        indices.append(top.indices)
    return torch.cat(scores), torch.cat(indices)


def retrieve(
    model: BiEncoder,
    tokenizer,
    collection: Collection,
    settings,
    device,
    autocast=contextlib.nullcontext,
    desc: str = "dense",
    doc_cache: dict | None = None,
) -> tuple[dict, dict]:
    """Encode the corpus and the queries, search exactly the top ``settings.depth``, return (run, timings).
    ``doc_cache``: the corpus vectors of earlier calls with the same model (a cell's validation and test
    splits share their corpus: it is encoded once), keyed by the documents' ids and texts and the length."""
    doc_ids, query_ids = list(collection.corpus), list(collection.queries)

    def encode(side: str, texts: list[str], max_length: int):
        label = f"{desc} {PLURAL[side]}"
        return encode_texts(model, side, tokenizer, texts, settings.batch_size, max_length, device, autocast, label)

    start = time.perf_counter()
    key = (hash(tuple(collection.corpus.items())), settings.max_length, settings.batch_size)
    cached = doc_cache.get(key) if doc_cache is not None else None
    doc_vectors = (
        cached if cached is not None else encode("doc", [collection.corpus[d] for d in doc_ids], settings.max_length)
    )
    if doc_cache is not None:
        doc_cache[key] = doc_vectors
    encode_s = time.perf_counter() - start
    query_vectors = encode("query", [collection.queries[q] for q in query_ids], settings.query_max_length)
    search_start = time.perf_counter()
    scores, indices = exact_search(query_vectors, doc_vectors, settings.depth, settings.search)
    run = {
        q: {doc_ids[j]: float(s) for s, j in zip(row_scores.tolist(), row_indices.tolist())}
        for q, row_scores, row_indices in zip(query_ids, scores, indices)
    }
    return run, {
        "passages": len(doc_ids),
        "encode_s": encode_s,
        "passages_per_s": len(doc_ids) / max(encode_s, 1e-9),
        "search_s": time.perf_counter() - search_start,
        **({"corpus_encoded_earlier": True} if cached is not None else {}),
    }


class DenseTrain(TokenBudgetSettings):
    group_size: PositiveInt = setting(4)
    max_length: PositiveInt = setting(192)
    query_max_length: PositiveInt = setting(64)
    temperature: PositiveFloat = setting(0.05)
    # leave judged-relevant documents and copies of the positive out of each query's softmax denominator
    mask_false_negatives: StrictBool = setting(True, id_default=False)


class DenseEval(EvalSettings):
    depth: PositiveInt = setting(1000)
    max_length: PositiveInt = setting(256)
    query_max_length: PositiveInt = setting(64)
    search: Literal["torch", "faiss"] = setting("torch")


class EncoderSettings(Settings):
    pooling: Literal["first", "mean"] = setting("mean")
    similarity: Literal["dot", "cos"] = setting("cos")
    separate_towers: StrictBool = setting(False)


def _perf_batch(built: Built, length: int, queries: int, group: int) -> dict:
    """``queries`` queries with ``group`` passages each (their positive and hard negatives)."""
    from ..samples import QUERY_LENGTH, fixed_batch, passages

    texts = passages(queries * group)
    q = fixed_batch(built.tokenizer, [t[:120] for t in texts[:queries]], QUERY_LENGTH)
    d = fixed_batch(built.tokenizer, texts, length)
    return {**{f"q_{k}": v for k, v in q.items()}, **{f"d_{k}": v for k, v in d.items()}, "group_size": group}


def _reference_model(path: str):
    from transformers import AutoModel

    return AutoModel.from_pretrained(path)


def _reference_loss(group: int, temperature: float = 0.05):
    def loss(model, batch):
        q = {k[2:]: v.reshape(-1, v.shape[-1]) for k, v in batch.items() if k.startswith("q_")}
        d = {k[2:]: v.reshape(-1, v.shape[-1]) for k, v in batch.items() if k.startswith("d_")}
        qv = pool(model(**q).last_hidden_state, q["attention_mask"], "mean")
        dv = pool(model(**d).last_hidden_state, d["attention_mask"], "mean")
        return in_batch_loss(F.normalize(qv, dim=-1), F.normalize(dv, dim=-1), group, temperature)

    return loss


@register
class Dense(Stage):
    name = "dense"
    summary = "bi-encoder retrieving from the whole corpus (exact search)"
    family = "encoder"
    default_model = "minilm"
    smoke_suite = "smoke-dense"
    metrics = DENSE_METRICS
    needs_candidates = False
    Train = DenseTrain
    Eval = DenseEval
    section_key = "encoder"
    Section = EncoderSettings
    # as many passages a step as the cross-encoder's batch: batch * group / 2 queries, a positive and a negative each
    perf = PerfHooks(
        batch=_perf_batch,
        shape=lambda batch, group: (batch * group // 2, 2),
        examples=lambda queries, group: queries,
        tokens=lambda queries, group, length: queries * (32 + group * length),
        reference_model=_reference_model,
        reference_loss=_reference_loss,
    )

    def build(self, cell) -> Built:
        from ..models import load_backbone

        tokenizer, backbone = load_backbone(cell.model, seed=cell.seed)
        if getattr(backbone, "pooler", None) is not None:  # token states are pooled here: the pooler never trains
            backbone.pooler = None
        encoder = self.section(cell)
        model = BiEncoder(backbone, encoder.pooling, encoder.similarity, encoder.separate_towers)
        return Built(model, tokenizer, list(model.towers()))

    def tuned(self, built):
        return built.model.towers()

    def batches(self, built, groups, train, settings):
        return contrastive_batches(groups, train, built.tokenizer, settings, built.state.setdefault("counters", {}))

    def loss(self, built, settings):
        return contrastive_loss(settings.temperature, built.state.get("processes", 1) > 1)

    def chance_loss(self, settings) -> float | None:
        # in-batch softmax over every passage of the batch, all scores equal: ln(batch_queries * group_size);
        # a masked false negative lowers a collapsed run's loss below that, so the rule then misses it
        return math.log(settings.batch_queries * settings.group_size)

    def score(self, built, collection, candidates, settings, device, autocast):
        cache = built.state.setdefault("doc_vectors", {})  # the model no longer changes once scoring begins
        return retrieve(
            built.model, built.tokenizer, collection, settings, device, autocast, f"dense {collection.ref}", cache
        )
