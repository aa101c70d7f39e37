"""Budget curves from a toy store: one line per method through its budgets at the rows' means, the seed
band, full fine-tuning and the first stage as horizontal references, collapsed seeds written at their point;
files under curves/ that the site's index shows, readable without a server."""

import statistics
import xml.etree.ElementTree as ET

import pytest

from bench.report import curves
from bench.report.plots import COST_AXES, _figure
from bench.report.site import build
from bench.report.stats import build_rows
from bench.results import scan
from helpers.reports import QUERIES, write_cell


def _values(level, seed):
    return [min(1.0, level + 0.01 * seed + 0.02 * (i % 3)) for i in range(len(QUERIES))]


@pytest.fixture
def store(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(3):
        write_cell(runs, f"full{seed}", "full", "native", seed, _values(0.7, seed), pct=100.0)
        for budget, level in (("0.1", 0.5), ("0.5", 0.6), ("6.7", 0.65)):
            collapsed = budget == "0.1" and seed == 2
            values = None if collapsed else _values(level, seed)
            status = "collapsed" if collapsed else "done"
            write_cell(runs, f"lora{budget}{seed}", "lora", budget, seed, values, status=status, pct=float(budget))
        write_cell(runs, f"adapter{seed}", "adapter", "0.5", seed, _values(0.55, seed), pct=0.52)
    write_cell(runs, "bm25", "bm25", "native", 0, _values(0.4, 0), pct=0.0)
    return runs


def _rows(store):
    return build_rows(scan(store / "mini"), {"rerank": ["ndcg@10"]})


def test_each_method_is_a_line_through_its_budgets_at_its_means(store):
    rows = _rows(store)
    table = next(iter(curves.tables(rows).values()))
    fig, ax = _figure()
    curves.draw(ax, table, COST_AXES[0])
    lines = {line.get_label(): line for line in ax.get_lines()}
    lora = {r.budget: r for r in table if r.method == "lora"}
    assert list(lines["lora"].get_xdata()) == [0.1, 0.5, 6.7]
    assert list(lines["lora"].get_ydata()) == pytest.approx([lora[b].mean for b in ("0.1", "0.5", "6.7")])
    assert lora["0.1"].mean == pytest.approx(statistics.mean(statistics.mean(_values(0.5, s)) for s in (0, 1)))
    assert list(lines["adapter"].get_xdata()) == [0.52]
    full = next(r for r in table if r.method == "full")
    assert list(lines["full (3/3 seeds)"].get_ydata()) == pytest.approx([full.mean, full.mean])
    assert "bm25" in lines and ax.get_xscale() == "log"
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["1/3 collapsed"]
    (fill,) = [c for c in ax.collections if "Poly" in type(c).__name__]  # the one method with 2+ points: lora
    band = fill.get_paths()[0].vertices  # its seed band: lowest to highest seed per point
    assert band[:, 1].min() == pytest.approx(min(lora["0.1"].values))
    assert band[:, 1].max() == pytest.approx(max(lora["6.7"].values))


def test_the_site_writes_the_curves_and_its_index_shows_them(store, tmp_path):
    index = build(scan(store / "mini"), "mini", tmp_path / "site", source=str(store))
    files = sorted(p.name for p in (index.parent / "curves").glob("*.svg"))
    assert files == ["rerank-toy-test-ndcg-10-params.svg"]  # the toy cells record no time or memory
    svg = ET.parse(index.parent / "curves" / "rerank-toy-test-ndcg-10-params.svg").getroot()
    assert svg.tag.endswith("svg")
    page = index.read_text()
    assert 'src="curves/rerank-toy-test-ndcg-10-params.svg"' in page


def test_a_budget_a_method_cannot_reach_has_a_row_that_says_so(store):
    import json

    from bench.report import budget_table

    why = "budget 0.1% is not reachable: closest iaa-s setting {'r': 1, 'ar': 1} trains 0.122%, not within 10%"
    for seed in range(3):
        write_cell(store, f"iaas{seed}", "iaa-s", "0.1", seed, None, status="not_applicable", pct=0.1)
        path = store / "mini" / f"iaas{seed}" / "result.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "error": why}))
    rows = [r for r in _rows(store) if r.method == "iaa-s"]
    assert len(rows) == 1 and rows[0].values == [] and rows[0].family_budget == "0.1"
    assert rows[0].notes == [f"not run: {why}"]  # the reason, with the nearest size; no "0/3 seeds" line
    table = budget_table.to_markdown(_rows(store), scan(store / "mini"))
    iaa = next(line for line in table.splitlines() if line.startswith("| iaa-s |"))
    assert "not reachable; nearest: iaa-s setting {'r': 1, 'ar': 1} trains 0.122%" in iaa


def test_the_budget_table_has_a_column_per_budget_and_the_setting_chosen(store):
    import csv
    import io
    import json

    from bench.report import budget_table

    for seed in range(3):  # the 0.5% lora cells were selected by a search at lr 3e-4
        path = store / "mini" / f"lora0.5{seed}" / "result.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "selection": {"chosen": {"lr": 3e-4}}}))
    cells = scan(store / "mini")
    rows = build_rows(cells, {"rerank": ["ndcg@10"]})
    table = budget_table.to_markdown(rows, cells).splitlines()
    assert table[2] == "| method | 0.1% | 0.5% | 6.7% | native |"
    lora = {r.budget: r for r in rows if r.method == "lora"}
    line = next(x for x in table if x.startswith("| lora |")).split(" | ")
    assert line[1].startswith(f"{lora['0.1'].mean:.4f}") and line[1].endswith("· 2/3")  # one seed collapsed
    assert line[2].endswith("· 3/3 · lr 0.0003") and line[4].strip(" |") == "-"
    assert (
        next(x for x in table if x.startswith("| full |"))
        .split(" | ")[4]
        .startswith(f"{next(r for r in rows if r.method == 'full').mean:.4f}")
    )
    written = list(csv.DictReader(io.StringIO(budget_table.to_csv(rows, cells))))
    entry = next(r for r in written if r["method"] == "lora" and r["budget"] == "0.5")
    assert json.loads(entry["chosen"]) == {"lr": 3e-4} and float(entry["mean"]) == pytest.approx(lora["0.5"].mean)
    assert "\\begin{tabular}{lrrrr}" in budget_table.to_latex(rows, cells)


def test_a_board_readme_of_several_budgets_shows_the_table_the_curve_and_claim_four(store, tmp_path):
    from bench.report.publish import board_readme

    cells = scan(store / "mini")
    rows = build_rows(cells, {"rerank": ["ndcg@10"]})
    readme = board_readme("board-mini", "mini", "", cells, rows, [], margin=0.01)
    assert "## By budget" in readme and "| method | 0.1% | 0.5% | 6.7% | native |" in readme
    assert "(curves/rerank-toy-test-ndcg-10-params.svg)" in readme
    assert "#### budget 0.1%" in readme and "4. **Smallest budget not below full fine-tuning?**" in readme
    assert "per budget: 0.1%: 3 cells, " in readme and "; native: 4 cells, " in readme  # 3 full + bm25
    index = build(cells, "mini", tmp_path / "site", source=str(store))
    assert (index.parent / "budgets.csv").is_file() and (index.parent / "budgets.tex").is_file()
