"""The calibration and power table of docs/statistics.md, by simulation at the published boards' measured
variance components (estimated from their committed records) and at seed-heavy designs:

    python scripts/statistics-table.py > docs/statistics-table.md      # about 2 minutes on 2 cores

Model per system m, seed s, query q: y = u_q + w_qm + v_ms + e_msq (+ the true difference), Gaussian parts;
u: query difficulty, w: query x system interaction, v: the seed's effect, e: seed x query residual. The test
is bench.report.significance.compare, the one every table and claim 1 use. Beside it, for the record only,
the same statistic with plain Satterthwaite df (the alternative issue 33 proposed; the report has one test).
"""

import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench.report.significance as significance  # noqa: E402
from bench.commands.records import judged  # noqa: E402
from bench.report.stats import _aligned, _matrix, build_rows, families  # noqa: E402
from bench.results import read_records  # noqa: E402

Q = 300
REPLICATES = 4000
DELTAS = (0.01, 0.02, 0.05)
CLAIM_ONE = 9  # PEFT rows against full fine-tuning on each board
ALPHA = 0.05


def components(board: str) -> dict:
    """sigma_w; (sigma_v, sigma_e) of full fine-tuning and the median PEFT method, nDCG@10 at budget 0.5."""
    cells = [judged(c) for c in read_records(ROOT / "reports" / "published" / board / "results.jsonl")]
    rows = build_rows(cells, {"rerank": ["ndcg@10"], "dense": ["ndcg@10"]}, compare=False)
    family = next(f for (_, _, metric, budget), f in families(rows).items() if metric == "ndcg@10" and budget == "0.5")
    tested, queries = _aligned(family)
    parts, w = {}, []
    matrices = {r.method: _matrix(r, queries) for r in tested if r.role.trains and len(r.runs) >= 2}
    for method, x in matrices.items():
        e = significance.seed_variance(x)
        parts[method] = (math.sqrt(max(e.run - e.residual / len(queries), 0.0)), math.sqrt(e.residual))
    full = matrices["full"]
    for method, x in matrices.items():
        if method != "full":
            d = x.mean(0) - full.mean(0)
            w.append((d.var(ddof=1) - parts[method][1] ** 2 / len(x) - parts["full"][1] ** 2 / len(full)) / 2)
    peft = sorted((p for m, p in parts.items() if m != "full"), key=lambda p: p[0] ** 2 + p[1] ** 2 / Q)
    return {"w": math.sqrt(max(float(np.median(w)), 0.0)), "full": parts["full"], "peft": peft[len(peft) // 2]}


def plain_df(query_part, query_terms, seed_terms):
    total = query_part + sum(v for v, _ in seed_terms)
    spread = sum(v**2 / df for v, df in query_terms) + sum(v**2 / df for v, df in seed_terms)
    return float(total**2 / spread) if spread > 0 else math.inf


def system(rng, u, seeds, w, v, e, shift=0.0):
    return u + shift + rng.normal(0, w, Q) + rng.normal(0, v, (seeds, 1)) + rng.normal(0, e, (seeds, Q))


def p_values(design, replicates, delta, seed, comparisons=1):
    """(replicates, comparisons) p-values: ``comparisons`` B systems each against one shared A."""
    w, (na, va, ea), (nb, vb, eb) = design
    rng = np.random.default_rng(seed)
    out = np.empty((replicates, comparisons))
    for i in range(replicates):
        u = rng.normal(0, 0.2, Q)
        a = system(rng, u, na, w, va, ea, delta)
        for j in range(comparisons):
            out[i, j] = significance.compare(a, system(rng, u, nb, w, vb, eb)).p
    return out


def detectable(design, alpha):
    """(t_{1-alpha/2} + t_0.8) x the expected standard error, at the expected Satterthwaite df."""
    w, (na, va, ea), (nb, vb, eb) = design
    seed_a, seed_b = (va**2 + ea**2 / Q) / na, (vb**2 + eb**2 / Q) / nb
    query = 2 * w**2 / Q
    df = (query + seed_a + seed_b) ** 2 / (query**2 / (Q - 1) + seed_a**2 / (na - 1) + seed_b**2 / (nb - 1))
    se = math.sqrt(query + seed_a + seed_b)
    return (stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(0.8, df)) * se


def row(name, design, rule):
    significance._conservative_df = rule
    null = p_values(design, REPLICATES, 0.0, 1)[:, 0]
    power = [float((p_values(design, REPLICATES // 4, d, 2)[:, 0] <= ALPHA).mean()) for d in DELTAS]
    claim = p_values(design, REPLICATES // 4, 0.0, 3, CLAIM_ONE)
    fwer = float(np.mean([multipletests(p, ALPHA, method="holm")[0].any() for p in claim]))
    return (
        f"| {name} | {(null <= ALPHA).mean():.4f} | {(null <= ALPHA / CLAIM_ONE).mean():.4f} | {fwer:.3f} | "
        + " | ".join(f"{x:.2f}" for x in power)
        + f" | {detectable(design, ALPHA):.4f} | {detectable(design, ALPHA / CLAIM_ONE):.4f} |"
    )


def main() -> None:
    import gc

    gc.collect = lambda *args: 0  # statsmodels' Holm collects garbage on every call; the numbers are alike
    chosen = significance._conservative_df
    designs = {}
    for board in ("board-scifact-rerank", "board-scifact-dense"):
        c = components(board)
        short = board.removeprefix("board-scifact-")
        print(
            f"- {short}: sigma_w {c['w']:.4f}; full fine-tuning sigma_v {c['full'][0]:.4f}, "
            f"sigma_e {c['full'][1]:.4f}; the median PEFT method sigma_v {c['peft'][0]:.4f}, sigma_e {c['peft'][1]:.4f}"
        )
        for na, nb in ((3, 3), (5, 3), (3, 2)):
            designs[f"{short} {na} vs {nb}"] = (c["w"], (na, *c["full"]), (nb, *c["peft"]))
    heavy = (0.076, (0.02, 0.119), (0.002, 0.036))
    for na, nb in ((3, 3), (5, 3), (2, 2)):
        designs[f"seed-heavy {na} vs {nb}"] = (heavy[0], (na, *heavy[1]), (nb, *heavy[2]))
    print()
    header = (
        "| design (full vs PEFT seeds) | type I at 0.05 | type I at 0.05/9 | claim 1 FWER (9 vs 1, Holm) | "
        "power Δ 0.01 | Δ 0.02 | Δ 0.05 | detectable Δ (80%, α 0.05, analytic) | detectable Δ (α 0.05/9) |"
    )
    for label, rule in (("the report's test (80% upper limits in the df)", chosen), ("plain Satterthwaite", plain_df)):
        print(f"{label}:\n\n{header}\n|---|---|---|---|---|---|---|---|---|")
        for name, design in designs.items():
            print(row(name, design, rule), flush=True)
        print()


if __name__ == "__main__":
    main()
