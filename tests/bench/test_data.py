import os
import subprocess
import sys
import zipfile

import pytest

from bench.data import load_collection
from bench.errors import BenchError
from conftest import SHARED_DATA, shared_data_available
from helpers.data import write_beir

needs_shared = pytest.mark.skipif(not shared_data_available(), reason="needs ../shared/data")


def test_beir_folder_by_path(tmp_path):
    folder = write_beir(tmp_path)
    coll = load_collection(f"{folder}/test")
    assert set(coll.queries) == {"q5", "q6"} and coll.qrels["q6"] == {"d4": 2}
    assert coll.corpus["d1"].startswith("Rain rain forms")


def test_beir_folder_by_name_under_data_path(tmp_path, monkeypatch):
    write_beir(tmp_path, "mine")
    monkeypatch.setenv("BENCH_DATA_PATH", str(tmp_path))
    assert len(load_collection("mine/train").queries) == 4
    with pytest.raises(BenchError, match="no split 'dev': available test, train"):
        load_collection("mine/dev")
    with pytest.raises(BenchError, match="needs a split"):
        load_collection("mine")


@needs_shared
def test_shared_scifact_and_trec_dl_relevance_level(monkeypatch):
    monkeypatch.setenv("BENCH_DATA_PATH", str(SHARED_DATA))
    scifact = load_collection("scifact/test")
    assert len(scifact.queries) == 300 and len(scifact.corpus) == 5183 and scifact.relevance_level == 1
    assert load_collection("trec-dl-2019/test").relevance_level == 2


@pytest.mark.parametrize(
    "target,content,message",
    [
        ("corpus.jsonl", '{"_id": "d1", "text": "ok"}\n{not json\n', r"corpus.jsonl:2: malformed JSON"),
        ("corpus.jsonl", '{"_id": "d1"}\n', r"corpus.jsonl:1: missing field 'text'"),
        ("queries.jsonl", '{"text": "no id"}\n', r"queries.jsonl:1: missing field '_id'"),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq5\td2\n", r"test.tsv:2: expected 'query-id corpus-id score'"),
        (
            "qrels/test.tsv",
            "query-id\tcorpus-id\tscore\nq5\td2\thigh\n",
            r"test.tsv:2: relevance grade 'high' is not an integer",
        ),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nqX\td2\t1\n", r"no judged query of .*queries.jsonl"),
        ("qrels/test.tsv", "query-id\tcorpus-id\tscore\n", r"no judged query of .* \(empty query set\)"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, target, content, message):
    folder = write_beir(tmp_path)
    (folder / target).write_text(content)
    with pytest.raises(BenchError, match=message):
        load_collection(f"{folder}/test")


def _irds(code: str, home, timeout=120):
    env = {**os.environ, "IR_DATASETS_HOME": str(home)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)


@needs_shared
def test_ir_datasets_id_on_local_files(tmp_path):
    """beir/scifact/test through ir_datasets, its source placed locally instead of downloaded."""
    source = tmp_path / "beir" / "scifact" / "source.zip"
    source.parent.mkdir(parents=True)
    with zipfile.ZipFile(source, "w") as z:
        for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "qrels/train.tsv"):
            z.write(SHARED_DATA / "scifact" / name, f"scifact/{name}")
    done = _irds(
        "from bench.data import load_collection as l; c = l('beir/scifact/test');"
        "print(len(c.queries), len(c.corpus), c.source)",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["300", "5183", "ir_datasets:beir/scifact/test"]


def test_dataset_that_needs_a_download_fails_fast_in_one_line(tmp_path):
    code = (
        "import sys; from bench.cli import main; "
        "sys.exit(main(['run', '--suite', 'smoke', '--methods', 'bm25', '--datasets', "
        f"'beir/nfcorpus/train+beir/nfcorpus/test', '--out', '{tmp_path / 'runs'}']))"
    )
    done = _irds(code, tmp_path / "irds")
    assert done.returncode == 2
    error_lines = [l for l in done.stderr.splitlines() if l.startswith("bench: error:")]
    assert len(error_lines) == 1 and "offline" in error_lines[0] and "Traceback" not in done.stderr
    assert not list((tmp_path / "runs").rglob("result.json"))


def test_unknown_dataset_is_one_clear_error():
    with pytest.raises(BenchError, match="unknown dataset 'nosuch/thing'"):
        load_collection("nosuch/thing")
