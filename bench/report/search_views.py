"""What the report shows of a search: per (stage, dataset, method, budget) the configurations tried, their
validation scores, the one selected, the expected best validation score after n configurations (Dodge et
al., EMNLP 2019), and what the search cost. Read from the selected cells' records (``selection``), never
recomputed: the report cannot select on anything the run did not."""

from __future__ import annotations

import json

from ..fmt import num
from ..results import LoadedCell, Status


def config_text(config: dict) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in sorted(config.items()))


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def searched_text(searched: dict) -> str:
    return "; ".join(f"{k} in {{{', '.join(_value(v) for v in values)}}}" for k, values in searched.items())


def expected_best(scores: list[float]) -> list[float]:
    """Dodge et al., "Show Your Work: Improved Reporting of Experimental Results" (EMNLP 2019): the expected
    maximum validation score of n configurations drawn with replacement from these, n = 1..len(scores):
    sum_i v_(i) [(i/N)^n - ((i-1)/N)^n] over the sorted scores v."""
    ordered, total = sorted(scores), len(scores)
    return [
        sum(v * ((i / total) ** n - ((i - 1) / total) ** n) for i, v in enumerate(ordered, 1))
        for n in range(1, total + 1)
    ]


def selections(cells: list[LoadedCell]) -> list[dict]:
    """One entry per selected (stage, method, budget, validation data): its selection record."""
    seen, out = set(), []
    for cell in cells:
        r = cell.result
        if not r.selection or r.status is not Status.DONE:
            continue
        key = (
            r.stage,
            r.method,
            r.budget,
            r.selection.get("validation"),
            json.dumps(r.selection.get("chosen"), sort_keys=True),
        )
        if key in seen:
            continue
        seen.add(key)
        configs = r.selection.get("configurations", [])
        means = [c["mean"] for c in configs if c.get("mean") is not None]
        out.append(
            {
                "stage": r.stage,
                "method": r.method,
                "budget": r.budget,
                "validation": r.selection.get("validation"),
                "metric": r.selection.get("metric"),
                "searched": searched_text(r.selection.get("searched", {})),
                "chosen": config_text(r.selection.get("chosen", {})),
                "rule": r.selection.get("rule", ""),
                "capped": config_text(r.selection.get("capped") or {}),
                "configurations": [
                    {
                        "config": config_text(c["config"]),
                        "scores": ", ".join(f"s{s}: {num(v)}" for s, v in sorted(c.get("scores", {}).items())),
                        "mean": num(c.get("mean")),
                        "chosen": c["config"] == r.selection.get("chosen"),
                    }
                    for c in configs
                ],
                "expected_best": [num(v) for v in expected_best(means)] if means else [],
            }
        )
    return out


def row_selection(cells: list[LoadedCell], stage: str, method: str, budget: str) -> dict:
    """(searched, chosen, chosen's mean validation score) of a row, from its selected cells."""
    for cell in cells:
        r = cell.result
        if (r.stage, r.method, r.budget) == (stage, method, budget) and r.selection:
            chosen = r.selection.get("chosen", {})
            mean = next((c.get("mean") for c in r.selection.get("configurations", []) if c["config"] == chosen), None)
            return {
                "searched": searched_text(r.selection.get("searched", {})),
                "chosen": config_text(chosen),
                "validation": num(mean),
            }
    return {"searched": "", "chosen": "", "validation": ""}


def summary_lines(searches: list[dict], cells: list[LoadedCell]) -> list[str]:
    """One line per selection (what was searched, chosen, every configuration's mean), then the cost line."""
    lines = []
    for s in searches:
        means = "; ".join(f"{c['config']} {c['mean']}" for c in s["configurations"])
        lines.append(
            f"Search, {s['stage']} {s['method']} {s['budget']}: {s['searched']}; chosen {s['chosen']} on "
            f"{s['validation']} ({s['metric']}: {means})"
        )
    cost = search_cost(cells)
    return lines + ([cost] if cost else [])


def search_cost(cells: list[LoadedCell]) -> str:
    """One line: the search cells beside the selected ones, and what capped them."""
    search = [c for c in cells if c.result.phase == "search"]
    if not search and not any(c.result.selection for c in cells):
        return ""
    capped = {config_text(c.result.selection.get("capped") or {}) for c in cells if c.result.selection} - {""}
    seconds = sum(c.result.times.get("total_s", 0.0) for c in search)
    line = (
        f"Search: {len(search)} cells beyond the selected ones ({seconds / 3600:.2f} h), selected on validation "
        "data only"
    )
    return line + (f"; search cells trained with {', '.join(sorted(capped))}" if capped else "")
