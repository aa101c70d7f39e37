import os

import pytest

from bench import firststage
from bench.data import load_collection
from bench.errors import BenchError
from bench.evaluate import evaluate_run
from helpers.data import write_beir


@pytest.fixture
def toy(tmp_path):
    return load_collection(f"{write_beir(tmp_path)}/test")


def test_bm25s_ranks_the_matching_document_first(toy, tmp_path):
    run = firststage.candidates(toy, "bm25s", 3, tmp_path / "cache")
    assert next(iter(run["q5"])) == "d2" and next(iter(run["q6"])) == "d4"
    assert all(len(docs) <= 3 for docs in run.values())


def test_candidates_are_cached_and_reused(toy, tmp_path, monkeypatch):
    first = firststage.candidates(toy, "bm25s", 5, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "candidates").glob("*.json"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("BM25 recomputed although cached")

    monkeypatch.setattr(firststage, "bm25s_search", boom)
    assert firststage.candidates(toy, "bm25s", 5, tmp_path / "cache") == first
    with pytest.raises(AssertionError):  # another depth is another cache entry
        firststage.candidates(toy, "bm25s", 4, tmp_path / "cache")


def test_cached_candidates_of_a_query_subset_never_stand_in_for_more_queries(toy, tmp_path):
    from bench.data import limit_queries

    few = limit_queries(toy, 1)
    assert list(firststage.candidates(few, "bm25s", 5, tmp_path / "cache")) == list(few.queries)
    every = firststage.candidates(toy, "bm25s", 5, tmp_path / "cache")  # the cache held one query only
    assert set(every) == set(toy.queries) and all(every.values())
    assert every == firststage.candidates(toy, "bm25s", 5, tmp_path / "fresh")
    assert firststage.candidates(few, "bm25s", 5, tmp_path / "cache") == {q: every[q] for q in few.queries}


def test_trec_run_file_as_first_stage(toy, tmp_path):
    path = tmp_path / "given.trec"
    path.write_text("q5 Q0 d8 1 9.0 x\nq5 Q0 d2 2 8.0 x\nq6 Q0 d4 1 3.5 x\n")
    run = firststage.candidates(toy, str(path), 10, tmp_path / "cache")
    assert list(run["q5"]) == ["d8", "d2"] and run["q6"] == {"d4": 3.5}
    path.write_text("q5 Q0 d8 1\n")
    with pytest.raises(BenchError, match="given.trec:1: a TREC run line has 6 fields"):
        firststage.candidates(toy, str(path), 10, tmp_path / "cache2")


def test_metrics_match_hand_computation():
    qrels = {"a": {"x": 1}, "b": {"y": 2, "z": 1}}
    run = {"a": {"w": 3.0, "x": 2.0}, "b": {"z": 5.0, "y": 4.0}}
    means, per_query = evaluate_run(qrels, run, ("mrr@10", "ndcg@10"))
    assert per_query["a"]["mrr@10"] == pytest.approx(0.5) and per_query["b"]["mrr@10"] == pytest.approx(1.0)
    assert means["mrr@10"] == pytest.approx(0.75)
    # TREC DL convention: with level 2, MRR only counts grade >= 2 (z has grade 1); nDCG keeps grades
    means2, per_query2 = evaluate_run(qrels, run, ("mrr@10", "ndcg@10"), relevance_level=2)
    assert per_query2["b"]["mrr@10"] == pytest.approx(0.5)
    assert per_query2["b"]["ndcg@10"] == pytest.approx(per_query["b"]["ndcg@10"])


def test_query_without_candidates_scores_zero():
    means, per_query = evaluate_run({"a": {"x": 1}, "b": {"y": 1}}, {"a": {"x": 1.0}}, ("mrr@10",))
    assert per_query["b"]["mrr@10"] == 0.0 and means["mrr@10"] == pytest.approx(0.5)


def test_a_first_evaluation_on_a_fresh_machine_prints_no_third_party_warning(tmp_path):
    """numba compiles ranx's metrics once per machine (its cache); that first compile warned of a uint64 cast."""
    import subprocess
    import sys

    code = (
        "from bench.evaluate import evaluate_run\n"
        "evaluate_run({'a': {'x': 1}, 'b': {'y': 2}}, {'a': {'x': 1.0}}, ('mrr@10', 'ndcg@10', 'recall@100'), 2)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "Warning" not in done.stderr, done.stderr[-2000:]
