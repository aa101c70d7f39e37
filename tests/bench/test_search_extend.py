"""Protocol v2's search: every seed a search seed; a winner at an edge of the lr grid adds the next value
beyond it (the same ratio) on every seed, up to the cap a side; a winner still at the edge at the cap is
flagged in its selection; a collapsed cell counts with its validation score."""

import pytest
import yaml

from bench import results
from bench.config import load_suite
from bench.data import cached_collection
from bench.errors import BenchError
from bench.results import Status
from bench.search import _beyond, plan
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
        "budgets": [2.0],
        "seeds": [1, 2, 3],
        "search_seeds": [1, 2, 3],
        "datasets": [{"train": "synth/train", "eval": ["synth/test"], "holdout": 0.25}],
        "train": {"steps": 2},
        "search": {"lr": [1.0e-4, 3.0e-4, 1.0e-3]},
        "search_extend": {"lr": 2},
        **extra,
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


@pytest.fixture
def group(tmp_path, monkeypatch):
    grid = plan(load_suite(str(_suite(tmp_path, monkeypatch))))
    yield grid.groups[0], RunStore(tmp_path / "runs", "s")
    cached_collection.cache_clear()


def _finish(group, store, score_of, status=lambda lr, seed: Status.DONE):
    """Every search cell not yet finished gets its validation score ``score_of(lr, seed)``."""
    for cell in group.search_cells(store):
        if store.state(cell).finished:
            continue
        lr = cell.train["lr"]
        validation = {VALIDATION: {"ndcg@10": score_of(lr, cell.seed)}}
        results.write(store.dir_for(cell), results.for_cell(cell, status(lr, cell.seed), validation=validation))


def _lrs(group, store):
    return sorted({c.train["lr"] for c in group.search_cells(store)})


def test_every_seed_searches_and_an_interior_winner_adds_nothing(group):
    group, store = group
    assert {c.seed for c in group.search_cells(store)} == {1, 2, 3} and len(group.search_cells(store)) == 9
    _finish(group, store, lambda lr, seed: {1e-4: 0.5, 3e-4: 0.6, 1e-3: 0.55}[lr])
    assert _lrs(group, store) == [1e-4, 3e-4, 1e-3]
    finals = group.final_cells(store)
    assert {c.seed for c in finals} == {1, 2, 3} and {c.train["lr"] for c in finals} == {3e-4}
    assert finals[0].selection["extended"] == [] and finals[0].selection["edge_at_cap"] is None


def test_a_winner_at_the_top_edge_adds_values_beyond_it_until_it_is_inside(group):
    group, store = group
    peak = {1e-4: 0.4, 3e-4: 0.5, 1e-3: 0.6, 3.33e-3: 0.7, 1.11e-2: 0.65}
    _finish(group, store, lambda lr, seed: peak[lr] + 0.001 * seed)
    assert group.final_cells(store) == []  # the extension is pending: nothing is selected yet
    assert _lrs(group, store) == [1e-4, 3e-4, 1e-3, 3.33e-3]  # the ratio of 1e-3 to 3e-4
    assert {c.seed for c in group.search_cells(store) if c.train["lr"] == 3.33e-3} == {1, 2, 3}
    _finish(group, store, lambda lr, seed: peak[lr])
    assert _lrs(group, store)[-1] == 1.11e-2
    _finish(group, store, lambda lr, seed: peak[lr])
    finals = group.final_cells(store)
    assert {c.train["lr"] for c in finals} == {3.33e-3}
    assert finals[0].selection["extended"] == [{"lr": 3.33e-3}, {"lr": 1.11e-2}]
    assert finals[0].selection["edge_at_cap"] is None
    assert len(finals[0].selection["configurations"]) == 5


def test_a_winner_still_at_the_edge_at_the_cap_is_flagged(group):
    group, store = group
    for _ in range(4):
        _finish(group, store, lambda lr, seed: 1.0 - lr)  # the lowest lr always wins
    lrs = _lrs(group, store)
    assert lrs == [1.11e-5, 3.33e-5, 1e-4, 3e-4, 1e-3]  # two values a side at most
    finals = group.final_cells(store)
    assert finals and finals[0].selection["edge_at_cap"] == "low"
    assert {c.train["lr"] for c in finals} == {min(lrs)}


def test_a_collapsed_cell_counts_with_its_validation_score(group):
    group, store = group
    _finish(
        group,
        store,
        lambda lr, seed: {1e-4: 0.5, 3e-4: 0.9 if seed != 3 else 0.05, 1e-3: 0.6}[lr],
        status=lambda lr, seed: Status.COLLAPSED if (lr, seed) == (3e-4, 3) else Status.DONE,
    )
    assert group.pending_search(store) == 0
    finals = group.final_cells(store)
    means = {c["config"]["lr"]: c["mean"] for c in finals[0].selection["configurations"]}
    assert means[3e-4] == pytest.approx((0.9 + 0.9 + 0.05) / 3) and {c.train["lr"] for c in finals} == {3e-4}


def test_extension_values_keep_the_ratio():
    assert _beyond([3e-5, 1e-4], "high") == 3.33e-4 and _beyond([1e-4, 3e-4], "low") == 3.33e-5


def test_search_extend_names_a_searched_setting(tmp_path, monkeypatch):
    path = _suite(tmp_path, monkeypatch, search_extend={"warmup_ratio": 1})
    with pytest.raises(BenchError, match="search_extend.warmup_ratio"):
        load_suite(str(path))
