"""The one injection mechanism every method uses.

A method never edits a transformer's code. It attaches its trainable modules as children of existing
modules (names start with ``peft_``, so counting and saving find them) and connects them with forward
hooks. Four kinds of connection cover every method:

- ``add_to_output``: output of ``target`` += module(x), where x is the input of ``source`` (argument
  ``arg``) or, by default, ``target``'s own output (a serial adapter) ;
- ``prepend_keys``: an attention module's keys and values start with trainable rows (prefix tuning),
  through the key/value cache argument BERT-like attention takes; ``prepend_positions`` does the same
  where a module takes no cache, as extra input positions whose outputs are dropped;
- ``add_then_renormalize``: a block's output goes through its own LayerNorm again with a module's output
  added (the SeqBn adapter placement).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn

PREFIX = "peft_"


def attach(host: nn.Module, name: str, module: nn.Module) -> nn.Module:
    host.add_module(PREFIX + name, module)
    return module


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output, value):
    if isinstance(output, tuple):
        return (value,) + output[1:]
    return value


def _argument(args, kwargs, index: int, name: str):
    if name in kwargs:
        return kwargs[name]
    return args[index]


class _Capture:
    """Holds the input of a source module until the target module's output hook consumes it."""

    def __init__(self, index: int, name: str):
        self.index, self.name, self.value = index, name, None

    def __call__(self, module, args, kwargs):
        self.value = _argument(args, kwargs, self.index, self.name)

    def pop(self) -> torch.Tensor:
        value, self.value = self.value, None
        if value is None:
            raise RuntimeError("aside module ran before its source block: hooks were wired wrongly")
        return value


def add_to_output(
    target: nn.Module,
    module: nn.Module,
    *,
    source: nn.Module | None = None,
    arg: tuple[int, str] = (0, "hidden_states"),
    scale: float = 1.0,
) -> list:
    """target's output (first element if a tuple) += scale * module(x).

    x is the input ``arg`` of ``source``; without ``source`` x is target's own output (serial
    residual adapter). When source is target (LoRA), x is target's input in the same call.
    """
    handles = []
    if source is None:

        def serial(mod, args, output):
            hidden = _first(output)
            return _replace_first(output, hidden + scale * module(hidden))

        handles.append(target.register_forward_hook(serial))
    elif source is target:

        def parallel_same(mod, args, kwargs, output):
            x = _argument(args, kwargs, *arg)
            return _replace_first(output, _first(output) + scale * module(x))

        handles.append(target.register_forward_hook(parallel_same, with_kwargs=True))
    else:
        capture = _Capture(*arg)
        handles.append(source.register_forward_pre_hook(capture, with_kwargs=True))

        def parallel(mod, args, output):
            return _replace_first(output, _first(output) + scale * module(capture.pop()))

        handles.append(target.register_forward_hook(parallel))
    return handles


def add_then_renormalize(block: nn.Module, norm: nn.Module, module: nn.Module) -> list:
    """block's output y = norm(s) becomes norm(s + module(y)), where s is what ``norm`` normalised inside
    the block: the sub-layer's output plus its residual (the adapters library's SeqBn placement, with the
    original LayerNorm applied before and after the module)."""
    capture = _Capture(0, "input")
    handles = [norm.register_forward_pre_hook(capture, with_kwargs=True)]

    def renormalize(mod, args, output):
        summed = capture.pop()
        return _replace_first(output, norm(summed + module(_first(output))))

    handles.append(block.register_forward_hook(renormalize))
    return handles


CACHE_ARGUMENTS = ("cache", "past_key_values", "past_key_value")  # transformers 5.x, 4.57, older


def prepend_keys(attention: nn.Module, key_rows, value_rows, names: tuple[str, ...]) -> list | None:
    """Prefix tuning as its authors define it: every head's keys and values start with l trainable rows
    (``key_rows`` / ``value_rows``, l x d, or callables with a ``length``, asked at each forward), and every
    mask or bias named in ``names`` gets l leading key positions that attend freely. The queries, the
    projections and the outputs are the real tokens' alone, so the attention costs L x (l + L), not
    (l + L)^2. The rows enter through the key/value cache argument of the module's forward (the one BERT-like
    attention updates with its fresh keys and values), which is how every transformers version since 4.57
    lets a caller prepend keys. None where the module takes no cache: use ``prepend_positions``."""
    signature = inspect.signature(attention.forward)
    slot = next((name for name in CACHE_ARGUMENTS if name in signature.parameters), None)
    if slot is None:
        return None
    extra = key_rows.shape[0] if not callable(key_rows) else key_rows.length

    def widen(mod, args, kwargs):
        arguments = _bound(signature, args, kwargs)
        if arguments.get(slot) is not None:
            raise RuntimeError("prefix tuning runs without a key/value cache: call the model with use_cache=False")
        arguments[slot] = _PrefixCache(key_rows, value_rows)
        for name in names:
            if arguments.get(name) is not None:
                arguments[name] = _pad_axis(arguments[name], extra, -1)
        return (), arguments

    return [attention.register_forward_pre_hook(widen, with_kwargs=True)]


