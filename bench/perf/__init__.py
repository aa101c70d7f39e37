"""``bench perf``: what this harness costs on this machine, beside reference stacks doing the same work.

- ``training``: per stage, method and length: examples/s, tokens/s, FLOPs per step, achieved FLOP/s as a
  fraction of the measured peak, peak memory; ``full`` and ``lora`` also through transformers' Trainer
  (+ peft's LoRA), ``ratio`` = ours / reference; encoder stages also as ``ours_parallel_dropout`` (the
  setting ``train_attention: parallel_dropout``) with its ``ratio_parallel_dropout``;
- ``evaluation``: reranking and encoding against sentence-transformers; the qlm stage's scoring;
- ``ablations``, ``caches``, ``grid``: each speed-up on and off, the shared caches, the grid's overhead.

One process measures everything (each backbone loaded once); the JSON file is rewritten after every
measurement, so an interrupted run keeps what it had.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BenchError
from . import evaluation, training
from .machine import device, peak_matmul_flops

QUICK = {
    "lengths": "256",
    "steps": 4,
    "warmup": 2,
    "eval_passages": 256,
    "skip_grid": True,
    "skip_ablations": True,
    "stages": "rerank,dense,qlm",
    "methods": "full,lora",
}


PARALLEL = "ours_parallel_dropout"  # ours with train_attention: parallel_dropout, where the backbone can switch


def _csv(text: str) -> list[str]:
    return [v.strip() for v in str(text).split(",") if v.strip()]


def check_available() -> None:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        raise BenchError(
            "bench perf compares against sentence-transformers: pip install sentence-transformers"
        ) from None


def _settings(args) -> dict:
    import methods

    from .. import environment
    from ..stages import get_stage

    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == PARSER_DEFAULTS.get(key):
                setattr(args, key, value)
    lengths = _positive_list(args.lengths, int, "--lengths", "integers, e.g. 128,256")
    stages = [get_stage(s) for s in _csv(args.stages)]
    bad = [s.name for s in stages if s.perf is None]
    if bad:
        raise BenchError(f"bench perf --stages: stage {bad[0]!r} declares no perf hooks")
    chosen = _csv(args.methods)
    for name in chosen:
        methods.get_method(name)  # unknown names fail here, in one line
    for flag in ("batch", "group", "steps", "eval_passages", "eval_batch"):
        if getattr(args, flag) <= 0:
            raise BenchError(f"bench perf --{flag.replace('_', '-')} {getattr(args, flag)}: must be positive")
    budgets = _positive_list(args.budgets, float, "--budgets", "percentages, e.g. 0.5,6.7")
    if args.warmup < 0:
        raise BenchError(f"bench perf --warmup {args.warmup}: must be zero or more")
    out = Path(args.out)
    if out.is_dir():
        raise BenchError(f"bench perf --out {out}: is a folder; give a JSON file name")
    return {
        "precision": environment.resolve_precision(args.precision),
        "lengths": lengths,
        "stages": stages,
        "methods": chosen,
        "budgets": budgets,
        "out": out,
    }


def _positive_list(text: str, kind, flag: str, what: str) -> list:
    """A comma-separated flag's positive numbers, or one line saying what to give."""
    try:
        values = [kind(x) for x in _csv(text)]
    except ValueError:
        values = []
    if not values or min(values) <= 0:
        raise BenchError(f"bench perf {flag} {text!r}: give comma-separated positive {what}")
    return values


def _sizes(names: list[str], budgets: list[float]) -> list[tuple[str, float | None]]:
    """Each method at each budget; a one-size method once (budget None)."""
    import methods

    sizes = []
    for name in names:
        sizes += [(name, None)] if methods.get_method(name).fixed else [(name, b) for b in budgets]
    return sizes


def _model(stage, args) -> str:
    return (args.model if stage.family == "encoder" else args.lm_model) or stage.default_model


