"""The Stage interface and the one cell runner.

A stage declares what it is (name, backbone family, metrics, typed settings, whether it reranks the
first stage's candidates, perf hooks) and implements four things: ``build`` a model for a cell,
training ``batches``, a ``loss`` (Tevatron's build / compute_loss split) and ``score``. ``run_cell``
does the rest for every stage: seeds, the method (``methods.apply_towers``), the training loop, the
evaluation through ranx and the result. Stages never name methods: a method declares what it needs
(token sources, prompt slots) and a system its role (``bench.systems``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch.nn as nn

import methods

from .. import environment, results
from ..attention import use_parallel_dropout
from ..data import Collection, cached_collection, limit_queries
from ..errors import BenchError
from ..evaluate import evaluate_run
from ..faults import FAULTS_ENV, forced
from ..files import safe_name, write_json
from ..firststage import candidates_for, write_trec_run
from ..sampling import EpochGroups, RankShard, split_queries
from ..settings import EvalSettings, FirstStageSettings, Settings, TrainSettings
from ..systems import Role, role
from ..train import EarlyStopping, make_accelerator, seed_everything, to_device, train


@dataclass
class Built:
    """What ``Stage.build`` returns: the model to tune and score, its tokenizer, the transformer(s) an
    untrained cell counts as its backbone, and the head's parameters (their own learning rate)."""

    model: nn.Module
    tokenizer: Any
    backbone: list[nn.Module]
    head_params: tuple = ()
    state: dict = field(default_factory=dict)  # anything else the stage keeps between calls


@dataclass(frozen=True)
class PerfHooks:
    """What ``bench perf`` needs from a stage: a fixed-shape training batch, its example and token
    counts, and (optionally) the same model and loss in the reference stack (transformers' Trainer)."""

    batch: Callable  # (built, length, queries, group) -> batch dict (includes what the loss reads)
    examples: Callable  # (queries, group) -> examples in one step
    tokens: Callable  # (queries, group, length) -> tokens in one step
    shape: Callable = lambda batch, group: (batch, group)  # perf's (batch, group) -> (queries, passages each)
    reference_model: Callable | None = None  # (model path) -> transformers model (+ peft for lora)
    reference_loss: Callable | None = None  # (group) -> (model, batch) -> loss
    peft_task_type: str = "FEATURE_EXTRACTION"


