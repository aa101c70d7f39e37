"""The query-likelihood stage: rerank by the mean log-probability of the query's tokens under a causal
LM, given a prompt built from the document (UPR-style), with the prompt-side methods (soft prompt,
Q-PEFT hints) spliced in at the embedding level.

Sequence layout (one row per pair; holes from padding are masked and skipped by the positions):
    [soft prompt] head [passage] middle [hint] question [query]
where head / middle / question are the template's text around {passage}, {hint} and {query}.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Literal

import torch
import torch.nn as nn
from pydantic import model_validator

import methods
from methods.arch import find_base_model

from ..data import Collection
from ..errors import BenchError
from ..evaluate import RERANK_METRICS
from ..scoring import pad_rows, score_candidates
from ..settings import EvalSettings, Float, PositiveFloat, PositiveInt, Settings, TrainSettings, setting
from . import register
from .base import Built, PerfHooks, Stage

DEFAULT_TEMPLATE = "Please write a question based on this passage.\nPassage: {passage}\n{hint}Question:{query}"
HINT_PREFIX, HINT_SUFFIX = "hints:", "\n"


def split_template(template: str) -> tuple[str, str, str]:
    """(head, middle, question): the text before {passage}, between it and {hint}, between {hint} and {query}."""
    marks = ["{passage}", "{hint}", "{query}"]
    places = [template.find(m) for m in marks]
    if any(p < 0 for p in places) or places != sorted(places) or not template.endswith("{query}"):
        raise BenchError(
            f"qlm template {template!r} must contain {{passage}}, {{hint}} and end with {{query}}, in that order"
        )
    head, rest = template.split("{passage}")
    middle, rest = rest.split("{hint}")
    question = rest[: -len("{query}")]
    if not question:
        raise BenchError(f"qlm template {template!r}: put some text (e.g. 'Question:') between {{hint}} and {{query}}")
    return head, middle, question


class QueryLikelihood(nn.Module):
    """Scores (query, passage) pairs: mean log p(query tokens | prompt(passage)) under ``lm``."""

    def __init__(
        self,
        lm: nn.Module,
        tokenizer,
        template: str = DEFAULT_TEMPLATE,
        passage_max_length: int = 192,
        query_max_length: int = 32,
    ):
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer
        self.passage_max_length, self.query_max_length = passage_max_length, query_max_length
        head, middle, question = split_template(template)
        self.pieces = {
            name: self._ids(text)
            for name, text in (
                ("head", head),
                ("middle", middle),
                ("question", question),
                ("hint_prefix", HINT_PREFIX),
                ("hint_suffix", HINT_SUFFIX),
            )
        }
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.special_ids = tuple(sorted(set(tokenizer.all_special_ids)))

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def tokenize_passages(self, passages: list[str]) -> list[list[int]]:
        """Token ids of each passage, cut from the passage's end to ``passage_max_length``."""
        return [
            ids[: self.passage_max_length] for ids in self.tokenizer(passages, add_special_tokens=False)["input_ids"]
        ]

    def tokenize_queries(self, queries: list[str]) -> list[list[int]]:
        return [
            ids[: self.query_max_length]
            for ids in self.tokenizer([" " + q for q in queries], add_special_tokens=False)["input_ids"]
        ]

    def encode(self, query_rows: list[list[int]], passage_rows: list[list[int]]) -> dict:
        query_ids, query_mask = pad_rows(query_rows, self.pad_id, torch.bool)
        passage_ids, passage_mask = pad_rows(passage_rows, self.pad_id, torch.bool)
        return {
            "query_ids": query_ids,
            "query_mask": query_mask,
            "passage_ids": passage_ids,
            "passage_mask": passage_mask,
        }

    def _with_special_tokens(self, query_ids, query_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """The scored block as the Q-PEFT authors' loss reads it: BOS, the query, EOS (the hint still reads
        the query alone); a tokenizer without one of them leaves it out."""
        bos, eos = self.tokenizer.bos_token_id, self.tokenizer.eos_token_id
        rows = [
            [t for t in [bos] if t is not None] + ids[mask].tolist() + [t for t in [eos] if t is not None]
            for ids, mask in zip(query_ids, query_mask.bool())
        ]
        ids, mask = pad_rows(rows, self.pad_id, torch.bool)
        return ids.to(query_ids.device), mask.to(query_ids.device)

    def _block(self, name: str, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.tensor(self.pieces[name], dtype=torch.long, device=device).unsqueeze(0).expand(batch, -1)
        return ids, torch.ones_like(ids, dtype=torch.bool)

    def forward(self, query_ids, query_mask, passage_ids, passage_mask) -> torch.Tensor:
        """(batch,) mean log-probability of the query tokens (float32)."""
        batch, device = len(query_ids), query_ids.device
        embed = self.lm.get_input_embeddings()
        parts = []  # (embeddings, mask) blocks in sequence order
        prompt_parts = methods.prompt_parts(self.lm)
        inputs = methods.PromptInputs(
            query_ids,
            query_mask,
            passage_ids,
            passage_mask,
            self.pieces["hint_prefix"],
            self.pieces["hint_suffix"],
            self.special_ids,
            self.pieces["head"],
            self.pieces["middle"],
        )
        if "prefix" in prompt_parts:
            parts.append(prompt_parts["prefix"](inputs))
        for ids, mask in (
            self._block("head", batch, device),
            (passage_ids, passage_mask),
            self._block("middle", batch, device),
        ):
            parts.append((embed(ids), mask))
        if "hint" in prompt_parts:
            parts.append(prompt_parts["hint"](inputs))
        if getattr(prompt_parts.get("hint"), "score_special_tokens", False):
            query_ids, query_mask = self._with_special_tokens(query_ids, query_mask)
        for ids, mask in (self._block("question", batch, device), (query_ids, query_mask)):
            parts.append((embed(ids), mask))
        dtype = parts[-1][0].dtype
        inputs = torch.cat([vectors.to(dtype) for vectors, _ in parts if vectors.shape[1]], dim=1)
        mask = torch.cat([m for _, m in parts if m.shape[1]], dim=1)
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)  # holes do not advance the position
        hidden = find_base_model(self.lm)(
            inputs_embeds=inputs, attention_mask=mask.long(), position_ids=positions, use_cache=False
        ).last_hidden_state
        width = query_ids.shape[1]
        start = inputs.shape[1] - width  # the query block is last; position t-1 predicts token t
        predicting = hidden[:, start - 1 : start - 1 + width][query_mask]
        head = self.lm.get_output_embeddings()
        with torch.autocast(predicting.device.type, enabled=False):  # fp32 scores: bf16 would tie them
            bias = None if getattr(head, "bias", None) is None else head.bias.float()
            logits = nn.functional.linear(predicting.float(), head.weight.float(), bias)
        token_logp = logits.log_softmax(-1).gather(1, query_ids[query_mask].unsqueeze(1)).squeeze(1)
        rows = torch.arange(batch, device=device).unsqueeze(1).expand_as(query_mask)[query_mask]
        total = torch.zeros(batch, device=device).index_add(0, rows, token_logp)
        return total / query_mask.sum(1).clamp(min=1)


def token_rows(model: QueryLikelihood, sources, train: Collection, candidates: dict, query_ids: list[str]) -> list[int]:
    """The vocabulary rows a sparse embedding table may train on this data, from the method's declared
    sources: the hint wrapper's tokens, the training queries' tokens, every token of the passages a
    training query can meet (its candidates and judged documents). Special tokens never."""
    rows = set()
    if "hint_wrapper" in sources:
        rows |= set(model.pieces["hint_prefix"]) | set(model.pieces["hint_suffix"])
    if "template" in sources:  # the prompt's own tokens: hint candidates where the hint reads them
        rows |= set(model.pieces["head"]) | set(model.pieces["middle"])
    if "train_queries" in sources:
        for ids in model.tokenize_queries([train.queries[q] for q in query_ids]):
            rows.update(ids)
    if "train_passages" in sources:
        docs = sorted(
            {d for q in query_ids for d in list(candidates.get(q, {})) + list(train.qrels[q]) if d in train.corpus}
        )
        for ids in model.tokenize_passages([train.corpus[d] for d in docs]):
            rows.update(ids)
    return sorted(rows - set(model.special_ids))


def likelihood_batches(
    groups,
    train: Collection,
    model: QueryLikelihood,
    batch_queries: int,
    in_batch: str = "positives",
    pairs_per_step: int | None = None,
):
    """step -> every pair the hinge needs: each query with its positive, its first-stage negatives and
    the other queries' positives (``in_batch: all``: their negatives too), skipped where judged relevant to
    it. ``pairs_per_step``: the step as a list of mini-batches of that many (positive, negative) pairs, one
    update each (the Q-PEFT authors' script: 2 pairs, 4 sequences)."""

    def negatives_of(i, chosen) -> list[str]:
        q, _, negs = chosen[i]
        others = []
        for j, (_, p, their_negs) in enumerate(chosen):
            if j != i:
                others += [p] + (list(their_negs) if in_batch == "all" else [])
        return list(negs) + [d for d in others if train.qrels[q].get(d, 0) <= 0]

    def encoded(pairs, positive_index, negatives) -> dict:
        out = model.encode(
            model.tokenize_queries([train.queries[q] for q, _ in pairs]),
            model.tokenize_passages([train.corpus[d] for _, d in pairs]),
        )
        out["positive_index"] = torch.tensor(positive_index)
        out["negative_pairs"] = torch.tensor(negatives, dtype=torch.long).view(-1, 2)
        return out

    def whole(chosen) -> dict:
        pairs, positive_index, negatives = [], [], []
        for i, (q, pos, _) in enumerate(chosen):
            positive_index.append(len(pairs))
            pairs.append((q, pos))
            for d in negatives_of(i, chosen):
                negatives.append((i, len(pairs)))
                pairs.append((q, d))
        return encoded(pairs, positive_index, negatives)

    def mini_batches(chosen) -> list[dict]:
        triples = [(q, pos, d) for i, (q, pos, _) in enumerate(chosen) for d in negatives_of(i, chosen)]
        out = []
        for start in range(0, len(triples), pairs_per_step):
            part = triples[start : start + pairs_per_step]
            pairs = [pair for q, pos, d in part for pair in ((q, pos), (q, d))]
            out.append(encoded(pairs, list(range(0, len(pairs), 2)), [(k, 2 * k + 1) for k in range(len(part))]))
        return out

    def batch(step: int):
        chosen = groups.batch(step, batch_queries)
        return mini_batches(chosen) if pairs_per_step else whole(chosen)

    return batch


def hinge_loss(margin: float):
    """mean over negatives of max(0, loss(q|d+) - loss(q|d-) + margin) + mean loss(q|d+), where loss is
    the per-sequence mean token negative log-likelihood."""

    def loss(model, batch) -> torch.Tensor:
        positive_index, negative_pairs = batch.pop("positive_index"), batch.pop("negative_pairs")
        nll = -model(**batch)
        positive = nll[positive_index]
        hinge = torch.relu(positive[negative_pairs[:, 0]] - nll[negative_pairs[:, 1]] + margin)
        return (hinge.mean() if len(hinge) else positive.new_zeros(())) + positive.mean()

    return loss


def rerank(
    model: QueryLikelihood,
    collection: Collection,
    candidates: dict,
    settings,
    device,
    desc="qlm",
    autocast=contextlib.nullcontext,
) -> tuple[dict, dict]:
    """Query-likelihood scores of the top-``settings.depth`` candidates of every query; every text tokenised once."""
    depth = settings.depth
    query_tokens = dict(zip(collection.queries, model.tokenize_queries(list(collection.queries.values()))))
    docs = sorted(
        {d for q in collection.queries for d in list(candidates.get(q, {}))[:depth] if d in collection.corpus}
    )
    passage_tokens = dict(zip(docs, model.tokenize_passages([collection.corpus[d] for d in docs])))

    def encode(chunk):
        return model.encode([query_tokens[q] for q, _ in chunk], [passage_tokens[d] for _, d in chunk])

    def length(q, d):
        return len(query_tokens[q]) + len(passage_tokens[d])

    return score_candidates(model, collection, candidates, settings, device, encode, length, desc, autocast)


# The Q-PEFT authors' training (github zhiyuanpeng/Q-PEFT, zhiyuan/train_infer.py and xuyang/loss.py): AdamW
# at 3e-2 with no scheduler and no clipping, 320 training queries in batches of 4, one update per mini-batch
# of 4 sequences (2 positive-negative pairs), 7 negatives per query (its BM25 negative and the other three
# queries' positives and BM25 negatives), up to 20 epochs stopped after 6 without a lower loss on 128 dev
# queries (ours: held out of the training queries), the best epoch kept. lr 3e-2 is theirs for the
# prompt-side methods; LoRA and full fine-tuning keep the stage's rates (3e-2 would wreck their weights).
PAPER = {
    "max_queries": 320,
    "batch_queries": 4,
    "group_size": 2,
    "in_batch": "all",
    "pairs_per_step": 2,
    "epochs": 20,
    "dev_queries": 128,
    "patience": 6,
    "schedule": "constant",
    "warmup_ratio": 0.0,
    "grad_clip": None,
    "passage_max_length": 256,
    "lr": {"default": 3.0e-2, "lora": 5.0e-4, "full": 1.0e-5},
}


class QlmTrain(TrainSettings):
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"paper": PAPER}

    group_size: PositiveInt = setting(2)
    margin: Float = setting(1.0, ge=0.0)
    in_batch: Literal["positives", "all"] = setting("positives")
    pairs_per_step: PositiveInt | None = setting(None)
    passage_max_length: PositiveInt = setting(160)
    query_max_length: PositiveInt = setting(32)
    lr: PositiveFloat | dict[str, PositiveFloat] = setting({"default": 3.0e-3, "lora": 5.0e-4, "full": 1.0e-5})

    @model_validator(mode="after")
    def _mini_batches_need_a_constant_rate(self):
        if self.pairs_per_step and self.schedule != "constant":
            raise ValueError(
                "pairs_per_step makes a step's number of updates vary: use schedule: constant with it "
                "(a linear decay would not end where it should)"
            )
        return self


