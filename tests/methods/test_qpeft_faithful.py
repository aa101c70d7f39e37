"""Q-PEFT as its authors built it (Peng et al., arXiv 2404.04522, and their code), each computation written
out here from the description in docs/methods.md (no code copied): the hint MLP (Linear -> ReLU -> Linear,
PyTorch's default initialisation, its output replacing the hint), Q-PEFT-A's attention in eval mode and
its dropout while training, and the resampling of short candidate lists; every departure is an option."""

import math

import pytest
import torch
import torch.nn as nn

import methods
from helpers.models import tiny_llama
from methods.qpeft import AttendedHint, OriginalMLP, RetrievedHint, query_hint


def _inputs():
    query = torch.tensor([[1, 2, 3], [4, 5, 0]])
    query_mask = torch.tensor([[True, True, True], [True, True, False]])
    context = torch.tensor([[10, 11, 12, 13, 14, 0], [20, 21, 22, 23, 24, 25]])
    context_mask = torch.tensor([[True, True, True, True, True, False], [True] * 6])
    return methods.PromptInputs(query, query_mask, context, context_mask, [40], [41], (0,))


def _plain_hint(hint, inputs, core):
    """prefix rows, the core vectors, suffix rows: the hint before its MLP."""
    batch = len(core)
    wrap = [
        hint.table(torch.tensor(ids)).unsqueeze(0).expand(batch, -1, -1)
        for ids in (inputs.hint_prefix_ids, inputs.hint_suffix_ids)
    ]
    return torch.cat([wrap[0], core, wrap[1]], dim=1)


def _selected(hint, frozen, inputs):
    """The k = 3 hint tokens (passage alone, as ``_inputs`` has no template), resampled where short."""
    q, c = inputs.query_ids, inputs.context_ids
    return methods.select_hint_tokens(
        hint.table(q), inputs.query_mask, frozen(c), c, inputs.context_mask, (0,), 3, "resample"
    )[0]


def test_the_default_mlp_is_the_authors_linear_relu_linear_replacing_the_hint():
    torch.manual_seed(0)
    frozen = nn.Embedding(50, 16).requires_grad_(False)
    hint = RetrievedHint(frozen, list(range(1, 45)), k=3)
    assert isinstance(hint.mlp, OriginalMLP)
    bound = 1 / math.sqrt(16)  # nn.Linear's default: Kaiming-uniform weights and biases within 1/sqrt(fan_in)
    for layer in (hint.mlp.down, hint.mlp.up):
        assert layer.weight.abs().max() <= bound and layer.weight.std() > 0.5 * bound / math.sqrt(3)
        assert layer.bias.abs().max() <= bound and layer.bias.abs().sum() > 0
    inputs = _inputs()
    vectors, _ = hint(inputs)
    plain = _plain_hint(hint, inputs, hint.table(_selected(hint, frozen, inputs)))
    w1, b1, w2, b2 = hint.mlp.down.weight, hint.mlp.down.bias, hint.mlp.up.weight, hint.mlp.up.bias
    expected = torch.relu(plain @ w1.T + b1) @ w2.T + b2  # not plain + ...: the output replaces the hint
    assert torch.allclose(vectors, expected, atol=1e-6)


def test_the_residual_option_starts_as_the_plain_hint():
    torch.manual_seed(0)
    frozen = nn.Embedding(50, 16).requires_grad_(False)
    hint = RetrievedHint(frozen, list(range(1, 45)), k=3, mlp="residual")
    inputs = _inputs()
    vectors, _ = hint(inputs)
    assert torch.equal(vectors, _plain_hint(hint, inputs, hint.table(_selected(hint, frozen, inputs))))


def _short_case():
    torch.manual_seed(1)
    frozen = nn.Embedding(30, 8).requires_grad_(False)
    query = torch.tensor([[1, 2]])
    context = torch.tensor([[5, 6, 0, 0]])  # two candidate tokens only, k = 5
    mask = torch.tensor([[True, True, False, False]])
    return frozen, (frozen(query), torch.tensor([[True, True]]), frozen(context), context, mask, (0,), 5)


def test_fewer_candidates_than_k_are_resampled_with_replacement_as_the_original():
    frozen, args = _short_case()
    ids, valid = methods.select_hint_tokens(*args, "resample")
    assert valid.all() and ids.shape == (1, 5) and set(ids[0].tolist()) <= {5, 6}
    again, _ = methods.select_hint_tokens(*args, "resample")
    assert torch.equal(ids, again)  # the same input, the same draws, on every run
    masked, valid_mask = methods.select_hint_tokens(*args, "mask")
    assert valid_mask[0].tolist() == [True, True, False, False, False]
    assert set(masked[0][valid_mask[0]].tolist()) == {5, 6}


