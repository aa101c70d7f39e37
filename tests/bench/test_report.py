"""bench report: the seed-aware test, declared families, marks without selection on the test set, k/n
seeds, rank intervals, depth-honest metrics, the files and the static site. Reference values come from
scipy, statsmodels or a computation written here, never from the module under test."""

import json
import math
import re
import statistics

import numpy as np
import pytest
from scipy import stats

from bench.report.export import to_latex
from bench.report.significance import compare
from bench.report.site import build
from bench.report.stability import spikes, steps_to
from bench.report.stats import build_rows
from bench.results import scan
from helpers.reports import ADAPTER, FULL, LORA, QUERIES, write_cell


def report(runs, out):
    return build(scan(runs / "mini"), "mini", out, source=str(runs))


def rows_of(runs, metric="ndcg@10", **kwargs):
    rows = build_rows(scan(runs / "mini"), {"rerank": [metric]}, **kwargs)
    return {(r.dataset, r.method, r.budget, r.family_budget): r for r in rows}


# ------------------------------------------------------------------ the test itself


def simulate(rng, diff, seed_sd, queries=300, seeds=3, query_sd=0.2, interaction_sd=0.05, noise_sd=0.08):
    """Per-query values of two methods: query difficulty, query x method interaction, a seed effect per run,
    per-(run, query) noise."""
    difficulty = rng.normal(0.5, query_sd, queries)
    out = []
    for mean in (0.0, diff):
        interaction = rng.normal(0, interaction_sd, queries)
        out.append(
            np.array(
                [
                    mean + difficulty + interaction + rng.normal(0, seed_sd) + rng.normal(0, noise_sd, queries)
                    for _ in range(seeds)
                ]
            )
        )
    return out


def test_simulated_type_one_error_and_power():
    """300 queries x 3 seeds x 2 methods, 400 replicates each (fixed seed). Equal expected per-query scores
    and a seed sd of 0.02: rejections at 0.05 are at most 7%. A true difference of 0.02 and no seed noise:
    at least 80%. The test over queries on seed-averaged values (the harness before) rejects far more
    often than 5% in the first case."""
    rng = np.random.default_rng(2024)
    null = [compare(*simulate(rng, 0.0, 0.02)).p <= 0.05 for _ in range(400)]
    rng = np.random.default_rng(2025)
    power = [compare(*simulate(rng, 0.02, 0.0)).p <= 0.05 for _ in range(400)]
    rng = np.random.default_rng(2024)
    naive = [stats.ttest_rel(*(m.mean(0) for m in simulate(rng, 0.0, 0.02))).pvalue <= 0.05 for _ in range(400)]
    assert np.mean(null) <= 0.07, np.mean(null)
    assert np.mean(power) >= 0.8, np.mean(power)
    assert np.mean(naive) > 0.3, np.mean(naive)


def test_variance_matches_a_linear_mixed_model_fit():
    """On a balanced design the estimator is REML's (statsmodels MixedLM with a random intercept per
    query, per query x method and per run): the same standard error of the difference."""
    import pandas as pd
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(5)
    a, b = simulate(rng, 0.03, 0.03, queries=60, seeds=4)
    test = compare(b, a)
    rows = [
        {"y": v, "method": m, "run": f"{m}{s}", "query": f"q{q}", "qm": f"q{q}{m}", "one": 1}
        for m, runs in (("a", a), ("b", b))
        for s, run in enumerate(runs)
        for q, v in enumerate(run)
    ]
    frame = pd.DataFrame(rows)
    model = smf.mixedlm(
        "y ~ C(method)",
        frame,
        groups="one",
        re_formula="0",
        vc_formula={"query": "0 + C(query)", "qm": "0 + C(qm)", "run": "0 + C(run)"},
    )
    fit = model.fit(reml=True)
    se = fit.bse["C(method)[T.b]"]
    assert test.difference == pytest.approx(fit.params["C(method)[T.b]"], abs=1e-9)
    assert abs(test.difference) / test.statistic == pytest.approx(se, rel=0.05)


def test_one_seed_each_is_the_paired_t_test_and_says_so():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.5, 0.1, (1, 50)), rng.normal(0.52, 0.1, (1, 50))
    test = compare(a, b)
    assert test.p == pytest.approx(stats.ttest_rel(a[0], b[0]).pvalue, rel=1e-6)
    assert "1 seed: seed variance not accounted for" in test.procedure


