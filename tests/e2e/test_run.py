"""bench run end to end on a tiny random-weight model and a toy BEIR folder."""

import json

import pytest

from helpers.cli import bench
from helpers.data import write_toy_suite


@pytest.fixture
def toy_suite(tmp_path):
    return write_toy_suite(tmp_path, "toy", budgets=[2.0, 50.0])


def test_run_writes_the_store_then_skips_done_cells(toy_suite, tmp_path):
    out = tmp_path / "runs"
    done = bench("run", "--suite", str(toy_suite), "--out", str(out), env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "nDCG@10" in done.stdout and "lora" in done.stdout and "bm25" in done.stdout
    cells = sorted((out / "toy").iterdir())
    assert len(cells) == 4
    statuses = sorted(json.loads((c / "result.json").read_text())["status"] for c in cells)
    assert statuses == ["done", "done", "done", "not_applicable"]  # lora cannot reach 50%
    results = {
        json.loads((c / "result.json").read_text())["method"]: c
        for c in cells
        if json.loads((c / "result.json").read_text())["status"] == "done"
    }
    lora_dir = results["lora"]
    result = json.loads((lora_dir / "result.json").read_text())
    for key in (
        "status",
        "metrics",
        "knobs",
        "trainable",
        "backbone",
        "pct",
        "times",
        "peak_memory_mb",
        "versions",
        "git_commit",
        "device",
        "seed",
        "config",
        "dataset_fingerprints",
    ):
        assert key in result, key
    assert result["status"] == "done" and abs(result["pct"] - 2.0) <= 0.1
    assert set(result["metrics"]["toy/test"]) == {"mrr@10", "mrr@100", "ndcg@10", "ndcg@100"}
    assert json.loads((lora_dir / "config.json").read_text())["method"] == "lora"
    assert len((lora_dir / "train_log.jsonl").read_text().splitlines()) == 3
    assert set(json.loads((lora_dir / "train_log.jsonl").read_text().splitlines()[0])) == {
        "step",
        "loss",
        "lr",
        "grad_norm",
    }
    assert (lora_dir / "run.toy__test.trec").exists() and (lora_dir / "per_query.json").exists()
    assert (lora_dir / "trainable" / "trainable.safetensors").exists()
    assert not list(out.rglob("*.tmp"))

    stamp = (lora_dir / "result.json").stat().st_mtime_ns
    again = bench("run", "--suite", str(toy_suite), "--out", str(out), env_path=tmp_path / "data")
    assert again.returncode == 0
    assert again.stderr.count("skip ") == 4 or again.stdout.count("skip ") == 4
    assert (lora_dir / "result.json").stat().st_mtime_ns == stamp


def test_same_seed_same_numbers(toy_suite, tmp_path):
    metrics = []
    for name in ("a", "b"):
        out = tmp_path / name
        done = bench(
            "run",
            "--suite",
            str(toy_suite),
            "--methods",
            "lora",
            "--budgets",
            "2.0",
            "--out",
            str(out),
            env_path=tmp_path / "data",
        )
        assert done.returncode == 0, done.stderr[-2000:]
        result = next(
            json.loads(p.read_text()) for p in out.rglob("result.json") if json.loads(p.read_text())["method"] == "lora"
        )
        metrics.append((result["metrics"], result["train"]["loss_last"]))
    assert metrics[0] == metrics[1]


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "--suite", "nosuch"], "unknown suite 'nosuch'"),
        (["run", "--suite", "smoke", "--methods", "lora,bogus"], "unknown method 'bogus'"),
        (["run", "--suite", "smoke", "--budgets", "half"], "not a percentage"),
        (["run", "--suite", "smoke", "--methods", "bm25", "--datasets", "nosuch"], "unknown dataset 'nosuch/test'"),
        (["methods", "--model", "bert-base", "--budget", "-1"], "must be a percentage"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, message, tmp_path):
    done = bench(*args, "--out", str(tmp_path / "runs")) if args[0] == "run" else bench(*args)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and message in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("result.json"))


