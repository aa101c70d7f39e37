"""The qlm stage end to end on a tiny random causal LM and a toy BEIR folder."""

import json

from helpers.cli import bench
from helpers.data import write_toy_suite


def test_qlm_suite_end_to_end_on_a_tiny_llama(tmp_path):
    suite = write_toy_suite(
        tmp_path,
        "toyqlm",
        stage="qlm",
        model="tiny-llama",
        budgets=["native"],
        methods="bm25,zero-shot,soft-prompt,lora,qpeft-r,qpeft-a",
        train={"steps": 2, "batch_queries": 2, "group_size": 2, "passage_max_length": 24, "query_max_length": 8},
        eval={"depth": 5, "batch_size": 4, "passage_max_length": 24, "query_max_length": 8},
    )
    out = tmp_path / "runs"
    done = bench("run", "--suite", str(suite), "--out", str(out), env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    results = {r["method"]: r for r in (json.loads(p.read_text()) for p in (out / "toyqlm").glob("*/result.json"))}
    assert set(results) == {"bm25", "zero-shot", "soft-prompt", "lora", "qpeft-r", "qpeft-a"}
    assert all(r["status"] == "done" for r in results.values())
    assert results["zero-shot"]["trainable"] == 0
    assert results["qpeft-r"]["trainable"] > results["qpeft-a"]["trainable"] - 4 * 32 * 32 - 4 * 32
    for name in ("soft-prompt", "lora", "qpeft-r", "qpeft-a"):
        assert set(results[name]["metrics"]["toy/test"]) == {"mrr@10", "mrr@100", "ndcg@10", "ndcg@100"}
        assert results[name]["train"]["steps"] == 2
    report = bench("report", "--runs", str(out), "--suite", "toyqlm", "--out", str(tmp_path / "reports"))
    assert report.returncode == 0, report.stderr[-2000:]
    assert "qpeft-r" in (tmp_path / "reports" / "toyqlm" / "index.html").read_text()
    board = (tmp_path / "reports" / "toyqlm" / "leaderboard.md").read_text()
    assert "## qlm: nDCG@10" in board and "#### qlm · toy/test · MRR@100 · budget native" in board
