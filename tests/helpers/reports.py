"""A hand-written run store for the report tests."""

import json
import statistics

QUERIES = [f"q{i}" for i in range(8)]


def write_cell(
    root,
    cell_id,
    method,
    budget,
    seed,
    values,
    status="done",
    dataset="toy/test",
    pct=0.5,
    losses=None,
    model="minilm",
    stage="rerank",
    extra_metrics=None,
    depth=None,
):
    folder = root / "mini" / cell_id
    folder.mkdir(parents=True)
    result = {
        "status": status,
        "cell_id": cell_id,
        "stage": stage,
        "method": method,
        "budget": budget,
        "seed": seed,
        "model": model,
        "pct": pct,
        "config": {
            "method": method,
            "budget": budget,
            "datasets": {"eval": [dataset]},
            **({"eval": {"depth": depth}} if depth else {}),
        },
    }
    if status == "done":
        result["metrics"] = {dataset: {"ndcg@10": statistics.mean(values), **(extra_metrics or {})}}
        per_query = {dataset: {q: {"ndcg@10": v} for q, v in zip(QUERIES, values)}}
        (folder / "per_query.json").write_text(json.dumps(per_query))
    else:
        result["error"] = f"{status} <b>here</b>"
    (folder / "result.json").write_text(json.dumps(result))
    if losses:
        (folder / "train_log.jsonl").write_text(
            "".join(json.dumps({"step": i + 1, "loss": l}) + "\n" for i, l in enumerate(losses))
        )


FULL = [[0.5, 0.6, 0.4, 0.7, 0.5, 0.6, 0.3, 0.8], [0.6, 0.6, 0.5, 0.7, 0.4, 0.6, 0.4, 0.8]]
LORA = [[0.7, 0.8, 0.6, 0.9, 0.7, 0.8, 0.5, 0.9], [0.8, 0.7, 0.6, 0.9, 0.8, 0.8, 0.6, 1.0]]
ADAPTER = [[0.5, 0.5, 0.5, 0.6, 0.5, 0.6, 0.4, 0.7]]


def write_report_store(runs):
    """Suite ``mini``: full (2 seeds), lora (2 seeds), adapter (1), a failed bitfit, a diverged iaa-l, and a
    lora cell on another dataset whose budget is an HTML injection attempt."""
    for seed, values in enumerate(FULL):
        write_cell(runs, f"full{seed}", "full", "native", seed, values, pct=100.0, losses=[2.0, 1.5, 1.0] * 5)
    for seed, values in enumerate(LORA):
        write_cell(runs, f"lora{seed}", "lora", "0.5", seed, values, losses=[2.0, 1.8, 1.2] * 5)
    write_cell(runs, "adapter0", "adapter", "0.5", 0, ADAPTER[0])
    write_cell(runs, "bitfit0", "bitfit", "native", 0, None, status="failed", pct=0.1)
    write_cell(runs, "iaa0", "iaa-l", "0.5", 0, None, status="diverged")
    write_cell(runs, "one0", "lora", "<script>alert(1)</script>", 0, [0.9], dataset="single/test")
    return runs
