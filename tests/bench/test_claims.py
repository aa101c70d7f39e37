"""A board's claims, each in its own family (bench/report/claims.py), the intervals clipped to the metric's
range and the headline table's rank intervals over its own rows. Reference values: scipy and statsmodels,
or arithmetic written here."""

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from bench.report.claims import below_full, detectable, iaa_l_vs_adapter, non_inferiority
from bench.report.export import cell_text, headline_markdown
from bench.report.ranks import headline_rows
from bench.report.significance import SEED_AWARE
from bench.report.significance import Test as PairTest
from bench.report.stats import Row, build_rows
from bench.results import scan
from bench.systems import Role
from helpers.reports import QUERIES, write_cell


def row(method, values, budget="0.5", role=Role.PEFT, **kwargs):
    return Row(
        "rerank", "d/test", "ndcg@10", method, budget, budget, [], list(values), len(values), 0.5, role, **kwargs
    )


def made(p, difference, se=0.01, df=20.0):
    return PairTest(p, difference, difference / se, df, 300, SEED_AWARE, se)


def test_claim_one_is_holm_over_its_own_comparisons_only():
    """Each PEFT row's raw p against full fine-tuning, Holm over those alone: the rows' other pairs (and
    their corrected p in ``adjusted``, the all-pairs family) do not enter."""
    full = row("full", [0.70, 0.71, 0.72], "native", Role.REFERENCE)
    raw = {"lora": 0.004, "adapter": 0.02, "bitfit": 0.03}
    peft = []
    for method, p in raw.items():
        r = row(method, [0.6, 0.61, 0.62], "native" if method == "bitfit" else "0.5")
        r.tests = {"full": made(p, -0.08), "other": made(1e-9, 0.5)}
        r.adjusted = {"full": 0.9}  # what an all-pairs family said: ignored here
        peft.append(r)
    lines = below_full(peft, full)
    expected = multipletests(list(raw.values()), 0.05, method="holm")[1]
    for (method, p), q in zip(raw.items(), expected, strict=True):
        line = next(x for x in lines if x.startswith(f"   - {method}:"))
        assert f"p {p:.4f}, Holm p {q:.4f}" in line
        assert ("significantly below" in line) == (q <= 0.05)
    assert "3 comparisons, Holm" in lines[0] and "3 of 3 PEFT methods significantly below" in lines[0]


def test_the_detectable_difference_is_the_power_formula_at_holms_first_step():
    t = made(0.01, -0.03, se=0.012, df=15.0)
    want = (stats.t.ppf(1 - 0.05 / (2 * 8), 15.0) + stats.t.ppf(0.8, 15.0)) * 0.012
    assert detectable(t, 8) == pytest.approx(want)


@pytest.mark.parametrize(("difference", "answer"), [(0.004, "yes"), (-0.006, "undecided"), (-0.05, "no")])
def test_non_inferiority_reads_the_ninety_percent_interval_against_the_margin(difference, answer):
    t = made(0.5, difference, se=0.004, df=30.0)
    half = stats.t.ppf(0.95, 30.0) * 0.004
    got, low, high = non_inferiority(t, 0.01)
    assert got == answer and low == pytest.approx(difference - half) and high == pytest.approx(difference + half)


def test_claim_two_is_not_answered_without_a_declared_margin():
    iaa, adapter = row("iaa-l", [0.65, 0.66, 0.64]), row("adapter", [0.64, 0.64, 0.65])
    iaa.tests = {"adapter": made(0.3, 0.006, se=0.003)}
    assert "declares no non-inferiority margin" in iaa_l_vs_adapter([iaa, adapter], None)[0]
    lines = iaa_l_vs_adapter([iaa, adapter], 0.01)
    assert "**yes**" in lines[1]


def test_an_interval_past_the_metrics_range_is_clipped_and_shown_by_its_ends():
    wide = row("bitfit", [0.30, 0.95, 0.40])
    mean, sd = np.mean(wide.values), np.std(wide.values, ddof=1)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert mean - half < 0 < 1 < mean + half and wide.ci_clipped
    assert wide.ci == (0.0, 1.0)
    assert f"{mean:.4f} [0.0000, 1.0000]" in cell_text(wide)
    narrow = row("lora", [0.60, 0.61, 0.62])
    assert not narrow.ci_clipped and " ± " in cell_text(narrow)


def test_the_headline_rank_interval_counts_the_headline_tables_rows(tmp_path):
    """Two budgets (two families of 3 and 2 trained rows, full in each) make a 4-row headline table: its
    rank intervals run over 4 rows, whatever the families' sizes."""
    rng = np.random.default_rng(5)
    base = rng.uniform(0.2, 0.8, len(QUERIES))
    for seed in range(3):
        noise = lambda: rng.normal(0, 0.01, len(QUERIES))  # noqa: E731
        write_cell(tmp_path, f"full{seed}", "full", "native", seed, list(base + noise()), pct=100.0)
        write_cell(tmp_path, f"lora{seed}", "lora", "0.5", seed, list(base - 0.1 + noise()))
        write_cell(tmp_path, f"ad{seed}", "adapter", "0.5", seed, list(base - 0.1 + noise()))
        write_cell(tmp_path, f"bit{seed}", "bitfit", "native", seed, list(base - 0.2 + noise()), pct=0.1)
    rows = build_rows(scan(tmp_path / "mini"), {"rerank": ["ndcg@10"]})
    headline_markdown(rows)
    (table,) = headline_rows(rows).values()
    assert sorted(r.method for r in table) == ["adapter", "bitfit", "full", "lora"]
    bitfit = next(r for r in table if r.method == "bitfit")
    assert bitfit.rank_high == 2  # its own family: bitfit and full
    assert bitfit.headline_rank_high == 4
    assert cell_text(bitfit, headline=True).endswith(f"[{bitfit.headline_rank_low}-4]") or "[4]" in cell_text(
        bitfit, headline=True
    )


