"""Exact counts on BERT-base and the budget solver (no weights: meta-device injection)."""

import pytest
import torch
from transformers import AutoModel, BertConfig, DistilBertConfig

import methods
from helpers.models import encoder_methods

PAPER_COUNTS = {
    ("bitfit", ()): 102_912,
    ("adapter", (("r", 16),)): 608_640,
    ("adapter-pfeiffer", (("r", 32),)): 599_424,
    ("lora", (("r", 16),)): 589_824,
    ("prefix", (("l", 32),)): 589_824,
    ("mam", (("l", 16), ("r", 16))): 599_232,
    ("iaa-s", (("ar", 8), ("r", 8))): 627_072,
    ("iaa-l", (("ar", 12), ("r", 12))): 691_632,
    ("iaa-m", (("ar", 24), ("r", 15))): 609_408,
    ("iaa-l", (("ar", 300), ("r", 50))): 7_405_248,
    ("iaa-m", (("ar", 960), ("r", 185))): 8_319_000,
    ("adapter", (("r", 200),)): 7_396_032,
}


def _bert_base_on_meta():
    with torch.device("meta"):
        return AutoModel.from_config(BertConfig())


@pytest.mark.parametrize("key,expected", list(PAPER_COUNTS.items()), ids=lambda v: str(v))
def test_counts_from_injected_model_equal_methods_md(key, expected):
    name, knobs = key
    model = _bert_base_on_meta()
    record = methods.apply(model, name, **dict(knobs))
    counted = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert record.trainable == counted == expected
    assert record.backbone == 109_482_240


def test_full_trains_everything():
    record = methods.apply(_bert_base_on_meta(), "full")
    assert record.trainable == record.backbone == 109_482_240 and record.pct == 100.0


@pytest.mark.parametrize("budget", [0.5, 6.7])
@pytest.mark.parametrize("name", [n for n in encoder_methods() if n not in ("full", "bitfit")])
def test_solver_lands_within_ten_percent_of_the_budget(name, budget):
    plan = methods.plan(BertConfig(), name, budget)
    assert plan.applicable, plan.reason
    assert abs(plan.pct - budget) <= 0.1 * budget
    # the solver's count is the real count of a model built with those knobs
    assert methods.apply(_bert_base_on_meta(), name, **plan.knobs).trainable == plan.trainable


@pytest.mark.parametrize("name,budget", [("bitfit", 0.5), ("bitfit", 6.7), ("full", 0.5), ("full", 6.7)])
def test_unreachable_budget_is_not_applicable_never_substituted(name, budget):
    plan = methods.plan(BertConfig(), name, budget)
    assert not plan.applicable and "no knob" in plan.reason
    with pytest.raises(methods.BudgetUnreachable):
        methods.solve(BertConfig(), name, budget)
    with pytest.raises(methods.BudgetUnreachable):
        methods.apply(_bert_base_on_meta(), name, budget_pct=budget)


def test_bitfit_reaches_its_own_named_budget():
    assert methods.plan(BertConfig(), "bitfit", 0.1).applicable


def test_tiny_budget_beyond_smallest_knob_is_not_applicable():
    plan = methods.plan(BertConfig(), "iaa-s", 0.001)
    assert not plan.applicable and plan.knobs["r"] == 1


def test_paper_presets_keep_the_papers_knobs():
    plan = methods.plan(BertConfig(), "iaa-m", "paper:6.7")
    assert plan.knobs == {"r": 185, "ar": 960} and plan.trainable == 8_319_000


def test_apply_with_budget_uses_solved_knobs():
    record = methods.apply(_bert_base_on_meta(), "lora", budget_pct=0.5)
    assert abs(record.pct - 0.5) <= 0.1 and record.knobs["r"] == 15


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda m: methods.apply(m, "nope"), "unknown method 'nope'"),
        (lambda m: methods.apply(m, "lora", r=0), "out of range"),
        (lambda m: methods.apply(m, "adapter", r=2.5), "must be int"),
        (lambda m: methods.apply(m, "adapter", rank=4), "has no knob 'rank'"),
        (lambda m: methods.apply(m, "adapter"), "needs knob 'r'"),
        (lambda m: methods.apply(m, "lora", r=4, targets="q,zz"), "lora targets"),
        (lambda m: methods.apply(m, "adapter", budget_pct="lots"), "not a percentage"),
    ],
)
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(methods.MethodError, match=message):
        call(_bert_base_on_meta())


def test_unsupported_architecture_lists_supported_ones():
    with torch.device("meta"):
        model = AutoModel.from_config(DistilBertConfig())
    with pytest.raises(
        methods.MethodError, match="supported are bert, camembert, llama, mistral, mpnet, qwen2, roberta"
    ):
        methods.apply(model, "adapter", r=4)


def test_applying_twice_is_refused():
    model = _bert_base_on_meta()
    methods.apply(model, "adapter", r=4)
    with pytest.raises(methods.MethodError, match="already has method"):
        methods.apply(model, "lora", r=4)


def test_counting_leaves_the_random_generator_as_it_was():
    """Counting builds and injects a meta-device model, whose module initialisers draw from the CPU generator;
    a cell's weights must not depend on whether an earlier cell of the process had counted (cached) first."""
    import torch
    from transformers import BertConfig

    from methods.count import count

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    for name, knobs in (("lora", {"r": 3}), ("adapter", {"r": 3}), ("iaa-l", {"r": 3, "ar": 2}), ("prefix", {"l": 2})):
        torch.manual_seed(0)
        expected = torch.rand(3)
        torch.manual_seed(0)
        count(config, name, knobs)
        assert torch.equal(torch.rand(3), expected), name
