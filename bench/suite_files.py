"""Suite files: a suite name or YAML path located and read, ``extends`` merged deeply, a device profile
merged on top. The raw mapping this gives is what ``config.py`` validates."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from .errors import BenchError


def list_suites() -> list[str]:
    return sorted(
        p.name[:-5] for p in resources.files("bench").joinpath("suites").iterdir() if p.name.endswith(".yaml")
    )


def locate_suite(name: str, relative_to: Path | None) -> tuple[str, str]:
    """(text, where) of a suite name or YAML path."""
    candidates = [Path(name)]
    if relative_to is not None:
        candidates.insert(0, relative_to / name)
    for path in candidates:
        if path.suffix in (".yaml", ".yml") and path.is_file():
            try:
                return path.read_text(encoding="utf-8"), str(path)
            except (OSError, UnicodeDecodeError) as exc:
                raise BenchError(f"suite {path}: cannot read it ({exc})") from None
    if name in list_suites():
        return resources.files("bench").joinpath("suites", f"{name}.yaml").read_text(), name
    if name.endswith((".yaml", ".yml")):
        raise BenchError(f"suite file {name} not found: check the path")
    raise BenchError(f"unknown suite {name!r}: choose from {', '.join(list_suites())} or give a .yaml path")


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``: mappings merge key by key, except ``lr`` maps (replaced whole)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "lr":
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_suite(name: str, chain: tuple = (), relative_to: Path | None = None) -> tuple[dict, str]:
    text, where = locate_suite(name, relative_to)
    if where in chain:
        raise BenchError(f"suite {chain[0]}: extends forms a cycle: {' -> '.join(chain + (where,))}")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BenchError(f"suite {where}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise BenchError(
            f"suite {where}: a suite is a mapping of keys (see bench/suites/smoke.yaml), not a {type(raw).__name__}"
        )
    parent = raw.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise BenchError(f"suite {where}: extends must name one suite or YAML file")
        folder = Path(where).parent if Path(where).is_file() else None
        base, _ = read_suite(parent, chain + (where,), folder)
        base.pop("name", None)  # a variant is its own suite
        raw = deep_merge(base, raw)
    raw.setdefault("name", Path(where).stem if Path(where).is_file() else name)
    return raw, where


DEVICES = ("cpu", "cuda")


def apply_profile(raw: dict, device: str, where: str) -> dict:
    """A suite's ``profiles: {cuda: {...}, cpu: {...}}``: the settings for the device the grid is meant for
    (GPU-sized batches on a GPU), merged over the suite's own."""
    raw = dict(raw)
    profiles = raw.pop("profiles", None) or {}
    if not isinstance(profiles, dict) or set(profiles) - set(DEVICES):
        raise BenchError(
            f"suite {where}: profiles maps a device ({', '.join(DEVICES)}) to settings, "
            f"got {sorted(profiles) if isinstance(profiles, dict) else profiles!r}"
        )
    chosen = profiles.get(device) or {}
    if not isinstance(chosen, dict) or "name" in chosen or "profiles" in chosen:
        raise BenchError(f"suite {where}: profiles.{device} must be a mapping of settings (not name or profiles)")
    return deep_merge(raw, chosen)