def _budget_row(method, budget, pct, difference, se=0.01):
    r = row(method, [0.6, 0.61, 0.62], budget)
    r.pct = pct
    r.tests = {"full": made(0.5, difference, se=se)}
    return r


def test_claims_of_several_budgets_are_one_family_per_budget_with_bitfit_at_its_nearest():
    from bench.report.claims import by_budget

    peft = [
        _budget_row("lora", "0.5", 0.51, -0.02),
        _budget_row("lora", "6.7", 6.6, -0.001),
        _budget_row("lora", "0.1", 0.1, -0.05),
        _budget_row("bitfit", "native", 0.115, -0.03),
    ]
    families = by_budget(peft)
    assert list(families) == ["0.1", "0.5", "6.7"]
    assert [r.method for r in families["0.1"]] == ["lora", "bitfit"]  # 0.115% is nearest 0.1% on a log scale
    assert list(by_budget(peft[:1] + peft[3:])) == ["0.5"]  # one budget: one family, BitFit in it


def test_the_smallest_non_inferior_budget_is_a_fixed_sequence_from_the_largest_down():
    from bench.report.claims import smallest_non_inferior

    full = row("full", [0.70, 0.71, 0.72], "native", Role.REFERENCE)
    z = stats.t.ppf(0.95, 20.0) * 0.01  # the 90% interval's half width at se 0.01, df 20
    peft = [
        _budget_row("lora", "6.7", 6.6, -0.01 + z + 0.002),  # lower end -0.008 > -0.01: yes
        _budget_row("lora", "2", 2.0, -0.01 + z + 0.001),  # yes
        _budget_row("lora", "0.5", 0.5, -0.01 + z - 0.001),  # lower end -0.011: undecided, the sequence stops
        _budget_row("lora", "0.1", 0.1, 0.05),  # would pass, but is never reached
        _budget_row("adapter", "6.7", 6.7, -0.05),  # no at the largest: none
        _budget_row("adapter", "0.5", 0.5, 0.05),
    ]
    unreachable = _budget_row("iaa-s", "0.1", 0.122, 0.0)
    unreachable.values, unreachable.notes = [], ["not run: budget 0.1% is not reachable: ..."]
    peft += [_budget_row("iaa-s", "0.5", 0.5, 0.05), unreachable]
    lines = smallest_non_inferior(peft, full, 0.01)
    iaa = next(x for x in lines if x.startswith("   - iaa-s:"))
    assert "**0.5%**" in iaa and "stopped at 0.1%: not reachable" in iaa
    lora = next(x for x in lines if x.startswith("   - lora:"))
    assert "**2%**" in lora and "stopped at 0.5%: undecided" in lora
    adapter = next(x for x in lines if x.startswith("   - adapter:"))
    assert "**none up to 6.7%**" in adapter and "stopped at 6.7%: no" in adapter
    assert "Not answered" in smallest_non_inferior(peft, full, None)[0]


def _loaded(method, lr, seed, status, phase="search"):
    from bench.results import CellResult, LoadedCell, Status

    result = CellResult(
        status=Status(status), cell_id=f"{method}-{lr}-{seed}", suite="b", stage="rerank", method=method,
        budget="0.5", seed=seed, config={"train": {"lr": lr}}, phase=phase,
    )  # fmt: skip
    return LoadedCell(directory=None, result=result)


def test_claim_three_counts_the_searchs_collapses_at_the_lrs_both_methods_tried():
    """Adapter collapses on all 3 seeds at 3e-3, IAA-L on none; IAA-L's 1e-2, which Adapter never tried,
    collapses everywhere and is left out; Fisher's exact test on the shared lrs' counts, Holm over the variants."""
    from bench.report.claims import search_collapses

    cells = [_loaded("adapter", 3e-3, s, "collapsed") for s in (1, 2, 3)]
    seeds = (1, 2, 3)
    cells += [_loaded(m, lr, s, "done") for m in ("adapter", "iaa-l", "iaa-m") for lr in (3e-4, 1e-3) for s in seeds]
    cells += [_loaded("iaa-l", 3e-3, s, "done") for s in seeds]
    cells += [_loaded("iaa-l", 1e-2, s, "collapsed") for s in seeds]
    cells += [_loaded("iaa-m", 3e-3, s, "collapsed") for s in (1, 2, 3)]
    cells += [_loaded("adapter", 1e-3, 1, "done", phase="final")]  # a final shares its search cell's id: counted once
    cells += [_loaded("adapter", 1e-3, 9, "failed")]  # never finished training: not a draw of stability
    header, iaa_l, iaa_m = search_collapses(cells, "rerank", "0.5")
    p = stats.fisher_exact([[0, 9], [3, 6]])[1]
    assert "iaa-l 0/9 against adapter's 3/9" in iaa_l and "fewer" in iaa_l and f"Fisher p {p:.3f}" in iaa_l
    assert "0.01" not in iaa_l.split("(lrs")[1].split(";")[0]
    assert "iaa-m 3/9 against adapter's 3/9" in iaa_m and "as many" in iaa_m and "Fisher p 1.000" in iaa_m
    assert f"Holm {min(1.0, 2 * p):.3f}" in iaa_l
    assert search_collapses([_loaded("adapter", 1e-3, 1, "done", "final")], "rerank", "0.5") == []
