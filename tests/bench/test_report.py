"""bench report: aggregates, corrected significance, stability, files and the static site."""

import re
import statistics

import pytest
from scipy.stats import ttest_rel

from bench.report.site import build
from bench.report.stability import spikes, steps_to_90
from bench.report.stats import build_rows
from bench.results import scan
from helpers.reports import ADAPTER, FULL, LORA, write_cell


def report(runs, out):
    return build(scan(runs / "mini"), "mini", out, source=str(runs))


def mean_over_seeds(seeds):
    return [statistics.mean(v) for v in zip(*seeds)]


def holm(ps):
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    adjusted, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def test_aggregates_and_holm_corrected_tests_equal_a_hand_computation(report_store):
    rows = {
        (r.dataset, r.method, r.budget): r for r in build_rows(scan(report_store / "mini"), {"rerank": ["ndcg@10"]})
    }
    full, lora, adapter = (
        rows[("toy/test", m, b)] for m, b in (("full", "native"), ("lora", "0.5"), ("adapter", "0.5"))
    )
    assert lora.mean == pytest.approx(statistics.mean(statistics.mean(v) for v in LORA))
    assert lora.std == pytest.approx(statistics.stdev([statistics.mean(v) for v in LORA]))
    assert lora.seeds == 2 and adapter.seeds == 1 and adapter.std is None
    assert lora.diff_to_full == pytest.approx(lora.mean - full.mean)
    f, l, a = mean_over_seeds(FULL), mean_over_seeds(LORA), ADAPTER[0]
    raw = [ttest_rel(l, f).pvalue, ttest_rel(a, f).pvalue, ttest_rel(l, a).pvalue, ttest_rel(a, l).pvalue]
    corrected = holm(raw)
    assert lora.p_vs_full == pytest.approx(corrected[0])
    assert adapter.p_vs_full == pytest.approx(corrected[1])
    assert lora.best_other == "adapter" and lora.p_vs_best == pytest.approx(corrected[2])
    assert adapter.best_other == "lora" and adapter.p_vs_best == pytest.approx(corrected[3])
    assert lora.marks == "*†" and adapter.marks == ""
    assert "1 seed: no spread" in adapter.notes
    bitfit = rows[("toy/test", "bitfit", "native")]
    assert bitfit.failed == 1 and not bitfit.values and "1 failed, 0 diverged" in bitfit.notes
    assert rows[("toy/test", "iaa-l", "0.5")].diverged == 1
    single = rows[("single/test", "lora", "<script>alert(1)</script>")]
    assert single.p_vs_full is None and single.seeds == 1


def test_stability_measures():
    assert steps_to_90([2.0] * 5 + [1.0] * 45) == 7  # 2-step smoothing: first window past 90% ends at 7
    assert steps_to_90([1.0] * 20) is None
    assert spikes([1.0, 1.1] * 13 + [3.0] + [1.0, 1.1] * 3) == 1 and spikes([1.0, 1.1] * 20) == 0


def test_report_files_and_site_escape_user_text(report_store, tmp_path):
    index = report(report_store, tmp_path / "reports")
    html = index.read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<svg") >= 2  # Pareto and loss curves, inline
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched: opens offline from disk
    folder = index.parent
    csv_text = (folder / "leaderboard.csv").read_text()
    assert csv_text.splitlines()[0].startswith("stage,dataset,metric,method,budget,pct,seeds,mean")
    assert (
        "lora" in (folder / "leaderboard.md").read_text()
        and r"\begin{tabular}" in (folder / "leaderboard.tex").read_text()
    )
    assert (folder / "cells" / "bitfit0.html").exists()
    assert "&lt;b&gt;here&lt;/b&gt;" in (folder / "cells" / "bitfit0.html").read_text()


def test_paper_numbers_shown_for_the_papers_setting(tmp_path):
    runs = tmp_path / "runs"
    write_cell(
        runs, "l0", "lora", "paper:0.5", 0, [0.5] * 8, dataset="msmarco-passage/trec-dl-2019/judged", model="bert-base"
    )
    html = report(runs, tmp_path / "reports").read_text()
    assert "0.720" in html  # Table 3: LoRA 0.5%, TREC 2019 passage nDCG@10


def test_missing_store_is_one_clear_error(tmp_path):
    from helpers.cli import bench, one_error_line

    done = bench("report", "--runs", tmp_path, "--suite", "nope", "--out", tmp_path / "out")
    assert "unknown suite 'nope'" in one_error_line(done)
    done = bench("report", "--runs", tmp_path, "--suite", "smoke", "--out", tmp_path / "out")
    assert "no run store for suite 'smoke'" in one_error_line(done)
