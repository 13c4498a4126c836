"""Power-law fits of test loss L against patch size p, with bootstrap intervals and an extrapolation check.

Two forms (REFERENCE.md, "Fitting protocol"):

* saturating  L(p) = E + A·p^α   (α > 0: smaller patches help; E ∈ [0, min L) is the floor)
* power       log L = c + s·log p

Both are fitted with a robust (Huber, δ = `HUBER_DELTA`) loss on log L, in float64. The
saturating law uses variable projection: for every α on a dense grid, E and A ≥ 0 come from a
closed-form bounded least-squares solve; the best α seeds a bounded L-BFGS-B polish of all three.

Uncertainty: with several seeds per patch size, the runs of every patch size are resampled
with replacement (`n_boot` times) and refitted; 2.5/97.5 percentiles give 95% intervals.
Quality: leave-smallest-patch-out: fit without the smallest p, predict it, report
|log L̂ − log L̄| there. Forms are compared by that error, then by small-sample AIC.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize

HUBER_DELTA = 1e-3
ALPHA_MIN = 1e-4  # Lower bound of α in the saturating fit.
ALPHA_GRID = np.concatenate([np.linspace(0.005, 0.1, 20), np.linspace(0.1, 3.0, 300)[1:]])


class FitError(ValueError):
    """The data cannot support the fit (too few patch sizes, non-finite or constant losses)."""


@dataclasses.dataclass
class Fit:
    form: str  # "saturating" or "power"
    params: dict[str, float]
    intervals: dict[str, tuple[float, float]] | None  # 95% bootstrap intervals (None with one seed per p)
    extrapolation_error: float | None  # |log L̂ − log L̄| at the smallest p when fitted without it
    aicc: float | None
    band: dict[str, list[float]] | None  # 95% bootstrap band of L̂(p) on a grid of p (None without intervals)
    n_runs: int
    patch_sizes: list[int]
    notes: list[str] = dataclasses.field(default_factory=list)

    def predict(self, p) -> np.ndarray:
        return PREDICT[self.form](self.params, np.asarray(p, np.float64))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _predict_saturating(params, p):
    return params["E"] + params["A"] * p ** params["alpha"]


def _predict_power(params, p):
    return np.exp(params["c"] + params["s"] * np.log(p))


PREDICT = {"saturating": _predict_saturating, "power": _predict_power}


def _validate(p, loss, seeds) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    p = np.asarray(p, np.float64).ravel()
    loss = np.asarray(loss, np.float64).ravel()
    if p.shape != loss.shape:
        raise FitError(f"{p.size} patch sizes but {loss.size} losses")
    if seeds is not None:
        seeds = np.asarray(seeds).ravel()
        if seeds.shape != p.shape:
            raise FitError(f"{seeds.size} seeds for {p.size} runs")
    bad = ~np.isfinite(loss) | (loss <= 0)
    if bad.any():
        raise FitError(f"non-finite or non-positive losses at patch sizes {sorted(set(p[bad].tolist()))}:"
                       " exclude failed runs before fitting")
    if not np.all(np.isfinite(p)) or (p <= 0).any():
        raise FitError("patch sizes must be positive and finite")
    distinct = np.unique(p)
    if distinct.size < 3:
        raise FitError(f"need at least 3 distinct patch sizes to fit a 3-parameter law, got {distinct.tolist()}")
    if np.ptp(loss) <= 1e-12 * np.abs(loss).max():
        raise FitError("all losses are equal: there is no trend in patch size to fit")
    return p, loss, seeds


def _bounded_linear(x: np.ndarray, y: np.ndarray, e_max: float) -> tuple[np.ndarray, np.ndarray]:
    """For each row of x (one row per α): argmin Σ(E + A·x − y)² with 0 ≤ E ≤ e_max, A ≥ 0.

    The minimum lies in the interior or on a bound; every active set has a closed form, so
    compute all candidates for all rows at once and keep the best feasible one per row.
    """
    x_mean, y_mean = x.mean(axis=1, keepdims=True), y.mean()
    sxx = ((x - x_mean) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        a_free = np.where(sxx > 0, ((x - x_mean) * (y - y_mean)).sum(axis=1) / sxx, np.nan)
        e_free = y_mean - a_free * x_mean[:, 0]
        xx = (x * x).sum(axis=1)
        a_e0 = np.maximum((y * x).sum(axis=1) / xx, 0.0)
        a_emax = np.maximum(((y - e_max) * x).sum(axis=1) / xx, 0.0)
    rows = x.shape[0]
    es = np.stack([e_free, np.zeros(rows), np.full(rows, e_max), np.full(rows, min(max(y_mean, 0.0), e_max))], 1)
    as_ = np.stack([a_free, a_e0, a_emax, np.zeros(rows)], 1)
    feasible = np.isfinite(es) & np.isfinite(as_) & (es >= 0) & (es <= e_max) & (as_ >= 0)
    sse = ((es[:, :, None] + as_[:, :, None] * x[:, None, :] - y) ** 2).sum(axis=2)
    best = np.argmin(np.where(feasible, sse, np.inf), axis=1)
    pick = np.arange(rows)
    return es[pick, best], as_[pick, best]


def _objective_saturating(theta, p, log_loss):
    e, a, alpha = theta
    pred = e + a * p**alpha
    if np.any(pred <= 0):
        return 1e6
    return float(_huber(np.log(pred) - log_loss).sum())


def _fit_saturating_points(p, loss) -> dict[str, float]:
    log_loss = np.log(loss)
    e_max = loss.min() * (1 - 1e-9)
    e, a = _bounded_linear(p[None, :] ** ALPHA_GRID[:, None], loss, e_max)
    pred = e[:, None] + a[:, None] * p[None, :] ** ALPHA_GRID[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where((pred > 0).all(axis=1), _huber(np.log(pred) - log_loss).sum(axis=1), np.inf)
    i = int(np.argmin(values))
    best = (values[i], (e[i], a[i], ALPHA_GRID[i]))
    bounds = [(0.0, e_max), (0.0, None), (ALPHA_MIN, ALPHA_GRID[-1] * 2)]
    polished = optimize.minimize(_objective_saturating, np.asarray(best[1]), args=(p, log_loss),
                                 method="L-BFGS-B", bounds=bounds)
    theta = polished.x if polished.fun <= best[0] else np.asarray(best[1])
    return {"E": float(theta[0]), "A": float(theta[1]), "alpha": float(theta[2])}


def _fit_power_points(p, loss) -> dict[str, float]:
    x, y = np.log(p), np.log(loss)
    slope0, intercept0 = np.polyfit(x, y, 1)
    result = optimize.least_squares(lambda t: t[0] + t[1] * x - y, [intercept0, slope0], loss="huber",
                                    f_scale=HUBER_DELTA)
    return {"c": float(result.x[0]), "s": float(result.x[1])}


FITTERS = {"saturating": (_fit_saturating_points, 3), "power": (_fit_power_points, 2)}


def _aicc(form, params, p, loss) -> float | None:
    n, k = p.size, FITTERS[form][1]
    if n - k - 1 <= 0:
        return None
    rss = float(((np.log(PREDICT[form](params, p)) - np.log(loss)) ** 2).sum())
    rss = max(rss, 1e-300)
    return n * math.log(rss / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def _extrapolation_error(form, p, loss, notes) -> float | None:
    smallest = p.min()
    keep = p > smallest
    if np.unique(p[keep]).size < FITTERS[form][1] + 1:
        notes.append(f"no extrapolation check: fewer than {FITTERS[form][1] + 1} patch sizes above p={smallest:g}")
        return None
    params = FITTERS[form][0](p[keep], loss[keep])
    predicted = PREDICT[form](params, np.asarray([smallest]))[0]
    return float(abs(math.log(predicted) - math.log(loss[~keep].mean())))


def _bootstrap(form, p, loss, seeds, n_boot, rng):
    """95% percentile intervals of the parameters and a band of predictions, or (None, None)."""
    groups = [np.flatnonzero(p == value) for value in np.unique(p)]
    if seeds is None or min(len(g) for g in groups) < 2:
        return None, None
    samples = []
    for _ in range(n_boot):
        index = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        samples.append(FITTERS[form][0](p[index], loss[index]))
    intervals = {k: (float(np.percentile([s[k] for s in samples], 2.5)),
                     float(np.percentile([s[k] for s in samples], 97.5))) for k in samples[0]}
    grid = np.geomspace(p.min(), p.max(), 50)
    curves = np.stack([PREDICT[form](params, grid) for params in samples])
    band = {"p": grid.tolist(), "lo": np.percentile(curves, 2.5, axis=0).tolist(),
            "hi": np.percentile(curves, 97.5, axis=0).tolist()}
    return intervals, band


def _direction_notes(form, params) -> list[str]:
    """Say so when the runs contradict the law's premise that loss falls as the patch shrinks."""
    if form == "saturating" and params["alpha"] <= ALPHA_MIN * 1.01:
        return ["alpha is at its lower bound: test loss does not fall as the patch shrinks, so"
                " L = E + A·p^alpha (alpha > 0) does not describe these runs"]
    if form == "power" and params["s"] < 0:
        return ["s < 0: test loss rises as the patch shrinks"]
    return []


