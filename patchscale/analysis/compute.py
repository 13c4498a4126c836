"""The compute view of a sweep, per group: convergence, baselines, the joint law L(p, D) and p*(C).

`analyse` runs convergence.py's checks and joint.py's fits on every group of a sweep and returns one
JSON-able dict (None for a missing number); `table` renders it as text. docs/compute.md explains
the statistics; compute_plots.py draws the figures.
"""

from __future__ import annotations

import numpy as np

from patchscale.analysis.convergence import BUDGET_LIMITED, TOLERANCE, baseline_comparison, convergence
from patchscale.analysis.joint import (IDENTIFIED, N_DRAWS, REFUSED, TOO_FEW, cells, compute_budgets, fit_joint,
                                      frontier, iso_flop, optimal, outside_range)
from patchscale.analysis.stats import json_number

# BUDGET_LIMITED and frontier are re-exported: report.py and the tests use them from here.
__all__ = ["BUDGET_LIMITED", "analyse", "analyse_group", "frontier", "pstar_summary", "table"]


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
    from patchscale.analysis import collect

    grouped = collect.groups(runs)
    groups = {label: _public(analyse_group(members, metric, budget, n_draws, seed, tolerance, joint_law))
              for label, members in sorted(grouped.items())}
    return {"metric": metric, "budget": budget, "groups": groups,
            "baselines": baseline_comparison(grouped, collect.baselines(runs), metric)}


# --------------------------------------------------------------------------- table

def _fmt(x, spec=".4g") -> str:
    """A number for the table, '-' when missing."""
    return "-" if x is None else format(x, spec)


def _law(fit: dict, ref: dict) -> str:
    """A fitted form's parameters with their intervals, and the reference point they refer to."""
    pr, iv = fit["params"], fit["intervals"]

    def one(k):
        i = iv.get(k)
        return f"{k}={_fmt(pr[k])}" + (f" [{_fmt(i[0])}, {_fmt(i[1])}]" if i else "")
    return "  ".join(one(k) for k in pr) + f"   (p0={ref['p0']:.3g}, D0={ref['D0']:.3g})"


def table(analysis: dict) -> str:
    """`analyse`'s output as a text table: per group convergence, joint fits and p*(C), then baselines."""
    lines = [f"compute view of {analysis['metric']} (means over seeds, 95% t-intervals)"]
    for group, g in analysis["groups"].items():
        conv = g["convergence"]
        lines.append("")
        lines.append(f"{group}: {g['n_runs']} runs, seeds {len(g['seeds'])}, patch sizes "
                     f"{', '.join(map(str, g['patch_sizes']))}, budgets {', '.join(f'{d:,}' for d in g['budgets'])}")
        lines.append(f"  convergence ({conv['metric']}, tolerance {conv['tolerance']:.0%}): {conv['reason']}")
        for e in conv["patch_sizes"]:
            rel = e["relative_improvement"]
            lines.append(f"    p={e['patch_size']:<3} D={e['budget']:>10,} mean {_fmt(e['mean'])}"
                         f"  D/2: {_fmt(e['half_mean'])}  improvement {'-' if rel is None else f'{rel:+.1%}'}")
        joint = g["joint"]
        if joint["status"] != "fitted":
            lines.append(f"  joint law: {joint['reason']}")
            continue
        if not g["law_claim"]:
            lines.append(f"  {g['convergence']['verdict']}: no claim about the law as D → ∞; the joint law below"
                         " describes the measured budgets")
        for name, fit in joint["fits"].items():
            mark = "*" if name == joint["preferred"] else " "
            lof = fit["lack_of_fit"]
            lof_s = "" if not lof or lof["p_value"] is None else f"  lack-of-fit p={lof['p_value']:.3g}"
            lines.append(f" {mark} {name:<12} L = {fit['formula']}   LOO mean |log error| "
                         f"{_fmt(fit['loo_mae'])}{lof_s}")
            lines.append(f"      {_law(fit, joint['reference'])}")
            for note in fit["notes"]:
                lines.append(f"      note: {note}")
            status = fit.get("pstar")
            if status and status["reason"]:
                lines.append(f"      {status['reason']}")
            elif status:
                used = "identified" if name in joint["candidates"] else "identified, not used (separated by its error)"
                lines.append("      " + "; ".join([f"p*(C): {used}"] + status["notes"]))
        for name in joint["skipped"]:
            lines.append(f"   {name:<12} {joint['skipped'][name]}")
        lines.append(f"  form: {joint['reason']}")
        if g.get("pstar"):
            lines.append(f"  {g['pstar']['reason']}")
        for name, rows in g["optimal"].items():
            tie = joint["fits"][name].get("pstar", {}).get("tie_threshold", {})
            lines.append(f"  p*(C) under {name}: differences of log L below {_fmt(tie.get('log'), '.2g')} are ties"
                         f" ({tie.get('source', 'no tie threshold')}); P = share of draws a size wins by more")
            lines.append(f"    {'C (FLOPs)':>10} {'p*':>3} {'tied':>9} {'P(win) per p, P(tie)':>28}"
                         f" {'set (P≥2.5%)':>13} {'loss [95%]':>26} {'continuous p* [95%]':>22}  where")
            for r in rows:
                cont = r["continuous"]
                prob = " ".join(f"{p}:{_fmt(q, '.2f')}" for p, q in r["probability_optimal"].items())
                prob += f" tie:{_fmt(r.get('probability_tie'), '.2f')}"
                tied = r.get("tied_for_best") or [r["patch_size"]]
                best = str(r["patch_size"]) if len(tied) == 1 else "tie"
                lines.append(
                    f"    {r['compute']:>10.3g} {best:>3} {','.join(map(str, tied)):>9} {prob:>28}"
                    f" {','.join(map(str, r['patch_set'])):>13}"
                    f" {_fmt(r['loss']):>8} [{_fmt(r['loss_interval'][0])}, {_fmt(r['loss_interval'][1])}]"
                    f" {cont['patch_size']:>6.3g}"
                    f" [{_fmt(cont['interval'][0], '.3g')}, {_fmt(cont['interval'][1], '.3g')}]"
                    + f"  {'EXTRAPOLATED' if r['extrapolated'] else 'in data'}; {r['source']}")
        for note in g["notes"]:
            lines.append(f"  note: {note}")
    base = analysis["baselines"]
    if base["baselines"]:
        lines.append("")
        lines.append("baselines (test loss, test error: mean [95% t-interval])")
        for label, b in base["baselines"].items():
            tl, te = b["test_loss"], b["test_error"]
            lines.append(f"  {label:<24} n={tl['n']}  loss {_fmt(tl['mean'])} [{_fmt(tl['lo'])}, {_fmt(tl['hi'])}]"
                         f"  error {_fmt(te['mean'])} [{_fmt(te['lo'])}, {_fmt(te['hi'])}]")
            lines.append(f"    {b['convergence']}")
        lines.append(f"  {base['note']}")
        for name in base["under_trained"]:
            lines.append(f"    under-trained: {name}")
    for note in base["notes"]:
        lines.append(f"  note: {note}")
    return "\n".join(lines)
