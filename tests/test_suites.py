import argparse

import pytest

import methods
from conftest import encoder_methods
from bench.errors import BenchError
from bench.suites import apply_overrides, expand, list_suites, load_suite


def test_shipped_suites_load_and_expand():
    assert {"smoke", "scifact", "nfcorpus", "paper-rerank", "smoke-dense", "scifact-dense", "nfcorpus-dense",
            "paper-dense"} <= set(list_suites())
    for name in list_suites():
        assert expand(load_suite(name))


def test_smoke_runs_every_method_once_plus_bm25():
    cells = expand(load_suite("smoke"))
    assert sorted(c["method"] for c in cells) == sorted(encoder_methods() + ["bm25"])
    fixed = {c["method"]: c["budget"] for c in cells if c["method"] in ("full", "bitfit", "bm25")}
    assert fixed == {"full": "native", "bitfit": "native", "bm25": "native"}


def test_grid_is_methods_by_budgets_by_seeds_with_stable_distinct_ids():
    args = argparse.Namespace(methods="lora,iaa-l,full", budgets="0.5,6.7", seeds="1,2,3", datasets=None,
                              first_stage=None, model=None, max_steps=None)
    cells = expand(apply_overrides(load_suite("scifact"), args))
    assert len(cells) == 1 + 2 * 2 * 3 + 3  # bm25 + (lora, iaa-l) x budgets x seeds + full x seeds
    ids = [c["cell_id"] for c in cells]
    assert len(set(ids)) == len(ids)
    assert ids == [c["cell_id"] for c in expand(apply_overrides(load_suite("scifact"), args))]


def test_dataset_override_forms():
    args = argparse.Namespace(methods="bm25", budgets=None, seeds=None, first_stage=None, model=None, max_steps=None,
                              datasets="nfcorpus,scifact/train+trec-dl-2019/test+trec-dl-2020/test")
    cells = expand(apply_overrides(load_suite("smoke"), args))
    assert [c["datasets"] for c in cells] == [
        {"train": "nfcorpus/train", "eval": ["nfcorpus/test"]},
        {"train": "scifact/train", "eval": ["trec-dl-2019/test", "trec-dl-2020/test"]}]


def test_malformed_suite_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(BenchError, match="malformed YAML"):
        load_suite(str(path))
    path.write_text("name: x\n")
    with pytest.raises(BenchError, match="needs at least 'datasets'"):
        load_suite(str(path))


def test_stage_is_a_grid_dimension_with_its_own_settings():
    args = argparse.Namespace(methods="all", budgets="0.5", seeds="13", stage="rerank,dense")
    cells = expand(apply_overrides(load_suite("scifact"), args))
    rerank = [c for c in cells if c["stage"] == "rerank"]
    dense = [c for c in cells if c["stage"] == "dense"]
    assert sorted(c["method"] for c in rerank) == sorted(encoder_methods() + ["bm25"])
    assert sorted(c["method"] for c in dense) == sorted(encoder_methods() + ["bm25", "none"])
    lora = next(c for c in dense if c["method"] == "lora")
    assert lora["eval"]["depth"] == 1000 and lora["train"]["max_length"] == 256  # the dense: section
    assert lora["encoder"] == {"pooling": "mean", "similarity": "cos", "separate_towers": False}
    assert next(c for c in rerank if c["method"] == "lora")["eval"]["depth"] == 100
    assert "encoder" not in rerank[1]
    assert len({c["cell_id"] for c in cells}) == len(cells)


def test_variant_suite_extends_its_base():
    base, variant = load_suite("scifact"), load_suite("scifact-dense")
    assert variant["name"] == "scifact-dense" and variant["stage"] == "dense"
    assert variant["datasets"] == base["datasets"] and variant["seeds"] == base["seeds"]


def test_zero_shot_needs_the_dense_stage_and_unknown_stage_is_refused():
    with pytest.raises(BenchError, match="zero-shot cell; add --stage dense"):
        expand(apply_overrides(load_suite("smoke"), argparse.Namespace(methods="none")))
    with pytest.raises(BenchError, match="unknown stage 'sparse'"):
        expand(apply_overrides(load_suite("smoke"), argparse.Namespace(stage="sparse")))
    two_towers = apply_overrides(load_suite("smoke-dense"), argparse.Namespace(separate_towers=True))
    assert all(c["encoder"]["separate_towers"] for c in expand(two_towers) if c["method"] != "bm25")
