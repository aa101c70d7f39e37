"""Ties: the metrics in result.json and the saved TREC run are one ranking (score descending, then
document id descending: trec_eval's order); scores are saved unrounded."""

import math

import pytest

from bench.evaluate import evaluate_run, ranked
from bench.firststage import write_trec_run


def ndcg_at_10_like_trec_eval(qrels: dict, lines: list[str]) -> dict:
    """nDCG@10 as trec_eval computes it from a run file: ranks by score descending then docno descending
    (the file's rank column ignored), gains = grades, log2 discount."""
    by_query = {}
    for line in lines:
        if line.startswith("#"):
            continue
        q, _, d, _, score, _ = line.split()
        by_query.setdefault(q, []).append((float(score), d))
    out = {}
    for q, judged in qrels.items():
        order = sorted(by_query.get(q, []), key=lambda sd: (sd[0], sd[1]), reverse=True)[:10]
        dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, (_, d) in enumerate(order))
        ideal = sorted(judged.values(), reverse=True)[:10]
        out[q] = dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal)) if ideal else 0.0
    return out


def test_ranked_breaks_ties_by_document_id_descending():
    assert [d for d, _ in ranked({"a": 1.0, "c": 2.0, "b": 1.0, "d": 1.0})] == ["c", "d", "b", "a"]


def test_metrics_from_the_saved_run_equal_the_metrics(tmp_path):
    qrels = {"q1": {"a": 1, "z": 2}, "q2": {"m": 1}}
    # heavy ties, with the relevant documents at both ends of the id order; one score needs all its digits
    run = {
        "q1": {"a": 0.5, "b": 0.5, "z": 0.5, "y": 0.25, "x": 1 / 3 + 1e-12, "w": 1 / 3},
        "q2": {"k": 0.7, "m": 0.7, "n": 0.7},
    }
    means, per_query = evaluate_run(qrels, run, ("ndcg@10", "mrr@10"))
    path = tmp_path / "run.trec"
    write_trec_run(run, path, "test")
    lines = path.read_text().splitlines()
    from_file = ndcg_at_10_like_trec_eval(qrels, lines)
    for q in qrels:
        assert per_query[q]["ndcg@10"] == pytest.approx(from_file[q], abs=1e-12)
    assert means["ndcg@10"] == pytest.approx(sum(from_file.values()) / 2, abs=1e-12)
    # the file lists that very order, with its ranks, and scores that read back exactly
    listed = [
        (line.split()[0], line.split()[2], int(line.split()[3]), float(line.split()[4]))
        for line in lines
        if not line.startswith("#")
    ]
    for q, docs in run.items():
        mine = [(d, s) for qq, d, _, s in listed if qq == q]
        assert mine == ranked(docs)
    assert per_query["q2"]["mrr@10"] == pytest.approx(1 / 2)  # n, m, k: the relevant m second
