"""Suites: typed validation, deep extends, the grid's cells, one resolver for every command."""

import argparse

import pytest

from bench.cells import expand
from bench.config import list_suites, load_suite, resolve
from bench.errors import BenchError
from helpers.models import encoder_methods


def grid(**flags):
    args = argparse.Namespace(**{"suite": None, **flags})
    suite, over = resolve(args)
    return expand(suite, over)


def test_shipped_suites_load_and_expand():
    assert {
        "smoke",
        "scifact",
        "nfcorpus",
        "paper-rerank",
        "smoke-dense",
        "scifact-dense",
        "nfcorpus-dense",
        "paper-dense",
        "smoke-qlm",
        "scifact-qlm",
        "trec-dl-qlm",
    } <= set(list_suites())
    for name in list_suites():
        assert expand(load_suite(name))


def test_smoke_runs_every_method_once_plus_bm25():
    cells = expand(load_suite("smoke"))
    assert sorted(c.method for c in cells) == sorted(encoder_methods() + ["bm25"])
    fixed = {c.method: c.budget for c in cells if c.method in ("full", "bitfit", "bm25")}
    assert fixed == {"full": "native", "bitfit": "native", "bm25": "native"}


def test_grid_is_methods_by_budgets_by_seeds_with_stable_distinct_ids():
    flags = dict(suite="scifact", methods="lora,iaa-l,full", budgets="0.5,6.7", seeds="1,2,3")
    cells = grid(**flags)
    assert len(cells) == 1 + 2 * 2 * 3 + 3  # bm25 + (lora, iaa-l) x budgets x seeds + full x seeds
    ids = [c.id for c in cells]
    assert len(set(ids)) == len(ids)
    assert ids == [c.id for c in grid(**flags)]


def test_dataset_override_forms():
    cells = grid(suite="smoke", methods="bm25", datasets="nfcorpus,scifact/train+trec-dl-2019/test+trec-dl-2020/test")
    assert [c.datasets for c in cells] == [
        {"train": "nfcorpus/train", "eval": ["nfcorpus/test"]},
        {"train": "scifact/train", "eval": ["trec-dl-2019/test", "trec-dl-2020/test"]},
    ]


def test_malformed_suite_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(BenchError, match="malformed YAML"):
        load_suite(str(path))
    path.write_text("name: x\n")
    with pytest.raises(BenchError, match="datasets: Field required"):
        load_suite(str(path))


def test_stage_is_a_grid_dimension_with_its_own_settings():
    cells = grid(suite="scifact", budgets="0.5", seeds="13", stage="rerank,dense")
    rerank = [c for c in cells if c.stage == "rerank"]
    dense = [c for c in cells if c.stage == "dense"]
    assert sorted(c.method for c in rerank) == sorted(encoder_methods() + ["bm25"])
    assert sorted(c.method for c in dense) == sorted(encoder_methods() + ["bm25", "none"])
    lora = next(c for c in dense if c.method == "lora")
    assert lora.eval["depth"] == 1000 and lora.train["max_length"] == 256  # the dense: section
    assert lora.extra == {"encoder": {"pooling": "mean", "similarity": "cos", "separate_towers": False}}
    assert next(c for c in rerank if c.method == "lora").eval["depth"] == 100
    assert rerank[1].extra == {}
    assert len({c.id for c in cells}) == len(cells)


def test_variant_suite_extends_its_base_deeply(tmp_path):
    base, variant = load_suite("scifact"), load_suite("scifact-dense")
    assert variant.name == "scifact-dense" and variant.top.stage == ["dense"]
    assert variant.top.datasets == base.top.datasets and variant.top.seeds == base.top.seeds
    (tmp_path / "v.yaml").write_text("extends: scifact\nname: v\ntrain: {epochs: 1}\ndense: {train: {epochs: 3}}\n")
    suite = load_suite(str(tmp_path / "v.yaml"))
    assert suite.top.train["epochs"] == 1 and suite.top.train["batch_queries"] == 4  # nested keys merged
    assert suite.sections["dense"]["train"]["epochs"] == 3 and suite.sections["dense"]["train"]["batch_queries"] == 16


