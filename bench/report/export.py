"""Leaderboard files: long-format CSV, and Markdown / LaTeX tables per (stage, dataset)."""

from __future__ import annotations

import csv
import io

from ..fmt import num
from .stats import Row, metric_order

CSV_FIELDS = [
    "stage",
    "dataset",
    "metric",
    "method",
    "budget",
    "pct",
    "seeds",
    "mean",
    "std",
    "diff_to_full",
    "p_vs_full_holm",
    "best_other",
    "p_vs_best_holm",
    "marks",
    "failed",
    "diverged",
    "notes",
]


def to_csv(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in rows:
        writer.writerow(
            [
                r.stage,
                r.dataset,
                r.metric,
                r.method,
                r.budget,
                num(r.pct),
                r.seeds,
                num(r.mean if r.values else None),
                num(r.std),
                num(r.diff_to_full),
                num(r.p_vs_full),
                r.best_other or "",
                num(r.p_vs_best),
                r.marks,
                r.failed,
                r.diverged,
                "; ".join(r.notes),
            ]
        )
    return buffer.getvalue()


def cell_text(row: Row | None) -> str:
    if row is None or not row.values:
        return "-"
    spread = f" ± {row.std:.4f}" if row.std is not None else ""
    return f"{row.mean:.4f}{spread}{row.marks}"


def tables(rows: list[Row]):
    """(stage, dataset, metric names, [(method, budget, pct, seeds, {metric: Row})]) per table."""
    grouped: dict[tuple, dict[tuple, dict[str, Row]]] = {}
    for r in rows:
        grouped.setdefault((r.stage, r.dataset), {}).setdefault((r.method, r.budget), {})[r.metric] = r
    for (stage, dataset), systems in grouped.items():
        metrics = metric_order({m for s in systems.values() for m in s})
        lines = []
        for (method, budget), by_metric in sorted(systems.items(), key=lambda kv: -_mean(kv[1], metrics)):
            any_row = next(iter(by_metric.values()))
            lines.append((method, budget, any_row.pct, any_row.seeds, by_metric))
        yield stage, dataset, metrics, lines


def _mean(by_metric: dict, metrics: list[str]) -> float:
    row = by_metric.get(metrics[0]) if metrics else None
    return row.mean if row is not None and row.values else float("-inf")


def to_markdown(rows: list[Row]) -> str:
    out = []
    for stage, dataset, metrics, lines in tables(rows):
        out.append(f"### {stage} · {dataset}\n")
        out.append("| method | budget | % params | seeds | " + " | ".join(metrics) + " |")
        out.append("|---|---|---|---|" + "---|" * len(metrics))
        for method, budget, pct, seeds, by_metric in lines:
            out.append(
                f"| {method} | {budget} | {num(pct, 3) if pct else '-'} | {seeds} | "
                + " | ".join(cell_text(by_metric.get(m)) for m in metrics)
                + " |"
            )
        out.append("")
    out.append(
        "Mean ± std over seeds. * beats full fine-tuning, † beats the best other PEFT method at the same "
        "budget (paired t-test over queries, Holm-corrected, p ≤ 0.05)."
    )
    return "\n".join(out) + "\n"


def _tex(text: str) -> str:
    for char, escaped in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("$", r"\$"),
        ("#", r"\#"),
        ("_", r"\_"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("~", r"\textasciitilde{}"),
        ("^", r"\textasciicircum{}"),
    ):
        text = text.replace(char, escaped)
    return text.replace("±", r"$\pm$").replace("†", r"$^\dagger$").replace("*", r"$^*$")


def to_latex(rows: list[Row]) -> str:
    out = []
    for stage, dataset, metrics, lines in tables(rows):
        out.append(r"\begin{table}[t]\centering\small")
        out.append(r"\begin{tabular}{ll r r " + "r" * len(metrics) + "}")
        out.append(r"\toprule")
        out.append(" & ".join(["method", "budget", r"\% params", "seeds"] + [_tex(m) for m in metrics]) + r" \\")
        out.append(r"\midrule")
        for method, budget, pct, seeds, by_metric in lines:
            out.append(
                " & ".join(
                    [_tex(method), _tex(budget), num(pct, 3) if pct else "-", str(seeds)]
                    + [_tex(cell_text(by_metric.get(m))) for m in metrics]
                )
                + r" \\"
            )
        out.append(r"\bottomrule\end{tabular}")
        out.append(r"\caption{" + _tex(f"{stage}, {dataset}: mean ± std over seeds") + "}")
        out.append(r"\end{table}")
        out.append("")
    return "\n".join(out)
