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


def test_one_cell_scores_each_eval_dataset_on_its_own_first_stage(tmp_path):
    """first_stage.by_dataset: a trained cell and the BM25 cell rerank other/test at the suite's depth and the
    second dataset on another first stage (a TREC run file, as TREC DL's official BM25 top-100) at its
    depth; training reads the suite's first stage."""
    from helpers.data import write_synthetic_beir

    write_synthetic_beir(tmp_path / "data", "synth")
    write_synthetic_beir(tmp_path / "data", "other")
    run_file = tmp_path / "given.trec"
    lines = [f"q{q} Q0 d{d} {r + 1} {10 - r} given\n" for q in range(40, 60) for r, d in enumerate((q, 1, 2))]
    run_file.write_text("".join(lines))
    suite = write_toy_suite(
        tmp_path,
        "twofirst",
        stage="qlm",
        model="tiny-llama",
        budgets=["native"],
        methods="bm25,lora",
        datasets=[{"train": "toy/train", "eval": ["other/test", "synth/test"]}],
        first_stage={
            "backend": "bm25s",
            "depth": 5,
            "by_dataset": {"synth/test": {"backend": str(run_file), "depth": 3}},
        },
        train={"steps": 2, "batch_queries": 2, "group_size": 2, "passage_max_length": 24, "query_max_length": 8},
        eval={"depth": 5, "batch_size": 4, "passage_max_length": 24, "query_max_length": 8},
    )
    out = tmp_path / "runs"
    done = bench("run", "--suite", str(suite), "--out", str(out), env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in (out / "twofirst").glob("*/result.json")]
    assert sorted(r["method"] for r in results) == ["bm25", "lora"]
    for result in results:
        folder = out / "twofirst" / result["cell_id"]
        runs = {p.name: _run_docs(p) for p in folder.glob("run.*.trec")}
        synth = next(docs for name, docs in runs.items() if "synth" in name)
        other = next(docs for name, docs in runs.items() if "other" in name)
        assert synth == {f"q{q}": {f"d{q}", "d1", "d2"} for q in range(40, 60)}, result["method"]
        assert {len(docs) for docs in other.values()} == {5}  # the suite's bm25s at its depth
    bm25 = next(r for r in results if r["method"] == "bm25")
    assert bm25["metrics"]["synth/test"]["mrr@10"] == 1.0  # the given run ranks each query's document first


def _run_docs(path) -> dict[str, set]:
    out: dict[str, set] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):  # ir_metadata's header lines
            q, _, d, *_ = line.split()
            out.setdefault(q, set()).add(d)
    return out
