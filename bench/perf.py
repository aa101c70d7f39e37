"""bench perf: what this harness costs on this machine, beside reference stacks doing the same work.

- training: examples/s, tokens/s, peak memory and achieved FLOP/s per (stage, method, length), ours
  (bench.train.train) against transformers' Trainer (+ peft's LoRA for lora; plain for full);
- evaluation: reranking pairs/s against sentence-transformers' CrossEncoder.predict, encoding
  passages/s against SentenceTransformer.encode, same model, passages and batch size;
- the machine's peak matmul FLOP/s, the physical limit every FLOP/s figure is a fraction of;
- grid overhead: the smoke suite's wall time minus the time spent in training and evaluation.

Every training measurement runs in a fresh child process, so its peak memory is its own.
"""
from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from .errors import BenchError

LENGTHS = (128, 256)
DEFAULT_METHODS = ("full", "lora", "bitfit", "adapter")
REFERENCE_METHODS = ("full", "lora")  # the reference stack has these: Trainer, Trainer + peft LoRA
TEMPERATURE = 0.05
QUERY_LENGTH = 32  # bi-encoder queries


def _shape(spec: dict) -> tuple[int, int]:
    """(queries per step, passages per query): the cross-encoder takes ``batch`` queries with ``group``
    passages each; the bi-encoder ``batch * group`` queries with a positive and a negative each (the
    same number of passages, plus in-batch negatives)."""
    if spec["stage"] == "rerank":
        return spec["batch"], spec["group"]
    return spec["batch"] * spec["group"] // 2, 2


def _precision_context(precision: str):
    import torch

    if precision == "bf16":
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return lambda: torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext


# ---------------------------------------------------------------- the machine's limit

