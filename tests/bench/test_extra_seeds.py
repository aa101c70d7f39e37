"""``extra_seeds``: more seeds of one method (the reference whose seed variance is in every claim-1
comparison), run as final seeds at the configuration the search selects on the grid's search seeds."""

import pytest
import yaml

from bench.cells import expand
from bench.config import load_suite, overrides_from, parse_suite
from bench.errors import BenchError
from bench.search import plan

RAW = {
    "name": "g",
    "stage": "rerank",
    "methods": ["bm25", "full", "lora"],
    "budgets": [0.5],
    "seeds": [1, 2, 3],
    "datasets": [{"train": "a/train", "eval": ["a/test"], "holdout": 0.2}],
    "extra_seeds": {"full": [4, 5]},
}


def seeds_of(cells, method):
    return sorted(c.seed for c in cells if c.method == method)


def test_a_method_with_extra_seeds_runs_them_beside_the_grids():
    cells = expand(parse_suite(RAW, "g"))
    assert seeds_of(cells, "full") == [1, 2, 3, 4, 5]
    assert seeds_of(cells, "lora") == [1, 2, 3]


def test_extra_seeds_are_final_seeds_of_the_search(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({**RAW, "search": {"lr": [1.0e-4, 1.0e-3]}, "search_seeds": [1, 2, 3]}))
    grid = plan(load_suite(str(path)))
    full = next(g for g in grid.groups if g.cells[0].method == "full")
    assert {c.seed for c in full.search_cells()} == {1, 2, 3}
    assert sorted(c.seed for c in full.cells) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"bm25": [4]}, "bm25 trains nothing"),
        ({"full": [2]}, "seed 2 is already one of the grid's seeds"),
        ({"full": [4, 4]}, "seed 4 is listed twice"),
        ({"nope": [4]}, "unknown method"),
    ],
)
def test_bad_extra_seeds_end_in_one_line_naming_them(extra, message):
    with pytest.raises(BenchError, match=message):
        parse_suite({**RAW, "extra_seeds": extra}, "g")


def test_the_seeds_flag_names_every_seed_the_grid_runs():
    class Args:
        seeds = "1"

    over = overrides_from(Args())
    assert over.suite["seeds"] == [1] and over.suite["extra_seeds"] == {}
