"""Metrics through ranx. TREC DL convention: binary measures (MRR, recall) count grade >= 2 as
relevant, nDCG uses the grades as they are.

Ties: every ranking behind a metric and every saved TREC run is one list, ``ranked(run)``: score
descending, then document id descending (trec_eval's order). Scores are saved unrounded, so trec_eval on
a saved run ranks exactly as the metrics in result.json did."""

from __future__ import annotations

import warnings

RERANK_METRICS = ("mrr@10", "mrr@100", "ndcg@10", "ndcg@100")
DENSE_METRICS = ("mrr@10", "recall@100", "recall@1000", "ndcg@10")


def _ranx_name(metric: str, relevance_level: int) -> str:
    if relevance_level > 1 and not metric.startswith("ndcg"):
        return f"{metric}-l{relevance_level}"
    return metric


def ranked(docs: dict[str, float]) -> list[tuple[str, float]]:
    """One query's documents in the one order the harness uses: score descending, ties by document id
    descending (as trec_eval breaks them)."""
    order = sorted(docs.items(), key=lambda kv: kv[0], reverse=True)
    order.sort(key=lambda kv: kv[1], reverse=True)  # stable: ties keep the id order
    return order


def evaluate_run(qrels: dict, run: dict, metrics=RERANK_METRICS, relevance_level: int = 1):
    """(mean metrics, per-query metrics). Queries without any retrieved document score 0. ranx sees each
    ranking through ``ranked`` (as strictly decreasing ranks), so its metrics follow the one tie-break."""
    from ranx import Qrels, Run, evaluate

    run = {q: {d: float(-rank) for rank, (d, _) in enumerate(ranked(run.get(q, {})))} for q in qrels}
    for docs in run.values():
        if not docs:  # ranx cannot take empty rankings: a sentinel that is never relevant
            docs["__none__"] = 0.0
    names = [_ranx_name(m, relevance_level) for m in metrics]
    ranx_qrels, ranx_run = Qrels(qrels), Run(run)
    with warnings.catch_warnings():
        # numba, compiling ranx's reciprocal rank once per machine, warns of a uint64 -> int64 cast of a
        # cutoff or a relevance level (small numbers: nothing is lost); a newcomer's first run stays clean
        from numba.core.errors import NumbaTypeSafetyWarning

        warnings.simplefilter("ignore", NumbaTypeSafetyWarning)
        means = evaluate(ranx_qrels, ranx_run, names, make_comparable=True)
    means = (
        {metric: float(means[name]) for metric, name in zip(metrics, names)}
        if len(names) > 1
        else {metrics[0]: float(means)}
    )
    per_query = {q: {m: float(ranx_run.scores[n][q]) for m, n in zip(metrics, names)} for q in ranx_run.keys()}
    return means, per_query