def _attention_by_hand(mha: nn.MultiheadAttention, queries, keys, ignore):
    """softmax((x W_q)(c W_k)^T / sqrt(d_h)) (c W_v) per head, padding keys out, heads joined, W_o."""
    d = queries.shape[-1]
    heads = mha.num_heads
    w_q, w_k, w_v = mha.in_proj_weight.split(d)
    b_q, b_k, b_v = mha.in_proj_bias.split(d)
    q, k, v = queries @ w_q.T + b_q, keys @ w_k.T + b_k, keys @ w_v.T + b_v
    out = []
    for h in range(heads):
        part = slice(h * d // heads, (h + 1) * d // heads)
        scores = q[..., part] @ k[..., part].transpose(1, 2) / math.sqrt(d // heads)
        scores = scores.masked_fill(ignore.unsqueeze(1), float("-inf"))
        out.append(torch.softmax(scores, dim=-1) @ v[..., part])
    return torch.cat(out, dim=-1) @ mha.out_proj.weight.T + mha.out_proj.bias


def test_qpeft_a_attention_in_eval_mode_equals_the_written_out_computation():
    torch.manual_seed(2)
    frozen = nn.Embedding(50, 16).requires_grad_(False)
    hint = AttendedHint(frozen, [1, 2, 3, 4, 5], heads=2).eval()
    assert hint.attention.dropout == 0.1  # the original's
    inputs = _inputs()
    core, _ = hint.core(inputs.query_ids, inputs.query_mask, inputs.context_ids, inputs.context_mask, (0,))
    expected = _attention_by_hand(
        hint.attention, hint.table(inputs.query_ids), frozen(inputs.context_ids), ~inputs.context_mask
    )
    assert torch.allclose(core, expected, atol=1e-5)


def test_qpeft_a_attention_dropout_acts_while_training_only():
    torch.manual_seed(3)
    frozen = nn.Embedding(50, 16).requires_grad_(False)
    inputs = _inputs()
    hint = AttendedHint(frozen, [1, 2, 3, 4, 5], heads=2).train()
    first, second = hint(inputs)[0], hint(inputs)[0]
    assert not torch.allclose(first, second)
    hint.eval()
    assert torch.equal(hint(inputs)[0], hint(inputs)[0])
    plain = AttendedHint(frozen, [1, 2, 3, 4, 5], heads=2, attention_dropout=0.0).train()
    assert torch.equal(plain(inputs)[0], plain(inputs)[0])


@pytest.mark.parametrize(
    "name, options",
    [
        ("qpeft-r", {"mlp": "residual"}),
        ("qpeft-r", {"short": "mask"}),
        ("qpeft-a", {"attention_dropout": 0.0}),
        ("qpeft-a", {"mlp": "residual"}),
        ("qpeft-r", {"template_tokens": 0}),
        ("qpeft-a", {"template_tokens": 0}),
        ("qpeft-r", {"score_special_tokens": 0}),
    ],
)
def test_every_option_off_its_default_runs_on_a_tiny_llama(name, options):
    model = tiny_llama()
    record = methods.apply(model, name, token_ids=list(range(3, 60)), **options)
    assert all(record.knobs[k] == v for k, v in options.items())
    hint = query_hint(model)
    vectors, mask = hint(methods.PromptInputs(*_inputs().__dict__.values()))
    assert torch.isfinite(vectors).all() and mask.any()
    with pytest.raises(methods.MethodError):
        methods.apply(tiny_llama(), name, token_ids=[3, 4], mlp="bogus")


def test_the_hint_reads_the_prompts_own_tokens_around_the_passage_as_the_original():
    """The authors' candidates and keys are the prompt's tokens before the question (template and passage);
    ``template_tokens=0`` reads the passage alone."""
    torch.manual_seed(4)
    frozen = nn.Embedding(50, 16).requires_grad_(False)
    inputs = _inputs()
    inputs.context_prefix_ids, inputs.context_suffix_ids = [30, 31], [32]
    frozen.weight.data[31] = frozen.weight.data[1] * 3  # a template token pointing where the query does
    with_template = RetrievedHint(frozen, list(range(1, 45)), k=3)
    ids, _ = methods.select_hint_tokens(
        with_template.table(inputs.query_ids), inputs.query_mask, *_as_context(frozen, with_template, inputs), (0,), 3
    )
    assert 31 in ids[0].tolist()
    alone = RetrievedHint(frozen, list(range(1, 45)), k=3, template_tokens=0)
    context, mask = alone.context(inputs)
    assert torch.equal(context, inputs.context_ids) and not {30, 31, 32} & set(context.flatten().tolist())
    keyed = AttendedHint(frozen, [1, 2, 3, 4, 5], heads=2).eval()
    assert keyed.context(inputs)[0].shape[1] == inputs.context_ids.shape[1] + 3


def _as_context(frozen, hint, inputs):
    ids, mask = hint.context(inputs)
    return frozen(ids), ids, mask
