"""The run store: ``<out>/<suite>/<cell-id>/`` per cell, the single source of truth for what is done.

Files are renamed into place whole (``bench.files``); a cell is finished once its result says so
(``bench.results``); a result this version cannot read is ``unreadable`` and never cleared; a cell at work
is claimed (``claim.json``: host, pid, start, last beat, created by an atomic hard link, so exactly one
process holds it, on a local disk or NFS alike) and its owner keeps the beat fresh; anything else is
pending. A claim whose owner is gone (a dead pid on this host, or no beat for ``STALE_SECONDS``) is taken
over under a mutex (an atomic mkdir) and the takeover recorded. Every claim, takeover and release is one
line of ``<out>/_claims/<suite>.jsonl`` (beside the store: a suite's folder holds cells only). Stores
written before cell ids version 2 keep working: an index from each old folder's ``config.json`` to the
cell's id today finds them (``bench store migrate`` renames them, optionally)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import results
from .cells import ID_VERSION, Cell
from .files import atomic_write_text, read_json, write_json
from .results import Status

HEARTBEAT = "heartbeat.json"  # stores before claims: read, never written
CLAIM = "claim.json"
CLAIMS_LOG = "_claims"  # <out>/_claims/<suite>.jsonl
TAKEOVER = ".claim.takeover"
CONFIG = "config.json"
BEAT_SECONDS = 10.0
STALE_SECONDS = 120.0  # a heartbeat from another host this old means its worker is gone


def _alive(beat: dict) -> bool:
    """Whether the owner of a claim (or an old heartbeat) is at work: on this host its pid exists and its
    beat is fresh; on another host its beat is fresh."""
    try:
        fresh = time.time() - float(beat.get("beat", 0)) < STALE_SECONDS
    except (TypeError, ValueError):
        fresh = False
    if beat.get("host") == socket.gethostname():
        try:
            os.kill(int(beat["pid"]), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, KeyError, TypeError):
            return fresh
        return fresh
    return fresh


def _beat(directory: Path) -> dict | None:
    try:
        return read_json(Path(directory) / HEARTBEAT)
    except (json.JSONDecodeError, OSError):
        return None


def _claim_file(directory: Path) -> dict | None:
    try:
        data = read_json(Path(directory) / CLAIM)
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def owner(directory: Path) -> dict | None:
    """The live owner of a cell (its claim, or an old store's heartbeat), or None."""
    for beat in (_claim_file(directory), _beat(directory)):
        if beat is not None and _alive(beat):
            return beat
    return None


def state(directory: Path) -> Status:
    found = results.inspect(directory)
    if isinstance(found, results.Unreadable):
        return Status.UNREADABLE
    if found is not None:
        return found.status
    return Status.RUNNING if owner(directory) is not None else Status.PENDING


def _log(directory: Path, event: str, claim: dict, **extra) -> None:
    """One line of the suite's claims log (appended whole: O_APPEND with one write per line)."""
    line = json.dumps({"event": event, "cell": Path(directory).name, "at": time.time(), **claim, **extra}) + "\n"
    try:
        suite = Path(directory).parent
        (suite.parent / CLAIMS_LOG).mkdir(exist_ok=True)
        path = suite.parent / CLAIMS_LOG / f"{suite.name}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError:
        pass  # the log is a record, never a reason for a cell to fail


@dataclass
class Claim:
    """This process's claim on a cell."""

    directory: Path
    owner: dict

    @property
    def path(self) -> Path:
        return self.directory / CLAIM

    def holds(self) -> bool:
        current = _claim_file(self.directory)
        return current is not None and current.get("token") == self.owner["token"]

    def beat(self) -> bool:
        """Refresh the beat (an atomic replace); False when the claim was taken from this process."""
        if not self.holds():
            return False
        self.owner = {**self.owner, "beat": time.time()}
        write_json(self.path, self.owner)
        return True

    def release(self, event: str = "release") -> None:
        if self.holds():
            self.path.unlink(missing_ok=True)
            _log(self.directory, event, self.owner)


def _new_owner(**extra) -> dict:
    now = time.time()
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": now,
        "beat": now,
        "token": uuid.uuid4().hex,
        **extra,
    }


