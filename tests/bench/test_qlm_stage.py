"""The query-likelihood stage: prompt layout against a plain causal-LM forward, the hinge loss, the
training batches, the official TREC DL split and run, the grid, and the real SmolLM2 ranking a
relevant passage first."""

import pytest
import torch

import methods
from bench.errors import BenchError
from bench.stages.qlm import QueryLikelihood, hinge_loss, likelihood_batches, split_template, token_rows
from conftest import SHARED_DATA, needs_smollm2


@pytest.fixture(scope="module")
def tiny():
    from bench.models import load_causal_lm

    tokenizer, lm = load_causal_lm("tiny-llama", seed=0)
    return tokenizer, lm.eval()


def reference_scores(lm, tokenizer, model, queries, passages, prefix_vectors=None):
    """Mean log p(query tokens) from the LM's own forward on the unpadded prompt, one pair at a time."""
    scores = []
    for q_ids, p_ids in zip(model.tokenize_queries(queries), model.tokenize_passages(passages)):
        ids = model.pieces["head"] + p_ids + model.pieces["middle"] + model.pieces["question"] + q_ids
        embeds = lm.get_input_embeddings()(torch.tensor([ids]))
        if prefix_vectors is not None:
            embeds = torch.cat([prefix_vectors.unsqueeze(0), embeds], 1)
        logp = lm(inputs_embeds=embeds).logits.log_softmax(-1)[0]
        start = embeds.shape[1] - len(q_ids)
        scores.append(torch.stack([logp[start - 1 + j, t] for j, t in enumerate(q_ids)]).mean().item())
    return torch.tensor(scores)


QUERIES = ["what causes rain", "symptoms of influenza and a much longer query with many words", "bread"]
PASSAGES = [
    "rain forms when water vapour condenses",
    "fever cough and aches are common influenza symptoms that last a week or more in most adults",
    "flour",
]


def test_scores_equal_the_lms_own_forward_whatever_the_padding(tiny):
    tokenizer, lm = tiny
    model = QueryLikelihood(lm, tokenizer)
    with torch.no_grad():
        batched = model(**model.encode(model.tokenize_queries(QUERIES), model.tokenize_passages(PASSAGES)))
        expected = reference_scores(lm, tokenizer, model, QUERIES, PASSAGES)
    assert torch.allclose(batched, expected, atol=1e-4)


def test_soft_prompt_goes_first_and_passages_are_cut_from_their_end(tiny):
    import copy

    tokenizer, lm = tiny
    lm = copy.deepcopy(lm)
    model = QueryLikelihood(lm, tokenizer, passage_max_length=4)
    methods.apply(model, "soft-prompt", tokens=3)
    assert all(len(ids) <= 4 for ids in model.tokenize_passages(PASSAGES))
    with torch.no_grad():
        got = model(**model.encode(model.tokenize_queries(QUERIES), model.tokenize_passages(PASSAGES)))
        expected = reference_scores(lm, tokenizer, model, QUERIES, PASSAGES, methods.soft_prompt(lm).vectors)
    assert torch.allclose(got, expected, atol=1e-4)


def test_template_must_hold_passage_hint_query_in_order():
    assert split_template("P: {passage}\n{hint}Q:{query}") == ("P: ", "\n", "Q:")
    for bad in (
        "{hint}{passage}Q:{query}",
        "P: {passage} Q:{query}",
        "{passage}{hint}{query}",
        "{passage}{hint}Q:{query} end",
    ):
        with pytest.raises(BenchError):
            split_template(bad)


class FixedScores(torch.nn.Module):
    def __init__(self, scores):
        super().__init__()
        self.scores = torch.tensor(scores)

    def forward(self, **batch):
        return self.scores


