"""A board's per-seed table: each trained cell's test score beside its training loss at start and end."""

from types import SimpleNamespace

from bench.report.publish import seed_table
from bench.results import Status


def _cell(method, seed, losses, ndcg, status=Status.DONE):
    result = SimpleNamespace(
        stage="rerank", method=method, budget=0.5, seed=seed, config={"train": {"lr": 3e-3}},
        metrics={"scifact/test": {"ndcg@10": ndcg, "mrr@10": ndcg / 2}},
    )  # fmt: skip
    return SimpleNamespace(status=status, result=result, losses=losses)


def test_a_seed_that_never_trains_shows_a_flat_loss_beside_its_score():
    learned = [1.4] * 10 + [0.8] * 80 + [0.2] * 10
    stuck = [1.386] * 100
    rows = seed_table([_cell("iaa-l", 87, stuck, 0.1059, Status.COLLAPSED), _cell("iaa-l", 13, learned, 0.6438)])
    body = [line for line in rows if line.startswith("| rerank")]
    assert body == [
        "| rerank | iaa-l | 0.5 | 0.003 | 13 | scifact/test | nDCG@10 | 0.6438 | 1.400 → 0.200 | done |",
        "| rerank | iaa-l | 0.5 | 0.003 | 87 | scifact/test | nDCG@10 | 0.1059 | 1.386 → 1.386 | collapsed |",
    ]


def test_cells_not_done_or_untrained_have_no_row():
    failed = _cell("lora", 1, [1.0, 0.5], 0.3, status=Status.FAILED)
    untrained = _cell("bm25", 1, [], 0.6)
    assert seed_table([failed, untrained]) == ["No trained cell has a test score yet."]