def test_untrained_system_needs_its_stage_and_unknown_stage_is_refused():
    with pytest.raises(BenchError, match="add --stage dense"):
        grid(suite="smoke", methods="none")
    with pytest.raises(BenchError, match="add --stage qlm"):
        grid(suite="smoke", methods="soft-prompt")
    with pytest.raises(BenchError, match="unknown stage 'sparse'"):
        grid(suite="smoke", stage="sparse")
    two_towers = grid(suite="smoke-dense", separate_towers=True)
    assert all(c.extra["encoder"]["separate_towers"] for c in two_towers if c.method != "bm25")


def test_command_line_flags_win_over_stage_sections():
    cells = grid(
        suite="scifact",
        stage="dense",
        methods="lora",
        budgets="0.5",
        seeds="1",
        epochs=1,
        max_queries=7,
        batch_size=3,
        depth=50,
        metrics="ndcg@10,recall@50",
    )
    lora = next(c for c in cells if c.method == "lora")
    assert lora.train["epochs"] == 1  # the dense section says 2
    assert (lora.eval["max_queries"], lora.eval["batch_size"], lora.eval["depth"]) == (7, 3, 50)
    assert lora.eval["metrics"] == ["ndcg@10", "recall@50"]


def test_device_profiles_size_the_grid_for_its_device(tmp_path):
    gpu, cpu = expand(load_suite("scifact", "cuda")), expand(load_suite("scifact", "cpu"))
    assert {c.eval["batch_size"] for c in gpu} == {512} and {c.eval["batch_size"] for c in cpu} == {64}
    packing = ("token_budget", "pad_to_multiple_of")  # how a step goes through the encoder, not what it holds

    def steps(cells):
        return [{k: v for k, v in (c.train or {}).items() if k not in packing} for c in cells]

    assert steps(gpu) == steps(cpu)  # training as validated on CPU
    trained = [c for c in gpu if c.train]
    assert trained and {(c.train["token_budget"], c.train["pad_to_multiple_of"]) for c in trained} == {(8192, 8)}
    assert {(c.train or {}).get("token_budget") for c in cpu} == {None}
    dense = [c for c in expand(load_suite("scifact-dense", "cuda")) if c.train]
    assert {c.train["token_budget"] for c in dense} == {16384}
    assert grid(suite="scifact", device="cuda", methods="lora", budgets="0.5", seeds="1")[1].eval["batch_size"] == 512
    (tmp_path / "bad.yaml").write_text("extends: smoke\nname: bad\nprofiles: {tpu: {eval: {depth: 5}}}\n")
    with pytest.raises(BenchError, match="profiles maps a device"):
        load_suite(str(tmp_path / "bad.yaml"))


def test_a_first_stage_override_names_an_eval_dataset_of_the_suite(tmp_path):
    import yaml

    from bench.config import load_suite
    from bench.errors import BenchError

    suite = {
        "name": "s",
        "stage": "qlm",
        "datasets": [{"train": "scifact/train", "eval": ["scifact/test", "trec-dl-2019/official"]}],
        "first_stage": {"backend": "bm25s", "by_dataset": {"trec-dl-2020/official": {"backend": "official-run"}}},
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(suite))
    with pytest.raises(BenchError, match=r"first_stage.by_dataset.trec-dl-2020/official: not an eval dataset"):
        load_suite(str(path))
    suite["first_stage"]["by_dataset"] = {"trec-dl-2019/official": {"backend": "official-run", "dept": 100}}
    path.write_text(yaml.safe_dump(suite))
    from bench.cells import expand

    with pytest.raises(BenchError, match="dept"):
        expand(load_suite(str(path)))


def test_seeds_flag_keeps_the_search_seeds_among_them():
    """--seeds 13 on a suite searching on seeds 13, 42 and 87: the search runs on seed 13 alone (no error
    about seeds outside the grid); seeds with none of the search seeds: the default, the first seed."""
    import argparse

    from bench.config import resolve

    def search_seeds(seeds):
        args = argparse.Namespace(suite="board-scifact-qlm", seeds=seeds, device="cpu")
        return resolve(args)[0].top.search_seeds

    assert search_seeds("13") == [13] and search_seeds("42,87") == [42, 87] and search_seeds("5") is None