def test_hinge_loss_by_hand():
    # pairs: 0 = q0's positive, 1 and 2 its negatives; 3 = q1's positive, 4 its negative (log-probs)
    batch = {"positive_index": torch.tensor([0, 3]), "negative_pairs": torch.tensor([[0, 1], [0, 2], [1, 4]])}
    model = FixedScores([-1.0, -1.5, -3.0, -2.0, -1.0])
    # nll: 1, 1.5, 3, 2, 1; hinge(margin 1): max(0, 1-1.5+1)=0.5, max(0, 1-3+1)=0, max(0, 2-1+1)=2
    value = hinge_loss(1.0)(model, dict(batch))
    assert value.item() == pytest.approx((0.5 + 0 + 2) / 3 + (1 + 2) / 2)


def test_training_batches_use_first_stage_and_in_batch_negatives(tiny, tmp_path):
    from bench.data import load_beir_folder
    from bench.sampling import EpochGroups
    from helpers.data import write_beir

    tokenizer, lm = tiny
    folder = write_beir(tmp_path)
    train = load_beir_folder(folder, "train")
    train.qrels["q2"]["d1"] = 1  # d1, q1's positive, is also relevant to q2: never q2's negative
    candidates = {q: {d: 1.0 for d in train.corpus} for q in train.queries}
    groups = EpochGroups(train, candidates, group_size=2, seed=0)
    model = QueryLikelihood(lm, tokenizer)
    batch = likelihood_batches(groups, train, model, batch_queries=4)(0)
    chosen = groups.batch(0, 4)
    positives = {q: pos for q, pos, _ in chosen}
    assert len(batch["positive_index"]) == 4
    expected_negatives = sum(
        1 + sum(1 for p_q, p in positives.items() if p_q != q and train.qrels[q].get(p, 0) <= 0) for q in positives
    )
    assert len(batch["negative_pairs"]) == expected_negatives
    assert batch["query_ids"].shape[0] == 4 + expected_negatives


def test_hint_rows_cover_what_each_variant_can_train(tiny, tmp_path):
    from bench.data import load_beir_folder
    from helpers.data import write_beir

    tokenizer, lm = tiny
    train = load_beir_folder(write_beir(tmp_path), "train")
    model = QueryLikelihood(lm, tokenizer)
    candidates = {"q1": {"d2": 1.0}}
    query_rows = {t for ids in model.tokenize_queries([train.queries["q1"]]) for t in ids}
    rows = {
        name: set(token_rows(model, methods.get_method(name).token_sources, train, candidates, ["q1"]))
        for name in ("qpeft-a", "qpeft-r")
    }
    wrappers = set(model.pieces["hint_prefix"]) | set(model.pieces["hint_suffix"])
    assert rows["qpeft-a"] == query_rows | wrappers  # attention: the query's rows are its queries
    passages = {t for ids in model.tokenize_passages([train.corpus["d1"], train.corpus["d2"]]) for t in ids}
    template = set(model.pieces["head"]) | set(model.pieces["middle"])  # read with the passage (the original)
    # retrieval: only rows that can receive a gradient, the hint's (passage and template tokens) and the wrapper's
    assert rows["qpeft-r"] == (wrappers | passages | template) - set(model.special_ids)


def test_official_split_reads_the_full_nist_qrels_and_run():
    from bench.data import load_collection
    from bench.evaluate import evaluate_run
    from bench.firststage import candidates

    folder = SHARED_DATA / "trec-dl-2019"
    if not (folder / "official").is_dir():
        pytest.skip("needs ../shared/data/trec-dl-2019/official")
    official = load_collection(str(folder / "official"))
    subset = load_collection(str(folder / "test"))
    assert len(official.queries) == 43 and official.relevance_level == 2
    assert sum(map(len, official.qrels.values())) > sum(map(len, subset.qrels.values()))
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        run = candidates(official, "official-run", 100, cache)
    assert all(len(docs) == 100 for docs in run.values())
    metrics, _ = evaluate_run(official.qrels, run, ("ndcg@10",), official.relevance_level)
    assert metrics["ndcg@10"] == pytest.approx(0.5058, abs=5e-4)  # Anserini's BM25 regression figure


