"""The joint law L(p, D) of one group: candidate forms fitted to its cells, compared, and checked for p*(C).

Works on the seed means of the (patch size p, budget D) cells of one group (cells.py). Pure
numpy/scipy in float64; outputs are JSON-able with None for a missing number, apart from the
private members (keys starting with '_': numpy arrays, the Context). docs/compute.md explains the
statistics; in short:

* `fit_joint`: candidate joint laws (`FORMS`), each a weighted least-squares fit of log seed
  means (weights from the pooled within-cell seed variance, t-scaled covariance), compared by
  leave-one-cell-out prediction error with a paired t-interval; "not separable" when the
  interval of the difference contains zero.
* `pstar_status` (in each fit's `pstar`): whether the law can say anything about p*(C). Refused when
  the lack-of-fit test rejects or a parameter other than the floor E sits on a bound (or its term
  vanishes); the tie threshold, the seed standard error of a cell mean in log L. p*(C) itself is
  optimal.py's.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize, stats

from patchscale.analysis.cells import Cells
from patchscale.analysis.stats import json_number, mean_interval, t_quantile

TOO_FEW = "too few budgets/patch sizes for a joint law"
ALPHA_BOUNDS = (1e-3, 5.0)
BETA_BOUNDS = (1e-3, 3.0)
GAMMA_BOUNDS = (-6.0, 6.0)
LOG_SCALE_BOUNDS = (-25.0, 10.0)  # ln A and ln B (loss units at the reference point).
LACK_OF_FIT_LEVEL = 0.05  # The lack-of-fit F-test rejects below this p-value; p*(C) is then refused.
IDENTIFIED, REFUSED = "identified", "refused"  # fit["pstar"]["status"]
SYMBOL = {"alpha": "α", "beta": "β", "gamma": "γ"}


@dataclasses.dataclass(frozen=True)
class Form:
    """A candidate joint law: its name, its formula for the output, its fit-space parameter names."""

    name: str
    formula: str
    names: tuple[str, ...]

    @property
    def k(self) -> int:
        return len(self.names)


FORMS = (
    Form("additive", "E + A·(p/p0)^α + B·(D/D0)^(−β)", ("E", "A", "alpha", "B", "beta")),
    Form("tokens", "E + A·(p/p0)^α + B·(D·t(p)/(D0·t(p0)))^(−β)", ("E", "A", "alpha", "B", "beta")),
    Form("interaction", "E + A·(p/p0)^α + B·(p/p0)^γ·(D/D0)^(−β)", ("E", "A", "alpha", "B", "beta", "gamma")),
)
FORM = {f.name: f for f in FORMS}


@dataclasses.dataclass
class Context:
    """What a prediction needs besides the parameters: references and t(p)."""

    p0: float
    D0: float
    tokens: Cells

    def x(self, p):
        return np.asarray(p, np.float64) / self.p0

    def d(self, D):
        return np.asarray(D, np.float64) / self.D0


def predict(form: str, theta, p, D, ctx: Context) -> np.ndarray:
    """L(p, D); theta is in fit space (E, ln A, α, ln B, β[, γ]) and may be a (draws, k) array."""
    theta = np.asarray(theta, np.float64)
    th = theta[..., None] if theta.ndim == 2 else theta  # draws broadcast against points
    E, lnA, alpha, lnB, beta = (th[..., i] if theta.ndim == 1 else th[:, i] for i in range(5))
    x, d = ctx.x(p), ctx.d(D)
    patch = np.exp(lnA + alpha * np.log(x))
    if form == "additive":
        data = np.exp(lnB - beta * np.log(d))
    elif form == "tokens":
        tau = ctx.tokens.t(p) / ctx.tokens.t(ctx.p0)
        data = np.exp(lnB - beta * np.log(d * tau))
    elif form == "interaction":
        gamma = theta[..., 5] if theta.ndim == 1 else th[:, 5]
        data = np.exp(lnB + gamma * np.log(x) - beta * np.log(d))
    else:
        raise ValueError(f"unknown joint form {form!r}")
    return E + patch + data


def bounds(form: Form, ymin: float):
    """Fit-space box: E in [0, smallest cell mean), scales and exponents within the module's bounds."""
    lo = [0.0, LOG_SCALE_BOUNDS[0], ALPHA_BOUNDS[0], LOG_SCALE_BOUNDS[0], BETA_BOUNDS[0]]
    hi = [ymin * (1 - 1e-6), LOG_SCALE_BOUNDS[1], ALPHA_BOUNDS[1], LOG_SCALE_BOUNDS[1], BETA_BOUNDS[1]]
    if form.k == 6:
        lo.append(GAMMA_BOUNDS[0])
        hi.append(GAMMA_BOUNDS[1])
    return np.asarray(lo), np.asarray(hi)


