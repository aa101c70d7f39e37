"""The result schema (``result.json``), versioned: one writer, one loader that upgrades older results
(after MTEB's TaskResult.from_disk), one scanner that every reader (runner, status, report, perf) uses.

Schema history:
- 1 (no ``schema`` key): the first harness; stage absent means rerank.
- 2: ``schema``, ``precision`` (the precision the cell ran at, ``auto`` resolved on its machine),
  ``config`` holds the cell with ``id_version`` 2.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

from .errors import warn
from .files import read_json, write_json

SCHEMA = 2
RESULT = "result.json"


class Status(str, Enum):
    DONE = "done"
    NOT_APPLICABLE = "not_applicable"
    FAILED = "failed"
    DIVERGED = "diverged"
    RUNNING = "running"
    PENDING = "pending"
    UNREADABLE = "unreadable"  # a result this version cannot read (a newer schema, a broken file): never cleared
    COLLAPSED = "collapsed"  # trained to the end (or its early stop) at chance: bench/collapse.py

    @property
    def finished(self) -> bool:  # never recomputed
        return self in (Status.DONE, Status.NOT_APPLICABLE, Status.COLLAPSED)

    @property
    def scored(self) -> bool:  # has validation (and, once selected, test) scores
        return self in (Status.DONE, Status.COLLAPSED)

    @property
    def retryable(self) -> bool:  # recomputed only when asked (--retry-failed)
        return self in (Status.FAILED, Status.DIVERGED)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class CellResult:
    status: Status
    cell_id: str
    suite: str
    stage: str
    method: str
    budget: str
    seed: int
    config: dict
    error: str = ""
    traceback: str | None = None
    model: str | None = None
    datasets: dict = field(default_factory=dict)
    first_stage: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # eval dataset -> metric -> value
    eval: dict = field(default_factory=dict)  # eval dataset -> timings
    knobs: dict = field(default_factory=dict)
    trainable: int = 0
    backbone: int = 0
    pct: float = 0.0
    head: int = 0
    train: dict = field(default_factory=dict)
    times: dict = field(default_factory=dict)
    peak_memory_mb: float | None = None
    peak_gpu_memory_mb: float | None = None  # torch.cuda.max_memory_allocated over the cell (None on CPU)
    device: str | None = None
    processes: int = 1
    versions: dict = field(default_factory=dict)
    git_commit: str | None = None
    dataset_fingerprints: dict = field(default_factory=dict)
    precision: str | None = None
    role: str | None = None  # the system's role (systems.Role) where it ran, so a merged store keeps it
    validation: dict = field(default_factory=dict)  # validation dataset -> metric -> value (the search's)
    phase: str | None = None  # "search": scored on validation data alone; "final": a selected configuration
    selection: dict = field(default_factory=dict)  # a selected cell: what was searched, chosen, and its rivals
    holdout: dict = field(default_factory=dict)  # a holdout's fraction, seed, size and fingerprint
    schema: int = SCHEMA
    extra: dict = field(default_factory=dict)  # keys this version does not know (a newer writer's)

    def to_json(self) -> dict:
        data = asdict(self)
        data["status"] = self.status.value
        return {**data.pop("extra"), **data}

    @classmethod
    def from_json(cls, data: dict) -> CellResult:
        data = upgrade(dict(data))
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        values = {k: v for k, v in data.items() if k in known}
        values["status"] = Status(values["status"])
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    @property
    def done(self) -> bool:
        return self.status is Status.DONE

    @property
    def scored(self) -> bool:
        return self.status.scored


def for_cell(cell, status: Status, **fields) -> CellResult:
    """A result carrying ``cell``'s identity (and its config) with ``fields`` beside it."""
    from .systems import role

    try:
        system = role(cell.method).value
    except Exception:  # noqa: BLE001  (a plugin method that is gone: the cell still records its failure)
        system = None
    scoring, selection = getattr(cell, "scoring", "all"), getattr(cell, "selection", {}) or {}
    identity = dict(
        role=system,
        phase="search" if scoring == "validation" else ("final" if selection else None),
        selection=selection,
        cell_id=cell.id,
        suite=cell.suite,
        stage=cell.stage,
        method=cell.method,
        budget=cell.budget,
        seed=cell.seed,
        config=cell.to_json(),
        model=cell.model,
        datasets=cell.datasets,
        first_stage=cell.first_stage,
    )
    return CellResult(status=status, **identity, **fields)


def failure(cell, status: Status, error: str, trace: str | None, extra: dict | None = None) -> CellResult:
    return for_cell(cell, status, error=error, traceback=trace, extra=extra or {})


def upgrade(data: dict) -> dict:
    """A result of any earlier schema, in today's shape."""
    if "schema" not in data:  # schema 1
        config = data.get("config") or {}
        data.setdefault("status", "failed")
        for key in ("suite", "method", "budget", "seed", "cell_id", "model", "datasets", "first_stage"):
            if key not in data and key in config:
                data[key] = config[key]
        data.setdefault("stage", config.get("stage", "rerank"))
        data.setdefault("precision", config.get("mixed_precision"))
        data["budget"] = str(data.get("budget", "native"))
        data["seed"] = int(data.get("seed", 0))
        data.setdefault("cell_id", "")
        data.setdefault("suite", "")
        data.setdefault("config", config)
        data["schema"] = SCHEMA
    return data


def write(directory: Path, result: CellResult) -> None:
    write_json(Path(directory) / RESULT, result.to_json())