def peak_matmul_flops(size: int = 2048, seconds: float = 2.0) -> dict:
    """Best FLOP/s of square matmuls, fp32 and bf16, on this device."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        best, deadline = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            a @ b
            if device == "cuda":
                torch.cuda.synchronize()
            best = max(best, 2 * size ** 3 / (time.perf_counter() - start))
        out[name] = best
    return out


# ---------------------------------------------------------------- training

@functools.lru_cache(maxsize=1)
def _scifact_texts() -> tuple[str, ...]:
    from .data import load_collection

    corpus = load_collection("scifact/test").corpus
    return tuple(corpus[d] for d in sorted(corpus))


def _passages(count: int) -> list[str]:
    return list(_scifact_texts()[:count])


def _fixed_batch(tokenizer, texts: list[str], length: int, pairs_with: list[str] | None = None) -> dict:
    """Tokenised to exactly ``length`` tokens (truncated and padded): throughput at a known length."""
    args = (pairs_with, texts) if pairs_with is not None else (texts,)
    return dict(tokenizer(*args, truncation=True, max_length=length, padding="max_length", return_tensors="pt"))


def _train_inputs(stage: str, tokenizer, length: int, batch: int, group: int) -> dict:
    texts = _passages(batch * group)
    if stage == "rerank":
        queries = [t[:120] for t in texts[::-1]]
        return _fixed_batch(tokenizer, texts, length, pairs_with=queries)
    q = _fixed_batch(tokenizer, [t[:120] for t in texts[:batch]], QUERY_LENGTH)
    d = _fixed_batch(tokenizer, texts, length)
    return {**{f"q_{k}": v for k, v in q.items()}, **{f"d_{k}": v for k, v in d.items()}}


def _ours_step_setup(stage: str, method: str, model_name: str):
    import methods

    from .dense import BiEncoder, contrastive_loss
    from .models import load_backbone
    from .rerank import CrossEncoder, group_loss

    tokenizer, backbone = load_backbone(model_name)
    model = CrossEncoder(backbone) if stage == "rerank" else BiEncoder(backbone, "mean", "cos")
    budget = None if methods.get_method(method).fixed else 0.5
    record = methods.apply_towers(model, [backbone], method, budget_pct=budget)
    loss = group_loss("softmax") if stage == "rerank" else contrastive_loss(TEMPERATURE)
    return tokenizer, model, loss, record


def _count_flops(model, loss, batch: dict) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        loss(model, dict(batch)).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def _train_job(spec: dict) -> dict:
    """One training measurement (run in a child process)."""
    import torch

    torch.set_num_threads(spec["threads"])
    from .train import make_accelerator, train

    stage, method, length = spec["stage"], spec["method"], spec["length"]
    queries, group = _shape(spec)
    if spec["stack"] == "ours":
        tokenizer, model, loss, record = _ours_step_setup(stage, method, spec["model"])
        if spec.get("compile"):
            model.compile(dynamic=False)  # fixed shapes here
        inputs = _train_inputs(stage, tokenizer, length, queries, group)
        batch = {**inputs, "group_size": group}
        flops = _count_flops(model, loss, batch)
        stamps = []

        def batches(step):
            stamps.append(time.perf_counter())
            return dict(batch)
        train(model, batches, loss, lr=1e-5, steps=spec["warmup"] + spec["steps"],
              accelerator=make_accelerator(spec["precision"]), log_path=Path(os.devnull),
              desc=f"{stage} {method} L{length}", fused=spec.get("fused", True))
        seconds = time.perf_counter() - stamps[spec["warmup"]]
        trainable = record.trainable + record.head
    else:
        seconds, flops, trainable = _reference_train(spec, stage, method, length)
    # an example: a (query, passage) pair for the cross-encoder, a query with its passages for the bi-encoder
    examples = spec["steps"] * queries * (group if stage == "rerank" else 1)
    tokens = examples * (length if stage == "rerank" else QUERY_LENGTH + group * length)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    from .environment import peak_memory_mb

    return {"examples_per_s": examples / seconds, "tokens_per_s": tokens / seconds,
            "step_s": seconds / spec["steps"], "flops_per_step": flops,
            "flops_per_s": flops * spec["steps"] / seconds, "trainable": trainable,
            "optimizer_state_mb": trainable * 16 / 2**20,  # fp32 weight + grad + two AdamW moments
            "peak_memory_mb": peak_memory_mb(device)}


def _reference_train(spec: dict, stage: str, method: str, length: int):
    """The same steps through transformers' Trainer (peft's LoRA for lora): (seconds, flops, trainable)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoModelForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

    from .models import load_tokenizer, resolve_path

    path = resolve_path(spec["model"])
    tokenizer = load_tokenizer(spec["model"])
    queries, group = _shape(spec)
    inputs = _train_inputs(stage, tokenizer, length, queries, group)
    if stage == "rerank":
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    else:
        model = AutoModel.from_pretrained(path)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        import methods

        knobs = methods.solve(model.config, "lora", 0.5)
        model = get_peft_model(model, LoraConfig(
            r=knobs["r"], lora_alpha=knobs["alpha"], target_modules=["query", "value"],
            task_type="SEQ_CLS" if stage == "rerank" else "FEATURE_EXTRACTION"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rows = [{k: v[i] for k, v in inputs.items()} for i in range(len(next(iter(inputs.values()))))]

    def loss_of(model, batch):
        if stage == "rerank":
            scores = model(**batch).logits.view(-1, group).float()
            return F.cross_entropy(scores, torch.zeros(len(scores), dtype=torch.long, device=scores.device))
        from .dense import in_batch_loss, pool
        q = {k[2:]: v for k, v in batch.items() if k.startswith("q_")}
        d = {k[2:]: v for k, v in batch.items() if k.startswith("d_")}
        qv = pool(model(**q).last_hidden_state, q["attention_mask"], "mean")
        dv = pool(model(**{k: v.view(-1, v.shape[-1]) for k, v in d.items()}).last_hidden_state,
                  d["attention_mask"].view(-1, d["attention_mask"].shape[-1]), "mean")
        return in_batch_loss(F.normalize(qv, dim=-1), F.normalize(dv, dim=-1), group, TEMPERATURE)

    if stage == "dense":  # one row per query: its documents travel with it
        docs = {k: v.view(queries, group, -1) for k, v in inputs.items() if k.startswith("d_")}
        rows = [{**{k: v[i] for k, v in inputs.items() if k.startswith("q_")}, **{k: v[i] for k, v in docs.items()}}
                for i in range(queries)]
    per_step = queries * (group if stage == "rerank" else 1)
    flops = _count_flops(model, lambda m, b: loss_of(m, b),
                         {k: torch.stack([r[k] for r in rows[:per_step]]) for k in rows[0]})

    class Timer(TrainerCallback):
        start = None

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == spec["warmup"]:
                Timer.start = time.perf_counter()

    class GroupTrainer(Trainer):
        def compute_loss(self, model, batch, return_outputs=False, **kwargs):
            return loss_of(model, batch)

        def _get_train_sampler(self, *args, **kwargs):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    repeated = rows * (spec["warmup"] + spec["steps"] + 1)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, max_steps=spec["warmup"] + spec["steps"], per_device_train_batch_size=per_step,
                                 learning_rate=1e-5, report_to=[], save_strategy="no", logging_strategy="no",
                                 disable_tqdm=True, dataloader_num_workers=0, bf16=spec["precision"] == "bf16",
                                 use_cpu=not torch.cuda.is_available(), remove_unused_columns=False)
        from transformers.trainer_callback import PrinterCallback

        trainer = GroupTrainer(model=model, args=args, train_dataset=repeated, callbacks=[Timer()])
        trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict
        trainer.train()
    return time.perf_counter() - Timer.start, flops, trainable


def measure_training_ablations(args, precision: str) -> dict:
    """One training setting (rerank, lora, length 128) with each training speed-up on and off."""
    import torch

    base = {"stage": "rerank", "method": "lora", "length": 128, "stack": "ours", "model": args.model,
            "precision": precision, "batch": args.batch, "group": args.group, "steps": args.steps,
            "warmup": args.warmup, "threads": torch.get_num_threads()}
    on = _in_child(_train_job, base)["examples_per_s"]
    out = {}
    if precision != "no":
        off = _in_child(_train_job, {**base, "precision": "no"})["examples_per_s"]
        out["bf16_autocast"] = {"on": on, "off": off, "speedup": on / off}
    full = {**base, "method": "full"}
    fused = _in_child(_train_job, full)["examples_per_s"]
    unfused = _in_child(_train_job, {**full, "fused": False})["examples_per_s"]
    out["fused_adamw_full"] = {"on": fused, "off": unfused, "speedup": fused / unfused}
    if args.compile_ablation:
        compiled = _in_child(_train_job, {**base, "compile": True})["examples_per_s"]
        out["torch_compile"] = {"on": compiled, "off": on, "speedup": compiled / on}
    return out


def _in_child(job, spec: dict) -> dict:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(job, (spec,))


def measure_training(stages, methods_, lengths, model: str, precision: str, batch: int, group: int,
                     steps: int, warmup: int, progress=print) -> list[dict]:
    import torch

    rows = []
    for stage in stages:
        for length in lengths:
            for method in methods_:
                stacks = ["ours"] + (["reference"] if method in REFERENCE_METHODS else [])
                result = {"stage": stage, "method": method, "length": length}
                for stack in stacks:
                    spec = {"stage": stage, "method": method, "length": length, "stack": stack, "model": model,
                            "precision": precision, "batch": batch, "group": group, "steps": steps,
                            "warmup": warmup, "threads": torch.get_num_threads()}
                    result[stack] = _in_child(_train_job, spec)
                    progress(f"train {stage} {method} L{length} {stack}: "
                             f"{result[stack]['examples_per_s']:.1f} examples/s")
                if "reference" in result:
                    result["ratio"] = result["ours"]["examples_per_s"] / result["reference"]["examples_per_s"]
                rows.append(result)
    return rows


# ---------------------------------------------------------------- evaluation

def _eval_data(passages: int, queries: int, depth: int):
    from .data import Collection

    texts = _passages(passages)
    corpus = {f"d{i}": t for i, t in enumerate(texts)}
    query_texts = {f"q{i}": t[:100] for i, t in enumerate(texts[::-1][:queries])}
    coll = Collection(ref="perf", corpus=corpus, queries=query_texts, qrels={}, fingerprint="perf")
    candidates = {q: {d: 0.0 for d in list(corpus)[:depth]} for q in query_texts}
    return texts, coll, candidates


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cross_encoder(model_name: str, device, attn: str = "sdpa"):
    from transformers import AutoModel

    from .models import load_tokenizer, resolve_path
    from .rerank import CrossEncoder

    backbone = AutoModel.from_pretrained(resolve_path(model_name), attn_implementation=attn)
    return load_tokenizer(model_name), CrossEncoder(backbone).to(device).eval()


def measure_evaluation(model_name: str, precision: str, passages: int, batch_size: int, max_length: int,
                       queries: int = 10, depth: int = 100, progress=print) -> dict:
    """Our reranking and encoding against sentence-transformers (fp32, its default) on the same
    SciFact passages (every length) and batch size; ours in fp32 and at ``precision``."""
    import torch
    from sentence_transformers import CrossEncoder as STCrossEncoder
    from sentence_transformers import SentenceTransformer

    from .dense import BiEncoder, encode_texts
    from .models import load_backbone, resolve_path
    from .rerank import rerank

    texts, coll, candidates = _eval_data(passages, queries, depth)
    pairs = [(coll.queries[q], coll.corpus[d]) for q in coll.queries for d in candidates[q]]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    precisions = ["no"] + ([precision] if precision != "no" else [])
    out = {"rerank": {"pairs": len(pairs)}, "encode": {"passages": len(texts)}}

    tokenizer, ours = _cross_encoder(model_name, device)
    reference = STCrossEncoder(resolve_path(model_name), num_labels=1, max_length=max_length, device=device)
    reference.predict(pairs[:batch_size], batch_size=batch_size, show_progress_bar=False)  # warm-up
    ref_s = _timed(lambda: reference.predict(pairs, batch_size=batch_size, show_progress_bar=False))
    out["rerank"]["reference_pairs_per_s"] = len(pairs) / ref_s
    for p in precisions:
        s = _timed(lambda: rerank(ours, tokenizer, coll, candidates, depth, batch_size, max_length, device,
                                  autocast=_precision_context(p)))
        out["rerank"][f"ours_{p}_pairs_per_s"] = len(pairs) / s
        out["rerank"][f"ratio_{p}"] = ref_s / s
    progress(f"rerank: {out['rerank']}")

    tokenizer, backbone = load_backbone(model_name)
    encoder = BiEncoder(backbone, "mean", "cos").to(device)
    reference = SentenceTransformer(resolve_path(model_name), device=device)
    reference.max_seq_length = max_length
    reference.encode(texts[:batch_size], batch_size=batch_size, show_progress_bar=False)  # warm-up
    ref_s = _timed(lambda: reference.encode(texts, batch_size=batch_size, show_progress_bar=False))
    out["encode"]["reference_passages_per_s"] = len(texts) / ref_s
    for p in precisions:
        s = _timed(lambda: encode_texts(encoder, "d", tokenizer, texts, batch_size, max_length, device,
                                        _precision_context(p)))
        out["encode"][f"ours_{p}_passages_per_s"] = len(texts) / s
        out["encode"][f"ratio_{p}"] = ref_s / s
    progress(f"encode: {out['encode']}")
    return out


def measure_ablations(model_name: str, precision: str, passages: int, batch_size: int, max_length: int,
                      queries: int = 10, depth: int = 100, progress=print) -> dict:
    """Each evaluation speed-up on and off, the rest unchanged: pairs/s of reranking."""
    import torch

    from .rerank import rerank

    _, coll, candidates = _eval_data(passages, queries, depth)
    pairs = sum(len(c) for c in candidates.values())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    fast = _precision_context(precision)
    tokenizer, model = _cross_encoder(model_name, device)

    def pairs_per_s(model=model, autocast=fast, sort=True, grad_mode=torch.inference_mode):
        length = None if sort else (lambda q, d: 0)  # unsorted: the candidates' own order
        seconds = _timed(lambda: rerank(model, tokenizer, coll, candidates, depth, batch_size, max_length, device,
                                        autocast=autocast, length=length, grad_mode=grad_mode))
        return pairs / seconds

    out = {"length_sorted": {"on": pairs_per_s(), "off": pairs_per_s(sort=False)},
           "bf16_autocast": {"on": pairs_per_s(), "off": pairs_per_s(autocast=contextlib.nullcontext)},
           "inference_mode": {"on": pairs_per_s(), "off": pairs_per_s(grad_mode=torch.no_grad)}}
    _, eager = _cross_encoder(model_name, device, attn="eager")
    eager.load_state_dict(model.state_dict())
    out["sdpa_attention"] = {"on": pairs_per_s(), "off": pairs_per_s(model=eager)}
    for row in out.values():
        row["speedup"] = row["on"] / row["off"]
    progress(f"ablations (pairs/s): {out}")
    return out


def measure_caches(dataset: str = "scifact/test", depth: int = 100) -> dict:
    """First-stage candidates computed (BM25 over the corpus) against read back from the shared cache,
    and the model load every cell pays once."""
    from .data import load_collection
    from .firststage import candidates
    from .models import load_backbone

    coll = load_collection(dataset)
    with tempfile.TemporaryDirectory() as cache:
        computed = _timed(lambda: candidates(coll, "bm25s", depth, cache))
        cached = _timed(lambda: candidates(coll, "bm25s", depth, cache))
    tokenizer, _ = load_backbone("minilm")
    texts = list(coll.corpus.values())
    return {"candidates": {"dataset": dataset, "computed_s": computed, "cached_s": cached,
                           "speedup": computed / cached},
            "model_load_s": _timed(lambda: load_backbone("minilm")),
            # what a tokenisation cache could save per dense cell: the corpus tokenised once
            "tokenize_corpus_s": _timed(lambda: tokenizer(texts, truncation=True, max_length=256)),
            "corpus_passages": len(texts)}


# ---------------------------------------------------------------- grid overhead

def measure_grid_overhead(suite: str = "smoke") -> dict:
    """The suite's wall time against the time its cells spent training and evaluating."""
    import argparse

    from .runner import run_from_cli

    with tempfile.TemporaryDirectory() as out:
        args = argparse.Namespace(suite=suite, out=out)
        start = time.perf_counter()
        run_from_cli(args)
        wall = time.perf_counter() - start
        inside = 0.0
        for path in Path(out).rglob("result.json"):
            result = json.loads(path.read_text())
            inside += result.get("times", {}).get("train_s", 0.0)
            inside += sum(t.get("eval_s", 0.0) for t in result.get("eval", {}).values())
    return {"suite": suite, "wall_s": wall, "train_and_eval_s": inside, "overhead_s": wall - inside,
            "overhead_fraction": (wall - inside) / wall}


def check_available() -> None:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        raise BenchError("bench perf compares against sentence-transformers: pip install sentence-transformers") from None


# ---------------------------------------------------------------- the command

def run_perf(args) -> int:
    import torch

    from . import environment
    from .tables import render

    check_available()
    precision = environment.resolve_precision(args.precision)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    chosen = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        lengths = [int(x) for x in args.lengths.split(",")]
    except ValueError:
        raise BenchError(f"bench perf --lengths {args.lengths!r}: give comma-separated integers, e.g. 128,256") from None
    bad = [s for s in stages if s not in ("rerank", "dense")]
    if bad:
        raise BenchError(f"bench perf --stages: {bad[0]!r} is not rerank or dense")
    import methods

    for name in chosen:
        methods.get_method(name)  # unknown names fail here, in one line
    report = {"machine": {"device": environment.device_name("cuda" if torch.cuda.is_available() else "cpu"),
                          "threads": torch.get_num_threads(), "versions": environment.versions(),
                          "git_commit": environment.git_commit()},
              "settings": {"model": args.model, "precision": precision, "batch": args.batch, "group": args.group,
                           "steps": args.steps, "warmup": args.warmup}}
    report["peak_matmul_flops"] = peak_matmul_flops()
    peak = report["peak_matmul_flops"]["bf16" if precision == "bf16" else "fp32"]
    report["training"] = measure_training(stages, chosen, lengths, args.model, precision, args.batch, args.group,
                                          args.steps, args.warmup)
    for row in report["training"]:
        for stack in ("ours", "reference"):
            if stack in row:
                row[stack]["fraction_of_peak"] = row[stack]["flops_per_s"] / peak
    if not args.skip_eval:
        report["evaluation"] = measure_evaluation(args.model, precision, args.eval_passages, args.eval_batch, 256)
        report["ablations"] = measure_ablations(args.model, precision, args.eval_passages, args.eval_batch, 256)
        report["caches"] = measure_caches()
    report.setdefault("ablations", {})["training"] = measure_training_ablations(args, precision)
    if not args.skip_grid:
        report["grid"] = measure_grid_overhead(args.grid_suite)
    out = Path(args.out)
    from .store import write_json

    write_json(out, report)
    print(render(["stage", "method", "L", "ours ex/s", "ref ex/s", "ratio", "ours tok/s", "% peak",
                  "ours MB", "ref MB", "optimizer MB"],
                 [[r["stage"], r["method"], str(r["length"]), f"{r['ours']['examples_per_s']:.1f}",
                   f"{r['reference']['examples_per_s']:.1f}" if "reference" in r else "-",
                   f"{r['ratio']:.2f}" if "ratio" in r else "-", f"{r['ours']['tokens_per_s']:.0f}",
                   f"{100 * r['ours']['fraction_of_peak']:.1f}", f"{r['ours']['peak_memory_mb']:.0f}",
                   f"{r['reference']['peak_memory_mb']:.0f}" if "reference" in r else "-",
                   f"{r['ours']['optimizer_state_mb']:.1f}"] for r in report["training"]]))
    for kind, unit in (("rerank", "pairs"), ("encode", "passages")) if "evaluation" in report else ():
        row = report["evaluation"][kind]
        ours = ", ".join(f"{'fp32' if p == 'no' else p} {row[f'ours_{p}_{unit}_per_s']:.1f} (x{row[f'ratio_{p}']:.2f})"
                         for p in ("no", precision) if f"ratio_{p}" in row)
        print(f"{kind}: sentence-transformers {row[f'reference_{unit}_per_s']:.1f} {unit}/s; ours {ours}")
    if "evaluation" in report:
        print("speed-ups, on / off: " + "; ".join(f"{name} x{row['speedup']:.2f}"
                                                   for name, row in report["ablations"].items() if "speedup" in row))
    print("training: " + "; ".join(f"{name} x{row['speedup']:.2f}" for name, row in
                                  report["ablations"]["training"].items()))
    caches = report.get("caches")
    if caches:
        print(f"candidates cache x{caches['candidates']['speedup']:.0f} ({caches['candidates']['computed_s']:.2f} s "
              f"-> {caches['candidates']['cached_s']:.3f} s); model load {caches['model_load_s']:.2f} s per cell; "
              f"tokenising the {caches['corpus_passages']} passages {caches['tokenize_corpus_s']:.2f} s")
    if "grid" in report:
        grid = report["grid"]
        print(f"grid ({grid['suite']}): {grid['wall_s']:.0f} s wall, {grid['train_and_eval_s']:.0f} s training and "
              f"evaluation, overhead {100 * grid['overhead_fraction']:.1f}%")
    print(f"peak matmul: fp32 {peak_fmt(report['peak_matmul_flops']['fp32'])}, "
          f"bf16 {peak_fmt(report['peak_matmul_flops']['bf16'])}; written {out}")
    return 0


def peak_fmt(flops: float) -> str:
    return f"{flops / 1e9:.0f} GFLOP/s"