def _starts(form: Form, p, D, y, ctx: Context, n_best: int = 3) -> list[np.ndarray]:
    """Variable-projection starts: for each (α, β[, γ]) on a coarse grid, E, A, B ≥ 0 from an NNLS on
    relative errors of L; the best few (by log residual) start the full fit."""
    ymin = float(y.min())
    cands = []
    gammas = np.linspace(-3, 3, 7) if form.k == 6 else [None]
    for alpha in (0.25, 0.5, 1.0, 1.5, 2.0, 3.0):
        for beta in (0.1, 0.25, 0.5, 0.75, 1.0, 1.5):
            for gamma in gammas:
                theta = np.array([0.0, 0.0, alpha, 0.0, beta] + ([gamma] if gamma is not None else []))
                # Columns: 1, patch term at A = 1, data term at B = 1 (relative weights as in log space).
                one_a = predict(form.name, theta, p, D, ctx)  # E=0, A=B=1
                th_b = theta.copy()
                th_b[1] = LOG_SCALE_BOUNDS[0] * 4  # A ≈ 0
                col_b = predict(form.name, th_b, p, D, ctx)
                col_a = one_a - col_b
                X = np.stack([np.ones_like(y), col_a, col_b], 1) * (1 / y)[:, None]  # Relative errors.
                coef, _ = optimize.nnls(X, np.ones_like(y))
                E = min(coef[0], ymin * 0.99)
                full = np.concatenate([[E, math.log(max(coef[1], 1e-9)), alpha, math.log(max(coef[2], 1e-9)), beta],
                                       [gamma] if gamma is not None else []])
                r = np.log(y) - np.log(np.maximum(predict(form.name, full, p, D, ctx), 1e-300))
                cands.append((float(r @ r), full))
    cands.sort(key=lambda c: c[0])
    return [c[1] for c in cands[:n_best]]


