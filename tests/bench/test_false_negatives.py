"""False negatives: a dense batch leaves every passage judged relevant to a query (other than its own
positive) and every copy of its positive out of that query's softmax denominator; the rerank and qlm
samplers never use a judged-relevant document as a negative."""

import math

import pytest
import torch

from bench.data import Collection
from bench.sampling import EpochGroups
from bench.stages.dense import DenseTrain, contrastive_batches, false_negatives, in_batch_loss
from helpers.data import FixedGroups


def collection():
    corpus = {f"d{i}": f"text {i}" for i in range(8)}
    queries = {"A": "query a", "B": "query b", "C": "query c"}
    # d2 is B's positive and also judged relevant to A; C's only positive is d4
    qrels = {"A": {"d1": 1, "d2": 2}, "B": {"d2": 1}, "C": {"d4": 1}}
    return Collection("toy", corpus, queries, qrels, "toy")


def test_mask_of_a_hand_built_batch():
    train = collection()
    groups = [("A", "d1", ["d5"]), ("B", "d2", ["d6"]), ("C", "d4", ["d2"])]  # docs: d1 d5 | d2 d6 | d4 d2
    mask = false_negatives(groups, train)
    expected = torch.zeros(3, 6, dtype=torch.bool)
    expected[0, 2] = expected[0, 5] = True  # A: d2 is judged relevant to A (B's positive, C's hard negative)
    expected[1, 5] = True  # B: the other copy of its own positive d2
    assert torch.equal(mask, expected)


def test_masked_loss_equals_the_hand_computed_loss():
    torch.manual_seed(0)
    q, d = torch.randn(3, 4), torch.randn(6, 4)
    mask = false_negatives([("A", "d1", ["d5"]), ("B", "d2", ["d6"]), ("C", "d4", ["d2"])], collection())
    t, expected = 0.5, 0.0
    for i in range(3):
        logits = {j: float(q[i] @ d[j]) / t for j in range(6) if not mask[i, j]}
        expected += -logits[2 * i] + math.log(sum(math.exp(x) for x in logits.values()))
    assert in_batch_loss(q, d, 2, t, mask).item() == pytest.approx(expected / 3, rel=1e-6)
    assert in_batch_loss(q, d, 2, t).item() != pytest.approx(expected / 3, rel=1e-3)  # the mask matters here


def test_batches_carry_the_mask_and_count_the_batches_it_touched():
    from bench.models import load_tokenizer

    train, counters = collection(), {}
    settings = DenseTrain(batch_queries=3, group_size=2, max_length=16, query_max_length=8)
    groups = FixedGroups([("A", "d1", ["d5"]), ("B", "d2", ["d6"]), ("C", "d4", ["d7"])])
    batch = contrastive_batches(groups, train, load_tokenizer("tiny-bert"), settings, counters)(0)
    assert batch["exclude"][0, 2] and batch["exclude"].sum() == 1
    assert counters == {"batches": 1, "masked_batches": 1, "masked_pairs": 1}
    off = contrastive_batches(
        groups, train, load_tokenizer("tiny-bert"), settings.model_copy(update={"mask_false_negatives": False})
    )(0)
    assert "exclude" not in off


def test_a_batch_spanning_two_epochs_masks_the_repeated_query():
    """One query twice in a batch (the end of an epoch and the start of the next): each copy's positive
    is out of the other copy's denominator."""
    train = Collection(
        "t", {"d1": "x", "d2": "y", "d3": "z"}, {"A": "a", "B": "b"}, {"A": {"d1": 1}, "B": {"d2": 1}}, "t"
    )
    groups = EpochGroups(train, {q: {"d3": 1.0} for q in train.queries}, group_size=2, seed=0)
    chosen = groups.batch(1, 3)  # positions 3, 4, 5 of a 2-query epoch: both queries, one of them twice
    queries = [q for q, _, _ in chosen]
    assert len(set(queries)) == 2
    mask = false_negatives(chosen, train)
    twice = next(q for q in queries if queries.count(q) == 2)
    i, j = [k for k, q in enumerate(queries) if q == twice]
    assert mask[i, 2 * j] and mask[j, 2 * i]


def test_samplers_never_draw_a_judged_relevant_negative():
    from bench.stages.qlm import likelihood_batches

    train = collection()
    everything = {q: {d: 1.0 for d in train.corpus} for q in train.queries}
    groups = EpochGroups(train, everything, group_size=4, seed=3)
    for epoch in range(5):
        for q, pos, negs in groups.epoch(epoch):  # rerank, dense: hard negatives
            assert train.qrels[q][pos] > 0 and all(train.qrels[q].get(d, 0) <= 0 for d in negs)

    class Recorder:  # the qlm batches only need tokenisation: record the pairs they ask for
        pieces = {}

        def tokenize_queries(self, texts):
            return [[1]] * len(texts)

        def tokenize_passages(self, texts):
            return [[1]] * len(texts)

        def encode(self, query_rows, passage_rows):
            return {}

    batch = likelihood_batches(groups, train, Recorder(), batch_queries=3)
    for step in range(6):
        chosen = groups.batch(step, 3)
        out = batch(step)
        for query_index, pair_index in out["negative_pairs"].tolist():
            q = chosen[query_index][0]
            # the pair's document: rebuild the pair list as likelihood_batches lays it out
            pairs = []
            for i, (qq, pos, negs) in enumerate(chosen):
                pairs.append((qq, pos))
                others = [p for j, (_, p, _) in enumerate(chosen) if j != i and train.qrels[qq].get(p, 0) <= 0]
                pairs.extend((qq, d) for d in list(negs) + others)
            assert train.qrels[q].get(pairs[pair_index][1], 0) <= 0
