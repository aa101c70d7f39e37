"""The report's tables in the stores real grids produce: systems scored on different query sets, a seed
whose per-query file is missing, the same seed stored twice, roles of methods this version does not know."""

import json

import numpy as np
import pytest

from bench.report.stats import build_rows
from bench.results import from_record, scan, to_record

QUERIES = [f"q{i}" for i in range(200)]


def write(root, name, method, seed, per_query, budget="0.5", per_query_file=True, role=None, finished_at=None):
    folder = root / name
    folder.mkdir(parents=True)
    result = {
        "schema": 2,
        "status": "done",
        "cell_id": name,
        "suite": "mini",
        "stage": "rerank",
        "method": method,
        "budget": budget,
        "seed": seed,
        "config": {"datasets": {"eval": ["toy/test"]}},
        "metrics": {"toy/test": {"ndcg@10": float(np.mean(list(per_query.values())))}},
        "times": {"finished_at": finished_at} if finished_at else {},
        **({"role": role} if role else {}),
    }
    (folder / "result.json").write_text(json.dumps(result))
    if per_query_file:
        (folder / "per_query.json").write_text(
            json.dumps({"toy/test": {q: {"ndcg@10": v} for q, v in per_query.items()}})
        )


def rows(root):
    return {r.method: r for r in build_rows(scan(root), {"rerank": ["ndcg@10"]})}


def scores(rng, queries, level, seed_sd=0.005):
    shift = rng.normal(0, seed_sd)
    return {q: float(np.clip(level(q) + shift + rng.normal(0, 0.05), 0, 1)) for q in queries}


def easy(q):
    return int(q[1:]) < 120


def test_a_system_worse_on_the_shared_queries_gets_no_mark_and_no_better_rank(tmp_path):
    """lora was scored on the 120 easy queries only (an eval max_queries): its mean over them (0.7) is above
    full FT's mean over all 200 (0.52), but on the queries both scored full FT is better (0.8). The old
    report took the mark's direction from the means over different query sets and gave lora a *."""
    rng = np.random.default_rng(0)
    for seed in range(3):
        write(tmp_path, f"full{seed}", "full", seed, scores(rng, QUERIES, lambda q: 0.8 if easy(q) else 0.1), "native")
        write(tmp_path, f"lora{seed}", "lora", seed, scores(rng, [q for q in QUERIES if easy(q)], lambda q: 0.7))
    table = rows(tmp_path)
    full, lora = table["full"], table["lora"]
    assert lora.queries == full.queries == 120
    assert lora.tests["full"].difference < 0 and lora.p_vs_full < 0.05
    assert lora.marks == "" and lora.rank_low == 2 and full.rank_high == 1
    assert lora.mean == pytest.approx(0.7, abs=0.02) and full.mean == pytest.approx(0.8, abs=0.02)
    assert lora.diff_to_full == pytest.approx(lora.mean - full.mean)
    assert any("80 of its 200 queries left out" in note for note in full.notes)


def test_a_missing_per_query_file_drops_that_seed_alone(tmp_path):
    """One of lora's three seeds has no per_query.json: the old report tested lora on no query at all (no
    test, no mark, an uninformative rank interval); now its two other seeds are tested, and a note names
    the folder."""
    rng = np.random.default_rng(1)
    for seed in range(3):
        write(tmp_path, f"full{seed}", "full", seed, scores(rng, QUERIES, lambda q: 0.5), "native")
        write(tmp_path, f"lora{seed}", "lora", seed, scores(rng, QUERIES, lambda q: 0.6), per_query_file=seed != 1)
    lora = rows(tmp_path)["lora"]
    assert "full" in lora.tests and lora.p_vs_full < 0.05 and lora.tests["full"].difference > 0
    assert lora.rank == 1 and lora.rank_high == 1
    assert any("lora1 has no per-query values" in note for note in lora.notes), lora.notes
    assert lora.seeds_label == "2/3"  # the mean shown is over the two tested seeds: no mark is given


def test_the_same_seed_stored_twice_counts_once_with_a_warning(tmp_path, capsys):
    rng = np.random.default_rng(2)
    for seed in range(3):
        write(tmp_path, f"lora{seed}", "lora", seed, scores(rng, QUERIES, lambda q: 0.6), finished_at=100.0 + seed)
    write(tmp_path, "lora0-old-id", "lora", 0, scores(rng, QUERIES, lambda q: 0.2), finished_at=50.0)
    lora = rows(tmp_path)["lora"]
    assert lora.seeds_label == "3/3"
    assert lora.mean == pytest.approx(0.6, abs=0.02)  # the stale, older copy is the one left out
    err = capsys.readouterr().err
    assert "lora0-old-id" in err and "keeping lora0" in err and "more recently finished" in err


def test_roles_travel_with_the_records_and_unknown_methods_are_never_marked(tmp_path):
    rng = np.random.default_rng(3)
    for seed in range(3):
        write(tmp_path, f"full{seed}", "full", seed, scores(rng, QUERIES, lambda q: 0.4), "native")
        write(tmp_path, f"new{seed}", "tomorrows-method", seed, scores(rng, QUERIES, lambda q: 0.7))
        write(tmp_path, f"plug{seed}", "plugin-peft", seed, scores(rng, QUERIES, lambda q: 0.7), role="peft")
    write(tmp_path, "bm25", "bm25", 0, scores(rng, QUERIES, lambda q: 0.3, 0.0), "native")
    table = rows(tmp_path)
    assert table["tomorrows-method"].role.value == "other" and table["tomorrows-method"].marks == ""
    assert table["plugin-peft"].role.value == "peft" and "*" in table["plugin-peft"].marks
    assert not any("1 seed" in note for note in table["bm25"].notes)
    record = to_record(scan(tmp_path)[[c.directory.name for c in scan(tmp_path)].index("plug0")])
    assert record["role"] == "peft" and from_record(record, "x").result.role == "peft"


def test_a_one_seed_grid_falls_back_to_the_paired_test_and_marks_nothing(tmp_path):
    rng = np.random.default_rng(4)
    write(tmp_path, "full0", "full", 0, scores(rng, QUERIES, lambda q: 0.4), "native")
    write(tmp_path, "lora0", "lora", 0, scores(rng, QUERIES, lambda q: 0.8))
    lora = rows(tmp_path)["lora"]
    assert lora.complete and lora.p_vs_full < 1e-6 and lora.marks == ""
    test = lora.tests["full"]
    assert "1 seed" in test.procedure and test.statistic > 5  # the t statistic, not a 0/1 flag
    assert any("1 seed: seed variance not accounted for" in note for note in lora.notes)
