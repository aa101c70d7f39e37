"""Files written whole or not at all: a temporary name in the same folder, fsync, rename. Readers never
see half a file; permissions follow the user's umask."""

from __future__ import annotations

import json
import os
from pathlib import Path

from methods.io import atomic_write


def atomic_write_text(path: Path, text: str) -> None:
    from .faults import check_write

    check_write(path)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def read_json(path: Path):
    """The parsed file, or None if it is missing (files are renamed into place, never half written)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def safe_name(text: str) -> str:
    """A dataset reference as one file-name component (``scifact/test`` -> ``scifact__test``)."""
    return text.replace(os.sep, "__").replace("/", "__")
