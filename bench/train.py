"""The one training loop every stage uses: AdamW, linear warmup and decay, gradient clipping,
accelerate for the device and mixed precision, a JSONL log of every step."""

from __future__ import annotations

import json
import math
import os
import random
import time
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

    # some backbone tensors never reach the loss (BERT's pooler under full fine-tuning): DDP must know
    unused = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision, kwargs_handlers=[unused])


def _movable(value) -> bool:
    return torch.is_tensor(value) or isinstance(value, Packed)


class Diverged(RuntimeError):
    pass


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
    grad_clip: float = 1.0,
    desc: str = "train",
    head_params=(),
    head_lr: float | None = None,
    fused: bool = True,
) -> dict:
    """Run ``steps`` optimisation steps over ``batches`` (a callable step -> batch) and return stats."""
    from transformers import get_linear_schedule_with_warmup

    from methods.decay import decayed

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
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(warmup_ratio * steps), steps)
    # the scheduler is stepped here, once per optimiser step: accelerate would step a prepared scheduler
    # once per process (the decay would end after steps / processes under data parallelism)
    model, optimizer = accelerator.prepare(model, optimizer)
    # a loss over the batch gathered from every rank reaches only this rank's tensors: scaled by the number
    # of processes, the averaged gradient is the single-process one (as Tevatron)
    scale = accelerator.num_processes if getattr(loss_fn, "global_batch", False) else 1
    model.train()
    losses, start = [], time.perf_counter()
    if not accelerator.is_main_process:  # other data-parallel ranks train alongside and log nothing
        log_path = Path(os.devnull)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = log_path.with_name(log_path.name + ".tmp") if log_path != Path(os.devnull) else log_path
    with (
        tmp.open("w") as log,
        tqdm(range(steps), desc=desc, leave=False, disable=not accelerator.is_main_process) as bar,
    ):
        for step in bar:
            batch = {k: v.to(accelerator.device) if _movable(v) else v for k, v in batches(step).items()}
            with accelerator.autocast():
                loss = loss_fn(model, batch)
            non_finite = (~torch.isfinite(loss.detach())).float()
            if accelerator.num_processes > 1:  # every rank stops together, none hangs in an all-reduce
                non_finite = accelerator.reduce(non_finite, "sum")
            if non_finite.item() > 0:
                raise Diverged(f"non-finite loss {loss.item()} at step {step}")
            accelerator.backward(loss * scale if scale != 1 else loss)
            grad_norm = accelerator.clip_grad_norm_(params, grad_clip)
            used_lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            if not getattr(optimizer, "step_was_skipped", False):  # fp16: a skipped step keeps the schedule
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(
                accelerator.reduce(loss.detach(), "mean").item() if accelerator.num_processes > 1 else loss.item()
            )  # data parallel: the mean over ranks = the whole batch
            log.write(
                json.dumps({"step": step + 1, "loss": losses[-1], "lr": used_lr, "grad_norm": float(grad_norm)}) + "\n"
            )
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    if tmp != log_path:
        tmp.replace(log_path)
    model.eval()
    return {
        "steps": steps,
        "train_s": time.perf_counter() - start,
        "loss_first": float(np.mean(losses[: max(1, steps // 10)])),
        "loss_last": float(np.mean(losses[-max(1, steps // 10) :])),
    }
