"""The ``bench`` command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import BenchError


def _methods_command(args) -> int:
    import methods

    from .models import load_config

    config = load_config(args.model)
    family = methods.family_of(config) or "encoder"
    rows = []
    for name in methods.names():
        method = methods.get_method(name)
        if family not in method.families:
            continue
        p = methods.plan(config, name, args.budget)
        note = f"plus {config.hidden_size} per embedding row it trains (counted at run time)" \
            if method.takes_token_ids else ""
        rows.append({"method": name, "knobs": p.knobs, "trainable": p.trainable, "backbone": p.backbone,
                     "pct": round(p.pct, 4), "applicable": p.applicable, "reason": p.reason or note})
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    from .tables import render

    budget = "paper's 0.5% knobs" if args.budget is None else f"{args.budget}%"
    print(f"model {args.model} ({rows[0]['backbone']:,} backbone parameters), budget {budget}")
    print(render(["method", "knobs", "trainable", "% backbone", "applicable"], [
        [r["method"], " ".join(f"{k}={v}" for k, v in r["knobs"].items()) or "-", f"{r['trainable']:,}",
         f"{r['pct']:.3f}", ("yes" + (f" ({r['reason']})" if r["reason"] else "")) if r["applicable"]
         else "no: " + r["reason"]] for r in rows]))
    return 0


def _list_command(args) -> int:
    import methods

    from .data import list_local_datasets
    from .suites import list_suites

    print("suites:   " + ", ".join(list_suites()))
    print("stages:   rerank (cross-encoder), dense (bi-encoder), qlm (causal-LM query likelihood)")
    for family, stages in (("encoder", "rerank, dense"), ("causal-lm", "qlm")):
        names = [n for n in methods.names() if family in methods.get_method(n).families]
        print(f"methods ({stages}): " + ", ".join(names))
    print("also:     bm25 (first stage), none (dense: zero-shot backbone), zero-shot (qlm: untrained LM)")
    local = list_local_datasets()
    print("datasets: " + (", ".join(local) if local else "(none under BENCH_DATA_PATH)")
          + "; or any BEIR folder path, or an ir_datasets id")
    return 0


def _run_command(args) -> int:
    from .runner import run_from_cli

    return run_from_cli(args)


def _report_command(args) -> int:
    from .report.site import build

    index = build(Path(args.runs), args.suite, Path(args.out))
    print(f"report: {index} (and leaderboard.csv / .md / .tex beside it)")
    return 0


def _status_command(args) -> int:
    from .runner import status_from_cli

    return status_from_cli(args)


def _grid_arguments(r) -> None:
    r.add_argument("--suite", default=None, help="suite name or YAML path (default: smoke; smoke-dense "
                   "with --stage dense, smoke-qlm with --stage qlm)")
    r.add_argument("--stage", default=None, help="rerank, dense, qlm, or several comma-separated (overrides the suite's)")
    r.add_argument("--separate-towers", action="store_true",
                   help="dense stage: separate query and document encoders (default: one shared encoder)")
    r.add_argument("--methods", default=None, help="all, or comma-separated names (bm25 = first stage only)")
    r.add_argument("--budgets", default=None, help="comma-separated percentages, paper:0.5 style presets")
    r.add_argument("--seeds", default=None, help="comma-separated integers")
    r.add_argument("--datasets", default=None, help="comma-separated dataset names, paths or ir_datasets ids")
    r.add_argument("--first-stage", default=None, help="bm25s, pyserini, or a TREC run file")
    r.add_argument("--model", default=None, help="override the suite's backbone")
    r.add_argument("--precision", default=None, choices=["no", "bf16", "fp16", "auto"],
                   help="mixed precision (auto: bf16 where the device computes it natively)")
    r.add_argument("--compile", action="store_true", help="torch.compile every model (pays off on long GPU runs)")
    r.add_argument("--epochs", type=int, default=None, help="override the training epochs")
    r.add_argument("--max-steps", type=int, default=None, help="override the training steps")
    r.add_argument("--out", default="runs", help="run store directory (default: runs)")


def _perf_command(args) -> int:
    from .perf import run_perf

    return run_perf(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="PEFT for IR: benchmark and leaderboard")
    sub = parser.add_subparsers(dest="command", required=True)

    m = sub.add_parser("methods", help="knobs and exact parameter counts of every method at a budget")
    m.add_argument("--model", default="bert-base", help="alias (bert-base, minilm, mpnet-base), hub id or path")
    m.add_argument("--budget", default=None, help="percent of backbone parameters (default: the paper's 0.5%% knobs)")
    m.add_argument("--format", choices=["table", "json"], default="table")
    m.set_defaults(func=_methods_command)

    ls = sub.add_parser("list", help="suites, methods and datasets")
    ls.set_defaults(func=_list_command)

    r = sub.add_parser("run", help="run a suite's grid of cells (resumable) and print its leaderboard")
    _grid_arguments(r)
    r.add_argument("--retry-failed", action="store_true", help="run failed and diverged cells again")
    r.add_argument("--launcher", default="local", choices=["local", "ray", "slurm"])
    r.add_argument("--workers", type=int, default=1,
                   help="local launcher: parallel worker processes (one GPU each, or a share of the CPU cores)")
    r.add_argument("--processes-per-cell", type=int, default=None,
                   help="local launcher: data-parallel processes inside each cell (torchrun + accelerate DDP)")
    r.add_argument("--ray-address", default=None, help="ray launcher: the cluster to join (default: start one)")
    r.add_argument("--gpus-per-cell", type=float, default=None, help="ray/slurm: GPUs per cell")
    r.add_argument("--cpus-per-cell", type=float, default=None, help="ray/slurm: CPUs per cell")
    r.add_argument("--slurm-cluster", default=None, choices=["slurm", "local", "debug"],
                   help="submitit executor (default: slurm where sbatch exists, else local)")
    r.add_argument("--slurm-partition", default=None)
    r.add_argument("--slurm-time-min", type=int, default=None)
    r.set_defaults(func=_run_command)

    rp = sub.add_parser("report", help="leaderboards (CSV, Markdown, LaTeX) and a static HTML site from a run store")
    rp.add_argument("--runs", default="runs", help="run store directory (default: runs)")
    rp.add_argument("--suite", default="smoke")
    rp.add_argument("--out", default="reports", help="output directory (default: reports)")
    rp.set_defaults(func=_report_command)

    pf = sub.add_parser("perf", help="throughput, memory and FLOP/s against reference stacks (writes JSON)")
    pf.add_argument("--out", default="perf.json", help="JSON file to write (default: perf.json)")
    pf.add_argument("--stages", default="rerank,dense", help="rerank, dense or both")
    pf.add_argument("--methods", default="full,lora,bitfit,adapter", help="methods to time (full and lora "
                    "also through the reference stack)")
    pf.add_argument("--lengths", default="128,256", help="sequence lengths")
    pf.add_argument("--model", default="minilm")
    pf.add_argument("--precision", default="auto", choices=["no", "bf16", "auto"])
    pf.add_argument("--batch", type=int, default=4, help="queries per training step")
    pf.add_argument("--group", type=int, default=4, help="rerank: passages per query (positive + negatives)")
    pf.add_argument("--steps", type=int, default=6, help="timed training steps")
    pf.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    pf.add_argument("--eval-passages", type=int, default=600, help="passages for the evaluation timings")
    pf.add_argument("--eval-batch", type=int, default=64)
    pf.add_argument("--skip-grid", action="store_true", help="leave out the smoke-suite overhead measurement")
    pf.add_argument("--skip-eval", action="store_true", help="leave out evaluation, its ablations and caches")
    pf.add_argument("--compile-ablation", action="store_true", help="also time training under torch.compile "
                    "(compiling takes minutes on CPU)")
    pf.add_argument("--grid-suite", default="smoke")
    pf.set_defaults(func=_perf_command)

    st = sub.add_parser("status", help="done / running / failed / pending cells of a suite's grid")
    _grid_arguments(st)
    st.set_defaults(func=_status_command)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # methods' user errors come as MethodError
        from methods import MethodError

        if isinstance(exc, MethodError):
            print(f"bench: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
