"""The collapse rule (bench/collapse.py): judged from the training losses alone; the training loop stops a
run still at chance at the checkpoint and never one that learns; on the published boards' records it names
exactly the cells that never trained; the report keeps collapsed seeds out of means and counts them."""

import math
from pathlib import Path

import pytest
import torch

from bench import collapse
from bench.commands.records import judged
from bench.report.stats import build_rows
from bench.results import Status, read_records
from bench.stages import get_stage
from bench.train import make_accelerator, train

BOARDS = Path(__file__).resolve().parents[2] / "reports" / "published"


def test_the_rule_reads_the_trailing_tenth_against_chance():
    chance = math.log(4)
    assert collapse.at_chance([0.5] * 90 + [chance] * 10, chance)
    assert collapse.at_chance([chance - 0.009] * 100, chance)
    assert not collapse.at_chance([chance - 0.011] * 100, chance)
    assert not collapse.at_chance([chance] * 90 + [0.5] * 10, chance)  # it learnt at the end
    assert not collapse.at_chance([chance] * 100, None)  # a stage without a chance level
    assert not collapse.at_chance([], chance)
    assert collapse.checkpoint_step(100) == 75 and collapse.checkpoint_step(99) is None
    assert not collapse.at_chance([chance] * 99, chance)  # too short to judge (a toy grid's 3 steps)


def test_each_stage_states_its_chance_level():
    rerank = get_stage("rerank")
    assert rerank.chance_loss(rerank.Train(group_size=8)) == pytest.approx(math.log(8))
    assert rerank.chance_loss(rerank.Train(group_size=8, loss="bce")) is None
    dense = get_stage("dense")
    assert dense.chance_loss(dense.Train(batch_queries=16, group_size=2)) == pytest.approx(math.log(32))
    qlm = get_stage("qlm")
    assert qlm.chance_loss(qlm.Train()) is None


def _listwise(model, batch):
    """Softmax over a group of 4 scores from a linear scorer: ln 4 while the scorer gives every
    candidate the same score."""
    scores = model(batch["x"]).squeeze(-1)
    return torch.nn.functional.cross_entropy(scores, batch["target"])


def _run(tmp_path, model, x, lr, steps=120, **options):
    target = torch.zeros(x.shape[0], dtype=torch.long)
    return train(
        model,
        lambda step: {"x": x, "target": target},
        _listwise,
        lr=lr,
        steps=steps,
        accelerator=make_accelerator(),
        log_path=tmp_path / "log.jsonl",
        fused=False,
        chance=math.log(4),
        **options,
    )


def test_a_run_at_chance_stops_at_the_checkpoint_and_one_that_learns_runs_to_the_end(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(8, 4, 3)
    flat = torch.nn.Linear(3, 1)
    with torch.no_grad():
        flat.weight.zero_()
    flat.weight.requires_grad_(False)  # only the bias trains: every candidate keeps the same score
    stats = _run(tmp_path, flat, x, lr=0.1)
    assert stats["collapsed"] and stats["stopped_collapsed_at"] == 90 and stats["steps"] == 90
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 90
    learner = torch.nn.Linear(3, 1)
    x_learnable = x.clone()
    x_learnable[:, 0] += 3.0  # the first candidate of every group is told apart by its features
    stats = _run(tmp_path, learner, x_learnable, lr=0.1)
    assert not stats["collapsed"] and stats["steps"] == 120 and "stopped_collapsed_at" not in stats


def test_the_early_stop_can_be_turned_off_and_the_run_is_still_judged(tmp_path):
    flat = torch.nn.Linear(3, 1)
    with torch.no_grad():
        flat.weight.zero_()
    flat.weight.requires_grad_(False)
    stats = _run(tmp_path, flat, torch.randn(8, 4, 3), lr=0.1, stop_collapsed=False)
    assert stats["collapsed"] and stats["steps"] == 120 and "stopped_collapsed_at" not in stats


def _judged_board(name):
    return [judged(loaded) for loaded in read_records(BOARDS / name / "results.jsonl")]


def test_on_the_published_rerank_board_exactly_the_cells_that_never_trained_are_collapsed():
    cells = _judged_board("board-scifact-rerank")
    named = sorted(
        (c.result.method, c.result.config["train"]["lr"], c.result.seed) for c in cells if c.status is Status.COLLAPSED
    )
    assert named == [
        ("adapter", 0.003, 13),
        ("adapter-pfeiffer", 0.003, 13),
        ("iaa-l", 0.003, 87),
        ("iaa-m", 0.003, 87),
        ("iaa-s", 0.003, 13),
        ("mam", 0.01, 13),
    ]
    validation = {
        status: [v["ndcg@10"] for c in cells if c.status is status for v in c.result.validation.values()]
        for status in (Status.COLLAPSED, Status.DONE)
    }
    # every collapsed cell ranks below every trained one on validation (0.141 at most, 0.195 at least)
    assert max(validation[Status.COLLAPSED]) < min(validation[Status.DONE])


def test_no_cell_of_the_published_dense_board_is_collapsed():
    assert not [c for c in _judged_board("board-scifact-dense") if c.status is Status.COLLAPSED]


def test_the_leaderboard_counts_collapsed_seeds_and_means_only_the_trained():
    cells = [c for c in _judged_board("board-scifact-rerank") if c.result.phase != "search"]
    rows = {
        r.method: r
        for r in build_rows(cells, compare=False)
        if r.dataset == "scifact/test" and r.metric == "ndcg@10" and r.family_budget == "0.5"
    }
    iaa_l = rows["iaa-l"]
    assert (iaa_l.seeds, iaa_l.collapsed, iaa_l.expected, iaa_l.complete) == (2, 1, 3, True)
    assert iaa_l.seeds_label == "2/3" and iaa_l.collapse_label == "1/3"
    assert iaa_l.mean == pytest.approx((0.6438 + 0.651) / 2, abs=1e-4)
    assert any("collapsed" in note for note in iaa_l.notes)
    assert rows["lora"].collapsed == 0 and rows["lora"].seeds == 3
