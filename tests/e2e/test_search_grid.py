"""The search end to end on a toy grid (tiny-bert): every searched configuration on the search seed, scored
on validation data alone; the configuration with the best validation score selected; its remaining seeds
run and its search cell scored on the test data from its saved tensors; the other configurations never
reach a leaderboard. And a store written before the search resumes with nothing recomputed."""

import json
import shutil

import yaml

from conftest import GOLDEN
from helpers.cli import bench
from helpers.data import write_beir, write_synthetic_beir


def _results(store):
    return [json.loads(p.read_text()) for p in sorted(store.glob("*/result.json"))]


def _suite(tmp_path, lrs):
    suite = {
        "name": "searched",
        "stage": "rerank",
        "model": "tiny-bert",
        "methods": ["bm25", "lora"],
        "budgets": [2.0],
        "seeds": [1, 2],
        "datasets": [{"train": "synth/train", "eval": ["synth/test"], "holdout": 0.3}],
        "first_stage": {"backend": "bm25s", "depth": 10},
        "train": {"steps": 6, "batch_queries": 4, "group_size": 3, "max_length": 32},
        "eval": {"depth": 10, "batch_size": 16, "max_length": 32},
        "search": {"lr": {"default": lrs}},
    }
    path = tmp_path / "searched.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_the_selected_configuration_is_the_best_on_validation_and_only_it_reaches_the_report(tmp_path):
    write_synthetic_beir(tmp_path / "data", "synth")
    lrs = [3.0e-3, 3.0e-1, 1.0e-6]
    suite = _suite(tmp_path, lrs)
    done = bench("run", "--suite", suite, "--out", tmp_path / "runs", env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the search adds 2 cells to the grid" in done.stdout
    store = tmp_path / "runs" / "searched"
    lora = [r for r in _results(store) if r["method"] == "lora"]
    search = {r["config"]["train"]["lr"]: r for r in lora if r["seed"] == 1}
    assert sorted(search) == sorted(lrs) and all("validation" in r for r in search.values())
    validation = {lr: r["validation"]["synth/train~holdout:0.3:s0"]["ndcg@10"] for lr, r in search.items()}
    best = max(lrs, key=lambda lr: (validation[lr], -lrs.index(lr)))  # ties: the value listed first
    assert best != lrs[0], validation  # the suite's first value is not the best here: the search matters
    finals = [r for r in lora if r["phase"] == "final"]
    assert sorted(r["seed"] for r in finals) == [1, 2]
    assert {r["config"]["train"]["lr"] for r in finals} == {best}
    assert all(r["selection"]["chosen"] == {"lr": best} and "synth/test" in r["metrics"] for r in finals)
    losers = [r for lr, r in search.items() if lr != best]
    assert all(r["phase"] == "search" and r["metrics"] == {} for r in losers)  # never scored on the test data
    assert all((store / r["cell_id"] / "trainable").is_dir() for r in finals)
    report = bench("report", "--suite", suite, "--runs", tmp_path / "runs", "--out", tmp_path / "rep")
    assert report.returncode == 0, report.stderr[-3000:]
    board = (tmp_path / "rep" / "searched" / "leaderboard.csv").read_text()
    lora_rows = [line for line in board.splitlines() if ",lora," in line]
    assert lora_rows and all(",2/2," in line for line in lora_rows), lora_rows
    markdown = (tmp_path / "rep" / "searched" / "leaderboard.md").read_text()
    assert f"chosen lr={best:g}" in markdown and "Search: 2 cells beyond the selected ones" in markdown
    html = (tmp_path / "rep" / "searched" / "index.html").read_text()
    assert "Expected best validation score after n configurations" in html
    status = bench("status", "--suite", suite, "--out", tmp_path / "runs", env_path=tmp_path / "data")
    assert "3/3 search cells done; a configuration selected on validation for 1/1" in status.stdout
    assert "0 pending" in status.stdout
    again = bench("run", "--suite", suite, "--out", tmp_path / "runs", env_path=tmp_path / "data")
    assert again.returncode == 0 and "train lora" not in again.stderr  # resumes: nothing trained again


def test_a_store_written_before_the_search_resumes_with_nothing_recomputed(tmp_path):
    write_beir(tmp_path / "data", "toy")
    shutil.copytree(GOLDEN / "store_v2_presearch", tmp_path / "runs")
    shutil.copy(GOLDEN / "presearch.yaml", tmp_path / "presearch.yaml")
    before = {p: p.read_bytes() for p in (tmp_path / "runs").rglob("*") if p.is_file()}
    done = bench("run", "--suite", tmp_path / "presearch.yaml", "--out", tmp_path / "runs", env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cells: 11 done, 4 not_applicable, 0 failed, 0 diverged, 0 running, 0 pending" in done.stdout
    assert done.stdout.count("skip ") + done.stderr.count("skip ") == 15
    assert all(p.read_bytes() == content for p, content in before.items())  # nothing rewritten
    after = {p for p in (tmp_path / "runs").rglob("*") if p.is_file()}
    assert all("_cache" in p.parts for p in after - set(before))


def test_one_worker_finishes_each_method_search_and_seeds_before_the_next_method(tmp_path):
    write_synthetic_beir(tmp_path / "data", "synth")
    suite = _suite(tmp_path, [3.0e-3, 1.0e-2])
    raw = yaml.safe_load(suite.read_text())
    raw["methods"] = ["bm25", "lora", "bitfit"]
    suite.write_text(yaml.safe_dump(raw))
    done = bench("run", "--suite", suite, "--out", tmp_path / "runs", env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    results = {r["cell_id"]: r for r in _results(tmp_path / "runs" / "searched")}
    log = (tmp_path / "runs" / "_claims" / "searched.jsonl").read_text().splitlines()
    order = [results[e["cell"]]["method"] for e in map(json.loads, log) if e["event"] == "claim"]
    # bm25; lora's two searched rates, its second seed, its winner scored on the test data; then bitfit's
    assert order[0] == "bm25" and order[1:5] == ["lora"] * 4 and set(order[5:]) == {"bitfit"}


def test_bench_run_extends_a_search_whose_winner_sits_at_an_edge(tmp_path):
    """Two values: the winner is at an edge either way, so one value beyond it runs on every search seed
    (the cap, 1 a side, is then reached), and the finals are the best of the three."""
    write_synthetic_beir(tmp_path / "data", "synth")
    suite = _suite(tmp_path, [1.0e-4, 1.0e-3])
    raw = yaml.safe_load(suite.read_text())
    raw.update(methods=["lora"], search_seeds=[1, 2], search_extend={"lr": 1})
    suite.write_text(yaml.safe_dump(raw))
    done = bench("run", "--suite", suite, "--out", tmp_path / "runs", env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    lora = [r for r in _results(tmp_path / "runs" / "searched") if r["method"] == "lora"]
    tried = sorted({r["config"]["train"]["lr"] for r in lora})
    assert len(tried) == 3 and tried in ([1.0e-5, 1.0e-4, 1.0e-3], [1.0e-4, 1.0e-3, 1.0e-2])
    extra = next(lr for lr in tried if lr not in (1.0e-4, 1.0e-3))
    assert sorted(r["seed"] for r in lora if r["config"]["train"]["lr"] == extra) == [1, 2]
    finals = [r for r in lora if r["phase"] == "final"]
    assert sorted(r["seed"] for r in finals) == [1, 2]
    selection = finals[0]["selection"]
    assert selection["extended"] == [{"lr": extra}] and len(selection["configurations"]) == 3
    means = {c["config"]["lr"]: c["mean"] for c in selection["configurations"]}
    assert selection["chosen"]["lr"] == max(means, key=means.get)


def test_bench_run_centres_each_budget_on_its_neighbours_winner(tmp_path):
    """Budget curves (search_centre): the anchor budget searches first; the other budget's search, added once
    that selection exists (two workers: the search phase asks again), runs the suite's ratio around the
    winner, and its finals record what they were centred on."""
    write_synthetic_beir(tmp_path / "data", "synth")
    suite = _suite(tmp_path, [1.0e-4, 1.0e-3])
    raw = yaml.safe_load(suite.read_text())
    raw.update(methods=["lora"], seeds=[1], budgets=[2.0, 4.0], search_centre={"lr": 2.0})
    suite.write_text(yaml.safe_dump(raw))
    done = bench("run", "--suite", suite, "--out", tmp_path / "runs", "--workers", "2", env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    lora = _results(tmp_path / "runs" / "searched")
    anchor = next(r for r in lora if r["phase"] == "final" and r["budget"] == "2.0")["selection"]["chosen"]["lr"]
    other = {r["config"]["train"]["lr"] for r in lora if r["budget"] == "4.0"}
    ratio = 1.0e-3 / 1.0e-4
    assert other == {float(f"{anchor / ratio**0.5:.3g}"), float(f"{anchor * ratio**0.5:.3g}")}
    final = next(r for r in lora if r["phase"] == "final" and r["budget"] == "4.0")
    assert final["selection"]["centred_on"]["budget"] == "2.0" and final["selection"]["centred_on"]["lr"] == anchor


def test_a_selected_search_cell_imported_without_tensors_is_trained_again_and_scored(tmp_path):
    """Records exported while the search ran hold the selected seed's cell as a plain search cell (validation
    only, no tensors). Continued from them, the grid trains that cell again and scores it on the test data:
    it is never set aside and left pending (found on the rerank board, 2026-12-07)."""
    write_synthetic_beir(tmp_path / "data", "synth")
    suite = _suite(tmp_path, [3.0e-3, 3.0e-1])
    first = tmp_path / "first"
    assert bench("run", "--suite", suite, "--out", first, env_path=tmp_path / "data").returncode == 0
    made = bench("report", "--suite", suite, "--runs", first, "--out", tmp_path / "rep", "--format", "jsonl")
    assert made.returncode == 0, made.stderr[-3000:]
    exported = [json.loads(line) for line in (tmp_path / "rep" / "searched" / "results.jsonl").read_text().splitlines()]
    finals = {r["cell_id"]: r for r in exported if r["phase"] == "final"}
    searched = next(r for r in finals.values() if r["seed"] == 1)
    records = tmp_path / "records.jsonl"
    lines = []
    for record in exported:
        if record["cell_id"] == searched["cell_id"]:
            record = {**record, "phase": "search", "selection": {}, "metrics": {}}  # before its test scoring
        if record["cell_id"] in finals and record["seed"] == 2:
            continue  # the selected lr's other seed had not run yet
        lines.append(json.dumps(record))
    records.write_text("\n".join(lines) + "\n")
    second = tmp_path / "second"
    done = bench("run", "--suite", suite, "--out", second, "--resume-from", records, env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    again = json.loads((second / "searched" / searched["cell_id"] / "result.json").read_text())
    assert again["phase"] == "final" and "synth/test" in again["metrics"]
    assert again["metrics"] == searched["metrics"]  # same config and seed on this CPU: the same numbers
    status = bench("status", "--suite", suite, "--out", second, env_path=tmp_path / "data")
    assert "0 pending" in status.stdout, status.stdout
