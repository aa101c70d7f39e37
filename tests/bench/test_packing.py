"""Token budgets: a step's sequences run in length-sorted chunks of at most ``token_budget`` padded tokens,
padded to a multiple of 8, give the loss and the gradient of the whole step at once (rerank and dense, on
tiny-bert with dropout off), with fewer padded tokens where lengths vary."""

import pytest
import torch

from bench.data import Collection
from bench.models import load_backbone
from bench.packing import chunk_bounds, pack
from bench.stages.dense import BiEncoder, DenseTrain, contrastive_batches, contrastive_loss
from bench.stages.rerank import CrossEncoder, RerankTrain, group_batches, group_loss
from helpers.data import FixedGroups


@pytest.mark.parametrize(
    "lengths, budget, multiple",
    [([3, 5, 8, 8, 13, 40], 32, 1), ([3, 5, 8, 8, 13, 40], 32, 8), ([1] * 10, 4, 1), ([50, 60], 16, 8), ([4], None, 8)],
)
def test_chunks_cover_every_row_once_within_the_budget(lengths, budget, multiple):
    bounds = chunk_bounds(lengths, budget, multiple)
    assert [i for start, end in bounds for i in range(start, end)] == list(range(len(lengths)))
    for start, end in bounds:
        width = -(-lengths[end - 1] // multiple) * multiple
        assert end - start == 1 or budget is None or (end - start) * width <= budget
    if budget is None:
        assert bounds == [(0, len(lengths))]


def test_packed_rows_come_back_in_the_step_order():
    rows = [[5, 6, 7], [5], [5, 6, 7, 8, 9], [5, 6], [5, 6, 7, 8]]
    packed = pack({"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]}, 0, 8, 4)
    assert all(chunk["input_ids"].shape[1] % 4 == 0 for chunk in packed.chunks)
    assert all(chunk["input_ids"].numel() <= 8 for chunk in packed.chunks if len(chunk["input_ids"]) > 1)
    lengths = packed.apply(lambda input_ids, attention_mask: attention_mask.sum(1))
    assert lengths.tolist() == [len(r) for r in rows]


def collection():
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    corpus = {f"d{i}": " ".join(words[: 1 + (i * 5) % 12]) for i in range(12)}  # 1 to 12 words
    queries = {f"q{i}": " ".join(words[i : i + 1 + i % 3]) for i in range(4)}
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(4)}
    return Collection("toy", corpus, queries, qrels, "toy")


GROUPS = FixedGroups([(f"q{i}", f"d{i}", [f"d{i + 4}", f"d{i + 8}"]) for i in range(4)])


def loss_and_grads(model, batch, loss):
    model.zero_grad()
    value = loss(model, dict(batch))
    value.backward()
    return value.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same(reference, packed):
    (loss_a, grads_a), (loss_b, grads_b) = reference, packed
    assert loss_a.item() == pytest.approx(loss_b.item(), abs=1e-6)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-4), name


def test_rerank_step_in_token_budget_chunks_has_the_whole_steps_loss_and_gradient():
    tokenizer, backbone = load_backbone("tiny-bert", seed=3)
    model, train = CrossEncoder(backbone).eval(), collection()  # eval: no dropout, the step is deterministic
    plain = group_batches(GROUPS, train, tokenizer, 4, 48)(0)
    settings = RerankTrain(token_budget=96, pad_to_multiple_of=8)
    packed = group_batches(GROUPS, train, tokenizer, 4, 48, settings)(0)
    assert len(packed["packed"].chunks) > 2  # the budget splits the step
    assert packed["packed"].padded_tokens < plain["input_ids"].numel()  # less padding than one batch
    loss = group_loss("softmax")
    assert_same(loss_and_grads(model, plain, loss), loss_and_grads(model, packed, loss))


def test_dense_step_in_token_budget_chunks_has_the_whole_steps_loss_and_gradient():
    tokenizer, backbone = load_backbone("tiny-bert", seed=3)
    model, train = BiEncoder(backbone).eval(), collection()
    plain = contrastive_batches(GROUPS, train, tokenizer, DenseTrain(batch_queries=4, group_size=3))(0)
    settings = DenseTrain(batch_queries=4, group_size=3, token_budget=48, pad_to_multiple_of=8)
    packed = contrastive_batches(GROUPS, train, tokenizer, settings)(0)
    assert len(packed["d_packed"].chunks) > 1 and packed["d_packed"].padded_tokens < plain["d_input_ids"].numel()
    loss = contrastive_loss(0.05)
    assert_same(loss_and_grads(model, plain, loss), loss_and_grads(model, packed, loss))


def test_token_budget_defaults_leave_cell_ids_alone():
    assert RerankTrain.id_defaults()["token_budget"] is None and DenseTrain.id_defaults()["pad_to_multiple_of"] == 1
    with pytest.raises(ValueError):
        RerankTrain(token_budget=0)