class Stage(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    family: ClassVar[str]  # the backbones it tunes: "encoder" or "causal-lm" (methods.Method.families)
    default_model: ClassVar[str]
    smoke_suite: ClassVar[str | None] = None
    metrics: ClassVar[tuple[str, ...]]
    needs_candidates: ClassVar[bool] = True  # False: the stage retrieves from the whole corpus itself
    Train: ClassVar[type[TrainSettings]] = TrainSettings
    Eval: ClassVar[type[EvalSettings]] = EvalSettings
    section_key: ClassVar[str | None] = None  # a suite section of the stage's own (cell.extra[key])
    Section: ClassVar[type[Settings] | None] = None
    perf: ClassVar[PerfHooks | None] = None

    @abstractmethod
    def build(self, cell) -> Built: ...

    def tuned(self, built: Built) -> list[nn.Module]:
        """The transformers a method is applied to (each with the same knobs)."""
        return [built.model]

    def configure(self, built: Built, phase: str, settings) -> None:  # noqa: B027  (optional hook)
        """Called with the train settings before training and the eval settings before scoring."""

    def token_rows(
        self, built: Built, sources: frozenset, train: Collection, candidates: dict, query_ids: list[str]
    ) -> list[int]:
        raise methods.MethodError(f"stage {self.name} cannot give vocabulary rows ({', '.join(sorted(sources))})")

    @abstractmethod
    def batches(self, built: Built, groups, train: Collection, settings) -> Callable[[int], dict]: ...

    @abstractmethod
    def loss(self, built: Built, settings) -> Callable[[nn.Module, dict], Any]: ...

    def chance_loss(self, settings) -> float | None:
        """The training loss of a model that ranks at chance (None: the stage's loss has no such level, and
        no cell of it is ever called collapsed)."""
        return None

    @abstractmethod
    def score(
        self, built: Built, collection: Collection, candidates: dict | None, settings, device, autocast
    ) -> tuple[dict, dict]: ...

    def section(self, cell) -> Settings | None:
        return self.Section(**cell.extra.get(self.section_key, {})) if self.Section else None


# ---------------------------------------------------------------- the one cell runner


def raise_forced_fault(cell) -> None:
    """BENCH_FAULTS (tests): ``raise`` fails the cell; ``oom`` runs out of memory on a shared card (a share
    below 1), ``oom-always`` with the card to itself too."""
    import torch

    fault = _forced_fault(cell)
    if fault == "raise":
        raise RuntimeError(f"fault forced by {FAULTS_ENV}")
    if fault == "oom-always" or (fault == "oom" and environment.gpu_share() < 1.0):
        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (fault forced by {FAULTS_ENV})")


def _forced_fault(cell) -> str | None:
    return forced(cell.method)


def _nan_after_first_step(loss):
    calls = []

    def poisoned(model, batch):
        calls.append(1)
        value = loss(model, batch)
        return value * float("nan") if len(calls) > 1 else value

    poisoned.global_batch = getattr(loss, "global_batch", False)
    return poisoned


def _budget(cell):
    """What methods.apply gets: nothing for one-size methods; "native" (the paper's 0.5% knobs) or a budget."""
    return None if cell.budget == "native" and methods.get_method(cell.method).fixed else cell.budget


def _maybe_compile(cell, model) -> None:
    if cell.compile:
        model.compile(dynamic=True)  # in place: parameter names, hence saved tensors, stay the same


def _untrained_record(name: str, modules: list[nn.Module]) -> methods.MethodRecord:
    count = sum(p.numel() for module in modules for p in module.parameters())
    config = getattr(modules[0], "config", None)
    return methods.MethodRecord(
        method=name,
        knobs={},
        trainable=0,
        backbone=count,
        pct=0.0,
        head=0,
        backbone_name=str(getattr(config, "_name_or_path", "") or ""),
    )


def _train_candidates(cell, cache: Path) -> tuple[Collection, dict]:
    coll = cached_collection(cell.datasets["train"])
    return coll, candidates_for(cell.first_stage, coll, cache, cell.first_stage["depth"])


def fit(stage: Stage, cell, built: Built, settings: TrainSettings, directory: Path, cache: Path, accelerator):
    """The training every stage shares: groups from the first stage, the one loop, saved tensors."""
    model = built.model
    if settings.train_attention == "parallel_dropout":
        use_parallel_dropout(model)
    _maybe_compile(cell, model)
    train_coll, train_cands = _train_candidates(cell, cache)
    groups = EpochGroups(
        train_coll, train_cands, settings.group_size, cell.seed, settings.max_queries, settings.dev_queries
    )
    if not len(groups):
        raise BenchError(
            f"{cell.datasets['train']}: no query has a judged relevant document in the corpus; "
            "training needs at least one"
        )
    steps = settings.steps or max(1, settings.epochs * len(groups) // settings.batch_queries)
    stopping = None
    if settings.dev_queries:  # every rank computes the whole dev loss: all stop at the same epoch
        stopping = EarlyStopping(
            steps_per_epoch=max(1, len(groups) // settings.batch_queries),
            patience=settings.patience,
            dev_loss=_dev_loss(stage, built, groups.dev(), train_coll, settings),
        )
        steps = settings.epochs * stopping.steps_per_epoch
    if accelerator.num_processes > 1:
        if settings.batch_queries % accelerator.num_processes:
            raise BenchError(
                f"batch_queries {settings.batch_queries} does not split over "
                f"{accelerator.num_processes} processes; make it a multiple"
            )
        groups = RankShard(groups, accelerator.process_index, accelerator.num_processes)
    built.state["processes"] = accelerator.num_processes
    loss = stage.loss(built, settings)
    if _forced_fault(cell) == "nan":
        loss = _nan_after_first_step(loss)
    stats = train(
        model,
        stage.batches(built, groups, train_coll, settings),
        loss,
        lr=cell.train["lr"],
        steps=steps,
        accelerator=accelerator,
        log_path=directory / "train_log.jsonl",
        warmup_ratio=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        grad_clip=settings.grad_clip,
        desc=f"train {cell.method}",
        head_params=list(built.head_params),
        head_lr=getattr(settings, "head_lr", None),
        schedule=settings.schedule,
        early_stopping=stopping,
        chance=stage.chance_loss(settings),
        stop_collapsed=settings.stop_collapsed,
    )
    stats["groups"] = len(groups)
    stats.update(built.state.get("counters", {}))  # what a stage tallied while batching (e.g. masked batches)
    built.model = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        methods.save(built.model, directory / "trainable")
    return stats


def _dev_loss(stage: Stage, built: Built, dev, train_coll, settings):
    """model -> the mean training loss over the held-out queries' batches (the stage's own batching and loss)."""
    batches = stage.batches(built, dev, train_coll, settings)
    loss_fn = stage.loss(built, settings)

    def mean_loss(model) -> float:
        counters = built.state.get("counters")
        before = dict(counters) if counters is not None else None
        values = []
        for step in range(dev.steps(settings.batch_queries)):
            work = batches(step)
            for batch in work if isinstance(work, list) else [work]:
                values.append(float(loss_fn(model, to_device(batch, next(model.parameters()).device))))
        if before is not None:  # what the stage tallies counts training batches, not the dev loss's
            counters.clear()
            counters.update(before)
        return sum(values) / len(values)

    return mean_loss


def run_metadata(cell, ref: str) -> dict:
    """Who made a run (ir_metadata's spirit): the system, its budget and seed, the cell's identity hash."""
    return {
        "tag": f"{cell.method}-{cell.budget}-s{cell.seed}",
        "system": cell.method,
        "stage": cell.stage,
        "budget": cell.budget,
        "seed": cell.seed,
        "model": cell.model,
        "config_hash": cell.id,
        "collection": ref,
        "implementation": "peft-ir-bench",
        "git_commit": environment.git_commit(),
    }


VALIDATION_PER_QUERY = "validation_per_query.json"


def evaluate_all(stage: Stage, cell, directory: Path, cache: Path, score, needs_candidates: bool) -> dict:
    """Every eval dataset: metrics, per-query metrics (``per_query.json``) and the TREC run."""
    return _evaluate(stage, cell, directory, cache, score, needs_candidates, cell.datasets["eval"], "per_query.json")


def evaluate_validation(stage: Stage, cell, directory: Path, cache: Path, score, needs_candidates: bool) -> dict:
    """The validation data of a searched cell (``validation_per_query.json``; no TREC run): what the search
    selects on. Nothing when the cell has no validation data."""
    ref = cell.datasets.get("validation")
    if not ref:
        return {"metrics": {}, "eval": {}}
    return _evaluate(stage, cell, directory, cache, score, needs_candidates, [ref], VALIDATION_PER_QUERY, False)


def _evaluate(stage, cell, directory, cache, score, needs_candidates, refs, per_query_file, runs=True) -> dict:
    metrics, per_query, timing = {}, {}, {}
    for ref in refs:
        coll = limit_queries(cached_collection(ref), cell.eval.get("max_queries"))
        first = FirstStageSettings.for_dataset(cell.first_stage, ref)
        depth = first["depth"] if ref in (cell.first_stage.get("by_dataset") or {}) else cell.eval["depth"]
        cands = candidates_for(first, coll, cache, depth) if needs_candidates else None
        run, timing[ref] = score(coll, cands, depth)
        names = tuple(cell.eval.get("metrics") or stage.metrics)
        metrics[ref], per_query[ref] = evaluate_run(coll.qrels, run, names, coll.relevance_level)
        if runs:
            write_trec_run(
                run,
                directory / f"run.{safe_name(ref)}.trec",
                f"{cell.method}-{cell.budget}-s{cell.seed}",
                run_metadata(cell, ref),
            )
    write_json(directory / per_query_file, per_query)
    return {"metrics": metrics, "eval": timing}


def holdout_of(cell) -> dict:
    ref = cell.datasets.get("validation")
    return dict(cached_collection(ref).extra.get("holdout") or {}) if ref else {}


def scorer(stage: Stage, built: Built, cell, device, autocast):
    """The stage's scoring of ``built`` under the cell's eval settings: (collection, candidates) -> run."""
    evaluation = stage.Eval(**cell.eval)
    stage.configure(built, "eval", evaluation)

    def score(coll, cands, depth=None):
        settings = evaluation if depth in (None, evaluation.depth) else evaluation.model_copy(update={"depth": depth})
        return stage.score(built, coll, cands, settings, device, autocast)

    return score


def restored(cell, cell_dir: Path):
    """The cell's model as it was after training: the stage builds it, the method is applied to its
    transformers, the saved tensors are loaded."""
    from . import get_stage

    stage = get_stage(cell.stage)
    built = stage.build(cell)
    meta = json.loads((Path(cell_dir) / "trainable" / methods.io.META).read_text())
    extra = {"token_ids": meta["token_ids"]} if "token_ids" in meta else {}
    methods.apply_towers(built.model, stage.tuned(built), meta["method"], **meta["knobs"], **extra)
    methods.load(built.model, Path(cell_dir) / "trainable")
    built.model.eval()
    return stage, built, meta


def score_test_from_tensors(cell, directory: Path, cache: Path, earlier: results.CellResult) -> results.CellResult:
    """A searched cell that won its search: its saved tensors scored on the eval data (no retraining), its
    result completed with those metrics and what it was selected against."""
    started = time.perf_counter()
    stage, built, _ = restored(cell, directory)
    accelerator = make_accelerator(environment.resolve_precision(cell.mixed_precision or "no"))
    built.model.to(accelerator.device)
    score = scorer(stage, built, cell, accelerator.device, accelerator.autocast)
    outcome = evaluate_all(stage, cell, directory, cache, score, stage.needs_candidates)
    times = {**earlier.times, "test_scoring_s": time.perf_counter() - started, "finished_at": time.time()}
    fingerprints = {**earlier.dataset_fingerprints, **_fingerprints(cell.datasets["eval"])}
    result = dataclasses.replace(
        earlier,
        metrics=outcome["metrics"],
        eval={**earlier.eval, **outcome["eval"]},
        times=times,
        phase="final",
        selection=cell.selection,
        config=cell.to_json(),
        dataset_fingerprints=fingerprints,
    )
    results.write(directory, result)
    return result


def _fingerprints(refs) -> dict:
    return {ref: cached_collection(ref).fingerprint for ref in refs}


def run_cell(stage: Stage, cell, directory: Path, cache: Path) -> results.CellResult | None:
    """Run one cell and write its result (rank 0); None on the other data-parallel ranks."""
    started = time.perf_counter()
    system = role(cell.method)
    record, device, stats = None, "cpu", {}
    validation = {"metrics": {}, "eval": {}}
    if system is Role.FIRST_STAGE:
        outcome = evaluate_all(
            stage, cell, directory, cache, lambda coll, cands, depth=None: (cands, {"pairs": 0}), True
        )
    else:
        seed_everything(cell.seed)
        built = stage.build(cell)
        accelerator = make_accelerator(environment.resolve_precision(cell.mixed_precision or "no"))
        device = accelerator.device
        environment.start_gpu_meter(device)
        if system is Role.UNTRAINED:
            record = _untrained_record(cell.method, built.backbone)
            _maybe_compile(cell, built.model)
            built.model.to(device)
        else:
            settings = stage.Train(**cell.train)
            stage.configure(built, "train", settings)
            token_ids = None
            method = methods.get_method(cell.method)
            if method.token_sources:
                train_coll, train_cands = _train_candidates(cell, cache)
                _, chosen = split_queries(train_coll, cell.seed, settings.max_queries, settings.dev_queries)
                token_ids = stage.token_rows(built, method.token_sources, train_coll, train_cands, chosen)
            extra = {"token_ids": token_ids} if token_ids is not None else {}
            record = methods.apply_towers(
                built.model, stage.tuned(built), cell.method, budget_pct=_budget(cell), **extra, **cell.options
            )
            stats = fit(stage, cell, built, settings, directory, cache, accelerator)
            if not accelerator.is_main_process:
                return None
        score = scorer(stage, built, cell, device, accelerator.autocast)
        if system.trains:
            validation = evaluate_validation(stage, cell, directory, cache, score, stage.needs_candidates)
        if cell.scoring == "validation":  # the search phase: validation data alone
            outcome = {"metrics": {}, "eval": {}}
        else:
            outcome = evaluate_all(stage, cell, directory, cache, score, stage.needs_candidates)
    result = results.for_cell(
        cell,
        results.Status.COLLAPSED if stats.get("collapsed") else results.Status.DONE,
        metrics=outcome["metrics"],
        eval={**validation["eval"], **outcome["eval"]},
        validation=validation["metrics"],
        holdout=holdout_of(cell),
        **({k: getattr(record, k) for k in ("knobs", "trainable", "backbone", "pct", "head")} if record else {}),
        train=stats,
        times={
            "total_s": time.perf_counter() - started,
            "train_s": stats.get("train_s", 0.0),
            "finished_at": time.time(),
        },
        peak_memory_mb=environment.peak_memory_mb(device),
        peak_gpu_memory_mb=environment.peak_gpu_memory_mb(device),
        device=environment.device_name(device),
        processes=int(os.environ.get("WORLD_SIZE", "1")),
        versions=environment.versions(),
        git_commit=environment.git_commit(),
        dataset_fingerprints=_fingerprints(
            ([] if cell.scoring == "validation" else cell.datasets["eval"])
            + [r for r in (cell.datasets.get("train"), cell.datasets.get("validation")) if r and system.trains]
        ),
        precision=environment.resolve_precision(cell.mixed_precision) if cell.mixed_precision else None,
        extra={"command": os.environ["BENCH_COMMAND"]} if os.environ.get("BENCH_COMMAND") else {},
    )
    results.write(directory, result)
    return result
