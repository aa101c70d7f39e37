"""A grid continued elsewhere: a store's records (results.jsonl, no tensors) imported into a fresh store
make bench run compute only the cells missing from them, and the imported cells report as the original's."""

import json
import os

from helpers.cli import bench
from helpers.data import write_toy_suite


def test_records_imported_into_a_fresh_store_leave_only_the_missing_cells(tmp_path):
    grid = write_toy_suite(tmp_path, "grid", methods="bm25,lora,full", seeds=[1, 2])
    data, first, second = tmp_path / "data", tmp_path / "first", tmp_path / "second"
    assert bench("run", "--suite", grid, "--out", first, "--seeds", "1", env_path=data).returncode == 0
    records = bench("report", "--suite", grid, "--runs", first, "--out", tmp_path / "rep1", "--format", "jsonl")
    assert records.returncode == 0, records.stderr[-2000:]
    jsonl = tmp_path / "rep1" / "grid" / "results.jsonl"
    assert len(jsonl.read_text().splitlines()) == 3  # bm25, lora s1, full s1
    done = bench("run", "--suite", grid, "--out", second, "--resume-from", jsonl, env_path=data)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resume: 3 cells imported from the records, 0 already here" in done.stdout
    events = [json.loads(line) for line in (second / "_claims" / "grid.jsonl").read_text().splitlines()]
    computed = {e["cell"] for e in events if e["event"].startswith("end:")}
    seeds = {p.parent.name: json.loads(p.read_text())["seed"] for p in (second / "grid").glob("*/result.json")}
    assert len(seeds) == 5 and {seeds[c] for c in computed} == {2} and len(computed) == 2  # only seed 2 ran
    for runs, out in ((first, "a"), (second, "b")):
        made = bench("report", "--suite", grid, "--runs", runs, "--out", tmp_path / out, "--seeds", "1", env_path=data)
        assert made.returncode == 0, made.stderr[-2000:]
    assert (tmp_path / "a" / "grid" / "leaderboard.csv").read_text() == (
        tmp_path / "b" / "grid" / "leaderboard.csv"
    ).read_text()
    again = bench("store", "import", jsonl, "--suite", grid, "--out", second, env_path=data)
    assert again.returncode == 0 and "3 kept" in again.stdout  # a finished cell is never overwritten


def test_verify_reruns_a_sample_and_agrees_to_1e_6_and_catches_a_changed_number(tmp_path):
    grid = write_toy_suite(tmp_path, "grid", methods="bm25,lora,full", seeds=[1])
    data = tmp_path / "data"
    assert bench("run", "--suite", grid, "--out", tmp_path / "runs", env_path=data).returncode == 0
    made = bench("report", "--suite", grid, "--runs", tmp_path / "runs", "--out", tmp_path / "pub", env_path=data)
    assert made.returncode == 0, made.stderr[-2000:]
    board = tmp_path / "pub" / "grid"
    ok = bench("verify", board, "-k", "2", "--out", tmp_path / "v1", env_path=data)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert "every metric agrees (2 cells" in ok.stdout and "rerank lora" in ok.stdout and "rerank full" in ok.stdout
    lines = (board / "results.jsonl").read_text().splitlines()
    tampered = []
    for line in lines:
        record = json.loads(line)
        if record["method"] in ("lora", "full"):
            record["metrics"]["toy/test"]["ndcg@10"] += 0.01
        tampered.append(json.dumps(record))
    (board / "results.jsonl").write_text("\n".join(tampered) + "\n")
    bad = bench("verify", board, "-k", "2", "--out", tmp_path / "v2", env_path=data)
    assert bad.returncode == 1 and "DISAGREEMENT" in bad.stdout and " NO" in bad.stdout
    assert "another machine" not in ok.stdout  # the cells ran here


def test_verify_names_cells_from_another_machine_and_can_keep_to_this_ones(tmp_path):
    grid = write_toy_suite(tmp_path, "grid", methods="bm25,lora,full", seeds=[1])
    data = tmp_path / "data"
    assert bench("run", "--suite", grid, "--out", tmp_path / "runs", env_path=data).returncode == 0
    made = bench("report", "--suite", grid, "--runs", tmp_path / "runs", "--out", tmp_path / "pub", env_path=data)
    assert made.returncode == 0, made.stderr[-2000:]
    jsonl = tmp_path / "pub" / "grid" / "results.jsonl"
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    for record in records:
        if record["method"] == "lora":
            record["device"] = "cpu:Some Other CPU (x86_64) x2 threads"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    named = bench("verify", jsonl, "-k", "2", "--out", tmp_path / "v1", env_path=data)
    assert named.returncode == 0, named.stdout[-2000:] + named.stderr[-2000:]
    elsewhere = "verify: rerank lora 2.0 s1: published on cpu:Some Other CPU (x86_64) x2 threads, re-run on cpu:"
    assert elsewhere in named.stdout
    assert named.stdout.count("another machine") == 1  # full ran here
    here = bench("verify", jsonl, "-k", "2", "--same-machine", "--out", tmp_path / "v2", env_path=data)
    assert here.returncode == 0, here.stdout[-2000:] + here.stderr[-2000:]
    assert "rerank lora" not in here.stdout and "rerank full" in here.stdout and "another machine" not in here.stdout
    for record in records:
        record["device"] = "cuda:Some Card"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    none = bench("verify", jsonl, "--same-machine", "--out", tmp_path / "v3", env_path=data)
    assert none.returncode == 2 and "no finished cell ran on this machine" in none.stderr
    assert len(none.stderr.strip().splitlines()) == 1 and not (tmp_path / "v3").exists()


