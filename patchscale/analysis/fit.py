"""`patchscale fit DIR`'s core: fit both laws to every group of runs and write fit.json.

A group is every run that differs only in patch size and seed (`collect.groups`). Per group,
fit.json holds both fits (`laws.Fit.to_dict()`), the form choice, the paired-seed steps between
adjacent patch sizes (steps.py) and the keys that define the group, and `compute` holds the
compute view (compute.py). docs/statistics.md explains each field; reporting/fit_table.py prints
the table.
"""

from __future__ import annotations

import datetime

import numpy as np
from etils import epath

from patchscale import provenance, results
from patchscale.analysis import collect, compute
from patchscale.analysis.laws import choose, fit_power, fit_saturating
from patchscale.analysis.means import FitError
from patchscale.analysis.stats import json_mean_interval, json_safe
from patchscale.analysis.steps import paired_steps
from patchscale.errors import UserError

FIT_FILE = "fit.json"


def fit_group(members, metric: str = "test_loss") -> dict:
    """Both laws, the choice between them and the paired steps for one group of runs."""
    p = np.asarray([r.patch_size for r in members], float)
    values = np.asarray([r.metric(metric) for r in members], float)
    seeds = np.asarray([r.seed for r in members])
    entry = {"runs": [r.name for r in members], "group_keys": dict(members[0].group_keys),
             "means": {str(int(size)): json_mean_interval(values[p == size]) for size in sorted(set(p), reverse=True)},
             # Tokens per image at each patch size: groups that reach the same length in other ways
             # (model.extend_tokens, input size, S²) are compared at equal tokens (`by_tokens`).
             "tokens": {str(r.patch_size): r.tokens_per_image for r in members},
             # Training FLOPs (mean over seeds of the budget each run stands for) and parameters per
             # patch size: groups that spend compute in other ways meet on one axis (`by_flops`).
             "flops": {str(int(size)): float(np.mean([r.train_flops for r in members if r.patch_size == size]))
                       for size in sorted(set(p), reverse=True)},
             "params": {str(r.patch_size): r.params for r in members},
             # The paired steps need no law: they are reported even where a law cannot be fitted.
             "steps": json_safe(paired_steps(p, values, seeds)) if len(set(p)) > 1 else []}
    try:
        saturating, power = fit_saturating(p, values, seeds), fit_power(p, values, seeds)
    except FitError as e:
        return {**entry, "error": str(e)}
    chosen, why = choose(saturating, power)
    return {**entry, "saturating": saturating.to_dict(), "power": power.to_dict(), "chosen": chosen, "choice": why}


def fit_results(results_dir, metric: str = "test_loss", budget: float | None = None, select: str = "auto",
                compute_view: bool = True) -> dict:
    """Fit every group of a results directory, write fit.json atomically and return its payload.

    `compute_view=False` skips the joint laws over patch size and budget (p*(C), iso-FLOP curves),
    the slow part; the per-group fits, paired steps and convergence verdicts are the same."""
    if metric not in collect.METRICS:
        raise UserError(f"unknown metric {metric!r}: choose one of {', '.join(collect.METRICS)}")
    runs, warnings = collect.load(results_dir)
    for warning in warnings:
        print(f"patchscale: warning: {warning}", flush=True)
    runs, selection = collect.select(runs, select)
    fits = {}
    for group, members in sorted(collect.groups(runs).items()):
        fits[group] = fit_group(members, metric)
        if "error" in fits[group]:
            print(f"patchscale: warning: {group}: not fitted: {fits[group]['error']}", flush=True)
    analysis = compute.analyse(runs, metric=metric, budget=budget, n_draws=1000, joint_law=compute_view)
    for group, entry in fits.items():
        verdict = analysis["groups"].get(group, {})
        entry["law_claim"] = bool(verdict.get("law_claim"))
        entry["convergence"] = verdict.get("convergence", {}).get("reason")
    payload = {"metric": metric, "selection": selection, "selected_steps": {r.name: r.selected_steps for r in runs},
               "budget": budget, "fits": fits, "compute": analysis, "left_out": warnings,
               "git_commit": provenance.git_commit(), "environment": provenance.host(),
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    results.write_json_atomic(epath.Path(results_dir) / FIT_FILE, json_safe(payload))
    return payload
