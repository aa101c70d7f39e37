"""The IAA paper's three claims, each tested in a family of its own and answered with its power at the
board's design (docs/statistics.md measures the error rates these rest on):

1. Each PEFT method below full fine-tuning: the pairwise seed-aware test (``significance.compare``) of every
   PEFT row of the headline table (every budget) against full fine-tuning, Holm over those comparisons alone
   (Holm, 1979). Beside each, the smallest difference the comparison detects with 80% power.
2. IAA-L at least Adapter: one-sided non-inferiority at the margin the suite declares before the run
   (``non_inferiority_margin``): yes when the lower end of the 90% interval of IAA-L minus Adapter is above
   minus the margin, no when its upper end is below it, else undecided (the confidence-interval reading of a
   one-sided test at alpha = 0.05; Piaggio et al., CONSORT extension for non-inferiority trials, JAMA 2012).
3. IAA steadier over seeds: (a) collapse counts against the inside-only Adapter, Fisher's exact test on the
   counts pooled over budgets (Fisher, 1922), with the smallest p the design can reach; (b) the spread of the
   trained seeds' means against Adapter's, Brown-Forsythe's test (Levene's with the median; Brown &
   Forsythe, JASA 1974), Holm over the IAA variants, with its power at this design for a 3x smaller seed
   standard deviation, by a seeded simulation. "Not answerable" where a side has fewer than 3 trained seeds;
   (c) where the records hold the search: the collapses over every cell the search trained (every seed at
   every lr), counted at the lrs both methods tried (a collapse depends on the lr: an lr one method never
   tried is no evidence of its stability), Fisher's exact test, Holm over the IAA variants. Under protocol v2
   the finals sit at the best validation lr, where collapses are rare: the search is where they show.
"""

from __future__ import annotations

import math

import numpy as np

from ..fmt import metric_label, num
from ..results import Status
from ..systems import Role
from .ranks import headline_rows
from .significance import holm
from .stats import ALPHA, Row, metric_order

IAA = ("iaa-s", "iaa-l", "iaa-m")
BASELINE = "adapter"  # the inside-only method the IAA variants add an aside path to
POWER = 0.8
STEADIER_RATIO = 3.0  # claim 3's effect for its power: a seed standard deviation 3x smaller
MIN_SPREAD_SEEDS = 3  # with 2 seeds both deviations from the median are equal: no spread to test


def claims(rows: list[Row], margin: float | None = None, cells: list | None = None) -> list[str]:
    """Per headline table (stage, dataset, its headline metric): the three claims. ``cells``: the board's
    records (LoadedCell), search cells included, for claim 3's collapses over the search."""
    out = []
    metric = {stage: metric_order({r.metric for r in rows if r.stage == stage})[0] for stage in {r.stage for r in rows}}
    tables = {key: members for key, members in headline_rows(rows).items() if key[2] == metric[key[0]]}
    for (stage, dataset, name), members in sorted(tables.items()):
        peft = [r for r in members if r.role is Role.PEFT]
        if not any(r.values for r in peft):
            continue
        full = next((r for r in members if r.role is Role.REFERENCE and r.values), None)
        out.append(f"### {stage} · {dataset} · {metric_label(name)}\n")
        budgets = by_budget(peft)
        for budget, rows_at in budgets.items():
            if len(budgets) > 1:
                out.append(f"#### budget {budget}%\n")
            out += below_full([r for r in rows_at if r.values], full)
            out += iaa_l_vs_adapter(rows_at, margin)
            out += steadier(rows_at, pooled=len(budgets) == 1)
            out += search_collapses(cells or [], stage, budget)
            out.append("")
        if len(budgets) > 1:
            out += smallest_non_inferior(peft, full, margin)
            out.append("")
    return out or ["No table with trained PEFT methods yet."]


def _pct(budget: str) -> float | None:
    try:
        return float(budget.removeprefix("paper:"))
    except ValueError:
        return None


def by_budget(peft: list[Row]) -> dict[str, list[Row]]:
    """The claims' families: one per budget (ascending), each one-size method (BitFit) in the family of the
    budget nearest its size on a log scale; one family when the table has one budget."""
    sized = sorted({r.budget for r in peft if _pct(r.budget)}, key=_pct)
    out: dict[str, list[Row]] = {b: [] for b in sized}
    for row in peft:
        home = row.budget
        if _pct(home) is None:
            if not sized or not row.pct:
                out.setdefault(home, []).append(row)
                continue
            home = min(sized, key=lambda b: abs(math.log(_pct(b)) - math.log(row.pct)))
        out[home].append(row)
    return out


def _label(row: Row, rows: list[Row]) -> str:
    budgets = {r.budget for r in rows if r.method == row.method}
    return row.method if len(budgets) == 1 else f"{row.method} ({row.budget})"


