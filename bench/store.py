"""The run store: ``<out>/<suite>/<cell-id>/`` per cell, the single source of truth for what is done.
Every file is written to a temporary name and renamed, so a reader never sees half a file; a cell is
finished once result.json exists (status done, not_applicable, failed or diverged); a cell at work
keeps heartbeat.json fresh; anything else is pending."""
from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

from methods.io import atomic_write

RESULT = "result.json"
HEARTBEAT = "heartbeat.json"
CONFIG = "config.json"
FINISHED = ("done", "not_applicable")  # never recomputed
FAILED = ("failed", "diverged")  # recomputed only with --retry-failed
STATES = ("done", "not_applicable", "failed", "diverged", "running", "pending")
BEAT_SECONDS = 10.0
STALE_SECONDS = 120.0  # a heartbeat from another host this old means its worker is gone


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def read_json(path: Path):
    """The parsed file, or None if it is missing (files are renamed into place, never half written)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


def cell_dir(out: Path, suite: str, cell_id: str) -> Path:
    return Path(out) / suite / cell_id


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


def state(directory: Path) -> str:
    result = read_json(Path(directory) / RESULT)
    if result is not None:
        return result.get("status", "failed")
    beat = read_json(Path(directory) / HEARTBEAT)
    return "running" if beat is not None and _alive(beat) else "pending"


def error_of(directory: Path) -> str:
    return (read_json(Path(directory) / RESULT) or {}).get("error", "")


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
        write_json(self.path, {"pid": os.getpid(), "host": socket.gethostname(), "started": self.started,
                               "beat": time.time()})

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
