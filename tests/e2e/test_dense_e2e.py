"""The dense stage end to end on a tiny random model and a toy BEIR folder."""

import json

from helpers.cli import bench
from helpers.data import write_toy_suite


def test_dense_run_end_to_end_then_skips_done_cells(tmp_path):
    write_toy_suite(
        tmp_path,
        "toyd",
        stage="dense",
        methods="bm25,none,lora,full",
        train={"steps": 3, "batch_queries": 2, "group_size": 2, "max_length": 32, "query_max_length": 16},
        eval={"depth": 1000, "batch_size": 4, "max_length": 32, "query_max_length": 16},
    )
    out = tmp_path / "runs"
    done = bench("run", "--suite", str(tmp_path / "toyd.yaml"), "--out", str(out), env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    results = {r["method"]: r for r in (json.loads(p.read_text()) for p in (out / "toyd").glob("*/result.json"))}
    assert set(results) == {"bm25", "none", "lora", "full"}
    assert all(r["status"] == "done" and r["stage"] == "dense" for r in results.values())
    for r in results.values():
        assert set(r["metrics"]["toy/test"]) == {"mrr@10", "recall@100", "recall@1000", "ndcg@10"}
    assert results["none"]["trainable"] == 0 and results["none"]["backbone"] == results["full"]["backbone"]
    run_file = out / "toyd" / results["lora"]["cell_id"] / "run.toy__test.trec"
    lines = run_file.read_text().splitlines()
    assert len([line for line in lines if not line.startswith("#")]) == 2 * 8  # both queries, all 8 documents
    header = [line for line in lines if line.startswith("#")]  # who made the run (ir_metadata)
    assert header[0] == "# ir_metadata.start" and f'# config_hash: "{results["lora"]["cell_id"]}"' in header
    assert results["lora"]["eval"]["toy/test"]["passages"] == 8
    again = bench("run", "--suite", str(tmp_path / "toyd.yaml"), "--out", str(out), env_path=tmp_path / "data")
    assert again.returncode == 0 and (again.stderr + again.stdout).count("skip ") == 4
