"""The search's pieces: the expansion of ``search:``, the one selecting function (handed validation scores
alone), the holdout split (disjoint, the same for every method and seed, stable across runs and
machines) and Dodge et al.'s expected best validation score."""

import itertools
import os
import random
import subprocess
import sys

import pytest
import yaml

from bench import results
from bench.config import load_suite
from bench.data import cached_collection, held_out_queries, holdout_fingerprint
from bench.report.search_views import expected_best
from bench.report.stats import build_rows
from bench.results import Status
from bench.runner import grid_records
from bench.search import configurations, plan, select_on_validation
from bench.store import RunStore
from helpers.data import write_synthetic_beir

VALIDATION = "synth/train~holdout:0.25:s0"


@pytest.fixture
def grid(tmp_path, monkeypatch):
    write_synthetic_beir(tmp_path / "data", "synth")
    monkeypatch.setenv("BENCH_DATA_PATH", str(tmp_path / "data"))
    cached_collection.cache_clear()
    suite = {
        "name": "s",
        "stage": "rerank",
        "model": "tiny-bert",
        "methods": ["bm25", "lora", "full"],
        "budgets": [2.0],
        "seeds": [1, 2, 3],
        "datasets": [{"train": "synth/train", "eval": ["synth/test"], "holdout": 0.25}],
        "train": {"steps": 2, "lr": {"default": 1.0e-3, "full": 3.0e-5}},
        "search": {"lr": {"default": [1.0e-4, 1.0e-3, 1.0e-2], "full": [1.0e-5, 3.0e-5]}, "warmup_ratio": [0.0, 0.1]},
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(suite))
    yield plan(load_suite(str(path))), RunStore(tmp_path / "runs", "s")
    cached_collection.cache_clear()


def write(store, cell, validation, test=None):
    metrics = {"synth/test": {"ndcg@10": test}} if test is not None else {}
    results.write(
        store.dir_for(cell),
        results.for_cell(cell, Status.DONE, metrics=metrics, validation={VALIDATION: {"ndcg@10": validation}}),
    )


def test_configurations_are_the_product_of_each_methods_values():
    search = {"lr": {"default": [1, 2], "full": [3]}, "warmup_ratio": [0.0, 0.1]}
    assert configurations(search, "lora") == [
        {"lr": 1, "warmup_ratio": 0.0},
        {"lr": 1, "warmup_ratio": 0.1},
        {"lr": 2, "warmup_ratio": 0.0},
        {"lr": 2, "warmup_ratio": 0.1},
    ]
    assert configurations(search, "full") == [{"lr": 3, "warmup_ratio": 0.0}, {"lr": 3, "warmup_ratio": 0.1}]
    assert configurations({}, "lora") == [{}]


def test_the_selection_takes_the_best_mean_and_the_first_listed_on_a_tie():
    assert select_on_validation({"a": [0.2, 0.4], "b": [0.5, 0.2], "c": [0.1]}) == "b"
    assert select_on_validation({"a": [0.3], "b": [0.3]}) == "a"
    assert select_on_validation({"a": [], "b": [0.1]}) == "b" and select_on_validation({"a": []}) is None


def test_the_grid_searches_on_the_first_seed_and_adds_the_stated_cells(grid):
    cells, store = grid
    lora = next(g for g in cells.groups if g.cells[0].method == "lora")
    assert {c.seed for c in lora.search_cells()} == {1} and len(lora.search_cells()) == 6
    assert all(c.scoring == "validation" for c in lora.search_cells())
    assert cells.added_cells() == (6 - 1) + (4 - 1)  # configurations x search seeds - the reused winner
    assert [c.method for c in cells.fixed] == ["bm25"]
    assert cells.final_phase(store) == []  # nothing is selected before the search cells are done


def _finish_search(cells, store, rng, test_of=lambda cell: None):
    scores = {}
    for group in cells.groups:
        for cell in group.search_cells():
            scores[cell.id] = rng.random()
            write(store, cell, scores[cell.id], test_of(cell))
    return scores


def _chosen(cells, store):
    return {g.cells[0].method: g.final_cells(store)[0].selection["chosen"] for g in cells.groups}