# ------------------------------------------------------------------ the report's tables


def holm(ps):
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    adjusted, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def mean_squares(runs):
    """(variance of the seed means, its df, seed x query residual mean square, its df) of one system."""
    x = np.array(runs, float)
    n, q = x.shape
    res = ((x - x.mean(0) - x.mean(1)[:, None] + x.mean()) ** 2).sum() / ((n - 1) * (q - 1))
    return statistics.variance(list(x.mean(1))), n - 1, res, (n - 1) * (q - 1)


def seed_aware_p(a_runs, b_runs, borrowed=None):
    """The procedure written out again from its description: Var(D) = the query part (variance of the
    seed-averaged differences over queries less each system's residual part, not below 0) + each system's variance of
    seed means / its seeds (``borrowed`` for a one-seed ``a``; two systems of two seeds each keep their own);
    Satterthwaite df with the seed parts at their 80% upper confidence limits."""
    a, b = np.array(a_runs, float), np.array(b_runs, float)
    q = a.shape[1]
    d = a.mean(0) - b.mean(0)
    ea = borrowed if len(a) == 1 else mean_squares(a)
    eb = mean_squares(b)
    between = d.var(ddof=1) / q
    query = max(0.0, between - ea[2] / (len(a) * q) - eb[2] / (len(b) * q))
    seed_parts = [(ea[0] / len(a), ea[1]), (eb[0] / len(b), eb[1])]
    var = query + sum(v for v, _ in seed_parts)
    upper = [(v * k / stats.chi2.ppf(0.2, k), k) for v, k in seed_parts]
    spread = (
        between**2 / (q - 1)
        + (ea[2] / (len(a) * q)) ** 2 / ea[3]
        + (eb[2] / (len(b) * q)) ** 2 / eb[3]
        + sum(v**2 / k for v, k in upper)
    )
    df = (query + sum(v for v, _ in upper)) ** 2 / spread
    return 2 * stats.t.sf(abs(d.mean()) / math.sqrt(var), df)


def pooled_of(*systems):
    parts = [mean_squares(s) for s in systems]
    df, df_res = sum(p[1] for p in parts), sum(p[3] for p in parts)
    return sum(p[0] * p[1] for p in parts) / df, df, sum(p[2] * p[3] for p in parts) / df_res, df_res


def test_aggregates_tests_and_marks_equal_a_hand_computation(report_store):
    rows = rows_of(report_store)
    full, lora, adapter = (
        rows[("toy/test", m, b, "0.5")] for m, b in (("full", "native"), ("lora", "0.5"), ("adapter", "0.5"))
    )
    lora_means = [statistics.mean(v) for v in LORA]
    assert lora.mean == pytest.approx(statistics.mean(lora_means))
    assert lora.std == pytest.approx(statistics.stdev(lora_means))
    half = stats.t.ppf(0.975, 1) * statistics.stdev(lora_means) / math.sqrt(2)
    assert lora.ci == pytest.approx((lora.mean - half, lora.mean + half))
    assert lora.seeds_label == "2/2" and adapter.seeds_label == "1/1" and adapter.std is None and adapter.ci is None
    assert lora.diff_to_full == pytest.approx(lora.mean - full.mean)
    borrowed = pooled_of(FULL, LORA)  # the adapter has one seed: its seed variance is the table's pool
    raw = [seed_aware_p(ADAPTER, LORA, borrowed), seed_aware_p(ADAPTER, FULL, borrowed), seed_aware_p(LORA, FULL)]
    adjusted = holm(raw)
    assert lora.adjusted["adapter"] == pytest.approx(adjusted[0], rel=1e-6)
    assert adapter.p_vs_full == pytest.approx(adjusted[1], rel=1e-6)
    assert lora.p_vs_full == pytest.approx(adjusted[2], rel=1e-6)
    expected = ("*" if adjusted[2] <= 0.05 else "") + ("†" if adjusted[0] <= 0.05 else "")
    assert lora.marks == expected and adapter.marks == ""  # a borrowed seed variance earns no mark
    assert any("borrowed from the table's 2 multi-seed systems" in n for n in adapter.notes)
    assert lora.family_size == 3 and lora.family == "rerank · toy/test · ndcg@10 · budget 0.5"
    assert lora.rank == 1 and lora.rank_low == 1


