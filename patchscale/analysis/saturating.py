"""The saturating law L(p) = E + A·p^α of one group: its fit to the means, intervals, band and notes.

E ≥ 0, A ≥ 0, α in [ALPHA_MIN, ALPHA_MAX]; the fitted E is kept below the smallest mean, the
intervals are not. The estimator is laws.py's: weighted least squares on log L at the
per-patch-size means (means.py), minimising S(θ) = Σ_p w_p · (ȳ_p − log L_θ(p))².

The fit is a grid over (α, E) with log A solved by Gauss–Newton on the same S at every grid
point, then a bounded least-squares polish of all three parameters from the best grid point,
again on S.

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
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

from patchscale.analysis.means import Means
from patchscale.analysis.stats import t_quantile

ALPHA_MIN = 1e-4  # Bounds of α in the saturating law.
ALPHA_MAX = 6.0
ALPHA_GRID = np.concatenate([np.geomspace(ALPHA_MIN, 0.1, 16)[:-1], np.linspace(0.1, 3.0, 117),
                             np.linspace(3.0, ALPHA_MAX, 13)[1:]])
E_FRACTIONS = np.concatenate([np.linspace(0.0, 0.9, 37), 1.0 - np.geomspace(0.1, 1e-6, 16)[1:]])  # Of E's bound.
ZOOM = 61  # Points per axis of the fine grid around the optimum.
GN_STEPS = 6  # Relative error of the profiled S below 1e-5 on the default grid.
E_ABOVE = 24  # Grid points of E above the smallest mean (the region is not bounded by the sample).
BISECTIONS = 45  # Per side of A's range at one (α, E): 40/2^45 in log A.
BAND_DIMENSIONS = 2  # The band's region: S within q·F(q, df)·σ̂² of the minimum (docs/statistics.md).


def predict(params, p):
    """L(p) = E + A·p^α with `params` {"E", "A", "alpha"}."""
    return params["E"] + params["A"] * p ** params["alpha"]


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


def fit(m: Means, level: float):
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
    outside = [name for name, interval in intervals.items()
               if interval is not None and not interval[0] * (1 - 1e-6) <= params[name] <= interval[1] * (1 + 1e-6)]
    if outside:  # The bounded fit is itself outside the region around the better, unbounded one.
        notes.append(f"the estimate of {', '.join(outside)} lies outside its interval: the fit holds E below"
                     " the smallest mean, the region does not, and the fit with E above it is better by more"
                     " than the threshold (the law may miss the means: see lack of fit)")
    return params, intervals, band, upper or None, notes, not unidentified & {"alpha", "A"}


def _band(m: Means, points: np.ndarray, threshold: float, params: dict) -> dict:
    """Range of L(p) over the region S ≤ threshold, on 50 patch sizes (and the fitted curve)."""
    inside = points[points[:, 3] <= threshold]
    a_lo, a_hi = _a_range(m, inside, threshold)
    grid_p = np.geomspace(m.p.min(), m.p.max(), 50)
    powers = grid_p[None, :] ** inside[:, :1]
    fitted = predict(params, grid_p)
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

