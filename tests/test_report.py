"""bench report: aggregates, corrected significance, stability, files and the static site."""
import json
import re
import statistics

import pytest
from scipy.stats import ttest_rel

from bench.report.load import load_cells
from bench.report.site import build
from bench.report.stability import spikes, steps_to_90
from bench.report.stats import build_rows

QUERIES = [f"q{i}" for i in range(8)]


def write_cell(root, cell_id, method, budget, seed, values, status="done", dataset="toy/test", pct=0.5,
               losses=None, model="minilm", stage="rerank"):
    folder = root / "mini" / cell_id
    folder.mkdir(parents=True)
    result = {"status": status, "cell_id": cell_id, "stage": stage, "method": method, "budget": budget,
              "seed": seed, "model": model, "pct": pct,
              "config": {"method": method, "budget": budget, "datasets": {"eval": [dataset]}}}
    if status == "done":
        result["metrics"] = {dataset: {"ndcg@10": statistics.mean(values)}}
        per_query = {dataset: {q: {"ndcg@10": v} for q, v in zip(QUERIES, values)}}
        (folder / "per_query.json").write_text(json.dumps(per_query))
    else:
        result["error"] = f"{status} <b>here</b>"
    (folder / "result.json").write_text(json.dumps(result))
    if losses:
        (folder / "train_log.jsonl").write_text("".join(json.dumps({"step": i + 1, "loss": l}) + "\n"
                                                        for i, l in enumerate(losses)))


FULL = [[0.5, 0.6, 0.4, 0.7, 0.5, 0.6, 0.3, 0.8], [0.6, 0.6, 0.5, 0.7, 0.4, 0.6, 0.4, 0.8]]
LORA = [[0.7, 0.8, 0.6, 0.9, 0.7, 0.8, 0.5, 0.9], [0.8, 0.7, 0.6, 0.9, 0.8, 0.8, 0.6, 1.0]]
ADAPTER = [[0.5, 0.5, 0.5, 0.6, 0.5, 0.6, 0.4, 0.7]]


@pytest.fixture
def store(tmp_path):
    runs = tmp_path / "runs"
    for seed, values in enumerate(FULL):
        write_cell(runs, f"full{seed}", "full", "native", seed, values, pct=100.0, losses=[2.0, 1.5, 1.0] * 5)
    for seed, values in enumerate(LORA):
        write_cell(runs, f"lora{seed}", "lora", "0.5", seed, values, losses=[2.0, 1.8, 1.2] * 5)
    write_cell(runs, "adapter0", "adapter", "0.5", 0, ADAPTER[0])
    write_cell(runs, "bitfit0", "bitfit", "native", 0, None, status="failed", pct=0.1)
    write_cell(runs, "iaa0", "iaa-l", "0.5", 0, None, status="diverged")
    write_cell(runs, "one0", "lora", "<script>alert(1)</script>", 0, [0.9], dataset="single/test")
    return runs


def mean_over_seeds(seeds):
    return [statistics.mean(v) for v in zip(*seeds)]


def holm(ps):
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    adjusted, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def test_aggregates_and_holm_corrected_tests_equal_a_hand_computation(store):
    rows = {(r.dataset, r.method, r.budget): r for r in build_rows(load_cells(store, "mini"), {"rerank": ["ndcg@10"]})}
    full, lora, adapter = (rows[("toy/test", m, b)] for m, b in (("full", "native"), ("lora", "0.5"), ("adapter", "0.5")))
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


def test_report_files_and_site_escape_user_text(store, tmp_path):
    index = build(store, "mini", tmp_path / "reports")
    html = index.read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<svg") >= 2  # Pareto and loss curves, inline
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched: opens offline from disk
    folder = index.parent
    csv_text = (folder / "leaderboard.csv").read_text()
    assert csv_text.splitlines()[0].startswith("stage,dataset,metric,method,budget,pct,seeds,mean")
    assert "lora" in (folder / "leaderboard.md").read_text() and r"\begin{tabular}" in (folder / "leaderboard.tex").read_text()
    assert (folder / "cells" / "bitfit0.html").exists()
    assert "&lt;b&gt;here&lt;/b&gt;" in (folder / "cells" / "bitfit0.html").read_text()


def test_paper_numbers_shown_for_the_papers_setting(tmp_path):
    runs = tmp_path / "runs"
    write_cell(runs, "l0", "lora", "paper:0.5", 0, [0.5] * 8, dataset="msmarco-passage/trec-dl-2019/judged",
               model="bert-base")
    html = build(runs, "mini", tmp_path / "reports").read_text()
    assert "0.720" in html  # Table 3: LoRA 0.5%, TREC 2019 passage nDCG@10


def test_missing_store_is_one_clear_error(tmp_path):
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="no run store for suite 'nope'"):
        build(tmp_path, "nope", tmp_path / "out")
