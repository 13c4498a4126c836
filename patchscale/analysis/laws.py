"""One group's scaling laws: a test metric L (loss or top-1 error) against patch size p.

With intervals that hold their coverage at three seeds, and the diagnostics a reader needs to
trust them.

Forms (docs/statistics.md):

* saturating  L(p) = E + A·p^α   (saturating.py: its fit, intervals, band and notes)
* power       log L = c + s·log p

Estimator: weighted least squares on log L at the per-patch-size means. With y = log L of one
run and ȳ_p the mean of y over the n_p seeds at patch size p (the log of the geometric mean),
both laws minimise

    S(θ) = Σ_p w_p · (ȳ_p − log L_θ(p))²,   w_p = 1/SE_p² = n_p/σ_p²,

with σ_p² the seeds' variance of log L at patch size p, pooled or per size (means.py). The power
law is linear in (c, s): closed form, and its intervals and band are the exact t intervals of a
linear model. Measured coverage of both laws: scripts/fit_coverage.py
(results/statistics/fit_coverage.json) and tests/test_fit.py.

Diagnostics: lack-of-fit F test (the law's residuals against the pure error) and the number of
seeds behind every mean; steps.py's `paired_steps` (does p/2 beat p, paired by seed) needs no law.
Form choice (`choose`): AIC on the means with the pure error taken as known; a law with k
parameters needs k + 2 patch sizes to be compared; no choice when ΔAIC < 2.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

from patchscale.analysis import saturating
from patchscale.analysis.means import Means, means, validate
from patchscale.analysis.stats import json_safe, t_quantile

PARAMS = {"saturating": ("E", "A", "alpha"), "power": ("c", "s")}


@dataclasses.dataclass
class Fit:
    form: str  # "saturating" or "power"
    params: dict[str, float]
    intervals: dict[str, list[float] | None] | None  # Per parameter; None = not identified. All None: no pure error.
    band: dict[str, list[float]] | None  # {"p", "lo", "hi"}: interval of L̂(p) at `level` (None without pure error).
    level: float
    rss: float  # S at the optimum: Σ n_p (ȳ_p − log L̂(p))².
    aic: float | None  # Σ (ȳ_p − log L̂(p))²/SE_p² + 2k (S/σ̂² + 2k when pooled; None without pure error).
    max_abs_log_residual: float  # max_p |ȳ_p − log L̂(p)|.
    lack_of_fit: dict | None  # {"F", "df1", "df2", "p_value"} or None when not testable.
    pure_error: dict | None  # {"variance", "df", "per_size", "equal_variances", "model", "df_t"} of log L.
    n_runs: int
    n_patch_sizes: int
    patch_sizes: list[int]
    n_seeds: dict[str, int]  # Patch size → runs averaged into its mean.
    notes: list[str] = dataclasses.field(default_factory=list)
    upper_bounds: dict[str, float] | None = None  # One-sided bounds of parameters that are not identified.
    identified: bool = True  # How L changes with p is identified (saturating: alpha and A off their bounds).

    def predict(self, p) -> np.ndarray:
        return PREDICT[self.form](self.params, np.asarray(p, np.float64))

    def to_dict(self) -> dict:
        return json_safe(dataclasses.asdict(self))


def _predict_power(params, p):
    return np.exp(params["c"] + params["s"] * np.log(p))


PREDICT = {"saturating": saturating.predict, "power": _predict_power}


# ---------------------------------------------------------------------------------------------
# Power law.


def _power(m: Means, level: float):
    x = np.stack([np.ones_like(m.p), np.log(m.p)], axis=1)
    xtw = x.T * m.weights
    inv = np.linalg.inv(xtw @ x)  # The covariance of (c, s) when the weights are 1/SE².
    beta = inv @ (xtw @ m.y)
    params = {"c": float(beta[0]), "s": float(beta[1])}
    notes = ["s < 0: the metric rises as the patch shrinks"] if params["s"] < 0 else []
    intervals = band = None
    if m.sigma2 is not None:
        t = t_quantile(m.df_t, level)
        se = np.sqrt(np.diag(inv))
        intervals = {k: [float(b - t * e), float(b + t * e)] for k, b, e in zip(("c", "s"), beta, se)}
        grid_p = np.geomspace(m.p.min(), m.p.max(), 50)
        xg = np.stack([np.ones_like(grid_p), np.log(grid_p)], axis=1)
        half = t * np.sqrt(np.einsum("ij,jk,ik->i", xg, inv, xg))
        centre = xg @ beta
        band = {"p": grid_p.tolist(), "lo": np.exp(centre - half).tolist(), "hi": np.exp(centre + half).tolist()}
    return params, intervals, band, None, notes, True


# ---------------------------------------------------------------------------------------------


def _lack_of_fit(chi2: float, k: int, m: Means) -> tuple[dict | None, list[str]]:
    """F test of the law's residuals (in units of the means' SE², so S/σ̂² with pooled variance)
    against the pure error, on df_t."""
    df1 = m.p.size - k
    if m.sigma2 is None or df1 <= 0:
        why = "no seed replicates" if m.sigma2 is None else f"{m.p.size} patch sizes for {k} parameters"
        return None, [f"lack of fit not testable ({why})"]
    f = chi2 / df1
    df2 = int(m.df_t)
    p_value = float(stats.f.sf(f, df1, df2))
    result = {"F": float(f), "df1": int(df1), "df2": df2, "p_value": p_value}
    notes = []
    if p_value < 0.05:
        notes.append(f"lack of fit: the law does not describe the means within seed noise (F({df1},{df2}) ="
                     f" {f:.3g}, p = {p_value:.2g}); its intervals assume it does")
    return result, notes


def _fit(form: str, p, loss, seeds, level: float) -> Fit:
    p, loss, seeds = validate(p, loss, seeds)
    m = means(p, loss)
    params, intervals, band, upper, notes, identified = (saturating.fit if form == "saturating" else _power)(m, level)
    k = len(PARAMS[form])
    residual = m.y - np.log(PREDICT[form](params, m.p))
    rss = float((m.n * residual**2).sum())
    chi2 = None if m.var is None else float((m.weights * residual**2).sum())
    if m.sigma2 is None:
        notes.insert(0, "no intervals: needs two or more seeds at some patch size that differ (pure error)")
    elif m.per_size:
        test = m.equal_variances
        notes.insert(0, f"variances differ between patch sizes (Bartlett chi2({test['df']}) = {test['statistic']:.3g},"
                        f" p = {test['p_value']:.2g}): each mean has its own variance, weights n_p/s_p^2,"
                        f" t and F on {m.df_t:g} df (the smallest per-size df)")
    lack, lack_notes = _lack_of_fit(chi2, k, m) if chi2 is not None else _lack_of_fit(0.0, k, m)
    notes += lack_notes
    sizes = [int(v) if float(v).is_integer() else float(v) for v in m.p[::-1]]
    return Fit(
        form=form, params=params, intervals=intervals, band=band, level=level, rss=rss,
        aic=None if chi2 is None else chi2 + 2 * k,
        max_abs_log_residual=float(np.abs(residual).max()), lack_of_fit=lack,
        pure_error=None if m.sigma2 is None else _pure_error(m),
        n_runs=m.n_runs, n_patch_sizes=int(m.p.size), patch_sizes=sizes,
        n_seeds={f"{v:g}": int(n) for v, n in zip(m.p[::-1], m.n[::-1])}, notes=notes, upper_bounds=upper,
        identified=identified)


def _pure_error(m: Means) -> dict:
    """The seeds' variance of log L: pooled, per size, the test between them and which one is used."""
    return {"variance": m.sigma2, "df": m.df,
            "per_size": {f"{v:g}": float(s2) for v, s2 in zip(m.p[::-1], m.s2[::-1]) if np.isfinite(s2)},
            "equal_variances": m.equal_variances, "model": "per_size" if m.per_size else "pooled", "df_t": m.df_t,
            "robust_floor": m.robust}


