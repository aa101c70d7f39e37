"""Typed settings (pydantic v2, as MTEB's TaskMetadata): strict keys, checked ranges, and for every field
an ``id_default``: the value that leaves a cell's id unchanged (the behaviour before the field existed).
A stage subclasses ``TrainSettings`` / ``EvalSettings`` to add its own keys and defaults."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

SAME = object()  # id_default: the field's own default


def _number(value):
    """YAML 1.1 reads ``1e-3`` as a string: accept numeric strings for float fields, nothing else."""
    if isinstance(value, bool):
        raise ValueError("a number is needed, not a boolean")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    return value


Float = Annotated[float, BeforeValidator(_number)]
PositiveFloat = Annotated[float, BeforeValidator(_number), Field(gt=0)]
PositiveInt = Annotated[StrictInt, Field(gt=0)]
Precision = Literal["no", "bf16", "fp16", "auto"]


def setting(default, *, id_default=SAME, **constraints) -> Any:
    """A field with its ``id_default`` (``SAME``: the default itself)."""
    extra = {"id_default": default if id_default is SAME else id_default}
    return Field(default, json_schema_extra=extra, **constraints)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def id_defaults(cls) -> dict[str, Any]:
        out = {}
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra or {}
            out[name] = extra["id_default"] if "id_default" in extra else field.get_default(call_default_factory=True)
        return out

    @classmethod
    def keys(cls) -> set[str]:
        return set(cls.model_fields)


LrMap = dict[str, PositiveFloat]


class TrainSettings(Settings):
    """What every trained stage reads. ``lr``: one rate, or a map method -> rate with ``default``.

    ``preset``: a named set of these settings a stage ships (``PRESETS``; the qlm stage's ``paper``), under
    the suite's own keys (which win). ``dev_queries``: that many training queries held out (seeded by the
    cell's seed) for a loss after every epoch; training stops after ``patience`` epochs without a lower
    one and keeps the best epoch's weights (``epochs`` is then the most it runs). ``schedule``: linear
    warm-up and decay, or a constant rate; ``grad_clip`` null: no clipping."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    preset: str | None = setting(None)
    steps: PositiveInt | None = setting(None)
    epochs: PositiveInt = setting(1)
    batch_queries: PositiveInt = setting(4)
    group_size: PositiveInt = setting(4)
    max_queries: PositiveInt | None = setting(None)
    dev_queries: StrictInt = setting(0, ge=0)
    patience: PositiveInt = setting(6)
    schedule: Literal["linear", "constant"] = setting("linear")
    warmup_ratio: Float = setting(0.1, ge=0.0, lt=1.0)
    weight_decay: Float = setting(0.01, ge=0.0)
    grad_clip: PositiveFloat | None = setting(1.0)
    lr: PositiveFloat | LrMap = setting({"default": 1e-3, "full": 3e-5})
    # on: a run at chance at the collapse checkpoint stops there (bench/collapse.py; collapsed either way);
    # its id_default is on, so cells run before the rule keep their ids (no trained cell of the boards stops)
    stop_collapsed: StrictBool = setting(True)
    # parallel_dropout: attention through bench/attention.py while training on the CPU (the same math, its
    # dropout masks drawn on every core: another random stream); sdpa: transformers' SDPA, as before
    train_attention: Literal["sdpa", "parallel_dropout"] = setting("sdpa")

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, values):
        name = values.get("preset") if isinstance(values, dict) else None
        if name is None:
            return values
        if name not in cls.PRESETS:
            shipped = ", ".join(sorted(cls.PRESETS)) or "none in this stage"
            raise ValueError(f"preset {name!r} is not one of this stage's presets ({shipped})")
        return {**cls.PRESETS[name], **values}

    @model_validator(mode="after")
    def _early_stopping(self):
        if self.dev_queries and self.steps is not None:
            raise ValueError("dev_queries stops on whole epochs: give epochs (the most it runs), not steps")
        return self

    def lr_for(self, method: str) -> float:
        if isinstance(self.lr, dict):
            return float(self.lr.get(method, self.lr.get("default", 1e-3)))
        return float(self.lr)


class TokenBudgetSettings(TrainSettings):
    """Training settings of a stage whose steps can run in token-budget chunks (``bench.packing``):
    ``token_budget``: padded tokens per forward pass (None: the whole step at once, padded to its longest);
    ``pad_to_multiple_of``: round each chunk's length up (8 for tensor cores). The step and its loss stay
    the same; only how its sequences go through the encoder changes."""

    token_budget: PositiveInt | None = setting(None)
    pad_to_multiple_of: PositiveInt = setting(1)


