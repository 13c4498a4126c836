"""The text table `patchscale fit` prints (and the report page shows) from fit.json's payload.

Per group: the seed means, the seeds' variance, both laws with their intervals, lack of fit, the
choice and the paired steps; then the groups compared at equal tokens and on one FLOPs axis, and
the compute view's table (compute_table.py). Only formats: every number comes from analysis.fit.
"""

from __future__ import annotations

from patchscale.reporting import compute_table

METRIC_NAMES = {"test_loss": "test loss", "test_error": "test error (1 − top-1 accuracy)"}


def _value(fit: dict, key: str) -> str:
    value = fit["params"][key]
    if fit["intervals"] is None:
        return f"{value:.4g}"
    interval = fit["intervals"].get(key)
    if interval is None:
        upper = (fit.get("upper_bounds") or {}).get(key)
        return f"{value:.4g} [not identified" + (f"; {key} < {upper:.4g}]" if upper is not None else "]")
    return f"{value:.4g} [{interval[0]:.4g}, {interval[1]:.4g}]"


def _variances(fit: dict) -> str:
    """One line on the seeds' variance of log L: pooled or per size, and the test between them."""
    pe = fit["pure_error"]
    test = pe.get("equal_variances")
    sds = ", ".join(f"p{size}:{v ** 0.5:.3g}" for size, v in sorted(pe.get("per_size", {}).items(),
                                                                 key=lambda kv: -float(kv[0])))
    verdict = "" if test is None else f"; Bartlett p = {test['p_value']:.2g}"
    if pe.get("model") == "per_size":
        return (f"seed SD of log L per size ({sds}){verdict}: variances differ, each mean keeps its own"
                f" (floored at the median-based pooled SD {pe['robust_floor'] ** 0.5:.3g}), t on {pe['df_t']:g} df")
    return f"seed SD of log L pooled {pe['variance'] ** 0.5:.3g} on {pe['df']} df (per size: {sds}){verdict}"


def _lack(fit: dict) -> str:
    lof = fit["lack_of_fit"]
    return "-" if lof is None else f"F({lof['df1']},{lof['df2']})={lof['F']:.3g} p={lof['p_value']:.2g}"


def _step(step: dict) -> str:
    if not step["testable"]:
        return step["note"]
    lo, hi = step["interval"]
    holm = step.get("p_value_holm")
    return (f"p={step['from']:g} → {step['to']:g}: mean change {step['mean_difference']:+.4g} [{lo:+.4g}, {hi:+.4g}]"
            f" over {step['n_pairs']} seeds, p(smaller is better) = {step['p_value_smaller_better']:.2g}"
            + (f" (Holm over the group's steps: {holm:.2g})" if holm is not None else ""))


def table(payload: dict) -> str:
    metric = payload.get("metric", "test_loss")
    lines = [f"metric: {METRIC_NAMES.get(metric, metric)}; 95% intervals (profile, or the joint region's on a bound;"
             " t on the seeds' pure error); E < U: the floor is not identified, one-sided bound"
             + (f"; budget {payload['budget']:.4g} FLOPs" if payload.get("budget") is not None else "")]
    if payload.get("selection"):
        lines.append(f"runs stand for: {payload['selection']}")
    header = f"  {'law':<11} {'parameters [95% interval]':<100} {'lack of fit':<22} {'max|log res|':>12}"
    for group, entry in payload["fits"].items():
        keys = ", ".join(f"{k}={v}" for k, v in entry.get("group_keys", {}).items())
        lines += ["", f"{group}  (group keys: {keys or '-'})"]
        if "error" in entry:
            lines.append(f"  not fitted: {entry['error']}")
            lines += [f"  step: {_step(step)}" for step in entry.get("steps", [])]
            continue
        sat, power = entry["saturating"], entry["power"]
        seeds = ", ".join(f"p{p}:{n}" for p, n in sat["n_seeds"].items())
        lines.append(f"  {sat['n_patch_sizes']} patch sizes, {sat['n_runs']} runs (seeds per size: {seeds})")
        lines.append("  means [95% t-interval over seeds]: " + "; ".join(
            f"p={size}: {m['mean']:.4g}" + (f" [{m['lo']:.4g}, {m['hi']:.4g}]" if m["lo"] is not None else "")
            for size, m in entry["means"].items()))
        if sat.get("pure_error"):
            lines.append(f"  {_variances(sat)}")
        if entry.get("convergence"):
            lines.append(f"  convergence: {entry['convergence']}")
        if not entry.get("law_claim", True):
            lines.append("  no claim about the law (convergence not established): the fits below describe these runs only")
        lines.append(header)
        for fit, text in ((sat, f"E={_value(sat, 'E')}  A={_value(sat, 'A')}  alpha={_value(sat, 'alpha')}"),
                          (power, f"c={_value(power, 'c')}  s={_value(power, 's')}")):
            lines.append(f"  {fit['form']:<11} {text:<100} {_lack(fit):<22} {fit['max_abs_log_residual']:>12.4f}")
        lines.append(f"  choice: {entry['choice']}")
        for step in entry["steps"]:
            lines.append(f"  step: {_step(step)}")
        for fit in (sat, power):
            for note in fit["notes"]:
                lines.append(f"  note ({fit['form']}): {note}")
    lines += by_tokens(payload["fits"])
    lines += by_flops(payload["fits"])
    if payload.get("compute"):
        lines += ["", compute_table.table(payload["compute"])]
    return "\n".join(lines)


def by_tokens(fits: dict) -> list[str]:
    """Lines comparing groups at equal tokens per image (only lengths that two or more groups reach)."""
    rows: dict[int, list[str]] = {}
    for group, entry in fits.items():
        for size, tokens in entry.get("tokens", {}).items():
            m = entry["means"][size]
            interval = f" [{m['lo']:.4g}, {m['hi']:.4g}]" if m["lo"] is not None else ""
            rows.setdefault(tokens, []).append(f"{group} p={size}: {m['mean']:.4g}{interval}")
    shared = {tokens: row for tokens, row in sorted(rows.items()) if len(row) > 1}
    if not shared:
        return []
    lines = ["", "at equal tokens per image (means [95% t-interval over seeds]):"]
    for tokens, row in shared.items():
        lines += [f"  {tokens} tokens: " + "; ".join(row)]
    return lines


def by_flops(fits: dict) -> list[str]:
    """Every (group, patch size) cell on one axis of training FLOPs, cheapest first (two or more groups).

    Smaller patches, larger models and more scales spend compute differently; this is where
    they compare (the study's Figure 3). Means and intervals as in the per-group lines.
    """
    if len(fits) < 2:
        return []
    rows = []
    for group, entry in fits.items():
        for size, flops in entry.get("flops", {}).items():
            m = entry["means"][size]
            interval = f" [{m['lo']:.4g}, {m['hi']:.4g}]" if m["lo"] is not None else ""
            cell = f"{group} p={size}: {m['mean']:.4g}{interval}"
            rows.append((flops, f"  {flops:10.3g}  {entry['params'][size]:>10,}  {cell}"))
    lines = ["", "by training FLOPs per run (FLOPs, parameters, group and patch size:"
                 " mean [95% t-interval over seeds]):"]
    return lines + [row for _, row in sorted(rows)]
