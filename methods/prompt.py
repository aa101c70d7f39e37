"""Soft prompt tuning (Lester et al.): n trainable vectors placed before the input embeddings of a
causal LM. The caller builds the input embeddings and puts ``soft_prompt(model)()`` first."""
from __future__ import annotations

import torch
import torch.nn as nn

from .inject import PREFIX, attach
from .registry import Knob, Method, register

NAME = "soft_prompt"


class SoftPrompt(nn.Module):
    def __init__(self, tokens: int, d: int):
        super().__init__()
        self.vectors = nn.Parameter(torch.empty(tokens, d))

    def forward(self, batch: int = 1) -> torch.Tensor:
        """(batch, tokens, d)"""
        return self.vectors.unsqueeze(0).expand(batch, -1, -1)


@torch.no_grad()
def insert_soft_prompt(base, arch, tokens: int, seed: int) -> None:
    embeddings = base.get_input_embeddings().weight
    prompt = attach(base, NAME, SoftPrompt(tokens, embeddings.shape[1]))
    # vocabulary initialisation: random real token embeddings train better than random vectors
    rows = torch.randperm(embeddings.shape[0], generator=torch.Generator().manual_seed(seed))[:tokens]
    if embeddings.device.type != "meta":  # the budget solver counts on meta models
        prompt.vectors.copy_(embeddings[rows].float())


def soft_prompt(model: nn.Module) -> SoftPrompt | None:
    """The soft prompt applied to ``model`` (or None)."""
    for name, module in model.named_modules():
        if name.endswith(PREFIX + NAME):
            return module
    return None


register(Method(
    name="soft-prompt",
    summary="trainable prompt vectors before the input of a causal LM (prompt tuning)",
    inject=insert_soft_prompt,
    knobs=(Knob("tokens", int, 20, 1, "prompt length (not solved from a budget: past a few dozen it "
                                      "costs sequence length rather than adding capacity)"),
           Knob("seed", int, 0, 0, "which vocabulary rows initialise the prompt")),
    families=("causal-lm",),
))
