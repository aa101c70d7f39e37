"""Leaderboard files: a long-format CSV (one row per family and system), and Markdown / LaTeX with a
headline table per stage (a row per method x budget, a column per dataset) then one table per family."""

from __future__ import annotations

import csv
import io

from ..fmt import duration, metric_label, num
from ..systems import Role
from .ranks import headline_ranks, in_headline
from .stats import ALPHA, Row, families, metric_order

CSV_FIELDS = [
    "stage",
    "dataset",
    "metric",
    "table_budget",
    "method",
    "budget",
    "pct",
    "knobs",
    "paper_knobs",
    "paper_pct",
    "seeds",
    "collapsed",
    "mean",
    "std",
    "ci95_low",
    "ci95_high",
    "diff_to_full",
    "p_vs_full_holm",
    "marks",
    "rank",
    "rank_low",
    "rank_high",
    "family_size",
    "test",
    "notes",
    "train_s",
    "peak_memory_mb",
    "trainable",
]


def paper_setting(row: Row) -> tuple[dict, float] | None:
    """(the IAA paper's knobs, its percentage) for a ``paper:X`` row."""
    if not row.budget.startswith("paper:"):
        return None
    import methods

    named = row.budget.removeprefix("paper:")
    try:
        knobs = methods.get_method(row.method).paper.get(named)
    except methods.MethodError:
        return None
    return (knobs, float(named)) if knobs else None


def knobs_text(knobs: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in knobs.items() if k not in ("dropout", "targets", "table", "seed")) or "-"


def _test_name(row: Row) -> str:
    return "; ".join(sorted({t.procedure for t in row.tests.values()}))


