"""Training throughput: our loop (``bench.train.train``) against transformers' Trainer (+ peft's LoRA) on the
same fixed batch, loss, precision and step count; examples/s, tokens/s, FLOPs (torch's FlopCounterMode),
achieved FLOP/s and peak memory. Everything in this process: the backbone is loaded once per model."""

from __future__ import annotations

import copy
import functools
import os
import tempfile
import time
from pathlib import Path

from .machine import device, peak_memory_mb, reset_peak_memory

REFERENCE_METHODS = ("full", "lora")  # the reference stack has these: Trainer, Trainer + peft LoRA


def perf_cell(stage, method: str, model: str):
    """A cell of ``stage`` with its default settings, for building the model exactly as a run does."""
    from ..cells import Cell

    extra = {stage.section_key: stage.Section().model_dump()} if stage.Section else {}
    evaluation = stage.Eval().model_dump()
    return Cell(
        suite="perf",
        stage=stage.name,
        method=method,
        budget="0.5",
        seed=0,
        datasets={"train": None, "eval": []},
        first_stage={"backend": "bm25s", "depth": 10},
        eval=evaluation,
        train=stage.Train().model_dump(),
        model=model,
        extra=extra,
    )


@functools.lru_cache(maxsize=4)
def base_model(stage_name: str, model: str):
    """The stage's untouched model, built once per (stage, model); each measurement tunes a deep copy."""
    from ..stages import get_stage

    stage = get_stage(stage_name)
    return stage.build(perf_cell(stage, "full", model))


def parallel_dropout_runs(stage, model: str) -> bool:
    """Whether ``train_attention: parallel_dropout`` can switch this backbone on this transformers."""
    from ..attention import can_switch

    return can_switch(base_model(stage.name, model).model)


def ours_setup(stage, method: str, model: str, budget: float | None = 0.5):
    import methods

    built = copy.deepcopy(base_model(stage.name, model))
    pct = None if methods.get_method(method).fixed else budget
    record = methods.apply_towers(built.model, stage.tuned(built), method, budget_pct=pct)
    return built, stage.loss(built, stage.Train()), record


def count_flops(model, loss, batch: dict) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        loss(model, dict(batch)).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def measure(
    stage,
    method: str,
    length: int,
    stack: str,
    model: str,
    precision: str,
    batch: int,
    group: int,
    steps: int,
    warmup: int,
    fused: bool = True,
    compile_: bool = False,
    attention: str | None = None,
    budget: float | None = 0.5,
) -> dict:
    """One training measurement: examples/s, tokens/s, FLOPs per step, FLOP/s and peak memory, the method
    sized to ``budget`` (% of the backbone's parameters; None or ignored for one-size methods)."""
    queries, group = stage.perf.shape(batch, group)
    reset_peak_memory()
    if stack == "ours":
        seconds, flops, trainable = _ours(
            stage, method, length, model, precision, queries, group, steps, warmup, fused, compile_, attention, budget
        )
    else:
        seconds, flops, trainable = _reference(
            stage, method, length, model, precision, queries, group, steps, warmup, budget
        )
    examples = steps * stage.perf.examples(queries, group)
    tokens = steps * stage.perf.tokens(queries, group, length)
    return {
        "examples_per_s": examples / seconds,
        "tokens_per_s": tokens / seconds,
        "step_s": seconds / steps,
        "flops_per_step": flops,
        "flops_per_s": flops * steps / seconds,
        "trainable": trainable,
        "optimizer_state_mb": trainable * 16 / 2**20,  # fp32 weight + grad + two AdamW moments
        "peak_memory_mb": peak_memory_mb(),
    }


