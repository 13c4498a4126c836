"""Per-patch-size means of log L, the seeds' pure error, and the checks on a group's values before any fit.

Both laws (laws.py) are fitted to the means ȳ_p of y = log L over the n_p seeds at each patch size
p (the log of the geometric mean), weighted by w_p = 1/SE_p² = n_p/σ_p², with σ_p² the variance of
log L between seeds at patch size p: the pure error pooled over all patch sizes (df = runs − patch
sizes; 10 with 5 sizes × 3 seeds), unless Bartlett's test says the sizes differ
(p < EQUAL_VARIANCE_LEVEL), in which case each size keeps its own variance and every t and F
quantile uses the smallest per-size df (2 with 3 seeds). With pooled variance the weights are
n_p/σ̂², the fit of the unweighted-by-variance means.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

EQUAL_VARIANCE_LEVEL = 0.05  # Bartlett's test below this p-value: per-size variances.


class FitError(ValueError):
    """The data cannot support the fit (too few patch sizes, non-finite or non-positive values)."""


@dataclasses.dataclass
class Means:
    """Per-patch-size summary of the runs: what both laws are fitted to, and the seed noise."""

    p: np.ndarray  # Distinct patch sizes, descending.
    y: np.ndarray  # Mean of log L over the seeds.
    n: np.ndarray  # Seeds per patch size.
    s2: np.ndarray  # Variance of log L between the seeds at each size (NaN with one run).
    sigma2: float | None  # Pooled pure-error variance of log L (None: no replicates, or all equal).
    df: int  # Its degrees of freedom: runs − patch sizes.
    n_runs: int
    equal_variances: dict | None = None  # Bartlett's test over the sizes with replicates (None: not testable).
    per_size: bool = False  # True: variances differ (the test rejects), each mean keeps its own.
    robust: float | None = None  # Median-based pooled variance: the floor of the per-size variances.

    @property
    def var(self) -> np.ndarray | None:
        """Variance of one run's log L at each size (None without pure error)."""
        if self.sigma2 is None:
            return None
        return np.maximum(self.s2, self.robust) if self.per_size else np.full(self.p.size, self.sigma2)

    @property
    def weights(self) -> np.ndarray:
        """1/SE² of each mean (n_p without pure error: the same fit, in other units)."""
        var = self.var
        return self.n if var is None else self.n / var

    @property
    def df_t(self) -> float:
        """Degrees of freedom of the t and F quantiles: pooled, or the smallest per-size df."""
        return float(self.n.min() - 1) if self.per_size else float(self.df)


def validate(p, loss, seeds) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    p = np.asarray(p, np.float64).ravel()
    loss = np.asarray(loss, np.float64).ravel()
    if p.shape != loss.shape:
        raise FitError(f"{p.size} patch sizes but {loss.size} losses")
    if seeds is not None:
        seeds = np.asarray(seeds).ravel()
        if seeds.shape != p.shape:
            raise FitError(f"{seeds.size} seeds for {p.size} runs")
    bad = ~np.isfinite(loss)
    if bad.any():
        raise FitError(f"non-finite values at patch sizes {sorted(set(p[bad].tolist()))}:"
                       " exclude failed runs before fitting")
    zero = loss <= 0
    if zero.any():
        raise FitError(f"values of 0 or below at patch sizes {sorted(set(p[zero].tolist()))} (a test error of"
                       " exactly 0?): the laws are fitted on a log scale, which cannot hold 0; fit the test loss")
    if not np.all(np.isfinite(p)) or (p <= 0).any():
        raise FitError("patch sizes must be positive and finite")
    distinct = np.unique(p)
    if distinct.size < 3:
        raise FitError(f"need at least 3 distinct patch sizes to fit a 3-parameter law, got {distinct.tolist()}")
    if np.ptp(loss) <= 1e-12 * np.abs(loss).max():
        raise FitError("all values are equal: there is no trend in patch size to fit")
    return p, loss, seeds


def means(p, loss) -> Means:
    """Means of log L per patch size, the pooled pure error, and the choice between it and
    per-size variances (Bartlett's test at EQUAL_VARIANCE_LEVEL)."""
    log_loss = np.log(loss)
    distinct = np.unique(p)[::-1]
    groups = [log_loss[p == value] for value in distinct]
    n = np.asarray([g.size for g in groups], np.float64)
    y = np.asarray([g.mean() for g in groups])
    s2 = np.asarray([g.var(ddof=1) if g.size > 1 else np.nan for g in groups])
    df = int(p.size - distinct.size)
    ss = float(sum(((g - g.mean()) ** 2).sum() for g in groups))
    sigma2 = ss / df if df > 0 and ss > 1e-24 * p.size else None
    replicated = [g for g in groups if g.size > 1]
    test, per_size = None, False
    if sigma2 is not None and len(replicated) >= 2 and all(g.var() > 1e-24 for g in replicated):
        statistic, p_value = stats.bartlett(*replicated)
        test = {"test": "Bartlett", "statistic": float(statistic), "df": len(replicated) - 1,
                "p_value": float(p_value)}
        per_size = p_value < EQUAL_VARIANCE_LEVEL and len(replicated) == len(groups)
    # A pooled variance that one noisy size cannot inflate: the median of the per-size variances over
    # the median of its χ²_ν/ν (ν = the typical seeds − 1). Per-size variances are floored at it, so a
    # size whose seeds agree by chance does not take all the weight.
    nu = float(np.median(n[n > 1] - 1)) if (n > 1).any() else 1.0
    robust = float(np.nanmedian(s2) / (stats.chi2.median(nu) / nu)) if per_size else None
    return Means(distinct, y, n, s2, sigma2, df, int(p.size), test, per_size, robust)
