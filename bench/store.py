"""The run store: ``<out>/<suite>/<cell-id>/`` per cell; every file written to a temporary name and
renamed, so a reader never sees half a file and a cell counts as done only once result.json exists."""
from __future__ import annotations

import json
from pathlib import Path

from methods.io import atomic_write

RESULT = "result.json"


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def cell_dir(out: Path, suite: str, cell_id: str) -> Path:
    return Path(out) / suite / cell_id


def is_done(directory: Path) -> bool:
    path = Path(directory) / RESULT
    if not path.exists():
        return False
    return json.loads(path.read_text()).get("status") in ("done", "not_applicable")


def load_results(out: Path, suite: str) -> list[dict]:
    root = Path(out) / suite
    results = []
    for path in sorted(root.glob(f"*/{RESULT}")) if root.exists() else []:
        results.append(json.loads(path.read_text()))
    return results