def _ours(stage, method, length, model, precision, queries, group, steps, warmup, fused, compile_, attention, budget):
    from ..attention import use_parallel_dropout
    from ..train import make_accelerator, train

    built, loss, record = ours_setup(stage, method, model, budget)
    if (attention or stage.Train().train_attention) == "parallel_dropout":  # as a cell's fit() does
        use_parallel_dropout(built.model)
    if compile_:
        built.model.compile(dynamic=False)  # fixed shapes here
    batch = stage.perf.batch(built, length, queries, group)
    built.model.to(device())
    moved = {k: v.to(device()) if hasattr(v, "to") else v for k, v in batch.items()}
    flops = count_flops(built.model, loss, moved)
    stamps = []

    def batches(step):
        stamps.append(time.perf_counter())
        return dict(batch)

    train(
        built.model,
        batches,
        loss,
        lr=1e-5,
        steps=warmup + steps,
        accelerator=make_accelerator(precision),
        log_path=Path(os.devnull),
        desc=f"{stage.name} {method} L{length}",
        fused=fused,
        head_params=list(built.head_params),
        head_lr=1e-3 if built.head_params else None,
    )
    _sync()
    return time.perf_counter() - stamps[warmup], flops, record.trainable + record.head


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _rows(batch: dict, queries: int) -> list[dict]:
    """The batch as ``queries`` rows (one query with its passages each) for the Trainer's collator."""
    import torch

    tensors = {k: v for k, v in batch.items() if torch.is_tensor(v)}
    shaped = {k: v.reshape(queries, -1, *v.shape[1:]) for k, v in tensors.items()}
    return [{k: v[i] for k, v in shaped.items()} for i in range(queries)]


def _reference(stage, method, length, model, precision, queries, group, steps, warmup, budget):
    """The same steps through transformers' Trainer (peft's LoRA for lora): (seconds, flops, trainable)."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    import methods

    from ..models import resolve_path

    hooks = stage.perf
    reference = hooks.reference_model(resolve_path(model))
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        knobs = methods.solve(reference.config, "lora", budget)
        reference = get_peft_model(
            reference,
            LoraConfig(
                r=knobs["r"],
                lora_alpha=knobs["alpha"],
                target_modules=["query", "value"],
                task_type=hooks.peft_task_type,
            ),
        )
    trainable = sum(p.numel() for p in reference.parameters() if p.requires_grad)
    built = base_model(stage.name, model)
    rows = _rows(hooks.batch(built, length, queries, group), queries)
    loss_of = hooks.reference_loss(group)
    reference.to(device())
    stacked = {k: torch.stack([r[k] for r in rows]).to(device()) for k in rows[0]}
    flops = count_flops(reference, loss_of, stacked)
    start = {}

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                _sync()
                start["t"] = time.perf_counter()

    class GroupTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            return loss_of(model, inputs)

        def _get_train_sampler(self, *args, **kwargs):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            max_steps=warmup + steps,
            per_device_train_batch_size=queries,
            learning_rate=1e-5,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
            bf16=precision == "bf16",
            use_cpu=not torch.cuda.is_available(),
            remove_unused_columns=False,
        )
        trainer = GroupTrainer(
            model=reference, args=args, train_dataset=rows * (warmup + steps + 1), callbacks=[Timer()]
        )
        trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict
        trainer.train()
    _sync()
    return time.perf_counter() - start["t"], flops, trainable


def ablations(
    stage, model: str, precision: str, batch: int, group: int, steps: int, warmup: int, compile_ablation: bool
) -> dict:
    """One training setting (lora, length 128) with each training speed-up on and off."""
    common = dict(model=model, batch=batch, group=group, steps=steps, warmup=warmup)
    on = measure(stage, "lora", 128, "ours", precision=precision, **common)["examples_per_s"]
    out = {}
    if precision != "no":
        off = measure(stage, "lora", 128, "ours", precision="no", **common)["examples_per_s"]
        out["bf16_autocast"] = {"on": on, "off": off, "speedup": on / off}
    if parallel_dropout_runs(stage, model):
        parallel = measure(stage, "lora", 128, "ours", precision=precision, attention="parallel_dropout", **common)
        out["parallel_dropout_attention"] = {
            "on": parallel["examples_per_s"],
            "off": on,
            "speedup": parallel["examples_per_s"] / on,
        }
    fused = measure(stage, "full", 128, "ours", precision=precision, **common)["examples_per_s"]
    unfused = measure(stage, "full", 128, "ours", precision=precision, fused=False, **common)["examples_per_s"]
    out["fused_adamw_full"] = {"on": fused, "off": unfused, "speedup": fused / unfused}
    if compile_ablation:
        compiled = measure(stage, "lora", 128, "ours", precision=precision, compile_=True, **common)["examples_per_s"]
        out["torch_compile"] = {"on": compiled, "off": on, "speedup": compiled / on}
    return out
