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
import json
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

from .errors import BenchError

LENGTHS = (128, 256)
DEFAULT_METHODS = ("full", "lora", "bitfit", "adapter")
REFERENCE_METHODS = ("full", "lora")  # the reference stack has these: Trainer, Trainer + peft LoRA
TEMPERATURE = 0.05


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

def _passages(count: int) -> list[str]:
    from .data import load_collection

    corpus = load_collection("scifact/test").corpus
    return [corpus[d] for d in sorted(corpus)[:count]]


def _fixed_batch(tokenizer, texts: list[str], length: int, pairs_with: list[str] | None = None) -> dict:
    """Tokenised to exactly ``length`` tokens (truncated and padded): throughput at a known length."""
    args = (pairs_with, texts) if pairs_with is not None else (texts,)
    return dict(tokenizer(*args, truncation=True, max_length=length, padding="max_length", return_tensors="pt"))


def _train_inputs(stage: str, tokenizer, length: int, batch: int, group: int) -> dict:
    texts = _passages(batch * group)
    if stage == "rerank":
        queries = [t[:120] for t in _passages(batch * group)[::-1]]
        return _fixed_batch(tokenizer, texts, length, pairs_with=queries)
    q = _fixed_batch(tokenizer, [t[:120] for t in texts[:batch]], 32)
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
    group = spec["group"] if stage == "rerank" else 2
    if spec["stack"] == "ours":
        tokenizer, model, loss, record = _ours_step_setup(stage, method, spec["model"])
        inputs = _train_inputs(stage, tokenizer, length, spec["batch"], group)
        batch = {**inputs, "group_size": group}
        flops = _count_flops(model, loss, batch)
        stamps = []

        def batches(step):
            stamps.append(time.perf_counter())
            return dict(batch)
        train(model, batches, loss, lr=1e-5, steps=spec["warmup"] + spec["steps"],
              accelerator=make_accelerator(spec["precision"]), log_path=Path(os.devnull),
              desc=f"{stage} {method} L{length}")
        seconds = time.perf_counter() - stamps[spec["warmup"]]
        trainable = record.trainable + record.head
    else:
        seconds, flops, trainable = _reference_train(spec, stage, method, length, group)
    examples = spec["steps"] * spec["batch"] * (group if stage == "rerank" else 1)
    tokens = examples * length * (1 if stage == "rerank" else group)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    from .environment import peak_memory_mb

    return {"examples_per_s": examples / seconds, "tokens_per_s": tokens / seconds,
            "step_s": seconds / spec["steps"], "flops_per_step": flops,
            "flops_per_s": flops * spec["steps"] / seconds, "trainable": trainable,
            "optimizer_state_mb": trainable * 16 / 2**20,  # fp32 weight + grad + two AdamW moments
            "peak_memory_mb": peak_memory_mb(device)}


