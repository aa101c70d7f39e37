"""The one injection mechanism every method uses.

A method never edits a transformer's code. It attaches its trainable modules as children of existing
modules (names start with ``peft_``, so counting and saving find them) and connects them with forward
hooks. Four kinds of connection cover every method:

- ``add_to_output``: output of ``target`` += module(x), where x is the input of ``source`` (argument
  ``arg``) or, by default, ``target``'s own output (a serial adapter) ;
- ``prepend_positions``: an attention module sees trainable key/value rows first (prefix tuning);
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


def prepend_positions(
    attention: nn.Module, key: nn.Module, value: nn.Module, key_rows, value_rows, names: tuple[str, ...]
) -> list:
    """Prefix tuning on an attention module, whatever its transformers version: l positions are put in
    front of its input, their keys and values are ``key_rows`` / ``value_rows`` (l x d, set at the key and
    value projections' outputs; or callables with a ``length``, asked at each forward), every mask or bias
    named in ``names`` gets l leading positions that attend
    freely, and the l extra outputs are dropped. The real queries thus attend to [prefix; keys]."""
    signature = inspect.signature(attention.forward)
    first = next(iter(signature.parameters))
    extra = key_rows.shape[0] if not callable(key_rows) else key_rows.length

    def widen(mod, args, kwargs):
        arguments = dict(signature.bind(*args, **kwargs).arguments)
        for param in signature.parameters.values():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(arguments.pop(param.name, {}))
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
