"""The training loop's early stopping on a held-out loss (the best epoch's weights kept), its constant rate
and unclipped updates, mini-batches of one update each, and the qlm stage's ``paper`` preset: the Q-PEFT
authors' protocol written out from their description (README of this issue, docs/methods.md)."""

import json

import pytest
import torch

from bench.cells import expand
from bench.config import load_suite
from bench.errors import BenchError
from bench.sampling import EpochGroups
from bench.stages.qlm import PAPER, QlmTrain, hinge_loss, likelihood_batches
from bench.train import EarlyStopping, make_accelerator, train


def linear_problem():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)

    def loss(model, batch):
        return ((model(batch["x"]) - batch["y"]) ** 2).mean()

    return model, (lambda step: {"x": x, "y": y}), loss


def run(model, batches, loss, tmp_path, steps, **options):
    return train(
        model,
        batches,
        loss,
        lr=0.05,
        steps=steps,
        accelerator=make_accelerator(),
        log_path=tmp_path / "log.jsonl",
        fused=False,
        **options,
    )


def test_stops_after_patience_epochs_without_a_lower_dev_loss_and_keeps_the_best_weights(tmp_path):
    model, batches, loss = linear_problem()
    scripted = iter([3.0, 2.0, 2.5, 2.0, 2.7, 9.0, 1.0])  # epoch 2 is the best; 3, 4, 5 are no lower
    seen = []  # the weights at each epoch's end, as the dev loss saw them

    def dev_loss(m):
        assert not m.training and not torch.is_grad_enabled()
        seen.append(m.weight.detach().clone())
        return next(scripted)

    stopping = EarlyStopping(steps_per_epoch=2, patience=3, dev_loss=dev_loss)
    stats = run(model, batches, loss, tmp_path, steps=20, early_stopping=stopping)
    assert stats["dev_losses"] == [3.0, 2.0, 2.5, 2.0, 2.7]  # a tie is no improvement
    assert stats["best_epoch"] == 2 and stats["epochs_run"] == 5 and stats["steps"] == 10
    assert torch.equal(model.weight.detach(), seen[1]) and not torch.equal(seen[1], seen[4])
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 10


def test_runs_every_epoch_when_the_dev_loss_keeps_falling(tmp_path):
    model, batches, loss = linear_problem()
    falling = iter(range(10, 0, -1))
    stopping = EarlyStopping(steps_per_epoch=3, patience=1, dev_loss=lambda m: float(next(falling)))
    stats = run(model, batches, loss, tmp_path, steps=12, early_stopping=stopping)
    assert stats["epochs_run"] == 4 and stats["best_epoch"] == 4 and stats["steps"] == 12


def test_constant_rate_and_no_clipping(tmp_path):
    model, batches, loss = linear_problem()
    with torch.no_grad():
        model.weight.mul_(100.0)  # gradients far above a norm of 1
    run(model, batches, loss, tmp_path, steps=6, schedule="constant", grad_clip=None, warmup_ratio=0.0)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert {entry["lr"] for entry in log} == {0.05}
    assert log[0]["grad_norm"] > 10.0
    x, y = torch.randn(16, 3), torch.randn(16, 1)

    def varying(step):  # gradient norms that differ 100-fold between steps, all above 1
        return {"x": x * (1.0 if step % 2 == 0 else 0.01), "y": y}

    finals = []
    for clip in (1.0, None):
        model, _, loss = linear_problem()
        with torch.no_grad():
            model.weight.mul_(100.0)
        run(model, varying, loss, tmp_path, steps=3, grad_clip=clip)
        finals.append(model.weight.detach().clone())
    # clipped, every step reaches Adam at norm 1; unclipped, the small steps count for little
    assert not torch.allclose(finals[0], finals[1], rtol=1e-3)


def test_a_step_of_mini_batches_makes_one_update_each(tmp_path):
    model, one, loss = linear_problem()
    stats = run(model, lambda step: [one(step), one(step), one(step)], loss, tmp_path, steps=2, schedule="constant")
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 1, 1, 2, 2, 2]
    assert stats["steps"] == 2 and stats["updates"] == 6
    assert log[-1]["loss"] < log[0]["loss"]


def test_paper_preset_is_the_authors_protocol_under_the_suites_own_keys():
    paper = QlmTrain(preset="paper")
    assert (paper.lr_for("qpeft-r"), paper.schedule, paper.grad_clip, paper.warmup_ratio) == (3e-2, "constant", None, 0)
    assert (paper.max_queries, paper.batch_queries, paper.pairs_per_step) == (320, 4, 2)
    assert (paper.epochs, paper.dev_queries, paper.patience) == (20, 128, 6)
    assert (paper.group_size, paper.in_batch) == (2, "all")  # 1 + 3 + 3 = 7 negatives per query
    assert QlmTrain(preset="paper", margin=0.4, epochs=3).model_dump() == {
        **paper.model_dump(),
        "margin": 0.4,
        "epochs": 3,
    }
    with pytest.raises(ValueError, match="not one of this stage's presets"):
        QlmTrain(preset="gpu")
    with pytest.raises(ValueError, match="schedule: constant"):
        QlmTrain(pairs_per_step=2)
    with pytest.raises(ValueError, match="not steps"):
        QlmTrain(dev_queries=4, steps=10)
    assert PAPER["lr"]["lora"] < 1e-3  # the authors' 3e-2 is for the prompt-side methods alone


