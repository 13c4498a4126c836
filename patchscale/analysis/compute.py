"""The compute view of a sweep, per group: convergence, baselines, the joint law L(p, D) and p*(C).

`analyse` runs convergence.py's checks, joint.py's fits and optimal.py's p*(C) on every group of a
sweep (cells.py's seed means) and returns one JSON-able dict (None for a missing number), fit.json's
`compute`. docs/compute.md explains the statistics; reporting/compute_table.py prints it and
reporting/compute_plots.py draws it.
"""

from __future__ import annotations

import numpy as np

from patchscale.analysis import collect
from patchscale.analysis.baselines import baseline_comparison
from patchscale.analysis.convergence import TOLERANCE, convergence
from patchscale.analysis.cells import cells
from patchscale.analysis.joint import IDENTIFIED, REFUSED, TOO_FEW, fit_joint
from patchscale.analysis.optimal import N_DRAWS, compute_budgets, iso_flop, optimal, outside_range
from patchscale.analysis.stats import json_number


def _public(d):
    """Drop the private numpy members (keys starting with '_') so the result is JSON."""
    if isinstance(d, dict):
        return {k: _public(v) for k, v in d.items() if not k.startswith("_")}
    if isinstance(d, list):
        return [_public(v) for v in d]
    if isinstance(d, (np.floating, np.integer)):
        return json_number(d) if isinstance(d, np.floating) else int(d)
    if isinstance(d, np.bool_):
        return bool(d)
    return d


SKIPPED = "compute view skipped (patchscale fit --no-compute-view): no joint law, p*(C) or iso-FLOP curves"


def analyse_group(group_runs, metric: str = "test_loss", budget: float | None = None, n_draws: int = N_DRAWS,
                  seed: int = 0, tolerance: float = TOLERANCE, joint_law: bool = True) -> dict:
    """One group: its cells, convergence verdict, joint fits, p*(C) per candidate form whose fit is
    identified (`pstar` says which and why not the others) and iso-FLOP curves from the first of them.
    With `joint_law=False` only the cells and the convergence verdict (the joint fits are the slow part).
    The result still holds private numpy members (keys starting with '_'); `analyse` drops them."""
    c = cells(group_runs, metric)
    conv = convergence(group_runs, "val_loss", tolerance)
    out = {"metric": metric, "n_runs": len(group_runs), "seeds": sorted({r.seed for r in group_runs}),
           "patch_sizes": [int(p) for p in sorted(c.patch_sizes, reverse=True)],
           "budgets": sorted({int(d) for d in c.D}), "cells": c.to_list(),
           "flops_per_image": [{"patch_size": int(p), "train_flops": float(f), "tokens": int(t)}
                               for p, f, t in zip(c.patch_sizes, c.flops_per_image, c.tokens)],
           "convergence": conv, "law_claim": conv["verdict"] == "converged", "notes": list(c.notes)}
    if conv["verdict"] in ("budget-limited", "past optimum"):
        out["notes"].append(f"{conv['verdict']}: no claim about the patch-size law as D → ∞; the joint fit describes"
                            " the measured budgets only")
    if not joint_law:
        out["joint"] = {"status": "skipped", "reason": SKIPPED, "fits": {}}
        out["pstar"] = {"status": "not fitted", "forms": [], "refused": {}, "reason": SKIPPED}
        return out
    if len(c.p) == 0:
        out["joint"] = {"status": "too few", "reason": f"{TOO_FEW}: no budgets with images seen", "fits": {}}
        out["pstar"] = {"status": "not fitted", "forms": [], "refused": {}, "reason": out["joint"]["reason"]}
        return out
    joint = fit_joint(c)
    out["joint"] = joint
    if joint["status"] != "fitted":
        out["pstar"] = {"status": "not fitted", "forms": [], "refused": {}, "reason": joint["reason"]}
        return out
    ctx = joint["_ctx"]
    Cs = compute_budgets(c, budget)
    values = [e["compute"] for e in Cs]
    lo, hi = float(c.C.min()), float(c.C.max())
    curve = np.geomspace(lo / 4, hi * 4, 25)
    out["compute_range"] = [lo, hi]
    out["pstar"] = pstar_summary(joint)
    out["optimal"] = {}
    out["pstar_curve"] = {}
    for name in out["pstar"]["forms"]:  # Refused forms get no p*(C) rows and no curve.
        fit = joint["fits"][name]
        rows = optimal(c, fit, ctx, values, n_draws, seed)
        for row, e in zip(rows, Cs):
            row["source"] = e["source"]
            row["in_covered_range"] = not outside_range(row["compute"], lo, hi)
        out["optimal"][name] = rows
        out["pstar_curve"][name] = [
            {"compute": r["compute"], "patch_size": r["continuous"]["patch_size"],
             "interval": r["continuous"]["interval"], "near_optimal": r["continuous"]["near_optimal"],
             "discrete": r["patch_size"], "tied_for_best": r["tied_for_best"],
             "extrapolated": bool(r["continuous"]["extrapolated"] or not lo <= r["compute"] <= hi)}
            for r in optimal(c, fit, ctx, curve, min(n_draws, 1000), seed)]
    # Iso-FLOP curves are the law's predictions: only from a law p*(C) may use.
    law = out["pstar"]["forms"][0] if out["pstar"]["forms"] else None
    out["iso_flop_form"] = law
    out["iso_flop"] = iso_flop(c, joint["fits"][law], ctx, values) if law else []
    return out


def pstar_summary(joint: dict) -> dict:
    """Whether the group's p*(C) can be known: the candidate forms (best leave-one-out error first)
    whose fit is identified, the refused ones with their reasons, and one sentence."""
    forms = [n for n in joint["candidates"] if joint["fits"][n]["pstar"]["status"] == IDENTIFIED]
    refused = {n: joint["fits"][n]["pstar"]["reason"] for n in joint["candidates"]
               if joint["fits"][n]["pstar"]["status"] == REFUSED}
    if not forms:
        which = "the chosen form" if len(joint["candidates"]) == 1 else "every candidate form"
        reason = (f"p*(C) refused under {which} (the ranking of patch sizes would come from the form and its bounds,"
                  " not the data): " + "; ".join(f"{n}: {', '.join(joint['fits'][n]['pstar']['problems'])}"
                                                 for n in refused))
        return {"status": REFUSED, "forms": [], "refused": refused, "reason": reason}
    reason = f"p*(C) under {', '.join(forms)}" + (f"; refused under {', '.join(refused)}" if refused else "")
    return {"status": IDENTIFIED, "forms": forms, "refused": refused, "reason": reason}


def analyse(runs, metric: str = "test_loss", budget: float | None = None, n_draws: int = N_DRAWS, seed: int = 0,
            tolerance: float = TOLERANCE, joint_law: bool = True) -> dict:
    """Everything per group (convergence, joint law, p*(C), iso-FLOP curves) plus the baselines; JSON-able.
    `joint_law=False` skips the joint fits (see analyse_group)."""
    grouped = collect.groups(runs)
    groups = {label: _public(analyse_group(members, metric, budget, n_draws, seed, tolerance, joint_law))
              for label, members in sorted(grouped.items())}
    return {"metric": metric, "budget": budget, "groups": groups,
            "baselines": baseline_comparison(grouped, collect.baselines(runs), metric)}
