"""Prefix rows as keys and values only (methods.inject.prepend_keys, prefix and mam revision 3): the
attention of Li & Liang's description, softmax(q [P_k; K]^T / sqrt(d_h) + mask) [P_v; V], with the queries
and projections of the real tokens alone. It must give what the widened path (l extra input positions whose
outputs are dropped, revision 2) gives, on every attention implementation, with the same gradients."""

import inspect
import math

import pytest
import torch

import methods
import methods.prefix as prefix_module
from helpers.models import perturb, tiny_inputs, tiny_model
from methods.inject import prepend_keys


def _pair(kind, attn, name, knobs, monkeypatch):
    """The same prefixed model twice: keys only (the default), and through the widened path."""
    keys_only, widened = tiny_model(kind, attn=attn), tiny_model(kind, attn=attn)
    torch.manual_seed(5)
    methods.apply(keys_only, name, **knobs)
    with monkeypatch.context() as patch:
        patch.setattr(prefix_module, "prepend_keys", lambda *args: None)
        torch.manual_seed(5)
        methods.apply(widened, name, **knobs)
    perturb(keys_only)
    perturb(widened)
    return keys_only, widened


@pytest.mark.parametrize("kind", ["bert", "roberta"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize(("name", "knobs"), [("prefix", {"l": 5}), ("mam", {"r": 4, "l": 3})])
def test_keys_only_equals_the_widened_path_with_the_same_gradients(kind, attn, name, knobs, monkeypatch):
    keys_only, widened = _pair(kind, attn, name, knobs, monkeypatch)
    inputs = tiny_inputs()
    outputs = []
    for model in (keys_only, widened):
        hidden = model(**inputs).last_hidden_state
        (hidden * torch.linspace(-1, 1, hidden.shape[-1])).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        outputs.append((hidden.detach(), grads))
    (h_keys, g_keys), (h_wide, g_wide) = outputs
    assert (h_keys - h_wide).abs().max() < 1e-5
    assert g_keys.keys() == g_wide.keys() and any("peft_prefix" in n for n in g_keys)
    for n in g_keys:
        assert torch.allclose(g_keys[n], g_wide[n], atol=1e-5, rtol=1e-4), n


def test_the_queries_attend_to_the_prefix_rows_as_the_authors_describe():
    model = tiny_model("bert")
    methods.apply(model, "prefix", l=4)
    perturb(model)
    inputs = tiny_inputs()
    layer = model.encoder.layer[0].attention.self
    seen = {}
    layer.register_forward_hook(lambda mod, args, output: seen.update(out=output[0]))
    layer.query.register_forward_pre_hook(lambda mod, args: seen.update(x=args[0]))  # the layer's input
    with torch.no_grad():
        model(**inputs)
        x, prefix = seen["x"], layer.peft_prefix
        heads, width = 4, 8
        split = lambda t: t.view(t.shape[0], -1, heads, width).transpose(1, 2)  # noqa: E731
        q, k, v = split(layer.query(x)), split(layer.key(x)), split(layer.value(x))
        pk = prefix.key.view(-1, heads, width).transpose(0, 1).expand(x.shape[0], -1, -1, -1)
        pv = prefix.value.view(-1, heads, width).transpose(0, 1).expand(x.shape[0], -1, -1, -1)
        keys, values = torch.cat([pk, k], 2), torch.cat([pv, v], 2)
        pad = torch.cat([torch.ones(x.shape[0], 4), inputs["attention_mask"].float()], 1)
        scores = q @ keys.transpose(-1, -2) / math.sqrt(width) + (1 - pad)[:, None, None, :] * -1e9
        expected = (scores.softmax(-1) @ values).transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
    assert seen["out"].shape == x.shape  # outputs for the real tokens only
    assert (seen["out"] - expected).abs().max() < 1e-5


def test_a_module_without_a_cache_argument_takes_the_widened_path():
    mpnet = tiny_model("mpnet")
    attention = mpnet.encoder.layer[0].attention.attn
    assert prepend_keys(attention, torch.zeros(2, 32), torch.zeros(2, 32), ("attention_mask",)) is None


def test_a_prefixed_model_refuses_a_caller_cache():
    model = tiny_model("bert")
    methods.apply(model, "prefix", l=2)
    layer = model.encoder.layer[0].attention.self
    x = torch.zeros(1, 3, 32)
    slot = next(n for n in ("cache", "past_key_values") if n in inspect.signature(layer.forward).parameters)
    with pytest.raises(RuntimeError, match="without a key/value cache"):
        layer(x, **{slot: object()})
