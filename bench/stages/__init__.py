"""The stage registry: every module of this package registers its ``Stage``; plugins add theirs through
the ``BENCH_PLUGINS`` environment variable (comma-separated importable modules, also read by worker
processes) or the ``bench.stages`` entry point group."""

from __future__ import annotations

import importlib
import os
import pkgutil

from ..errors import BenchError
from .base import Built, PerfHooks, Stage, restored, run_cell, score_test_from_tensors

_REGISTRY: dict[str, Stage] = {}
PLUGINS_ENV = "BENCH_PLUGINS"


def register(cls: type[Stage]) -> type[Stage]:
    """Class decorator: one instance of the stage in the registry (a later registration replaces it)."""
    _REGISTRY[cls.name] = cls()
    return cls


_loaded = False


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    builtin = ("rerank", "dense", "qlm")  # listed first, in this order; any other module of the package after
    others = sorted(info.name for info in pkgutil.iter_modules(__path__) if info.name not in builtin + ("base",))
    for name in builtin + tuple(others):
        importlib.import_module(f"{__name__}.{name}")
    from importlib.metadata import entry_points

    for entry in entry_points(group="bench.stages"):
        entry.load()
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise BenchError(
                f"{PLUGINS_ENV}: cannot import {module!r} ({exc}); fix the module name or PYTHONPATH"
            ) from None


def get_stage(name: str) -> Stage:
    _load()
    if name not in _REGISTRY:
        raise BenchError(f"unknown stage {name!r}: choose from {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def names() -> list[str]:
    _load()
    return list(_REGISTRY)


def all_stages() -> list[Stage]:
    _load()
    return list(_REGISTRY.values())


__all__ = [
    "Built",
    "PerfHooks",
    "Stage",
    "all_stages",
    "get_stage",
    "names",
    "register",
    "restored",
    "run_cell",
    "score_test_from_tensors",
]
