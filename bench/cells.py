"""Grid cells: the frozen ``Cell`` (one training and evaluation run) and its identity.

A cell's id hashes only its identity: the core fields (stage, method, budget, seed, datasets, model,
precision, learning rate, first-stage backend) and every other setting whose value differs from that
setting's declared ``id_default``. A new setting left at its id_default changes no id; a changed default
changes only the ids of the cells it affects (after luigi's significant parameters). The suite only
names the run store's folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

from .settings import FirstStageSettings
from .stages import get_stage

ID_VERSION = 2


def _diff(values: dict, defaults: dict, always: tuple = ()) -> dict:
    return {k: v for k, v in values.items() if k in always or k not in defaults or v != defaults[k]}


@dataclass(frozen=True)
class Cell:
    suite: str
    stage: str
    method: str
    budget: str
    seed: int
    datasets: dict  # {"train": ref | None, "eval": [ref, ...]}
    first_stage: dict
    eval: dict
    train: dict | None = None  # None for systems that do not train
    model: str | None = None  # None for the first stage's own cell
    mixed_precision: str | None = None  # as the suite says ("auto" is resolved where the cell runs)
    extra: dict = field(default_factory=dict)  # the stage's own section (encoder, prompt)
    compile: bool = False
    revision: int = 1  # the method's revision (methods.Method.revision) when the cell was expanded
    options: dict = field(default_factory=dict)  # the method's options away from its defaults (suite options:)
    # not identity: what this run of the cell scores ("validation": the search phase, its validation data
    # alone; "all": validation and eval data) and, for a selected configuration, what it won against
    scoring: str = "all"
    selection: dict = field(default_factory=dict)

    def identity(self) -> dict:
        stage = get_stage(self.stage)
        ident = {
            "stage": self.stage,
            "method": self.method,
            "budget": self.budget,
            "seed": self.seed,
            "datasets": self.datasets,
            "model": self.model,
            "mixed_precision": self.mixed_precision,
            "first_stage": _diff(self.first_stage, FirstStageSettings.id_defaults(), ("backend",)),
            "eval": _diff(self.eval, stage.Eval.id_defaults()),
        }
        if self.train is not None:
            ident["train"] = _diff(self.train, stage.Train.id_defaults(), ("lr",))
        if self.extra and stage.Section is not None:
            section = _diff(self.extra.get(stage.section_key, {}), stage.Section.id_defaults())
            if section:
                ident[stage.section_key] = section
        if self.compile:
            ident["compile"] = True
        if self.revision != 1:
            ident["revision"] = self.revision
        if self.options:
            ident["options"] = self.options
        return {k: v for k, v in ident.items() if v != {} or k in ("eval", "first_stage")}

    @property
    def id(self) -> str:
        text = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        return f"{self.stage} {self.method} {self.budget} s{self.seed}"

    def to_json(self) -> dict:
        return {**asdict(self), "cell_id": self.id, "id_version": ID_VERSION}

    @classmethod
    def from_json(cls, data: dict) -> Cell:
        if data.get("id_version") != ID_VERSION:
            return cls.from_v1(data)
        fields = {k: v for k, v in data.items() if k not in ("cell_id", "id_version")}
        return cls(**fields)

    @classmethod
    def from_v1(cls, config: dict) -> Cell:
        """The cell a config.json written before id version 2 describes: keys its stage lacks dropped
        (v1 leaked other stages' keys into a cell), missing ones at their id_default."""
        stage = get_stage(config.get("stage", "rerank"))

        def known(values, model):
            defaults = model.id_defaults()
            return {**defaults, **{k: v for k, v in (values or {}).items() if k in defaults}}

        train = known(config["train"], stage.Train) if config.get("train") is not None else None
        extra = {}
        if stage.Section is not None and stage.section_key in config:
            extra[stage.section_key] = known(config[stage.section_key], stage.Section)
        elif stage.Section is not None and config.get("model"):
            extra[stage.section_key] = stage.Section.id_defaults()
        return cls(
            suite=config["suite"],
            stage=stage.name,
            method=config["method"],
            budget=str(config["budget"]),
            seed=int(config["seed"]),
            datasets=config["datasets"],
            first_stage=known(config.get("first_stage"), FirstStageSettings),
            eval=known(config.get("eval"), stage.Eval),
            train=train,
            model=config.get("model"),
            mixed_precision=config.get("mixed_precision"),
            extra=extra,
            compile=bool(config.get("compile")),
        )

    def replace(self, **changes) -> Cell:
        return replace(self, **changes)


# ---------------------------------------------------------------- expansion


def _settings(model, values: dict, where: str, what: str):
    from pydantic import ValidationError

    from .config import _describe
    from .errors import BenchError

    try:
        return model(**values)
    except ValidationError as exc:
        raise _describe(exc, where, prefix=what) from None
    except BenchError as exc:  # a check of the settings' own (a qlm template)
        raise BenchError(f"suite {where}: {what}: {exc}") from None


def stage_settings(suite, stage, over) -> tuple:
    """(train, eval, first stage, model, extra) of ``stage`` in ``suite`` with the overrides ``over``."""
    from .config import deep_merge

    section, top = suite.sections.get(stage.name, {}), suite.top
    train_raw = deep_merge({k: v for k, v in top.train.items() if k in stage.Train.keys()}, section.get("train", {}))
    train = _settings(stage.Train, deep_merge(train_raw, over.train), suite.where, f"{stage.name}.train")
    eval_raw = deep_merge({k: v for k, v in top.eval.items() if k in stage.Eval.keys()}, section.get("eval", {}))
    evaluation = _settings(stage.Eval, deep_merge(eval_raw, over.eval), suite.where, f"{stage.name}.eval")
    first = _settings(
        FirstStageSettings,
        deep_merge(deep_merge(top.first_stage, section.get("first_stage", {})), over.first_stage),
        suite.where,
        f"{stage.name}.first_stage",
    )
    if first.depth is None:
        first = first.model_copy(update={"depth": evaluation.depth})
    model = over.model or section.get("model") or top.model or stage.default_model
    extra = {}
    if stage.Section is not None:
        key = stage.section_key
        values = deep_merge(deep_merge(suite.owned.get(key, {}), section.get(key, {})), over.owned.get(key, {}))
        extra[key] = _settings(stage.Section, values, suite.where, f"{stage.name}.{key}").model_dump()
    return train, evaluation, first, model, extra


def expand(suite, over=None) -> list[Cell]:
    """Grid cells in run order: per stage and dataset, the first stage's cell first, then every chosen
    system that fits the stage, each budget (one for one-size methods) and seed."""
    import methods

    from . import systems
    from .config import Overrides
    from .errors import BenchError

    over = over or Overrides()
    top = suite.top
    stages = [get_stage(name) for name in top.stage]
    chosen = systems.names() if top.methods == "all" else list(top.methods)
    if top.methods != "all":
        for name in chosen:
            if not any(systems.fits(name, stage) for stage in stages):
                homes = [s.name for s in _all_stages() if systems.fits(name, s)]
                raise BenchError(
                    f"{name!r} has no place in stage {', '.join(top.stage)}"
                    + (f": add --stage {homes[0]}" if homes else "")
                )
    cells = []
    for stage in stages:
        train, evaluation, first, model, extra = stage_settings(suite, stage, over)
        for dataset in top.datasets:
            base = dict(
                suite=top.name,
                stage=stage.name,
                first_stage=first.model_dump(),
                datasets={"train": dataset.train, "eval": list(dataset.eval)},
                eval=evaluation.model_dump(),
            )
            cells.append(Cell(**base, method=systems.first_stage_name(), budget="native", seed=0))
            runs = dict(model=model, mixed_precision=top.mixed_precision, extra=extra, compile=top.compile)
            for name in chosen:
                role = systems.role(name)
                if role is systems.Role.FIRST_STAGE or not systems.fits(name, stage):
                    continue
                if role is systems.Role.UNTRAINED:
                    cells.append(Cell(**base, method=name, budget="native", seed=0, **runs))
                    continue
                budgets = ["native"] if methods.get_method(name).fixed else top.budgets
                for budget in budgets:
                    for seed in [*top.seeds, *top.extra_seeds.get(name, [])]:
                        settings = {**train.model_dump(), "lr": train.lr_for(name)}
                        cells.append(
                            Cell(
                                **{**base, "datasets": dataset.refs()},  # training less a holdout, validation
                                method=name,
                                budget=str(budget),
                                seed=int(seed),
                                train=settings,
                                revision=methods.get_method(name).revision,
                                options=dict(top.options.get(name, {})),
                                **runs,
                            )
                        )
    return cells


def _all_stages():
    from .stages import all_stages

    return all_stages()
