"""The LLM reranker board's three questions (Q-PEFT: Peng et al., arXiv 2404.04522, 2024), each tested in a
family of its own at the headline metric, over the trained seeds and the queries (``significance.compare``):

1. Q-PEFT-R and Q-PEFT-A above soft-prompt? Two-sided seed-aware tests of each variant against soft-prompt
   on every eval dataset, Holm over those comparisons alone (Holm, 1979).
2. Q-PEFT at least LoRA? One-sided non-inferiority at the margin the suite declares before the run: yes
   when the lower end of the 90% interval of the variant minus LoRA is above minus the margin, no when its
   upper end is below it, else undecided (Piaggio et al., JAMA 2012), per variant and dataset.
3. Every trained method above zero-shot, in domain (the training collection's test split) and out of it?
   Each trained method against zero-shot on every dataset, Holm over those comparisons.

The paper's reported direction is written beside each answer; nothing here is tuned toward it.
"""

from __future__ import annotations

import numpy as np

from ..fmt import metric_label, num
from .claims import non_inferiority
from .ranks import headline_rows
from .significance import compare, holm
from .stats import ALPHA, Row, _matrix, metric_order

QPEFT = ("qpeft-r", "qpeft-a")
PAPER = {
    "soft": "the paper reports Q-PEFT above soft-prompt tuning (Llama-2-7B; its BEIR and MS MARCO tables)",
    "lora": "the paper reports Q-PEFT close to LoRA at far fewer trainable parameters",
    "zero": "the paper reports every tuned method above zero-shot query likelihood",
}


def pair_test(a: Row, b: Row):
    """``a`` minus ``b`` on the queries every seed of both scored; None without two shared queries."""
    runs = [*a.runs, *b.runs]
    if not a.runs or not b.runs:
        return None
    queries = sorted(set.intersection(*(set(run) for run in runs)))
    if len(queries) < 2:
        return None
    return compare(_matrix(a, queries), _matrix(b, queries), a.role.trains, b.role.trains)


def claims(rows: list[Row], in_domain: set[str], margin: float | None) -> list[str]:
    """The three answers at the qlm stage's headline metric; ``in_domain``: the eval datasets from the
    training collection."""
    qlm = [r for r in rows if r.stage == "qlm"]
    if not qlm:
        return ["No query-likelihood table here."]
    metric = metric_order({r.metric for r in qlm})[0]
    tables = {k[1]: m for k, m in headline_rows(qlm).items() if k[2] == metric}
    datasets = sorted(tables, key=lambda d: (d not in in_domain, d))
    by = {d: {r.method: r for r in tables[d] if r.values} for d in datasets}
    out = [f"At {metric_label(metric)}; datasets: " + ", ".join(_where(d, in_domain) for d in datasets) + ".\n"]
    out += _against(by, datasets, in_domain, QPEFT, "soft-prompt", "1. **Q-PEFT above soft-prompt?**", "soft")
    out += _non_inferior(by, datasets, in_domain, margin)
    trained = sorted({m for d in by.values() for m, r in d.items() if r.role.trains})
    out += _against(by, datasets, in_domain, trained, "zero-shot", "3. **Trained methods above zero-shot?**", "zero")
    return out


def _where(dataset: str, in_domain: set[str]) -> str:
    return f"{dataset} ({'in domain' if dataset in in_domain else 'out of domain'})"


def _against(by, datasets, in_domain, methods, reference, head, paper) -> list[str]:
    tested = []
    for d in datasets:
        ref = by[d].get(reference)
        for m in methods:
            row = by[d].get(m)
            test = pair_test(row, ref) if row is not None and ref is not None else None
            if test is not None:
                tested.append((d, m, row, ref, test))
    if not tested:
        return [f"{head} {reference} or the methods have no results here: not answered.", ""]
    adjusted = holm([t.p for *_, t in tested], ALPHA)
    lines = [
        f"{head} Each against {reference} on every dataset, two-sided seed-aware tests, Holm over these "
        f"{len(tested)} comparisons, α = {ALPHA}; {PAPER[paper]}:"
    ]
    for (d, m, row, ref, test), p in zip(tested, adjusted, strict=True):
        word = "not distinguishable"
        if p <= ALPHA:
            word = "significantly above" if test.difference > 0 else "significantly below"
        lines.append(
            f"   - {m} on {_where(d, in_domain)}: {row.mean:.4f} ({row.seeds_label} trained) against "
            f"{ref.mean:.4f}, Δ {num(test.difference)}, p {test.p:.4f}, Holm p {p:.4f}: **{word}**"
        )
    return lines + [""]


def _non_inferior(by, datasets, in_domain, margin) -> list[str]:
    head = "2. **Q-PEFT at least LoRA?**"
    if margin is None:
        return [f"{head} Not answered: the suite declares no `non_inferiority_margin` (set before the run).", ""]
    lines = [
        f"{head} Non-inferiority at the suite's margin {margin:g} (declared before the run): yes when the 90% "
        f"interval of the variant minus LoRA lies above −{margin:g}, no when it lies below, else undecided; "
        f"{PAPER['lora']}:"
    ]
    for d in datasets:
        lora = by[d].get("lora")
        for m in QPEFT:
            row = by[d].get(m)
            test = pair_test(row, lora) if row is not None and lora is not None else None
            if test is None or not np.isfinite(test.se):
                lines.append(f"   - {m} on {_where(d, in_domain)}: not tested")
                continue
            answer, low, high = non_inferiority(test, margin)
            lines.append(
                f"   - {m} on {_where(d, in_domain)}: **{answer}**: {row.mean:.4f} against LoRA {lora.mean:.4f}, "
                f"Δ {num(test.difference)}, 90% interval [{low:+.4f}, {high:+.4f}]"
            )
    return lines + [""]
