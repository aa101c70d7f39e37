"""The LLM reranker board's answers (bench/report/qlm_claims.py) from a toy store: each question in its own
family, the p values those of the seed-aware test, Holm as statsmodels computes it, non-inferiority read
from the 90% interval."""

import re

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from bench.report.claims import non_inferiority
from bench.report.qlm_claims import claims, pair_test
from bench.report.stats import build_rows
from bench.results import scan
from helpers.reports import QUERIES, write_cell

LEVELS = {"zero-shot": 0.40, "soft-prompt": 0.45, "lora": 0.60, "qpeft-r": 0.59, "qpeft-a": 0.50}


@pytest.fixture
def rows(tmp_path):
    rng = np.random.default_rng(3)
    runs = tmp_path / "runs"
    for dataset in ("toy/test", "other/test"):
        for method, level in LEVELS.items():
            seeds = [0] if method == "zero-shot" else [0, 1, 2]
            for seed in seeds:
                values = np.clip(level + rng.normal(0, 0.05, len(QUERIES)), 0, 1).tolist()
                budget = "0.5" if method == "lora" else "native"
                name = f"{method}{seed}{dataset[:3]}"
                write_cell(runs, name, method, budget, seed, values, dataset=dataset, stage="qlm")
    return build_rows(scan(runs / "mini"), {"qlm": ["ndcg@10"]})


def _row(rows, method, dataset):
    return next(r for r in rows if r.method == method and r.dataset == dataset and r.values)


def _section(lines, number):
    start = next(i for i, x in enumerate(lines) if x.startswith(f"{number}. "))
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^\d\. ", lines[i])), len(lines))
    return lines[start:end]


def test_q_peft_against_soft_prompt_is_holm_over_its_own_comparisons(rows):
    lines = claims(rows, {"toy/test"}, margin=0.02)
    assert "toy/test (in domain)" in lines[0] and "other/test (out of domain)" in lines[0]
    section = _section(lines, 1)
    pairs = [(m, d) for d in ("toy/test", "other/test") for m in ("qpeft-r", "qpeft-a")]
    raw = [pair_test(_row(rows, m, d), _row(rows, "soft-prompt", d)).p for m, d in pairs]
    expected = multipletests(raw, 0.05, method="holm")[1]
    assert "Holm over these 4 comparisons" in section[0]
    for (m, d), p, q in zip(pairs, raw, expected, strict=True):
        line = next(x for x in section if x.startswith(f"   - {m} on {d}"))
        assert f"p {p:.4f}, Holm p {q:.4f}" in line


def test_q_peft_against_lora_reads_the_interval_at_the_declared_margin(rows):
    section = _section(claims(rows, {"toy/test"}, margin=0.02), 2)
    for m in ("qpeft-r", "qpeft-a"):
        test = pair_test(_row(rows, m, "toy/test"), _row(rows, "lora", "toy/test"))
        answer, low, high = non_inferiority(test, 0.02)
        line = next(x for x in section if x.startswith(f"   - {m} on toy/test"))
        assert f"**{answer}**" in line and f"[{low:+.4f}, {high:+.4f}]" in line
    assert "**no**" in next(x for x in section if x.startswith("   - qpeft-a on toy/test"))  # 0.10 below LoRA
    assert "Not answered" in _section(claims(rows, {"toy/test"}, margin=None), 2)[0]


def test_every_trained_method_against_zero_shot_on_every_dataset(rows):
    section = _section(claims(rows, {"toy/test"}, margin=0.02), 3)
    assert "Holm over these 8 comparisons" in section[0]
    lora = next(x for x in section if x.startswith("   - lora on other/test"))
    assert "significantly above" in lora  # 0.60 against 0.40 over 8 queries and 3 seeds