def detectable(test, comparisons: int) -> float | None:
    """The smallest difference a comparison detects with 80% power at Holm's first step (alpha / m):
    (t_{1 - alpha/(2m)} + t_{power}) x its standard error, at the test's df."""
    from scipy import stats

    if test is None or not math.isfinite(test.se) or test.se <= 0:
        return None
    df = test.df if math.isfinite(test.df) else 1e6
    return float((stats.t.ppf(1 - ALPHA / (2 * comparisons), df) + stats.t.ppf(POWER, df)) * test.se)


def below_full(peft: list[Row], full: Row | None) -> list[str]:
    if full is None:
        return ["1. **PEFT methods below full fine-tuning?** No full fine-tuning row with results: not answered."]
    tested = [(r, r.tests.get(full.method)) for r in peft]
    tested = [(r, t) for r, t in tested if t is not None]
    untested = [r for r in peft if r.tests.get(full.method) is None]
    adjusted = holm([t.p for _, t in tested], ALPHA)
    verdicts = []
    for (row, test), p in zip(tested, adjusted, strict=True):
        word = "not distinguishable"
        if p <= ALPHA:
            word = "significantly below" if test.difference < 0 else "significantly above"
        verdicts.append((row, test, p, word))
    below = [_label(r, peft) for r, _, _, w in verdicts if w == "significantly below"]
    above = [_label(r, peft) for r, _, _, w in verdicts if w == "significantly above"]
    lines = [
        f"1. **PEFT methods below full fine-tuning?** Full fine-tuning {full.mean:.4f} ({full.seeds_label} seeds "
        f"trained). {len(below)} of {len(verdicts)} PEFT methods significantly below it"
        + (f" ({', '.join(below)})" if below else "")
        + (f"; {len(above)} significantly above ({', '.join(above)})" if above else "")
        + f". Family: these {len(verdicts)} comparisons, Holm, α = {ALPHA}; 80% power at a difference of "
        "about the detectable Δ shown:"
    ]
    for row, test, p, word in verdicts:
        smallest = detectable(test, len(verdicts))
        lines.append(
            f"   - {_label(row, peft)}: Δ {num(test.difference)}, p {test.p:.4f}, Holm p {p:.4f}: {word}; "
            f"detectable Δ {num(smallest)} ({row.seeds_label} vs {full.seeds_label} seeds)"
        )
    lines += [f"   - {_label(r, peft)}: not tested ({'; '.join(r.notes) or 'no shared queries'})" for r in untested]
    return lines


def non_inferiority(test, margin: float) -> tuple[str, float, float]:
    """(yes / no / undecided, the 90% interval's ends) for ``test`` (a minus b) at ``margin``."""
    from scipy import stats

    df = test.df if math.isfinite(test.df) else 1e6
    half = float(stats.t.ppf(1 - ALPHA, df)) * test.se
    low, high = test.difference - half, test.difference + half
    if low > -margin:
        return "yes", low, high
    if high < -margin:
        return "no", low, high
    return "undecided", low, high


def iaa_l_vs_adapter(peft: list[Row], margin: float | None) -> list[str]:
    head = "2. **IAA-L at least Adapter?**"
    pairs = [(r, next((a for a in peft if a.method == BASELINE and a.budget == r.budget), None)) for r in peft]
    pairs = [(i, a) for i, a in pairs if i.method == "iaa-l" and a is not None]
    if not pairs:
        return [f"{head} IAA-L or Adapter has no results here: not answered."]
    if margin is None:
        return [
            f"{head} Not answered: the suite declares no non-inferiority margin (`non_inferiority_margin`, "
            "set before the run)."
        ]
    lines = [
        f"{head} Non-inferiority at the suite's margin {margin:g} (declared before the run): yes when the "
        f"90% interval of IAA-L minus Adapter lies above −{margin:g}, no when it lies below, else undecided:"
    ]
    for iaa, adapter in pairs:
        test = iaa.tests.get(BASELINE)
        if test is None or not math.isfinite(test.se):
            lines.append(f"   - budget {iaa.budget}: not tested")
            continue
        answer, low, high = non_inferiority(test, margin)
        lines.append(
            f"   - budget {iaa.budget}: **{answer}**: IAA-L {iaa.mean:.4f} ({iaa.seeds_label} trained), Adapter "
            f"{adapter.mean:.4f} ({adapter.seeds_label}), Δ {num(test.difference)}, 90% interval "
            f"[{low:+.4f}, {high:+.4f}]"
        )
    return lines


def brown_forsythe(a: list[float], b: list[float]) -> float:
    from scipy import stats

    return float(stats.levene(a, b, center="median").pvalue)