def run_perf(args) -> int:
    import torch

    from .. import environment
    from ..files import write_json
    from .report import print_report

    check_available()
    s = _settings(args)
    precision, out = s["precision"], s["out"]
    report = {
        "machine": {
            "device": environment.device_name(device()),
            "threads": torch.get_num_threads(),
            "versions": environment.versions(),
            "git_commit": environment.git_commit(),
        },
        "settings": {
            "model": args.model,
            "lm_model": args.lm_model,
            "precision": precision,
            "batch": args.batch,
            "group": args.group,
            "steps": args.steps,
            "warmup": args.warmup,
            "quick": args.quick,
        },
        "training": [],
    }

    def save():
        write_json(out, report)

    report["peak_matmul_flops"] = peak_matmul_flops()
    peak = report["peak_matmul_flops"]["bf16" if precision == "bf16" else "fp32"]
    save()
    for stage in s["stages"]:
        model = _model(stage, args)
        for length in s["lengths"]:
            for method, budget in _sizes(s["methods"], s["budgets"]):
                if stage.family not in __import__("methods").get_method(method).families:
                    continue
                row = {"stage": stage.name, "method": method, "budget": budget, "length": length, "model": model}
                stacks = ["ours"] + (
                    ["reference"] if method in training.REFERENCE_METHODS and stage.perf.reference_model else []
                )
                if stage.family == "encoder" and training.parallel_dropout_runs(stage, model):
                    stacks.insert(1, PARALLEL)
                for stack in stacks:
                    row[stack] = training.measure(
                        stage,
                        method,
                        length,
                        "ours" if stack == PARALLEL else stack,
                        model,
                        precision,
                        args.batch,
                        args.group,
                        args.steps,
                        args.warmup,
                        attention="parallel_dropout" if stack == PARALLEL else None,
                        budget=budget,
                    )
                    row[stack]["fraction_of_peak"] = row[stack]["flops_per_s"] / peak
                    size, speed = f" {budget:g}%" if budget else "", row[stack]["examples_per_s"]
                    print(f"train {stage.name} {method}{size} L{length} {stack}: {speed:.1f} examples/s", flush=True)
                if "reference" in row:
                    row["ratio"] = row["ours"]["examples_per_s"] / row["reference"]["examples_per_s"]
                    if PARALLEL in row:
                        row["ratio_parallel_dropout"] = (
                            row[PARALLEL]["examples_per_s"] / row["reference"]["examples_per_s"]
                        )
                report["training"].append(row)
                save()
    encoder_stages = [st for st in s["stages"] if st.family == "encoder"]
    if not args.skip_eval and encoder_stages:
        model = _model(encoder_stages[0], args)
        report["evaluation"] = evaluation.measure(model, precision, args.eval_passages, args.eval_batch, 256)
        save()
    if not args.skip_eval and any(st.name == "qlm" for st in s["stages"]):
        report.setdefault("evaluation", {})["qlm"] = evaluation.measure_qlm(
            _model(next(st for st in s["stages"] if st.name == "qlm"), args), precision, args.eval_passages, 16
        )
        save()
    if not args.skip_eval and not args.skip_ablations and encoder_stages:
        model = _model(encoder_stages[0], args)
        report["ablations"] = evaluation.ablations(model, precision, args.eval_passages, args.eval_batch, 256)
        save()
        report["caches"] = evaluation.caches(model)
        save()
    if not args.skip_ablations and encoder_stages:
        report.setdefault("ablations", {})["training"] = training.ablations(
            encoder_stages[0],
            _model(encoder_stages[0], args),
            precision,
            args.batch,
            args.group,
            args.steps,
            args.warmup,
            args.compile_ablation,
        )
        save()
    if not args.skip_grid:
        from .grid import measure_grid_overhead

        report["grid"] = measure_grid_overhead(args.grid_suite)
        save()
    print_report(report, precision, out)
    return 0


PARSER_DEFAULTS: dict = {}


def add_arguments(pf) -> None:
    pf.add_argument("--out", default="perf.json", help="JSON file to write (rewritten after every measurement)")
    pf.add_argument(
        "--quick",
        action="store_true",
        help="rerank, dense and qlm; full and lora; length 256; a few steps; no ablations or grid",
    )
    pf.add_argument("--stages", default="rerank,dense", help="stages to measure (rerank, dense, qlm)")
    pf.add_argument(
        "--methods",
        default="full,lora,bitfit,adapter",
        help="methods to time (full and lora also through the reference stack)",
    )
    pf.add_argument("--lengths", default="128,256", help="sequence lengths")
    pf.add_argument(
        "--budgets",
        default="0.5",
        help="%% of the backbone's parameters each budgeted method is sized to, comma-separated",
    )
    pf.add_argument("--model", default=None, help="encoder backbone (default: each stage's, minilm)")
    pf.add_argument("--lm-model", default=None, help="causal LM for the qlm stage (default: smollm2)")
    pf.add_argument("--precision", default="auto", choices=["no", "bf16", "auto"])
    pf.add_argument("--batch", type=int, default=4, help="queries per training step")
    pf.add_argument("--group", type=int, default=4, help="passages per query (positive + negatives)")
    pf.add_argument("--steps", type=int, default=6, help="timed training steps")
    pf.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    pf.add_argument("--eval-passages", type=int, default=600, help="passages for the evaluation timings")
    pf.add_argument("--eval-batch", type=int, default=64)
    pf.add_argument("--skip-grid", action="store_true", help="leave out the smoke-suite overhead measurement")
    pf.add_argument("--skip-eval", action="store_true", help="leave out evaluation, its ablations and caches")
    pf.add_argument("--skip-ablations", action="store_true", help="leave out the speed-up ablations and caches")
    pf.add_argument(
        "--compile-ablation",
        action="store_true",
        help="also time training under torch.compile (compiling takes minutes on CPU)",
    )
    pf.add_argument("--grid-suite", default="smoke")
    PARSER_DEFAULTS.update({a.dest: a.default for a in pf._actions})
