"""The causal-LM methods (soft prompt, Q-PEFT retrieval and attention, LoRA on LLaMA): selection,
gradients, exact counts, save/load, and LoRA against peft's."""

import copy
import random

import pytest
import torch
import torch.nn as nn

import methods
from helpers.models import copy_lora_into_peft, tiny_llama, tiny_model
from methods.qpeft import AttendedHint, RetrievedHint

SPECIAL = 0


def handmade_embedding() -> nn.Embedding:
    """Token t's cosine with the query vector e_q = [1, 0, 0, 0] is set by hand."""
    table = torch.zeros(12, 4)
    table[1] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # the query token itself
    table[SPECIAL] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # cosine 1, but a special token
    table[9] = torch.tensor([1.0, 0.01, 0.0, 0.0])  # cosine ~1, only at a query position
    table[5] = torch.tensor([1.0, 0.5, 0.0, 0.0])  # 0.894, twice in the context
    table[7] = torch.tensor([1.0, 1.0, 0.0, 0.0])  # 0.707
    table[3] = torch.tensor([1.0, 3.0, 0.0, 0.0])  # 0.316
    table[4] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # 0
    table[2] = torch.tensor([-1.0, 0.2, 0.0, 0.0])  # negative
    for t in (6, 8, 10, 11):
        table[t] = torch.tensor([0.0, 0.0, 1.0, float(t)])
    return nn.Embedding.from_pretrained(table, freeze=True)


# context: special, 5, 4, 5, 7, 9 (a query position), 3, 2, padding
CONTEXT = torch.tensor([[SPECIAL, 5, 4, 5, 7, 9, 3, 2, 11]])
CANDIDATE = torch.tensor([[True, True, True, True, True, False, True, True, False]])


@pytest.mark.parametrize(
    "k, expected", [(1, [5]), (2, [5, 7]), (3, [5, 7, 3]), (4, [5, 7, 3, 4]), (6, [5, 7, 3, 4, 2])]
)
def test_qpeft_r_hint_is_the_k_most_similar_distinct_document_tokens(k, expected):
    embedding = handmade_embedding()
    query = torch.tensor([[1, 11]])
    query_mask = torch.tensor([[True, False]])  # the second query slot is padding: never counts
    ids, valid = methods.select_hint_tokens(
        embedding(query), query_mask, embedding(CONTEXT), CONTEXT, CANDIDATE, [SPECIAL], k
    )
    assert ids[0][valid[0]].tolist() == expected
    assert ids.shape == (1, k) and valid[0].sum() == len(expected)
    assert SPECIAL not in ids[0][valid[0]].tolist() and 9 not in ids[0][valid[0]].tolist()


def _reference_selection(q, q_mask, c, c_ids, cand, exclude, k):
    """The spec read literally: rank every (query token, position) pair, walk down, skip specials and
    repeats, keep the first k."""
    scores = torch.sigmoid(nn.functional.normalize(q, dim=-1) @ nn.functional.normalize(c, dim=-1).T)
    entries = [
        (scores[i, j].item(), c_ids[j].item()) for i in range(len(q)) if q_mask[i] for j in range(len(c)) if cand[j]
    ]
    chosen = []
    for _, token in sorted(entries, key=lambda e: -e[0]):
        if token not in exclude and token not in chosen:
            chosen.append(token)
    return chosen[:k]


