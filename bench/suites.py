"""Suites (YAML shipped in the package) and their expansion into grid cells."""
from __future__ import annotations

import copy
import hashlib
import json
from importlib import resources
from pathlib import Path

import yaml

from . import environment
from .errors import BenchError

FIRST_STAGE = "bm25"
DEFAULT_TRAIN = {"steps": None, "epochs": 1, "batch_queries": 4, "group_size": 4, "max_length": 192,
                 "max_queries": None, "loss": "softmax", "warmup_ratio": 0.1, "weight_decay": 0.01,
                 "grad_clip": 1.0, "head_lr": 1e-3, "lr": {"default": 1e-3, "full": 3e-5}}
DEFAULT_EVAL = {"depth": 100, "max_queries": None, "batch_size": 64, "max_length": 256}
ZERO_SHOT = "none"  # dense stage: the backbone evaluated as it is
LM_ZERO_SHOT = "zero-shot"  # qlm stage: the causal LM's query likelihood, untrained
STAGE_ZERO_SHOT = {"dense": ZERO_SHOT, "qlm": LM_ZERO_SHOT}
STAGES = ("rerank", "dense", "qlm")
STAGE_FAMILY = {"rerank": "encoder", "dense": "encoder", "qlm": "causal-lm"}  # backbones a stage tunes
DEFAULT_MODEL = {"rerank": "minilm", "dense": "minilm", "qlm": "smollm2"}
STAGE_TRAIN = {"dense": {"temperature": 0.05, "query_max_length": 64},
               "qlm": {"group_size": 2, "margin": 1.0, "passage_max_length": 160, "query_max_length": 32,
                       "lr": {"default": 3.0e-3, "lora": 5.0e-4, "full": 1.0e-5}}}
STAGE_EVAL = {"dense": {"depth": 1000, "query_max_length": 64, "search": "torch"},
              "qlm": {"batch_size": 16, "passage_max_length": 160, "query_max_length": 32}}
DEFAULT_ENCODER = {"pooling": "mean", "similarity": "cos", "separate_towers": False}


def list_suites() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("bench").joinpath("suites").iterdir()
                  if p.name.endswith(".yaml"))


