"""Integration: on the real offline MiniLM, every method lowers the loss of a small task."""

import pytest
import torch

import methods
from conftest import needs_minilm
from helpers.models import encoder_methods

pytestmark = [pytest.mark.integration, needs_minilm]

PAIRS = [
    ("what causes rain", "rain forms when water vapour condenses into droplets", 1),
    ("what causes rain", "the stock market closed higher on friday", 0),
    ("symptoms of flu", "fever cough and muscle aches are common flu symptoms", 1),
    ("symptoms of flu", "the recipe needs two cups of flour", 0),
    ("how do vaccines work", "vaccines train the immune system to recognise a pathogen", 1),
    ("how do vaccines work", "the football match ended in a draw", 0),
    ("speed of light", "light travels at about 300,000 kilometres per second", 1),
    ("speed of light", "she painted the kitchen walls blue", 0),
]
LR = {"full": 5e-5}


@pytest.fixture(scope="module")
def minilm():
    from bench.models import load_backbone

    return load_backbone("minilm")


@pytest.mark.parametrize("name", encoder_methods())
def test_method_lowers_training_loss(name, minilm):
    import copy

    tokenizer, backbone = minilm
    torch.manual_seed(0)
    encoder = copy.deepcopy(backbone).train()
    model = torch.nn.ModuleDict({"encoder": encoder, "head": torch.nn.Linear(encoder.config.hidden_size, 1)})
    methods.apply(model, name, budget_pct=None if name in ("full", "bitfit") else 1.0)
    batch = tokenizer([q for q, _, _ in PAIRS], [d for _, d, _ in PAIRS], padding=True, return_tensors="pt")
    labels = torch.tensor([float(y) for _, _, y in PAIRS])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR.get(name, 2e-3))
    losses = []
    for _ in range(30):
        logits = model["head"](model["encoder"](**batch).last_hidden_state[:, 0]).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.75 * first, (name, losses)
