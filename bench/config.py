"""Suites: YAML files validated by typed models, ``extends`` merged deeply, command-line overrides on top,
then expanded into cells. One resolver serves ``bench run``, ``bench status`` and ``bench report``.

Merge order of a cell's settings (later wins): the stage's defaults < the suite's ``train:``/``eval:``/
``first_stage:`` < the suite's ``<stage>:`` section < command-line flags. Mappings merge key by key,
except ``lr`` maps, which replace each other whole. A suite-level key is used by the stages that
declare it and ignored by the others; a key no stage declares is an error.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError, field_validator

from . import systems
from .errors import BenchError
from .settings import (
    DatasetSpec,
    FirstStageSettings,
    PositiveFloat,
    PositiveInt,
    Precision,
    Settings,
    StrictBool,
    StrictInt,
)
from .stages import all_stages, get_stage
from .stages import names as stage_names
from .suite_files import DEVICES, apply_profile, deep_merge, list_suites, read_suite

SUITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _closest(key: str, valid) -> str:
    match = difflib.get_close_matches(str(key), sorted(valid), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else f" (valid: {', '.join(sorted(valid))})"


def _csv(value) -> list:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def _checked(values, what: str, check) -> list:
    """``values`` (when a list: each passes ``check``, none twice); anything else is left to pydantic's type error."""
    if isinstance(values, list):
        for value in values:
            check(value)
        _unique(values, what)
    return values


def _unique(values: list, what: str) -> list:
    seen = set()
    for value in values:
        if str(value) in seen:
            raise ValueError(f"{what} {value!r} is listed twice")
        seen.add(str(value))
    return values


MAX_SEED = 2**32 - 1  # numpy's RandomState takes 0 .. 2**32 - 1 (random and torch take more)


def _seed_range(values: list) -> list:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= MAX_SEED:
            raise ValueError(f"seed {value} is outside 0 .. {MAX_SEED} (what numpy's seeding accepts)")
    return values


