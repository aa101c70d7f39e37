"""The tables ``bench perf`` prints after writing its JSON."""

from __future__ import annotations

from ..fmt import render


def _gflops(flops: float) -> str:
    return f"{flops / 1e9:.0f} GFLOP/s" if flops < 1e12 else f"{flops / 1e12:.1f} TFLOP/s"


def print_report(report: dict, precision: str, out) -> None:
    print(
        render(
            [
                "stage",
                "method",
                "L",
                "ours ex/s",
                "ref ex/s",
                "ratio",
                "pd ex/s",
                "pd ratio",
                "ours tok/s",
                "% peak",
                "ours MB",
                "ref MB",
                "optimizer MB",
            ],
            [
                [
                    r["stage"],
                    r["method"] + (f" {r['budget']:g}%" if r.get("budget") else ""),
                    str(r["length"]),
                    f"{r['ours']['examples_per_s']:.1f}",
                    f"{r['reference']['examples_per_s']:.1f}" if "reference" in r else "-",
                    f"{r['ratio']:.2f}" if "ratio" in r else "-",
                    f"{r['ours_parallel_dropout']['examples_per_s']:.1f}" if "ours_parallel_dropout" in r else "-",
                    f"{r['ratio_parallel_dropout']:.2f}" if "ratio_parallel_dropout" in r else "-",
                    f"{r['ours']['tokens_per_s']:.0f}",
                    f"{100 * r['ours']['fraction_of_peak']:.1f}",
                    f"{r['ours']['peak_memory_mb']:.0f}",
                    f"{r['reference']['peak_memory_mb']:.0f}" if "reference" in r else "-",
                    f"{r['ours']['optimizer_state_mb']:.1f}",
                ]
                for r in report["training"]
            ],
        )
    )
    evaluation = report.get("evaluation", {})
    for kind, unit in (("rerank", "pairs"), ("encode", "passages")):
        if kind not in evaluation:
            continue
        row = evaluation[kind]
        ours = ", ".join(
            f"{'fp32' if p == 'no' else p} {row[f'ours_{p}_{unit}_per_s']:.1f} (x{row[f'ratio_{p}']:.2f})"
            for p in ("no", precision)
            if f"ratio_{p}" in row
        )
        equal = (
            f"; at equal precision (bf16) x{row['ratio_bf16_equal_precision']:.2f}"
            if "ratio_bf16_equal_precision" in row
            else ""
        )
        print(f"{kind}: sentence-transformers {row[f'reference_{unit}_per_s']:.1f} {unit}/s; ours {ours}{equal}")
    if "qlm" in evaluation:
        row = evaluation["qlm"]
        print(
            "qlm scoring: "
            + ", ".join(f"{k.split('_')[1]} {v:.1f} pairs/s" for k, v in row.items() if k.endswith("_per_s"))
        )
    ablations = report.get("ablations", {})
    if any("speedup" in row for row in ablations.values() if isinstance(row, dict)):
        print(
            "speed-ups, on / off: "
            + "; ".join(f"{name} x{row['speedup']:.2f}" for name, row in ablations.items() if "speedup" in row)
        )
    if "training" in ablations:
        print("training: " + "; ".join(f"{name} x{row['speedup']:.2f}" for name, row in ablations["training"].items()))
    caches = report.get("caches")
    if caches:
        print(
            f"candidates cache x{caches['candidates']['speedup']:.0f} ({caches['candidates']['computed_s']:.2f} s "
            f"-> {caches['candidates']['cached_s']:.3f} s); model load {caches['model_load_s']:.2f} s per cell; "
            f"tokenising the {caches['corpus_passages']} passages {caches['tokenize_corpus_s']:.2f} s"
        )
    if "grid" in report:
        grid = report["grid"]
        print(
            f"grid ({grid['suite']}): {grid['wall_s']:.0f} s wall, {grid['train_and_eval_s']:.0f} s training and "
            f"evaluation, overhead {100 * grid['overhead_fraction']:.1f}%"
        )
    peak = report["peak_matmul_flops"]
    print(f"peak matmul: fp32 {_gflops(peak['fp32'])}, bf16 {_gflops(peak['bf16'])}; written {out}")
