"""Reading a suite's run store for reports: results, per-query metrics and training logs."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import store


@dataclass
class Cell:
    result: dict
    per_query: dict = field(default_factory=dict)  # dataset -> query -> metric -> value
    losses: list = field(default_factory=list)  # training loss per step

    @property
    def status(self) -> str:
        return self.result.get("status", "failed")

    @property
    def key(self) -> tuple:
        r = self.result
        config = r.get("config", {})
        return (r.get("stage", config.get("stage", "rerank")), r.get("method", config.get("method")),
                str(r.get("budget", config.get("budget"))))

    @property
    def datasets(self) -> list[str]:
        return list(self.result.get("metrics", {})) or list(self.result.get("config", {}).get("datasets", {})
                                                             .get("eval", []))


def load_cells(runs: Path, suite: str) -> list[Cell]:
    root = Path(runs) / suite
    if not root.is_dir():
        from ..errors import BenchError
        raise BenchError(f"no run store for suite {suite!r} under {runs}: run `bench run --suite {suite}` first "
                         f"or pass --runs")
    cells = []
    for path in sorted(root.glob(f"*/{store.RESULT}")):
        result = json.loads(path.read_text())
        per_query = store.read_json(path.parent / "per_query.json") or {}
        losses = []
        log = path.parent / "train_log.jsonl"
        if log.exists():
            losses = [json.loads(line)["loss"] for line in log.read_text().splitlines() if line.strip()]
        cells.append(Cell(result, per_query, losses))
    return cells
