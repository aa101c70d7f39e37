"""The one training loop every stage uses: AdamW, linear warmup and decay (or a constant rate), gradient
clipping, accelerate for the device and mixed precision, a JSONL log of every update, and optional early
stopping on a held-out loss after every epoch that keeps the best epoch's weights."""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .packing import Packed


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_accelerator(mixed_precision: str = "no"):
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState

    # accelerate keeps one process-wide state and refuses a second precision in it (perf's ablations,
    # a worker running cells of different precisions): start a fresh state when the precision changes
    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=True)
    # some backbone tensors never reach the loss (BERT's pooler under full fine-tuning): DDP must know
    unused = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision, kwargs_handlers=[unused])


def _movable(value) -> bool:
    return torch.is_tensor(value) or isinstance(value, Packed)


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if _movable(v) else v for k, v in batch.items()}


class Diverged(RuntimeError):
    pass


@dataclass
class EarlyStopping:
    """After every ``steps_per_epoch`` steps, ``dev_loss(model)`` (no gradients, eval mode); training ends
    after ``patience`` epochs without a lower one, and the weights of the best epoch are put back (as the
    Q-PEFT authors' script: up to 20 epochs, a 128-query dev loss, the best checkpoint kept)."""

    steps_per_epoch: int
    patience: int
    dev_loss: Callable[[torch.nn.Module], float]


class _Best:
    """The trainable tensors at the lowest dev loss so far, and the epochs since."""

    def __init__(self, params):
        self.params, self.loss, self.epoch, self.stale, self.losses = params, math.inf, 0, 0, []
        self.saved = None

    def update(self, loss: float, epoch: int) -> None:
        self.losses.append(loss)
        if loss < self.loss:
            self.loss, self.epoch, self.stale = loss, epoch, 0
            self.saved = [p.detach().clone() for p in self.params]
        else:
            self.stale += 1

    def restore(self) -> None:
        if self.saved is not None:
            with torch.no_grad():
                for p, saved in zip(self.params, self.saved):
                    p.copy_(saved)