class SuiteModel(Settings):
    """The top-level keys of a suite (stage sections and stage-owned sections are checked beside it)."""

    name: str
    note: str | None = None  # shown under the suite's leaderboards (bench run, bench report, the site)
    stage: list[str] = ["rerank"]
    model: str | None = None
    methods: Literal["all"] | list[str] = "all"
    budgets: list[str] = ["native"]
    seeds: list[StrictInt] = [13]
    datasets: list[DatasetSpec]
    first_stage: dict[str, Any] = {}
    mixed_precision: Precision = "no"
    compile: StrictBool = False
    train: dict[str, Any] = {}
    eval: dict[str, Any] = {}
    # the search (bench/search.py): train setting -> values, or -> {method or default: values}
    search: dict[str, Any] = {}
    search_seeds: list[StrictInt] | None = None  # default: the first seed
    search_train: dict[str, Any] = {}  # train settings of the search cells alone (a cheaper search)
    # a winner at an edge of a searched setting's values: the next value beyond it (the same ratio) is run on
    # every search seed, up to this many a side ({lr: 2}); a winner still at the edge then is flagged
    search_extend: dict[str, PositiveInt] = {}
    # budget curves: {lr: 0.5} searches each other budget on the suite's values for the setting rescaled so
    # their median is the method's winner at the neighbouring budget toward 0.5 (which runs first)
    search_centre: dict[str, PositiveFloat] = {}
    # seeds beyond `seeds` for some methods ({full: [7, 21]}): final seeds at the selected configuration (the
    # reference's seed variance is in every claim-1 comparison: more of its seeds pay; docs/statistics.md)
    extra_seeds: dict[str, list[StrictInt]] = {}
    # claim 2 of a board (IAA-L at least Adapter): the non-inferiority margin, declared before the run
    non_inferiority_margin: PositiveFloat | None = None
    # a method's named options (knobs) away from its authors' defaults: {qpeft-r: {mlp: residual}}
    options: dict[str, dict[str, Any]] = {}

    @field_validator("options")
    @classmethod
    def _options(cls, value):
        import methods

        for name, knobs in value.items():
            systems.role(name)
            if name not in methods.names():
                raise ValueError(f"options.{name}: a baseline has no options")
            known = {k.name: k for k in methods.get_method(name).knobs}
            for key, setting in knobs.items():
                if key not in known:
                    raise ValueError(f"options.{name}.{key}: not an option of {name}{_closest(key, known)}")
                kind = known[key].kind
                fits = type(setting) is kind or (kind is float and type(setting) is int)  # bool is no number
                if not fits:
                    raise ValueError(f"options.{name}.{key}: give a {kind.__name__} (got {setting!r})")
        return value

    @field_validator("search")
    @classmethod
    def _search(cls, value):
        for key, values in value.items():
            per_method = values if isinstance(values, dict) else {"default": values}
            for name, choices in per_method.items():
                if name != "default":
                    systems.role(name)
                if not isinstance(choices, list) or not choices:
                    raise ValueError(f"search.{key}: give a list of values to try (got {choices!r})")
                _unique(choices, f"search.{key} value")
        return value

    @field_validator("extra_seeds")
    @classmethod
    def _extra_seeds(cls, value, info):
        for name, seeds in value.items():
            if not systems.role(name).trains:
                raise ValueError(f"extra_seeds.{name}: {name} trains nothing, so it has no seeds")
            _unique(_seed_range(seeds), f"extra_seeds.{name} seed")
            repeated = sorted(set(seeds) & set(info.data.get("seeds") or []))
            if repeated:
                raise ValueError(f"extra_seeds.{name}: seed {repeated[0]} is already one of the grid's seeds")
        return value

    @field_validator("search_seeds", mode="before")
    @classmethod
    def _search_seeds(cls, value):
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        return _unique(value, "search seed") if isinstance(value, list) else value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SUITE_NAME.match(value):
            raise ValueError(
                f"{value!r} must be a plain folder name (letters, digits, '.', '_', '-'): "
                "it names the run store's folder"
            )
        return value

    @field_validator("stage", mode="before")
    @classmethod
    def _stages(cls, value):
        value = _csv(value)
        for stage in value if isinstance(value, list) else []:
            get_stage(stage)
        return _unique(value, "stage") if isinstance(value, list) else value

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, value):
        value = _csv(value)
        return "all" if value == ["all"] else _checked(value, "method", systems.role)

    @field_validator("budgets", mode="before")
    @classmethod
    def _budgets(cls, value):
        import methods

        value = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else _csv(value)
        return _checked([str(v) for v in value] if isinstance(value, list) else value, "budget", methods.parse_budget)

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value):
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        return _unique(_seed_range(value), "seed") if isinstance(value, list) else value

    @field_validator("datasets", mode="before")
    @classmethod
    def _datasets(cls, value):
        return [dataset_entry(v) if isinstance(v, str) else v for v in value] if isinstance(value, list) else value


class Suite(BaseModel):
    """A validated suite: the top-level model, the stage sections, where it came from."""

    model_config = {"frozen": True, "arbitrary_types_allowed": True}
    top: SuiteModel
    sections: dict[str, dict]  # stage name -> its section (model, train, eval, first_stage, its own key)
    owned: dict[str, dict]  # stage-owned section key (encoder, prompt) -> values
    where: str

    @property
    def name(self) -> str:
        return self.top.name


def dataset_entry(text: str) -> dict:
    """``scifact`` -> scifact/train + scifact/test; ``TRAIN+EVAL1+EVAL2`` explicit."""
    parts = text.split("+")
    if len(parts) > 1:
        return {"train": parts[0], "eval": parts[1:]}
    return {"train": f"{text}/train", "eval": [f"{text}/test"]}


def _describe(error: ValidationError, where: str, prefix: str = "", valid=()) -> BenchError:
    first = error.errors()[0]
    path = ".".join(str(p) for p in (prefix,) + tuple(first["loc"]) if str(p))
    if first["type"] == "extra_forbidden":
        key = str(first["loc"][-1])
        return BenchError(f"suite {where}: unknown key {path!r}{_closest(key, valid)}")
    message = first["msg"].removeprefix("Value error, ")
    shown = first.get("input")
    got = f" (got {shown!r})" if shown is not None and not isinstance(shown, (dict, list)) else ""
    return BenchError(f"suite {where}: {path}: {message}{got}")


