"""The published boards: the project README's headline table is the rendering of the committed records
(`bench report --format md`), and each board folder holds what it promises and loads as records."""

import re
from pathlib import Path

import pytest

from bench.results import Status, read_records
from helpers.cli import bench

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "reports" / "published"
BOARDS = ("board-scifact-rerank", "board-scifact-dense")
BLOCK = re.compile(
    r"<!-- headline (?P<board>[\w.-]+): (?P<command>[^>]*?) -->\n(?P<table>.*?)<!-- end headline -->", re.S
)


def test_the_readmes_headline_table_is_the_rendering_of_the_committed_records(tmp_path):
    blocks = list(BLOCK.finditer((ROOT / "README.md").read_text()))
    assert [b["board"] for b in blocks] == ["board-scifact-rerank"]
    block = blocks[0]
    records = PUBLISHED / block["board"] / "results.jsonl"
    assert f"--include {records.relative_to(ROOT)}" in block["command"] and "--format md" in block["command"]
    made = bench(
        "report", "--suite", block["board"], "--runs", tmp_path / "none", "--include", records, "--format", "md"
    )
    assert made.returncode == 0, made.stderr[-2000:]
    assert block["table"] == made.stdout


@pytest.mark.parametrize("board", BOARDS)
def test_a_published_board_has_its_files_and_records_of_its_suite(board):
    folder = PUBLISHED / board
    for name in ("README.md", "index.html", "leaderboard.csv", "leaderboard.md", "leaderboard.tex", "results.jsonl"):
        assert (folder / name).is_file(), name
    cells = read_records(folder / "results.jsonl")
    assert cells and {c.result.suite for c in cells} == {board}
    assert all(c.status in (Status.DONE, Status.FAILED, Status.DIVERGED, Status.NOT_APPLICABLE) for c in cells)
    assert not list(folder.rglob("*.safetensors")) and not list(folder.rglob("*.trec"))  # records, no tensors
    readme = (folder / "README.md").read_text()
    assert f"bench verify reports/published/{board}" in readme and "## The IAA paper's claims" in readme
