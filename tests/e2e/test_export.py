"""bench export: cells of a toy grid (tiny random models) exported and loaded by transformers,
sentence-transformers and methods.from_pretrained, scoring the pairs of the cell's saved TREC run as the
cell scored them (within 1e-5)."""

import json

import pytest
import torch

from helpers.cli import bench, one_error_line
from helpers.data import DOCS, QUERIES, write_toy_suite

pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    suite = write_toy_suite(
        root,
        "ex",
        stage=["rerank", "dense"],
        methods="full,lora,bitfit,adapter",
        budgets=[2.0, 2.3],  # lora reaches 2.0% on tiny-bert, adapters 2.3%
        train={
            "steps": 3,
            "batch_queries": 2,
            "group_size": 2,
            "max_length": 48,
            "query_max_length": 16,
            "lr": {"default": 5e-2, "full": 1e-3},
        },
        eval={"depth": 8, "batch_size": 4, "max_length": 48, "query_max_length": 16},
    )
    done = bench("run", "--suite", suite, "--out", root / "runs", env_path=root / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def cell(store, stage, method):
    for path in (store / "runs" / "ex").glob("*/result.json"):
        result = json.loads(path.read_text())
        if (result["stage"], result["method"], result["status"]) == (stage, method, "done"):
            return path.parent
    raise AssertionError((stage, method))


def saved_scores(cell_dir):
    """(query text, document text) -> score, from the cell's own TREC run."""
    texts = {d: f"{title} {text}" for d, (title, text) in DOCS.items()}
    scores = {}
    for line in (cell_dir / "run.toy__test.trec").read_text().splitlines():
        if line.startswith("#"):  # the ir_metadata header
            continue
        q, _, d, _, score, _ = line.split()
        scores[(QUERIES[q], texts[d])] = float(score)
    return scores


def saved_pairs(store, stage, method):
    """The cell's folder, its (query, document) pairs and the scores its TREC run holds for them."""
    cell_dir = cell(store, stage, method)
    scores = saved_scores(cell_dir)
    return cell_dir, list(scores), torch.tensor(list(scores.values()))


def tokenize_pairs(tokenizer, pairs):
    """The pairs as a transformers user tokenises them, at the cell's length (48)."""
    queries, docs = [q for q, _ in pairs], [d for _, d in pairs]
    return tokenizer(queries, docs, truncation="longest_first", max_length=48, padding=True, return_tensors="pt")


def export(store, cell_dir, fmt, name):
    out = store / "exports" / name
    done = bench("export", cell_dir, "--format", fmt, "--out", out, env_path=store / "data")
    assert done.returncode == 0, done.stderr[-3000:]
    card = (out / "README.md").read_text()
    assert "license" in card and "seed 1" in card and "trains" in card
    return out


@pytest.mark.parametrize("method", ["full", "lora", "bitfit"])
def test_rerank_cells_export_to_transformers_and_cross_encoder(store, method):
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    cell_dir, pairs, expected = saved_pairs(store, "rerank", method)
    hf = export(store, cell_dir, "hf", f"rerank-{method}-hf")
    model, tokenizer = AutoModelForSequenceClassification.from_pretrained(hf).eval(), AutoTokenizer.from_pretrained(hf)
    encoded = tokenize_pairs(tokenizer, pairs)
    with torch.no_grad():
        assert (model(**encoded).logits.squeeze(-1) - expected).abs().max() < 1e-5
    st = export(store, cell_dir, "sentence-transformers", f"rerank-{method}-st")
    got = CrossEncoder(str(st)).predict(pairs, convert_to_tensor=True).cpu()
    assert (got - expected).abs().max() < 1e-5


@pytest.mark.parametrize("method", ["full", "lora", "bitfit"])
def test_dense_cells_export_to_transformers_and_sentence_transformer(store, method):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    cell_dir, pairs, expected = saved_pairs(store, "dense", method)
    hf = export(store, cell_dir, "hf", f"dense-{method}-hf")
    model, tokenizer = AutoModel.from_pretrained(hf).eval(), AutoTokenizer.from_pretrained(hf)

    def encode(texts, length):  # mean pooling and cosine, as the model card says
        enc = tokenizer(texts, truncation=True, max_length=length, padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    got = (encode([q for q, _ in pairs], 16) * encode([d for _, d in pairs], 48)).sum(-1)  # the cell's lengths
    assert (got - expected).abs().max() < 1e-5
    st = SentenceTransformer(str(export(store, cell_dir, "sentence-transformers", f"dense-{method}-st")), device="cpu")
    st.max_seq_length = 16  # queries at the cell's query length, as the model card says
    q = st.encode([q for q, _ in pairs], convert_to_tensor=True)
    st.max_seq_length = 48
    d = st.encode([d for _, d in pairs], convert_to_tensor=True)
    assert ((q * d).sum(-1).cpu() - expected).abs().max() < 1e-5


def test_an_adapter_cell_loads_through_methods_from_pretrained(store):
    from transformers import AutoTokenizer

    import methods

    cell_dir, pairs, expected = saved_pairs(store, "rerank", "adapter")
    out = export(store, cell_dir, "hf", "rerank-adapter-hf")
    assert "methods.from_pretrained" in (out / "README.md").read_text()
    model, tokenizer = methods.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    encoded = tokenize_pairs(tokenizer, pairs)
    with torch.no_grad():
        assert (model(**encoded).logits.squeeze(-1) - expected).abs().max() < 1e-5
    refused = bench(
        "export",
        cell_dir,
        "--format",
        "sentence-transformers",
        "--out",
        store / "exports" / "x",
        env_path=store / "data",
    )
    assert "--format hf carries it" in one_error_line(refused)
    assert not (store / "exports" / "x").exists() and not (store / "exports" / ".x.partial").exists()


def test_peft_export_of_a_lora_cell_loads_in_peft(store):
    from peft import PeftModel
    from transformers import AutoModel

    from bench.models import load_backbone

    out = export(store, cell(store, "dense", "lora"), "peft", "dense-lora-peft")
    _, backbone = load_backbone("tiny-bert", seed=1)
    backbone.save_pretrained(store / "exports" / "base")
    model = PeftModel.from_pretrained(AutoModel.from_pretrained(store / "exports" / "base"), str(out))
    assert any("lora_A" in n for n, _ in model.named_parameters())
