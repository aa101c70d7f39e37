"""Significance with both queries and seeds as sources of variance, each system with its own seed variance.

Per-query metric values y[m, s, q] of system m, seed (training run) s and query q are modelled as
    y = mu_m + u_q + w_qm + v_ms + e_msq
(query difficulty u, query x system interaction w, the run's seed effect v with a variance of its own per
system, residual e; a linear mixed model with crossed query and nested run effects, as Ferro & Silvello
(SIGIR 2016) use for IR and Bouthillier et al. (MLSys 2021) argue for seeds). On the queries both systems
scored, the difference of the means D has variance
    Var(D) = 2 sigma_w^2 / Q + tau_A^2 / n_A + tau_B^2 / n_B,      tau_m^2 = sigma_vm^2 + sigma_em^2 / Q
(tau_m^2: the variance of one seed's mean over the Q queries). Each part is estimated by a mean square
(Searle, Casella & McCulloch, "Variance Components", 1992): tau_m^2 by the variance of system m's seed
means (n_m - 1 df), sigma_em^2 by its seed x query residual mean square, and 2 sigma_w^2 by the variance
over queries of the seed-averaged differences less the residual parts. The statistic D / sqrt(Var) is
referred to Student's t with Satterthwaite's (1946) degrees of freedom, as Welch's (1947) test does for two
variances, with one change of ours: in the df formula each seed variance is replaced by its 80% upper
confidence limit (chi-square, ``UPPER_LEVEL``). Satterthwaite's df is biased high when a seed variance
with 1-4 df is mixed with a well-estimated query part (a seed variance estimated low makes the df large
exactly when the statistic is large), which made far-tail p-values, where Holm looks, too small; the
upper limit lowers the df by a fixed rule. The error rates this gives are measured by the simulation
tests in tests/bench/test_significance.py and scripts/statistics-table.py (docs/statistics.md: plain
Satterthwaite df reject 7% at 0.05 and 2.4% at 0.0056 where one seed variance dominates; this rule 4.4%
and 0.9%), not claimed from the literature.

Systems with too few seeds: each system with two or more seeds keeps its own seed variance (two of two
seeds are not pooled: docs/statistics.md measured the pooled df's error); a trained system with one seed
borrows a pooled estimate (``pooled``) from other trained systems. A system that does not vary with the
seed (BM25, an untrained backbone) has no seed part. With no seed variance to be had at all (one seed
everywhere) the test is the paired t-test over queries (ranx's test), labelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

SEED_AWARE = "t-test, queries and seeds as random effects, a seed variance per system (Satterthwaite df, conservative)"
NO_SEEDS = "paired t-test over queries (no system varies with the seed)"
ONE_SEED = "paired t-test over queries (1 seed: seed variance not accounted for)"
UPPER_LEVEL = 0.8  # the seed variances in the df formula: their one-sided 80% upper confidence limits


@dataclass(frozen=True)
class Test:
    p: float
    difference: float  # mean of a minus mean of b over the shared queries
    statistic: float  # the t statistic
    df: float
    queries: int
    procedure: str
    se: float = math.nan  # the standard error of ``difference``

    def flipped(self) -> Test:
        """The same test read from the other system's side."""
        return replace(self, difference=-self.difference, statistic=-self.statistic)


@dataclass(frozen=True)
class SeedVariance:
    """A trained system's seed variance: the variance of its seed means (``run``, ``df``) and its seed x query
    residual mean square (``residual``, ``df_residual``), from ``seeds`` seeds; ``borrowed`` when pooled from
    other systems."""

    run: float
    df: int
    residual: float
    df_residual: int
    seeds: int
    borrowed: bool = False


def seed_variance(x: np.ndarray) -> SeedVariance | None:
    """The estimate from one system's (seeds, queries) values; None with fewer than two seeds."""
    x = np.atleast_2d(np.asarray(x, float))
    seeds, queries = x.shape
    if seeds < 2 or queries < 2:
        return None
    rows = x.mean(1)
    residual = x - x.mean(0) - rows[:, None] + x.mean()
    df_residual = (seeds - 1) * (queries - 1)
    residual_ms = float((residual**2).sum() / df_residual)
    return SeedVariance(float(rows.var(ddof=1)), seeds - 1, residual_ms, df_residual, seeds)


def pooled(estimates: list[SeedVariance]) -> SeedVariance | None:
    """The df-weighted pool of several systems' estimates (for a system with one seed), or None."""
    own = [e for e in estimates if e is not None and not e.borrowed]
    if not own:
        return None
    df, df_residual = sum(e.df for e in own), sum(e.df_residual for e in own)
    run = sum(e.run * e.df for e in own) / df
    residual = sum(e.residual * e.df_residual for e in own) / df_residual
    return SeedVariance(run, df, residual, df_residual, 1, borrowed=True)


