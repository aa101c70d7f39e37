"""A run store written by the code before cell ids version 2 (tests/golden/store_v1, the toy grid of
tests/golden/golden.yaml: 37 cells over the rerank, dense and qlm stages) resumes with nothing
recomputed, reports, and migrates to today's folder names."""

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


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_old_store_resumes_with_zero_cells_recomputed(old_store, tmp_path):
    before = snapshot(old_store)
    done = bench("run", "--suite", GOLDEN / "golden.yaml", "--out", old_store, env_path=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("skip ") + done.stderr.count("skip ") == 37
    assert "cells: 35 done, 2 not_applicable, 0 failed, 0 diverged, 0 running, 0 pending" in done.stdout
    after = snapshot(old_store)
    assert set(after) - set(before) <= {p for p in after if p.parts[0] == "_cache"}  # nothing new beside caches
    assert all(after[p] == content for p, content in before.items())  # nothing rewritten
    status = bench("status", "--suite", GOLDEN / "golden.yaml", "--out", old_store, env_path=tmp_path / "data")
    assert "35 done, 2 not_applicable" in status.stdout


def test_old_store_reports_and_migrates(old_store, tmp_path):
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
    again = bench("run", "--suite", GOLDEN / "golden.yaml", "--out", old_store, env_path=tmp_path / "data")
    assert again.returncode == 0 and again.stdout.count("skip ") + again.stderr.count("skip ") == 37
    from bench.cells import Cell

    for config in (old_store / "golden").glob("*/config.json"):
        assert config.parent.name == Cell.from_v1(json.loads(config.read_text())).id
