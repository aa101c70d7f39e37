"""`bench status`'s line on what is left: each unfinished cell at the measured mean of the finished cells of
its method and budget (else its method's, else every finished cell's)."""

import yaml

from bench import results
from bench.cells import expand
from bench.commands.status import remaining_line
from bench.config import load_suite
from bench.fmt import duration
from bench.results import Status
from bench.store import RunStore


def _cells(tmp_path):
    suite = {
        "name": "s", "stage": "rerank", "model": "tiny-bert", "methods": ["lora", "adapter"], "budgets": [2.0],
        "seeds": [1, 2, 3], "datasets": [{"train": "synth/train", "eval": ["synth/test"]}],
    }  # fmt: skip
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(suite))
    return expand(load_suite(str(path))), RunStore(tmp_path / "runs", "s")


def _finish(store, cell, seconds):
    results.write(store.dir_for(cell), results.for_cell(cell, Status.DONE, times={"total_s": seconds}))


def test_what_is_left_is_priced_at_the_finished_cells_of_the_same_method(tmp_path):
    cells, store = _cells(tmp_path)
    assert sorted(c.method for c in cells) == ["adapter"] * 3 + ["bm25"] + ["lora"] * 3
    lora = [c for c in cells if c.method == "lora"]
    adapter = [c for c in cells if c.method == "adapter"]
    assert remaining_line(cells, store, 0) == ""  # nothing measured yet: no guess
    _finish(store, next(c for c in cells if c.method == "bm25"), 5.0)
    _finish(store, lora[0], 100.0)
    _finish(store, lora[1], 300.0)
    _finish(store, adapter[0], 60.0)
    line = remaining_line(cells, store, 0)
    # lora's last seed at lora's mean (200 s), adapter's two at adapter's (60 s each)
    assert line.startswith(f"left: about {duration(320.0)} of cell wall time (3 pending, 0 running, 0 to score")
    for cell in cells:
        if store.result(cell) is None:
            _finish(store, cell, 1.0)
    assert remaining_line(cells, store, 0) == ""  # nothing left
