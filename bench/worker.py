"""One grid cell: data -> candidates -> model -> method -> train -> evaluate -> run store."""
from __future__ import annotations

import os
import random
import time
import traceback
from functools import lru_cache
from pathlib import Path

import methods
from methods import BudgetUnreachable

from . import environment, store
from .data import Collection, load_collection
from .dense import BiEncoder, contrastive_batches, contrastive_loss, retrieve
from .errors import BenchError
from .evaluate import STAGE_METRICS, evaluate_run
from .firststage import candidates, write_trec_run
from .rerank import CrossEncoder, group_batches, group_loss, rerank
from .sampling import EpochGroups, RankShard, training_queries
from .suites import FIRST_STAGE, LM_ZERO_SHOT, ZERO_SHOT
from .train import Diverged, make_accelerator, seed_everything, train


@lru_cache(maxsize=8)
def collection(ref: str) -> Collection:
    return load_collection(ref)


def _limit(coll: Collection, max_queries: int | None, seed: int = 0) -> Collection:
    if not max_queries or len(coll.queries) <= max_queries:
        return coll
    chosen = sorted(random.Random(seed).sample(sorted(coll.queries), max_queries))
    return Collection(ref=coll.ref, corpus=coll.corpus, queries={q: coll.queries[q] for q in chosen},
                      qrels={q: coll.qrels[q] for q in chosen}, fingerprint=coll.fingerprint,
                      relevance_level=coll.relevance_level, source=coll.source)


def _candidates(cell: dict, coll: Collection, cache: Path, depth: int) -> dict:
    first = cell["first_stage"]
    settings = {k: v for k, v in first.items() if k not in ("backend", "depth")} or None
    return candidates(coll, first["backend"], depth, cache, settings)


def _safe(ref: str) -> str:
    return ref.replace("/", "__")


def _evaluate_all(cell, out_dir: Path, cache: Path, score_run, needs_candidates: bool = True) -> dict:
    """Evaluate on every eval dataset: metrics, per-query metrics and the TREC run per dataset."""
    metrics, per_query, timing = {}, {}, {}
    for ref in cell["datasets"]["eval"]:
        coll = _limit(collection(ref), cell["eval"].get("max_queries"))
        cands = _candidates(cell, coll, cache, cell["eval"]["depth"]) if needs_candidates else None
        run, timing[ref] = score_run(coll, cands)
        metrics[ref], per_query[ref] = evaluate_run(coll.qrels, run, STAGE_METRICS[cell["stage"]],
                                                    coll.relevance_level)
        write_trec_run(run, out_dir / f"run.{_safe(ref)}.trec", cell["method"])
    store.write_json(out_dir / "per_query.json", per_query)
    return {"metrics": metrics, "eval": timing}


FAULTS_ENV = "BENCH_FAULTS"  # e.g. "lora=nan,bitfit=raise": forced failures for resilience tests


def _forced_fault(cell: dict) -> str | None:
    for item in os.environ.get(FAULTS_ENV, "").split(","):
        method, _, kind = item.partition("=")
        if method.strip() == cell["method"]:
            return kind.strip()
    return None


def is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def execute(cell: dict, out: Path, reraise_user_errors: bool = True) -> tuple[str, str]:
    """Bring one cell to a final state in the store, whatever happens inside: (status, one-line error).
    The same code path for every launcher (in process, worker subprocess, Ray task, SLURM job)."""
    directory = store.cell_dir(out, cell["suite"], cell["cell_id"])
    if not is_main_rank():  # data parallel: the other ranks only train; rank 0 owns the store
        run_cell(cell, out)
        return "done", ""
    store.reset(directory)  # an interrupted or failed attempt left partial files: start clean
    directory.mkdir(parents=True, exist_ok=True)
    status, error, trace = "done", "", None
    with store.Heartbeat(directory):
        try:
            if _forced_fault(cell) == "raise":
                raise RuntimeError(f"fault forced by {FAULTS_ENV}")
            run_cell(cell, out)
        except BenchError as exc:
            if reraise_user_errors:
                raise
            status, error = "failed", str(exc)
        except BudgetUnreachable as exc:  # recorded, never silently run at another budget
            status, error = "not_applicable", str(exc)
        except Diverged as exc:
            status, error, trace = "diverged", str(exc), traceback.format_exc()
        except Exception as exc:  # out of memory included: one broken cell must not stop the grid
            status, error, trace = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:300], traceback.format_exc()
        if status != "done":
            store.write_json(directory / store.RESULT, {
                "status": status, "error": error, "traceback": trace, "cell_id": cell["cell_id"],
                "suite": cell["suite"], "stage": cell["stage"], "method": cell["method"],
                "budget": cell["budget"], "seed": cell["seed"], "config": cell})
    return status, error


