"""Is a group's sweep converged? The check before any claim about the law (baselines: baselines.py).

* `convergence`: per patch size, where the minimum of the seed-mean loss curve over the budget grid
  lies, judged against the seed noise. Three parts:
  - `bracketed`: the minimum is at an interior budget, or the curve is flat at the top (the largest
    budget beats D/2 by less than the tolerance or by no more than the noise allowance) while the
    smallest budget is not the best;
  - `still falling`: the largest budget beats D/2 by at least the tolerance and by more than the
    allowance: the loss still improves when the budget doubles (the minimum lies above the grid);
  - `past optimum`: the smallest budget is the best: the runs overfit before the first evaluation
    and the minimum lies below the grid.
  The noise is the seed spread of log loss (pooled within-cell variance per patch size); the
  allowance is ALLOWANCE_SE standard errors of a difference of two seed means. A change of the
  ranking of patch sizes between D/2 and D counts only when both orders exceed the allowance.
  The group is `converged` (a law claim is allowed) only when every patch size is bracketed and no
  ranking flip counts; otherwise `budget-limited` (some size still falls, or the ranking reverses),
  `past optimum` (some size's minimum lies below the grid) or `not checkable`.
docs/compute.md explains the statistics. Outputs are JSON-able with None for a missing number.
"""

from __future__ import annotations

import math

import numpy as np

from patchscale.analysis.cells import cells
from patchscale.analysis.stats import json_number

TOLERANCE = 0.05  # Relative improvement from doubling the budget below which the top of a curve counts as flat.
ALLOWANCE_SE = 2.0  # Differences within this many standard errors of a difference of two seed means are noise.
HALF_SLACK = 0.01  # A budget's steps are rounded up, so the grid's "D/2" may sit a step above D/2.
BUDGET_LIMITED = "budget-limited: no claim about the law"
PAST_OPTIMUM = "past optimum: no claim about the law"
BRACKETED, STILL_FALLING, PAST = "bracketed", "still falling", "past optimum"  # per patch size
CLASSES = (BRACKETED, STILL_FALLING, PAST)


def selected_value(run, metric: str) -> float:
    """A run's metric at its selected budget (collect.select), else its whole budget."""
    if run.budgets and run.selected_steps is None:
        value = run.budgets[-1].metric(metric)
        if value is not None:
            return float(value)
    return float(run.metric(metric))


def _has_metric(runs, metric: str) -> bool:
    """Whether every budget of every run recorded `metric` (and there is at least one budget)."""
    return all(b.metric(metric) is not None for r in runs for b in r.budgets) and any(r.budgets for r in runs)


# --------------------------------------------------------------------------- convergence

def _chosen_budgets(group_runs, metric: str) -> dict[int, list[dict]]:
    """Per patch size, each seed's budget (images seen) with the lowest `metric`: collect.select's
    early stopping (ties go to the smaller budget)."""
    out: dict[int, list[dict]] = {}
    for run in group_runs:
        usable = [b for b in run.budgets if b.images_seen > 0 and b.metric(metric) is not None]
        if not usable:
            continue
        best = min(usable, key=lambda b: (b.metric(metric), b.steps))
        out.setdefault(int(run.patch_size), []).append({"seed": int(run.seed), "budget": int(best.images_seen)})
    return {p: sorted(v, key=lambda e: e["seed"]) for p, v in out.items()}


def _pooled_sd(values_lists) -> tuple[float | None, int]:
    """Pooled within-cell standard deviation of log values, and its degrees of freedom."""
    ss, df = 0.0, 0
    for v in values_lists:
        v = np.asarray(v, np.float64)
        if len(v) > 1 and np.all(v > 0):
            lv = np.log(v)
            ss += float(((lv - lv.mean()) ** 2).sum())
            df += len(v) - 1
    return (math.sqrt(ss / df), df) if df else (None, 0)


def _se(sd_a, n_a, sd_b, n_b) -> float | None:
    """Standard error of a difference of two seed means of log loss (None without a seed spread)."""
    if sd_a is None or sd_b is None or sd_a <= 0 and sd_b <= 0:
        return None
    return math.sqrt(sd_a**2 / n_a + sd_b**2 / n_b)


def _log_ratio(a: float, b: float) -> float | None:
    return math.log(a / b) if a > 0 and b > 0 else None


def _z(a: float, b: float, se: float | None) -> float | None:
    """log(a / b) in standard errors."""
    r = _log_ratio(a, b)
    return None if r is None or se is None else json_number(r / se)