def test_headline_markdown_from_records_alone_equals_the_stores_and_shows_the_cost(tmp_path):
    grid = write_toy_suite(tmp_path, "grid", methods="bm25,lora,full", seeds=[1])
    data = tmp_path / "data"
    assert bench("run", "--suite", grid, "--out", tmp_path / "runs", env_path=data).returncode == 0
    made = bench("report", "--suite", grid, "--runs", tmp_path / "runs", "--out", tmp_path / "pub", env_path=data)
    assert made.returncode == 0, made.stderr[-2000:]
    jsonl = tmp_path / "pub" / "grid" / "results.jsonl"
    from_store = bench("report", "--suite", grid, "--runs", tmp_path / "runs", "--format", "md", env_path=data)
    from_records = bench(
        "report", "--suite", grid, "--runs", tmp_path / "none", "--include", jsonl, "--format", "md", env_path=data
    )
    assert from_store.returncode == 0 and from_records.returncode == 0, from_records.stderr[-2000:]
    assert from_store.stdout == from_records.stdout and not (tmp_path / "none").exists()
    assert from_store.stdout in (tmp_path / "pub" / "grid" / "leaderboard.md").read_text()
    header, _, *lines = [line for line in from_store.stdout.splitlines() if line.startswith("|")]
    assert header.endswith("| train time | peak memory | trainable |")
    lora = json.loads(next(line for line in jsonl.read_text().splitlines() if '"method": "lora"' in line))
    (row,) = [line for line in lines if line.startswith("| lora |")]
    assert f"| {lora['trainable'] + lora['head']:,} |" in row and " MB |" in row
    assert next(line for line in lines if line.startswith("| bm25 |")).endswith("| - | - | - |")
    csv_header = (tmp_path / "pub" / "grid" / "leaderboard.csv").read_text().splitlines()[0]
    assert csv_header.endswith(",train_s,peak_memory_mb,trainable")
    page = (tmp_path / "pub" / "grid" / "index.html").read_text()
    assert "against training time" in page and "against peak memory" in page


