"""Scaling laws of a test metric L (loss or top-1 error) against patch size p, with intervals
that hold their coverage at three seeds, and the diagnostics a reader needs to trust them.

Forms (docs/statistics.md):

* saturating  L(p) = E + A·p^α   (E in [0, min mean), A ≥ 0, α in [ALPHA_MIN, ALPHA_MAX])
* power       log L = c + s·log p

Estimator: weighted least squares on log L at the per-patch-size means. With y = log L of one
run and ȳ_p the mean of y over the n_p seeds at patch size p (the log of the geometric mean),
both laws minimise

    S(θ) = Σ_p n_p · (ȳ_p − log L_θ(p))²,

which weights each mean by 1/SE² with SE² = σ²/n_p. σ² is the pure-error variance of log L: the
spread of the seeds around their own patch-size mean, pooled over all patch sizes (df = runs −
patch sizes; 10 with 5 sizes × 3 seeds, against 2 for one size alone). Seed noise is close to
multiplicative, so log L has about the same variance at every patch size and pooling is fair.

The saturating law is fitted by a grid over (α, E) with log A solved by Gauss–Newton on the same
S at every grid point, then a bounded least-squares polish of all three parameters from the
best grid point, again on S. The power law is linear in (c, s): closed form.

Intervals (`level`, default 95%): profile intervals with t quantiles on the pure-error df.
For the power law they are the exact t intervals of a linear model. For the saturating law a
value of α (or E) is inside when min over the other parameters of S is within t²·σ̂² of the
minimum; for A, the range over the grid points inside that region (approximate). The band of
L̂(p) is the range of the curves inside the region (power law: the exact t band). Parameters on a
bound are not identified: flagged in `notes`, interval None. Measured coverage: tests/test_fit.py.

Diagnostics: lack-of-fit F test (the law's residual mean square against the pure error), the
number of seeds behind every mean, and `paired_steps` (does p/2 beat p, paired by seed).
Form choice (`choose`): AIC on the means with the pure-error variance taken as known; a law
with k parameters needs k + 2 patch sizes to be compared; no choice when ΔAIC < 2.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize, stats

from patchscale.scaling.stats import t_quantile

ALPHA_MIN = 1e-4  # Bounds of α in the saturating law.
ALPHA_MAX = 6.0
ALPHA_GRID = np.concatenate([np.geomspace(ALPHA_MIN, 0.1, 16)[:-1], np.linspace(0.1, 3.0, 117),
                             np.linspace(3.0, ALPHA_MAX, 13)[1:]])
E_FRACTIONS = np.concatenate([np.linspace(0.0, 0.9, 37), 1.0 - np.geomspace(0.1, 1e-6, 16)[1:]])  # Of E's bound.
ZOOM = 61  # Points per axis of the fine grid around the optimum.
GN_STEPS = 6  # Relative error of the profiled S below 1e-5 on the default grid.
PARAMS = {"saturating": ("E", "A", "alpha"), "power": ("c", "s")}


class FitError(ValueError):
    """The data cannot support the fit (too few patch sizes, non-finite or non-positive values)."""


@dataclasses.dataclass
class Fit:
    form: str  # "saturating" or "power"
    params: dict[str, float]
    intervals: dict[str, list[float] | None] | None  # Per parameter; None = not identified. All None: no pure error.
    band: dict[str, list[float]] | None  # {"p", "lo", "hi"}: interval of L̂(p) at `level` (None without pure error).
    level: float
    rss: float  # S at the optimum: Σ n_p (ȳ_p − log L̂(p))².
    aic: float | None  # S/σ̂² + 2k, with σ̂² the pure-error variance (None without it).
    max_abs_log_residual: float  # max_p |ȳ_p − log L̂(p)|.
    lack_of_fit: dict | None  # {"F", "df1", "df2", "p_value"} or None when not testable.
    pure_error: dict | None  # {"variance", "df"} of log L within patch sizes.
    n_runs: int
    n_patch_sizes: int
    patch_sizes: list[int]
    n_seeds: dict[str, int]  # Patch size → runs averaged into its mean.
    notes: list[str] = dataclasses.field(default_factory=list)

    def predict(self, p) -> np.ndarray:
        return PREDICT[self.form](self.params, np.asarray(p, np.float64))

    def to_dict(self) -> dict:
        return json_safe(dataclasses.asdict(self))


def json_safe(value):
    """Nested containers with NaN and ±inf replaced by None, numpy scalars by Python ones."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _predict_saturating(params, p):
    return params["E"] + params["A"] * p ** params["alpha"]


def _predict_power(params, p):
    return np.exp(params["c"] + params["s"] * np.log(p))


PREDICT = {"saturating": _predict_saturating, "power": _predict_power}