def test_malformed_qrels_stops_with_file_and_line_and_writes_no_result(toy_suite, tmp_path):
    (tmp_path / "data" / "toy" / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq5 d2\n")
    done = bench("run", "--suite", str(toy_suite), "--out", str(tmp_path / "runs"), env_path=tmp_path / "data")
    assert done.returncode == 2 and "test.tsv:2:" in done.stderr
    assert not list((tmp_path / "runs").rglob("result.json"))


def test_methods_command_json_rows():
    done = bench("methods", "--model", "bert-base", "--budget", "6.7", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = {r["method"]: r for r in json.loads(done.stdout)}
    assert set(rows["lora"]) >= {"method", "knobs", "trainable", "backbone", "pct", "applicable"}
    assert rows["bitfit"]["applicable"] is False and rows["iaa-l"]["knobs"] == {"r": 50, "ar": 300}
    assert all(abs(r["pct"] - 6.7) <= 0.1 for n, r in rows.items() if r["applicable"])


def test_token_budget_steps_run_end_to_end_and_repeat(tmp_path):
    """Both encoder stages with packed steps (the GPU profile's settings, small): every cell done, the
    budget in the cell's config, and the same seed giving the same numbers."""
    packing = {"token_budget": 40, "pad_to_multiple_of": 8}
    suite = write_toy_suite(
        tmp_path,
        "packed",
        stage=["rerank", "dense"],
        methods="lora",
        train={"steps": 2, "batch_queries": 2, "group_size": 3, "max_length": 32, **packing},
    )
    outcomes = []
    for name in ("a", "b"):
        done = bench("run", "--suite", suite, "--out", tmp_path / name, env_path=tmp_path / "data")
        assert done.returncode == 0, done.stderr[-3000:]
        every = [json.loads(p.read_text()) for p in (tmp_path / name).rglob("result.json")]
        results = sorted((r for r in every if r["method"] == "lora"), key=lambda r: r["stage"])
        assert [(r["stage"], r["status"]) for r in results] == [("dense", "done"), ("rerank", "done")]
        assert all(r["config"]["train"]["token_budget"] == 40 for r in results)
        outcomes.append([(r["metrics"], r["train"]["loss_last"]) for r in results])
    assert outcomes[0] == outcomes[1]


@pytest.mark.harness  # the report's text: the first tox env runs it (tests/conftest.py)
def test_a_suite_note_is_shown_under_its_leaderboards_and_leaves_cells_alone(tmp_path):
    note = "a dozen steps per method: this ranks nothing"
    plain = write_toy_suite(tmp_path / "plain", "noted", methods="bm25,lora")
    first = bench("run", "--suite", plain, "--out", tmp_path / "plain" / "runs", env_path=tmp_path / "plain" / "data")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "note:" not in first.stdout
    noted = write_toy_suite(tmp_path, "noted", methods="bm25,lora", note=note)
    out = tmp_path / "runs"
    done = bench("run", "--suite", noted, "--out", out, env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.rstrip().splitlines()[-2] == f"note: {note}"  # right under the leaderboard
    cell_ids = sorted(p.name for p in (out / "noted").iterdir() if p.is_dir())
    assert cell_ids == sorted(p.name for p in (tmp_path / "plain" / "runs" / "noted").iterdir() if p.is_dir())
    reported = bench("report", "--suite", noted, "--runs", out, "--out", tmp_path / "reports")
    assert reported.returncode == 0, reported.stderr[-3000:]
    assert f'<p class="note">{note}</p>' in (tmp_path / "reports" / "noted" / "index.html").read_text()
    assert f"- {note}" in (tmp_path / "reports" / "noted" / "leaderboard.md").read_text()


def test_train_attention_parallel_dropout_is_its_own_seeded_cell(tmp_path):
    """The setting switches the cell's attention (another dropout stream: other losses than sdpa's), keys its
    own cell id, and gives the same losses for the same seed."""

    def losses(name, attention, store):
        train = {"steps": 3, "batch_queries": 2, "group_size": 3, "max_length": 32}
        if attention:
            train["train_attention"] = attention
        base = tmp_path / store
        suite = write_toy_suite(base, name, methods="full", budgets=[0.5], train=train)
        done = bench("run", "--suite", str(suite), "--out", str(base / "runs"), env_path=base / "data")
        assert done.returncode == 0, done.stderr[-3000:]
        (cell,) = [c for c in (base / "runs" / name).iterdir() if (c / "train_log.jsonl").exists()]
        log = [json.loads(line)["loss"] for line in (cell / "train_log.jsonl").read_text().splitlines()]
        return cell.name, json.loads((cell / "config.json").read_text())["train"]["train_attention"], log

    pytest.importorskip("transformers", minversion="5")  # 4.57's BERT cannot switch (tests/bench/test_attention.py)
    sdpa_id, sdpa_setting, sdpa = losses("att", None, "a")
    pd_id, pd_setting, parallel = losses("att", "parallel_dropout", "b")
    again_id, _, again = losses("att", "parallel_dropout", "c")
    assert (sdpa_setting, pd_setting) == ("sdpa", "parallel_dropout")
    assert sdpa_id != pd_id == again_id
    assert parallel == again
    assert parallel != sdpa