def test_qpeft_r_selection_matches_the_literal_spec_on_random_batches():
    g = torch.Generator().manual_seed(3)
    for trial in range(20):
        vocab, d, batch, lq, length, k = 40, 8, 3, 5, 30, 6
        table = torch.randn(vocab, d, generator=g)
        # query and context tokens apart: no exact ties (their order is arbitrary in the spec as well)
        q_ids = torch.randint(vocab // 2, vocab, (batch, lq), generator=g)
        c_ids = torch.randint(0, vocab // 2, (batch, length), generator=g)
        q_mask = torch.rand(batch, lq, generator=g) > 0.2
        q_mask[:, 0] = True
        cand = torch.rand(batch, length, generator=g) > 0.3
        exclude = [0, 1]
        ids, valid = methods.select_hint_tokens(table[q_ids], q_mask, table[c_ids], c_ids, cand, exclude, k)
        for b in range(batch):
            expected = _reference_selection(table[q_ids[b]], q_mask[b], table[c_ids[b]], c_ids[b], cand[b], exclude, k)
            assert ids[b][valid[b]].tolist() == expected, trial


def _hint_inputs():
    query = torch.tensor([[1, 2, 3], [4, 5, 0]])
    query_mask = torch.tensor([[True, True, True], [True, True, False]])
    context = torch.tensor([[10, 11, 12, 13, 14, 0], [20, 21, 22, 23, 24, 25]])
    context_mask = torch.tensor([[True, True, True, True, True, False], [True] * 6])
    return query, query_mask, context, context_mask


def test_qpeft_r_takes_no_gradient_through_the_selection():
    torch.manual_seed(0)
    frozen = nn.Embedding(50, 16).requires_grad_(False)
    query, query_mask, context, context_mask = _hint_inputs()
    rows = list(range(1, 30))
    hint = RetrievedHint(frozen, rows, k=3)
    nn.init.normal_(hint.mlp.up.weight, std=0.1)  # away from the zero start, so gradients flow everywhere
    vectors, mask = hint(methods.PromptInputs(query, query_mask, context, context_mask, [40], [41], (0,)))
    assert vectors.shape == (2, 1 + 3 + 1, 16) and mask.all()
    (vectors * torch.randn_like(vectors)).sum().backward()
    ids, _ = methods.select_hint_tokens(hint.table(query), query_mask, frozen(context), context, context_mask, (0,), 3)
    selected = set(ids.flatten().tolist())
    grad = hint.table.rows.grad.abs().sum(1)
    trained = {row for row, g in zip(hint.table.row_ids.tolist(), grad.tolist()) if g > 0}
    assert trained == selected & set(rows)  # the hint's own rows only (wrappers 40, 41 lie outside the table)
    assert not trained & {1, 2, 3, 4, 5}  # query rows steer the selection but take no gradient from it
    assert hint.mlp.down.weight.grad.abs().sum() > 0


def test_qpeft_a_attention_weights_and_query_rows_get_gradients():
    torch.manual_seed(0)
    frozen = nn.Embedding(50, 16).requires_grad_(False)
    query, query_mask, context, context_mask = _hint_inputs()
    hint = AttendedHint(frozen, [1, 2, 3, 4, 5], heads=2)
    vectors, mask = hint(methods.PromptInputs(query, query_mask, context, context_mask, [40], [41], (0,)))
    assert vectors.shape == (2, 1 + 3 + 1, 16)
    assert mask.tolist() == [[True] * 5, [True, True, True, False, True]]
    (vectors * torch.randn_like(vectors)).sum().backward()
    assert hint.attention.in_proj_weight.grad.abs().sum() > 0
    assert hint.attention.out_proj.weight.grad.abs().sum() > 0
    assert (hint.table.rows.grad.abs().sum(1) > 0).all()  # every query row (1..5) is used and trains


def test_qpeft_a_context_entirely_padding_gives_finite_hints():
    frozen = nn.Embedding(50, 16).requires_grad_(False)
    hint = AttendedHint(frozen, [1, 2], heads=2)
    vectors, _ = hint(
        methods.PromptInputs(
            torch.tensor([[1, 2]]), torch.tensor([[True, True]]), torch.tensor([[0, 0]]), torch.tensor([[False, False]])
        )
    )
    assert torch.isfinite(vectors).all()


def test_llm_methods_count_exactly_and_refuse_encoder_only_methods():
    d, vocab = 32, 100
    mlp = 2 * (d * d + d)
    cases = {
        ("soft-prompt", ()): 20 * d,
        ("qpeft-r", (3, 7, 7, 50)): 3 * d + mlp,  # three distinct rows
        ("qpeft-a", (3, 7)): 2 * d + mlp + 4 * d * d + 4 * d,
    }
    for (name, rows), expected in cases.items():
        model = tiny_llama()
        extra = {"token_ids": list(rows)} if rows else {}
        record = methods.apply(model, name, **extra)
        assert record.trainable == expected == sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert record.head == 0
    full_table = methods.apply(tiny_llama(), "qpeft-r", table="full")
    assert full_table.trainable == vocab * d + mlp
    with pytest.raises(methods.MethodError, match="needs token_ids"):
        methods.apply(tiny_llama(), "qpeft-r")
    with pytest.raises(methods.MethodError, match="does not tune causal-lm"):
        methods.apply(tiny_llama(), "adapter", r=4)
    with pytest.raises(methods.MethodError, match="does not tune encoder"):
        methods.apply(tiny_model("bert"), "soft-prompt")


def test_lora_budget_solves_on_a_llama_config_and_untied_lm_head_stays_frozen():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    plan = methods.plan(config, "lora", 0.85)  # r=2: 0.846% (r=1 would be 0.423%)
    assert plan.applicable and abs(plan.pct - 0.85) <= 0.085 and plan.knobs["r"] == 2
    model = LlamaForCausalLM(config)
    record = methods.apply(model, "lora", budget_pct=0.85)
    assert record.trainable == plan.trainable and record.head == 0
    assert not model.lm_head.weight.requires_grad


def test_lora_on_llama_equals_peft_numerically():
    from peft import LoraConfig, get_peft_model

    ours = tiny_llama()
    reference = copy.deepcopy(ours)
    methods.apply(ours, "lora", r=4, alpha=8, targets="q,k,v,o")
    with torch.no_grad():
        for p in ours.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.2)
    peft_model = get_peft_model(
        reference, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    )
    copy_lora_into_peft(ours, peft_model)
    ids = torch.randint(3, 100, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ours(input_ids=ids).logits
        assert (peft_model(input_ids=ids).logits - expected).abs().max() < 1e-5
        assert (tiny_llama()(input_ids=ids).logits - expected).abs().max() > 1e-3


@pytest.mark.parametrize(
    "name, extra", [("soft-prompt", {}), ("qpeft-r", {"token_ids": [4, 9, 12]}), ("qpeft-a", {"token_ids": [4, 9]})]
)
def test_llm_methods_save_and_load_round_trip(tmp_path, name, extra):
    model = tiny_llama()
    methods.apply(model, name, **extra)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    methods.save(model, tmp_path)
    fresh = tiny_llama()
    record = methods.load(fresh, tmp_path)
    assert record.trainable == methods.record_of(model).trainable
    ours = {n: p for n, p in model.named_parameters() if p.requires_grad}
    theirs = {n: p for n, p in fresh.named_parameters() if p.requires_grad}
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[n], theirs[n]) for n in ours)


def test_soft_prompt_starts_from_vocabulary_rows():
    model = tiny_llama()
    methods.apply(model, "soft-prompt", tokens=5, seed=random.Random(0).randint(0, 9))
    vectors = methods.soft_prompt(model).vectors
    table = model.get_input_embeddings().weight
    assert all(any(torch.equal(v, row) for row in table) for v in vectors)


def test_every_causal_lm_method_is_covered_here():
    only_lm = [n for n in methods.names() if methods.get_method(n).families == ("causal-lm",)]
    assert sorted(only_lm) == ["qpeft-a", "qpeft-r", "soft-prompt"]