def to_csv(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in rows:
        paper = paper_setting(r)
        ci = r.ci
        writer.writerow(
            [
                r.stage,
                r.dataset,
                r.metric,
                r.family_budget,
                r.method,
                r.budget,
                num(r.pct),
                knobs_text(r.knobs),
                knobs_text(paper[0]) if paper else "",
                num(paper[1], 1) if paper else "",
                r.seeds_label,
                r.collapse_label,
                num(r.mean if r.values else None),
                num(r.std),
                num(ci[0] if ci else None),
                num(ci[1] if ci else None),
                num(r.diff_to_full),
                num(r.p_vs_full),
                r.marks,
                r.rank or "",
                r.rank_low or "",
                r.rank_high or "",
                r.family_size,
                _test_name(r),
                "; ".join(r.notes),
                num(r.train_time, 1),
                num(r.memory, 0),
                "" if r.trainable is None or r.role.baseline else r.trainable,
            ]
        )
    return buffer.getvalue()


def cell_text(row: Row | None, rank: bool = True, headline: bool = False) -> str:
    """``mean ± CI half-width`` with the marks and the rank interval: ``0.7134 ± 0.0120*† [1-2]``; an
    interval clipped at the metric's range is shown by its ends, ``0.5264 [0.4052, 0.6476]``. ``headline``:
    the rank interval among the headline table's rows (else among the row's family)."""
    if row is None or not row.values:
        return "-" if row is None else f"- ({row.seeds_label})"
    ci = row.ci
    spread = f" ± {(ci[1] - ci[0]) / 2:.4f}" if ci else ""
    if ci and row.ci_clipped:
        spread = f" [{ci[0]:.4f}, {ci[1]:.4f}]"
    if row.role.baseline or (row.complete and not row.collapsed):
        flag = ""
    else:
        flag = f" ({row.seeds_label} trained)" if row.collapsed else f" ({row.seeds_label})"
    ranks = ""
    low, high = (row.headline_rank_low, row.headline_rank_high) if headline else (row.rank_low, row.rank_high)
    if rank and low is not None and row.role is not Role.REFERENCE and not row.role.baseline:
        ranks = f" [{low}]" if low == high else f" [{low}-{high}]"
    return f"{row.mean:.4f}{spread}{row.marks}{ranks}{flag}"


def headline(rows: list[Row]):
    """Per stage: (stage, metric, datasets, [(method, budget, pct, seeds, role, {dataset: Row})]): the
    stage's headline metric, one line per method x budget, baselines and full fine-tuning first."""
    headline_ranks(rows)
    by_stage: dict[str, list[Row]] = {}
    for row in rows:
        by_stage.setdefault(row.stage, []).append(row)
    for stage, stage_rows in by_stage.items():
        metric = metric_order({r.metric for r in stage_rows})[0]
        datasets = sorted({r.dataset for r in stage_rows})
        lines: dict[tuple, dict] = {}
        for r in stage_rows:
            if r.metric == metric and in_headline(stage_rows, r):
                lines.setdefault((r.method, r.budget), {})[r.dataset] = r
        order = {Role.FIRST_STAGE: 0, Role.UNTRAINED: 1, Role.REFERENCE: 2, Role.PEFT: 3, Role.OTHER: 4}
        items = []
        for (method, budget), by_dataset in lines.items():
            any_row = next(iter(by_dataset.values()))
            first = by_dataset.get(datasets[0])
            items.append(
                (
                    order[any_row.role],
                    budget,
                    -(first.mean if first and first.values else -1),
                    method,
                    (method, budget, any_row.pct, any_row.seeds_label, any_row.role, by_dataset),
                )
            )
        yield stage, metric, datasets, [item[-1] for item in sorted(items, key=lambda i: i[:4])]


def family_tables(rows: list[Row]):
    for (stage, dataset, metric, budget), members in sorted(families(rows).items()):
        ordered = sorted(members, key=lambda r: (r.rank or 10**6, r.method))
        yield stage, dataset, metric, budget, ordered


PROCEDURES = [
    "Mean over the trained seeds ± the half-width of a 95% Student t-interval over them (no interval with one "
    "seed); an interval reaching past the metric's range [0, 1] is clipped to it and shown by its two ends.",
    "Tests: two-sided, queries and seeds both sources of variance (a linear mixed model's variance "
    "components, ANOVA estimators, Satterthwaite df; Ferro & Silvello, SIGIR 2016; Bouthillier et al., MLSys "
    "2021; Satterthwaite, 1946); with one seed, ranx's paired t-test over queries, labelled.",
    f"Families: one per table (stage, dataset, metric, budget), Holm's correction within it, α = {ALPHA}; the "
    "headline table's ranks are a family of their own, and so is each of a board's claims (bench/report/claims.py).",
    "Marks: * significantly above full fine-tuning; † significantly above every other PEFT method at the same "
    "budget (tested against all: none is picked by its test score). k/n seeds finished with k < n: no mark.",
    "Trained: k/n seeds that trained; collapsed: seeds whose training loss stayed at chance (the last tenth of "
    "the steps within 0.01 nats of it, decided before any test score; bench/collapse.py). Means, intervals, "
    "tests and ranks are over the trained seeds; a collapse is a result about stability, not quality.",
    "[a-b]: the rank interval among the rows of the table it is printed in, 1 + the rows significantly above, n - "
    "the rows significantly below (the headline table's rows are a family of their own: every pair tested, "
    "Holm over its pairs).",
    "Cost: train time, the training loop's wall time (mean over seeds, on the machine that ran it); peak "
    "memory, the process's peak resident memory (a GPU's peak allocation where it ran on one), mean over "
    "seeds; trainable, the parameters trained (the head included).",
]


def cost_text(row: Row | None) -> list[str]:
    """Training time (mean over seeds), peak memory (mean, MB) and trainable parameters of a row."""
    if row is None or row.role.baseline:
        return ["-", "-", "-"]
    trainable = f"{row.trainable:,}" if row.trainable is not None else "-"
    memory = f"{row.memory:,.0f} MB" if row.memory is not None else "-"
    return [duration(row.train_time) if row.train_time else "-", memory, trainable]


def headline_markdown(rows: list[Row]) -> str:
    """The headline table per stage: a row per method x budget, its mean ± CI, marks and rank interval per
    dataset, then its cost (what `bench report --format md` prints and the README shows)."""
    out = []
    for stage, metric, datasets, lines in headline(rows):
        out.append(f"## {stage}: {metric_label(metric)}\n")
        out.append(
            "| method | budget | % params | trained | collapsed | "
            + " | ".join(datasets)
            + " | train time | peak memory | trainable |"
        )
        out.append("|---|---|---|---|---|" + "---|" * len(datasets) + "---|---|---|")
        for method, budget, pct, seeds, role, by_dataset in lines:
            shown = "-" if role.baseline else budget
            first = by_dataset.get(datasets[0]) or next(iter(by_dataset.values()))
            collapsed = "-" if role.baseline else first.collapse_label
            out.append(
                f"| {method} | {shown} | {num(pct, 3) if pct else '-'} | {'-' if role.baseline else seeds} | "
                f"{collapsed} | "
                + " | ".join(cell_text(by_dataset.get(d), headline=True) for d in datasets)
                + " | "
                + " | ".join(cost_text(first))
                + " |"
            )
        out.append("")
    return "\n".join(out)


def to_markdown(rows: list[Row], notes: list[str] = ()) -> str:
    out = [headline_markdown(rows)]
    out.append("### Per table\n")
    for stage, dataset, metric, budget, members in family_tables(rows):
        out.append(f"#### {stage} · {dataset} · {metric_label(metric)} · budget {budget}\n")
        out.append(
            "| rank | method | budget | % params | knobs | trained | collapsed | mean ± 95% CI | Δ full | p vs full "
            "| train time | peak memory | trainable |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in members:
            paper = paper_setting(r)
            knobs = knobs_text(r.knobs) + (f" (paper: {knobs_text(paper[0])}, {paper[1]:g}%)" if paper else "")
            out.append(
                f"| {r.rank or '-'} | {r.method} | {r.budget} | {num(r.pct, 3) if r.pct else '-'} | {knobs} | "
                f"{r.seeds_label} | {r.collapse_label} | {cell_text(r)} | {num(r.diff_to_full)} | {num(r.p_vs_full)} | "
                + " | ".join(cost_text(r))
                + " |"
            )
        out.append(f"\nFamily: {len(members)} systems, {members[0].family_size} pairwise tests, Holm-corrected.\n")
    out.append("\n".join(f"- {line}" for line in PROCEDURES + list(notes)))
    return "\n".join(out) + "\n"


def tex(text: str) -> str:
    """Text escaped for LaTeX: _ % & # $ { } ~ ^ \\ and the marks."""
    replacements = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "±": r"$\pm$",
        "†": r"$^\dagger$",
        "*": r"$^*$",
    }
    return "".join(replacements.get(ch, ch) for ch in str(text))


def to_latex(rows: list[Row]) -> str:
    out = []
    for stage, metric, datasets, lines in headline(rows):
        out.append(r"\begin{table}[t]\centering\small")
        out.append(r"\begin{tabular}{ll r r " + "r" * len(datasets) + "}")
        out.append(r"\toprule")
        out.append(" & ".join(["method", "budget", r"\% params", "seeds"] + [tex(d) for d in datasets]) + r" \\")
        out.append(r"\midrule")
        for method, budget, pct, seeds, role, by_dataset in lines:
            out.append(
                " & ".join(
                    [
                        tex(method),
                        "-" if role.baseline else tex(budget),
                        num(pct, 3) if pct else "-",
                        "-" if role.baseline else tex(seeds),
                    ]
                    + [tex(cell_text(by_dataset.get(d), headline=True)) for d in datasets]
                )
                + r" \\"
            )
        out.append(r"\bottomrule\end{tabular}")
        out.append(
            r"\caption{" + tex(f"{stage}: {metric_label(metric)}, mean ± 95% CI over seeds; " + PROCEDURES[3]) + "}"
        )
        out.append(r"\end{table}")
        out.append("")
    return "\n".join(out)