def load_suite(name: str) -> dict:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        text, where = path.read_text(), str(path)
    elif name in list_suites():
        text, where = resources.files("bench").joinpath("suites", f"{name}.yaml").read_text(), name
    else:
        raise BenchError(f"unknown suite {name!r}: choose from {', '.join(list_suites())} or give a .yaml path")
    try:
        suite = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BenchError(f"suite {where}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(suite, dict) and suite.get("extends"):  # a variant of another suite: its keys win
        suite = {**load_suite(suite.pop("extends")), **suite}
    if not isinstance(suite, dict) or "datasets" not in suite:
        raise BenchError(f"suite {where}: needs at least 'datasets' (see bench/suites/smoke.yaml)")
    suite["name"] = suite.get("name") or (path.stem if path.exists() else name)
    return suite


def _csv(value):
    return [v.strip() for v in str(value).split(",") if v.strip()]


def apply_overrides(suite: dict, args) -> dict:
    import methods

    suite = copy.deepcopy(suite)
    if getattr(args, "methods", None):
        suite["methods"] = args.methods
    if getattr(args, "budgets", None):
        suite["budgets"] = _csv(args.budgets)
    if getattr(args, "seeds", None):
        try:
            suite["seeds"] = [int(s) for s in _csv(args.seeds)]
        except ValueError:
            raise BenchError(f"--seeds {args.seeds!r}: give comma-separated integers") from None
    if getattr(args, "datasets", None):
        suite["datasets"] = [_dataset_entry(d) for d in _csv(args.datasets)]
    if getattr(args, "first_stage", None):
        suite.setdefault("first_stage", {})["backend"] = args.first_stage
    if getattr(args, "model", None):
        suite["model"] = args.model
        for stage in STAGES:  # a stage section's own model gives way too
            if isinstance(suite.get(stage), dict):
                suite[stage].pop("model", None)
    if getattr(args, "stage", None):
        suite["stage"] = _csv(args.stage)
    if getattr(args, "separate_towers", False):
        suite.setdefault("encoder", {})["separate_towers"] = True
    if getattr(args, "precision", None):
        suite["mixed_precision"] = args.precision
    if getattr(args, "compile", False):
        suite["compile"] = True
    if getattr(args, "epochs", None):
        suite.setdefault("train", {})["epochs"] = args.epochs
    if getattr(args, "max_steps", None):
        suite.setdefault("train", {})["steps"] = args.max_steps
    for budget in suite.get("budgets", []):
        methods.parse_budget(budget)  # fail early on a malformed budget
    return suite


def _dataset_entry(text: str) -> dict:
    """``scifact`` -> scifact/train + scifact/test; ``TRAIN+EVAL1+EVAL2`` explicit."""
    parts = text.split("+")
    if len(parts) > 1:
        return {"train": parts[0], "eval": parts[1:]}
    return {"train": f"{text}/train", "eval": [f"{text}/test"]}


def method_names(spec) -> list[str]:
    import methods

    known = [FIRST_STAGE, ZERO_SHOT, LM_ZERO_SHOT] + methods.names()
    chosen = known if spec in (None, "all") else (_csv(spec) if isinstance(spec, str) else list(spec))
    for name in chosen:
        if name not in known:
            raise BenchError(f"unknown method {name!r}: choose from all, {', '.join(known)}")
    return chosen


def stages_of(suite: dict) -> list[str]:
    value = suite.get("stage", "rerank")
    stages = _csv(value) if isinstance(value, str) else list(value)
    for stage in stages:
        if stage not in STAGES:
            raise BenchError(f"unknown stage {stage!r}: choose from {', '.join(STAGES)}")
    return stages


def _stage_settings(suite: dict, stage: str) -> tuple[dict, dict, dict]:
    """(train, eval, first stage) for one stage: defaults < the suite's < the suite's ``<stage>:`` section."""
    section = suite.get(stage) or {}
    train = {**DEFAULT_TRAIN, **STAGE_TRAIN.get(stage, {}), **suite.get("train", {}), **section.get("train", {})}
    evaluation = {**DEFAULT_EVAL, **STAGE_EVAL.get(stage, {}), **suite.get("eval", {}), **section.get("eval", {})}
    first = {"backend": "bm25s", "depth": evaluation["depth"], **suite.get("first_stage", {}),
             **section.get("first_stage", {})}
    return train, evaluation, first


def cell_id(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def expand(suite: dict) -> list[dict]:
    """Grid cells (resolved configs) in run order: per stage and dataset, BM25's cell first."""
    chosen = method_names(suite.get("methods", "all"))
    stages = stages_of(suite)
    for stage, name in STAGE_ZERO_SHOT.items():
        if name in chosen and stage not in stages and suite.get("methods") not in (None, "all"):
            raise BenchError(f"method {name!r} is the {stage} stage's zero-shot cell; add --stage {stage}")
    precision = environment.resolve_precision(suite.get("mixed_precision", "no"))
    cells = []
    for stage in stages:
        train, evaluation, first = _stage_settings(suite, stage)
        for dataset in suite["datasets"]:
            if not isinstance(dataset, dict) or "eval" not in dataset:
                raise BenchError(f"suite {suite['name']}: each dataset needs 'eval' (and 'train'): got {dataset!r}")
            evals = dataset["eval"] if isinstance(dataset["eval"], list) else [dataset["eval"]]
            base = {"suite": suite["name"], "stage": stage, "first_stage": first,
                    "datasets": {"train": dataset.get("train"), "eval": evals}, "eval": evaluation}
            cells.append({**base, "method": FIRST_STAGE, "budget": "native", "seed": 0})
            cells.extend(_method_cells(suite, stage, base, chosen, train, precision))
    for cell in cells:
        cell["cell_id"] = cell_id(cell)
    return cells


def _method_cells(suite: dict, stage: str, base: dict, chosen: list[str], train: dict, precision: str):
    import methods

    section = suite.get(stage) or {}
    model = section.get("model") or suite.get("model") or DEFAULT_MODEL[stage]
    encoder = {**DEFAULT_ENCODER, **suite.get("encoder", {}), **section.get("encoder", {})}
    extra = {"encoder": encoder} if stage == "dense" else {}
    if suite.get("compile"):  # only when asked: cells without it keep their ids
        extra["compile"] = True
    if stage == "qlm":
        from .qlm import DEFAULT_TEMPLATE

        extra["prompt"] = {"template": DEFAULT_TEMPLATE, **suite.get("prompt", {}), **section.get("prompt", {})}
    zero_shot = STAGE_ZERO_SHOT.get(stage)
    for name in chosen:
        if name == FIRST_STAGE or (name in STAGE_ZERO_SHOT.values() and name != zero_shot):
            continue
        if name != zero_shot and STAGE_FAMILY[stage] not in methods.get_method(name).families:
            continue  # e.g. adapter has no place in the qlm stage, soft-prompt none in rerank
        if name == zero_shot:
            yield {**base, "method": name, "budget": "native", "seed": 0, "model": model,
                   "mixed_precision": precision, **extra}
            continue
        budgets = ["native"] if methods.get_method(name).fixed else suite.get("budgets", ["native"])
        for budget in budgets:
            for seed in suite.get("seeds", [13]):
                lr = train["lr"] if not isinstance(train["lr"], dict) else \
                    train["lr"].get(name, train["lr"].get("default", 1e-3))
                yield {**base, "method": name, "budget": str(budget), "seed": int(seed), "model": model,
                       "mixed_precision": precision, "train": {**train, "lr": float(lr)}, **extra}
