"""Bad input of every kind ends in one line on stderr (the problem and the fix), a non-zero exit, no
traceback and nothing in the run store; what is only suspicious is one warning line and the run goes on."""

import json
import os
import stat
import subprocess
import sys

import pytest
import yaml

from helpers.cli import bench, one_error_line
from helpers.data import write_toy_suite


def suite_file(tmp_path, name="bad", **changes):
    path = write_toy_suite(tmp_path, name)
    suite = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            suite.pop(key, None)
        else:
            suite[key] = value
    path.write_text(yaml.safe_dump(suite))
    return path


SUITE_CASES = {
    "unknown key, closest named": (dict(seed=[1]), "unknown key 'seed' (did you mean 'seeds'?)"),
    "a string for a list": (dict(seeds="13"), "seeds: Input should be a valid list"),
    "a bool for an int": (dict(seeds=[True]), "seeds.0: Input should be a valid integer"),
    "zero steps": (dict(train={"steps": 0}), "rerank.train.steps: Input should be greater than 0"),
    "zero epochs": (dict(train={"epochs": 0}), "rerank.train.epochs: Input should be greater than 0"),
    "negative learning rate": (dict(train={"lr": -1e-3}), "rerank.train.lr"),
    "zero depth": (dict(eval={"depth": 0}), "rerank.eval.depth: Input should be greater than 0"),
    "zero batch size": (dict(eval={"batch_size": 0}), "rerank.eval.batch_size: Input should be greater than 0"),
    "unknown train key": (dict(train={"epoch": 2}), "unknown key 'train.epoch' (did you mean 'epochs'?)"),
    "unknown stage key": (
        dict(dense={"train": {"temperatur": 0.1}}),
        "unknown key 'dense.train.temperatur' (did you mean 'temperature'?)",
    ),
    "repeated seed": (dict(seeds=[1, 1]), "seed 1 is listed twice"),
    "repeated method": (dict(methods=["lora", "lora"]), "method 'lora' is listed twice"),
    "repeated budget": (dict(budgets=[0.5, 0.5]), "budget '0.5' is listed twice"),
    "unknown method": (dict(methods=["lora", "bogus"]), "unknown method 'bogus'"),
    "bad metric": (dict(eval={"metrics": ["ndcg@10", "bogus@5"]}), "'bogus@5' is not a ranx metric"),
    "suite name that is a path": (dict(name="../../x"), "must be a plain folder name"),
    "no datasets": (dict(datasets=None), "datasets: Field required"),
    "bad precision": (dict(mixed_precision="fp8"), "mixed_precision: Input should be"),
    "bad template": (dict(stage="qlm", model="tiny-llama", prompt={"template": "{query} first"}), "qlm template"),
    "search without validation data": (
        dict(search={"lr": [1e-4, 1e-3]}),
        "search needs validation data: give the datasets entry for toy/train validation: <split> or holdout:",
    ),
    "search of an unknown setting": (
        dict(search={"lrate": [1e-4]}, datasets=[{"train": "toy/train", "eval": ["toy/test"], "holdout": 0.5}]),
        "unknown key 'search.lrate' (did you mean 'lr'?)",
    ),
    "search value the stage refuses": (
        dict(search={"lr": [-1.0]}, datasets=[{"train": "toy/train", "eval": ["toy/test"], "holdout": 0.5}]),
        'search {"lr": -1.0}',
    ),
    "validation that is a test split": (
        dict(datasets=[{"train": "toy/train", "eval": ["toy/test"], "validation": "toy/test"}]),
        "is also an eval split",
    ),
    "holdout and validation both": (
        dict(datasets=[{"train": "toy/train", "eval": ["toy/test"], "validation": "toy/x", "holdout": 0.2}]),
        "not both",
    ),
    "holdout of 1": (dict(datasets=[{"train": "toy/train", "eval": ["toy/test"], "holdout": 1.0}]), "holdout"),
    "search seed outside the grid": (
        dict(
            search={"lr": [1e-4]},
            search_seeds=[99],
            datasets=[{"train": "toy/train", "eval": ["toy/test"], "holdout": 0.5}],
        ),
        "search seed 99 is not one of the grid's seeds",
    ),
}


