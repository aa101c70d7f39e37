"""The ``bench`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import BenchError
from .flags import GRID_FLAGS
from .interrupts import restore_sigterm, sigterm_exits, sigterm_interrupts


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
        if method.fixed:  # bench run trains it once, at its one size, whatever the grid's budgets
            runnable, note = True, f"one size: {p.pct:.3f}% whatever the budget"
        else:
            runnable, note = p.applicable, p.reason
        if method.takes_token_ids:
            note = "; ".join(
                filter(None, [note, f"plus {config.hidden_size} per embedding row it trains (counted at run time)"])
            )
        rows.append(
            {
                "method": name,
                "knobs": p.knobs,
                "trainable": p.trainable,
                "backbone": p.backbone,
                "pct": round(p.pct, 4),
                "applicable": p.applicable,
                "runnable": runnable,
                "reason": note,
            }
        )
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    from .fmt import render

    budget = "paper's 0.5% knobs" if args.budget is None else f"{args.budget}%"
    print(f"model {args.model} ({rows[0]['backbone']:,} backbone parameters), budget {budget}")
    table = [
        [
            r["method"],
            " ".join(f"{k}={v}" for k, v in r["knobs"].items()) or "-",
            f"{r['trainable']:,}",
            f"{r['pct']:.3f}",
            ("yes" + (f" ({r['reason']})" if r["reason"] else "")) if r["runnable"] else "no: " + r["reason"],
        ]
        for r in rows
    ]
    print(render(["method", "knobs", "trainable", "% backbone", "bench run trains it"], table))
    return 0


def _list_command(args) -> int:
    import methods

    from . import systems
    from .config import list_suites
    from .data import list_local_datasets
    from .stages import all_stages

    stages = all_stages()
    print("suites:   " + ", ".join(list_suites()))
    print("stages:   " + ", ".join(f"{s.name} ({s.summary})" for s in stages))
    for family in dict.fromkeys(s.family for s in stages):  # in the stages' order
        names = [n for n in methods.names() if family in methods.get_method(n).families]
        print(f"methods ({', '.join(s.name for s in stages if s.family == family)}): " + ", ".join(names))
    print("baselines: " + "; ".join(f"{b.name} ({b.summary})" for b in systems.BASELINES.values()))
    local = list_local_datasets()
    print(
        "datasets: "
        + (", ".join(local) if local else "(none under BENCH_DATA_PATH)")
        + "; or any BEIR folder path, or an ir_datasets id"
    )
    return 0


def _run_command(args) -> int:
    from .commands.run import run_from_cli

    return run_from_cli(args)


def _report_command(args) -> int:
    from .commands.report import report_from_cli

    return report_from_cli(args)


def _publish_command(args) -> int:
    from .commands.report import publish_from_cli

    return publish_from_cli(args)


def _export_command(args) -> int:
    from .export import export_from_cli

    return export_from_cli(args)


def _migrate_command(args) -> int:
    from .commands.records import migrate_from_cli

    return migrate_from_cli(args)


def _verify_command(args) -> int:
    from .commands.records import verify_from_cli

    return verify_from_cli(args)


def _import_command(args) -> int:
    from .commands.records import import_from_cli

    return import_from_cli(args)


def _recompute_command(args) -> int:
    from .commands.records import recompute_from_cli

    return recompute_from_cli(args)


def _status_command(args) -> int:
    from .commands.status import status_from_cli

    return status_from_cli(args)


def _grid_arguments(r, store_flag: str = "--out") -> None:
    """The flags that define a grid: the same meaning in run, status and report."""
    r.add_argument(
        "--suite",
        default=None,
        help="suite name or YAML path (default: smoke; the stage's smoke suite with one --stage)",
    )
    r.add_argument(
        "--stage", default=None, help="rerank, dense, qlm, or several comma-separated (overrides the suite's)"
    )
    r.add_argument(
        "--separate-towers",
        action="store_true",
        help="dense stage: separate query and document encoders (default: one shared encoder)",
    )
    r.add_argument("--methods", default=None, help="all, or comma-separated names (bm25 = first stage only)")
    r.add_argument("--budgets", default=None, help="comma-separated percentages, paper:0.5 style presets")
    r.add_argument("--seeds", default=None, help="comma-separated integers")
    r.add_argument("--datasets", default=None, help="comma-separated dataset names, paths or ir_datasets ids")
    r.add_argument("--first-stage", default=None, help="bm25s, pyserini, irds, official-run, or a TREC run file")
    r.add_argument("--model", default=None, help="override the suite's backbone")
    r.add_argument(
        "--precision",
        default=None,
        choices=["no", "bf16", "fp16", "auto"],
        help="mixed precision (auto: bf16 where the device computes it natively)",
    )
    r.add_argument("--compile", action="store_true", help="torch.compile every model (pays off on long GPU runs)")
    r.add_argument("--epochs", type=positive_int, default=None, help="override the training epochs")
    r.add_argument("--max-steps", type=positive_int, default=None, help="override the training steps")
    r.add_argument(
        "--max-queries", type=positive_int, default=None, help="evaluate on a fixed, seeded subset of this many queries"
    )
    r.add_argument("--batch-size", type=positive_int, default=None, help="scoring / encoding batch size")
    r.add_argument(
        "--depth", type=positive_int, default=None, help="candidates reranked (rerank, qlm) or retrieved (dense)"
    )
    r.add_argument("--metrics", default=None, help="comma-separated ranx metrics (default: the stage's)")
    r.add_argument(
        "--search",
        action="append",
        default=None,
        metavar="SETTING=V1,V2",
        help="search a train setting on the validation data (repeatable; replaces the suite's search of it)",
    )
    r.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="the device the grid is meant for: picks the suite's profile (GPU-sized batches on cuda)",
    )
    if store_flag == "--out":
        r.add_argument("--out", default="runs", help="run store directory")


def _perf_command(args) -> int:
    from .perf import run_perf

    return run_perf(args)


class Parser(argparse.ArgumentParser):
    """argparse with errors as the rest of bench: one line, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"bench: error: {self.prog}: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be 1 or more")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