def parse_suite(raw: dict, where: str) -> Suite:
    stages = {s.name: s for s in all_stages()}
    owned_keys = {s.section_key for s in stages.values() if s.section_key}
    top_keys = set(SuiteModel.model_fields)
    for key in raw:
        if key not in top_keys | set(stages) | owned_keys:
            raise BenchError(f"suite {where}: unknown key {key!r}{_closest(key, top_keys | set(stages) | owned_keys)}")
    try:
        top = SuiteModel(**{k: v for k, v in raw.items() if k in top_keys})
    except ValidationError as exc:
        raise _describe(exc, where, valid=top_keys | set(stages) | owned_keys) from None
    except BenchError as exc:  # an unknown stage or method inside a validator
        raise BenchError(f"suite {where}: {exc}") from None
    train_keys = set().union(*(s.Train.keys() for s in stages.values()))
    eval_keys = set().union(*(s.Eval.keys() for s in stages.values()))
    _check_keys(top.train, train_keys, where, "train")
    _check_keys(top.eval, eval_keys, where, "eval")
    _check_keys(top.first_stage, FirstStageSettings.keys(), where, "first_stage")
    evals = {ref for d in top.datasets for ref in d.eval}
    for ref in top.first_stage.get("by_dataset") or {}:
        if ref not in evals:
            raise BenchError(
                f"suite {where}: first_stage.by_dataset.{ref}: not an eval dataset of the suite {sorted(evals)}"
            )
    _check_keys(top.search, train_keys, where, "search")
    _check_keys(top.search_train, train_keys, where, "search_train")
    if top.search:
        _check_search(top, where)
    for key in top.search_extend:
        if key not in top.search:
            raise BenchError(
                f"suite {where}: search_extend.{key}: {key} is not searched (search: {sorted(top.search)})"
            )
    for key, anchor in top.search_centre.items():
        if key not in top.search:
            raise BenchError(
                f"suite {where}: search_centre.{key}: {key} is not searched (search: {sorted(top.search)})"
            )
        numbers = [methods_pct(b) for b in top.budgets]
        if anchor not in numbers:
            raise BenchError(
                f"suite {where}: search_centre.{key}: budget {anchor:g} is not one of the suite's budgets {top.budgets}"
                " (the other budgets centre their search on its winner: include it in --budgets)"
            )
    owned = {}
    for key in owned_keys & set(raw):
        owner = next(s for s in stages.values() if s.section_key == key)
        owned[key] = _section_values(raw[key], owner.Section, where, key)
    sections = {}
    for name in set(stages) & set(raw):
        sections[name] = _stage_section(raw[name] or {}, stages[name], where)
    return Suite(top=top, sections=sections, owned=owned, where=where)


def methods_pct(budget: str) -> float | None:
    """The percentage of a budget ("0.5", "paper:0.5"), None for native."""
    import methods

    return methods.parse_budget(budget)[1]


def _check_search(top: SuiteModel, where: str) -> None:
    """A search needs validation data for every dataset, and search seeds among the grid's seeds."""
    for dataset in top.datasets:
        if dataset.validation is None and dataset.holdout is None:
            raise BenchError(
                f"suite {where}: search needs validation data: give the datasets entry for {dataset.train} "
                "validation: <split> or holdout: <fraction of the training queries> (never a test split)"
            )
    for seed in top.search_seeds or []:
        if seed not in top.seeds:
            raise BenchError(f"suite {where}: search seed {seed} is not one of the grid's seeds {top.seeds}")


def _check_keys(values: dict, valid: set, where: str, prefix: str) -> None:
    for key in values:
        if key not in valid:
            raise BenchError(f"suite {where}: unknown key '{prefix}.{key}'{_closest(key, valid)}")


def _section_values(values, model: type[Settings], where: str, prefix: str) -> dict:
    if not isinstance(values, dict):
        raise BenchError(f"suite {where}: {prefix} must be a mapping")
    _check_keys(values, model.keys(), where, prefix)
    return values


def _stage_section(section, stage, where: str) -> dict:
    if not isinstance(section, dict):
        raise BenchError(f"suite {where}: section {stage.name} must be a mapping")
    valid = {"model", "train", "eval", "first_stage"} | ({stage.section_key} if stage.section_key else set())
    _check_keys(section, valid, where, stage.name)
    for key, model in (("train", stage.Train), ("eval", stage.Eval), ("first_stage", FirstStageSettings)):
        _section_values(section.get(key, {}), model, where, f"{stage.name}.{key}")
    if stage.section_key and stage.section_key in section:
        _section_values(section[stage.section_key], stage.Section, where, f"{stage.name}.{stage.section_key}")
    return section


def load_suite(name: str, device: str | None = "cpu") -> Suite:
    raw, where = read_suite(name)
    return parse_suite(apply_profile(raw, device or "cpu", where), where)