def test_publish_writes_the_board_and_a_readme_answering_the_claims_from_its_tests(tmp_path):
    from helpers.data import write_synthetic_beir

    data = tmp_path / "data"
    write_synthetic_beir(data)  # numbers that differ between seeds
    grid = write_toy_suite(
        tmp_path,
        "board",
        methods="bm25,full,adapter,iaa-l,lora",
        budgets=["native"],
        seeds=[1, 2],
        datasets=[{"train": "synth/train", "eval": ["synth/test"]}],
        train={"steps": 12, "batch_queries": 2, "group_size": 3, "max_length": 32},
        eval={"depth": 10, "batch_size": 8, "max_length": 32},
        first_stage={"backend": "bm25s", "depth": 10},
    )
    assert bench("run", "--suite", grid, "--out", tmp_path / "runs", env_path=data).returncode == 0
    (tmp_path / "pub" / "board").mkdir(parents=True)
    (tmp_path / "pub" / "board" / "changes.md").write_text("## Changes from v1\n\n- every seed searched\n")
    done = bench(
        "publish", "--suite", grid, "--runs", tmp_path / "runs", "--out", tmp_path / "pub",
        "--command", "nice -n 19 bench run --suite board", env_path=data,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    folder = tmp_path / "pub" / "board"
    assert {p.name for p in folder.iterdir()} >= {"README.md", "index.html", "results.jsonl", "leaderboard.csv"}
    readme = (folder / "README.md").read_text()
    assert readme.index("## Changes from v1\n\n- every seed searched\n") < readme.index("## How it was made")
    md = bench("report", "--suite", grid, "--runs", tmp_path / "runs", "--format", "md", env_path=data).stdout
    assert md in readme and "nice -n 19 bench run --suite board" in readme
    assert "commit " in readme and "x86_64" in readme or "cpu:" in readme
    assert "| lora | grid | 2 |" in readme  # wall time per method
    assert "## Search\n\nNo search cell has finished yet." in readme  # this grid searches nothing
    seeds = readme.split("## Seeds")[1].split("## Headline")[0]
    for method in ("full", "adapter", "iaa-l", "lora"):  # every trained cell, per seed; bm25 trains nothing
        assert sum(line.startswith(f"| rerank | {method} | native |") for line in seeds.splitlines()) == 2
    assert "bm25" not in seeds and " → " in seeds
    claims = readme[readme.index("## The IAA paper's claims") :]
    for question in ("PEFT methods below full fine-tuning?", "IAA-L at least Adapter?", "steadier over seeds?"):
        assert question in claims
    assert "spread not answerable: 2 and 2 trained seeds" in claims and "Fisher p" in claims
    for method in ("adapter", "iaa-l", "lora"):
        assert f"   - {method}: Δ " in claims


def test_verify_reruns_search_cells_and_compares_their_validation_and_test_metrics(tmp_path):
    from helpers.data import write_synthetic_beir

    data = tmp_path / "data"
    write_synthetic_beir(data)
    grid = write_toy_suite(
        tmp_path,
        "searched",
        methods="lora",
        seeds=[1],
        datasets=[{"train": "synth/train", "eval": ["synth/test"], "holdout": 0.25}],
        search={"lr": [1.0e-3, 3.0e-3]},
        train={"steps": 4, "batch_queries": 2, "group_size": 3, "max_length": 32},
        eval={"depth": 5, "batch_size": 8, "max_length": 32},
    )
    assert bench("run", "--suite", grid, "--out", tmp_path / "runs", env_path=data).returncode == 0
    made = bench("report", "--suite", grid, "--runs", tmp_path / "runs", "--out", tmp_path / "pub", env_path=data)
    assert made.returncode == 0, made.stderr[-2000:]
    board = tmp_path / "pub" / "searched"
    phases = [json.loads(line)["phase"] for line in (board / "results.jsonl").read_text().splitlines()]
    assert sorted(p for p in phases if p) == ["final", "search"]  # the winner, scored on the test data too
    published = bench("publish", "--suite", grid, "--runs", tmp_path / "runs", "--out", tmp_path / "p2", env_path=data)
    assert published.returncode == 0, published.stderr[-2000:]
    search = (tmp_path / "p2" / "searched" / "README.md").read_text().split("## Search")[1].split("\n## ")[0]
    rows = [line for line in search.splitlines() if line.startswith("| rerank | lora |")]
    assert len(rows) == 2 and sorted(row.rsplit("|", 3)[1].strip() for row in rows) == ["no", "yes"]
    assert all(row.endswith("| done |") for row in rows)  # the status column (collapsed where it was)
    seen = set()
    for seed in range(6):
        ok = bench("verify", board, "-k", "1", "--seed", seed, "--out", tmp_path / f"v{seed}", env_path=data)
        assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
        assert "synth/train~holdout:0.25:s0" in ok.stdout and "every metric agrees (1 cells" in ok.stdout
        seen.add("test" if "synth/test" in ok.stdout else "validation only")
        if len(seen) == 2:
            break
    assert seen == {"test", "validation only"}


def test_verify_reruns_a_cell_of_a_two_worker_grid_on_the_thread_count_it_recorded(tmp_path):
    """A grid run with --workers 2 records its cells on half this CPU's threads: --same-machine keeps them,
    the re-run uses that count (the same rounding), and --budget samples one budget's cells alone."""
    grid = write_toy_suite(tmp_path, "grid", methods="bm25,lora,full", seeds=[1])
    data = tmp_path / "data"
    ran = bench("run", "--suite", grid, "--out", tmp_path / "runs", "--workers", "2", env_path=data)
    assert ran.returncode == 0, ran.stderr[-2000:]
    made = bench("report", "--suite", grid, "--runs", tmp_path / "runs", "--out", tmp_path / "pub", env_path=data)
    assert made.returncode == 0, made.stderr[-2000:]
    board = tmp_path / "pub" / "grid"
    devices = {json.loads(line)["device"] for line in (board / "results.jsonl").read_text().splitlines()}
    share = max(1, (os.cpu_count() or 1) // 2)  # each of 2 workers' threads (1 on CI's 2 cores)
    assert all(d.endswith(f" x{share} threads") for d in devices), devices
    ok = bench("verify", board, "--budget", "2.0", "--same-machine", "--out", tmp_path / "v", env_path=data)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert "rerank lora 2.0 s1" in ok.stdout and "rerank full" not in ok.stdout
    assert "every metric agrees (1 cells" in ok.stdout and "another machine" not in ok.stdout
    none = bench("verify", board, "--budget", "0.3", "--out", tmp_path / "w", env_path=data)
    assert none.returncode == 2 and "no finished cell at budget '0.3'" in none.stderr
