"""Data parallelism inside a cell: the learning-rate schedule follows the optimiser steps whatever the
number of processes, and the dense stage's in-batch negatives come from every rank (the N-process step
computes the single-process loss and gradient on the same global batch)."""

import json
import socket

import pytest
import torch
import torch.multiprocessing as mp

from helpers.cli import bench
from helpers.data import write_toy_suite
from helpers.distributed import dense_batch, dense_model, worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gathered_negatives_give_the_single_process_loss_and_gradient(tmp_path):
    from bench.stages.dense import contrastive_loss

    model = dense_model()
    loss = contrastive_loss(0.05)(model, dense_batch())
    loss.backward()
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    two = torch.load(tmp_path / "two.pt")
    assert two["loss"].item() == pytest.approx(loss.item(), abs=1e-6)
    for name, p in model.named_parameters():
        assert (two["grads"][name] - p.grad).abs().max() <= 1e-5 * max(1.0, p.grad.abs().max().item()), name


def logs(out, method):
    for path in out.rglob("result.json"):
        result = json.loads(path.read_text())
        if result["method"] == method:
            return result, [json.loads(line) for line in (path.parent / "train_log.jsonl").read_text().splitlines()]
    raise AssertionError(f"no {method} cell in {out}")


@pytest.mark.parametrize(
    "stage, method, packing",
    [
        ("rerank", "full", {}),
        ("dense", "lora", {}),
        # the harness's own packing over the same accelerate path: the first tox env alone (tests/conftest.py)
        pytest.param("rerank", "full", {"token_budget": 24, "pad_to_multiple_of": 8}, marks=pytest.mark.harness),
    ],
)
def test_two_processes_follow_the_one_process_schedule(stage, method, packing, tmp_path):
    """The lr of every step is identical. Losses differ only by dropout (each layout draws its own masks;
    weights and batches are the same): within 5% at the first step, when no update has happened yet, and
    25% over the last steps. The dense loss here uses temperature 1: at 0.05 the tiny random model's
    dropout noise alone moves a 4-passage softmax by 20%; the exact equality of the gathered loss and
    gradient, without dropout, is the test above. With a token budget each rank runs its share of a step in
    chunks inside one forward (what the data-parallel wrapper sees)."""
    suite = write_toy_suite(
        tmp_path,
        "ddp",
        stage=stage,
        methods=f"bm25,{method}",
        train={
            "steps": 12,
            "batch_queries": 2,
            "group_size": 2,
            "max_length": 32,
            "query_max_length": 16,
            "warmup_ratio": 0.25,
            "lr": {"default": 1e-3, "full": 3e-5},
            **({"temperature": 1.0} if stage == "dense" else {}),
            **packing,
        },
        eval={"depth": 8, "batch_size": 4},
    )
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert bench("run", "--suite", suite, "--out", single, env_path=tmp_path / "data").returncode == 0
    done = bench("run", "--suite", suite, "--out", ddp, "--processes-per-cell", "2", env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    (one, one_log), (two, two_log) = logs(single, method), logs(ddp, method)
    assert one["processes"] == 1 and two["processes"] == 2
    assert [r["lr"] for r in two_log] == [r["lr"] for r in one_log]
    assert one_log[-1]["lr"] > 0 and len(one_log) == 12  # the decay reaches its end at the last step, not before
    assert two_log[0]["loss"] == pytest.approx(one_log[0]["loss"], rel=0.05)
    assert two["train"]["loss_last"] == pytest.approx(one["train"]["loss_last"], rel=0.25)
    assert not (ddp / "_queue").exists()
