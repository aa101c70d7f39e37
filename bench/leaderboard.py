"""The terminal leaderboard: one row per (dataset, method, budget), mean over seeds."""
from __future__ import annotations

import statistics

from .tables import render


def _fmt(values: list[float]) -> str:
    if len(values) > 1:
        return f"{statistics.mean(values):.4f}±{statistics.stdev(values):.4f}"
    return f"{values[0]:.4f}"


def leaderboard(results: list[dict]) -> str:
    groups: dict = {}
    for r in results:
        if r.get("status") != "done":
            continue
        for ref, metrics in r["metrics"].items():
            key = (ref, r.get("stage", "rerank"), r["method"], r["budget"])
            groups.setdefault(key, []).append((r, metrics))
    rows = []
    for (ref, stage, method, budget), items in groups.items():
        first = items[0][0]
        fixed = method in ("bm25", "none")
        rows.append([ref, stage, method, budget if not fixed else "-",
                     f"{first['pct']:.3f}" if not fixed else "-",
                     _fmt([m["ndcg@10"] for _, m in items]), _fmt([m["mrr@10"] for _, m in items]),
                     len(items), f"{statistics.mean(r['times']['train_s'] for r, _ in items):.0f}s"])
    rows.sort(key=lambda row: (row[0], row[1], -float(row[5].split("±")[0])))
    return render(["dataset", "stage", "method", "budget", "% params", "nDCG@10", "MRR@10", "seeds", "train time"],
                  rows)
