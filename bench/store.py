"""The run store: ``<out>/<suite>/<cell-id>/`` per cell, the single source of truth for what is done.

Files are renamed into place whole (``bench.files``); a cell is finished once its result says so
(``bench.results``); a cell at work keeps ``heartbeat.json`` fresh; anything else is pending. Stores
written before cell ids version 2 keep working: an index from each old folder's ``config.json`` to
the cell's id today finds them (``bench store migrate`` renames them, optionally)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

from . import results
from .cells import ID_VERSION, Cell
from .files import read_json, write_json
from .results import Status

HEARTBEAT = "heartbeat.json"
CONFIG = "config.json"
BEAT_SECONDS = 10.0
STALE_SECONDS = 120.0  # a heartbeat from another host this old means its worker is gone


def _alive(beat: dict) -> bool:
    if beat.get("host") == socket.gethostname():
        try:
            os.kill(int(beat["pid"]), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, KeyError):
            return True
        return True
    return time.time() - float(beat.get("beat", 0)) < STALE_SECONDS


def _beat(directory: Path) -> dict | None:
    try:
        return read_json(Path(directory) / HEARTBEAT)
    except (json.JSONDecodeError, OSError):
        return None


def state(directory: Path) -> Status:
    result = results.load(directory, quiet=True)
    if result is not None:
        return result.status
    beat = _beat(directory)
    return Status.RUNNING if beat is not None and _alive(beat) else Status.PENDING


class RunStore:
    """One suite's folder of cells."""

    def __init__(self, out: Path, suite: str):
        self.out, self.root = Path(out), Path(out) / suite
        self._legacy: dict[str, Path] | None = None

    def dir_for(self, cell: Cell) -> Path:
        """The cell's folder: its own id, or the folder an older store gave the same experiment."""
        own = self.root / cell.id
        if own.exists():
            return own
        legacy = self.legacy_index()
        for key in self._ids(cell):
            if key in legacy:
                return legacy[key]
        return own

    @staticmethod
    def _ids(cell: Cell) -> list[str]:
        ids = [cell.id]
        if cell.mixed_precision == "auto":  # stores before id version 2 kept the precision auto resolved to
            from .environment import resolve_precision

            ids.append(cell.replace(mixed_precision=resolve_precision("auto")).id)
        return ids

    def legacy_index(self) -> dict[str, Path]:
        if self._legacy is None:
            self._legacy = {}
            chosen: dict[str, tuple] = {}
            for config_path in sorted(self.root.glob(f"*/{CONFIG}")):
                try:
                    config = json.loads(config_path.read_text())
                except (json.JSONDecodeError, OSError, UnicodeDecodeError):
                    continue
                if not isinstance(config, dict) or config.get("id_version") == ID_VERSION:
                    continue
                try:
                    key = Cell.from_v1(config).id
                except Exception:  # noqa: BLE001  (a folder this version cannot read is left alone)
                    continue
                directory = config_path.parent
                rank = (state(directory) is Status.DONE, directory.stat().st_mtime)  # done wins, then newest
                if key not in chosen or rank > chosen[key]:
                    chosen[key] = rank
                    self._legacy[key] = directory
        return self._legacy

    def state(self, cell: Cell) -> Status:
        return state(self.dir_for(cell))

    def result(self, cell: Cell) -> results.CellResult | None:
        return results.load(self.dir_for(cell), quiet=True)

    def loaded(self, cell: Cell) -> results.LoadedCell | None:
        return results.load_cell(self.dir_for(cell), quiet=True)

    def migrate(self) -> list[tuple[Path, Path]]:
        """Rename every folder of an older store to its cell's id today (skipping cells at work and ids
        already taken); returns the renames."""
        moves = []
        for key, directory in sorted(self.legacy_index().items()):
            target = self.root / key
            if directory == target or target.exists():
                continue
            beat = _beat(directory)
            if beat is not None and _alive(beat):
                print(f"bench: skip {directory.name}: running", file=sys.stderr)
                continue
            os.replace(directory, target)
            moves.append((directory, target))
        self._legacy = None
        return moves


def reset(directory: Path) -> None:
    """Clear what an interrupted or failed attempt left (logs, tensors, runs): the cell restarts clean."""
    directory = Path(directory)
    if not directory.exists():
        return
    for entry in directory.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def tidy_finished(directory: Path) -> None:
    """A finished cell killed between its last write and its cleanup keeps a stale heartbeat or temp file."""
    directory = Path(directory)
    (directory / HEARTBEAT).unlink(missing_ok=True)
    for leftover in directory.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


class Heartbeat:
    """While a cell runs, ``heartbeat.json`` (pid, host, start, last beat) is rewritten every few seconds."""

    def __init__(self, directory: Path, every: float = BEAT_SECONDS):
        self.path, self.every = Path(directory) / HEARTBEAT, every
        self.started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _write(self) -> None:
        write_json(
            self.path, {"pid": os.getpid(), "host": socket.gethostname(), "started": self.started, "beat": time.time()}
        )

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._write()

    def __enter__(self):
        self._write()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.path.unlink(missing_ok=True)
