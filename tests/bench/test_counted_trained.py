"""Counted = trained: for every method on every architecture, as the stages wire them (the rerank
stage's pooler head, the dense stage's bi-encoder, the qlm stage's query likelihood), one forward and
backward on a tiny batch give a gradient to exactly the parameters counted as trainable."""

import pytest

import methods
from bench.stages.dense import BiEncoder
from bench.stages.qlm import QueryLikelihood
from bench.stages.rerank import CrossEncoder
from helpers.models import encoder_methods, perturb, tiny_inputs, tiny_llama, tiny_model

KNOBS = {
    "adapter": {"r": 4},
    "adapter-pfeiffer": {"r": 4},
    "lora": {"r": 4},
    "prefix": {"l": 4},
    "mam": {"r": 4, "l": 3},
    "iaa-s": {"r": 3, "ar": 5},
    "iaa-l": {"r": 3, "ar": 5},
    "iaa-m": {"r": 3, "ar": 5},
    "full": {},
    "bitfit": {},
}


def check(model, backbone_params, record, loss):
    perturb(model, scale=0.1)  # zero-initialised up-projections would block gradients behind them
    model.train()
    loss().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert with_grad == trainable, (sorted(trainable - with_grad), sorted(with_grad - trainable))
    counted = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and id(p) in backbone_params)
    assert counted == record.trainable


@pytest.mark.parametrize("arch", ["bert", "roberta", "mpnet"])
@pytest.mark.parametrize("name", sorted(KNOBS))
def test_rerank_pooler_head(arch, name):
    assert sorted(KNOBS) == sorted(encoder_methods())
    backbone = tiny_model(arch)
    model = CrossEncoder(backbone)
    assert model.use_pooler  # the standard head: pooler -> dropout -> linear
    record = methods.apply(model, name, **KNOBS[name])
    inputs = tiny_inputs()
    check(model, {id(p) for p in backbone.parameters()}, record, lambda: model(**inputs).sum())
    assert record.head == 32 + 1


@pytest.mark.parametrize("arch", ["bert", "roberta", "mpnet"])
@pytest.mark.parametrize("name", sorted(KNOBS))
def test_dense_bi_encoder(arch, name):
    backbone = tiny_model(arch)
    backbone.pooler = None  # as the dense stage builds it: token states are pooled, the pooler never trains
    model = BiEncoder(backbone, "mean", "cos")
    record = methods.apply_towers(model, model.towers(), name, **KNOBS[name])
    inputs = tiny_inputs()
    batch = {**{f"q_{k}": v for k, v in inputs.items()}, **{f"d_{k}": v for k, v in inputs.items()}}

    def loss():
        q, d = model(**batch)
        return (q @ d.T).sum()

    check(model, {id(p) for p in backbone.parameters()}, record, loss)


LM_KNOBS = {"soft-prompt": {"tokens": 3}, "lora": {"r": 2}, "full": {}, "qpeft-a": {}, "qpeft-r": {"k": 3}}


@pytest.mark.parametrize("name", sorted(LM_KNOBS))
def test_query_likelihood(name):
    from bench.models import load_tokenizer

    tokenizer = load_tokenizer("tiny-llama")
    lm = tiny_llama(vocab=len(tokenizer))
    model = QueryLikelihood(lm, tokenizer, passage_max_length=12, query_max_length=6)
    queries, passages = ["what causes rain", "flu"], ["rain forms when water condenses", "fever and cough"]
    batch = model.encode(model.tokenize_queries(queries), model.tokenize_passages(passages))
    extra = {}
    if methods.get_method(name).token_sources:
        from bench.data import Collection
        from bench.stages.qlm import token_rows

        # the rows a table may train come from the training data: here these two pairs
        train = Collection(
            "t",
            {"x": passages[0], "y": passages[1]},
            {"a": queries[0], "b": queries[1]},
            {"a": {"x": 1}, "b": {"y": 1}},
            "t",
        )
        extra["token_ids"] = token_rows(model, methods.get_method(name).token_sources, train, {}, ["a", "b"])
    record = methods.apply(model, name, **LM_KNOBS[name], **extra)
    check(model, {id(p) for p in lm.parameters()}, record, lambda: model(**batch).sum())