def _link_claim(directory: Path, data: dict) -> bool:
    """Create ``claim.json`` whole or not at all: written under a private name, hard-linked into place
    (link fails if the name exists: atomic on local disks and NFS)."""
    tmp = directory / f".claim.{data['token']}.tmp"
    tmp.write_text(json.dumps(data, sort_keys=True))
    try:
        os.link(tmp, directory / CLAIM)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def claim(directory: Path) -> Claim | None:
    """This process's claim on the cell in ``directory``, or None while another live process holds it. A
    claim whose owner is gone is taken over (recorded in the new claim and the claims log)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    mine = _new_owner()
    if _link_claim(directory, mine):
        _log(directory, "claim", mine)
        return Claim(directory, mine)
    stale = _claim_file(directory)
    if stale is None:  # gone meanwhile (released), or unreadable: one more try, no takeover
        if (directory / CLAIM).exists() and _old(directory / CLAIM):
            stale = {"token": None}
        elif _link_claim(directory, mine):
            _log(directory, "claim", mine)
            return Claim(directory, mine)
        else:
            return None
    if stale.get("token") is not None and _alive(stale):
        return None
    return _take_over(directory, stale)


def _old(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime > STALE_SECONDS
    except OSError:
        return False


def _take_over(directory: Path, stale: dict) -> Claim | None:
    lock = directory / TAKEOVER
    try:
        os.mkdir(lock)
    except FileExistsError:
        if _old(lock):  # a takeover whose process died: cleared, the next attempt takes over
            try:
                os.rmdir(lock)
            except OSError:
                pass
        return None
    try:
        if _claim_file(directory) not in (stale, None) and stale.get("token") is not None:
            return None  # another process took it over first
        (directory / CLAIM).unlink(missing_ok=True)
        previous = {k: stale.get(k) for k in ("host", "pid", "started", "beat")}
        mine = _new_owner(took_over=previous)
        if not _link_claim(directory, mine):
            return None
        _log(directory, "takeover", mine)
        return Claim(directory, mine)
    finally:
        try:
            os.rmdir(lock)
        except OSError:
            pass


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

    def claim(self, cell: Cell) -> Claim | None:
        return claim(self.dir_for(cell))

    def owner(self, cell: Cell) -> dict | None:
        return owner(self.dir_for(cell))

    def result(self, cell: Cell) -> results.CellResult | None:
        return results.load(self.dir_for(cell), quiet=True)

    def loaded(self, cell: Cell) -> results.LoadedCell | None:
        return results.load_cell(self.dir_for(cell), quiet=True)

    def import_record(self, loaded: results.LoadedCell, source: str) -> str:
        """A record of another store (``results.jsonl``) written here as that cell's folder: its config,
        result, per-query values and losses (never tensors). Returns what happened: "imported", or why
        not ("kept": a result is here already, never overwritten; "running": another process holds it)."""
        config = loaded.result.config
        try:
            cell = Cell.from_json(config)
        except Exception:  # noqa: BLE001  (a record whose config this version cannot rebuild)
            return "unknown cell"
        directory = self.dir_for(cell)
        if results.inspect(directory) is not None:
            return "kept"
        held = claim(directory)
        if held is None:
            return "running"
        try:
            write_json(directory / CONFIG, config)
            write_json(directory / "per_query.json", loaded.per_query)
            if loaded.losses:
                lines = "".join(json.dumps({"step": i + 1, "loss": v}) + "\n" for i, v in enumerate(loaded.losses))
                atomic_write_text(directory / "train_log.jsonl", lines)
            extra = {**loaded.result.extra, "imported_from": source}
            results.write(directory, dataclasses.replace(loaded.result, extra=extra))
        finally:
            held.release("import")
        return "imported"

    def migrate(self) -> list[tuple[Path, Path]]:
        """Rename every folder of an older store to its cell's id today (skipping cells at work and ids
        already taken); returns the renames."""
        moves = []
        for key, directory in sorted(self.legacy_index().items()):
            target = self.root / key
            if directory == target or target.exists():
                continue
            if owner(directory) is not None:
                print(f"bench: skip {directory.name}: running", file=sys.stderr)
                continue
            os.replace(directory, target)
            moves.append((directory, target))
        self._legacy = None
        return moves


def set_aside(path: Path) -> Path:
    """Move a cell's folder (or one file of it) whole to ``<suite>/_set_aside/<cell>-<time>``: never deleted,
    and out of the store's way (the cell is then pending)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    target = folder.parent / "_set_aside" / f"{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if path.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    else:
        target.mkdir(parents=True, exist_ok=True)
        os.replace(path, target / path.name)
    return target


def reset(directory: Path, claimed: Claim) -> None:
    """Clear what an interrupted or failed attempt left (logs, tensors, runs): the cell restarts clean. Only
    the holder of the cell's claim resets it, and only a cell proven unfinished (no readable result, or a
    failed one being retried); an unreadable result is never cleared."""
    directory = Path(directory)
    if not directory.exists():
        return
    if not claimed.holds():
        raise RuntimeError(f"{directory}: reset without holding its claim")
    if isinstance(results.inspect(directory), results.Unreadable):
        raise RuntimeError(f"{directory}: its result is unreadable here: never cleared")
    for entry in directory.iterdir():
        if entry.name in (CLAIM, TAKEOVER) or entry.name.startswith(".claim."):
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def tidy_finished(directory: Path) -> None:
    """A finished cell killed between its last write and its cleanup keeps a stale heartbeat, claim or
    temp file; a cell someone holds (a selected cell scored on the test data) is left alone."""
    directory = Path(directory)
    if owner(directory) is not None:
        return
    (directory / HEARTBEAT).unlink(missing_ok=True)
    (directory / CLAIM).unlink(missing_ok=True)
    for leftover in directory.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


class Heartbeat:
    """While a cell runs, its claim's beat is refreshed every few seconds. A claim taken from this process
    (it was thought gone) stops the beats and is reported once."""

    def __init__(self, held: Claim, every: float = BEAT_SECONDS):
        self.claim, self.every = held, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.claim.beat():
                    print(f"bench: warning: the claim on {self.claim.directory} was taken over", file=sys.stderr)
                    return
            except OSError:
                pass  # a full disk: the beat is late, the cell's own writes will say why

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