@dataclasses.dataclass
class Means:
    """Per-patch-size summary of the runs: what both laws are fitted to."""

    p: np.ndarray  # Distinct patch sizes, descending.
    y: np.ndarray  # Mean of log L over the seeds.
    n: np.ndarray  # Seeds per patch size.
    sigma2: float | None  # Pooled pure-error variance of log L (None: no replicates, or all equal).
    df: int  # Its degrees of freedom: runs − patch sizes.
    n_runs: int


def _validate(p, loss, seeds) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
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
    log_loss = np.log(loss)
    distinct = np.unique(p)[::-1]
    groups = [log_loss[p == value] for value in distinct]
    n = np.asarray([g.size for g in groups], np.float64)
    y = np.asarray([g.mean() for g in groups])
    df = int(p.size - distinct.size)
    ss = float(sum(((g - g.mean()) ** 2).sum() for g in groups))
    sigma2 = ss / df if df > 0 and ss > 1e-24 * p.size else None
    return Means(distinct, y, n, sigma2, df, int(p.size))


# ---------------------------------------------------------------------------------------------
# Saturating law.


def _profile_log_a(x, e, y, w, a):
    """Gauss–Newton in log A for every (α, E): minimises Σ w (y − log(E + e^a·x))²; returns (a, S)."""
    a_min = math.log(1e-12) + y.min() - np.log(x.max(axis=-1, keepdims=True))  # A·max x ≤ 1e-12·min L: A = 0.
    for _ in range(GN_STEPS):
        ax = np.exp(a) * x
        pred = e + ax
        r = y - np.log(pred)
        q = ax / pred
        num = (w * q * r).sum(axis=-1, keepdims=True)
        den = (w * q * q).sum(axis=-1, keepdims=True)
        step = np.clip(num / np.maximum(den, 1e-300), -3.0, 3.0)
        a = np.maximum(a + step, a_min)
    s = (w * (y - np.log(e + np.exp(a) * x)) ** 2).sum(axis=-1)
    return a[..., 0], s


def _saturating_grid(m: Means, alpha_values: np.ndarray, e_values: np.ndarray) -> np.ndarray:
    """S on the grid alpha_values × e_values with log A profiled out: rows of (α, E, A, S)."""
    lx = np.log(m.p)
    x = np.exp(alpha_values[:, None, None] * lx)  # (n_α, 1, m)
    e = e_values[None, :, None]  # (1, n_E, 1)
    big_l = np.exp(m.y)
    # Start: least squares on L with weights 1/L² (first-order equal to the log objective).
    wl = m.n / big_l**2
    a0 = ((wl * (big_l - e) * x).sum(-1, keepdims=True) / (wl * x * x).sum(-1, keepdims=True))
    a0 = np.log(np.maximum(a0, 1e-12 * big_l.min() / x.max(axis=-1, keepdims=True)))
    a, s = _profile_log_a(x, e, m.y, m.n, a0)
    alphas, es = np.meshgrid(alpha_values, e_values, indexing="ij")
    s = np.where(np.isfinite(s), s, np.inf)
    return np.stack([alphas.ravel(), es.ravel(), np.exp(a).ravel(), s.ravel()], axis=1)


def _polish(m: Means, e_max: float, start):
    """Bounded least squares on S from a grid point: (E, A, α), S, and Wald standard errors of
    (E, α) per unit σ (None where the Jacobian is singular, e.g. on a bound)."""
    lx, sw = np.log(m.p), np.sqrt(m.n)

    def residual(theta):
        e, log_a, alpha = theta
        return sw * (m.y - np.log(e + np.exp(log_a) * np.exp(alpha * lx)))

    e0, a0, alpha0 = start
    lower = [0.0, math.log(max(a0, 1e-300)) - 30, ALPHA_MIN]
    upper = [e_max, math.log(max(a0, 1e-300)) + 30, ALPHA_MAX]
    x0 = np.clip([e0, math.log(max(a0, 1e-300)), alpha0], lower, upper)
    try:
        result = optimize.least_squares(residual, x0, bounds=(lower, upper), method="trf", x_scale="jac")
    except (ValueError, FloatingPointError):
        return np.asarray(start, float), math.inf, None
    theta = np.asarray([result.x[0], math.exp(result.x[1]), result.x[2]])
    with np.errstate(all="ignore"):
        jtj = result.jac.T @ result.jac
        se = np.sqrt(np.diag(np.linalg.pinv(jtj))) if np.linalg.cond(jtj) < 1e12 else None
    return theta, float((result.fun**2).sum()), None if se is None else (float(se[0]), float(se[2]))


