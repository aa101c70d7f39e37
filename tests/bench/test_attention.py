"""bench/attention.py: SDPA's math with the attention-dropout masks drawn in parallel chunks."""

import pytest
import torch

from bench import attention
from bench.errors import BenchError
from tests.helpers.models import tiny_inputs, tiny_model


def _qkv(seed=0, batch=2, heads=4, length=9, dim=8, kv_heads=None, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, length, dim, generator=g, dtype=dtype)
    k = torch.randn(batch, kv_heads or heads, length, dim, generator=g, dtype=dtype)
    v = torch.randn(batch, kv_heads or heads, length, dim, generator=g, dtype=dtype)
    return q, k, v


def _padding_mask(batch, length):
    keep = torch.ones(batch, 1, length, length, dtype=torch.bool)
    keep[0, ..., -3:] = False  # the first row's last three keys are padding
    return keep


def _reference(q, k, v, keep_mask, attention_mask, p):
    """The written-out definition: softmax(q k^T / sqrt(d) + mask), dropped where keep is False, scaled by
    1 / (1 - p), times v; (batch, length, heads, dim)."""
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~attention_mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1) * keep_mask / (1 - p)
    return (probs @ v).transpose(1, 2)


class _Module(torch.nn.Module):
    is_causal = False


def test_forward_and_gradients_match_the_definition_for_a_given_mask(monkeypatch):
    q, k, v = (t.requires_grad_() for t in _qkv())
    mask = _padding_mask(2, 9)
    keep = torch.rand(2, 4, 9, 9, generator=torch.Generator().manual_seed(5)) > 0.3
    monkeypatch.setattr(attention, "keep_mask", lambda shape, p, device="cpu": keep)
    ours, _ = attention.parallel_dropout_attention(_Module().train(), q, k, v, mask, dropout=0.3, scaling=8**-0.5)
    expected = _reference(q, k, v, keep, mask, 0.3)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)
    grads = torch.autograd.grad(ours.square().sum(), (q, k, v))
    expected_grads = torch.autograd.grad(expected.square().sum(), (q, k, v))
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


def test_grouped_kv_heads_and_causal_mask(monkeypatch):
    q, k, v = _qkv(kv_heads=2)
    keep = torch.ones(2, 4, 9, 9, dtype=torch.bool)
    monkeypatch.setattr(attention, "keep_mask", lambda shape, p, device="cpu": keep)
    module = _Module().train()
    module.is_causal = True
    ours, _ = attention.parallel_dropout_attention(module, q, k, v, None, dropout=0.1)
    causal = torch.ones(9, 9, dtype=torch.bool).tril().expand(2, 1, 9, 9)
    expected = _reference(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), keep, causal, 0.1)
    torch.testing.assert_close(ours, expected)


def test_without_dropout_it_is_sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    q, k, v = _qkv(dtype=torch.float32)
    mask = _padding_mask(2, 9)
    ours, _ = attention.parallel_dropout_attention(_Module().eval(), q, k, v, mask, dropout=0.0)
    theirs, _ = sdpa_attention_forward(_Module().eval(), q, k, v, mask, dropout=0.0)
    assert torch.equal(ours, theirs)


def test_keep_mask_has_the_bernoulli_rate_and_is_the_same_on_any_thread_count():
    threads = torch.get_num_threads()
    try:
        draws = []
        for count in (1, 2):
            torch.set_num_threads(count)
            torch.manual_seed(11)
            draws.append(attention.keep_mask((64, 128, 128), 0.1))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(draws[0], draws[1])
    kept = draws[0].double().mean().item()
    # 1,048,576 draws: the rate's sd is 2.9e-4, so 2e-3 is about 7 sd (a false alarm ~1e-12)
    assert abs(kept - 0.9) < 2e-3
    torch.manual_seed(12)
    assert not torch.equal(draws[0], attention.keep_mask((64, 128, 128), 0.1))
    # the chunks are independent streams: neighbouring chunks do not repeat each other
    chunks = draws[0].view(-1).tensor_split(attention.CHUNKS)
    assert not torch.equal(chunks[0][:1000], chunks[1][:1000])


def test_a_model_that_cannot_switch_is_an_error():
    model = tiny_model(attn="sdpa")
    if attention.can_switch(model):
        pytest.skip("this transformers' BERT dispatches through AttentionInterface")
    with pytest.raises(BenchError, match="does not dispatch its attention"):
        attention.use_parallel_dropout(model)


def test_a_switched_model_equals_sdpa_in_evaluation_and_is_seeded_in_training():
    inputs = tiny_inputs()
    sdpa = tiny_model(attn="sdpa")
    ours = tiny_model(attn="sdpa")
    if not attention.can_switch(ours):
        pytest.skip("this transformers' BERT picks its SDPA class at construction (4.57)")
    assert attention.use_parallel_dropout(ours) >= 1
    assert ours.config._attn_implementation == attention.NAME
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs).last_hidden_state, sdpa(**inputs).last_hidden_state)
        ours.train()
        runs = []
        for _ in range(2):
            torch.manual_seed(3)
            runs.append(ours(**inputs).last_hidden_state)
        torch.manual_seed(4)
        other = ours(**inputs).last_hidden_state
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], other)


def test_a_model_without_sdpa_is_an_error_and_left_as_it_was():
    model = tiny_model(attn="eager")
    with pytest.raises(BenchError, match="no SDPA attention to switch .*eager"):
        attention.use_parallel_dropout(model)
    assert model.config._attn_implementation == "eager"