def compare(a: np.ndarray, b: np.ndarray, a_seeds=True, b_seeds=True) -> Test | None:
    """Two-sided test of equal means. ``a``, ``b``: (seeds, queries) per-query values over the same queries.
    ``*_seeds``: False for a system that does not vary with the seed; True to estimate its seed variance
    from its own rows (with one row, borrowed from the other system when that one has two or more); or a
    ``SeedVariance`` to use (a pooled one). None with fewer than two queries."""
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    queries = a.shape[1]
    if queries < 2:
        return None
    estimates = [_estimate(x, s) for x, s in ((a, a_seeds), (b, b_seeds))]
    for i, (x, wanted) in enumerate(((a, a_seeds), (b, b_seeds))):
        if wanted is True and estimates[i] is None and len(x) == 1:
            other = estimates[1 - i]
            if other is not None and not other.borrowed:
                estimates[i] = replace(other, borrowed=True, seeds=1)
    trained = [(len(x), e) for x, s, e in zip((a, b), (a_seeds, b_seeds), estimates) if s is not False]
    d = a.mean(0) - b.mean(0)
    difference = float(d.mean())
    if any(e is None for _, e in trained):
        return _paired(a.mean(0), b.mean(0), difference, queries, ONE_SEED)
    if not trained:
        return _paired(a.mean(0), b.mean(0), difference, queries, NO_SEEDS)
    between = float(d.var(ddof=1)) / queries
    query_part = between - sum(e.residual / (n * queries) for n, e in trained)
    query_terms = [(between, queries - 1)] + [(e.residual / (n * queries), e.df_residual) for n, e in trained]
    seed_terms = _seed_terms(trained)
    var = max(query_part, 0.0) + sum(v for v, _ in seed_terms)
    if var <= 0:
        statistic = math.copysign(math.inf, difference)
        return Test(1.0 if difference == 0 else 0.0, difference, statistic, math.inf, queries, SEED_AWARE, 0.0)
    df = _conservative_df(max(query_part, 0.0), query_terms, seed_terms)
    statistic = difference / math.sqrt(var)
    from scipy import stats

    p = float(2 * stats.t.sf(abs(statistic), df))
    return Test(p, difference, statistic, df, queries, SEED_AWARE, math.sqrt(var))


def _estimate(x: np.ndarray, seeds) -> SeedVariance | None:
    if isinstance(seeds, SeedVariance):
        return seeds
    return seed_variance(x) if seeds is True else None


def _seed_terms(trained: list[tuple[int, SeedVariance]]) -> list[tuple[float, int]]:
    """(variance, df) of the seed parts: one per system, or one for the pair where the two share an estimate
    (one borrows the other's). Two systems of two seeds are not pooled: the pooled df (2) overstates the df
    when one variance dominates, and docs/statistics.md measured that test at 0.08 where 0.05 was due."""
    if len(trained) == 2:
        (na, ea), (nb, eb) = trained
        shared = (ea.borrowed and ea.run == eb.run and ea.df == eb.df) or (
            eb.borrowed and eb.run == ea.run and eb.df == ea.df
        )
        if shared:
            return [(ea.run / na + eb.run / nb, max(ea.df, eb.df))]
    return [(e.run / n, e.df) for n, e in trained]


def _conservative_df(query_part: float, query_terms, seed_terms) -> float:
    """Satterthwaite's df with each seed variance at its ``UPPER_LEVEL`` upper confidence limit."""
    from scipy import stats

    upper = [(v * df / stats.chi2.ppf(1 - UPPER_LEVEL, df), df) for v, df in seed_terms]
    total = query_part + sum(v for v, _ in upper)
    spread = sum(v**2 / df for v, df in query_terms) + sum(v**2 / df for v, df in upper)
    return float(total**2 / spread) if spread > 0 else math.inf


def _paired(x: np.ndarray, y: np.ndarray, difference: float, queries: int, procedure: str) -> Test:
    """The paired t-test over queries (ranx's paired Student's t-test; scipy gives its statistic)."""
    from scipy import stats

    se = float(np.std(x - y, ddof=1) / math.sqrt(queries))
    if np.allclose(x, y):
        return Test(1.0, difference, 0.0, queries - 1, queries, procedure, se)
    result = stats.ttest_rel(x, y)
    return Test(float(result.pvalue), difference, float(result.statistic), queries - 1, queries, procedure, se)


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
