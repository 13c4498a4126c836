"""The compute-optimal patch size p*(C) a joint law implies, with iso-FLOP curves and the measured frontier.

Works on a fit of joint.py (`fit_form`, `fit_joint`) and the cells it was fitted to (cells.py).
docs/compute.md explains the statistics; in short:

* `optimal`: p*(C) = argmin over the sweep's patch sizes of L(p, C / f(p)), f(p) the measured
  training FLOPs per image, with a parametric (multivariate-t) bootstrap of the fit for its
  probabilities; predicted differences below the tie threshold (joint.py's `tie_threshold`) are
  ties, not wins.
* `iso_flop`, `compute_budgets`, `frontier`: L vs p at fixed C, the budgets C reported, and the
  measured loss-vs-compute frontier.
"""

from __future__ import annotations

import math

import numpy as np

from patchscale.analysis.cells import Cells
from patchscale.analysis.joint import FORM, Context, Form, bounds, predict
from patchscale.analysis.stats import json_number

N_DRAWS = 2000  # Parametric bootstrap draws for p*(C).
P_OPT_MIN = 0.025  # A patch size enters p*'s set when it is optimal in at least this share of draws.


def _patch_grid(c: Cells, n: int) -> np.ndarray:
    """n log-spaced patch sizes across the measured range, plus the measured sizes themselves."""
    return np.unique(np.concatenate([np.geomspace(c.patch_sizes.min(), c.patch_sizes.max(), n), c.patch_sizes]))


def outside_range(x: float, lo: float, hi: float) -> bool:
    """x below lo or above hi by more than rounding (relative 1e-9): an extrapolation."""
    return bool(x < lo * (1 - 1e-9) or x > hi * (1 + 1e-9))


def _central_95(draws) -> list:
    """The 2.5 and 97.5 percentiles of bootstrap draws: their 95% interval."""
    return [json_number(np.percentile(draws, 2.5)), json_number(np.percentile(draws, 97.5))]


def _draws(fit: dict, n_draws: int, seed: int, form: Form, ymin: float) -> np.ndarray:
    """Multivariate-t draws of the fit-space parameters: a parameter on a bound varies on its open
    side, the exponent of a vanished term stays fixed. Draws outside the bounds are redrawn
    (truncation keeps the correlations that clipping would break)."""
    theta = fit["_theta"]
    cov = fit.get("_cov_draws", fit["_cov"])
    if cov is None:
        return theta[None, :]
    rng = np.random.default_rng(seed)
    vals, vecs = np.linalg.eigh(cov)
    root = vecs * np.sqrt(np.clip(vals, 0, None))
    lo, hi = bounds(form, ymin)
    kept, total = [], 0
    for _ in range(20):
        z = rng.standard_normal((n_draws, len(theta))) @ root.T
        chi = rng.chisquare(fit["_df"], size=(n_draws, 1)) / fit["_df"]
        x = theta + z / np.sqrt(chi)
        kept.append(x[np.all((x >= lo) & (x <= hi), 1)])
        total += len(kept[-1])
        if total >= n_draws:
            break
    x = np.concatenate(kept)[:n_draws]
    if len(x) < n_draws // 10:  # Almost all mass outside the bounds: fall back to clipping.
        x = np.clip(theta + z / np.sqrt(chi), lo, hi)
    return x


def _tie(fit: dict, tie: float | None) -> float:
    """The tie threshold in log L: the argument, else the fit's (`pstar_status`), else 0."""
    if tie is None:
        tie = ((fit.get("pstar") or {}).get("tie_threshold") or {}).get("log")
    return float(tie or 0.0)


def _near_range(p, logL, tie: float) -> list:
    """The smallest and largest p whose log L is within `tie` of the minimum."""
    near = p[logL - logL.min() <= tie]
    return [json_number(near.min()), json_number(near.max())]


