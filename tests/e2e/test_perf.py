"""bench perf runs end to end at toy sizes and writes what it promises (its figures are measured by
running it, never asserted here: speed claims live in the benchmark's JSON, not in tests)."""

import json

import pytest

from conftest import needs_minilm
from helpers.cli import bench
from helpers.data import write_toy_suite

pytestmark = needs_minilm


def test_perf_writes_training_evaluation_and_peak_figures(tmp_path):
    pytest.importorskip("sentence_transformers")
    out = tmp_path / "perf.json"
    done = bench(
        "perf",
        "--stages",
        "rerank",
        "--methods",
        "full,lora",
        "--lengths",
        "16",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--eval-passages",
        "8",
        "--eval-batch",
        "4",
        "--skip-grid",
        # bf16: the training ablation then times autocast off too, a second precision in one process
        "--precision",
        "bf16",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["peak_matmul_flops"]["fp32"] > 0
    rows = {r["method"]: r for r in report["training"]}
    switches = int(__import__("transformers").__version__.split(".")[0]) >= 5  # BERT on AttentionInterface
    assert set(rows) == {"full", "lora"}
    for row in rows.values():
        assert row["ratio"] > 0 and row["ours"]["tokens_per_s"] > 0 and row["reference"]["examples_per_s"] > 0
        assert 0 < row["ours"]["fraction_of_peak"]
        if switches:
            assert row["ratio_parallel_dropout"] > 0 and row["ours_parallel_dropout"]["fraction_of_peak"] > 0
        else:  # transformers 4.57's BERT cannot switch: the row says nothing about it
            assert "ours_parallel_dropout" not in row
    # optimizer state only for trainable tensors: LoRA's is a sliver of full fine-tuning's, and so is its memory
    assert rows["lora"]["ours"]["optimizer_state_mb"] < rows["full"]["ours"]["optimizer_state_mb"] / 50
    assert rows["lora"]["ours"]["peak_memory_mb"] < rows["full"]["ours"]["peak_memory_mb"]
    assert report["evaluation"]["rerank"]["ratio_no"] > 0 and report["evaluation"]["encode"]["ratio_no"] > 0
    assert set(report["ablations"]) >= {
        "length_sorted",
        "bf16_autocast",
        "inference_mode",
        "sdpa_attention",
        "training",
    }
    assert {"bf16_autocast", "fused_adamw_full"} <= set(report["ablations"]["training"])
    assert ("parallel_dropout_attention" in report["ablations"]["training"]) == switches
    assert all(row["speedup"] > 0 for row in report["ablations"]["training"].values())
    assert report["caches"]["candidates"]["cached_s"] < report["caches"]["candidates"]["computed_s"]
    assert "ratio" in done.stdout and "pairs/s" in done.stdout


def test_perf_sizes_each_budgeted_method_to_every_budget(tmp_path):
    out = tmp_path / "perf.json"
    flags = ["--stages", "rerank", "--lengths", "16", "--steps", "1", "--warmup", "0", "--precision", "no"]
    skip = ["--skip-eval", "--skip-grid", "--skip-ablations", "--out", str(out)]
    done = bench("perf", *flags, "--methods", "full,prefix", "--budgets", "0.5,6.7", *skip)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["training"]
    assert [(r["method"], r["budget"]) for r in rows] == [("full", None), ("prefix", 0.5), ("prefix", 6.7)]
    small, large = rows[1]["ours"]["trainable"], rows[2]["ours"]["trainable"]
    assert 10 < large / small < 16  # 6.7% against 0.5% of the same backbone
    assert "prefix 6.7% L16" in done.stdout
    bad = bench("perf", *flags, "--methods", "lora", "--budgets", "half", *skip)
    assert bad.returncode != 0 and "--budgets 'half'" in bad.stderr and "Traceback" not in bad.stderr


def test_grid_overhead_is_wall_time_outside_training_and_evaluation(tmp_path, monkeypatch):
    from bench.perf.grid import measure_grid_overhead

    suite = write_toy_suite(tmp_path, "toyperf")
    monkeypatch.setenv("BENCH_DATA_PATH", str(tmp_path / "data"))
    grid = measure_grid_overhead(str(suite))
    assert 0 < grid["train_and_eval_s"] < grid["wall_s"]
    assert grid["overhead_fraction"] == pytest.approx(grid["overhead_s"] / grid["wall_s"])