def _in_se(z) -> str:
    return "no seed spread" if z is None else f"{z:+.1f} SE"


def change_words(rel, z) -> str:
    """D/2 → D in words: 'fell by 3.1% (1.2 SE)' or 'rose by ...' (rel: relative improvement)."""
    if rel is None:
        return "changed by -"
    size = "no seed spread" if z is None else f"{abs(z):.1f} SE"
    return f"{'fell' if rel >= 0 else 'rose'} by {abs(100 * rel):.1f}% ({size})"


def flat_only_by_noise(entry: dict, tolerance: float = TOLERANCE) -> bool:
    """Flat at the top only because the seeds are noisy: the mean fell by more than the tolerance and
    every seed still chose the largest budget. The class stands (the noise allowance is the rule), but
    a reader must not take it for a minimum found."""
    return (entry.get("minimum") == "largest budget, flat" and (entry["relative_improvement"] or 0) >= tolerance
            and bool(entry["chosen_budgets"]) and entry["seeds_at_largest"] == len(entry["chosen_budgets"]))


def _sizes(ps) -> str:
    return ", ".join(map(str, ps))


def _classify(entry: dict, tolerance: float, allowance: float) -> None:
    """Fill entry's `minimum`, `classification` and `converged` from its curve (see the module doc)."""
    curve = entry["curve"]
    k = len(curve)
    if k < 2:
        entry.update(minimum=None, classification=None, converged=None)
        return
    j = int(np.argmin([c["mean"] for c in curve]))  # The first (smaller budget) on a tie.
    if j == 0:
        entry.update(minimum="smallest budget", classification=PAST)
    elif j < k - 1:
        entry.update(minimum="interior", classification=BRACKETED)
    elif entry["half_budget"] is None:
        entry.update(minimum="largest budget", classification=None)  # No D/2 to say whether it still falls.
    else:
        rel, z = entry["relative_improvement"], entry["improvement_se"]
        beyond_noise = z is None or z > allowance  # Without a seed spread, no allowance.
        if rel is not None and rel >= tolerance and beyond_noise:
            entry.update(minimum="largest budget", classification=STILL_FALLING)
        else:
            entry.update(minimum="largest budget, flat", classification=BRACKETED)
    entry["converged"] = None if entry["classification"] is None else entry["classification"] == BRACKETED


def _patch_entry(c, sel: np.ndarray, sd: float | None, sd_df: int, chosen: list[dict],
                 tolerance: float, allowance: float) -> dict:
    """One patch size: its curve over the budget grid, D/2 → D in percent and in SE, and its class."""
    sel = sel[np.argsort(c.D[sel])]
    curve = []
    for k, i in enumerate(sel):
        row = {"budget": int(c.D[i]), "mean": float(c.mean[i]), "n": int(c.n[i]),
               "improvement_percent": None, "improvement_se": None}
        if k:
            prev = sel[k - 1]
            row["improvement_percent"] = json_number(100 * (c.mean[prev] - c.mean[i]) / c.mean[i])
            row["improvement_se"] = _z(c.mean[prev], c.mean[i], _se(sd, c.n[prev], sd, c.n[i]))
        curve.append(row)
    i_full = sel[-1]
    grid = [int(d) for d in c.D[sel]]
    entry = {"patch_size": int(c.p[i_full]), "budget": int(c.D[i_full]), "mean": float(c.mean[i_full]),
             "n": int(c.n[i_full]), "budgets": grid, "curve": curve,
             "best_budget": grid[int(np.argmin(c.mean[sel]))],
             "chosen_budgets": chosen,
             "seeds_at_smallest": sum(e["budget"] == grid[0] for e in chosen) if len(grid) > 1 else None,
             "seeds_at_largest": sum(e["budget"] == grid[-1] for e in chosen) if len(grid) > 1 else None,
             "sd_log": json_number(sd), "sd_df": sd_df}
    half = sel[c.D[sel] <= c.D[i_full] / 2 * (1 + HALF_SLACK)]
    if half.size == 0:
        entry.update(half_budget=None, half_mean=None, n_half=None, relative_improvement=None,
                     improvement_percent=None, se_log=None, improvement_se=None, tolerance_se=None)
    else:
        i_half = half[np.argmax(c.D[half])]
        rel = (c.mean[i_half] - c.mean[i_full]) / c.mean[i_full]
        se = _se(sd, c.n[i_half], sd, c.n[i_full])
        entry.update(half_budget=int(c.D[i_half]), half_mean=float(c.mean[i_half]), n_half=int(c.n[i_half]),
                     relative_improvement=json_number(rel), improvement_percent=json_number(100 * rel),
                     se_log=json_number(se), improvement_se=_z(c.mean[i_half], c.mean[i_full], se),
                     tolerance_se=None if se is None else json_number(math.log1p(tolerance) / se))
    _classify(entry, tolerance, allowance)
    return entry