def fit_saturating(p, loss, seeds=None, *, level: float = 0.95) -> Fit:
    """L = E + A·p^α. `p`, `loss` (and `seeds`) hold one entry per run."""
    return _fit("saturating", p, loss, seeds, level)


def fit_power(p, loss, seeds=None, *, level: float = 0.95) -> Fit:
    """log L = c + s·log p. `p`, `loss` (and `seeds`) hold one entry per run."""
    return _fit("power", p, loss, seeds, level)


def choose(saturating: Fit, power: Fit) -> tuple[str | None, str]:
    """(chosen form or None, why). AIC on the means with the pure-error variance taken as known:
    AIC = S/σ̂² + 2k. A law with k parameters needs k + 2 patch sizes to be compared; the lower
    AIC wins only by 2 or more, otherwise the forms are not separable and both are reported."""
    n = saturating.n_patch_sizes
    short = [f"the {f.form} law needs at least {len(PARAMS[f.form]) + 2} patch sizes to be compared, this group"
             f" has {n}" for f in (saturating, power) if n < len(PARAMS[f.form]) + 2]
    if short:
        return None, "forms not separable: both reported (" + "; ".join(short) + ")"
    if saturating.aic is None or power.aic is None:
        return None, "forms not separable: both reported (no seed replicates to judge the difference against)"
    delta = power.aic - saturating.aic
    # Where the saturating law collapses to the power law (E = 0) their S agree and |delta| is 2 up
    # to rounding, which differs by CPU: 2 within rounding counts as 2.
    if abs(delta) < 2 - 1e-9:
        return None, f"forms not separable: both reported (AIC differs by {abs(delta):.2f} < 2)"
    chosen = "saturating" if delta > 0 else "power"
    return chosen, f"{chosen} law chosen: AIC lower by {abs(delta):.1f}"

