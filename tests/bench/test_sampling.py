"""Training groups for the reranker, and mixed-precision resolution."""

import pytest

from bench import environment
from bench.data import load_collection
from bench.errors import BenchError
from bench.models import load_tokenizer
from bench.sampling import EpochGroups
from bench.stages.rerank import group_batches
from helpers.data import write_beir


@pytest.fixture
def train(tmp_path):
    return load_collection(f"{write_beir(tmp_path)}/train")


def all_docs_but(coll, positive):
    return {d: 1.0 for d in coll.corpus if d != positive}


def test_groups_hold_one_positive_then_first_stage_negatives(train):
    candidates = {q: all_docs_but(train, next(iter(train.qrels[q]))) for q in train.queries}
    groups = EpochGroups(train, candidates, group_size=4, seed=1)
    assert len(groups) == 4  # q5, q6 are judged only in test
    for q, pos, negs in groups.epoch(0):
        assert train.qrels[q][pos] > 0
        assert len(negs) == 3 and len(set(negs)) == 3
        assert all(train.qrels[q].get(d, 0) <= 0 for d in negs)


def test_each_epoch_draws_new_negatives_and_order_reproducibly(train):
    candidates = {q: all_docs_but(train, next(iter(train.qrels[q]))) for q in train.queries}
    groups = EpochGroups(train, candidates, group_size=3, seed=7)
    epochs = [list(groups.epoch(e)) for e in range(4)]
    assert any(epochs[e] != epochs[0] for e in range(1, 4))
    assert all(sorted(g[0] for g in epoch) == sorted(g[0] for g in epochs[0]) for epoch in epochs)
    again = EpochGroups(train, candidates, group_size=3, seed=7)
    assert [list(again.epoch(e)) for e in range(4)] == epochs


def test_max_queries_fixes_one_subset_for_every_epoch(train):
    groups = EpochGroups(train, {}, group_size=2, seed=3, max_queries=2)
    assert len(groups) == 2
    subsets = {frozenset(g[0] for g in groups.epoch(e)) for e in range(5)}
    assert len(subsets) == 1


def test_too_few_candidates_are_topped_up_from_the_corpus(train):
    groups = EpochGroups(train, {"q1": {"d2": 1.0}}, group_size=5, seed=0)
    q1 = next(g for g in groups.epoch(0) if g[0] == "q1")
    assert "d2" in q1[2] and len(q1[2]) == 4 and "d1" not in q1[2]


def test_batches_cross_epoch_boundaries(train):
    tokenizer = load_tokenizer("tiny-bert")
    groups = EpochGroups(train, {}, group_size=2, seed=0)
    batches = group_batches(groups, train, tokenizer, batch_queries=3, max_length=32)
    batch = batches(1)  # positions 3, 4, 5: last group of epoch 0, first two of epoch 1
    assert batch["group_size"] == 2 and batch["input_ids"].shape[0] == 6
    first_query = train.queries[groups.epoch(1)[0][0]]
    decoded = tokenizer.decode(batch["input_ids"][2], skip_special_tokens=True)
    assert decoded.startswith(first_query)


def test_precision_auto_resolves_and_bad_values_are_refused():
    assert environment.resolve_precision("no") == "no"
    assert environment.resolve_precision("auto") in ("no", "bf16")
    with pytest.raises(BenchError, match="choose one of no, bf16, fp16, auto"):
        environment.resolve_precision("fp8")
