"""The table a reader quotes from a budget curve: per stage and dataset at the headline metric, a row per
method and a column per budget, each entry the mean ± 95% interval over the trained seeds with its marks,
k/n trained and the searched setting chosen on validation; a budget the method cannot reach says so with
the size it can. CSV (every metric, one line per entry), Markdown and LaTeX (the headline metric)."""

from __future__ import annotations

import csv
import io
import json

from ..fmt import metric_label
from ..results import LoadedCell
from ..systems import Role
from .export import cell_text, tex
from .ranks import headline_rows
from .stats import Row, metric_order

COLUMNS = ["stage", "dataset", "metric", "method", "budget", "pct", "mean", "ci_low", "ci_high", "trained"]
COLUMNS += ["collapsed", "chosen", "marks", "note"]


def chosen_settings(cells: list[LoadedCell]) -> dict[tuple, dict]:
    """(stage, method, budget) -> the configuration its search selected (from the cells' selection)."""
    out = {}
    for cell in cells:
        chosen = (cell.result.selection or {}).get("chosen")
        if chosen:
            out.setdefault(cell.key, chosen)
    return out


def _budget_key(budget: str) -> tuple:
    try:
        return (0, float(budget.removeprefix("paper:")))
    except ValueError:
        return (1, 0.0)  # native last: its size is in the % params of its entry


def grid(rows: list[Row]) -> dict[tuple, tuple[list[str], dict[str, dict[str, Row]]]]:
    """(stage, dataset, metric) -> (budgets in order, method -> budget -> row): the PEFT rows and full
    fine-tuning (its one size, under "native")."""
    out = {}
    for key, members in sorted(headline_rows(rows).items()):
        trained = [r for r in members if r.role in (Role.PEFT, Role.REFERENCE)]
        budgets = sorted({r.budget for r in trained}, key=_budget_key)
        table: dict[str, dict[str, Row]] = {}
        for row in trained:
            table.setdefault(row.method, {})[row.budget] = row
        out[key] = (budgets, table)
    return out


def shown(rows: list[Row]) -> list[tuple]:
    """The Markdown and LaTeX tables: each stage's headline metric, where a table has several budgets."""
    headline = {
        stage: metric_order({r.metric for r in rows if r.stage == stage})[0] for stage in {r.stage for r in rows}
    }
    return [
        (key, value)
        for key, value in grid(rows).items()
        if key[2] == headline[key[0]] and sum(_budget_key(b)[0] == 0 for b in value[0]) >= 2
    ]


def several_budgets(rows: list[Row]) -> bool:
    return bool(shown(rows))


def _entry(row: Row | None, chosen: dict | None) -> str:
    if row is None:
        return "-"
    unreachable = next((n for n in row.notes if n.startswith("not run:")), None)
    if unreachable:
        nearest = unreachable.split("closest ", 1)[-1] if "closest " in unreachable else unreachable
        return f"not reachable; nearest: {nearest}"
    text = cell_text(row, rank=False)
    setting = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in (chosen or {}).items())
    return f"{text} · {row.seeds_label}" + (f" · {setting}" if setting else "")


def to_markdown(rows: list[Row], cells: list[LoadedCell]) -> str:
    chosen = chosen_settings(cells)
    out = []
    for (stage, dataset, metric), (budgets, table) in shown(rows):
        out.append(f"### {stage} · {dataset} · {metric_label(metric)} by budget\n")
        out.append("| method | " + " | ".join(f"{b}%" if _budget_key(b)[0] == 0 else b for b in budgets) + " |")
        out.append("|---|" + "---|" * len(budgets))
        for method, by_budget in table.items():
            entries = [_entry(by_budget.get(b), chosen.get((stage, method, b))) for b in budgets]
            out.append(f"| {method} | " + " | ".join(entries) + " |")
        out.append(
            "\nEach entry: mean ± 95% interval over the trained seeds with its marks · k/n trained · the setting "
            "chosen on validation. % trainable per entry: the per-table leaderboard.\n"
        )
    return "\n".join(out)


def to_csv(rows: list[Row], cells: list[LoadedCell]) -> str:
    chosen = chosen_settings(cells)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for (stage, dataset, metric), (budgets, table) in grid(rows).items():
        for method, by_budget in table.items():
            for budget in budgets:
                row = by_budget.get(budget)
                if row is None:
                    continue
                ci = row.ci or (None, None)
                writer.writerow(
                    [stage, dataset, metric, method, budget, row.pct, row.mean if row.values else None]
                    + [ci[0], ci[1], row.seeds_label, row.collapse_label]
                    + [json.dumps(chosen.get((stage, method, budget)) or {}, sort_keys=True), row.marks]
                    + ["; ".join(row.notes)]
                )
    return buffer.getvalue()


def to_latex(rows: list[Row], cells: list[LoadedCell]) -> str:
    chosen = chosen_settings(cells)
    out = []
    for (stage, dataset, metric), (budgets, table) in shown(rows):
        out += [r"\begin{table}[t]\centering\small", r"\begin{tabular}{l" + "r" * len(budgets) + "}", r"\toprule"]
        out.append(" & ".join(["method"] + [tex(f"{b}%") for b in budgets]) + r" \\")
        out.append(r"\midrule")
        for method, by_budget in table.items():
            entries = [tex(_entry(by_budget.get(b), chosen.get((stage, method, b)))) for b in budgets]
            out.append(" & ".join([tex(method), *entries]) + r" \\")
        out.append(r"\bottomrule\end{tabular}")
        caption = (
            f"{stage} · {dataset}: {metric_label(metric)} by budget, mean ± 95% CI over trained seeds, k/n trained"
        )
        out += [r"\caption{" + tex(caption) + "}", r"\end{table}", ""]
    return "\n".join(out)
