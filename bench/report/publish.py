"""A published board's README: how it was made (commands, commit, machine, wall time per cell and in
total), its headline table, and what it finds on the IAA paper's claims, each answered by the board's own
tests and intervals (nothing chosen by a test score: every claim is read the same way on any board)."""

from __future__ import annotations

import statistics
from collections import Counter

from ..fmt import duration, metric_label, num
from ..results import LoadedCell, Status
from ..systems import Role
from .export import PROCEDURES, headline_markdown
from .stats import ALPHA, Row, metric_order

IAA = ("iaa-s", "iaa-l", "iaa-m")
SHOWN_VERSIONS = {"python", "torch", "transformers", "ranx", "peft-ir-bench", "accelerate", "numpy"}


def board_readme(
    board: str, suite: str, about: str, cells: list[LoadedCell], rows: list[Row], commands: list[str]
) -> str:
    """``board``: the published folder's name; ``suite``: the suite its cells belong to."""
    out = [f"# {board}\n", about.strip() + "\n"] if about.strip() else [f"# {board}\n"]
    out += ["## How it was made\n", *_provenance(cells), ""]
    out += ["Commands (run from the repository root; the store resumes, so a grid spans sittings):\n", "```"]
    out += commands or [f"bench run --suite {suite}"]
    out += ["```\n", "Check it, or continue it on another machine:\n", "```"]
    out += [
        f"bench verify reports/published/{board} --same-machine   # re-runs 2 cells, compares every metric (1e-6)",
        f"bench run --suite {suite} --resume-from reports/published/{board}/results.jsonl",
        "```\n",
    ]
    out += ["## Wall time\n", *_wall_times(cells), ""]
    out += ["## Search\n", *_search_table(cells), ""]
    out += ["## Seeds\n", *seed_table(cells), ""]
    out += ["## Headline\n", headline_markdown(rows), *[f"- {line}" for line in PROCEDURES], ""]
    out += ["## The IAA paper's claims at this scale\n", *claims(rows), ""]
    return "\n".join(out).rstrip() + "\n"


def _provenance(cells: list[LoadedCell]) -> list[str]:
    done = [c.result for c in cells if c.status.scored]
    commits = Counter(r.git_commit or "unknown" for r in done)
    devices = Counter(r.device or "unknown" for r in done)
    versions = done[0].versions if done else {}
    status = Counter(c.status.value for c in cells)
    lines = [
        "- code: " + ", ".join(f"commit {c} ({_cell_count(n)})" for c, n in commits.most_common()),
        "- machine: " + ", ".join(f"{d} ({_cell_count(n)})" for d, n in devices.most_common()),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if k in SHOWN_VERSIONS),
        "- cells: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items())),
    ]
    problems = [c for c in cells if c.status in (Status.FAILED, Status.DIVERGED)]
    lines += [f"  - {c.result.method} seed {c.result.seed}: {c.status.value}: {c.result.error}" for c in problems]
    return lines