def _zoom(theta, se, sigma2, e_max) -> tuple[np.ndarray, np.ndarray] | None:
    """A fine (α, E) grid over ±5 Wald standard errors around the optimum, so the region's edges
    are resolved however small the noise (the coarse grid alone is too coarse below ~3% noise)."""
    if se is None or not all(np.isfinite(se)) or min(se) <= 0:
        return None
    half_e, half_alpha = 5 * se[0] * math.sqrt(sigma2), 5 * se[1] * math.sqrt(sigma2)
    alphas = np.linspace(max(ALPHA_MIN, theta[2] - half_alpha), min(ALPHA_MAX, theta[2] + half_alpha), ZOOM)
    es = np.linspace(max(0.0, theta[0] - half_e), min(e_max, theta[0] + half_e), ZOOM)
    return alphas, es


def _saturating(m: Means, level: float) -> tuple[dict, dict | None, dict | None, list[str], float]:
    e_max = float(np.exp(m.y.min())) * (1 - 1e-9)
    grid = _saturating_grid(m, ALPHA_GRID, E_FRACTIONS * e_max)
    i = int(np.argmin(grid[:, 3]))
    best = grid[i, [1, 2, 0]]
    theta, s_min, se = _polish(m, e_max, best)
    if not s_min <= grid[i, 3]:
        theta, s_min, se = best, float(grid[i, 3]), None
    params = {"E": float(theta[0]), "A": float(theta[1]), "alpha": float(theta[2])}
    notes, unidentified = _saturating_bounds(params, m, e_max)
    intervals = band = None
    if m.sigma2 is not None:
        threshold = s_min + t_quantile(m.df, level) ** 2 * m.sigma2
        zoom = _zoom(theta, se, m.sigma2, e_max)
        if zoom is not None:
            grid = np.concatenate([grid, _saturating_grid(m, *zoom)])
        inside = grid[grid[:, 3] <= threshold]
        inside = np.concatenate([inside, [[params["alpha"], params["E"], params["A"], s_min]]])
        # A value of one parameter is in its interval when the minimum of S over the others is
        # within the threshold: the range of that parameter over the grid points inside the region.
        intervals = {name: [float(inside[:, col].min()), float(inside[:, col].max())]
                     for name, col in (("alpha", 0), ("E", 1), ("A", 2))}
        for name in unidentified:
            intervals[name] = None
        grid_p = np.geomspace(m.p.min(), m.p.max(), 50)
        curves = inside[:, 1:2] + inside[:, 2:3] * grid_p ** inside[:, 0:1]
        band = {"p": grid_p.tolist(), "lo": curves.min(axis=0).tolist(), "hi": curves.max(axis=0).tolist()}
    return params, intervals, band, notes, s_min


def _saturating_bounds(params, m: Means, e_max: float) -> tuple[list[str], set[str]]:
    """Notes for parameters on a bound, and the names that are therefore not identified."""
    notes, unidentified = [], set()
    amplitude = params["A"] * m.p.max() ** params["alpha"]  # Size of the p-dependent term at the largest p.
    if params["alpha"] <= ALPHA_MIN * 1.001:
        notes.append(f"alpha is at its lower bound ({ALPHA_MIN:g}): the metric does not fall as the patch shrinks;"
                     " E and A trade off freely, so alpha, E and A are not identified (no intervals)")
        unidentified |= {"alpha", "E", "A"}
    elif amplitude <= 1e-9 * np.exp(m.y.min()):
        notes.append("A is at its bound 0: the fit is flat in p, so A and alpha are not identified (no intervals)")
        unidentified |= {"A", "alpha"}
    elif params["alpha"] >= ALPHA_MAX * 0.999:
        notes.append(f"alpha is at its upper bound ({ALPHA_MAX:g}): all of the drop happens within one step;"
                     " alpha is not identified (no interval)")
        unidentified.add("alpha")
    if params["E"] >= e_max * (1 - 1e-6):
        p_min = m.p[np.argmin(m.y)]
        notes.append(f"E is at its upper bound, the smallest mean (p={p_min:g}): the floor is not identified"
                     " (no interval); the means flatten faster than E + A·p^alpha allows")
        unidentified.add("E")
    elif params["E"] <= 1e-6 * e_max and "E" not in unidentified:
        notes.append("E is at its lower bound 0: no floor is detected and the law reduces to the power law"
                     " (E's interval is one-sided)")
    return notes, unidentified


# ---------------------------------------------------------------------------------------------
# Power law.


