"""Prompt-side methods for causal LMs: modules that make input vectors the caller splices into the prompt
at the embedding level, each at a declared slot.

- ``PromptPart``: the base class; ``slot`` says where its vectors go: ``prefix`` (before everything) or
  ``hint`` (just before the question). One call: ``part(PromptInputs) -> (vectors (B, n, d), mask (B, n))``.
- ``soft-prompt`` (Lester et al.): n trainable vectors at the ``prefix`` slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .errors import MethodError
from .inject import PREFIX, attach
from .registry import Knob, Method, register

SLOTS = ("prefix", "hint")


@dataclass
class PromptInputs:
    """What a prompt part may read: the batch's query and context (passage) token ids with their masks,
    the token ids of the hint's wrapper text and the special ids it must never pick."""

    query_ids: torch.Tensor
    query_mask: torch.Tensor
    context_ids: torch.Tensor
    context_mask: torch.Tensor
    hint_prefix_ids: list = ()
    hint_suffix_ids: list = ()
    exclude_ids: tuple = ()
    # the prompt's own tokens before and after the context ("...Passage:" and the text up to the hint)
    context_prefix_ids: list = ()
    context_suffix_ids: list = ()

    @property
    def batch(self) -> int:
        return len(self.query_ids)


class PromptPart(nn.Module):
    slot: str = ""

    def forward(self, inputs: PromptInputs) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def prompt_parts(model: nn.Module) -> dict[str, PromptPart]:
    """The prompt parts applied to ``model``, by slot (at most one per slot)."""
    parts = {}
    for name, module in model.named_modules():
        if isinstance(module, PromptPart) and PREFIX in name:
            if module.slot not in SLOTS:
                raise MethodError(
                    f"prompt part {type(module).__name__} has slot {module.slot!r}; slots are {', '.join(SLOTS)}"
                )
            if module.slot in parts:
                raise MethodError(f"two prompt parts for slot {module.slot!r}")
            parts[module.slot] = module
    return parts


NAME = "soft_prompt"


class SoftPrompt(PromptPart):
    slot = "prefix"

    def __init__(self, tokens: int, d: int):
        super().__init__()
        self.vectors = nn.Parameter(torch.empty(tokens, d))

    def forward(self, inputs: PromptInputs) -> tuple[torch.Tensor, torch.Tensor]:
        vectors = self.vectors.unsqueeze(0).expand(inputs.batch, -1, -1)
        return vectors, torch.ones(vectors.shape[:2], dtype=torch.bool, device=vectors.device)


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
    return prompt_parts(model).get("prefix")


register(
    Method(
        name="soft-prompt",
        revision=2,  # 2: the prompt vectors take no weight decay (methods/decay.py)
        summary="trainable prompt vectors before the input of a causal LM (prompt tuning)",
        inject=insert_soft_prompt,
        knobs=(
            Knob(
                "tokens",
                int,
                20,
                1,
                "prompt length (not solved from a budget: past a few dozen it "
                "costs sequence length rather than adding capacity)",
            ),
            Knob("seed", int, 0, 0, "which vocabulary rows initialise the prompt"),
        ),
        families=("causal-lm",),
    )
)