def test_the_selection_ignores_every_test_metric_and_follows_the_validation_ones(grid, tmp_path):
    cells, store = grid
    rng = random.Random(0)
    _finish_search(cells, store, rng, test_of=lambda cell: rng.random())
    chosen = _chosen(cells, store)
    finals = {g.cells[0].method: g.final_cells(store) for g in cells.groups}
    assert all(len(f) == 3 and all(c.scoring == "all" for c in f) for f in finals.values())
    searched = [c for group in cells.groups for c in group.search_cells()]
    permuted = [results.load(store.dir_for(c)).metrics for c in searched]
    random.Random(1).shuffle(permuted)
    noise = random.Random(2)
    for replacement in (
        lambda i: permuted[i],  # every test metric moved to another cell
        lambda i: {"synth/test": {"ndcg@10": noise.random()}},  # replaced by noise
        lambda i: {"synth/test": {"ndcg@10": -1.0}},  # the worst possible
    ):
        for i, cell in enumerate(searched):
            result = results.load(store.dir_for(cell))
            results.write(store.dir_for(cell), results.CellResult(**{**vars(result), "metrics": replacement(i)}))
        assert _chosen(cells, store) == chosen
    lora = next(g for g in cells.groups if g.cells[0].method == "lora")
    loser = next(c for c in lora.search_cells() if {k: c.train[k] for k in chosen["lora"]} != chosen["lora"])
    write(store, loser, 2.0)  # one validation score changes: the selection follows it
    expected = {k: loser.train[k] for k in chosen["lora"]}
    assert _chosen(cells, store)["lora"] == expected and _chosen(cells, store)["full"] == chosen["full"]


def test_the_holdout_is_disjoint_and_the_same_for_every_method_and_seed(grid):
    cells, _ = grid
    trained = [c for g in cells.groups for c in g.search_cells() + g.cells]
    assert {c.datasets["validation"] for c in trained} == {VALIDATION}
    assert {c.datasets["train"] for c in trained} == {"synth/train~fit:0.25:s0"}
    held, fit = cached_collection(VALIDATION), cached_collection("synth/train~fit:0.25:s0")
    test = cached_collection("synth/test")
    assert len(held.queries) == 10 and len(fit.queries) == 30  # a quarter of the 40 training queries
    assert not set(held.queries) & set(fit.queries) and not set(held.queries) & set(test.queries)
    assert set(held.queries) | set(fit.queries) == set(cached_collection("synth/train").queries)


def test_the_holdout_fingerprint_is_stable_across_runs_and_machines(grid, tmp_path):
    """The split depends on the query ids, the fraction and the seed alone: a fresh process with another
    hash seed finds the same queries, and the pinned fingerprint (written by this code once) holds."""
    coll = cached_collection("synth/train")
    held = held_out_queries(coll, 0.25, 0)
    code = (
        "from bench.data import cached_collection, held_out_queries, holdout_fingerprint;"
        "print(holdout_fingerprint(held_out_queries(cached_collection('synth/train'), 0.25, 0), 0.25, 0))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "123"}
    )
    assert other.stdout.strip() == holdout_fingerprint(held, 0.25, 0) == "07f3cd3490cbf103"
    assert held_out_queries(coll, 0.25, 1) != held  # another holdout seed, another split


def test_expected_best_equals_the_enumerated_expectation():
    scores = [0.31, 0.35, 0.2, 0.35, 0.4]
    for n, value in enumerate(expected_best(scores), 1):
        draws = list(itertools.product(scores, repeat=n))
        assert value == pytest.approx(sum(max(d) for d in draws) / len(draws))


def test_an_earlier_protocols_selection_is_relabelled_a_search_cell_and_left_out_of_the_table(grid):
    cells, store = grid
    rng = random.Random(0)
    for group in cells.groups:
        for cell in group.search_cells():
            write(store, cell, rng.random())
    lora = next(g for g in cells.groups if g.cells[0].method == "lora")
    chosen = lora.final_cells(store)[0].selection["chosen"]
    loser = next(c for c in lora.search_cells() if {k: c.train[k] for k in chosen} != chosen)
    stale = results.load(store.dir_for(loser))
    results.write(  # what an earlier search left: this configuration selected, and scored on the test data
        store.dir_for(loser),
        results.CellResult(
            **{
                **vars(stale),
                "phase": "final",
                "selection": {"chosen": {k: loser.train[k] for k in chosen}},
                "metrics": {"synth/test": {"ndcg@10": 0.99}},
            }
        ),
    )
    finals = [c for g in cells.groups for c in g.final_cells(store)]
    for cell in finals:  # the test scores; a search seed's cell keeps its validation score (and so the choice)
        before = results.load(store.dir_for(cell)) if store.dir_for(cell).is_dir() else None
        validation = before.validation[VALIDATION]["ndcg@10"] if before else 0.5
        write(store, cell, validation, 0.25 + 0.01 * cell.seed)
    records = grid_records(cells, store)
    by_id = {c.result.cell_id: c.result for c in records}
    assert by_id[loser.id].phase == "search" and by_id[loser.id].selection == {}
    assert {by_id[c.id].phase for c in finals} == {"final"}
    assert all(by_id[c.id].selection["chosen"] == g.chosen(store) for g in cells.groups for c in g.final_cells(store))
    searched = {c.id for g in cells.groups for c in g.search_cells(store)}
    assert set(by_id) == searched | {c.id for c in finals}  # the search cells are in the records too (bm25 never ran)
    (row,) = [r for r in build_rows(records, compare=False) if r.method == "lora" and r.metric == "ndcg@10"]
    assert sorted(row.values) == [0.26, 0.27, 0.28]  # the three selected seeds; never the stale 0.99
    assert all(c.status is Status.DONE for c in records)
