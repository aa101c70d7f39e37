"""Budget curves' search (``search_centre``): a budget other than the anchor searches the suite's lr values
rescaled so that their median is the method's winner at the neighbouring budget toward the anchor; it waits
for that selection, extends at its edges as protocol v2 does, and records what it was centred on."""

import pytest
import yaml

from bench import results
from bench.config import load_suite
from bench.data import cached_collection
from bench.errors import BenchError
from bench.results import Status
from bench.search import plan
from bench.store import RunStore
from helpers.data import write_synthetic_beir

VALIDATION = "synth/train~holdout:0.25:s0"


def _suite(tmp_path, monkeypatch, **extra):
    write_synthetic_beir(tmp_path / "data", "synth")
    monkeypatch.setenv("BENCH_DATA_PATH", str(tmp_path / "data"))
    cached_collection.cache_clear()
    suite = {
        "name": "s",
        "stage": "rerank",
        "model": "tiny-bert",
        "methods": ["lora"],
        "budgets": [4.0, 1.0, 2.0],
        "seeds": [1, 2],
        "search_seeds": [1, 2],
        "datasets": [{"train": "synth/train", "eval": ["synth/test"], "holdout": 0.25}],
        "train": {"steps": 2},
        "search": {"lr": [1.0e-4, 3.0e-4, 1.0e-3]},
        "search_extend": {"lr": 1},
        "search_centre": {"lr": 1.0},
        **extra,
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


@pytest.fixture
def grid(tmp_path, monkeypatch):
    grid = plan(load_suite(str(_suite(tmp_path, monkeypatch))))
    yield {g.cells[0].budget: g for g in grid.groups}, grid, RunStore(tmp_path / "runs", "s")
    cached_collection.cache_clear()


def _finish(group, store, score_of):
    for cell in group.search_cells(store):
        if not store.state(cell).finished:
            validation = {VALIDATION: {"ndcg@10": score_of(cell.train["lr"], cell.seed)}}
            results.write(store.dir_for(cell), results.for_cell(cell, Status.DONE, validation=validation))


def _lrs(group, store):
    return sorted({c.train["lr"] for c in group.search_cells(store)})


def test_the_anchor_runs_first_and_the_others_wait_for_their_neighbour(grid):
    groups, whole, store = grid
    assert [g.cells[0].budget for g in whole.groups] == ["1.0", "2.0", "4.0"]  # the chain toward the anchor
    assert groups["1.0"].centre is None
    assert groups["2.0"].centre[1] is groups["1.0"] and groups["4.0"].centre[1] is groups["2.0"]
    assert groups["2.0"].search_cells(store) == [] and groups["2.0"].waiting(store)
    assert len(groups["2.0"].search_cells()) == 6  # without a store (counts, input checks): the suite's values
    assert len(whole.first_phase(store)) == len(whole.fixed) + 6  # the anchor's 3 lrs x 2 seeds alone


def test_a_neighbour_search_is_centred_on_the_winner_and_records_it(grid):
    groups, _, store = grid
    _finish(groups["1.0"], store, lambda lr, seed: {1e-4: 0.5, 3e-4: 0.6, 1e-3: 0.7, 3.33e-3: 0.65}[lr])
    _finish(groups["1.0"], store, lambda lr, seed: {1e-4: 0.5, 3e-4: 0.6, 1e-3: 0.7, 3.33e-3: 0.65}[lr])
    assert groups["1.0"].chosen(store) == {"lr": 1e-3}  # won inside after one extension
    assert _lrs(groups["2.0"], store) == [3.33e-4, 1e-3, 3.33e-3]  # the suite's ratios around 1e-3
    assert groups["4.0"].waiting(store)
    _finish(groups["2.0"], store, lambda lr, seed: {3.33e-4: 0.7, 1e-3: 0.6, 3.33e-3: 0.5, 1.11e-4: 0.65}[lr])
    assert groups["2.0"].final_cells(store) == []  # the low edge won: one value below is pending
    _finish(groups["2.0"], store, lambda lr, seed: {3.33e-4: 0.7, 1e-3: 0.6, 3.33e-3: 0.5, 1.11e-4: 0.65}[lr])
    finals = groups["2.0"].final_cells(store)
    assert {c.train["lr"] for c in finals} == {3.33e-4}
    selection = finals[0].selection
    assert selection["centred_on"] == {
        "budget": "1.0",
        "lr": 1e-3,
        "start": [{"lr": 3.33e-4}, {"lr": 1e-3}, {"lr": 3.33e-3}],
    }
    assert selection["extended"] == [{"lr": 1.11e-4}] and selection["edge_at_cap"] is None
    assert _lrs(groups["4.0"], store) == [1.11e-4, 3.33e-4, 1.11e-3]  # centred on 2.0's winner in turn


def test_an_even_count_of_values_centres_on_the_geometric_mean_of_the_middle_two(tmp_path, monkeypatch):
    suite = load_suite(str(_suite(tmp_path, monkeypatch, search={"lr": [1e-4, 4e-4, 1.6e-3, 6.4e-3]})))
    groups = {g.cells[0].budget: g for g in plan(suite).groups}
    store = RunStore(tmp_path / "runs", "s")
    _finish(groups["1.0"], store, lambda lr, seed: {1e-4: 0.5, 4e-4: 0.7, 1.6e-3: 0.6, 6.4e-3: 0.4}[lr])
    assert _lrs(groups["2.0"], store) == [5e-5, 2e-4, 8e-4, 3.2e-3]  # 4e-4 / 8e-4 times each
    cached_collection.cache_clear()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"search_centre": {"warmup_ratio": 1.0}}, "search_centre.warmup_ratio: warmup_ratio is not searched"),
        ({"search_centre": {"lr": 0.5}}, "search_centre.lr: budget 0.5 is not one of the suite's budgets"),
    ],
)
def test_search_centre_names_a_searched_setting_and_a_budget_of_the_suite(tmp_path, monkeypatch, extra, message):
    with pytest.raises(BenchError, match=message):
        load_suite(str(_suite(tmp_path, monkeypatch, **extra)))
    cached_collection.cache_clear()


def test_a_neighbour_that_selected_nothing_leaves_the_suites_values(grid):
    """Every cell of the anchor not applicable (a budget the method cannot reach): nothing to centre on, so
    the next budget searches the suite's values rather than waiting for ever."""
    groups, _, store = grid
    for cell in groups["1.0"].search_cells(store):
        results.write(store.dir_for(cell), results.for_cell(cell, Status.NOT_APPLICABLE, error="not reachable"))
    assert groups["1.0"].chosen(store) is None and not groups["2.0"].waiting(store)
    assert _lrs(groups["2.0"], store) == [1e-4, 3e-4, 1e-3]