def _power(m: Means, level: float) -> tuple[dict, dict | None, dict | None, list[str], float]:
    x = np.stack([np.ones_like(m.p), np.log(m.p)], axis=1)
    xtw = x.T * m.n
    inv = np.linalg.inv(xtw @ x)
    beta = inv @ (xtw @ m.y)
    rss = float((m.n * (m.y - x @ beta) ** 2).sum())
    params = {"c": float(beta[0]), "s": float(beta[1])}
    notes = ["s < 0: the metric rises as the patch shrinks"] if params["s"] < 0 else []
    intervals = band = None
    if m.sigma2 is not None:
        t = t_quantile(m.df, level)
        se = np.sqrt(np.diag(inv) * m.sigma2)
        intervals = {k: [float(b - t * e), float(b + t * e)] for k, b, e in zip(("c", "s"), beta, se)}
        grid_p = np.geomspace(m.p.min(), m.p.max(), 50)
        xg = np.stack([np.ones_like(grid_p), np.log(grid_p)], axis=1)
        half = t * np.sqrt(np.einsum("ij,jk,ik->i", xg, inv, xg) * m.sigma2)
        centre = xg @ beta
        band = {"p": grid_p.tolist(), "lo": np.exp(centre - half).tolist(), "hi": np.exp(centre + half).tolist()}
    return params, intervals, band, notes, rss


# ---------------------------------------------------------------------------------------------


def _lack_of_fit(rss: float, k: int, m: Means) -> tuple[dict | None, list[str]]:
    df1 = m.p.size - k
    if m.sigma2 is None or df1 <= 0:
        why = "no seed replicates" if m.sigma2 is None else f"{m.p.size} patch sizes for {k} parameters"
        return None, [f"lack of fit not testable ({why})"]
    f = rss / df1 / m.sigma2
    p_value = float(stats.f.sf(f, df1, m.df))
    result = {"F": float(f), "df1": int(df1), "df2": int(m.df), "p_value": p_value}
    notes = []
    if p_value < 0.05:
        notes.append(f"lack of fit: the law does not describe the means within seed noise (F({df1},{m.df}) ="
                     f" {f:.3g}, p = {p_value:.2g}); its intervals assume it does")
    return result, notes


def _fit(form: str, p, loss, seeds, level: float) -> Fit:
    p, loss, seeds = _validate(p, loss, seeds)
    m = means(p, loss)
    params, intervals, band, notes, rss = (_saturating if form == "saturating" else _power)(m, level)
    k = len(PARAMS[form])
    if m.sigma2 is None:
        notes.insert(0, "no intervals: needs two or more seeds at some patch size that differ (pure error)")
    lack, lack_notes = _lack_of_fit(rss, k, m)
    notes += lack_notes
    residual = m.y - np.log(PREDICT[form](params, m.p))
    sizes = [int(v) if float(v).is_integer() else float(v) for v in m.p[::-1]]
    return Fit(
        form=form, params=params, intervals=intervals, band=band, level=level, rss=rss,
        aic=None if m.sigma2 is None else rss / m.sigma2 + 2 * k,
        max_abs_log_residual=float(np.abs(residual).max()), lack_of_fit=lack,
        pure_error=None if m.sigma2 is None else {"variance": m.sigma2, "df": m.df},
        n_runs=m.n_runs, n_patch_sizes=int(m.p.size), patch_sizes=sizes,
        n_seeds={f"{v:g}": int(n) for v, n in zip(m.p[::-1], m.n[::-1])}, notes=notes)


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
    if abs(delta) < 2:
        return None, f"forms not separable: both reported (AIC differs by {abs(delta):.2f} < 2)"
    chosen = "saturating" if delta > 0 else "power"
    return chosen, f"{chosen} law chosen: AIC lower by {abs(delta):.1f}"


def paired_steps(p, loss, seeds, level: float = 0.95) -> list[dict]:
    """For each adjacent pair of patch sizes (p → the next smaller one), paired by seed: the mean
    difference L(smaller) − L(p), its t interval, and the one-sided p-value of "smaller beats p"."""
    p, loss = np.asarray(p, np.float64), np.asarray(loss, np.float64)
    seeds = np.arange(p.size) if seeds is None else np.asarray(seeds)
    sizes = np.unique(p)[::-1]
    steps = []
    for big, small in zip(sizes[:-1], sizes[1:]):
        at_big = {s: v for s, v in zip(seeds[p == big], loss[p == big])}
        at_small = {s: v for s, v in zip(seeds[p == small], loss[p == small])}
        common = sorted(set(at_big) & set(at_small))
        d = np.asarray([at_small[s] - at_big[s] for s in common])
        step = {"from": float(big), "to": float(small), "n_pairs": len(common)}
        if d.size < 2:
            steps.append({**step, "testable": False, "note": f"p={big:g} → {small:g}: not testable"
                          f" ({d.size} seed pair{'s' if d.size != 1 else ''})"})
            continue
        mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
        t = t_quantile(d.size - 1, level)
        p_value = float(stats.t.cdf(mean / se, d.size - 1)) if se > 0 else (0.0 if mean < 0 else 1.0)
        steps.append({**step, "testable": True, "mean_difference": mean, "interval": [mean - t * se, mean + t * se],
                      "p_value_smaller_better": p_value})
    return steps
