"""Faults forced for tests (``BENCH_FAULTS``), in one place: ``method=kind`` items (``lora=nan``,
``bitfit=raise``, ``adapter=oom``) fail a cell of that method; ``enospc=<file name>`` makes the disk full
from the first write of that file on (every later write of the process fails with ENOSPC, as on a real
full disk). Unset, nothing here does anything."""

from __future__ import annotations

import errno
import os
from pathlib import Path

FAULTS_ENV = "BENCH_FAULTS"
_full = False


def _items() -> list[tuple[str, str]]:
    out = []
    for item in os.environ.get(FAULTS_ENV, "").split(","):
        key, _, kind = item.partition("=")
        if key.strip():
            out.append((key.strip(), kind.strip()))
    return out


def forced(method: str) -> str | None:
    """The fault forced on cells of ``method``, if any."""
    return next((kind for key, kind in _items() if key == method), None)


def check_write(path: Path) -> None:
    """Raise ENOSPC for ``path`` once the forced full disk has begun."""
    global _full
    if not _full and any(key == "enospc" and Path(path).name == kind for key, kind in _items()):
        _full = True
    if _full:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