def test_qlm_grid_takes_the_lm_methods_only():
    from bench.cells import expand
    from bench.config import parse_suite

    raw = {
        "name": "g",
        "stage": ["rerank", "qlm"],
        "methods": "all",
        "budgets": [0.5],
        "seeds": [1],
        "datasets": [{"train": "a/train", "eval": ["a/test"]}],
        "qlm": {"model": "smollm2"},
    }
    cells = expand(parse_suite(raw, "g"))
    by_stage = {stage: sorted({c.method for c in cells if c.stage == stage}) for stage in ("rerank", "qlm")}
    assert by_stage["qlm"] == ["bm25", "full", "lora", "qpeft-a", "qpeft-r", "soft-prompt", "zero-shot"]
    assert "soft-prompt" not in by_stage["rerank"] and "zero-shot" not in by_stage["rerank"]
    assert "adapter" in by_stage["rerank"]
    qlm = next(c for c in cells if c.stage == "qlm" and c.method == "qpeft-r")
    assert qlm.model == "smollm2" and "{hint}" in qlm.extra["prompt"]["template"] and qlm.budget == "native"
    assert next(c for c in cells if c.stage == "rerank" and c.method == "lora").model == "minilm"
    with pytest.raises(BenchError, match="add --stage qlm"):
        expand(parse_suite({**raw, "stage": "rerank", "methods": ["zero-shot"]}, "g"))


@needs_smollm2
def test_smollm2_ranks_a_relevant_passage_above_an_irrelevant_one():
    from bench.models import load_causal_lm

    tokenizer, lm = load_causal_lm("smollm2")
    model = QueryLikelihood(lm, tokenizer)
    query = ["what is the boiling point of water at sea level"] * 2
    passages = [
        "At sea level, water boils at 100 degrees Celsius (212 degrees Fahrenheit); the boiling point "
        "drops at higher altitudes because the air pressure is lower.",
        "The Treaty of Westphalia, signed in 1648, ended the Thirty Years' War and reshaped the map of central Europe.",
    ]
    with torch.no_grad():
        relevant, irrelevant = model(**model.encode(model.tokenize_queries(query), model.tokenize_passages(passages)))
    assert relevant > irrelevant + 0.5


def test_qpeft_scores_bos_and_eos_around_the_query_as_its_authors_unless_told_not_to(tiny):
    """Q-PEFT's loss reads BOS, the query and EOS (the authors' code); ``score_special_tokens=0`` scores
    the query tokens alone, as UPR and the other methods here do. Reference: the LM's own forward on one
    unpadded pair, the hint made by the method for that pair."""
    import copy

    tokenizer, lm = tiny
    model = QueryLikelihood(copy.deepcopy(lm), tokenizer)
    methods.apply(model, "qpeft-r", token_ids=list(range(3, 120)), k=2)
    hint = methods.prompt_parts(model.lm)["hint"]
    assert hint.score_special_tokens
    q_ids, p_ids = model.tokenize_queries(QUERIES[:1])[0], model.tokenize_passages(PASSAGES[:1])[0]
    with torch.no_grad():
        batch = model.encode([q_ids], [p_ids])
        ours = model(**batch)
        inputs = methods.PromptInputs(
            batch["query_ids"],
            batch["query_mask"],
            batch["passage_ids"],
            batch["passage_mask"],
            model.pieces["hint_prefix"],
            model.pieces["hint_suffix"],
            model.special_ids,
            model.pieces["head"],
            model.pieces["middle"],
        )
        vectors, _ = hint(inputs)
        embed = model.lm.get_input_embeddings()
        scored = [tokenizer.bos_token_id] + q_ids + [tokenizer.eos_token_id]
        before = model.pieces["head"] + p_ids + model.pieces["middle"]
        sequence = torch.cat(
            [embed(torch.tensor([before])), vectors, embed(torch.tensor([model.pieces["question"] + scored]))], 1
        )
        logp = model.lm(inputs_embeds=sequence).logits.log_softmax(-1)[0]
        start = sequence.shape[1] - len(scored)
        expected = torch.stack([logp[start - 1 + j, t] for j, t in enumerate(scored)]).mean()
        assert torch.allclose(ours, expected.unsqueeze(0), atol=1e-4)
        hint.score_special_tokens = False
        assert not torch.allclose(model(**batch), ours, atol=1e-4)