def _cell_count(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"


def _wall_times(cells: list[LoadedCell]) -> list[str]:
    """Per method: cells, mean wall time of a cell and its training; the total over every cell (the search's
    included: it is what the board cost)."""
    by_method: dict[tuple, list] = {}
    for cell in cells:
        if cell.status.scored:  # a collapsed cell cost its time too
            key = (cell.result.method, cell.result.phase or "grid")
            by_method.setdefault(key, []).append(cell.result.times)
    total = sum(t.get("total_s", 0.0) for times in by_method.values() for t in times)
    lines = [
        "| method | phase | cells | wall time per cell (mean) | training per cell (mean) |",
        "|---|---|---|---|---|",
    ]
    for (method, phase), times in sorted(by_method.items()):
        cell_s = statistics.mean(t.get("total_s", 0.0) for t in times)
        train_s = statistics.mean(t.get("train_s", 0.0) for t in times)
        lines.append(
            f"| {method} | {phase} | {len(times)} | {duration(cell_s)} | {duration(train_s) if train_s else '-'} |"
        )
    return [
        f"Total: {duration(total)} of cell wall time over {sum(map(len, by_method.values()))} finished cells.\n"
    ] + lines


def _lr(result) -> float | None:
    return (result.config.get("train") or {}).get("lr")


def _search_table(cells: list[LoadedCell]) -> list[str]:
    """Every searched configuration's validation score (the search cells' seed), and whether it was selected:
    what the board's choices rest on (the test data never enter them)."""
    searched = [c for c in cells if c.status.scored and c.result.validation and c.result.phase]
    if not searched:
        return ["No search cell has finished yet."]
    chosen = {
        (c.result.stage, c.result.method, c.result.budget): c.result.selection["chosen"].get("lr")
        for c in cells
        if c.result.selection and c.result.selection.get("chosen")
    }
    lines = [
        "Each trained method's learning rate is chosen by its mean validation score over the search seeds "
        "(`bench/search.py`); the chosen configuration's search cell is then scored on the test data "
        "(selected: pending until every configuration of the method has its score).\n",
        "| stage | method | budget | lr | seed | validation | metric | value | selected |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(searched, key=lambda c: (c.result.stage, c.result.method, c.result.budget, c.result.seed))
    for cell in ordered:
        r = cell.result
        lr = _lr(r)
        group = (r.stage, r.method, r.budget)
        picked = "pending" if group not in chosen else ("yes" if chosen[group] == lr else "no")
        for dataset, metrics in sorted(r.validation.items()):
            metric = metric_order(set(metrics))[0]
            lines.append(
                f"| {r.stage} | {r.method} | {r.budget} | {lr:g} | {r.seed} | {dataset} | {metric_label(metric)} "
                f"| {metrics[metric]:.4f} | {picked} |"
            )
    return lines


def seed_table(cells: list[LoadedCell]) -> list[str]:
    """Every trained cell scored on the test data, one row per seed: its headline metric beside its training
    loss at the start and at the end (the mean over the first and the last tenth of the steps), so that a seed
    that never trained (a flat loss) is seen, not only its row's wider interval."""
    scored = [c for c in cells if c.status.scored and c.losses and c.result.metrics]
    if not scored:
        return ["No trained cell has a test score yet."]
    lines = [
        "Each trained cell on the test data, per seed; training loss: the mean over the first and over the last "
        "tenth of its steps.\n",
        "| stage | method | budget | lr | seed | dataset | metric | value | training loss (start → end) | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(scored, key=lambda c: (c.result.stage, c.result.method, str(c.result.budget), c.result.seed))
    for cell in ordered:
        r = cell.result
        lr = _lr(r)
        tenth = max(1, len(cell.losses) // 10)
        start, end = statistics.fmean(cell.losses[:tenth]), statistics.fmean(cell.losses[-tenth:])
        for dataset, metrics in sorted(r.metrics.items()):
            metric = metric_order(set(metrics))[0]
            lines.append(
                f"| {r.stage} | {r.method} | {r.budget} | {'-' if lr is None else f'{lr:g}'} | {r.seed} | {dataset} "
                f"| {metric_label(metric)} | {metrics[metric]:.4f} | {start:.3f} → {end:.3f} | {cell.status.value} |"
            )
    return lines


def _verdict(difference: float | None, p: float | None, than: str) -> str:
    if difference is None or p is None:
        return "not tested"
    if p < ALPHA:
        return f"significantly {'above' if difference > 0 else 'below'} {than}"
    return f"not distinguishable from {than}"


def claims(rows: list[Row]) -> list[str]:
    """Per table (stage, dataset, headline metric, budget) with PEFT rows: (1) is each PEFT method below full
    fine-tuning, (2) is IAA-L at least Adapter, (3) are the IAA variants steadier over seeds."""
    out = []
    metric = {stage: metric_order({r.metric for r in rows if r.stage == stage})[0] for stage in {r.stage for r in rows}}
    tables: dict[tuple, list[Row]] = {}
    for row in rows:
        if row.metric == metric[row.stage]:
            tables.setdefault((row.stage, row.dataset, row.metric, row.family_budget), []).append(row)
    for (stage, dataset, name, budget), members in sorted(tables.items()):
        peft = {r.method: r for r in members if r.role is Role.PEFT and r.values}
        if not peft:
            continue
        full = next((r for r in members if r.role is Role.REFERENCE and r.values), None)
        out.append(f"### {stage} · {dataset} · {metric_label(name)} · budget {budget}\n")
        out += _below_full(peft, full)
        out += _iaa_l_vs_adapter(peft)
        out += _steadier(peft)
        out += _collapses({r.method: r for r in members if r.role is Role.PEFT})
        out.append("")
    return out or ["No table with trained PEFT methods yet."]


def _below_full(peft: dict[str, Row], full: Row | None) -> list[str]:
    if full is None:
        return ["1. **PEFT below full fine-tuning?** No full fine-tuning row with results: not answered."]
    verdicts = {m: _verdict(r.diff_to_full, r.p_vs_full, "full fine-tuning") for m, r in sorted(peft.items())}
    below = [m for m, v in verdicts.items() if "below" in v]
    above = [m for m, v in verdicts.items() if "above" in v]
    lines = [
        f"1. **PEFT methods below full fine-tuning?** Full fine-tuning {full.mean:.4f} ({full.seeds_label} seeds). "
        f"{len(below)} of {len(verdicts)} PEFT methods significantly below it"
        + (f" ({', '.join(below)})" if below else "")
        + (f"; {len(above)} significantly above ({', '.join(above)})" if above else "")
        + ("; the rest not distinguishable" if len(below) + len(above) < len(verdicts) else "")
        + f" (Holm-corrected, α = {ALPHA}):"
    ]
    for method, verdict in verdicts.items():
        r = peft[method]
        lines.append(f"   - {method}: Δ {num(r.diff_to_full)}, p {num(r.p_vs_full)}: {verdict}")
    return lines


def _iaa_l_vs_adapter(peft: dict[str, Row]) -> list[str]:
    iaa, adapter = peft.get("iaa-l"), peft.get("adapter")
    if iaa is None or adapter is None:
        return ["2. **IAA-L at least Adapter?** IAA-L or Adapter has no results here: not answered."]
    test, p = iaa.tests.get("adapter"), iaa.adjusted.get("adapter")
    verdict = _verdict(test.difference if test else None, p, "Adapter")
    answer = "no" if "below" in verdict else ("yes, and above" if "above" in verdict else "not contradicted")
    return [
        f"2. **IAA-L at least Adapter?** {answer}: IAA-L {iaa.mean:.4f}, Adapter {adapter.mean:.4f}, "
        f"Δ {num(test.difference if test else None)}, p {num(p)} (Holm): {verdict}."
    ]


def pooled_variance(spread: dict[str, float], seeds: dict[str, int], methods: list[str]) -> tuple[float, int]:
    """The seed variance pooled over ``methods`` (each weighted by its seeds - 1) and its degrees of freedom."""
    df = sum(seeds[m] - 1 for m in methods)
    return sum(spread[m] ** 2 * (seeds[m] - 1) for m in methods) / df, df


def seed_variance_tests(spread: dict[str, float], seeds: dict[str, int], tested: list[str]) -> dict[str, tuple]:
    """Each ``tested`` method's seed variance against the other methods' pooled one (pooled over
    ``spread``'s untested methods, each weighted by its seeds - 1): (variance ratio, two-sided F-test p,
    Holm-adjusted p over ``tested``). Snedecor's variance ratio test (normal seed means); Holm, 1979;
    the family-wise rate is measured in tests/bench/test_significance.py."""
    from scipy import stats

    from .significance import holm

    pooled, df_others = pooled_variance(spread, seeds, [m for m in spread if m not in tested])
    found = {}
    for method in tested:
        df = seeds[method] - 1
        ratio = spread[method] ** 2 / pooled if pooled > 0 else (1.0 if spread[method] == 0 else float("inf"))
        found[method] = (ratio, min(1.0, 2 * min(stats.f.cdf(ratio, df, df_others), stats.f.sf(ratio, df, df_others))))
    adjusted = holm([p for _, p in found.values()]) if found else []
    return {m: (ratio, p, q) for (m, (ratio, p)), q in zip(found.items(), adjusted, strict=True)}


def _steadier(peft: dict[str, Row]) -> list[str]:
    """Seed standard deviations, and each IAA variant's seed variance against the other PEFT methods'
    pooled one (``seed_variance_tests``; with 3 seeds it has little power)."""
    spread = {m: r.std for m, r in peft.items() if r.std is not None}
    iaa = [m for m in IAA if m in spread]
    others = [m for m in spread if m not in IAA]
    if not iaa or not others:
        return ["3. **IAA variants steadier over seeds?** Too few methods with two or more seeds: not answered."]
    seeds = {m: peft[m].seeds for m in spread}
    pooled, df_others = pooled_variance(spread, seeds, others)
    lines = [
        "3. **IAA variants steadier over seeds?** Seed standard deviation of each PEFT method's mean: "
        + ", ".join(f"{m} {spread[m]:.4f}" for m in sorted(spread, key=spread.get))
        + f"; the other PEFT methods pooled: {pooled**0.5:.4f} (df {df_others}). Each IAA variant's variance"
        " against the pool, two-sided F-test, Holm-corrected over the IAA variants:"
    ]
    for method, (ratio, p, adjusted) in seed_variance_tests(spread, seeds, iaa).items():
        word = "steadier" if ratio < 1 else "less steady"
        shown = "significantly " + word if adjusted < ALPHA else f"{word} in this sample, not significantly"
        lines.append(
            f"   - {method}: variance ratio {ratio:.2f} against the pool, F-test p {p:.3f}, "
            f"Holm p {adjusted:.3f}: {shown}"
        )
    return lines


def _collapses(peft: dict[str, Row]) -> list[str]:
    """Claim 3's other half: how often each IAA variant collapsed against the inside-only adapter (Houlsby),
    Fisher's exact test (two-sided; Fisher 1922, scipy), Holm over the IAA variants, and the smallest p the
    design can reach (its power: with 3 seeds a side no count can reach 0.05)."""
    from scipy.stats import fisher_exact

    from .significance import holm

    base = peft.get("adapter")
    iaa = [m for m in IAA if m in peft]
    if base is None or not iaa:
        return []
    line = "   Collapsed seeds (training loss at chance): " + ", ".join(
        f"{m} {peft[m].collapse_label}" for m in ["adapter", *iaa]
    )
    tests = {}
    for method in iaa:
        row = peft[method]
        table = [[row.collapsed, row.seeds], [base.collapsed, base.seeds]]
        tests[method] = fisher_exact(table)[1]
    adjusted = dict(zip(tests, holm(list(tests.values())), strict=True))
    n = min(peft[m].seeds + peft[m].collapsed for m in ["adapter", *iaa])
    floor = fisher_exact([[n, 0], [0, n]])[1] if n else 1.0
    parts = [f"{m} Fisher p {tests[m]:.3f} (Holm {adjusted[m]:.3f})" for m in iaa]
    verdict = (
        f"not answerable here: with {n} seeds a side the smallest p Fisher's test can reach is {floor:.3f}"
        if floor >= ALPHA
        else ("a difference" if min(adjusted.values()) < ALPHA else "no significant difference")
    )
    return [line + "; against adapter: " + ", ".join(parts) + f": {verdict}."]
