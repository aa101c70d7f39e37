"""The dense stage: pooling, the in-batch loss, exact search, methods on both sides, end to end."""

import math

import pytest
import torch
from transformers import BertConfig, BertModel

import methods
from bench.errors import BenchError
from bench.stages.dense import BiEncoder, encode_texts, exact_search, in_batch_loss, pool


def tiny_bert(seed=0):
    torch.manual_seed(seed)
    return BertModel(
        BertConfig(
            vocab_size=100,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        )
    )


def test_first_token_and_masked_mean_pooling():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.equal(pool(hidden, mask, "first"), torch.tensor([[1.0, 2.0], [5.0, 6.0]]))
    assert torch.allclose(pool(hidden, mask, "mean"), torch.tensor([[2.0, 3.0], [7.0, 8.0]]))  # padding ignored


@pytest.mark.parametrize("similarity", ["cos", "dot"])
def test_encoder_similarity_and_bad_options(similarity):
    model = BiEncoder(tiny_bert(), "mean", similarity)
    ids = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    vectors = model.encode("query", input_ids=ids, attention_mask=(ids > 0).long())
    norms = vectors.norm(dim=-1)
    assert torch.allclose(norms, torch.ones(2), atol=1e-5) == (similarity == "cos")
    with pytest.raises(BenchError, match="pooling 'max'"):
        BiEncoder(tiny_bert(), "max")


def test_in_batch_loss_equals_hand_computation():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 2.0], [1.0, 1.0]])  # group size 2: q0 -> d0, q1 -> d2
    t = 0.5
    expected = 0.0
    for i, positive in enumerate([0, 2]):
        logits = [float(q[i] @ d[j]) / t for j in range(4)]
        expected += -logits[positive] + math.log(sum(math.exp(x) for x in logits))
    assert in_batch_loss(q, d, group_size=2, temperature=t).item() == pytest.approx(expected / 2, rel=1e-6)


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_exact_search_equals_brute_force(backend):
    if backend == "faiss":
        pytest.importorskip("faiss")
    torch.manual_seed(0)
    queries, docs = torch.randn(37, 8), torch.randn(500, 8)
    scores, indices = exact_search(queries, docs, 10, backend, chunk=16)
    reference = queries @ docs.T
    ref_scores, ref_indices = torch.topk(reference, 10, dim=1)
    assert torch.equal(indices, ref_indices)
    assert torch.allclose(scores, ref_scores, atol=1e-5)
    _, all_indices = exact_search(queries[:2], docs[:5], 100, backend)
    assert all_indices.shape == (2, 5)  # k larger than the corpus: everything, ranked


def test_length_sorted_encoding_keeps_input_order():
    from bench.models import load_tokenizer

    tokenizer = load_tokenizer("tiny-bert")
    model = BiEncoder(
        BertModel(
            BertConfig(
                vocab_size=tokenizer.vocab_size,
                hidden_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=32,
            )
        ),
        "mean",
        "cos",
    )
    texts = ["a long text " * 9, "short", "medium length text here", "x " * 30, "tiny"]
    batched = encode_texts(model, "doc", tokenizer, texts, batch_size=2, max_length=32, device="cpu")
    one_by_one = torch.cat([encode_texts(model, "doc", tokenizer, [t], 1, 32, "cpu") for t in texts])
    assert torch.allclose(batched, one_by_one, atol=1e-5)


@pytest.mark.parametrize("separate", [False, True])
def test_document_side_runs_through_the_methods_modules(separate):
    model = BiEncoder(tiny_bert(), "mean", "cos", separate_towers=separate)
    record = methods.apply_towers(model, model.towers(), "lora", r=2)
    ids = torch.tensor([[1, 5, 6, 2]])
    before = model.encode("doc", input_ids=ids, attention_mask=torch.ones_like(ids))
    for param in model.parameters():
        if param.requires_grad:
            torch.nn.init.normal_(param, std=0.5)  # LoRA's zero B made live on every tower
    after = model.encode("doc", input_ids=ids, attention_mask=torch.ones_like(ids))
    assert not torch.allclose(before, after)
    towers = 2 if separate else 1
    single = methods.apply(BiEncoder(tiny_bert()), "lora", r=2)
    assert record.trainable == towers * single.trainable and record.backbone == towers * single.backbone
    assert record.pct == pytest.approx(single.pct)
    trained = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trained == ({"encoder", "doc_encoder"} if separate else {"encoder"})


def test_a_corpus_shared_by_two_splits_is_encoded_once_and_retrieves_the_same(tmp_path):
    from bench.data import load_beir_folder
    from bench.models import load_tokenizer
    from bench.stages.dense import DenseEval, retrieve
    from helpers.data import write_beir

    tokenizer = load_tokenizer("tiny-bert")
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    torch.manual_seed(0)
    model = BiEncoder(BertModel(config), "mean", "cos").eval()
    folder = write_beir(tmp_path)
    test, train = load_beir_folder(folder, "test"), load_beir_folder(folder, "train")
    settings = DenseEval(depth=3, batch_size=2, max_length=32, query_max_length=16)
    cache = {}
    first, timing_first = retrieve(model, tokenizer, train, settings, "cpu", doc_cache=cache)
    second, timing_second = retrieve(model, tokenizer, test, settings, "cpu", doc_cache=cache)
    assert (
        len(cache) == 1 and timing_second.get("corpus_encoded_earlier") and "corpus_encoded_earlier" not in timing_first
    )
    assert second == retrieve(model, tokenizer, test, settings, "cpu")[0]  # the cached vectors are the same vectors
    train.corpus["d1"] = train.corpus["d1"] + " changed"
    retrieve(model, tokenizer, train, settings, "cpu", doc_cache=cache)
    assert len(cache) == 2  # another corpus text: encoded afresh
