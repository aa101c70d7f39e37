"""Weight decay: the one rule (methods/decay.py), per method: linear weight matrices decay; biases,
LayerNorm, embeddings, prefix and soft-prompt vectors and Q-PEFT tables never do."""

import pytest
import torch

import methods
from helpers.models import tiny_llama, tiny_model
from methods.decay import decayed

ENCODER_KNOBS = {
    "full": {},
    "bitfit": {},
    "adapter": {"r": 4},
    "adapter-pfeiffer": {"r": 4},
    "lora": {"r": 4},
    "prefix": {"l": 4},
    "mam": {"r": 4, "l": 3},
    "iaa-s": {"r": 3, "ar": 5},
    "iaa-l": {"r": 3, "ar": 5},
    "iaa-m": {"r": 3, "ar": 5},
}


def expected_decay(name: str, pname: str) -> bool:
    """The rule written out by hand, per method, from the parameter's name."""
    if pname.endswith("bias") or "LayerNorm" in pname or "embeddings" in pname:
        return False
    if name == "full":
        return pname.endswith("weight")  # every projection matrix of the backbone
    if name == "bitfit":
        return False
    if "peft_prefix" in pname:
        return False  # prefix key/value rows are token-like vectors
    return pname.endswith(("down.weight", "up.weight", "lora_A.weight", "lora_B.weight"))


@pytest.mark.parametrize("name", list(ENCODER_KNOBS))
def test_which_encoder_parameters_decay(name):
    model = tiny_model("bert")
    head = torch.nn.Linear(32, 1)
    wrapper = torch.nn.ModuleDict({"encoder": model, "head": head})
    methods.apply(wrapper, name, **ENCODER_KNOBS[name])
    ids = decayed(wrapper)
    for pname, p in model.named_parameters():
        assert (id(p) in ids) == (p.requires_grad and expected_decay(name, pname)), pname
    assert id(head.weight) in ids and id(head.bias) not in ids  # the scoring head: its matrix decays


@pytest.mark.parametrize(
    "name, extra, decays",
    [
        ("soft-prompt", {}, set()),
        ("qpeft-r", {"token_ids": [4, 9, 12]}, {"mlp.down.weight", "mlp.up.weight"}),
        (
            "qpeft-a",
            {"token_ids": [4, 9]},
            {"mlp.down.weight", "mlp.up.weight", "attention.in_proj_weight", "attention.out_proj.weight"},
        ),
        ("lora", {"r": 2}, {"lora_A.weight", "lora_B.weight"}),
    ],
)
def test_which_causal_lm_parameters_decay(name, extra, decays):
    model = tiny_llama()
    methods.apply(model, name, **extra)
    ids = decayed(model)
    for pname, p in model.named_parameters():
        should = p.requires_grad and pname.endswith(tuple(decays)) if decays else False
        assert (id(p) in ids) == should, pname
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.endswith(("vectors", "rows")) for n in trained) == (name in ("soft-prompt", "qpeft-r", "qpeft-a"))
