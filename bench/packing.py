"""Token budgets for training steps: a step's sequences sorted by length and run through the encoder in
chunks of at most ``token_budget`` padded tokens (rows x padded length), each padded only to its own
longest row, rounded up to a multiple of ``multiple`` (tensor cores like multiples of 8).

The step itself is unchanged (the same queries, pairs and loss): the outputs of the chunks are put back
in the step's order before the loss, so the loss and its gradient are those of the whole step computed at
once (up to float summation order, and dropout masks drawn per chunk). A model runs a ``Packed`` inside
its own forward, so a data-parallel wrapper sees one forward per step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .scoring import padded

PAD_VALUES = {"attention_mask": 0, "token_type_ids": 0}  # input_ids: the tokenizer's pad id


def round_up(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


def chunk_bounds(lengths: list[int], token_budget: int | None, multiple: int = 1) -> list[tuple[int, int]]:
    """[start, end) of consecutive chunks of ``lengths`` (sorted ascending) whose rows x padded length stay
    within ``token_budget`` (None: one chunk); a row longer than the budget is a chunk of its own."""
    bounds, start = [], 0
    for end in range(1, len(lengths) + 1):
        rows, width = end - start, round_up(lengths[end - 1], multiple)
        if token_budget is not None and rows > 1 and rows * width > token_budget:
            bounds.append((start, end - 1))
            start = end - 1
    if start < len(lengths):
        bounds.append((start, len(lengths)))
    return bounds


@dataclass
class Packed:
    """A step's sequences as length-sorted, separately padded chunks; ``order[i]``: the step's row that
    row i of the chunks (concatenated) holds."""

    chunks: list[dict[str, torch.Tensor]]
    order: torch.Tensor

    def to(self, device) -> Packed:
        return Packed([{k: v.to(device) for k, v in chunk.items()} for chunk in self.chunks], self.order)

    def apply(self, forward: Callable[..., torch.Tensor]) -> torch.Tensor:
        """``forward(**chunk)`` over the chunks, its rows put back in the step's order."""
        out = torch.cat([forward(**chunk) for chunk in self.chunks])
        return out[torch.argsort(self.order).to(out.device)]

    @property
    def padded_tokens(self) -> int:
        return sum(chunk["input_ids"].numel() for chunk in self.chunks)


def pack(features: dict[str, list[list[int]]], pad_id: int, token_budget: int | None, multiple: int = 1) -> Packed:
    """Tokenised rows (a tokenizer's output without padding) -> ``Packed``."""
    ids = features["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # stable: equal lengths keep the step's order
    lengths = [len(ids[i]) for i in order]
    chunks = []
    for start, end in chunk_bounds(lengths, token_budget, multiple):
        rows = order[start:end]
        width = round_up(max(1, lengths[end - 1]), multiple)
        chunks.append(
            {
                key: padded([values[i] for i in rows], PAD_VALUES.get(key, pad_id), width)
                for key, values in features.items()
            }
        )
    return Packed(chunks, torch.tensor(order, dtype=torch.long))


def packs(settings) -> bool:
    """Whether a stage's training settings ask for packed steps (else: one batch padded to its longest)."""
    return getattr(settings, "token_budget", None) is not None or getattr(settings, "pad_to_multiple_of", 1) > 1


def pack_encoded(tokenizer, features, settings) -> Packed:
    """A tokenizer's unpadded output for one step, packed as ``settings`` (token budget, multiple) ask."""
    return pack(dict(features), tokenizer.pad_token_id, settings.token_budget, settings.pad_to_multiple_of)
