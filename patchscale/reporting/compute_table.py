"""The compute view as text: `compute.analyse`'s output, per group then the baselines.

Per group: the convergence verdict with each patch size's curve, the joint laws with their
intervals and p*(C) status, and the p*(C) rows with their probabilities; then the baselines.
Part of the table `patchscale fit` prints (fit_table.py); docs/compute.md explains the columns.
"""

from __future__ import annotations


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
        mlp = base.get("mlp")  # Absent from a fit.json written before the MLP check.
        if mlp:
            lines.append(f"  {mlp['note']}")
            lines.extend(f"    not below the MLP: {name}" for name in mlp["not_beating"])
            lines.extend(f"  note: {note}" for note in mlp["notes"])
    for note in base["notes"]:
        lines.append(f"  note: {note}")
    return "\n".join(lines)
