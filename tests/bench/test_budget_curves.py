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
