"""The run store under concurrency and faults: several bench run on one store split the grid and compute
each cell once (seen in the claims), a chaos driver killing and restarting them changes no number, a
result of a newer schema is never touched, a full disk is one line and nothing half-written, SIGTERM
ends cleanly, and inputs real collections have (empty documents, empty queries, odd seeds) are handled."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from bench.store import _claim_file
from helpers.cli import bench, one_error_line
from helpers.data import write_toy_suite

METHODS = "bm25,lora,full,bitfit,adapter"


@pytest.fixture
def grid(tmp_path):
    return write_toy_suite(
        tmp_path,
        "grid",
        methods=METHODS,
        seeds=[1, 2],
        train={"steps": 8, "batch_queries": 2, "group_size": 3, "max_length": 32},
    )


def env_for(tmp_path, **extra):
    return {**os.environ, "HF_HUB_OFFLINE": "1", "BENCH_DATA_PATH": str(tmp_path / "data"), **extra}


def start(grid, out, tmp_path, **extra):
    """A bench run in the background; its stderr goes to a file (a pipe nobody reads fills up and blocks)."""
    log = open(tmp_path / f"stderr-{time.monotonic_ns()}.log", "w")  # noqa: SIM115  (closed with the process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", "--suite", str(grid), "--out", str(out)],
        env=env_for(tmp_path, **extra),
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )
    proc.log_path = log.name
    return proc


def stderr_of(proc) -> str:
    return open(proc.log_path).read()


def events(out):
    path = out / "_claims" / "grid.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def results(out):
    return {p.parent.name: json.loads(p.read_text()) for p in (out / "grid").glob("*/result.json")}


def numbers(out):
    """Per cell: its metrics and per-query values as bytes (what must equal a clean run's)."""
    return {
        cell: (json.dumps(r["metrics"], sort_keys=True), (out / "grid" / cell / "per_query.json").read_bytes())
        for cell, r in results(out).items()
        if r["status"] == "done"
    }


def assert_one_owner_at_a_time(log):
    """From the claims: per cell, a claim or takeover is only made when no live owner holds it (the
    previous holder released it, or died: a takeover names it), so no two processes are inside a cell."""
    holder: dict = {}
    for e in sorted(log, key=lambda e: e["at"]):
        cell, who = e["cell"], (e["host"], e["pid"], e["token"])
        if e["event"] == "claim":
            assert cell not in holder, f"{cell}: claimed by {who} while {holder[cell]} held it"
            holder[cell] = who
        elif e["event"] == "takeover":
            previous = e["took_over"]
            assert cell in holder and holder[cell][:2] == (previous["host"], previous["pid"]), (cell, e)
            holder[cell] = who
        else:
            assert holder.get(cell) == who, f"{cell}: {e['event']} by {who}, held by {holder.get(cell)}"
            del holder[cell]


def test_two_concurrent_runs_split_the_grid_and_never_share_a_cell(grid, tmp_path):
    out = tmp_path / "runs"
    samples, stop = [], threading.Event()

    def sample():  # the claims as another process sees them, every 20 ms
        while not stop.is_set():
            for path in (out / "grid").glob("*/claim.json") if (out / "grid").exists() else []:
                claim = _claim_file(path.parent)
                if claim:
                    samples.append((path.parent.name, claim["pid"], claim["token"]))
            time.sleep(0.02)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    procs = [start(grid, out, tmp_path) for _ in range(2)]
    for proc in procs:
        proc.wait(timeout=600)
    stop.set()
    watcher.join()
    log = events(out)
    assert_one_owner_at_a_time(log)
    done = [e for e in log if e["event"].startswith("end:")]  # done, or not applicable (adapter at 2%)
    assert sorted(e["cell"] for e in done) == sorted(set(e["cell"] for e in done))  # each computed once
    assert len(done) == 9 and len({e["pid"] for e in done}) == 2  # both processes did part of the grid
    assert len({(cell, pid) for cell, pid, _ in samples}) >= 2
    tokens = {}
    for cell, pid, token in samples:  # one claim token per (cell, owner): never two owners' claims mixed
        assert tokens.setdefault((cell, token), pid) == pid
    assert all(r["status"] in ("done", "not_applicable") for r in results(out).values()) and len(results(out)) == 9
    assert not list((out / "grid").glob("*/claim.json"))


def test_chaos_kills_and_restarts_change_no_number(grid, tmp_path):
    """Three bench run on one store; a seeded driver kills one at random moments (SIGKILL or SIGTERM) and
    starts it again, 6 rounds at most and 240 s at most; then one more run finishes the grid. Every cell is
    done, computed to the end once, and its metrics equal a clean single-process run's byte for byte."""
    clean = tmp_path / "clean"
    done = bench("run", "--suite", grid, "--out", clean, env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-2000:]
    out, rng = tmp_path / "runs", random.Random(24)
    procs = [start(grid, out, tmp_path) for _ in range(3)]
    deadline, kills = time.time() + 240, []
    for _ in range(6):
        if time.time() > deadline or all(p.poll() is not None for p in procs):
            break
        time.sleep(rng.uniform(1.0, 4.0))
        index = rng.randrange(len(procs))
        how = rng.choice([signal.SIGKILL, signal.SIGTERM])
        if procs[index].poll() is None:
            procs[index].send_signal(how)
            procs[index].wait(timeout=120)
            kills.append((how, procs[index].returncode))
        procs[index] = start(grid, out, tmp_path)
    for proc in procs:
        proc.wait(timeout=600)
    final = bench("run", "--suite", grid, "--out", out, env_path=tmp_path / "data")
    assert final.returncode == 0, final.stderr[-2000:]
    assert kills, "the driver killed nothing"
    assert all(code == 143 for how, code in kills if how == signal.SIGTERM), kills  # the clean path
    log = events(out)
    assert_one_owner_at_a_time(log)
    ends = [e["cell"] for e in log if e["event"].startswith("end:")]
    assert len(ends) == len(set(ends))  # no cell computed to the end twice
    assert numbers(out) == numbers(clean) and len(numbers(out)) == 7  # 2 adapter cells: not applicable at 2%
    for cell in numbers(out):  # a result never points at a missing file
        folder = out / "grid" / cell
        assert (folder / "per_query.json").is_file()
        if results(out)[cell]["method"] != "bm25" and results(out)[cell]["status"] == "done":
            assert (folder / "trainable").is_dir()
    assert not list((out / "grid").rglob("*.tmp")) and not list((out / "grid").glob("*/claim.json"))


def test_a_result_of_a_newer_schema_is_never_touched(grid, tmp_path):
    out = tmp_path / "runs"
    data = tmp_path / "data"
    assert (
        bench("run", "--suite", grid, "--out", out, "--methods", "bm25,lora", "--seeds", "1", env_path=data).returncode
        == 0
    )
    cell = next(p.parent for p in (out / "grid").glob("*/result.json") if "lora" in p.read_text())
    written = json.loads((cell / "result.json").read_text())
    (cell / "result.json").write_text(json.dumps({**written, "schema": 3, "new_field": {"x": 1}}))
    before = {p: p.read_bytes() for p in cell.rglob("*") if p.is_file()}
    again = bench("run", "--suite", grid, "--out", out, "--methods", "bm25,lora", "--seeds", "1", env_path=data)
    lines = [line for line in again.stdout.splitlines() + again.stderr.splitlines() if cell.name in line]
    assert any("written by a newer version (result schema 3" in line and "upgrade" in line for line in lines), lines
    assert {p: p.read_bytes() for p in cell.rglob("*") if p.is_file()} == before  # byte-identical
    assert again.returncode == 1 and "1 unreadable" in again.stdout
    report = bench("report", "--suite", grid, "--runs", out, "--out", tmp_path / "reports", env_path=data)
    assert report.returncode == 0 and "newer version" in report.stderr and "Traceback" not in report.stderr
    aside = bench("store", "recompute", cell)
    assert aside.returncode == 0 and not cell.exists()
    kept = next((out / "grid" / "_set_aside").iterdir())
    assert json.loads((kept / "result.json").read_text())["schema"] == 3  # set aside, never deleted
    third = bench("run", "--suite", grid, "--out", out, "--methods", "bm25,lora", "--seeds", "1", env_path=data)
    assert third.returncode == 0 and json.loads((cell / "result.json").read_text())["schema"] == 2


def test_a_full_disk_is_one_line_leaves_nothing_half_written_and_resumes(grid, tmp_path):
    out = tmp_path / "runs"
    data = tmp_path / "data"
    full = bench(
        "run",
        "--suite",
        grid,
        "--out",
        out,
        "--seeds",
        "1",
        env_path=data,
        env={"BENCH_FAULTS": "enospc=per_query.json"},
    )
    line = one_error_line(full)
    assert "cannot write" in line and "per_query.json" in line and "[Errno 28] No space left on device" in line
    assert "free space" in line
    for path in (out / "grid").rglob("*.json"):
        json.loads(path.read_text())  # nothing half-written
    assert not list((out / "grid").rglob("*.tmp")) and not list((out / "grid").glob("*/claim.json"))
    assert not results(out)  # the cell that hit the full disk has no result: it is unfinished
    again = bench("run", "--suite", grid, "--out", out, "--seeds", "1", env_path=data)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(results(out)) == 5 and all(r["status"] in ("done", "not_applicable") for r in results(out).values())


def test_sigterm_after_the_command_returned_still_ends_in_143(tmp_path):
    """The window the chaos driver can hit: the command is done and the interpreter is tearing torch down.
    The executable's handler ends at once with 143; main() hands back the handler it found."""
    script = (
        "import os, signal, sys, time\n"
        "from bench import cli, interrupts\n"
        "interrupts.sigterm_exits()\n"
        "code = cli.main(['list'])\n"
        "assert code == 0 and signal.getsignal(signal.SIGTERM) is interrupts.exit_on_sigterm\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(30)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env_for(tmp_path), timeout=120
    )
    assert done.returncode == 143, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_sigterm_ends_the_cell_cleanly_and_says_how_to_resume(tmp_path):
    # one long trained cell, so the signal lands inside training (its log is open as .tmp until the end)
    grid = write_toy_suite(
        tmp_path,
        "grid",
        methods="bm25,lora",
        train={"steps": 3000, "batch_queries": 2, "group_size": 3, "max_length": 32},
    )
    out = tmp_path / "runs"
    proc = start(grid, out, tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline and not any(p.stat().st_size for p in (out / "grid").glob("*/train_log.jsonl.tmp")):
        time.sleep(0.05)  # the trained cell is in its first steps
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    err = stderr_of(proc)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted (SIGTERM)" in err and "run the same command again to resume" in err
    assert "Traceback" not in err
    assert not list((out / "grid").glob("*/claim.json"))  # released
    assert [e["event"] for e in events(out) if e["event"] == "interrupted"] == ["interrupted"]
    assert not any(r["status"] == "done" and r["method"] == "lora" for r in results(out).values())
    again = bench("run", "--suite", grid, "--out", out, env_path=tmp_path / "data")
    assert again.returncode == 0 and len(results(out)) == 2


def test_empty_documents_run_and_empty_queries_are_one_warning(tmp_path):
    grid = write_toy_suite(tmp_path, "grid", methods="bm25,lora")
    corpus = tmp_path / "data" / "toy" / "corpus.jsonl"
    corpus.write_text(corpus.read_text() + json.dumps({"_id": "d9", "title": "", "text": ""}) + "\n")
    queries = tmp_path / "data" / "toy" / "queries.jsonl"
    queries.write_text(queries.read_text() + json.dumps({"_id": "q7", "text": "   "}) + "\n")
    qrels = tmp_path / "data" / "toy" / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text() + "q7\td1\t1\n")
    done = bench("run", "--suite", grid, "--out", tmp_path / "runs", env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-2000:]
    warnings = [line for line in done.stderr.splitlines() if "have no text" in line]
    assert len(set(warnings)) == 1 and "q7" in warnings[0] and "skipped" in warnings[0]
    assert all("q7" not in json.dumps(r["metrics"]) for r in results(tmp_path / "runs").values())


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seeds_the_seeding_libraries_refuse_are_refused_when_the_suite_is_read(tmp_path, seed):
    grid = write_toy_suite(tmp_path, "grid", seeds=[seed])
    line = one_error_line(bench("run", "--suite", grid, "--out", tmp_path / "runs", env_path=tmp_path / "data"))
    assert f"seed {seed} is outside 0 .. 4294967295" in line
    assert not (tmp_path / "runs").exists()