def _fit(form, p, loss, seeds, n_boot, seed) -> Fit:
    p, loss, seeds = _validate(p, loss, seeds)
    notes: list[str] = []
    params = FITTERS[form][0](p, loss)
    intervals, band = _bootstrap(form, p, loss, seeds, n_boot, np.random.default_rng(seed))
    if intervals is None:
        notes.append("no intervals: needs several seeds at every patch size")
    notes += _direction_notes(form, params)
    return Fit(form, params, intervals, _extrapolation_error(form, p, loss, notes), _aicc(form, params, p, loss),
               band, int(p.size), sorted(int(v) if float(v).is_integer() else float(v) for v in np.unique(p)), notes)


def fit_saturating(p, loss, seeds=None, *, n_boot: int = 1000, seed: int = 0) -> Fit:
    """L = E + A·p^α. `p`, `loss` (and `seeds`) hold one entry per run."""
    return _fit("saturating", p, loss, seeds, n_boot, seed)


def fit_power(p, loss, seeds=None, *, n_boot: int = 1000, seed: int = 0) -> Fit:
    """log L = c + s·log p. `p`, `loss` (and `seeds`) hold one entry per run."""
    return _fit("power", p, loss, seeds, n_boot, seed)


def choose(fits: list[Fit]) -> Fit:
    """The form with the smaller extrapolation error; ties (or no check possible) broken by AICc."""
    def key(f: Fit):
        return (f.extrapolation_error if f.extrapolation_error is not None else math.inf,
                f.aicc if f.aicc is not None else math.inf)
    return min(fits, key=key)
