"""What the injected modules do: identity at start, gradients, IAA wiring, prefix masks, save/load."""

import copy

import pytest
import torch

import methods
from helpers.models import copy_lora_into_peft, encoder_methods, perturb, tiny_inputs, tiny_model

ZERO_START = {
    "adapter": {"r": 4},
    "adapter-pfeiffer": {"r": 4},
    "lora": {"r": 4},
    "iaa-s": {"r": 3, "ar": 5},
    "iaa-l": {"r": 3, "ar": 5},
    "iaa-m": {"r": 3, "ar": 5},
}
ALL_KNOBS = {**ZERO_START, "full": {}, "bitfit": {}, "prefix": {"l": 4}, "mam": {"r": 4, "l": 3}}
ARCHS = ["bert", "roberta", "mpnet"]


def hidden(model, inputs):
    with torch.no_grad():
        return model(**inputs).last_hidden_state


def test_every_registered_method_is_covered():
    assert sorted(encoder_methods()) == sorted(ALL_KNOBS)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", list(ZERO_START))
def test_zero_initialised_methods_leave_outputs_unchanged(arch, name):
    model, inputs = tiny_model(arch), tiny_inputs()
    before = hidden(model, inputs)
    methods.apply(model, name, **ZERO_START[name])
    assert (hidden(model, inputs) - before).abs().max() < 1e-6


@pytest.mark.parametrize("arch", ARCHS)
def test_mam_parallel_adapter_starts_at_zero(arch):
    prefix_only, mam = tiny_model(arch), tiny_model(arch)
    methods.apply(prefix_only, "prefix", l=3)
    methods.apply(mam, "mam", r=4, l=3)
    for layer_p, layer_m in zip(prefix_only.encoder.layer, mam.encoder.layer):
        attn = "attn" if arch == "mpnet" else "self"
        src = getattr(layer_p.attention, attn).peft_prefix
        getattr(layer_m.attention, attn).peft_prefix.load_state_dict(src.state_dict())
    inputs = tiny_inputs()
    assert (hidden(prefix_only, inputs) - hidden(mam, inputs)).abs().max() < 1e-6


@pytest.mark.parametrize("name", list(ALL_KNOBS))
def test_only_the_methods_tensors_get_gradients(name):
    model = tiny_model("bert")
    head = torch.nn.Linear(32, 1)
    wrapper = torch.nn.ModuleDict({"encoder": model, "head": head})
    record = methods.apply(wrapper, name, **ALL_KNOBS[name])
    perturb(model)  # non-zero up-projections so gradients reach every module
    model.train()
    out = model(**tiny_inputs()).last_hidden_state[:, 0]
    head(out).sum().backward()
    for pname, p in model.named_parameters():
        intended = name == "full" or "peft_" in pname or (name == "bitfit" and pname.endswith("bias"))
        assert p.requires_grad == intended, pname
        if not intended:
            assert p.grad is None, pname
    assert all(p.requires_grad and p.grad is not None for p in head.parameters())
    assert record.head == sum(p.numel() for p in head.parameters())
    got = sum(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if p.requires_grad)
    assert got > 0


def _mask(inputs, model):
    """The additive (batch, 1, 1, keys) mask eager attention takes (written out: transformers 5 dropped
    get_extended_attention_mask)."""
    keep = inputs["attention_mask"][:, None, None, :].to(torch.float32)
    return (1.0 - keep) * torch.finfo(torch.float32).min


def hidden_of(output):
    """A block's hidden states: transformers 4.x returns a tuple, 5.x the tensor."""
    return output[0] if isinstance(output, tuple) else output


def _reference_iaa(variant, plain, injected, inputs):
    """Recompute the IAA model by hand from the plain backbone's blocks and the injected asides."""
    mask = _mask(inputs, plain)
    h = plain.embeddings(input_ids=inputs["input_ids"])
    first = h
    for plain_layer, layer in zip(plain.encoder.layer, injected.encoder.layer):
        if variant == "iaa-s":
            a = hidden_of(plain_layer.attention(h, attention_mask=mask)) + layer.peft_aside_attn(h)
            f = plain_layer.intermediate(a)
            h = plain_layer.output(f, a) + layer.peft_aside_ffn(a)
        elif variant == "iaa-l":
            h = hidden_of(plain_layer(h, attention_mask=mask)) + layer.peft_aside(h)
        else:
            h = hidden_of(plain_layer(h, attention_mask=mask))
    if variant == "iaa-m":
        h = h + injected.encoder.peft_aside(first)
    return h