SUITE_FLAGS = set(GRID_FLAGS)  # unset, their value comes from the suite


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every default shown, except the empty ones: an option whose value otherwise comes from the suite (or
    is simply off) says so instead of "(default: None)"."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None and action.option_strings and "%(default)" not in text:
            from_suite = action.dest in SUITE_FLAGS and "suite" not in text and "default" not in text
            return text + " (default: the suite's)" if from_suite else text
        if action.default is False or action.default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def _parser(sub, name: str, **kwargs):
    return sub.add_parser(name, formatter_class=HelpFormatter, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bench", description="PEFT for IR: benchmark and leaderboard", formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    m = _parser(sub, "methods", help="knobs and exact parameter counts of every method at a budget")
    m.add_argument("--model", default="bert-base", help="alias (bert-base, minilm, mpnet-base), hub id or path")
    m.add_argument("--budget", default=None, help="percent of backbone parameters (default: the paper's 0.5%% knobs)")
    m.add_argument("--format", choices=["table", "json"], default="table")
    m.set_defaults(func=_methods_command)

    ls = _parser(sub, "list", help="suites, methods and datasets")
    ls.set_defaults(func=_list_command)

    r = _parser(sub, "run", help="run a suite's grid of cells (resumable) and print its leaderboard")
    _grid_arguments(r)
    r.add_argument("--retry-failed", action="store_true", help="run failed and diverged cells again")
    r.add_argument(
        "--resume-from",
        action="append",
        default=None,
        metavar="RESULTS.jsonl",
        help="first import these records (another store's finished cells) as finished cells (repeatable)",
    )
    r.add_argument("--launcher", default="local", choices=["local", "ray", "slurm"], help="how cells reach workers")
    r.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="local launcher: parallel worker processes (one GPU each, or a share of the CPU cores)",
    )
    r.add_argument(
        "--processes-per-cell",
        type=positive_int,
        default=None,
        help="local launcher: data-parallel processes inside each cell (torchrun + accelerate DDP)",
    )
    r.add_argument("--ray-address", default=None, help="ray launcher: the cluster to join (default: start one)")
    r.add_argument("--gpus-per-cell", type=positive_float, default=None, help="ray/slurm: GPUs per cell")
    r.add_argument("--cpus-per-cell", type=positive_float, default=None, help="ray/slurm: CPUs per cell")
    r.add_argument(
        "--slurm-cluster",
        default=None,
        choices=["slurm", "local", "debug"],
        help="submitit executor (default: slurm where sbatch exists, else local)",
    )
    r.add_argument("--slurm-partition", default=None, help="slurm launcher: the partition")
    r.add_argument("--slurm-time-min", type=positive_int, default=None, help="slurm launcher: minutes per cell")
    r.set_defaults(func=_run_command)

    rp = _parser(sub, "report", help="leaderboards (CSV, Markdown, LaTeX) and a static HTML site from a run store")
    _grid_arguments(rp, store_flag="--runs")
    rp.add_argument("--runs", default="runs", help="run store directory")
    rp.add_argument("--out", default="reports", help="output directory")
    rp.add_argument(
        "--format",
        choices=["site", "jsonl", "md"],
        default="site",
        help="site: leaderboards, the static site and results.jsonl; jsonl: the cell records alone; md: the "
        "headline table per stage as Markdown on stdout (writes nothing)",
    )
    rp.add_argument(
        "--include",
        action="append",
        default=None,
        metavar="RESULTS.jsonl",
        help="merge the cells of another store's results.jsonl into this report (repeatable)",
    )
    rp.set_defaults(func=_report_command)

    pb = _parser(sub, "publish", help="a board's report and README (commands, commit, machine, claims) to publish")
    _grid_arguments(pb, store_flag="--runs")
    pb.add_argument("--runs", default="runs", help="run store directory")
    pb.add_argument("--out", default="reports/published", help="the folder of published boards")
    pb.add_argument(
        "--as", dest="publish_as", default=None, metavar="NAME", help="the board's folder (default: the suite's name)"
    )
    pb.add_argument("--include", action="append", default=None, metavar="RESULTS.jsonl", help=argparse.SUPPRESS)
    pb.add_argument(
        "--command",
        action="append",
        default=None,
        metavar="TEXT",
        help="a command that made the store, for the README (repeatable; default: bench run --suite SUITE)",
    )
    pb.set_defaults(func=_publish_command)

    ex = _parser(
        sub, "export", help="a finished cell as a model others load (transformers, sentence-transformers, peft)"
    )
    ex.add_argument("cell", help="the cell's folder: RUN_DIR/<suite>/<cell-id>")
    ex.add_argument("--format", choices=["hf", "sentence-transformers", "peft"], default="hf", help="what to write")
    ex.add_argument("--out", required=True, help="a new folder for the model and its card")
    ex.set_defaults(func=_export_command)

    so = _parser(sub, "store", help="run store maintenance")
    store_sub = so.add_subparsers(dest="store_command", required=True)
    mg = _parser(store_sub, "migrate", help="rename the folders of a store written before cell ids version 2")
    _grid_arguments(mg)
    mg.set_defaults(func=_migrate_command)
    rc = _parser(
        store_sub,
        "recompute",
        help="set cells aside (a result this version cannot read, or one to run again): never deleted",
    )
    rc.add_argument("cells", nargs="+", help="cell folders: RUN_DIR/<suite>/<cell-id>")
    rc.set_defaults(func=_recompute_command)
    im = _parser(store_sub, "import", help="another store's records (results.jsonl) as finished cells of this store")
    _grid_arguments(im)
    im.add_argument("records", nargs="+", help="results.jsonl files written by bench report")
    im.set_defaults(func=_import_command)

    vf = _parser(sub, "verify", help="re-run a sample of a published board's cells and compare every metric")
    vf.add_argument("board", help="reports/published/<board> (its results.jsonl) or a results.jsonl file")
    vf.add_argument("-k", type=positive_int, default=2, help="cells to re-run, spread over methods")
    vf.add_argument("--seed", type=int, default=0, help="which cells the sample takes")
    vf.add_argument("--budget", default=None, help="sample only cells of this budget (as recorded: 0.1, native)")
    vf.add_argument("--tolerance", type=positive_float, default=1e-6, help="largest difference that agrees")
    vf.add_argument(
        "--same-machine",
        action="store_true",
        help="sample only cells recorded on this machine's CPU model and thread count (or GPU)",
    )
    vf.add_argument("--out", default=None, help="the fresh store of the re-runs (default: a new temporary folder)")
    vf.set_defaults(func=_verify_command)

    pf = _parser(sub, "perf", help="throughput, memory and FLOP/s against reference stacks (writes JSON)")
    from .perf import add_arguments

    add_arguments(pf)
    pf.set_defaults(func=_perf_command)

    st = _parser(sub, "status", help="done / running / failed / pending cells of a suite's grid")
    _grid_arguments(st)
    st.set_defaults(func=_status_command)
    return parser


def _fail(message: str) -> int:
    """The one error line, on a line of its own (progress bars closed first)."""
    from tqdm.auto import tqdm

    for bar in list(getattr(tqdm, "_instances", [])):
        bar.close()
    print(f"bench: error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    previous = sigterm_interrupts()
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except KeyboardInterrupt as exc:
        name = getattr(exc, "signal_name", "SIGINT")
        print(f"bench: interrupted ({name}); run the same command again to resume", file=sys.stderr)
        return 143 if name == "SIGTERM" else 130
    except BenchError as exc:
        return _fail(str(exc))
    except BrokenPipeError:  # `bench ... | head`: the reader left; leave quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # methods' user errors come as MethodError
        from methods import MethodError

        if isinstance(exc, MethodError):
            return _fail(str(exc))
        raise
    finally:
        restore_sigterm(previous)


def program() -> None:
    """The ``bench`` executable: a SIGTERM before or after the command's work also ends in 143."""
    sigterm_exits()
    sys.exit(main())


if __name__ == "__main__":
    program()