def spread_power(n_a: int, n_b: int, replicates: int = 4000, seed: int = 0) -> float:
    """Brown-Forsythe's power at alpha for ``n_a`` vs ``n_b`` normal seed means whose standard deviations
    differ ``STEADIER_RATIO``-fold (seeded: the same figure on every machine)."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1 / STEADIER_RATIO, (replicates, n_a))
    b = rng.normal(0, 1, (replicates, n_b))
    return float((stats.levene(a, b, center="median", axis=1).pvalue <= ALPHA).mean())


def fisher_floor(n_a: int, n_b: int) -> float:
    """The smallest two-sided p Fisher's exact test can reach with these group sizes."""
    from scipy.stats import fisher_exact

    return float(fisher_exact([[n_a, 0], [0, n_b]])[1]) if n_a and n_b else 1.0


def steadier(peft: list[Row], pooled: bool = True) -> list[str]:
    head = "3. **IAA variants steadier over seeds?**"
    by_method: dict[str, list[Row]] = {}
    for row in peft:
        by_method.setdefault(row.method, []).append(row)
    if BASELINE not in by_method or not any(m in by_method for m in IAA):
        return [f"{head} Adapter or every IAA variant has no results here: not answered."]
    return [head, *_collapse_counts(by_method, "pooled over budgets" if pooled else "at this budget"), *_spreads(peft)]


def _collapse_counts(by_method: dict[str, list[Row]], scope: str = "pooled over budgets") -> list[str]:
    from scipy.stats import fisher_exact

    def counts(method):
        rows = by_method[method]
        return sum(r.collapsed for r in rows), sum(r.seeds for r in rows)

    base = counts(BASELINE)
    iaa = [m for m in IAA if m in by_method]
    tests = {m: float(fisher_exact([list(counts(m)), list(base)])[1]) for m in iaa}
    adjusted = dict(zip(tests, holm(list(tests.values()), ALPHA), strict=True))
    floor = min(fisher_floor(sum(counts(m)), sum(base)) for m in iaa)
    parts = [f"{m} {counts(m)[0]}/{sum(counts(m))} (Fisher p {tests[m]:.3f}, Holm {adjusted[m]:.3f})" for m in iaa]
    if floor > ALPHA:
        verdict = f"not answerable at this design: the smallest p Fisher's test can reach here is {floor:.3f}"
    else:
        verdict = "a difference" if min(adjusted.values()) <= ALPHA else "no significant difference"
        verdict += f" (the smallest reachable p is {floor:.3f})"
    line = f"   - collapsed final seeds, {scope}: adapter {base[0]}/{sum(base)}; " + ", ".join(parts)
    return [f"{line}: {verdict}."]


def _spreads(peft: list[Row]) -> list[str]:
    rows = [
        (r, next((a for a in peft if a.method == BASELINE and a.budget == r.budget and a.values), None))
        for r in peft
        if r.method in IAA and r.values
    ]
    rows = [(r, a) for r, a in rows if a is not None]
    answerable = [(r, a) for r, a in rows if min(r.seeds, a.seeds) >= MIN_SPREAD_SEEDS]
    lines = []
    raws = [brown_forsythe(r.values, a.values) for r, a in answerable]
    adjusted = holm(raws, ALPHA)
    for (row, adapter), raw, p in zip(answerable, raws, adjusted, strict=True):
        word = "steadier" if (row.std or 0) < (adapter.std or 0) else "less steady"
        verdict = f"significantly {word}" if p <= ALPHA else f"{word} in this sample, not significantly"
        lines.append(
            f"   - {row.method} (budget {row.budget}): seed sd {num(row.std)} against adapter's {num(adapter.std)}, "
            f"Brown-Forsythe p {raw:.3f}, Holm p {p:.3f}: {verdict}; power at this design "
            f"({row.seeds} vs {adapter.seeds} trained seeds) for a {STEADIER_RATIO:g}x smaller sd: "
            f"{spread_power(row.seeds, adapter.seeds):.2f}"
        )
    kept = {id(r) for r, _ in answerable}
    for row, adapter in rows:
        if id(row) not in kept:
            lines.append(
                f"   - {row.method} (budget {row.budget}): spread not answerable: {row.seeds} and {adapter.seeds} "
                f"trained seeds (Brown-Forsythe needs {MIN_SPREAD_SEEDS} a side)"
            )
    return lines


