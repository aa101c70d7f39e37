"""Prefix tuning with Li & Liang's reparameterisation (ACL 2021, section 4.3), an option off the default:
while training, l vectors through an MLP (d -> h, tanh, -> 2 L d) make every layer's key and value rows;
folded, those rows alone (a plain prefix) score exactly as the reparameterised model does."""

import pytest
import torch

import methods
from helpers.models import tiny_inputs, tiny_model
from methods.prefix import PrefixReparam


def hidden(model, inputs):
    with torch.no_grad():
        return model(**inputs).last_hidden_state


def _reparameterised(kind):
    model = tiny_model(kind)
    record = methods.apply(model, "prefix", l=4, reparameterize=16)
    reparam = next(m for m in model.modules() if isinstance(m, PrefixReparam))
    with torch.no_grad():
        reparam.up.weight.normal_(std=0.2)  # away from the start, so the MLP shapes every row
        reparam.up.bias.normal_(std=0.2)
    return model, record, reparam


@pytest.mark.parametrize("kind", ["bert", "roberta", "mpnet"])
def test_a_folded_prefix_scores_as_the_reparameterised_one(kind):
    model, _, reparam = _reparameterised(kind)
    inputs = tiny_inputs()
    expected = hidden(model, inputs)
    folded = reparam.folded()
    plain = tiny_model(kind)
    methods.apply(plain, "prefix", l=4)
    prefixes = [m for name, m in plain.named_modules() if name.endswith("peft_prefix")]
    assert len(prefixes) == folded.shape[0]
    with torch.no_grad():
        for layer, prefix in enumerate(prefixes):
            prefix.key.copy_(folded[layer, 0])
            prefix.value.copy_(folded[layer, 1])
    assert (hidden(plain, inputs) - expected).abs().max() < 1e-5
    assert (expected - hidden(tiny_model(kind), inputs)).abs().max() > 1e-3  # the prefix really acts


def test_what_trains_is_the_vectors_and_the_mlp_and_each_gets_a_gradient():
    model, record, reparam = _reparameterised("bert")
    d, layers = model.config.hidden_size, model.config.num_hidden_layers
    assert record.trainable == 4 * d + (d * 16 + 16) + (16 * layers * 2 * d + layers * 2 * d)
    assert record.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.train()
    model(**tiny_inputs()).last_hidden_state.sum().backward()
    for param in (reparam.vectors, reparam.down.weight, reparam.up.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0
    model(**tiny_inputs()).last_hidden_state.sum().backward()  # a second step's forward makes rows anew