# ---------------------------------------------------------------- command-line overrides


class Overrides(BaseModel):
    """Grid flags shared by ``bench run``, ``bench status`` and ``bench report``; each wins over the suite."""

    model_config = {"frozen": True}
    suite: dict = {}  # top-level keys set before validation (methods, budgets, seeds, datasets, stage, ...)
    model: str | None = None
    train: dict = {}
    eval: dict = {}
    first_stage: dict = {}
    owned: dict = {}


def overrides_from(args) -> Overrides:
    get = lambda name: getattr(args, name, None)  # noqa: E731
    top, train, evaluation, first, owned = {}, {}, {}, {}, {}
    for flag, key in (("methods", "methods"), ("budgets", "budgets"), ("seeds", "seeds"), ("stage", "stage")):
        if get(flag) is not None:
            top[key] = _csv(get(flag))
    if get("seeds") is not None:
        try:
            top["seeds"] = [int(s) for s in _csv(get("seeds"))]
        except ValueError:
            raise BenchError(f"--seeds {get('seeds')!r}: give comma-separated integers") from None
        top["extra_seeds"] = {}  # --seeds names every seed the grid runs
    if get("datasets") is not None:
        top["datasets"] = [dataset_entry(d) for d in _csv(get("datasets"))]
    if get("precision") is not None:
        top["mixed_precision"] = get("precision")
    if get("compile"):
        top["compile"] = True
    if get("first_stage") is not None:
        first["backend"] = get("first_stage")
    for flag, key in (("epochs", "epochs"), ("max_steps", "steps")):
        if get(flag) is not None:
            train[key] = get(flag)
    for flag, key in (("max_queries", "max_queries"), ("batch_size", "batch_size"), ("depth", "depth")):
        if get(flag) is not None:
            evaluation[key] = get(flag)
    if get("metrics") is not None:
        evaluation["metrics"] = _csv(get("metrics"))
    if get("separate_towers"):
        owned["encoder"] = {"separate_towers": True}
    if get("search"):
        top["search"] = search_flags(get("search"))
    return Overrides(suite=top, model=get("model"), train=train, eval=evaluation, first_stage=first, owned=owned)


def search_flags(flags: list[str]) -> dict:
    """``--search lr=1e-4,1e-3`` (repeatable) as a suite's ``search:`` (every method tries those values)."""
    out = {}
    for flag in flags:
        key, equals, values = flag.partition("=")
        if not equals or not key.strip() or not values.strip():
            raise BenchError(f"--search {flag!r}: write SETTING=V1,V2 (e.g. --search lr=1e-4,3e-4,1e-3)")
        out[key.strip()] = [yaml.safe_load(v) for v in _csv(values)]
    return out


def default_suite(args) -> str:
    if getattr(args, "suite", None):
        return args.suite
    stages = _csv(getattr(args, "stage", None) or "rerank")
    smoke = get_stage(stages[0]).smoke_suite if len(stages) == 1 else None
    return smoke or "smoke"


def target_device(choice: str | None) -> str:
    """``--device``: cpu, cuda, or auto (cuda where this machine has a GPU)."""
    if choice in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice not in DEVICES:
        raise BenchError(f"--device {choice!r}: choose auto, {', '.join(DEVICES)}")
    return choice


def resolve(args) -> tuple[Suite, Overrides]:
    """The suite named by ``--suite`` (or the stage's smoke suite), its profile for the target device, and
    the grid flags of ``args`` on top."""
    raw, where = read_suite(default_suite(args))
    raw = apply_profile(raw, target_device(getattr(args, "device", None)), where)
    over = overrides_from(args)
    merged = {**raw, **over.suite}
    if "search" in over.suite:  # --search replaces the suite's search of that setting only
        merged["search"] = {**(raw.get("search") or {}), **over.suite["search"]}
    if "seeds" in over.suite and raw.get("search_seeds") is not None:  # --seeds: the search seeds among them
        seeds = raw["search_seeds"] if isinstance(raw["search_seeds"], list) else [raw["search_seeds"]]
        merged["search_seeds"] = [s for s in seeds if s in over.suite["seeds"]] or None
    suite = parse_suite(merged, where)
    return suite, over


__all__ = ["DEVICES", "Overrides", "Suite", "apply_profile", "dataset_entry", "deep_merge", "list_suites"]
__all__ += ["load_suite", "read_suite", "resolve", "stage_names"]
