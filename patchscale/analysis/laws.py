"""One group's scaling laws: a test metric L (loss or top-1 error) against patch size p.

With intervals that hold their coverage at three seeds, and the diagnostics a reader needs to
trust them.

Forms (docs/statistics.md):

* saturating  L(p) = E + A·p^α   (E ≥ 0, A ≥ 0, α in [ALPHA_MIN, ALPHA_MAX]; the fitted E is kept
  below the smallest mean, the intervals are not)
* power       log L = c + s·log p

Estimator: weighted least squares on log L at the per-patch-size means. With y = log L of one
run and ȳ_p the mean of y over the n_p seeds at patch size p (the log of the geometric mean),
both laws minimise

    S(θ) = Σ_p w_p · (ȳ_p − log L_θ(p))²,   w_p = 1/SE_p² = n_p/σ_p²,

with σ_p² the variance of log L between seeds at patch size p: the pure error pooled over all
patch sizes (df = runs − patch sizes; 10 with 5 sizes × 3 seeds), unless Bartlett's test says the
sizes differ (p < EQUAL_VARIANCE_LEVEL), in which case each size keeps its own variance and every
t and F quantile uses the smallest per-size df (2 with 3 seeds). With pooled variance the weights
are n_p/σ̂², the fit of the unweighted-by-variance means.

The saturating law is fitted by a grid over (α, E) with log A solved by Gauss–Newton on the same
S at every grid point, then a bounded least-squares polish of all three parameters from the
best grid point, again on S. The power law is linear in (c, s): closed form.

Intervals (`level`, default 95%), from regions {θ: S(θ) ≤ S_min + c} over E ≥ 0 (not bounded by
the smallest mean: the true floor may lie above a noisy one):

* α, A and E: profile intervals, c = t²(df). α and E: the range over the (α, E) grid points with
  the profiled S inside; A: the range of A over the region (bisection on each side at every inside
  point). Where the profile region reaches E = 0 or A = 0 (bounds on which E is not identified),
  E's interval is the projection of the joint region, c = 3·F(3, df).
* band: the range of L(p) over the region with c = 2·F(2, df) (BAND_DIMENSIONS), pointwise on 50
  patch sizes; the 1-df threshold undercovers at some patch sizes (docs/statistics.md).
* parameters on a bound are not identified: flagged in `notes`, interval None; a floor that is not
  identified gets a one-sided bound `upper_bounds["E"]` from the joint region.

For the power law the intervals and band are the exact t intervals of a linear model. Measured
coverage: scripts/fit_coverage.py (results/statistics/fit_coverage.json) and tests/test_fit.py.

Diagnostics: lack-of-fit F test (the law's residuals against the pure error), the number of seeds
behind every mean, and `paired_steps` (does p/2 beat p, paired by seed; Holm-corrected across a
group's steps). Form choice (`choose`): AIC on the means with the pure error taken as known; a law
with k parameters needs k + 2 patch sizes to be compared; no choice when ΔAIC < 2.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize, stats

from patchscale.analysis.stats import json_safe, t_quantile

ALPHA_MIN = 1e-4  # Bounds of α in the saturating law.
ALPHA_MAX = 6.0
ALPHA_GRID = np.concatenate([np.geomspace(ALPHA_MIN, 0.1, 16)[:-1], np.linspace(0.1, 3.0, 117),
                             np.linspace(3.0, ALPHA_MAX, 13)[1:]])
E_FRACTIONS = np.concatenate([np.linspace(0.0, 0.9, 37), 1.0 - np.geomspace(0.1, 1e-6, 16)[1:]])  # Of E's bound.
ZOOM = 61  # Points per axis of the fine grid around the optimum.
GN_STEPS = 6  # Relative error of the profiled S below 1e-5 on the default grid.
PARAMS = {"saturating": ("E", "A", "alpha"), "power": ("c", "s")}
E_ABOVE = 24  # Grid points of E above the smallest mean (the region is not bounded by the sample).
BISECTIONS = 45  # Per side of A's range at one (α, E): 40/2^45 in log A.
BAND_DIMENSIONS = 2  # The band's region: S within q·F(q, df)·σ̂² of the minimum (docs/statistics.md).
EQUAL_VARIANCE_LEVEL = 0.05  # Bartlett's test below this p-value: per-size variances.


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


def _predict_saturating(params, p):
    return params["E"] + params["A"] * p ** params["alpha"]


def _predict_power(params, p):
    return np.exp(params["c"] + params["s"] * np.log(p))


PREDICT = {"saturating": _predict_saturating, "power": _predict_power}


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


# ---------------------------------------------------------------------------------------------
# Saturating law.


def _a_floor(x, y) -> np.ndarray:
    """log A below which the p-dependent term is below 1e-12 of the smallest mean: A = 0."""
    return math.log(1e-12) + y.min() - np.log(x.max(axis=-1, keepdims=True))


def _profile_log_a(x, e, y, w, a):
    """Gauss–Newton in log A for every (α, E): minimises Σ w (y − log(E + e^a·x))²; returns (a, S)."""
    a_min = _a_floor(x, y)
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
    wl = m.weights / big_l**2
    a0 = ((wl * (big_l - e) * x).sum(-1, keepdims=True) / (wl * x * x).sum(-1, keepdims=True))
    a0 = np.log(np.maximum(a0, 1e-12 * big_l.min() / x.max(axis=-1, keepdims=True)))
    a, s = _profile_log_a(x, e, m.y, m.weights, a0)
    alphas, es = np.meshgrid(alpha_values, e_values, indexing="ij")
    s = np.where(np.isfinite(s), s, np.inf)
    return np.stack([alphas.ravel(), es.ravel(), np.exp(a).ravel(), s.ravel()], axis=1)


def _polish(m: Means, e_max: float, start):
    """Bounded least squares on S from a grid point: (E, A, α), S, and Wald standard errors of
    (E, α) in the units of the weights (None where the Jacobian is singular, e.g. on a bound)."""
    lx, sw = np.log(m.p), np.sqrt(m.weights)

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


def _zoom(theta, se, e_max) -> tuple[np.ndarray, np.ndarray] | None:
    """A fine (α, E) grid over ±5 Wald standard errors around the optimum, so the region's edges
    are resolved however small the noise (the coarse grid alone is too coarse below ~3% noise)."""
    if se is None or not all(np.isfinite(se)) or min(se) <= 0:
        return None
    half_e, half_alpha = 5 * se[0], 5 * se[1]
    alphas = np.linspace(max(ALPHA_MIN, theta[2] - half_alpha), min(ALPHA_MAX, theta[2] + half_alpha), ZOOM)
    es = np.linspace(max(0.0, theta[0] - half_e), min(e_max, theta[0] + half_e), ZOOM)
    return alphas, es


def _a_range(m: Means, points: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """For each (α, E, A, S) with S ≤ threshold: the smallest and largest log A at that (α, E)
    with S ≤ threshold (bisection on each side of the profiled A). The floor of log A means A = 0."""
    x = np.exp(points[:, :1] * np.log(m.p))  # (n, m)
    e = points[:, 1:2]
    w, y = m.weights, m.y

    def s_of(a):
        return (w * (y - np.log(e + np.exp(a[:, None]) * x)) ** 2).sum(axis=-1)

    a0 = np.log(np.maximum(points[:, 2], 1e-300))
    floor = _a_floor(x, y)[:, 0]
    a0 = np.maximum(a0, floor)
    ends = []
    for far in (a0 + 40.0, floor):  # S at log A + 40 is far above any threshold.
        inside, outside = a0.copy(), far.copy()
        for _ in range(BISECTIONS):
            mid = 0.5 * (inside + outside)
            ok = s_of(mid) <= threshold
            inside, outside = np.where(ok, mid, inside), np.where(ok, outside, mid)
        ends.append(inside)
    reach = s_of(floor) <= threshold  # A = 0 is inside the region at this (α, E).
    return np.where(reach, -np.inf, ends[1]), ends[0]


def _saturating(m: Means, level: float):
    """The fit, the intervals, the band, one-sided bounds of parameters that are not identified,
    the notes, and whether the shape (alpha and A) is identified."""
    w = m.weights
    e_top = float(np.exp(m.y.min()))  # The smallest mean: the floor of the fitted curve is below it.
    e_max = e_top * (1 - 1e-9)
    grid = _saturating_grid(m, ALPHA_GRID, E_FRACTIONS * e_max)
    i = int(np.argmin(grid[:, 3]))
    best = grid[i, [1, 2, 0]]
    theta, s_min, se = _polish(m, e_max, best)
    if not s_min <= grid[i, 3]:
        theta, s_min, se = best, float(grid[i, 3]), None
    params = {"E": float(theta[0]), "A": float(theta[1]), "alpha": float(theta[2])}
    notes, unidentified = _saturating_bounds(params, m, e_max)
    on_top = params["E"] >= e_max * (1 - 1e-6)
    if m.var is None:
        if on_top:
            notes.append(_E_NOTES["bound"].format(p=_p_low(m)) + " (no interval)")
        return params, None, None, None, notes, not unidentified & {"alpha", "A"}
    c_profile = t_quantile(m.df_t, level) ** 2
    c_band, c_joint = (q * float(stats.f.ppf(level, q, m.df_t)) for q in (BAND_DIMENSIONS, 3))
    # The region is not bounded by the sample: the true floor may lie above the smallest mean,
    # up to where the curve would leave some mean by more than the threshold.
    e_hi = float(np.min(np.exp(m.y + np.sqrt((s_min + max(c_profile, c_band, c_joint)) / w))))
    parts = [grid, _saturating_grid(m, ALPHA_GRID, np.linspace(e_top, e_hi, E_ABOVE))]
    zoom = _zoom(theta, se, e_hi)
    if zoom is not None:
        parts.append(_saturating_grid(m, *zoom))
    points = np.concatenate(parts + [[[params["alpha"], params["E"], params["A"], s_min]]])
    j = int(np.argmin(points[:, 3]))
    if points[j, 3] < s_min:  # The optimum without E's bound: the reference of the likelihood ratio.
        free, s_free, _ = _polish(m, e_hi, points[j, [1, 2, 0]])
        if s_free < points[j, 3]:
            points = np.concatenate([points, [[free[2], free[0], free[1], s_free]]])
    s_ref = float(points[:, 3].min())
    inside = points[points[:, 3] <= s_ref + c_profile]
    a_lo, a_hi = _a_range(m, inside, s_ref + c_profile)
    intervals = {"alpha": [float(inside[:, 0].min()), float(inside[:, 0].max())],
                 "E": [float(inside[:, 1].min()), float(inside[:, 1].max())],
                 "A": [float(np.exp(a_lo.min())), float(np.exp(a_hi.max()))]}
    band = _band(m, points, s_ref + c_band, params)
    # Where the profile region reaches a bound on which E is not identified (E = 0, where E and A
    # trade off as alpha → 0, or A = 0, where the curve is flat at E), the 1-df threshold no longer
    # holds for E: its interval is then the projection of the joint region of all three parameters
    # (S within 3·F(3, df) of the minimum), which keeps its coverage there. A floor that is not
    # identified (on its upper bound, or alpha on its lower one) gets that region's one-sided bound.
    joint_e = points[points[:, 3] <= s_ref + c_joint, 1]
    reached = [name for name, hit in (("E = 0", intervals["E"][0] <= 0), ("A = 0", intervals["A"][0] == 0)) if hit]
    upper = {}
    if "E" in unidentified:
        upper["E"] = float(joint_e.max())
        if on_top:
            notes.append(_E_NOTES["bound"].format(p=_p_low(m)))
        notes.append(f"one-sided: E < {upper['E']:.4g} (joint {level:.0%} region of E, A and alpha)")
    else:
        if reached:
            intervals["E"] = [float(joint_e.min()), float(joint_e.max())]
            notes.append(f"E's interval is the joint {level:.0%} region's: its profile region reaches "
                         + ", ".join(reached))
        if intervals["E"][1] >= e_top:
            notes.append(_E_NOTES["near"].format(p=_p_low(m)))
    for name in unidentified:
        intervals[name] = None
    return params, intervals, band, upper or None, notes, not unidentified & {"alpha", "A"}


def _band(m: Means, points: np.ndarray, threshold: float, params: dict) -> dict:
    """Range of L(p) over the region S ≤ threshold, on 50 patch sizes (and the fitted curve)."""
    inside = points[points[:, 3] <= threshold]
    a_lo, a_hi = _a_range(m, inside, threshold)
    grid_p = np.geomspace(m.p.min(), m.p.max(), 50)
    powers = grid_p[None, :] ** inside[:, :1]
    fitted = _predict_saturating(params, grid_p)
    lo = np.minimum((inside[:, 1:2] + np.exp(a_lo)[:, None] * powers).min(axis=0), fitted)
    hi = np.maximum((inside[:, 1:2] + np.exp(a_hi)[:, None] * powers).max(axis=0), fitted)
    return {"p": grid_p.tolist(), "lo": lo.tolist(), "hi": hi.tolist()}


def _p_low(m: Means) -> str:
    return f"{m.p[np.argmin(m.y)]:g}"


_E_NOTES = {
    "bound": "E is at its upper bound, the smallest mean (p={p}): the floor is not identified; the means"
             " flatten faster than E + A·p^alpha allows",
    "near": "E's interval reaches the smallest mean (p={p}): the floor is not told apart from it",
}


def _saturating_bounds(params, m: Means, e_max: float) -> tuple[list[str], set[str]]:
    """Notes for parameters on a bound, and the names that are therefore not identified (E's
    upper bound is noted by the caller, with its one-sided bound)."""
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
        unidentified.add("E")
    elif params["E"] <= 1e-6 * e_max and "E" not in unidentified:
        notes.append("E is at its lower bound 0: no floor is detected and the law reduces to the power law"
                     " (E's interval is one-sided)")
    return notes, unidentified


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
    p, loss, seeds = _validate(p, loss, seeds)
    m = means(p, loss)
    params, intervals, band, upper, notes, identified = (_saturating if form == "saturating" else _power)(m, level)
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
    if abs(delta) < 2:
        return None, f"forms not separable: both reported (AIC differs by {abs(delta):.2f} < 2)"
    chosen = "saturating" if delta > 0 else "power"
    return chosen, f"{chosen} law chosen: AIC lower by {abs(delta):.1f}"


def paired_steps(p, loss, seeds, level: float = 0.95) -> list[dict]:
    """For each adjacent pair of patch sizes (p → the next smaller one), paired by seed: the mean
    difference L(smaller) − L(p), its t interval, the one-sided p-value of "smaller beats p", and
    that p-value after Holm's correction over the group's testable steps (`p_value_holm`)."""
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
    tested = [step for step in steps if step["testable"]]
    for step, adjusted in zip(tested, holm([step["p_value_smaller_better"] for step in tested])):
        step["p_value_holm"] = adjusted
    return steps


def holm(p_values) -> list[float]:
    """Holm's step-down adjustment: each p-value × (tests not yet passed), kept monotone, capped at 1.
    Rejecting where the adjusted value is below 0.05 keeps the chance of any false claim among the
    tests at 5% (the raw p-values of several steps do not)."""
    order = np.argsort(p_values, kind="stable")
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