def optimal(c: Cells, fit: dict, ctx: Context, budgets, n_draws: int = N_DRAWS, seed: int = 0,
            grid: int = 121, tie: float | None = None) -> list[dict]:
    """p*(C) for each compute budget C: over the sweep's patch sizes, and continuous p between them.

    A predicted difference of log L within `tie` (default: the fit's tie threshold, the seed standard
    error of a cell mean) is a tie: `tied_for_best` holds the sizes within it of the best prediction;
    `probability_optimal[p]` is the share of draws in which p beats every other size by more than it,
    `probability_tie` the share with no such winner (they sum to 1), and `probability_among_best[p]`
    the share in which p is within it of the best. The caller decides whether the fit may be asked
    (`fit["pstar"]["status"]`)."""
    form = FORM[fit["form"]]
    theta = fit["_theta"]
    tie = _tie(fit, tie)
    draws = _draws(fit, n_draws, seed, form, float(c.mean.min()))
    cand = c.patch_sizes
    pg = _patch_grid(c, grid)
    out = []
    for C in budgets:
        C = float(C)
        D_c, D_g = C / c.f(cand), C / c.f(pg)
        L_c = predict(form.name, theta, cand, D_c, ctx)
        i = int(np.argmin(L_c))
        p_star = float(cand[i])
        log_c = np.log(np.maximum(L_c, 1e-300))
        tied = [int(p) for p in cand[log_c - log_c[i] <= tie]]
        L_g = predict(form.name, theta, pg, D_g, ctx)
        j = int(np.argmin(L_g))
        Ld_c = predict(form.name, draws, cand, D_c, ctx)  # (draws, candidates)
        logd = np.log(np.maximum(Ld_c, 1e-300))
        near = logd - logd.min(1, keepdims=True) <= tie  # Within the tie threshold of the draw's best.
        clear = near.sum(1) == 1
        win = np.bincount(np.argmin(logd, 1)[clear], minlength=len(cand)) / len(draws)
        among = near.mean(0)
        Ld_g = predict(form.name, draws, pg, D_g, ctx)
        pd = pg[np.argmin(Ld_g, 1)]
        loss_i = Ld_c[:, i]
        dlo, dhi = c.d_range(p_star)
        extrapolated = outside_range(D_c[i], dlo, dhi)
        pc = float(pg[j])
        lower, upper = cand[cand <= pc].max(), cand[cand >= pc].min()
        drange = [max(c.d_range(lower)[0], c.d_range(upper)[0]), min(c.d_range(lower)[1], c.d_range(upper)[1])]
        out.append({
            "compute": C, "patch_size": int(p_star), "images_seen": json_number(D_c[i]), "loss": json_number(L_c[i]),
            "loss_interval": _central_95(loss_i),
            "tie_threshold": json_number(tie), "tied_for_best": tied,
            "probability_optimal": {str(int(p)): json_number(q) for p, q in zip(cand, win)},
            "probability_tie": json_number(1.0 - float(clear.mean())),
            "probability_among_best": {str(int(p)): json_number(q) for p, q in zip(cand, among)},
            "patch_set": [int(p) for p, q in zip(cand, among) if q >= P_OPT_MIN] or tied,
            "extrapolated": extrapolated,
            "continuous": {"patch_size": pc, "interval": _central_95(pd),
                           "near_optimal": _near_range(pg, np.log(np.maximum(L_g, 1e-300)), tie),
                           "loss": json_number(L_g[j]), "interpolated": bool(not np.any(np.isclose(pc, cand))),
                           "extrapolated": outside_range(D_g[j], *drange)},
        })
    return out


def iso_flop(c: Cells, fit: dict, ctx: Context, budgets, grid: int = 41) -> list[dict]:
    """Predicted L vs p at fixed compute C (continuous p between the measured sizes, and at them)."""
    pg = _patch_grid(c, grid)
    out = []
    for C in budgets:
        D = float(C) / c.f(pg)
        L = predict(fit["form"], fit["_theta"], pg, D, ctx)
        out.append({"compute": float(C), "patch_size": [float(x) for x in pg], "images_seen": [float(x) for x in D],
                    "loss": [json_number(x) for x in L]})
    return out


def compute_budgets(c: Cells, extra=None, n_log: int = 5) -> list[dict]:
    """The budgets p*(C) is reported at: each patch size's compute at its largest budget, log-spaced
    values across the covered range, and the user's budget."""
    out = []
    for p in sorted(c.patch_sizes, reverse=True):
        sel = c.p == p
        out.append({"compute": float(c.C[sel][np.argmax(c.D[sel])]), "source": f"largest budget at p={int(p)}"})
    lo, hi = float(c.C.min()), float(c.C.max())
    for C in np.geomspace(lo, hi, n_log):
        if all(abs(math.log(C / e["compute"])) > 0.05 for e in out):
            out.append({"compute": float(C), "source": "log-spaced in the covered range"})
    if extra is not None:
        out.append({"compute": float(extra), "source": "requested (--budget)"})
    return sorted(out, key=lambda e: e["compute"])


# --------------------------------------------------------------------------- frontier

def frontier(cost, loss) -> list[int]:
    """Indices on the loss-vs-compute frontier: no other point is cheaper and better."""
    cost, loss = np.asarray(cost, np.float64), np.asarray(loss, np.float64)
    best, keep = np.inf, []
    for i in np.lexsort((loss, cost)):
        if loss[i] < best:
            keep.append(int(i))
            best = loss[i]
    return keep
