"""The published boards: the project README's headline table is the rendering of the committed records
(`bench report --format md`), and each board folder holds what it promises and loads as records."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.config import load_suite
from bench.results import Status, read_records
from bench.systems import role

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "reports" / "published"
BOARDS = ("board-scifact-rerank", "board-scifact-dense")
BLOCK = re.compile(
    r"<!-- headline (?P<board>[\w.-]+): (?P<command>[^>]*?) -->\n(?P<table>.*?)<!-- end headline -->", re.S
)


def test_the_readme_has_one_headline_table_per_board():
    assert [b["board"] for b in BLOCK.finditer((ROOT / "README.md").read_text())] == list(BOARDS)


@pytest.mark.parametrize("board", BOARDS)
def test_the_readmes_headline_table_is_the_rendering_of_the_committed_records(board):
    block = next(b for b in BLOCK.finditer((ROOT / "README.md").read_text()) if b["board"] == board)
    records = PUBLISHED / board / "results.jsonl"
    command = block["command"].split()
    assert command[:2] == ["bench", "report"] and command[-2:] == ["--format", "md"]
    assert f"--include {records.relative_to(ROOT)}" in block["command"] and "--runs /dev/null" in block["command"]
    made = subprocess.run(
        [sys.executable, "-m", "bench.cli", *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert made.returncode == 0, made.stderr[-2000:]
    assert block["table"] == made.stdout  # python scripts/update-readme-board.py re-renders it


@pytest.mark.parametrize("board", BOARDS)
def test_a_published_board_is_complete_with_every_seed_of_every_trained_method(board):
    suite = load_suite(board).top
    trained = [m for m in suite.methods if role(m).trains]
    final = [c for c in read_records(PUBLISHED / board / "results.jsonl") if c.result.phase == "final"]
    seeds = {m: {c.result.seed for c in final if c.result.method == m and c.status.scored} for m in trained}
    assert len(trained) == 10 and len(suite.seeds) == 3
    extra = suite.extra_seeds or {}  # full fine-tuning's 2 more seeds under protocol v2
    assert all(set(suite.seeds) <= seeds[m] <= set(suite.seeds) | set(extra.get(m, [])) for m in trained), seeds


@pytest.mark.parametrize("board", BOARDS)
def test_a_published_board_has_its_files_and_records_of_its_suite(board):
    folder = PUBLISHED / board
    for name in ("README.md", "index.html", "leaderboard.csv", "leaderboard.md", "leaderboard.tex", "results.jsonl"):
        assert (folder / name).is_file(), name
    cells = read_records(folder / "results.jsonl")
    assert cells and {c.result.suite for c in cells} == {board}
    assert all(
        c.status in (Status.DONE, Status.COLLAPSED, Status.FAILED, Status.DIVERGED, Status.NOT_APPLICABLE)
        for c in cells
    )
    assert not list(folder.rglob("*.safetensors")) and not list(folder.rglob("*.trec"))  # records, no tensors
    readme = (folder / "README.md").read_text()
    assert f"bench verify reports/published/{board}" in readme and "## The IAA paper's claims" in readme


def test_the_rerank_boards_seeds_that_never_trained_are_recorded_collapsed():
    """Issue 33: IAA-L and IAA-M seed 87 at lr 3e-3 stayed at ln 4 from the first step to the last: recorded
    collapsed (v1: finals at their selected lr; protocol v2, which selects another lr, keeps them as search
    cells), and the tables show trained / total seeds."""
    cells = read_records(PUBLISHED / "board-scifact-rerank" / "results.jsonl")
    lr = {c.result.cell_id: (c.result.config.get("train") or {}).get("lr") for c in cells}
    at_3e3 = {(c.result.method, c.result.seed): c.status for c in cells if lr[c.result.cell_id] == 3e-3}
    assert at_3e3[("iaa-l", 87)] is Status.COLLAPSED and at_3e3[("iaa-m", 87)] is Status.COLLAPSED
    readme = (PUBLISHED / "board-scifact-rerank" / "README.md").read_text()
    assert re.search(r"^\| iaa-l \| 0\.5 \| 0\.518 \| [0-3]/3 \| [0-3]/3 \|", readme, re.M)
    assert "| trained | collapsed |" in readme


@pytest.mark.parametrize("board", BOARDS)
def test_the_budget_curves_suite_keeps_the_published_cells_ids(board):
    """Issue 34 adds budgets and search_centre to the board suites: every published search cell at one of the
    suite's own lr values is still a search cell of the grid (its record resumes, nothing is recomputed), except
    those of a method whose revision was raised since (prefix and mam, revision 3): they are recomputed."""
    import methods
    from bench.search import plan

    grid = plan(load_suite(board))
    ids = {c.id for c in grid.first_phase()}
    published = [c for c in read_records(PUBLISHED / board / "results.jsonl") if c.result.phase == "search"]
    at_suite_values = [c for c in published if c.result.config["train"]["lr"] in _suite_lrs(grid, c)]
    revision = {m: methods.get_method(m).revision for m in {c.result.method for c in at_suite_values}}
    current = [c for c in at_suite_values if c.result.config["revision"] == revision[c.result.method]]
    raised = [c for c in at_suite_values if c.result.config["revision"] != revision[c.result.method]]
    assert len(current) >= 15 and all(c.result.cell_id in ids for c in current)
    assert {c.result.method for c in raised} <= {"prefix", "mam"} and not any(c.result.cell_id in ids for c in raised)
    assert {g.cells[0].budget for g in grid.groups if g.centre} >= {"0.1", "6.7"}


def _suite_lrs(grid, cell) -> set:
    key = (cell.result.method, cell.result.budget)
    group = next(g for g in grid.groups if (g.cells[0].method, g.cells[0].budget) == key)
    return {c["lr"] for c in group.configs}