def train(
    model,
    batches,
    loss_fn,
    *,
    lr: float,
    steps: int,
    accelerator,
    log_path: Path,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    grad_clip: float | None = 1.0,
    desc: str = "train",
    head_params=(),
    head_lr: float | None = None,
    fused: bool = True,
    schedule: str = "linear",
    early_stopping: EarlyStopping | None = None,
    chance: float | None = None,
    stop_collapsed: bool = True,
) -> dict:
    """Run ``steps`` steps over ``batches`` (a callable step -> batch, or -> a list of batches: one update
    each, as the Q-PEFT authors' mini-batches) and return stats. ``chance``: the loss at chance, by which
    the run is judged collapsed or not; with ``stop_collapsed``, a run still at it at the collapse checkpoint
    stops there (``bench.collapse``)."""
    from transformers import get_constant_schedule, get_linear_schedule_with_warmup

    from methods.decay import decayed

    from . import collapse

    params = [p for p in model.parameters() if p.requires_grad]
    head_ids = {id(p) for p in head_params} if head_lr else set()
    decay = decayed(model)  # the one rule: weight matrices of linear maps (methods/decay.py)
    body = [p for p in params if id(p) not in head_ids]
    groups = [
        {"params": [p for p in body if id(p) in decay], "weight_decay": weight_decay},
        {"params": [p for p in body if id(p) not in decay], "weight_decay": 0.0},
    ]
    if head_ids:  # a freshly initialised head learns at its own rate (full fine-tuning uses a tiny lr)
        head = [p for p in params if id(p) in head_ids]
        groups.append({"params": [p for p in head if id(p) in decay], "weight_decay": weight_decay, "lr": head_lr})
        groups.append({"params": [p for p in head if id(p) not in decay], "weight_decay": 0.0, "lr": head_lr})
    # one fused kernel for the whole update (CPU and GPU; what transformers' Trainer uses by default):
    # 6% more full fine-tuning steps per second than the for-each implementation here
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, fused=fused)
    if schedule == "constant":
        scheduler = get_constant_schedule(optimizer)
    else:
        scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(warmup_ratio * steps), steps)
    # the scheduler is stepped here, once per optimiser step: accelerate would step a prepared scheduler
    # once per process (the decay would end after steps / processes under data parallelism)
    model, optimizer = accelerator.prepare(model, optimizer)
    # a loss over the batch gathered from every rank reaches only this rank's tensors: scaled by the number
    # of processes, the averaged gradient is the single-process one (as Tevatron)
    scale = accelerator.num_processes if getattr(loss_fn, "global_batch", False) else 1
    model.train()
    losses, start = [], time.perf_counter()
    best = _Best(params)
    checkpoint = collapse.checkpoint_step(steps) if chance is not None and stop_collapsed else None
    stopped_collapsed = False
    if not accelerator.is_main_process:  # other data-parallel ranks train alongside and log nothing
        log_path = Path(os.devnull)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = log_path.with_name(log_path.name + ".tmp") if log_path != Path(os.devnull) else log_path
    with (
        tmp.open("w") as log,
        tqdm(range(steps), desc=desc, leave=False, disable=not accelerator.is_main_process) as bar,
    ):
        for step in bar:
            work = batches(step)
            for batch in work if isinstance(work, list) else [work]:
                losses.append(
                    _update(model, batch, loss_fn, optimizer, scheduler, accelerator, params, scale, grad_clip, step)
                )
                log.write(json.dumps({"step": step + 1, **losses[-1]}) + "\n")
                bar.set_postfix(loss=f"{losses[-1]['loss']:.3f}")
            if early_stopping and (step + 1) % early_stopping.steps_per_epoch == 0:
                best.update(_dev_loss(model, early_stopping), (step + 1) // early_stopping.steps_per_epoch)
                if best.stale >= early_stopping.patience:
                    break
            if step + 1 == checkpoint and collapse.at_chance([e["loss"] for e in losses], chance, steps):
                stopped_collapsed = True  # every rank logs the same reduced loss: all stop together
                break
    if tmp != log_path:
        tmp.replace(log_path)
    model.eval()
    values = [entry["loss"] for entry in losses]
    stats = {
        "steps": step + 1,
        "train_s": time.perf_counter() - start,
        "loss_first": float(np.mean(values[: max(1, len(values) // 10)])),
        "loss_last": float(np.mean(values[-max(1, len(values) // 10) :])),
    }
    if len(values) != step + 1:
        stats["updates"] = len(values)
    if chance is not None:
        stats["chance_loss"] = chance
        stats["collapsed"] = stopped_collapsed or collapse.at_chance(values, chance, steps)
        if stopped_collapsed:
            stats["stopped_collapsed_at"] = step + 1
    if early_stopping:
        best.restore()
        stats.update(dev_losses=best.losses, best_epoch=best.epoch, epochs_run=len(best.losses))
    return stats


def _update(model, batch, loss_fn, optimizer, scheduler, accelerator, params, scale, grad_clip, step) -> dict:
    """One optimiser update on ``batch``: its log entry (loss, lr, gradient norm)."""
    batch = to_device(batch, accelerator.device)
    with accelerator.autocast():
        loss = loss_fn(model, batch)
    non_finite = (~torch.isfinite(loss.detach())).float()
    if accelerator.num_processes > 1:  # every rank stops together, none hangs in an all-reduce
        non_finite = accelerator.reduce(non_finite, "sum")
    if non_finite.item() > 0:
        raise Diverged(f"non-finite loss {loss.item()} at step {step}")
    accelerator.backward(loss * scale if scale != 1 else loss)
    grad_norm = accelerator.clip_grad_norm_(params, math.inf if grad_clip is None else grad_clip)  # inf: logged only
    used_lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    if not getattr(optimizer, "step_was_skipped", False):  # fp16: a skipped step keeps the schedule
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    value = accelerator.reduce(loss.detach(), "mean").item() if accelerator.num_processes > 1 else loss.item()
    return {"loss": value, "lr": used_lr, "grad_norm": float(grad_norm)}  # data parallel: the whole batch's mean


def _dev_loss(model, early_stopping: EarlyStopping) -> float:
    model.eval()
    with torch.no_grad():
        loss = float(early_stopping.dev_loss(model))
    model.train()
    return loss