def test_a_diverged_seed_shows_k_of_n_and_gets_no_mark(tmp_path):
    runs = tmp_path / "runs"
    better = [[v + 0.3 for v in run] for run in LORA]
    for seed, values in enumerate(FULL):
        write_cell(runs, f"full{seed}", "full", "native", seed, values, pct=100.0)
    for seed, values in enumerate(better):
        write_cell(runs, f"lora{seed}", "lora", "0.5", seed, values)
    write_cell(runs, "lora2", "lora", "0.5", 2, None, status="diverged")
    lora = rows_of(runs)[("toy/test", "lora", "0.5", "0.5")]
    assert lora.seeds_label == "2/3" and not lora.complete and lora.marks == ""
    assert any("2/3 seeds finished" in note for note in lora.notes) and lora.diverged == 1
    assert lora.p_vs_full is not None and lora.p_vs_full < 0.05  # it would have earned its *: tested, not marked
    from bench.report.stability import stability

    item = next(s for s in stability(scan(runs / "mini")) if s.method == "lora")
    assert item.runs == 3 and item.unstable == 1  # a diverged seed counts as instability


def test_adding_an_unrelated_dataset_changes_no_existing_table(report_store):
    before = rows_of(report_store)
    for seed, values in enumerate(FULL):
        write_cell(report_store, f"other-full{seed}", "full", "native", seed, values, dataset="other/test", pct=100.0)
    for seed, values in enumerate(LORA):
        write_cell(report_store, f"other-lora{seed}", "lora", "0.5", seed, values[::-1], dataset="other/test")
    write_cell(report_store, "other-6.7", "lora", "6.7", 0, ADAPTER[0], dataset="toy/test")  # another budget too
    after = rows_of(report_store)
    for key, row in before.items():
        assert (after[key].p_vs_full, after[key].adjusted, after[key].marks, after[key].family_size) == (
            row.p_vs_full,
            row.adjusted,
            row.marks,
            row.family_size,
        ), key


def test_no_comparison_is_chosen_by_its_test_scores(tmp_path):
    """Each PEFT method is tested against every other of its table, whatever the scores: permuting which
    method scored what changes no row's set of comparisons."""
    rng = np.random.default_rng(3)
    scores = {
        m: [list(np.clip(rng.normal(0.5 + 0.05 * i, 0.1, len(QUERIES)), 0, 1)) for _ in range(2)]
        for i, m in enumerate(["lora", "adapter", "prefix", "iaa-l"])
    }
    compared = []
    for shift in range(4):
        runs = tmp_path / f"runs{shift}"
        names = list(scores)
        for i, name in enumerate(names):
            for seed, values in enumerate(scores[names[(i + shift) % 4]]):
                write_cell(runs, f"{name}{seed}", name, "0.5", seed, values)
        rows = [r for r in build_rows(scan(runs / "mini"), {"rerank": ["ndcg@10"]})]
        compared.append({r.method: sorted(r.tests) for r in rows})
    assert all(c == compared[0] for c in compared)
    assert compared[0]["lora"] == ["adapter", "iaa-l", "prefix"]