class QlmEval(EvalSettings):
    batch_size: PositiveInt = setting(16)
    passage_max_length: PositiveInt = setting(160)
    query_max_length: PositiveInt = setting(32)


class PromptSettings(Settings):
    template: str = setting(DEFAULT_TEMPLATE)

    def model_post_init(self, context) -> None:
        split_template(self.template)  # one clear line for a template without its fields in order


def _perf_batch(built: Built, length: int, queries: int, group: int) -> dict:
    """Each query with ``group`` passages (the first its positive) of ``length`` tokens; every other pair a negative."""
    from ..samples import passages

    model, texts = built.model, passages(queries * group)
    query_rows = [ids[:32] for ids in model.tokenize_queries([t[:120] for t in texts[:queries]])]
    passage_rows = []
    for ids in built.tokenizer(texts, add_special_tokens=False)["input_ids"]:
        passage_rows.append((ids * (length // max(1, len(ids)) + 1))[:length])
    pairs = [(q, q * group + j) for q in range(queries) for j in range(group)]
    batch = model.encode([query_rows[q] for q, _ in pairs], [passage_rows[p] for _, p in pairs])
    batch["positive_index"] = torch.tensor([q * group for q in range(queries)])
    batch["negative_pairs"] = torch.tensor(
        [(q, q * group + j) for q in range(queries) for j in range(1, group)], dtype=torch.long
    ).view(-1, 2)
    return batch


@register
class QueryLikelihoodStage(Stage):
    name = "qlm"
    summary = "causal-LM query likelihood reranking the first stage's top-k"
    family = "causal-lm"
    default_model = "smollm2"
    smoke_suite = "smoke-qlm"
    metrics = RERANK_METRICS
    Train = QlmTrain
    Eval = QlmEval
    section_key = "prompt"
    Section = PromptSettings
    perf = PerfHooks(
        batch=_perf_batch,
        examples=lambda queries, group: queries * group,
        tokens=lambda queries, group, length: queries * group * (length + 32),
    )

    def build(self, cell) -> Built:
        from ..models import load_causal_lm

        tokenizer, lm = load_causal_lm(cell.model, seed=cell.seed)
        evaluation = self.Eval(**cell.eval)
        model = QueryLikelihood(
            lm, tokenizer, self.section(cell).template, evaluation.passage_max_length, evaluation.query_max_length
        )
        return Built(model, tokenizer, [lm])

    def configure(self, built, phase, settings):
        built.model.passage_max_length = settings.passage_max_length
        built.model.query_max_length = settings.query_max_length

    def token_rows(self, built, sources, train, candidates, query_ids):
        return token_rows(built.model, sources, train, candidates, query_ids)

    def batches(self, built, groups, train, settings):
        return likelihood_batches(
            groups, train, built.model, settings.batch_queries, settings.in_batch, settings.pairs_per_step
        )

    def loss(self, built, settings):
        return hinge_loss(settings.margin)

    def score(self, built, collection, candidates, settings, device, autocast):
        return rerank(
            built.model, collection, candidates, settings, device, desc=f"qlm {collection.ref}", autocast=autocast
        )
