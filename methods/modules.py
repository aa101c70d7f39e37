"""Trainable building blocks shared by the method families."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class Bottleneck(nn.Module):
    """x -> W_up relu(W_down x + b1) + b2, d -> b -> d; 2*d*b + b + d parameters.

    W_up and b2 start at zero, so a fresh module outputs exactly zero.
    """

    def __init__(self, d: int, b: int):
        super().__init__()
        self.down = nn.Linear(d, b)
        self.up = nn.Linear(b, d)
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.down(x)))


class LowRank(nn.Module):
    """(alpha / r) B A dropout(x), initialised as peft's LoRA: A Kaiming-uniform, B zero."""

    def __init__(self, d_in: int, d_out: int, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.lora_A = nn.Linear(d_in, r, bias=False)
        self.lora_B = nn.Linear(r, d_out, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = alpha / r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora_B(self.lora_A(self.dropout(x))) * self.scaling


class PrefixKV(nn.Module):
    """l trainable key rows and l value rows (each of width d) for one attention module."""

    def __init__(self, length: int, d: int):
        super().__init__()
        self.key = nn.Parameter(torch.empty(length, d))
        self.value = nn.Parameter(torch.empty(length, d))
        nn.init.normal_(self.key, std=0.02)
        nn.init.normal_(self.value, std=0.02)