def _reference_train(spec: dict, stage: str, method: str, length: int, group: int):
    """The same steps through transformers' Trainer (peft's LoRA for lora): (seconds, flops, trainable)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoModelForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

    from .models import load_tokenizer, resolve_path

    path = resolve_path(spec["model"])
    tokenizer = load_tokenizer(spec["model"])
    inputs = _train_inputs(stage, tokenizer, length, spec["batch"], group)
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
        docs = {k: v.view(spec["batch"], group, -1) for k, v in inputs.items() if k.startswith("d_")}
        rows = [{**{k: v[i] for k, v in inputs.items() if k.startswith("q_")}, **{k: v[i] for k, v in docs.items()}}
                for i in range(spec["batch"])]
    per_step = spec["batch"] * (group if stage == "rerank" else 1)
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

def measure_evaluation(model_name: str, precision: str, passages: int, batch_size: int, max_length: int,
                       progress=print) -> dict:
    """Our reranking and encoding against sentence-transformers on the same passages (SciFact's, of
    every length) and batch size."""
    import torch
    from sentence_transformers import CrossEncoder as STCrossEncoder
    from sentence_transformers import SentenceTransformer

    from .data import Collection
    from .dense import BiEncoder, encode_texts
    from .models import load_backbone, resolve_path
    from .rerank import CrossEncoder, rerank

    texts = _passages(passages)
    queries = {f"q{i}": t[:100] for i, t in enumerate(_passages(passages)[::-1][: max(1, passages // 20)])}
    corpus = {f"d{i}": t for i, t in enumerate(texts)}
    coll = Collection(ref="perf", corpus=corpus, queries=queries, qrels={}, fingerprint="perf")
    candidates = {q: {d: 0.0 for d in corpus} for q in queries}
    pairs = [(queries[q], corpus[d]) for q in queries for d in corpus]
    autocast = _precision_context(precision)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = {}

    tokenizer, backbone = load_backbone(model_name)
    ours = CrossEncoder(backbone).to(device)
    start = time.perf_counter()
    rerank(ours, tokenizer, coll, candidates, len(corpus), batch_size, max_length, device, autocast=autocast)
    ours_s = time.perf_counter() - start
    reference = STCrossEncoder(resolve_path(model_name), num_labels=1, max_length=max_length, device=device)
    start = time.perf_counter()
    reference.predict(pairs, batch_size=batch_size, show_progress_bar=False)
    ref_s = time.perf_counter() - start
    out["rerank"] = {"pairs": len(pairs), "ours_pairs_per_s": len(pairs) / ours_s,
                     "reference_pairs_per_s": len(pairs) / ref_s, "ratio": ref_s / ours_s}
    progress(f"rerank: ours {len(pairs) / ours_s:.1f} pairs/s, sentence-transformers {len(pairs) / ref_s:.1f}")

    tokenizer, backbone = load_backbone(model_name)
    encoder = BiEncoder(backbone, "mean", "cos").to(device)
    encode_texts(encoder, "d", tokenizer, texts[:batch_size], batch_size, max_length, device, autocast)  # warm-up
    start = time.perf_counter()
    encode_texts(encoder, "d", tokenizer, texts, batch_size, max_length, device, autocast)
    ours_s = time.perf_counter() - start
    reference = SentenceTransformer(resolve_path(model_name), device=device)
    reference.max_seq_length = max_length
    start = time.perf_counter()
    reference.encode(texts, batch_size=batch_size, show_progress_bar=False)
    ref_s = time.perf_counter() - start
    out["encode"] = {"passages": len(texts), "ours_passages_per_s": len(texts) / ours_s,
                     "reference_passages_per_s": len(texts) / ref_s, "ratio": ref_s / ours_s}
    progress(f"encode: ours {len(texts) / ours_s:.1f} passages/s, sentence-transformers {len(texts) / ref_s:.1f}")
    return out


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


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    lengths = [int(x) for x in args.lengths.split(",")]
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
    report["evaluation"] = measure_evaluation(args.model, precision, args.eval_passages, args.eval_batch, 256)
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
    evaluation = report["evaluation"]
    print(f"rerank: {evaluation['rerank']['ours_pairs_per_s']:.1f} pairs/s vs sentence-transformers "
          f"{evaluation['rerank']['reference_pairs_per_s']:.1f} (x{evaluation['rerank']['ratio']:.2f}); "
          f"encode: {evaluation['encode']['ours_passages_per_s']:.1f} passages/s vs "
          f"{evaluation['encode']['reference_passages_per_s']:.1f} (x{evaluation['encode']['ratio']:.2f})")
    if "grid" in report:
        grid = report["grid"]
        print(f"grid ({grid['suite']}): {grid['wall_s']:.0f} s wall, {grid['train_and_eval_s']:.0f} s training and "
              f"evaluation, overhead {100 * grid['overhead_fraction']:.1f}%")
    print(f"peak matmul: fp32 {peak_fmt(report['peak_matmul_flops']['fp32'])}, "
          f"bf16 {peak_fmt(report['peak_matmul_flops']['bf16'])}; written {out}")
    return 0


def peak_fmt(flops: float) -> str:
    return f"{flops / 1e9:.0f} GFLOP/s"
