"""Every registered stage runs a tiny cell of every system that fits it; a stage defined in the tests
alone (tests/helpers/pointwise_stage.py, one class) runs through bench run and bench report."""

import json
import os
from pathlib import Path

import pytest
import yaml

import bench.stages as stages_registry
from bench import systems
from bench.cells import expand
from bench.cli import main
from bench.config import parse_suite
from bench.results import Status
from bench.stages import all_stages
from bench.worker import execute
from helpers.cli import bench
from helpers.data import write_beir

TINY = {"encoder": "tiny-bert", "causal-lm": "tiny-llama"}
SETTINGS = {"train": {"steps": 2, "batch_queries": 2, "group_size": 2}, "eval": {"depth": 4, "batch_size": 4}}
LENGTHS = {
    "rerank": {"max_length": 24},
    "dense": {"max_length": 24, "query_max_length": 12},
    "qlm": {"passage_max_length": 16, "query_max_length": 8},
    "pointwise": {"max_length": 24},
}


def tiny_suite(stage, methods="all", name="contract"):
    lengths = LENGTHS.get(stage.name, {})
    return {
        "name": name,
        "stage": stage.name,
        "model": TINY[stage.family],
        "methods": methods,
        "budgets": ["native"],
        "seeds": [1],
        "datasets": [{"train": "toy/train", "eval": ["toy/test"]}],
        "first_stage": {"depth": 4},
        "train": {**SETTINGS["train"], **lengths},
        "eval": {**SETTINGS["eval"], **lengths},
    }


@pytest.fixture
def pointwise():
    import helpers.pointwise_stage  # noqa: F401  (registers the stage)

    yield stages_registry.get_stage("pointwise")
    stages_registry._REGISTRY.pop("pointwise", None)


@pytest.mark.parametrize("stage_name", ["rerank", "dense", "qlm"])
def test_every_system_of_every_stage_runs_a_tiny_cell(stage_name, tmp_path, monkeypatch):
    write_beir(tmp_path / "data", "toy")
    monkeypatch.setenv("BENCH_DATA_PATH", str(tmp_path / "data"))
    stage = stages_registry.get_stage(stage_name)
    cells = expand(parse_suite(tiny_suite(stage), "contract"))
    fitting = {name for name in systems.names() if systems.fits(name, stage)}
    assert {c.method for c in cells} == fitting
    for cell in cells:
        status, error = execute(cell, tmp_path / "runs")
        assert status is Status.DONE, (cell.label, error)
        result = json.loads((tmp_path / "runs" / "contract" / cell.id / "result.json").read_text())
        assert set(result["metrics"]["toy/test"]) == set(stage.metrics)
        if systems.role(cell.method).trains:
            assert result["trainable"] > 0 and result["train"]["steps"] == 2


def test_every_registered_stage_declares_what_the_harness_reads():
    for stage in all_stages():
        assert stage.name and stage.summary and stage.family in ("encoder", "causal-lm") and stage.metrics
        assert stage.Train().lr_for("full") > 0 and stage.Eval().depth > 0
        assert (stage.Section is None) == (stage.section_key is None)


def test_a_stage_defined_in_the_tests_runs_through_run_and_report(pointwise, tmp_path, monkeypatch, capsys):
    write_beir(tmp_path / "data", "toy")
    monkeypatch.setenv("BENCH_DATA_PATH", str(tmp_path / "data"))
    suite = tmp_path / "pw.yaml"
    suite.write_text(yaml.safe_dump(tiny_suite(pointwise, "bm25,full,lora,adapter", "pw")))
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "pointwise" in out and "adapter" in out
    results = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "pw").glob("*/result.json")]
    assert sorted(r["method"] for r in results) == ["adapter", "bm25", "full", "lora"]
    assert all(r["status"] == "done" and r["stage"] == "pointwise" for r in results)
    assert (
        main(["report", "--suite", str(suite), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "reports")])
        == 0
    )
    board = (tmp_path / "reports" / "pw" / "leaderboard.md").read_text()
    assert "### pointwise · toy/test" in board and "| adapter |" in board


def test_plugin_stage_reaches_worker_processes(tmp_path):
    write_beir(tmp_path / "data", "toy")
    import helpers.pointwise_stage as module

    suite = tmp_path / "pw.yaml"
    suite.write_text(
        yaml.safe_dump(tiny_suite(type("S", (), {"name": "pointwise", "family": "encoder"}), "bm25,lora", "pw"))
    )
    helpers_root = str(Path(module.__file__).resolve().parents[1])
    env = {
        "BENCH_PLUGINS": "helpers.pointwise_stage",
        "PYTHONPATH": os.pathsep.join(filter(None, [helpers_root, os.environ.get("PYTHONPATH")])),
    }
    done = bench(
        "run", "--suite", suite, "--out", tmp_path / "runs", "--workers", "2", env_path=tmp_path / "data", env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "pw").glob("*/result.json")]
    assert sorted(r["status"] for r in results) == ["done", "done"]