def run_cell(cell: dict, out: Path) -> dict | None:
    out_dir = store.cell_dir(out, cell["suite"], cell["cell_id"])
    cache = Path(out) / "_cache"
    if is_main_rank():
        store.write_json(out_dir / store.CONFIG, cell)
    started = time.perf_counter()
    if cell["method"] == FIRST_STAGE:
        result = _evaluate_all(cell, out_dir, cache, lambda coll, cands: (cands, {"pairs": 0}))
        record, device, train_stats = None, "cpu", {}
    else:
        stage_driver = {"dense": _train_and_retrieve, "qlm": _train_and_score_likelihood}.get(
            cell["stage"], _train_and_rerank)
        outcome = stage_driver(cell, out_dir, cache)
        if outcome is None:  # a data-parallel rank other than 0: its part ended with training
            return None
        result, record, device, train_stats = outcome
    result.update({
        "status": "done", "cell_id": cell["cell_id"], "suite": cell["suite"], "stage": cell["stage"],
        "method": cell["method"], "budget": cell["budget"], "seed": cell["seed"],
        "datasets": cell["datasets"], "first_stage": cell["first_stage"],
        "knobs": record.knobs if record else {}, "trainable": record.trainable if record else 0,
        "backbone": record.backbone if record else 0, "pct": record.pct if record else 0.0,
        "head": record.head if record else 0, "model": cell.get("model"),
        "train": train_stats, "times": {"total_s": time.perf_counter() - started,
                                        "train_s": train_stats.get("train_s", 0.0)},
        "peak_memory_mb": environment.peak_memory_mb(device), "device": environment.device_name(device),
        "versions": environment.versions(), "git_commit": environment.git_commit(),
        "processes": int(os.environ.get("WORLD_SIZE", "1")),
        "dataset_fingerprints": {ref: collection(ref).fingerprint for ref in cell["datasets"]["eval"]},
        "config": cell,
    })
    store.write_json(out_dir / store.RESULT, result)
    return result


def _nan_after_first_step(loss):
    calls = []

    def poisoned(model, batch):
        calls.append(1)
        value = loss(model, batch)
        return value * float("nan") if len(calls) > 1 else value
    return poisoned


def _budget(cell: dict):
    """What methods.apply gets: nothing for one-size methods; "native" (the paper's 0.5% knobs) or a
    budget for the others."""
    return None if cell["budget"] == "native" and methods.get_method(cell["method"]).fixed else cell["budget"]


def _maybe_compile(cell: dict, model) -> None:
    if cell.get("compile"):
        model.compile(dynamic=True)  # in place: parameter names, hence saved tensors, stay the same