def test_metrics_deeper_than_the_candidates_are_not_shown(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(2):
        write_cell(runs, f"l{seed}", "lora", "0.5", seed, LORA[seed], extra_metrics={"ndcg@100": 0.5}, depth=20)
    rows = build_rows(scan(runs / "mini"))
    assert {r.metric for r in rows} == {"ndcg@10"}
    html = report(runs, tmp_path / "reports").read_text()
    assert "nDCG@100 not shown: their cutoff exceeds the candidate depth (20)" in html


def test_stability_measures():
    assert steps_to([2.0] * 5 + [1.0] * 45, 1.5) == 6  # window 1: the first step at or below the threshold
    assert steps_to([1.0] * 20, 0.5) is None
    assert spikes([1.0, 1.1] * 13 + [3.0] + [1.0, 1.1] * 3) == 1 and spikes([1.0, 1.1] * 20) == 0


def test_report_files_and_site_escape_user_text(report_store, tmp_path):
    index = report(report_store, tmp_path / "reports")
    html = index.read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<svg") >= 2  # Pareto and loss curves, inline
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched: opens offline from disk
    assert "rerank: nDCG@10" in html and "Satterthwaite" in html and "Holm" in html
    folder = index.parent
    csv_text = (folder / "leaderboard.csv").read_text()
    assert csv_text.splitlines()[0].startswith("stage,dataset,metric,table_budget,method,budget,pct,knobs")
    markdown = (folder / "leaderboard.md").read_text()
    assert "## rerank: nDCG@10" in markdown and "| lora | 0.5 |" in markdown and "pairwise tests" in markdown
    assert r"\begin{tabular}" in (folder / "leaderboard.tex").read_text()
    assert (folder / "cells" / "bitfit0.html").exists()
    assert "&lt;b&gt;here&lt;/b&gt;" in (folder / "cells" / "bitfit0.html").read_text()


def test_latex_escapes_every_special_character():
    from bench.report.export import tex

    assert tex("a_b %c &d #e $f {g} ~h ^i \\j") == (
        r"a\_b \%c \&d \#e \$f \{g\} \textasciitilde{}h "
        r"\textasciicircum{}i \textbackslash{}j"
    )
    assert "to_latex" in to_latex.__name__


def test_paper_numbers_and_knobs_shown_for_the_papers_setting(tmp_path):
    runs = tmp_path / "runs"
    write_cell(
        runs, "l0", "lora", "paper:0.5", 0, [0.5] * 8, dataset="msmarco-passage/trec-dl-2019/judged", model="bert-base"
    )
    html = report(runs, tmp_path / "reports").read_text()
    assert "0.720" in html  # Table 3: LoRA 0.5%, TREC 2019 passage nDCG@10
    assert "r=16, 0.5%" in html  # the paper's knobs and percentage beside ours
    assert json.loads(json.dumps(1))


def test_missing_store_is_one_clear_error(tmp_path):
    from helpers.cli import bench, one_error_line

    done = bench("report", "--runs", tmp_path, "--suite", "nope", "--out", tmp_path / "out")
    assert "unknown suite 'nope'" in one_error_line(done)
    done = bench("report", "--runs", tmp_path, "--suite", "smoke", "--out", tmp_path / "out")
    assert "no run store for suite 'smoke'" in one_error_line(done)


def test_a_report_merged_from_two_stores_equals_the_report_of_one_store(tmp_path):
    """Two groups' stores (their results.jsonl) merged into one report give the files one store holding
    every cell gives."""
    from helpers.cli import bench

    one, first, second = tmp_path / "one", tmp_path / "first", tmp_path / "second"
    rng = np.random.default_rng(11)
    cells = [
        (f"{m}{s}", m, b, s, list(np.clip(rng.normal(0.5 + 0.05 * i, 0.1, len(QUERIES)), 0, 1)))
        for i, (m, b) in enumerate([("full", "native"), ("lora", "0.5"), ("adapter", "0.5")])
        for s in range(3)
    ]
    for k, (cell_id, method, budget, seed, values) in enumerate(cells):
        pct = 100.0 if method == "full" else 0.5
        write_cell(one, cell_id, method, budget, seed, values, pct=pct, losses=[2.0, 1.5, 1.2] * 7)
        write_cell(
            first if k % 2 else second, cell_id, method, budget, seed, values, pct=pct, losses=[2.0, 1.5, 1.2] * 7
        )
    for runs in (one, first, second):
        done = bench("report", "--suite", "mini", "--runs", runs, "--out", runs / "reports")
        assert done.returncode == 0, done.stderr[-2000:]
    merged = bench(
        "report",
        "--suite",
        "mini",
        "--runs",
        first,
        "--out",
        tmp_path / "merged",
        "--include",
        second / "reports" / "mini" / "results.jsonl",
    )
    assert merged.returncode == 0, merged.stderr[-2000:]
    for name in ("leaderboard.csv", "leaderboard.md", "leaderboard.tex"):
        assert (tmp_path / "merged" / "mini" / name).read_text() == (one / "reports" / "mini" / name).read_text()
    records = [json.loads(line) for line in (one / "reports" / "mini" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 9 and {r["record_schema"] for r in records} == {"peft-ir-bench/cell/1"}
    assert set(records[0]) >= {
        "cell_id",
        "method",
        "knobs",
        "trainable",
        "pct",
        "budget",
        "seed",
        "metrics",
        "times",
        "peak_memory_mb",
        "versions",
        "config",
        "per_query",
    }
    only = bench("report", "--suite", "mini", "--runs", one, "--out", tmp_path / "jsonl", "--format", "jsonl")
    assert only.returncode == 0 and not (tmp_path / "jsonl" / "mini" / "index.html").exists()
