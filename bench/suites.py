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
    if not isinstance(suite, dict) or "datasets" not in suite:
        raise BenchError(f"suite {where}: needs at least 'datasets' (see bench/suites/smoke.yaml)")
    suite.setdefault("name", path.stem if path.exists() else name)
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
    if getattr(args, "precision", None):
        suite["mixed_precision"] = args.precision
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

    known = methods.names() + [FIRST_STAGE]
    chosen = known if spec in (None, "all") else (_csv(spec) if isinstance(spec, str) else list(spec))
    for name in chosen:
        if name not in known:
            raise BenchError(f"unknown method {name!r}: choose from all, {', '.join(known)}")
    return chosen


def cell_id(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def expand(suite: dict) -> list[dict]:
    """Grid cells (resolved configs) in run order; BM25's cell first for each dataset."""
    import methods

    chosen = method_names(suite.get("methods", "all"))
    train = {**DEFAULT_TRAIN, **suite.get("train", {})}
    evaluation = {**DEFAULT_EVAL, **suite.get("eval", {})}
    first = {"backend": "bm25s", "depth": evaluation["depth"], **suite.get("first_stage", {})}
    precision = environment.resolve_precision(suite.get("mixed_precision", "no"))
    cells = []
    for dataset in suite["datasets"]:
        if not isinstance(dataset, dict) or "eval" not in dataset:
            raise BenchError(f"suite {suite['name']}: each dataset needs 'eval' (and 'train'): got {dataset!r}")
        evals = dataset["eval"] if isinstance(dataset["eval"], list) else [dataset["eval"]]
        base = {"suite": suite["name"], "stage": suite.get("stage", "rerank"), "first_stage": first,
                "datasets": {"train": dataset.get("train"), "eval": evals}, "eval": evaluation}
        cells.append({**base, "method": FIRST_STAGE, "budget": "native", "seed": 0})
        for name in chosen:
            if name == FIRST_STAGE:
                continue
            budgets = ["native"] if methods.get_method(name).fixed else suite.get("budgets", ["native"])
            for budget in budgets:
                for seed in suite.get("seeds", [13]):
                    lr = train["lr"] if not isinstance(train["lr"], dict) else \
                        train["lr"].get(name, train["lr"].get("default", 1e-3))
                    cells.append({**base, "method": name, "budget": str(budget), "seed": int(seed),
                                  "model": suite.get("model", "minilm"),
                                  "mixed_precision": precision,
                                  "train": {**train, "lr": float(lr)}})
    for cell in cells:
        cell["cell_id"] = cell_id(cell)
    return cells
