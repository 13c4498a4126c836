"""Simple baselines beside the patch-size groups: their own convergence, under-training, the MLP bar.

A linear model on the pixels marks under-training (a run worse than it in test error learned
less than a linear read-out); the one-hidden-layer MLP is the strongest simple model on the same
pixels, the bar every tokenisation should clear. Both run through the same trainer and budgets.
"""

from __future__ import annotations

import math

import numpy as np

from patchscale.analysis import convergence
from patchscale.analysis.stats import json_mean_interval, json_number


def _baseline_convergence(members) -> str:
    """The criterion applied to one baseline (a single 'patch size'), in words that fit a baseline."""
    result = convergence.convergence(members, "val_loss")
    entry = result["patch_sizes"][0] if result["patch_sizes"] else None
    if entry is None or entry["classification"] is None:
        return "convergence not checkable (needs two budgets a factor ≥ 2 apart)"
    metric = result["metric"]
    words = convergence.change_words(entry["relative_improvement"], entry["improvement_se"])
    change = (f"doubling the budget: {metric} {words}"
              f" (tolerance {result['tolerance']:.0%}, allowance {result['allowance_se']:g} SE)"
              ) if entry["half_budget"] is not None else ""
    if entry["classification"] == convergence.BRACKETED:
        where = "an interior budget" if entry["minimum"] == "interior" else "the top (flat)"
        if convergence.flat_only_by_noise(entry, result["tolerance"]):
            where = ("the top (flat only within the seed noise; every seed chose the largest budget,"
                     " so the minimum may lie above the grid)")
        return f"converged: minimum bracketed at {where}" + (f"; {change}" if change else "")
    if entry["classification"] == convergence.STILL_FALLING:
        return f"not converged: still falling; {change}"
    return ("not converged: past optimum: the smallest budget is best (minimum below the grid)"
            + (f"; {change}" if change else ""))


def baseline_comparison(grouped: dict, baselines: dict, metric: str = "test_loss") -> dict:
    """Baselines' seed means with t-intervals; runs worse than the linear baseline (test error) listed."""
    out: dict = {}
    linear_by_size: dict[int, str] = {}
    best_mlp_by_size: dict[int, tuple[float, str]] = {}  # The lowest finite value of any MLP seed.
    for label, members in sorted(baselines.items()):
        kind = members[0].baseline
        size = members[0].image_size
        values = [convergence.selected_value(r, metric) for r in members]
        out[label] = {"kind": kind, "image_size": size, "runs": [r.name for r in members],
                      "test_loss": json_mean_interval([convergence.selected_value(r, "test_loss") for r in members]),
                      "test_error": json_mean_interval([convergence.selected_value(r, "test_error") for r in members]),
                      "reference": json_number(np.mean(values)),
                      # A baseline is a fair reference only when it is itself converged.
                      "convergence": _baseline_convergence(members)}
        if kind == "linear":
            linear_by_size.setdefault(size, label)
        if kind == "mlp":
            for value, r in zip(values, members):
                if math.isfinite(value) and (size not in best_mlp_by_size or value < best_mlp_by_size[size][0]):
                    best_mlp_by_size[size] = (value, r.name)
    runs, under, notes = [], [], []
    for group, members in sorted(grouped.items()):
        size = members[0].image_size
        label = linear_by_size.get(size)
        if label is None:
            notes.append(f"{group}: no linear baseline at input size {size}: under-training not checked")
        linear = out[label]["test_error"]["mean"] if label else None
        for r in sorted(members, key=lambda r: (-r.patch_size, r.seed)):
            err = convergence.selected_value(r, "test_error")
            bad = None if linear is None else bool(err > linear)
            runs.append({"group": group, "patch_size": r.patch_size, "seed": r.seed, "run": r.name,
                         "test_error": err, "linear_baseline": label, "linear_error": linear, "under_trained": bad})
            if bad:
                under.append(r.name)
    checked = sum(r["under_trained"] is not None for r in runs)
    if under:
        note = f"{len(under)} run(s) worse than the linear baseline: under-trained by definition"
    elif checked:
        note = "every checked run beats the linear baseline"
    else:  # Never "every run beats it" when no run was compared with one.
        note = "no run was checked against a linear baseline"
    mlp = _against_the_mlp(grouped, best_mlp_by_size, metric)
    return {"metric": metric, "baselines": out, "runs": runs, "under_trained": under, "note": note, "notes": notes,
            "mlp": mlp}


def _against_the_mlp(grouped: dict, best_by_size: dict, metric: str) -> dict:
    """Every run against the best MLP baseline run at its input size (`best_by_size`: size → (value,
    run name)), in the fitted metric.

    The MLP is the strongest simple baseline on the same pixels: a run that does not beat its best
    seed learned nothing a patch-free model could not. Lower is better (loss, error)."""
    losing, checked, worst, notes = [], 0, None, []
    for group, members in sorted(grouped.items()):
        best = best_by_size.get(members[0].image_size)
        if best is None:
            notes.append(f"{group}: no MLP baseline at input size {members[0].image_size}: not checked against one")
            continue
        for r in members:
            value = convergence.selected_value(r, metric)
            checked += 1
            if not value < best[0]:  # A tie, or a non-finite value, does not beat it.
                losing.append(r.name)
            elif worst is None or value - best[0] > worst[0] - worst[2]:
                worst = (value, r.name, best[0], best[1])
    metric_words = metric.replace("_", " ")
    if not checked:
        note = "no run was checked against an MLP baseline"
    elif losing:
        note = f"{len(losing)} of {checked} checked run(s) do not beat the MLP baseline's best run in {metric_words}"
    else:
        note = (f"every checked run beats the MLP baseline's best run in {metric_words} (closest: {worst[1]}"
                f" {worst[0]:.4g} against {worst[3]} {worst[2]:.4g})")
    return {"checked": checked, "not_beating": sorted(losing), "note": note, "notes": notes}