def _fit(cell: dict, model, batches_for, loss, out_dir: Path, cache: Path, accelerator, head_params=()):
    """The training part every stage shares: groups from the first stage, the one loop, saved tensors."""
    _maybe_compile(cell, model)
    settings = cell["train"]
    train_coll = collection(cell["datasets"]["train"])
    train_cands = _candidates(cell, train_coll, cache, cell["first_stage"]["depth"])
    groups = EpochGroups(train_coll, train_cands, settings["group_size"], cell["seed"], settings.get("max_queries"))
    if not len(groups):
        raise BenchError(f"{cell['datasets']['train']}: no query has a judged relevant document in the corpus; "
                         "training needs at least one")
    steps = settings.get("steps") or max(1, settings.get("epochs", 1) * len(groups) // settings["batch_queries"])
    if accelerator.num_processes > 1:
        if settings["batch_queries"] % accelerator.num_processes:
            raise BenchError(f"batch_queries {settings['batch_queries']} does not split over "
                             f"{accelerator.num_processes} processes; make it a multiple")
        groups = RankShard(groups, accelerator.process_index, accelerator.num_processes)
    if _forced_fault(cell) == "nan":
        loss = _nan_after_first_step(loss)
    stats = train(model, batches_for(groups, train_coll), loss, lr=settings["lr"], steps=steps,
                  accelerator=accelerator, log_path=out_dir / "train_log.jsonl",
                  warmup_ratio=settings["warmup_ratio"], weight_decay=settings["weight_decay"],
                  grad_clip=settings["grad_clip"], desc=f"train {cell['method']}",
                  head_params=list(head_params), head_lr=settings.get("head_lr"))
    stats["groups"] = len(groups)
    model = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        methods.save(model, out_dir / "trainable")
    return model, stats


def _train_and_rerank(cell: dict, out_dir: Path, cache: Path):
    from .models import load_backbone

    seed_everything(cell["seed"])
    tokenizer, backbone = load_backbone(cell["model"], seed=cell["seed"])
    model = CrossEncoder(backbone)
    record = methods.apply(model, cell["method"], budget_pct=_budget(cell))
    accelerator = make_accelerator(cell.get("mixed_precision", "no"))
    settings, evaluation = cell["train"], cell["eval"]
    model, stats = _fit(
        cell, model, lambda groups, coll: group_batches(groups, coll, tokenizer, settings["batch_queries"],
                                                        settings["max_length"]),
        group_loss(settings.get("loss", "softmax")), out_dir, cache, accelerator, model.head.parameters())
    if not accelerator.is_main_process:
        return None

    def score(coll, cands):
        return rerank(model, tokenizer, coll, cands, evaluation["depth"], evaluation["batch_size"],
                      evaluation["max_length"], accelerator.device, desc=f"rerank {cell['method']}",
                      autocast=accelerator.autocast)
    return _evaluate_all(cell, out_dir, cache, score), record, accelerator.device, stats


def _train_and_retrieve(cell: dict, out_dir: Path, cache: Path):
    """Dense stage; ``method: none`` is the zero-shot cell: the backbone evaluated as it is."""
    from .models import load_backbone

    seed_everything(cell["seed"])
    tokenizer, backbone = load_backbone(cell["model"], seed=cell["seed"])
    encoder = cell["encoder"]
    model = BiEncoder(backbone, encoder["pooling"], encoder["similarity"], encoder["separate_towers"])
    accelerator = make_accelerator(cell.get("mixed_precision", "no"))
    settings, evaluation = cell.get("train", {}), cell["eval"]
    if cell["method"] == ZERO_SHOT:
        record, stats = _untrained(ZERO_SHOT, list(model.towers()), backbone), {}
        _maybe_compile(cell, model)
        model.to(accelerator.device)
    else:
        record = methods.apply_towers(model, model.towers(), cell["method"], budget_pct=_budget(cell))
        model, stats = _fit(
            cell, model, lambda groups, coll: contrastive_batches(
                groups, coll, tokenizer, settings["batch_queries"], settings["query_max_length"],
                settings["max_length"]),
            contrastive_loss(settings["temperature"]), out_dir, cache, accelerator)
        if not accelerator.is_main_process:
            return None

    def score(coll, _candidates_unused):
        return retrieve(model, tokenizer, coll, evaluation["depth"], evaluation["batch_size"],
                        evaluation["max_length"], evaluation["query_max_length"], accelerator.device,
                        accelerator.autocast, evaluation.get("search", "torch"), desc=f"dense {cell['method']}")
    return _evaluate_all(cell, out_dir, cache, score, needs_candidates=False), record, accelerator.device, stats


def _untrained(name: str, modules, backbone) -> methods.MethodRecord:
    """The record of a zero-shot cell: nothing trains, the backbone counted as it is."""
    count = sum(p.numel() for module in modules for p in module.parameters())
    return methods.MethodRecord(method=name, knobs={}, trainable=0, backbone=count, pct=0.0, head=0,
                                backbone_name=str(backbone.config._name_or_path or ""))


def _train_and_score_likelihood(cell: dict, out_dir: Path, cache: Path):
    """Query-likelihood stage; ``method: zero-shot`` scores with the untouched causal LM."""
    from .models import load_causal_lm
    from .qlm import QueryLikelihood, hinge_loss, hint_rows, likelihood_batches, rerank as qlm_rerank

    seed_everything(cell["seed"])
    tokenizer, lm = load_causal_lm(cell["model"], seed=cell["seed"])
    settings, evaluation = cell.get("train", {}), cell["eval"]
    model = QueryLikelihood(lm, tokenizer, cell["prompt"]["template"],
                            evaluation["passage_max_length"], evaluation["query_max_length"])
    accelerator = make_accelerator(cell.get("mixed_precision", "no"))
    if cell["method"] == LM_ZERO_SHOT:
        record, stats = _untrained(LM_ZERO_SHOT, [lm], lm), {}
        _maybe_compile(cell, model)
        model.to(accelerator.device)
    else:
        model.passage_max_length, model.query_max_length = settings["passage_max_length"], settings["query_max_length"]
        token_ids = None
        if methods.get_method(cell["method"]).takes_token_ids:
            train_coll = collection(cell["datasets"]["train"])
            train_cands = _candidates(cell, train_coll, cache, cell["first_stage"]["depth"])
            chosen = training_queries(train_coll, random.Random(cell["seed"]), settings.get("max_queries"))
            token_ids = hint_rows(cell["method"], model, train_coll, train_cands, chosen)
        record = methods.apply(model, cell["method"], budget_pct=_budget(cell), token_ids=token_ids)
        model, stats = _fit(cell, model, lambda groups, coll: likelihood_batches(groups, coll, model,
                                                                                 settings["batch_queries"]),
                            hinge_loss(settings["margin"]), out_dir, cache, accelerator)
        if not accelerator.is_main_process:
            return None
        model.passage_max_length, model.query_max_length = evaluation["passage_max_length"], evaluation["query_max_length"]

    def score(coll, cands):
        return qlm_rerank(model, coll, cands, evaluation["depth"], evaluation["batch_size"], accelerator.device,
                          desc=f"qlm {cell['method']}", autocast=accelerator.autocast)
    return _evaluate_all(cell, out_dir, cache, score), record, accelerator.device, stats