@pytest.mark.parametrize("case", list(SUITE_CASES))
def test_bad_suite_is_one_line(case, tmp_path):
    changes, message = SUITE_CASES[case]
    path = suite_file(tmp_path, **changes)
    done = bench("run", "--suite", path, "--out", tmp_path / "runs", env_path=tmp_path / "data")
    line = one_error_line(done)
    assert message in line and str(path) in line, line
    assert not (tmp_path / "runs").exists()


def test_extends_cycles_name_the_chain(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nname: b\n")
    (tmp_path / "self.yaml").write_text("extends: self.yaml\nname: s\n")
    line = one_error_line(bench("run", "--suite", tmp_path / "a.yaml", "--out", tmp_path / "runs"))
    assert "extends forms a cycle" in line and "a.yaml -> " in line and "b.yaml -> " in line
    assert "extends forms a cycle" in one_error_line(bench("run", "--suite", tmp_path / "self.yaml"))


FLAG_CASES = {
    "--epochs 0": (["--epochs", "0"], "argument --epochs: 0 must be 1 or more"),
    "--workers 0": (["--workers", "0"], "argument --workers: 0 must be 1 or more"),
    "--max-steps -3": (["--max-steps", "-3"], "argument --max-steps: -3 must be 1 or more"),
    "--depth x": (["--depth", "x"], "argument --depth: 'x' is not an integer"),
    "--seeds 1,1": (["--seeds", "1,1"], "seed 1 is listed twice"),
    "--seeds a": (["--seeds", "a"], "--seeds 'a': give comma-separated integers"),
    "--methods lora,lora": (["--methods", "lora,lora"], "method 'lora' is listed twice"),
    "--budgets half": (["--budgets", "half"], "not a percentage"),
    "--budgets 0.5,0.5": (["--budgets", "0.5,0.5"], "budget '0.5' is listed twice"),
    "--stage sparse": (["--stage", "sparse"], "unknown stage 'sparse'"),
    "--metrics x": (["--metrics", "x"], "'x' is not a ranx metric"),
    "--gpus-per-cell -1": (["--gpus-per-cell", "-1"], "must be a positive number"),
    "--search lr": (["--search", "lr"], "--search 'lr': write SETTING=V1,V2"),
    "--search without validation": (["--search", "lr=1e-4,1e-3"], "search needs validation data"),
}


@pytest.mark.parametrize("case", list(FLAG_CASES))
def test_bad_flag_is_one_line(case, tmp_path):
    flags, message = FLAG_CASES[case]
    path = suite_file(tmp_path)
    done = bench("run", "--suite", path, "--out", tmp_path / "runs", *flags, env_path=tmp_path / "data")
    assert message in one_error_line(done)
    assert not (tmp_path / "runs").exists()


def corrupt(folder, target, content):
    path = folder / target
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


DATA_CASES = {
    "duplicate document id": (
        "corpus.jsonl",
        '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "b"}\n{"_id": "d1", "text": "c"}\n',
        "document id 'd1' appears twice (lines 1 and 3)",
    ),
    "duplicate query id": (
        "queries.jsonl",
        '{"_id": "q5", "text": "a"}\n{"_id": "q5", "text": "b"}\n',
        "query id 'q5' appears twice (lines 1 and 2)",
    ),
    "not UTF-8": (
        "corpus.jsonl",
        b'{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": "caf\xe9"}\n',
        "not UTF-8 at byte 54 (line 2)",
    ),
    "grade 0.7": (
        "qrels/test.tsv",
        "query-id\tcorpus-id\tscore\nq5\td2\t0.7\n",
        "relevance grade '0.7' is not an integer",
    ),
    "grade inf": (
        "qrels/test.tsv",
        "query-id\tcorpus-id\tscore\nq5\td2\tinf\n",
        "relevance grade 'inf' is not an integer",
    ),
    "grade nan": (
        "qrels/test.tsv",
        "query-id\tcorpus-id\tscore\nq5\td2\tnan\n",
        "relevance grade 'nan' is not an integer",
    ),
    "malformed line": ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq5\td2\n", "test.tsv:2: expected"),
    "no judged query": ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nqX\td2\t1\n", "no judged query"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_is_one_line_naming_the_file(case, tmp_path):
    target, content, message = DATA_CASES[case]
    path = suite_file(tmp_path)
    corrupt(tmp_path / "data" / "toy", target, content)
    line = one_error_line(bench("run", "--suite", path, "--out", tmp_path / "runs", env_path=tmp_path / "data"))
    assert message in line and target.split("/")[-1] in line, line
    assert not list((tmp_path / "runs").rglob("result.json")) if (tmp_path / "runs").exists() else True


def test_judgments_outside_the_collection_are_one_warning(tmp_path):
    path = suite_file(tmp_path, methods="bm25")
    corrupt(
        tmp_path / "data" / "toy",
        "qrels/test.tsv",
        "query-id\tcorpus-id\tscore\nq5\td2\t1\nq6\td4\t2\nq6\tgone\t1\nq6\tgone2\t1\nqX\td1\t1\n",
    )
    done = bench("run", "--suite", path, "--out", tmp_path / "runs", env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-2000:]
    warnings = [line for line in done.stderr.splitlines() if line.startswith("bench: warning:")]
    assert any("2 judgments name documents not in the corpus" in w for w in warnings)
    assert any("1 judged queries are not in the queries file" in w for w in warnings)
    assert len([w for w in warnings if "not in the corpus" in w]) == 1


def test_trec_run_as_first_stage_is_checked(tmp_path):
    path = suite_file(tmp_path, methods="bm25")
    empty, foreign, partial = tmp_path / "empty.trec", tmp_path / "foreign.trec", tmp_path / "partial.trec"
    empty.write_text("\n")
    foreign.write_text("zz Q0 d1 1 3.0 x\nq5 Q0 nowhere 1 2.0 x\n")
    partial.write_text("q5 Q0 d2 1 3.0 x\nq5 Q0 nowhere 2 2.0 x\nzz Q0 d1 1 1.0 x\n")
    common = ("run", "--suite", path, "--out", tmp_path / "runs", "--first-stage")
    assert "the run is empty" in one_error_line(bench(*common, empty, env_path=tmp_path / "data"))
    assert "nothing to rerank" in one_error_line(bench(*common, foreign, env_path=tmp_path / "data"))
    done = bench(*common, partial, env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 queries of the run are not judged" in done.stderr and "1 ranked documents are not in" in done.stderr
    assert "1 of 2 queries of toy/test have no candidate" in done.stderr


def test_out_that_is_a_file_stops_before_any_work(tmp_path):
    path = suite_file(tmp_path)
    (tmp_path / "taken").write_text("x")
    line = one_error_line(bench("run", "--suite", path, "--out", tmp_path / "taken", env_path=tmp_path / "data"))
    assert "--out" in line and "is a file" in line
    assert (tmp_path / "taken").read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_that_is_not_writable(tmp_path):
    path = suite_file(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    assert "not writable" in one_error_line(bench("run", "--suite", path, "--out", locked, env_path=tmp_path / "data"))


def test_a_cut_result_is_never_cleared_and_says_how_to_recompute(tmp_path):
    path = suite_file(tmp_path, methods="bm25,lora")
    out = tmp_path / "runs"
    assert bench("run", "--suite", path, "--out", out, env_path=tmp_path / "data").returncode == 0
    result = next(p for p in out.rglob("result.json") if json.loads(p.read_text())["method"] == "lora")
    result.write_text(result.read_text()[:40])  # a copy cut short
    cut = result.read_bytes()
    status = bench("status", "--suite", path, "--out", out, env_path=tmp_path / "data")
    assert status.returncode == 0 and "1 unreadable" in status.stdout and "bench store recompute" in status.stdout
    report = bench("report", "--suite", path, "--runs", out, "--out", tmp_path / "reports", env_path=tmp_path / "data")
    assert report.returncode == 0 and "warning" in report.stderr and "not valid JSON" in report.stderr
    again = bench("run", "--suite", path, "--out", out, env_path=tmp_path / "data")
    assert again.returncode == 1 and result.read_bytes() == cut  # skipped, left as it is
    assert "bench store recompute" in again.stdout + again.stderr
    assert bench("store", "recompute", result.parent).returncode == 0
    third = bench("run", "--suite", path, "--out", out, env_path=tmp_path / "data")
    assert third.returncode == 0 and json.loads(result.read_text())["status"] == "done"  # recomputed


def test_files_follow_the_umask_and_nothing_is_left_behind(tmp_path):
    path = suite_file(tmp_path, methods="bm25,lora")
    out = tmp_path / "runs"
    old = os.umask(0o022)
    try:
        done = bench("run", "--suite", path, "--out", out, "--workers", "2", env_path=tmp_path / "data")
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr[-2000:]
    for file in out.rglob("*"):
        if file.is_file():
            assert stat.S_IMODE(file.stat().st_mode) == 0o644, file
    assert not list(out.rglob("*.tmp")) and not (out / "_queue").exists()


def test_a_crafted_cell_id_writes_nothing_outside_the_report(tmp_path):
    from helpers.reports import write_cell

    write_cell(tmp_path / "runs", "real", "lora", "0.5", 0, [0.5] * 8)
    result = tmp_path / "runs" / "mini" / "real" / "result.json"
    data = json.loads(result.read_text())
    data["cell_id"] = "../../../escaped"
    result.write_text(json.dumps(data))
    done = bench("report", "--suite", "mini", "--runs", tmp_path / "runs", "--out", tmp_path / "reports")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(tmp_path.rglob("escaped*"))
    assert (tmp_path / "reports" / "mini" / "cells" / "real.html").exists()


def test_piped_into_head_exits_quietly(tmp_path):
    done = subprocess.run(
        f"{sys.executable} -m bench.cli methods --model bert-base | head -1", shell=True, capture_output=True, text=True
    )
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_help_shows_every_default():
    done = bench("run", "--help")
    assert "(default: runs)" in done.stdout and "(default: local)" in done.stdout and "(default: 1)" in done.stdout


def test_data_path_default_and_where_it_looked(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "BENCH_DATA_PATH"}
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cli",
            "run",
            "--methods",
            "bm25",
            "--datasets",
            "nosuch",
            "--out",
            tmp_path / "runs",
        ],
        capture_output=True,
        text=True,
        env={**env, "BENCH_DATA_PATH": str(empty), "HF_HUB_OFFLINE": "1"},
    )
    line = one_error_line(done)
    assert f"looked in {empty}" in line and "set BENCH_DATA_PATH" in line


def test_methods_command_says_full_and_bitfit_run_at_their_one_size():
    done = bench("methods", "--model", "bert-base", "--budget", "6.7", "--format", "json")
    rows = {r["method"]: r for r in json.loads(done.stdout)}
    assert rows["bitfit"]["runnable"] and rows["full"]["runnable"] and "one size" in rows["bitfit"]["reason"]
    assert not rows["bitfit"]["applicable"]  # its one size is not the budget asked for


def test_terminal_leaderboard_names_datasets_and_failures(tmp_path):
    folder = tmp_path / "data" / "toy"
    path = suite_file(
        tmp_path, methods="bm25,lora,bitfit", datasets=[{"train": f"{folder}/train", "eval": [f"{folder}/test"]}]
    )
    done = bench(
        "run",
        "--suite",
        path,
        "--out",
        tmp_path / "runs",
        env_path=tmp_path / "data",
        env={"BENCH_FAULTS": "bitfit=raise"},
    )
    assert done.returncode == 1
    board = done.stdout.split("run store")[1]
    assert "toy/test" in board and str(folder) not in board
    assert "bitfit native (rerank, toy/test): 1 failed, 0 diverged: RuntimeError: fault forced" in board
    assert " s " in board or " s\n" in board  # durations with units


def test_help_never_says_default_none():
    for command in (("run",), ("report",), ("status",), ("store", "import")):
        done = bench(*command, "--help")
        assert done.returncode == 0 and "(default: None)" not in done.stdout, command
    assert "(default: the suite's)" in bench("run", "--help").stdout
