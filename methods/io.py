"""Save/load only the trainable tensors (safetensors + a small JSON), and LoRA export for peft."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch.nn as nn
from safetensors.torch import load_file, save_file

from .api import apply
from .core import RECORD_ATTR, record_of
from .errors import MethodError
from .registry import get_method

WEIGHTS = "trainable.safetensors"
META = "method.json"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) then rename onto ``path``: readers never see a half-written file. The file gets
    the permissions a plain open() would give it (the user's umask), not mkstemp's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~UMASK)  # after the write: some writers replace the file mkstemp made
        with open(tmp, "rb") as written:  # on disk before the rename: a power loss leaves old or new, never half
            os.fsync(written.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True)))


def save(model: nn.Module, directory, extra: dict | None = None) -> Path:
    """The trained tensors (safetensors) and the method record (method.json, with ``extra`` keys)."""
    record = record_of(model)
    directory = Path(directory)
    tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    atomic_write(directory / WEIGHTS, lambda tmp: save_file(tensors, tmp))
    rows = {"token_ids": _row_ids(model)} if get_method(record.method).takes_token_ids else {}
    _write_json(directory / META, {**record.to_dict(), "tensors": sorted(tensors), **rows, **(extra or {})})
    return directory


def _row_ids(model: nn.Module) -> list[int]:
    """The vocabulary rows of a sparse embedding table (Q-PEFT), needed to rebuild it on load."""
    for name, buffer in model.named_buffers():
        if name.endswith("row_ids"):
            return buffer.tolist()
    return []


def load(model: nn.Module, directory):
    """Apply the saved method to a fresh ``model`` (same backbone) and load the trained tensors."""
    directory = Path(directory)
    meta_path = directory / META
    if not meta_path.exists():
        raise MethodError(f"{meta_path} not found: point load() at a directory written by methods.save")
    meta = json.loads(meta_path.read_text())
    record = getattr(model, RECORD_ATTR, None)
    if record is None:
        extra = {"token_ids": meta["token_ids"]} if "token_ids" in meta else {}
        record = apply(model, meta["method"], **meta["knobs"], **extra)
    elif (record.method, record.knobs) != (meta["method"], meta["knobs"]):
        raise MethodError(
            f"model has {record.method} {record.knobs} applied, {directory} holds {meta['method']} {meta['knobs']}"
        )
    tensors = load_file(str(directory / WEIGHTS))
    own = dict(model.named_parameters())
    unknown = sorted(set(tensors) - set(own))
    if unknown:
        raise MethodError(f"{directory}: tensor {unknown[0]} does not exist in this model (another backbone?)")
    for name, value in tensors.items():
        if own[name].shape != value.shape:
            raise MethodError(
                f"{directory}: tensor {name} has shape {tuple(value.shape)}, model expects {tuple(own[name].shape)}"
            )
    model.load_state_dict(tensors, strict=False)
    return record


def from_pretrained(directory, **kwargs) -> nn.Module:
    """A model exported with its method's modules (``bench export --format hf`` of an adapter, prefix, MAM or
    IAA cell): the transformers model saved in ``directory`` (its class named in method.json as
    ``auto_class``), the method applied with its knobs and its trained tensors loaded. ``kwargs`` go to
    ``from_pretrained`` (e.g. ``torch_dtype``)."""
    import transformers

    directory = Path(directory)
    meta_path = directory / META
    if not meta_path.exists():
        raise MethodError(f"{meta_path} not found: point from_pretrained() at a folder written by bench export")
    meta = json.loads(meta_path.read_text())
    auto = getattr(transformers, meta.get("auto_class", "AutoModel"), None)
    if auto is None:
        raise MethodError(f"{meta_path}: unknown auto_class {meta.get('auto_class')!r}")
    model = auto.from_pretrained(str(directory), **kwargs)
    load(model, directory)
    return model.eval()


def folded_state(model: nn.Module) -> dict:
    """``model``'s state with every LoRA delta added into its linear weight (W + alpha/r B A) and no
    ``peft_`` tensor left: the weights of a plain transformers model computing what ``model`` computes."""
    state = {}
    deltas = {}
    for name, module in model.named_modules():
        delta = getattr(module, "peft_lora", None)
        if delta is not None:
            weight = delta.lora_B.weight @ delta.lora_A.weight * delta.scaling
            deltas[f"{name}.weight" if name else "weight"] = weight.detach()
    for name, value in model.state_dict().items():
        if "peft_" in name:
            continue
        state[name] = (value + deltas[name].to(value.dtype)) if name in deltas else value
    return state


def export_peft_lora(model: nn.Module, directory) -> Path:
    """Write LoRA in peft's adapter format: ``PeftModel.from_pretrained(<same model class>, directory)``.

    Tensor names are relative to ``model`` if it is a transformers model, else to the transformers
    model inside it. The head is not exported.
    """
    from peft import LoraConfig
    from transformers import PreTrainedModel

    record = record_of(model)
    if record.method != "lora":
        raise MethodError(f"peft export needs a lora model, this one has {record.method!r}")
    root = (
        model
        if isinstance(model, PreTrainedModel)
        else next(m for m in model.modules() if isinstance(m, PreTrainedModel))
    )
    tensors, targets = {}, set()
    for name, module in root.named_modules():
        delta = getattr(module, "peft_lora", None)
        if delta is None:
            continue
        targets.add(name.rpartition(".")[2])
        tensors[f"base_model.model.{name}.lora_A.weight"] = delta.lora_A.weight.detach().cpu().contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = delta.lora_B.weight.detach().cpu().contiguous()
    knobs = record.knobs
    config = LoraConfig(
        r=knobs["r"],
        lora_alpha=knobs["alpha"],
        lora_dropout=knobs["dropout"],
        target_modules=sorted(targets),
        bias="none",
        base_model_name_or_path=record.backbone_name or None,
    )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(directory))
    atomic_write(directory / "adapter_model.safetensors", lambda tmp: save_file(tensors, tmp))
    return directory
