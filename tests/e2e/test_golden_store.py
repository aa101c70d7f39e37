"""A run store written by the code before cell ids version 2 (tests/golden/store_v1, the toy grid of
tests/golden/golden.yaml: 37 cells over the rerank, dense and qlm stages) resumes, reports, and migrates to
today's folder names.

What resumes is every cell whose experiment is today's: the cells of systems that have not changed since,
run with the settings they had (the rerank head on the first token, dense training without the
false-negative mask: `OLD_BEHAVIOUR`). Cells of methods whose training changed since (Method.revision 2:
full, prefix, soft-prompt, qpeft-r) and, under today's defaults, every trained rerank and dense cell are
new experiments: pending, never taken from the old store."""

import json
import shutil

import pytest

from conftest import GOLDEN
from helpers.cli import bench
from helpers.data import write_beir


@pytest.fixture
def old_store(tmp_path):
    write_beir(tmp_path / "data", "toy")
    shutil.copytree(GOLDEN / "store_v1", tmp_path / "runs")
    return tmp_path / "runs"


OLD_BEHAVIOUR = """extends: golden.yaml
name: golden
train: {head: cls}
dense: {train: {mask_false_negatives: false}}
"""
UNCHANGED = "bm25,none,zero-shot,bitfit,lora,adapter,iaa-l"
REVISED = {"full": 6, "prefix": 4, "soft-prompt": 2, "qpeft-r": 2}  # cells per method in the toy grid


@pytest.fixture
def old_behaviour(tmp_path):
    shutil.copy(GOLDEN / "golden.yaml", tmp_path / "golden.yaml")
    (tmp_path / "old.yaml").write_text(OLD_BEHAVIOUR)
    return tmp_path / "old.yaml"


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_old_store_resumes_with_zero_cells_recomputed(old_store, old_behaviour, tmp_path):
    before = snapshot(old_store)
    done = bench(
        "run", "--suite", old_behaviour, "--methods", UNCHANGED, "--out", old_store, env_path=tmp_path / "data"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("skip ") + done.stderr.count("skip ") == 23
    assert "cells: 21 done, 2 not_applicable, 0 failed, 0 diverged, 0 running, 0 pending" in done.stdout
    after = snapshot(old_store)
    assert set(after) - set(before) <= {p for p in after if p.parts[0] == "_cache"}  # nothing new beside caches
    assert all(after[p] == content for p, content in before.items())  # nothing rewritten


def test_changed_experiments_are_pending_not_taken_from_the_old_store(old_store, old_behaviour, tmp_path):
    status = bench("status", "--suite", old_behaviour, "--out", old_store, env_path=tmp_path / "data")
    assert (
        f"21 done, 2 not_applicable, 0 failed, 0 diverged, 0 running, {sum(REVISED.values())} pending" in status.stdout
    )
    today = bench("status", "--suite", GOLDEN / "golden.yaml", "--out", old_store, env_path=tmp_path / "data")
    # today's defaults: every trained rerank and dense cell is a new experiment (pooler head, masked negatives)
    assert "5 done, 2 not_applicable, 0 failed, 0 diverged, 0 running, 30 pending" in today.stdout


def test_old_store_reports_and_migrates(old_store, old_behaviour, tmp_path):
    report = bench(
        "report",
        "--suite",
        GOLDEN / "golden.yaml",
        "--runs",
        old_store,
        "--out",
        tmp_path / "reports",
        env_path=tmp_path / "data",
    )
    assert report.returncode == 0, report.stderr[-3000:]
    board = (tmp_path / "reports" / "golden" / "leaderboard.md").read_text()
    assert "### qlm · toy/test" in board and "| qpeft-r |" in board
    moved = bench("store", "migrate", "--suite", GOLDEN / "golden.yaml", "--out", old_store, env_path=tmp_path / "data")
    assert moved.returncode == 0, moved.stderr[-3000:]
    assert "37 folder(s) renamed" in moved.stdout
    status = bench("status", "--suite", GOLDEN / "golden.yaml", "--out", old_store, env_path=tmp_path / "data")
    assert "5 done, 2 not_applicable" in status.stdout  # the same cells found, under their new names
    from bench.cells import Cell

    for config in (old_store / "golden").glob("*/config.json"):
        assert config.parent.name == Cell.from_v1(json.loads(config.read_text())).id