def _solve(form: Form, p, D, y, W, ctx: Context, starts) -> optimize.OptimizeResult:
    """Bounded least squares of the whitened log residuals from each start; the best result."""
    lo, hi = bounds(form, float(y.min()))
    logy = np.log(y)

    def resid(theta):
        return W @ (logy - np.log(np.maximum(predict(form.name, theta, p, D, ctx), 1e-300)))

    best = None
    for x0 in starts:
        x0 = np.clip(np.asarray(x0, np.float64), lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
        res = optimize.least_squares(resid, x0, bounds=(lo, hi), method="trf", x_scale="jac", max_nfev=3000,
                                     ftol=1e-12, xtol=1e-12, gtol=1e-12)
        if best is None or res.cost < best.cost - 1e-12:
            best = res
    return best


def _pure_error(c: Cells) -> tuple[float | None, int, float]:
    """Seed noise of log L: pooled within-cell variance, its degrees of freedom, and the correlation
    between budgets of one run (cooldown branches of one seed share its history), pooled over patch
    sizes and clipped to [0, 0.95]."""
    ss, df = 0.0, 0
    for v in c.values:
        if len(v) > 1:
            lv = np.log(np.asarray(v, np.float64))
            ss += float(((lv - lv.mean()) ** 2).sum())
            df += len(v) - 1
    if not df:
        return None, 0, 0.0
    s2 = ss / df
    cross, pairs = 0.0, 0
    for p in np.unique(c.p):
        idx = np.flatnonzero(c.p == p)
        common = set.intersection(*(set(c.seeds[i]) for i in idx))
        if len(idx) < 2 or len(common) < 2:
            continue
        dev = np.stack([np.log([dict(zip(c.seeds[i], c.values[i]))[s] for s in sorted(common)]) for i in idx], 1)
        dev = dev - dev.mean(0)
        S = dev.T @ dev  # (budgets × budgets) sums of products, len(common) − 1 df
        k = len(idx)
        cross += float(S.sum() - np.trace(S))
        pairs += k * (k - 1) * (len(common) - 1)
    rho = float(np.clip(cross / pairs / s2, 0.0, 0.95)) if pairs and s2 > 0 else 0.0
    return s2, df, rho


def _whitener(c: Cells, idx: np.ndarray, s2: float | None, rho: float) -> np.ndarray:
    """W with W·(log ȳ − log L̂) standardised: inverse Cholesky factor of the cell means' covariance,
    block-diagonal by patch size (identity with one seed per cell: the scale comes from the residuals)."""
    m = len(idx)
    if s2 is None:
        return np.eye(m)
    V = np.zeros((m, m))
    for a in range(m):
        for b in range(m):
            i, j = idx[a], idx[b]
            if c.p[i] != c.p[j]:
                continue
            shared = len(set(c.seeds[i]) & set(c.seeds[j]))
            V[a, b] = s2 * (1.0 if a == b else rho) * shared / (c.n[i] * c.n[j])
    return np.linalg.inv(np.linalg.cholesky(V))


def _requirements(c: Cells, form: Form) -> str | None:
    """Why the data cannot support `form` (too few patch sizes, budgets or cells), or None."""
    m, n_p, n_d = len(c.p), len(set(c.p)), len(set(c.D))
    if n_p < 3 or n_d < 3 or m < form.k + 2:
        return (f"{TOO_FEW}: {form.name} ({form.k} parameters) needs ≥ 3 patch sizes, ≥ 3 budgets and ≥ "
                f"{form.k + 2} (p, D) cells; the data have {n_p} patch sizes, {n_d} budgets, {m} cells")
    return None


def fit_form(c: Cells, form: Form, ctx: Context, s2: float | None, df_pe: int, rho: float = 0.0,
             loo: bool = True) -> dict:
    """One joint form: generalised least squares on log seed means (seed noise as covariance),
    t-scaled covariance of the parameters, diagnostics, whether p*(C) can be known (`pstar`) and,
    unless loo=False, leave-one-cell-out errors."""
    y, p, D = c.mean, c.p, c.D
    m = len(y)
    dof = m - form.k
    W = _whitener(c, np.arange(m), s2, rho)
    res = _solve(form, p, D, y, W, ctx, _starts(form, p, D, y, ctx))
    theta = res.x
    chi2 = 2 * res.cost
    notes = []
    lo, hi = bounds(form, float(y.min()))
    span = hi - lo
    at_bound = (np.abs(theta - lo) < 1e-6 * span) | (np.abs(theta - hi) < 1e-6 * span) | (res.active_mask != 0)
    # A or B ≈ 0 makes its exponent unidentified.
    scale = float(np.median(y))
    vanished = np.zeros(form.k, bool)
    vanished_terms = {}
    if math.exp(theta[1]) < 1e-6 * scale:
        vanished[[1, 2]] = True
        vanished_terms["A"] = ["alpha"]
        notes.append("A ≈ 0: the patch-size term vanishes, α not identified")
    if math.exp(theta[3]) < 1e-6 * scale:
        vanished[[3, 4] + ([5] if form.k == 6 else [])] = True
        vanished_terms["B"] = ["beta"] + (["gamma"] if form.k == 6 else [])
        notes.append("B ≈ 0: the budget term vanishes, β not identified")
    unident = at_bound | vanished
    # A vanished term's scale and exponents are free along a flat valley: where they land (on a bound
    # or just off it) differs between CPUs, so they are named as vanished, never as on a bound.
    on_bound = {}
    for i in np.flatnonzero(at_bound & ~vanished):
        name = form.names[i]
        side = "lower" if abs(theta[i] - lo[i]) <= abs(theta[i] - hi[i]) else "upper"
        on_bound[name] = side
        if name == "E" and side == "upper":
            notes.append("E at its upper bound (the smallest cell mean): floor not identified")
        else:
            notes.append(f"{name} at its {side} bound: not identified, no interval")
    # Scale: pure error when it exists and the fit is adequate; else the residual variance.
    if s2 is None:
        phi = chi2 / dof if dof > 0 else float("nan")
        df_t = dof
        lof = None
        notes.append("one seed per cell: intervals from the residual scatter")
    else:
        F = chi2 / dof if dof > 0 else float("nan")
        pval = float(stats.f.sf(F, dof, df_pe)) if dof > 0 and df_pe > 0 else None
        lof = {"F": json_number(F), "df": [dof, df_pe], "p_value": json_number(pval)}
        phi, df_t = (max(1.0, F), df_pe if F <= 1.0 else dof) if dof > 0 else (1.0, df_pe)
        if pval is not None and pval < LACK_OF_FIT_LEVEL:
            notes.append(f"lack of fit (F({dof},{df_pe}) = {F:.2f}, p = {pval:.3g}):"
                         " intervals widened by the residual scatter")
    free = ~unident
    cov_free = _gauss_newton_cov(res.jac, free, phi)
    cov = np.zeros((form.k, form.k))
    if cov_free is not None:
        cov[np.ix_(free, free)] = cov_free
    # The draws for p*(C) also vary the parameters on a bound (their one-sided uncertainty: the draws
    # are truncated at the bound); only the exponents of vanished terms stay fixed.
    cov_draws = _gauss_newton_cov(res.jac, ~vanished, phi)
    if cov_draws is not None:
        full = np.zeros((form.k, form.k))
        full[np.ix_(~vanished, ~vanished)] = cov_draws
        cov_draws = full
    tq = t_quantile(max(df_t, 1))
    params, intervals, se = {}, {}, {}
    for i, name in enumerate(form.names):
        value = theta[i]
        sd = math.sqrt(max(cov[i, i], 0.0)) if cov_free is not None and free[i] else None
        if name in ("A", "B"):
            params[name] = math.exp(value)
            intervals[name] = None if sd is None else [math.exp(value - tq * sd), math.exp(value + tq * sd)]
            se[name] = None if sd is None else math.exp(value) * sd
        else:
            params[name] = float(value)
            intervals[name] = None if sd is None else [max(value - tq * sd, lo[i]), min(value + tq * sd, hi[i])]
            se[name] = sd
    out = {"form": form.name, "formula": form.formula, "k": form.k,
           "params": {k: json_number(v) for k, v in params.items()},
           "intervals": {k: None if v is None else [json_number(v[0]), json_number(v[1])]
                         for k, v in intervals.items()},
           "standard_errors": {k: json_number(v) for k, v in se.items()},
           "at_bound": [form.names[i] for i in np.flatnonzero(unident)],
           "on_bound": on_bound, "vanished": sorted(vanished_terms),
           "chi2": json_number(chi2), "dof": dof, "scale": json_number(phi), "t_df": int(df_t), "lack_of_fit": lof,
           "rms_log_residual": json_number(math.sqrt(float(np.mean(np.linalg.solve(W, res.fun) ** 2)))),
           "notes": notes,
           "pstar": pstar_status(on_bound, vanished_terms, lof, tie_threshold(c, s2, df_pe, phi)),
           "_theta": theta, "_cov": cov if cov_free is not None else None, "_cov_draws": cov_draws,
           "_df": max(df_t, 1)}
    if not loo:
        return out
    errors = np.empty(m)
    for i in range(m):
        keep = np.arange(m) != i
        r_i = _solve(form, p[keep], D[keep], y[keep], _whitener(c, np.flatnonzero(keep), s2, rho), ctx, [theta])
        errors[i] = math.log(y[i]) - math.log(float(predict(form.name, r_i.x, p[i], D[i], ctx)))
    out["_loo"] = errors
    out["loo_rmse"] = json_number(math.sqrt(float(np.mean(errors ** 2))))
    out["loo_mae"] = json_number(float(np.mean(np.abs(errors))))
    return out


def _gauss_newton_cov(jac: np.ndarray, keep: np.ndarray, phi: float) -> np.ndarray | None:
    """phi·(JᵀJ)⁺ over the columns `keep` (None when nothing is kept or the scale is not finite)."""
    if not keep.any() or not math.isfinite(phi):
        return None
    J = jac[:, keep]
    return np.linalg.pinv(J.T @ J) * phi


def tie_threshold(c: Cells, s2: float | None, df_pe: int, phi: float) -> dict:
    """The smallest predicted difference of log L that p*(C) counts as a difference: the seed standard
    error of a cell mean, √(pooled within-cell variance / seeds per cell (median)); with one seed per
    cell, the residual scatter of the fit stands for it."""
    n = int(np.median(c.n)) if len(c.n) else 1
    if s2 is not None:
        return {"log": json_number(math.sqrt(s2 / n)), "seeds": n,
                "source": f"seed standard error of a cell mean (pooled within-cell variance, {df_pe} df, n = {n})"}
    value = math.sqrt(phi) if math.isfinite(phi) else None
    return {"log": json_number(value), "seeds": n,
            "source": "residual scatter of the fit (one seed per cell: no seed standard error)"}


def pstar_status(on_bound: dict, vanished: dict, lof: dict | None, tie: dict) -> dict:
    """Whether p*(C) can be known from this fit: refused (status, one-sentence reason) when the
    lack-of-fit test rejects at LACK_OF_FIT_LEVEL, when a parameter other than the floor E sits on a
    bound (above all the exponents α, β, γ) or when a term vanishes (its exponent is then free).
    Such a law ranks patch sizes by its bounds and form, not by the data. Otherwise identified, with
    the tie threshold p*(C) uses and caveats in `notes`."""
    problems, notes = [], []
    if lof is not None and lof["p_value"] is not None and lof["p_value"] < LACK_OF_FIT_LEVEL:
        d1, d2 = lof["df"]
        problems.append(f"lack of fit rejected (F({d1},{d2}) = {lof['F']:.3g}, p = {lof['p_value']:.2g}"
                        f" < {LACK_OF_FIT_LEVEL:g})")
    elif lof is None or lof["p_value"] is None:
        notes.append("lack of fit not testable (one seed per cell or no residual degrees of freedom)")
    bounded = [f"{SYMBOL.get(n, n)} at its {side} bound" for n, side in on_bound.items()
               if n != "E" and n not in vanished]  # A vanished scale is named below.
    if bounded:
        problems.append(", ".join(bounded))
    for term, exps in sorted(vanished.items()):
        free = [SYMBOL.get(x, x) for x in exps if x not in on_bound]
        problems.append(f"{term} ≈ 0" + (f" leaves {', '.join(free)} unidentified" if free else ""))
    if "E" in on_bound:
        notes.append(f"E at its {on_bound['E']} bound: its one-sided uncertainty enters the draws"
                     " (truncated at the bound)")
    if tie["log"] is None:
        notes.append("no tie threshold (no estimate of the seed noise): ties only for equal predictions")
    if problems:
        return {"status": REFUSED, "reason": "p*(C) refused: " + "; ".join(problems)
                + ", so the law's ranking of patch sizes is not determined by the data",
                "problems": problems, "notes": notes, "tie_threshold": tie}
    return {"status": IDENTIFIED, "reason": None, "problems": [], "notes": notes, "tie_threshold": tie}


def _context(c: Cells) -> Context:
    """References p0 and D0 at the geometric means of the measured patch sizes and budgets."""
    return Context(p0=float(np.exp(np.mean(np.log(c.patch_sizes)))), D0=float(np.exp(np.mean(np.log(np.unique(c.D))))),
                   tokens=c)


def fit_joint(c: Cells, forms=FORMS) -> dict:
    """Fit every candidate form that the data can support; choose by leave-one-cell-out error."""
    if np.any(c.mean <= 0):
        return {"status": "not fitted", "reason": "non-positive cell means: the law is fitted in log L", "fits": {}}
    s2, df_pe, rho = _pure_error(c)
    ctx = _context(c)
    fits, skipped = {}, {}
    for form in forms:
        why = _requirements(c, form)
        if why:
            skipped[form.name] = why
            continue
        fits[form.name] = fit_form(c, form, ctx, s2, df_pe, rho)
    base = {"reference": {"p0": ctx.p0, "D0": ctx.D0},
            "pure_error": {"variance_log": json_number(s2), "df": df_pe, "budget_correlation": rho},
            "cells": len(c.p), "skipped": skipped, "_ctx": ctx}
    if not fits:
        return {**base, "status": "too few", "reason": next(iter(skipped.values())), "fits": {}}
    names = sorted(fits, key=lambda f: fits[f]["loo_mae"])
    best = names[0]
    comparisons, tied = {}, [best]
    for other in names[1:]:
        d = np.abs(fits[other]["_loo"]) - np.abs(fits[best]["_loo"])
        s = mean_interval(d)
        separated = s["lo"] is not None and s["lo"] > 0
        comparisons[other] = {"mean_abs_error_difference": json_number(s["mean"]),
                              "interval": [json_number(s["lo"]), json_number(s["hi"])], "separated": separated}
        if not separated:
            tied.append(other)
    chosen = best if len(tied) == 1 else None
    reason = (f"{best}: lowest leave-one-cell-out error, separated from the others" if chosen else
              f"forms not separable: {', '.join(tied)} within the uncertainty of leave-one-cell-out error;"
              f" {best} has the lowest")
    return {**base, "status": "fitted", "fits": fits, "preferred": best, "chosen": chosen,
            "separable": chosen is not None,
            "candidates": tied, "comparisons": comparisons, "reason": reason}
