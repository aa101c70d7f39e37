"""Significance with both queries and seeds as sources of variance.

Per-query metric values y[m, s, q] of method m, seed (training run) s and query q are modelled as
    y = mu_m + u_q + w_qm + v_ms + e_msq
(query difficulty u, query x method interaction w, the run's seed effect v, residual e; a linear mixed
model with crossed query and nested run effects, as Ferro & Silvello (SIGIR 2016) use for IR and
Bouthillier et al. (MLSys 2021) argue for seeds). The difference of the two means, D, has variance
    Var(D) = Var over queries of the seed-averaged per-query difference / Q     (query sampling: u, w, e)
           + (1/n_A + 1/n_B) * sigma_v^2                                       (seed sampling: v)
estimated with the balanced-design ANOVA (method of moments) estimators (Searle, Casella & McCulloch,
"Variance Components", 1992): sigma_v^2 = max(0, MS_run - MS_residual / Q). The statistic D / sqrt(Var)
is referred to Student's t with Satterthwaite's (1946) degrees of freedom. With no seed variance it is
the paired t-test over queries on seed-averaged values; with one seed per system it is exactly that
test (ranx's), labelled: the seeds' variance is then not accounted for. A deterministic system (BM25,
an untrained backbone) has no seed effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SEED_AWARE = "t-test, queries and seeds as random effects (Satterthwaite df)"
ONE_SEED = "paired t-test over queries (1 seed: seed variance not accounted for)"


@dataclass(frozen=True)
class Test:
    p: float
    difference: float  # mean of a minus mean of b over the shared queries
    statistic: float
    df: float
    queries: int
    procedure: str


def compare(a: np.ndarray, b: np.ndarray, a_random: bool = True, b_random: bool = True) -> Test | None:
    """Two-sided test of equal means. ``a``, ``b``: (runs, queries) per-query values over the same queries
    (one row per seed); ``*_random``: whether the system's runs vary with the seed. None with fewer than
    two queries."""
    from scipy import stats

    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    queries = a.shape[1]
    if queries < 2:
        return None
    d = a.mean(0) - b.mean(0)
    difference = float(d.mean())
    query_var = float(d.var(ddof=1)) / queries
    random = [x for x, r in ((a, a_random), (b, b_random)) if r and len(x) >= 2]
    if not random:
        return _one_seed(a.mean(0), b.mean(0), difference, queries)
    ms_run = sum(((x.mean(1) - x.mean()) ** 2).sum() for x in random) / (df_run := sum(len(x) - 1 for x in random))
    residual = sum(((x - x.mean(0) - x.mean(1, keepdims=True) + x.mean()) ** 2).sum() for x in random)
    df_res = sum((len(x) - 1) * (queries - 1) for x in random)
    ms_res = residual / df_res
    seed_var = max(0.0, ms_run - ms_res / queries)
    c = (1 / len(a) if a_random else 0.0) + (1 / len(b) if b_random else 0.0)
    var = query_var + c * seed_var
    if var <= 0:
        return Test(1.0 if difference == 0 else 0.0, difference, math.inf, math.inf, queries, SEED_AWARE)
    if seed_var > 0:
        df = var**2 / (query_var**2 / (queries - 1) + (c * ms_run) ** 2 / df_run + (c * ms_res / queries) ** 2 / df_res)
    else:
        df = queries - 1
    statistic = difference / math.sqrt(var)
    return Test(float(2 * stats.t.sf(abs(statistic), df)), difference, statistic, float(df), queries, SEED_AWARE)


def _one_seed(x: np.ndarray, y: np.ndarray, difference: float, queries: int) -> Test:
    from ranx.statistical_tests import paired_student_t_test

    if np.allclose(x, y):
        return Test(1.0, difference, 0.0, queries - 1, queries, ONE_SEED)
    p, statistic = paired_student_t_test(x, y, max_p=0.05)
    return Test(float(p), difference, float(statistic), queries - 1, queries, ONE_SEED)


def holm(p_values: list[float], alpha: float = 0.05) -> list[float]:
    """Holm's step-down adjusted p-values (statsmodels)."""
    from statsmodels.stats.multitest import multipletests

    if not p_values:
        return []
    return [float(p) for p in multipletests(p_values, alpha=alpha, method="holm")[1]]


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """Student's t confidence interval of the mean over seeds (None with one value)."""
    from scipy import stats

    if len(values) < 2:
        return None
    mean, sem = float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(len(values)))
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * sem
    return mean - half, mean + half