def _flips(checked: list[dict], allowance: float) -> list[dict]:
    """Pairs of patch sizes whose order differs at D/2 and D; `significant` when both orders exceed
    the allowance (a difference within noise is a tie, and a tie that resolves is no reversal)."""
    flips = []
    for i, a in enumerate(checked):
        for b in checked[i + 1:]:
            if np.sign(a["half_mean"] - b["half_mean"]) == np.sign(a["mean"] - b["mean"]):
                continue
            se_half = _se(a["sd_log"], a["n_half"], b["sd_log"], b["n_half"])
            se_full = _se(a["sd_log"], a["n"], b["sd_log"], b["n"])
            z_half, z_full = _z(a["half_mean"], b["half_mean"], se_half), _z(a["mean"], b["mean"], se_full)
            significant = (z_half is None or abs(z_half) > allowance) and (z_full is None or abs(z_full) > allowance)
            flips.append({"patch_sizes": [a["patch_size"], b["patch_size"]],
                          "half_difference": a["half_mean"] - b["half_mean"], "difference": a["mean"] - b["mean"],
                          "half_difference_se": z_half, "difference_se": z_full, "significant": bool(significant)})
    return flips


def _falling_words(e: dict, allowance: float, tolerance: float) -> str:
    seeds = (f"; {e['seeds_at_largest']} of {len(e['chosen_budgets'])} seeds chose the largest budget"
             if e["chosen_budgets"] else "")
    return (f"p = {e['patch_size']} (from {e['half_budget']:,} to {e['budget']:,} images it"
            f" {change_words(e['relative_improvement'], e['improvement_se'])}: ≥ {tolerance:.0%} and"
            f" > {allowance:g} SE{seeds})")


def _past_words(e: dict) -> str:
    step = e["curve"][1]
    rel = None if step["improvement_percent"] is None else step["improvement_percent"] / 100
    seeds = f"; {e['seeds_at_smallest']} of {len(e['chosen_budgets'])} seeds chose it" if e["chosen_budgets"] else ""
    return (f"p = {e['patch_size']} (from {e['budgets'][0]:,} to {e['budgets'][1]:,} images it"
            f" {change_words(rel, step['improvement_se'])}{seeds})")


def _flip_words(f: dict) -> str:
    a, b = f["patch_sizes"]
    return f"p = {a} vs p = {b}: {_in_se(f['half_difference_se'])} at D/2, {_in_se(f['difference_se'])} at D"