RANX_METRIC = re.compile(
    r"^(ndcg|ndcg_burges|dcg|dcg_burges|mrr|recall|precision|map|hits|hit_rate|f1|r-precision"
    r"|bpref)(@[1-9][0-9]*)?$"
)


def _metric_names(value):
    if value is None:
        return value
    for name in value:
        if not isinstance(name, str) or not RANX_METRIC.match(name):
            raise ValueError(f"{name!r} is not a ranx metric (e.g. ndcg@10, mrr@10, recall@100, map@100)")
    if len(set(value)) != len(value):
        raise ValueError("a metric is listed twice")
    return value


class EvalSettings(Settings):
    depth: PositiveInt = setting(100)
    max_queries: PositiveInt | None = setting(None)
    batch_size: PositiveInt = setting(64)
    # None: the stage's own metrics
    metrics: Annotated[list[str] | None, AfterValidator(_metric_names)] = setting(None)


class FirstStageOverride(Settings):
    """What an eval dataset's first stage changes (``by_dataset``); a key left out keeps the cell's."""

    backend: str | None = None
    depth: PositiveInt | None = None
    k1: PositiveFloat | None = None
    b: Float | None = Field(None, ge=0.0, le=1.0)


class FirstStageSettings(Settings):
    """``backend``: bm25s, pyserini, irds, official-run or a TREC run file; ``depth``: candidates per query
    (default: the evaluation depth); ``k1``/``b``: BM25 parameters (default: Anserini's BEIR flat 0.9/0.4).
    ``by_dataset``: eval dataset -> the settings its scoring uses instead (TREC DL's official BM25 top-100
    beside SciFact's bm25s top-20 in one cell); the depth there is also the depth reranked."""

    backend: str = setting("bm25s")
    depth: PositiveInt | None = setting(None)
    k1: PositiveFloat | None = setting(None)
    b: Float | None = setting(None, ge=0.0, le=1.0)
    by_dataset: dict[str, FirstStageOverride] | None = setting(None)

    @staticmethod
    def for_dataset(first_stage: dict, ref: str) -> dict:
        """A cell's first-stage settings (a dict) for eval dataset ``ref``: its override applied."""
        override = {k: v for k, v in ((first_stage.get("by_dataset") or {}).get(ref) or {}).items() if v is not None}
        return {**{k: v for k, v in first_stage.items() if k != "by_dataset"}, **override}


class DatasetSpec(Settings):
    """A training split, its evaluation splits, and optionally validation data for the search: an explicit
    split (``validation: nfcorpus/dev``) or a seeded holdout of the training queries (``holdout: 0.2``)."""

    train: str | None = None
    eval: Annotated[list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v), Field(min_length=1)]
    validation: str | None = None
    holdout: Float | None = Field(None, gt=0.0, lt=1.0)
    holdout_seed: StrictInt = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_validation(self):
        if self.validation is not None and self.holdout is not None:
            raise ValueError("give validation (a split) or holdout (a fraction of the training queries), not both")
        if self.holdout is not None and self.train is None:
            raise ValueError("a holdout is drawn from the training queries: name a train split")
        for ref in [self.validation] * (self.validation is not None):
            if ref in self.eval:
                raise ValueError(f"validation {ref!r} is also an eval split: the search would select on the test")
        return self

    def refs(self) -> dict:
        """The cell's datasets: the split training reads (less a holdout), the eval splits, and the
        validation split when there is one (no ``validation`` key otherwise: cell ids stay as before)."""
        from .data import holdout_ref

        out = {"train": self.train, "eval": list(self.eval)}
        if self.holdout is not None:
            out["train"] = holdout_ref(self.train, "fit", self.holdout, self.holdout_seed)
            out["validation"] = holdout_ref(self.train, "holdout", self.holdout, self.holdout_seed)
        elif self.validation is not None:
            out["validation"] = self.validation
        return out


__all__ = [
    "DatasetSpec",
    "EvalSettings",
    "FirstStageSettings",
    "Float",
    "PositiveFloat",
    "PositiveInt",
    "Precision",
    "SAME",
    "Settings",
    "StrictBool",
    "StrictInt",
    "TokenBudgetSettings",
    "TrainSettings",
    "setting",
]