def smallest_non_inferior(peft: list[Row], full: Row | None, margin: float | None) -> list[str]:
    """Per method, the smallest budget at which it is non-inferior to full fine-tuning at ``margin``: its
    budgets tested from the largest down, each at one-sided alpha, stopping at the first that is not
    non-inferior (the fixed-sequence procedure, which needs no multiplicity adjustment within a method:
    Maurer, Hothorn & Lehmacher 1995; for dose finding, Hsu & Berger, JASA 1999)."""
    head = "4. **Smallest budget not below full fine-tuning?**"
    if full is None or margin is None:
        missing = "no full fine-tuning row" if full is None else "the suite declares no `non_inferiority_margin`"
        return [f"{head} Not answered: {missing}."]
    lines = [
        f"{head} Per method, non-inferiority to full fine-tuning at the margin {margin:g} (the 90% interval of "
        f"the method minus full fine-tuning above −{margin:g}), its budgets tested from the largest down, "
        "stopping at the first that is not (fixed sequence, α = 0.05 one-sided per method):"
    ]
    methods: dict[str, list[Row]] = {}
    for row in peft:
        methods.setdefault(row.method, []).append(row)
    for method, rows in sorted(methods.items()):
        rows = sorted(rows, key=lambda r: r.pct or 0.0, reverse=True)
        passed, stop = None, None
        for row in rows:
            if not row.values:  # a budget the method cannot reach, or none of its seeds trained
                reachable = not any(n.startswith("not run:") for n in row.notes)
                stop = f"{_at(row)}: {'no trained seed' if reachable else 'not reachable'}"
                break
            test = row.tests.get(full.method)
            if test is None or not math.isfinite(test.se):
                stop = f"{_at(row)} not tested"
                break
            answer, low, high = non_inferiority(test, margin)
            if answer != "yes":
                stop = f"{_at(row)}: {answer}, 90% interval [{low:+.4f}, {high:+.4f}]"
                break
            passed = row
        found = f"**{_at(passed)}**" if passed else f"**none up to {_at(rows[0])}**"
        lines.append(f"   - {method}: {found}" + (f"; the sequence stopped at {stop}" if stop else ""))
    return lines


def _at(row: Row) -> str:
    """A row's budget for a sentence: "0.5%", or a one-size method's "native (0.115%)"."""
    return f"{row.budget}%" if _pct(row.budget) else f"{row.budget} ({num(row.pct)}%)"


def _trained_cells(cells: list, stage: str, budget: str) -> dict[str, dict[float, list[bool]]]:
    """method -> lr -> collapsed? for each distinct cell (search and final) that finished training."""
    out: dict[str, dict[float, list[bool]]] = {}
    seen = set()
    for cell in cells:
        r = cell.result
        lr = (r.config.get("train") or {}).get("lr")
        if r.stage != stage or str(r.budget) != budget or lr is None or r.cell_id in seen:
            continue
        if cell.status not in (Status.DONE, Status.COLLAPSED):
            continue
        seen.add(r.cell_id)
        out.setdefault(r.method, {}).setdefault(float(lr), []).append(cell.status is Status.COLLAPSED)
    return out


def search_collapses(cells: list, stage: str, budget: str) -> list[str]:
    """Claim 3 (c): collapsed cells over the search, at the lrs each IAA variant and Adapter both tried."""
    from scipy.stats import fisher_exact

    by_method = _trained_cells(cells, stage, budget)
    base = by_method.get(BASELINE, {})
    iaa = [m for m in IAA if m in by_method]
    if len(base) < 2 or not iaa:
        return []  # no search in the records (one lr: a board that searched nothing, or only its finals)

    def at(method, lrs):
        flags = [f for lr in lrs for f in by_method[method][lr]]
        return sum(flags), len(flags)

    shared = {m: sorted(set(by_method[m]) & set(base)) for m in iaa}
    tests = {}
    for m in iaa:
        (a, n), (b, k) = at(m, shared[m]), at(BASELINE, shared[m])
        tests[m] = float(fisher_exact([[a, n - a], [b, k - b]])[1]) if n and k else 1.0
    adjusted = dict(zip(tests, holm(list(tests.values()), ALPHA), strict=True))
    lines = ["   - collapsed cells over the search (every seed at every lr tried), at the lrs both tried:"]
    for m in iaa:
        if not shared[m]:
            lines.append(f"     - {m}: no lr that adapter also tried: not answerable")
            continue
        (a, n), (b, k) = at(m, shared[m]), at(BASELINE, shared[m])
        where = ", ".join(
            f"{lr:g}: {sum(by_method[m][lr])}/{len(by_method[m][lr])} vs {sum(base[lr])}/{len(base[lr])}"
            for lr in shared[m]
            if any(by_method[m][lr]) or any(base[lr])
        )
        word = "fewer" if a / max(n, 1) < b / max(k, 1) else ("more" if a / max(n, 1) > b / max(k, 1) else "as many")
        verdict = "significantly" if adjusted[m] <= ALPHA else "not significantly"
        floor = fisher_floor(n, k)
        lines.append(
            f"     - {m} {a}/{n} against adapter's {b}/{k} (lrs {', '.join(f'{lr:g}' for lr in shared[m])}"
            f"{'; collapses at ' + where if where else ''}): {word}, {verdict} (Fisher p {tests[m]:.3f}, "
            f"Holm {adjusted[m]:.3f}; the smallest p reachable with these counts {floor:.2g})"
        )
    return lines
