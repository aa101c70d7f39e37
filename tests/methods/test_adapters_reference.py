"""Our Houlsby and Pfeiffer adapters against the adapters library (AdapterHub) 1.x: the same placement,
the same numbers once given the same weights. Ours differ on purpose in two ways (docs/methods.md): the
bottleneck's activation is ReLU for both (adapters' DoubleSeqBnConfig defaults to swish: set to relu here)
and W_up, b_up start at zero (a fresh model computes what the backbone computes)."""

import pytest
import torch

import methods
from helpers.models import perturb, tiny_inputs, tiny_model

adapters = pytest.importorskip(
    "adapters", reason="the adapters library installs and imports only beside transformers 4.57.x", exc_type=ImportError
)


def reference(config_cls, r: int):
    model = tiny_model("bert")
    adapters.init(model)
    d = model.config.hidden_size
    model.add_adapter("x", config=config_cls(reduction_factor=d / r, non_linearity="relu"))
    model.set_active_adapters("x")
    return model.eval()


def copy_weights(ours, theirs, sites):
    """Our peft_adapter modules into theirs: ``sites`` maps our module path -> their adapter path."""
    with torch.no_grad():
        for ours_path, theirs_path in sites.items():
            mine, other = ours.get_submodule(ours_path), theirs.get_submodule(theirs_path)
            other.adapter_down[0].weight.copy_(mine.down.weight)
            other.adapter_down[0].bias.copy_(mine.down.bias)
            other.adapter_up.weight.copy_(mine.up.weight)
            other.adapter_up.bias.copy_(mine.up.bias)


def hidden(model, inputs):
    with torch.no_grad():
        return model(**inputs).last_hidden_state


@pytest.mark.parametrize(
    "name, config, sites",
    [
        (
            "adapter",
            "DoubleSeqBnConfig",
            {
                "encoder.layer.{i}.attention.output.peft_adapter": "encoder.layer.{i}.attention.output.adapters.x",
                "encoder.layer.{i}.output.peft_adapter": "encoder.layer.{i}.output.adapters.x",
            },
        ),
        (
            "adapter-pfeiffer",
            "SeqBnConfig",
            {"encoder.layer.{i}.output.peft_adapter": "encoder.layer.{i}.output.adapters.x"},
        ),
    ],
)
def test_forward_equals_adapters(name, config, sites):
    ours = tiny_model("bert")
    record = methods.apply(ours, name, r=8)
    perturb(ours, scale=0.3)  # non-zero up-projections: the adapters really act
    theirs = reference(getattr(adapters, config), 8)
    layers = ours.config.num_hidden_layers
    copy_weights(ours, theirs, {a.format(i=i): b.format(i=i) for i in range(layers) for a, b in sites.items()})
    inputs = tiny_inputs()
    expected = hidden(theirs, inputs)
    assert (hidden(ours, inputs) - expected).abs().max() < 1e-5
    assert (expected - hidden(tiny_model("bert"), inputs)).abs().max() > 1e-3
    counted = sum(p.numel() for n, p in theirs.named_parameters() if "adapters.x" in n)
    assert record.trainable == counted  # the same parameters, counted the same
