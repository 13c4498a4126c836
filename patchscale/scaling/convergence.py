"""Is a group's sweep converged, and does it beat its baselines? Checks before any claim about the law.

* `convergence`: per patch size, the seed mean at the largest budget D against the largest
  budget ≤ D/2; converged when the relative improvement is below `tolerance` (a rise counts as
  converged) and the ranking of patch sizes is the same at both budgets. Otherwise the group is
  budget-limited (`BUDGET_LIMITED`): its losses say nothing about the patch-size law as D → ∞.
* `baseline_comparison`: baselines' means with t-intervals; runs worse than the linear
  baseline (by test error) are under-trained by definition.

docs/compute.md explains the statistics. Outputs are JSON-able with None for a missing number.
"""

from __future__ import annotations

import numpy as np

from patchscale.scaling.joint import cells
from patchscale.scaling.stats import json_mean_interval, json_number

TOLERANCE = 0.05  # Relative improvement from doubling the budget below which a patch size has converged.
BUDGET_LIMITED = "budget-limited: no claim about the law"


def _final(run, metric: str) -> float:
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

def convergence(group_runs, metric: str = "val_loss", tolerance: float = TOLERANCE) -> dict:
    """Does doubling the budget still pay? Per patch size and for the group (see module doc)."""
    notes = []
    used = metric
    if metric.startswith("val_") and not _has_metric(group_runs, metric):
        used = "test_" + metric[4:]
        notes.append(f"{metric} missing for some budgets: convergence judged on {used}")
    c = cells(group_runs, used)
    per_p, not_checkable = [], []
    for p in sorted({int(x) for x in c.p}, reverse=True):
        sel = np.flatnonzero(c.p == p)
        D = c.D[sel]
        i_full = sel[np.argmax(D)]
        half = sel[D <= c.D[i_full] / 2 * (1 + 1e-9)]
        entry = {"patch_size": p, "budget": int(c.D[i_full]), "mean": float(c.mean[i_full]), "n": int(c.n[i_full])}
        if half.size == 0:
            not_checkable.append(p)
            entry.update(half_budget=None, half_mean=None, relative_improvement=None, converged=None)
        else:
            i_half = half[np.argmax(c.D[half])]
            rel = (c.mean[i_half] - c.mean[i_full]) / c.mean[i_full]
            entry.update(half_budget=int(c.D[i_half]), half_mean=float(c.mean[i_half]), n_half=int(c.n[i_half]),
                         relative_improvement=json_number(rel), converged=bool(rel < tolerance))
        per_p.append(entry)
    checked = [e for e in per_p if e["converged"] is not None]
    flips = []
    for i, a in enumerate(checked):
        for b in checked[i + 1:]:
            if np.sign(a["half_mean"] - b["half_mean"]) != np.sign(a["mean"] - b["mean"]):
                flips.append({"patch_sizes": [a["patch_size"], b["patch_size"]],
                              "half_difference": a["half_mean"] - b["half_mean"],
                              "difference": a["mean"] - b["mean"]})
    rank = lambda key: [e["patch_size"] for e in sorted(checked, key=lambda e: e[key])]  # noqa: E731
    still_falling = [e["patch_size"] for e in checked if not e["converged"]]
    if still_falling or flips:
        verdict = "budget-limited"
        parts = []
        if still_falling:
            parts.append("doubling the budget still improves " + used + " by ≥ "
                         f"{tolerance:.0%} at p = {', '.join(map(str, still_falling))}")
        if flips:
            parts.append("the ranking of patch sizes changes between D/2 and D ("
                         + "; ".join(f"p={f['patch_sizes'][0]} vs p={f['patch_sizes'][1]}" for f in flips) + ")")
        reason = f"{BUDGET_LIMITED}: " + " and ".join(parts)
    elif not_checkable or not checked:
        verdict = "not checkable"
        reason = ("not checkable: needs two budgets a factor ≥ 2 apart at every patch size (missing at p = "
                  + ", ".join(map(str, not_checkable)) + ")")
    else:
        verdict = "converged"
        reason = (f"converged: doubling the budget changes {used} by < {tolerance:.0%} at every patch size"
                  " and keeps the ranking of patch sizes")
    return {"metric": used, "tolerance": tolerance, "verdict": verdict, "converged": verdict == "converged",
            "reason": reason, "patch_sizes": per_p, "ranking_half": rank("half_mean") if checked else [],
            "ranking": rank("mean") if checked else [], "ranking_flips": flips, "notes": notes + c.notes}


# --------------------------------------------------------------------------- baselines

def _baseline_convergence(members) -> str:
    """The criterion applied to one baseline (a single 'patch size'), in words that fit a baseline."""
    result = convergence(members, "val_loss")
    if result["verdict"] == "not checkable":
        return "convergence not checkable (needs two budgets a factor ≥ 2 apart)"
    gain = result["patch_sizes"][0]["relative_improvement"]
    state = "converged" if result["converged"] else "not converged"
    return f"{state}: doubling the budget improved {result['metric']} by {gain:.1%} (tolerance {TOLERANCE:.0%})"


def baseline_comparison(grouped: dict, baselines: dict, metric: str = "test_loss") -> dict:
    """Baselines' seed means with t-intervals; runs worse than the linear baseline (test error) listed."""
    out: dict = {}
    linear_by_size: dict[int, str] = {}
    for label, members in sorted(baselines.items()):
        kind = members[0].baseline
        size = members[0].image_size
        out[label] = {"kind": kind, "image_size": size, "runs": [r.name for r in members],
                      "test_loss": json_mean_interval([_final(r, "test_loss") for r in members]),
                      "test_error": json_mean_interval([_final(r, "test_error") for r in members]),
                      "reference": json_number(np.mean([_final(r, metric) for r in members])),
                      # A baseline is a fair reference only when it is itself converged.
                      "convergence": _baseline_convergence(members)}
        if kind == "linear":
            linear_by_size.setdefault(size, label)
    runs, under, notes = [], [], []
    for group, members in sorted(grouped.items()):
        size = members[0].image_size
        label = linear_by_size.get(size)
        if label is None:
            notes.append(f"{group}: no linear baseline at input size {size}: under-training not checked")
        linear = out[label]["test_error"]["mean"] if label else None
        for r in sorted(members, key=lambda r: (-r.patch_size, r.seed)):
            err = _final(r, "test_error")
            bad = None if linear is None else bool(err > linear)
            runs.append({"group": group, "patch_size": r.patch_size, "seed": r.seed, "run": r.name,
                         "test_error": err, "linear_baseline": label, "linear_error": linear, "under_trained": bad})
            if bad:
                under.append(r.name)
    return {"metric": metric, "baselines": out, "runs": runs, "under_trained": under,
            "note": (f"{len(under)} run(s) worse than the linear baseline: under-trained by definition"
                     if under else "every checked run beats the linear baseline"), "notes": notes}