class FixedScores(torch.nn.Module):
    """Log-probabilities by pair position (what the hinge reads), ignoring the tokens."""

    def __init__(self, scores):
        super().__init__()
        self.scores = torch.tensor(scores)

    def forward(self, query_ids, **_):
        return self.scores[: len(query_ids)]


def test_paper_mini_batches_are_two_positive_negative_pairs_and_the_authors_loss(tmp_path):
    from bench.data import load_beir_folder
    from bench.models import load_causal_lm
    from bench.stages.qlm import QueryLikelihood
    from helpers.data import write_beir

    tokenizer, lm = load_causal_lm("tiny-llama", seed=0)
    train_coll = load_beir_folder(write_beir(tmp_path), "train")
    candidates = {q: {d: 1.0 for d in train_coll.corpus} for q in train_coll.queries}
    groups = EpochGroups(train_coll, candidates, group_size=2, seed=0)
    model = QueryLikelihood(lm, tokenizer)
    chosen = groups.batch(0, 4)
    minis = likelihood_batches(groups, train_coll, model, 4, in_batch="all", pairs_per_step=2)(0)
    # per query: its first-stage negative, then each other query's positive and negative, unless judged relevant
    expected = sum(
        1
        + sum(train_coll.qrels[q].get(d, 0) <= 0 for j, (_, p, negs) in enumerate(chosen) if j != i for d in [p, *negs])
        for i, (q, _, _) in enumerate(chosen)
    )
    assert sum(len(m["negative_pairs"]) for m in minis) == expected and len(minis) == -(-expected // 2)
    first = minis[0]
    assert first["query_ids"].shape[0] == 4 and first["positive_index"].tolist() == [0, 2]
    assert first["negative_pairs"].tolist() == [[0, 1], [1, 3]]
    # sequences in the order pos, neg, pos, neg: the loss is mean(relu(nll+ - nll- + m)) + mean(nll+)
    logp = [-1.0, -1.5, -2.0, -1.0]
    nll = [-v for v in logp]
    by_hand = (max(0, nll[0] - nll[1] + 0.5) + max(0, nll[2] - nll[3] + 0.5)) / 2 + (nll[0] + nll[2]) / 2
    assert hinge_loss(0.5)(FixedScores(logp), dict(first)).item() == pytest.approx(by_hand)


def test_dev_queries_are_held_out_of_training_and_drawn_before_max_queries(tmp_path):
    from bench.data import load_beir_folder
    from helpers.data import write_synthetic_beir

    train_coll = load_beir_folder(write_synthetic_beir(tmp_path), "train")
    candidates = {q: {} for q in train_coll.queries}
    plain = EpochGroups(train_coll, candidates, 2, seed=5)
    held = EpochGroups(train_coll, candidates, 2, seed=5, max_queries=10, dev_queries=8)
    assert len(held.dev_ids) == 8 and not set(held.dev_ids) & set(held.query_ids) and len(held) == 10
    assert held.dev_ids + held.query_ids == plain.query_ids[:18]  # one seeded order, the dev part first
    assert sorted(g[0] for g in held.dev().groups) == sorted(held.dev_ids) and held.dev().groups == held.dev().groups
    with pytest.raises(BenchError, match="hold out fewer"):
        EpochGroups(train_coll, candidates, 2, seed=5, dev_queries=len(plain))


def test_a_qlm_cell_under_the_paper_preset_stops_early_and_records_its_dev_losses(tmp_path):
    from helpers.cli import bench
    from helpers.data import write_synthetic_beir, write_toy_suite

    write_synthetic_beir(tmp_path / "data")
    common = {
        "stage": "qlm",
        "model": "tiny-llama",
        "methods": "qpeft-r",
        "budgets": [0.5],
        "datasets": [{"train": "synth/train", "eval": ["synth/test"]}],
        "eval": {"depth": 5, "batch_size": 8, "max_queries": 4},
    }
    paper = {"preset": "paper", "epochs": 4, "patience": 1, "dev_queries": 8, "max_queries": 8, "lr": 3.0e-2}
    suite = write_toy_suite(tmp_path, "paper", **common, train=paper)
    done = bench("run", "--suite", suite, "--out", tmp_path / "runs", env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-2000:]
    (cell,) = [p.parent for p in (tmp_path / "runs" / "paper").glob("*/train_log.jsonl")]
    stats = json.loads((cell / "result.json").read_text())["train"]
    assert 2 <= stats["epochs_run"] <= 4 and len(stats["dev_losses"]) == stats["epochs_run"]
    assert stats["best_epoch"] == 1 + stats["dev_losses"].index(min(stats["dev_losses"]))
    assert stats["epochs_run"] == 4 or stats["epochs_run"] - stats["best_epoch"] == 1  # patience 1
    assert stats["steps"] == 2 * stats["epochs_run"]  # 8 queries, 4 a batch
    log = (cell / "train_log.jsonl").read_text().splitlines()
    assert len(log) == stats["updates"] > stats["steps"]  # mini-batches of 2 pairs: several updates a step
    assert {json.loads(line)["lr"] for line in log} == {3.0e-2}
    config = json.loads((cell / "config.json").read_text())
    assert config["train"]["preset"] == "paper" and config["train"]["grad_clip"] is None
    plain = write_toy_suite(tmp_path / "other", "plain", **common, train={"steps": 2})
    (other,) = [c for c in expand(load_suite(str(plain))) if c.method == "qpeft-r"]
    assert other.id != cell.name and other.to_json()["train"]["preset"] is None
