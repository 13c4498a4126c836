"""`patchscale fit DIR`: fit both laws per (mixer, size, input size), write fit.json, print a table."""

from __future__ import annotations

import datetime

import numpy as np
from etils import epath

from patchscale import results
from patchscale.scaling import collect
from patchscale.scaling.fit import FitError, choose, fit_power, fit_saturating

FIT_FILE = "fit.json"


def fit_results(results_dir, n_boot: int = 1000) -> dict:
    runs, warnings = collect.load(results_dir)
    for warning in warnings:
        print(f"patchscale: warning: {warning}", flush=True)
    fits = {}
    for group, members in sorted(collect.groups(runs).items()):
        p = np.asarray([r.patch_size for r in members], float)
        loss = np.asarray([r.test_loss for r in members], float)
        seeds = np.asarray([r.seed for r in members])
        try:
            both = [fit_saturating(p, loss, seeds, n_boot=n_boot), fit_power(p, loss, seeds, n_boot=n_boot)]
        except FitError as e:
            fits[group] = {"error": str(e), "runs": [r.name for r in members]}
            print(f"patchscale: warning: {group}: not fitted: {e}", flush=True)
            continue
        chosen = choose(both)
        fits[group] = {"saturating": both[0].to_dict(), "power": both[1].to_dict(), "chosen": chosen.form,
                       "runs": [r.name for r in members]}
    payload = {"fits": fits, "left_out": warnings, "git_commit": results.git_commit(),
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    results.write_json_atomic(epath.Path(results_dir) / FIT_FILE, payload)
    return payload


def _interval(fit: dict, key: str) -> str:
    value = fit["params"][key]
    if fit["intervals"] is None:
        return f"{value:.4g}"
    lo, hi = fit["intervals"][key]
    return f"{value:.4g} [{lo:.4g}, {hi:.4g}]"


def table(payload: dict) -> str:
    lines = [f"{'group':<28} {'E':>26} {'A':>26} {'alpha':>26} {'extrap. err':>11} {'chosen':>10}"]
    for group, entry in payload["fits"].items():
        if "error" in entry:
            lines.append(f"{group:<28} not fitted: {entry['error']}")
            continue
        sat = entry["saturating"]
        err = sat["extrapolation_error"]
        lines.append(f"{group:<28} {_interval(sat, 'E'):>26} {_interval(sat, 'A'):>26} {_interval(sat, 'alpha'):>26}"
                     f" {'-' if err is None else f'{err:.4f}':>11} {entry['chosen']:>10}")
        power = entry["power"]
        perr = power["extrapolation_error"]
        lines.append(f"{'  power law: log L = c + s log p':<28} c={_interval(power, 'c')}  s={_interval(power, 's')}"
                     f"  extrap. err {'-' if perr is None else f'{perr:.4f}'}")
        for note in dict.fromkeys(sat["notes"] + power["notes"]):  # Unique, in order.
            lines.append(f"  note: {note}")
    return "\n".join(lines)
