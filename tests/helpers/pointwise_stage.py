"""A stage defined outside the harness, in one class: a cross-encoder trained pointwise (binary
cross-entropy on each pair alone). Loaded by tests, in process or through BENCH_PLUGINS."""

import torch

from bench.evaluate import RERANK_METRICS
from bench.stages import Built, Stage, register
from bench.stages.rerank import CrossEncoder, RerankEval, RerankTrain, encode_pairs, rerank


@register
class Pointwise(Stage):
    name = "pointwise"
    summary = "cross-encoder trained on single pairs (binary cross-entropy)"
    family = "encoder"
    default_model = "tiny-bert"
    metrics = RERANK_METRICS[:2]
    Train = RerankTrain
    Eval = RerankEval

    def build(self, cell) -> Built:
        from bench.models import load_backbone

        tokenizer, backbone = load_backbone(cell.model, seed=cell.seed)
        model = CrossEncoder(backbone)
        return Built(model, tokenizer, [backbone], head_params=tuple(model.head.parameters()))

    def batches(self, built, groups, train, settings):
        def batch(step):
            pairs = [
                (q, d, float(d == pos))
                for q, pos, negs in groups.batch(step, settings.batch_queries)
                for d in [pos] + negs
            ]
            encoded = encode_pairs(
                built.tokenizer,
                [train.queries[q] for q, _, _ in pairs],
                [train.corpus[d] for _, d, _ in pairs],
                settings.max_length,
            )
            return {**encoded, "labels": torch.tensor([y for _, _, y in pairs])}

        return batch

    def loss(self, built, settings):
        def loss(model, batch):
            labels = batch.pop("labels")
            return torch.nn.functional.binary_cross_entropy_with_logits(model(**batch).float(), labels)

        return loss

    def score(self, built, collection, candidates, settings, device, autocast):
        return rerank(built.model, built.tokenizer, collection, candidates, settings, device, autocast=autocast)
