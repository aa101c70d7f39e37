"""Prefix tuning on the attention module itself: l key and l value rows prepended per layer,
the additive attention mask (and MPNet's position bias) widened to match.

``reparameterize=h`` trains the rows as Li & Liang (ACL 2021, section 4.3) do: l vectors of width d
through an MLP (d -> h, tanh, -> 2 L d) give every layer's key and value rows; once trained, the MLP's
output is the prefix (``PrefixReparam.folded``), the plain rows a folded prefix scores with. What trains
(and is counted) is the vectors and the MLP. Off by default: the IAA paper and METHODS.md define a prefix
by its 2 L l d rows, which the budget counts."""

from __future__ import annotations

import torch
import torch.nn as nn

from . import arch as A
from .inject import attach, prepend_keys, prepend_positions
from .modules import PrefixKV
from .registry import Knob, Method, register

L = Knob("l", int, None, 1, "prefix length")


def insert_prefixes(base, arch: A.ArchMap, l: int, reparameterize: int = 0) -> None:
    d = base.config.hidden_size
    layers = list(A.layers(base, arch))
    if reparameterize:
        reparam = attach(base, "prefix_reparam", PrefixReparam(l, d, reparameterize, len(layers), base))
        base.register_forward_pre_hook(lambda module, args: reparam.forget())  # one MLP pass per forward
    for index, layer in enumerate(layers):
        attention = A.get(layer, arch.self_attention)
        key, value = A.get(layer, arch.projections["k"]), A.get(layer, arch.projections["v"])
        if reparameterize:
            _prepend(attention, key, value, *[_Rows(reparam, index, part) for part in (0, 1)], arch.widen_args)
            continue
        prefix = attach(attention, "prefix", PrefixKV(l, d))
        _init_from_vocabulary(base, prefix, key, value)
        _prepend(attention, key, value, prefix.key, prefix.value, arch.widen_args)


def _prepend(attention, key, value, key_rows, value_rows, names) -> None:
    """The rows as keys and values only where the module takes a cache, else as extra input positions."""
    if prepend_keys(attention, key_rows, value_rows, names) is None:
        prepend_positions(attention, key, value, key_rows, value_rows, names)


class PrefixReparam(nn.Module):
    """Li & Liang's reparameterisation: ``vectors`` (l x d, from vocabulary embeddings) through
    Linear(d, h) -> tanh -> Linear(h, 2 L d) are every layer's key and value rows."""

    def __init__(self, length: int, d: int, hidden: int, layers: int, base=None):
        super().__init__()
        device = "meta" if base is not None and base.get_input_embeddings().weight.is_meta else None
        self.length, self.layers, self.d = length, layers, d
        self.vectors = nn.Parameter(torch.empty(length, d, device=device))
        self.down = nn.Linear(d, hidden, device=device)
        self.up = nn.Linear(hidden, layers * 2 * d, device=device)
        if device is None:
            with torch.no_grad():
                if base is not None:
                    embeddings = base.get_input_embeddings().weight
                    self.vectors.copy_(embeddings[torch.randint(0, embeddings.shape[0], (length,))])
                else:
                    nn.init.normal_(self.vectors, std=0.02)
        self._made = None

    def forget(self) -> None:
        self._made = None

    def forward(self) -> torch.Tensor:
        """(layers, 2, l, d): per layer, its key rows then its value rows."""
        if self._made is None:
            out = self.up(torch.tanh(self.down(self.vectors)))
            self._made = out.view(self.length, self.layers, 2, self.d).permute(1, 2, 0, 3)
        return self._made

    @torch.no_grad()
    def folded(self) -> torch.Tensor:
        """The trained prefix as plain rows (what a prefix without the MLP loads)."""
        self.forget()
        rows = self().detach().clone()
        self.forget()
        return rows


class _Rows:
    """One layer's key (part 0) or value (part 1) rows, made by the shared reparameterisation."""

    def __init__(self, reparam: PrefixReparam, layer: int, part: int):
        self.reparam, self.layer, self.part, self.length = reparam, layer, part, reparam.length

    def __call__(self) -> torch.Tensor:
        return self.reparam()[self.layer, self.part]


@torch.no_grad()
def _init_from_vocabulary(base, prefix: PrefixKV, key, value) -> None:
    """Start from the keys/values of random vocabulary embeddings (Li & Liang found real activations
    train far better than random vectors)."""
    embeddings = base.get_input_embeddings().weight
    if embeddings.is_meta:
        return
    ids = torch.randint(0, embeddings.shape[0], (prefix.key.shape[0],))
    rows = embeddings[ids]
    prefix.key.copy_(key(rows))
    prefix.value.copy_(value(rows))


REPARAMETERIZE = Knob(
    "reparameterize", int, 0, 0, "Li & Liang's MLP hidden size while training (0: the rows train directly)"
)

register(
    Method(
        name="prefix",
        summary="prefix tuning: l trainable key/value rows per layer (2*L*l*d parameters)",
        inject=lambda base, arch, l, reparameterize: insert_prefixes(base, arch, l, reparameterize),
        knobs=(L, REPARAMETERIZE),
        primary="l",
        derive=lambda value, budget: {"l": value},
        paper={"0.5": {"l": 32}, "6.7": {"l": 200}},
        # 2: prefix rows take no weight decay (methods/decay.py); 3: the rows enter as keys and values only
        # (inject.prepend_keys): the same function, (l+L)/L times less attention, another dropout draw
        revision=3,
    )
)