@dataclass(frozen=True)
class Unreadable:
    """A ``result.json`` this version cannot read: why, and what to do. Such a cell is never cleared."""

    path: Path
    reason: str
    newer: bool = False  # written by a newer version (else: broken)

    @property
    def fix(self) -> str:
        if self.newer:
            return "upgrade peft-ir-bench to read it, or `bench store recompute` to set it aside and run the cell again"
        return "restore the file, or `bench store recompute` to set it aside and run the cell again"


def inspect(directory: Path) -> CellResult | Unreadable | None:
    """The cell's result, ``Unreadable`` when there is one this version cannot read (a newer schema, a file
    cut short or not a result), or None when it has none yet."""
    path = Path(directory) / RESULT
    try:
        data = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Unreadable(path, f"not valid JSON ({type(exc).__name__})")
    except OSError as exc:
        return Unreadable(path, f"cannot be read ({exc.strerror or type(exc).__name__})")
    if data is None:
        return None
    if not isinstance(data, dict):
        return Unreadable(path, "not a cell result")
    schema = data.get("schema")
    if isinstance(schema, int) and schema > SCHEMA:
        return Unreadable(
            path, f"written by a newer version (result schema {schema}; this version reads {SCHEMA})", newer=True
        )
    try:
        return CellResult.from_json(data)
    except (TypeError, ValueError, KeyError) as exc:
        return Unreadable(path, f"not a cell result ({exc})")


def load(directory: Path, quiet: bool = False) -> CellResult | None:
    """The cell's result, or None when it has none or has one this version cannot read (with a one-line
    warning unless ``quiet``; ``inspect`` tells the two apart)."""
    found = inspect(directory)
    if isinstance(found, Unreadable):
        if not quiet:
            warn(f"{found.path} is {found.reason}: left out; {found.fix}")
        return None
    return found


@dataclass
class LoadedCell:
    """A result with what reports read beside it."""

    directory: Path
    result: CellResult
    per_query: dict = field(default_factory=dict)  # dataset -> query -> metric -> value
    losses: list = field(default_factory=list)  # training loss per step

    @property
    def status(self) -> Status:
        return self.result.status

    @property
    def key(self) -> tuple[str, str, str]:
        return self.result.stage, self.result.method, self.result.budget

    @property
    def datasets(self) -> list[str]:
        return list(self.result.metrics) or list(self.result.datasets.get("eval", []))


def read_losses(directory: Path) -> list[float]:
    log = Path(directory) / "train_log.jsonl"
    if not log.exists():
        return []
    losses = []
    for line in log.read_text().splitlines():
        try:
            losses.append(float(json.loads(line)["loss"]))
        except (ValueError, KeyError, TypeError):
            break  # a log cut short: what was written before the cut
    return losses


def load_cell(directory: Path, quiet: bool = False) -> LoadedCell | None:
    result = load(directory, quiet)
    if result is None:
        return None
    try:
        per_query = read_json(Path(directory) / "per_query.json") or {}
    except (json.JSONDecodeError, OSError):
        per_query = {}
    return LoadedCell(Path(directory), result, per_query, read_losses(directory))


def scan(root: Path) -> list[LoadedCell]:
    """Every readable result under ``root`` (one folder per cell)."""
    cells = []
    for path in sorted(Path(root).glob(f"*/{RESULT}")):
        loaded = load_cell(path.parent)
        if loaded is not None:
            cells.append(loaded)
    return cells


# ---------------------------------------------------------------- records others can read (JSON lines)

RECORD_SCHEMA = "peft-ir-bench/cell/1"
RECORD_FIELDS = (
    "cell_id",
    "suite",
    "stage",
    "method",
    "budget",
    "seed",
    "status",
    "error",
    "model",
    "knobs",
    "trainable",
    "backbone",
    "pct",
    "head",
    "datasets",
    "first_stage",
    "metrics",
    "eval",
    "times",
    "peak_memory_mb",
    "device",
    "precision",
    "processes",
    "versions",
    "git_commit",
    "dataset_fingerprints",
    "role",
    "validation",
    "phase",
    "selection",
    "holdout",
)


def to_record(cell: LoadedCell) -> dict:
    """One cell as a self-contained record: identity, method, knobs, counts, budget, seed, metrics per
    dataset, times, memory, versions; the cell's settings (``config``), its per-query metrics and its
    training losses, so that another store's report can test and plot it as its own."""
    r = cell.result
    data = r.to_json()
    record = {"record_schema": RECORD_SCHEMA, **{k: data[k] for k in RECORD_FIELDS}}
    record["config"] = r.config
    record["per_query"] = cell.per_query
    record["losses"] = cell.losses
    return record


def from_record(record: dict, where: str) -> LoadedCell:
    """A record written by ``to_record`` (of this or a later minor schema), as a loaded cell."""
    from .errors import BenchError

    if not isinstance(record, dict) or not str(record.get("record_schema", "")).startswith("peft-ir-bench/cell/"):
        raise BenchError(
            f"{where}: not a peft-ir-bench cell record (record_schema missing); write one with "
            "bench report --format jsonl"
        )
    data = {k: v for k, v in record.items() if k not in ("record_schema", "per_query", "losses")}
    for key, empty in (("role", None), ("validation", {}), ("phase", None), ("selection", {}), ("holdout", {})):
        data.setdefault(key, empty)
    data.setdefault("schema", SCHEMA)
    result = CellResult.from_json(data)
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(result.cell_id))[:64] or "cell"
    return LoadedCell(Path(where) / name, result, record.get("per_query") or {}, record.get("losses") or [])


def read_records(path: Path) -> list[LoadedCell]:
    from .data import json_lines

    return [from_record(record, f"{path}:{number}") for number, record in json_lines(Path(path))]