def convergence(group_runs, metric: str = "val_loss", tolerance: float = TOLERANCE,
                allowance: float = ALLOWANCE_SE) -> dict:
    """Where each patch size's minimum over the budget grid lies, and the group verdict (module doc)."""
    notes = []
    used = metric
    if metric.startswith("val_") and not _has_metric(group_runs, metric):
        used = "test_" + metric[4:]
        notes.append(f"{metric} missing for some budgets: convergence judged on {used}")
    c = cells(group_runs, used)
    chosen = _chosen_budgets(group_runs, used)
    group_sd, group_df = _pooled_sd(c.values)
    per_p = []
    for p in sorted({int(x) for x in c.p}, reverse=True):
        sel = np.flatnonzero(c.p == p)
        sd, df = _pooled_sd([c.values[i] for i in sel])
        if sd is None and group_sd is not None:
            sd, df = group_sd, group_df
            notes.append(f"p = {p}: one seed per budget; its noise is the group's pooled seed spread")
        entry = _patch_entry(c, sel, sd, df, chosen.get(p, []), tolerance, allowance)
        per_p.append(entry)
        n_seeds = len(entry["chosen_budgets"])
        if entry["minimum"] == "interior" and n_seeds:
            for where, count in (("smallest", entry["seeds_at_smallest"]), ("largest", entry["seeds_at_largest"])):
                if count:
                    notes.append(f"p = {p}: {count} of {n_seeds} seeds chose the {where} budget although the"
                                 " seed-mean minimum is interior")
    if group_sd is None and per_p:
        notes.append("one seed per cell: no seed spread, so no noise allowance (every difference counts)")

    by_class = {k: [e["patch_size"] for e in per_p if e["classification"] == k] for k in CLASSES}
    not_checkable = [e["patch_size"] for e in per_p if e["classification"] is None]
    by_class["not checkable"] = not_checkable
    checked = [e for e in per_p if e["classification"] is not None and e["half_budget"] is not None]
    flips = _flips(checked, allowance)
    counted = [f for f in flips if f["significant"]]
    tol_se = [e["tolerance_se"] for e in per_p if e["tolerance_se"] is not None]
    tol_se_range = [min(tol_se), max(tol_se)] if tol_se else None
    if tol_se_range is None:
        tol_words = f"tolerance {tolerance:.0%} = - SE (no seed spread)"
    elif f"{tol_se_range[0]:.1f}" == f"{tol_se_range[1]:.1f}":
        tol_words = f"tolerance {tolerance:.0%} = {tol_se_range[0]:.1f} SE"
    else:
        tol_words = f"tolerance {tolerance:.0%} = {tol_se_range[0]:.1f}–{tol_se_range[1]:.1f} SE"
    flat = [e for e in per_p if e["minimum"] == "largest budget, flat"]
    noisy_flat = [e for e in flat if flat_only_by_noise(e, tolerance)]

    parts = []
    if by_class[STILL_FALLING]:
        parts.append(f"{used} still falls when the budget doubles at "
                     + "; ".join(_falling_words(e, allowance, tolerance) for e in per_p
                                 if e["classification"] == STILL_FALLING))
    if by_class[PAST]:
        parts.append("the smallest budget on the grid is best (minimum below the grid, not bracketed) at "
                     + "; ".join(_past_words(e) for e in per_p if e["classification"] == PAST))
    if counted:
        parts.append(f"the ranking of patch sizes reverses between D/2 and D beyond {allowance:g} SE ("
                     + "; ".join(map(_flip_words, counted)) + ")")
    if by_class[STILL_FALLING]:
        verdict, head = "budget-limited", BUDGET_LIMITED
    elif by_class[PAST]:
        verdict, head = "past optimum", PAST_OPTIMUM
    elif counted:
        verdict, head = "budget-limited", BUDGET_LIMITED
    elif not_checkable or not checked:
        verdict, head = "not checkable", "not checkable"
        parts = ["needs two budgets a factor ≥ 2 apart at every patch size (missing at p = "
                 + _sizes(not_checkable or [e["patch_size"] for e in per_p if e["half_budget"] is None]) + ")"]
    else:
        verdict, head = "converged", "converged"
        interior = [e["patch_size"] for e in per_p if e["minimum"] == "interior"]
        where = ([f"interior at p = {_sizes(interior)}"] if interior else []) + (
            ["flat at the largest budget at " + "; ".join(
                f"p = {e['patch_size']} (D/2 → D {change_words(e['relative_improvement'], e['improvement_se'])})"
                for e in flat)] if flat else [])
        ignored = len(flips) - len(counted)
        parts = [f"the minimum of {used} is bracketed at every patch size (" + "; ".join(where) + ")"
                 f" and no ranking flip between D/2 and D exceeds {allowance:g} SE"
                 + (f" ({ignored} within-noise flip(s) ignored)" if ignored else "")]
    reason = f"{head}: " + "; and ".join(parts) + f" ({tol_words}, allowance {allowance:g} SE)"
    if noisy_flat:
        reason += ("; flat only within the seed noise at " + "; ".join(
            f"p = {e['patch_size']} (D/2 → D {change_words(e['relative_improvement'], e['improvement_se'])},"
            f" {e['seeds_at_largest']} of {len(e['chosen_budgets'])} seeds chose the largest budget)"
            for e in noisy_flat) + ": the minimum may lie above the grid")
    rank = lambda key: [e["patch_size"] for e in sorted(checked, key=lambda e: e[key])]  # noqa: E731
    return {"metric": used, "tolerance": tolerance, "tolerance_se": tol_se_range, "allowance_se": allowance,
            "verdict": verdict, "converged": verdict == "converged", "reason": reason,
            "classification": by_class, "patch_sizes": per_p,
            "ranking_half": rank("half_mean") if checked else [], "ranking": rank("mean") if checked else [],
            "ranking_flips": flips, "noise": ("seed spread of log " + used + ": pooled within-cell standard"
                                              " deviation per patch size; SE of a difference of two seed means"
                                              if group_sd is not None else "none (one seed per cell)"),
            "notes": notes + c.notes}