@pytest.mark.parametrize("variant", ["iaa-s", "iaa-l", "iaa-m"])
def test_iaa_aside_reads_block_input_and_adds_after_last_layernorm(variant):
    plain, injected = tiny_model("bert"), tiny_model("bert")
    methods.apply(injected, variant, r=3, ar=5)
    perturb(injected)
    with torch.no_grad():  # inside adapters back to zero: the asides alone differ from the backbone
        for name, p in injected.named_parameters():
            if "peft_adapter.up" in name:
                p.zero_()
    inputs = tiny_inputs()
    expected = _reference_iaa(variant, plain, injected, inputs).detach()
    got = hidden(injected, inputs)
    assert (got - expected).abs().max() < 1e-5
    assert (got - hidden(plain, inputs)).abs().max() > 1e-3  # the asides really contribute


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", ["prefix", "mam"])
def test_prefix_masks_padding_and_attends_prefix(arch, name):
    model = tiny_model(arch)
    before = hidden(model, tiny_inputs())
    methods.apply(model, name, **ALL_KNOBS[name])
    inputs = tiny_inputs()
    out = hidden(model, inputs)
    assert (out - before).abs().max() > 1e-4  # the prefix is attended
    # the padded row equals the same row run alone without its padding: pad keys stay masked
    row = {k: v[:1, :-3] for k, v in inputs.items()}
    assert (hidden(model, row)[0] - out[0, :-3]).abs().max() < 1e-5


def test_prefix_same_under_eager_and_sdpa():
    eager, sdpa = tiny_model("bert", attn="eager"), tiny_model("bert", attn="sdpa")
    torch.manual_seed(5)
    methods.apply(eager, "prefix", l=4)
    torch.manual_seed(5)
    methods.apply(sdpa, "prefix", l=4)
    inputs = tiny_inputs()
    assert (hidden(eager, inputs) - hidden(sdpa, inputs)).abs().max() < 1e-5


@pytest.mark.parametrize("name", list(ALL_KNOBS))
def test_save_then_load_on_fresh_backbone_reproduces_outputs(name, tmp_path):
    model = tiny_model("bert")
    methods.apply(model, name, **ALL_KNOBS[name])
    perturb(model)
    inputs = tiny_inputs()
    expected = hidden(model, inputs)
    methods.save(model, tmp_path)
    fresh = tiny_model("bert")
    record = methods.load(fresh, tmp_path)
    assert record.method == name
    assert torch.equal(hidden(fresh, inputs), expected)
    saved = set(__import__("safetensors.torch").torch.load_file(str(tmp_path / "trainable.safetensors")))
    assert saved == {n for n, p in model.named_parameters() if p.requires_grad}


def test_load_refuses_another_backbone(tmp_path):
    model = tiny_model("bert")
    methods.apply(model, "adapter", r=4)
    methods.save(model, tmp_path)
    other = tiny_model("mpnet")
    with pytest.raises(methods.MethodError, match="does not exist in this model"):
        methods.load(other, tmp_path)


def test_lora_equals_peft_numerically_and_export_loads_in_peft(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    ours = tiny_model("bert")
    reference = copy.deepcopy(ours)
    methods.apply(ours, "lora", r=4, alpha=8)
    perturb(ours, scale=0.2)
    peft_model = get_peft_model(reference, LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
    copy_lora_into_peft(ours, peft_model)
    inputs = tiny_inputs()
    expected = hidden(ours, inputs)
    assert (hidden(peft_model, inputs) - expected).abs().max() < 1e-5
    assert (expected - hidden(tiny_model("bert"), inputs)).abs().max() > 1e-3

    methods.export_peft_lora(ours, tmp_path)
    loaded = PeftModel.from_pretrained(tiny_model("bert"), str(tmp_path))
    assert (hidden(loaded, inputs) - expected).abs().max() < 1e-5
