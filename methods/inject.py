"""The one injection mechanism every method uses.

A method never edits a transformer's code. It attaches its trainable modules as children of existing
modules (names start with ``peft_``, so counting and saving find them) and connects them with forward
hooks. Three kinds of connection cover every method:

- ``add_to_output``: output of ``target`` += module(x), where x is the input of ``source`` (argument
  ``arg``) or, by default, ``target``'s own output (a serial adapter) ;
- ``extend_sequence``: output of a key/value projection gets trainable rows prepended (prefix);
- ``widen_keys``: the additive masks/biases handed to an attention module get matching columns.
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


def extend_sequence(projection: nn.Module, rows: nn.Parameter) -> list:
    """Prepend ``rows`` (l x d) to the projection's output along the sequence axis."""

    def prepend(mod, args, output):
        batch = output.shape[0]
        return torch.cat([rows.to(output.dtype).unsqueeze(0).expand(batch, -1, -1), output], dim=1)

    return [projection.register_forward_hook(prepend)]


def widen_keys(attention: nn.Module, names: tuple[str, ...], extra: int) -> list:
    """Give every mask/bias named in ``names`` ``extra`` leading key columns that attend freely."""
    signature = inspect.signature(attention.forward)

    def widen(mod, args, kwargs):
        bound = signature.bind(*args, **kwargs)
        arguments = dict(bound.arguments)
        for param in signature.parameters.values():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(arguments.pop(param.name, {}))
        for name in names:
            tensor = arguments.get(name)
            if tensor is not None:
                arguments[name] = _pad_key_axis(tensor, extra)
        return (), arguments

    return [attention.register_forward_pre_hook(widen, with_kwargs=True)]


def _pad_key_axis(tensor: torch.Tensor, extra: int) -> torch.Tensor:
    shape = list(tensor.shape)
    shape[-1] = extra
    if tensor.dtype == torch.bool:
        pad = torch.ones(shape, dtype=torch.bool, device=tensor.device)
    else:
        pad = torch.zeros(shape, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([pad.expand(*tensor.shape[:-1], extra), tensor], dim=-1)


def injected_parameters(model: nn.Module):
    for name, param in model.named_parameters():
        if PREFIX in name:
            yield name, param