class _PrefixCache:
    """What the attention module asks to extend its keys and values: the prefix rows, in front."""

    def __init__(self, key_rows, value_rows):
        self.key_rows, self.value_rows = key_rows, value_rows

    def update(self, key: torch.Tensor, value: torch.Tensor, *args, **kwargs):
        return _in_front(self.key_rows, key), _in_front(self.value_rows, value)


def _in_front(rows, states: torch.Tensor) -> torch.Tensor:
    """rows (l x d, heads side by side as the projections lay them out) before states (batch, heads, L, d/heads)."""
    value = rows() if callable(rows) else rows
    batch, heads, _, width = states.shape
    per_head = value.to(states.dtype).view(-1, heads, width).transpose(0, 1)
    return torch.cat([per_head.unsqueeze(0).expand(batch, -1, -1, -1), states], dim=2)


def _bound(signature: inspect.Signature, args, kwargs) -> dict:
    """A call's arguments by name, ``**kwargs`` spread out."""
    arguments = dict(signature.bind(*args, **kwargs).arguments)
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(arguments.pop(param.name, {}))
    return arguments


def prepend_positions(
    attention: nn.Module, key: nn.Module, value: nn.Module, key_rows, value_rows, names: tuple[str, ...]
) -> list:
    """Prefix tuning on an attention module that takes no key/value cache (MPNet): l positions are put in
    front of its input, their keys and values are ``key_rows`` / ``value_rows`` (l x d, set at the key and
    value projections' outputs; or callables with a ``length``, asked at each forward), every mask or bias
    named in ``names`` gets l leading positions that attend
    freely, and the l extra outputs are dropped. The real queries thus attend to [prefix; keys], as with
    ``prepend_keys``, at the cost of projecting and attending from l more positions."""
    signature = inspect.signature(attention.forward)
    first = next(iter(signature.parameters))
    extra = key_rows.shape[0] if not callable(key_rows) else key_rows.length

    def widen(mod, args, kwargs):
        arguments = _bound(signature, args, kwargs)
        hidden = arguments[first]
        length = hidden.shape[1]
        arguments[first] = torch.cat([hidden.new_zeros(hidden.shape[0], extra, hidden.shape[2]), hidden], dim=1)
        for name in names:
            tensor = arguments.get(name)
            if tensor is not None:
                tensor = _pad_axis(tensor, extra, -1)
                if tensor.dim() >= 2 and tensor.shape[-2] == length:  # a per-query mask or bias: rows too
                    tensor = _pad_axis(tensor, extra, -2)
                arguments[name] = tensor
        return (), arguments

    def rows_of(rows):
        def replace(mod, args, output):
            value = rows() if callable(rows) else rows  # a callable: rows made anew (a reparameterised prefix)
            return torch.cat(
                [value.to(output.dtype).unsqueeze(0).expand(output.shape[0], -1, -1), output[:, extra:]], dim=1
            )

        return replace

    def drop(mod, args, output):
        return _replace_first(output, _first(output)[:, extra:])

    return [
        attention.register_forward_pre_hook(widen, with_kwargs=True),
        key.register_forward_hook(rows_of(key_rows)),
        value.register_forward_hook(rows_of(value_rows)),
        attention.register_forward_hook(drop),
    ]


def _pad_axis(tensor: torch.Tensor, extra: int, axis: int) -> torch.Tensor:
    """``extra`` leading entries along ``axis`` that let attention through (True, or 0 for additive masks)."""
    shape = list(tensor.shape)
    shape[axis] = extra
    pad = (
        torch.ones(shape, dtype=torch.bool, device=tensor.device)
        if tensor.dtype == torch.bool
        else torch.zeros(shape, dtype=tensor.dtype, device=tensor.device)
    )
    return torch.cat([pad, tensor], dim=axis)


def injected_parameters(model: nn.Module):
    for name, param in model.named_parameters():
        if PREFIX in name:
            yield name, param
