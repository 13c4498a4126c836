"""Does each step to a smaller patch size help? Paired-by-seed differences between adjacent sizes, Holm-corrected.

`paired_steps` compares L at each patch size with L at the next smaller one, seed by seed (no law
assumed); `holm` adjusts the steps' p-values so that the chance of any false claim among a group's
steps stays at 5%.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from patchscale.analysis.stats import t_quantile


def paired_steps(p, loss, seeds, level: float = 0.95) -> list[dict]:
    """For each adjacent pair of patch sizes (p → the next smaller one), paired by seed: the mean
    difference L(smaller) − L(p), its t interval, the one-sided p-value of "smaller beats p", and
    that p-value after Holm's correction over the group's testable steps (`p_value_holm`)."""
    p, loss = np.asarray(p, np.float64), np.asarray(loss, np.float64)
    seeds = np.arange(p.size) if seeds is None else np.asarray(seeds)
    sizes = np.unique(p)[::-1]
    steps = []
    for big, small in zip(sizes[:-1], sizes[1:]):
        at_big = {s: v for s, v in zip(seeds[p == big], loss[p == big])}
        at_small = {s: v for s, v in zip(seeds[p == small], loss[p == small])}
        common = sorted(set(at_big) & set(at_small))
        d = np.asarray([at_small[s] - at_big[s] for s in common])
        step = {"from": float(big), "to": float(small), "n_pairs": len(common)}
        if d.size < 2:
            steps.append({**step, "testable": False, "note": f"p={big:g} → {small:g}: not testable"
                          f" ({d.size} seed pair{'s' if d.size != 1 else ''})"})
            continue
        mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
        t = t_quantile(d.size - 1, level)
        p_value = float(stats.t.cdf(mean / se, d.size - 1)) if se > 0 else (0.0 if mean < 0 else 1.0)
        steps.append({**step, "testable": True, "mean_difference": mean, "interval": [mean - t * se, mean + t * se],
                      "p_value_smaller_better": p_value})
    tested = [step for step in steps if step["testable"]]
    for step, adjusted in zip(tested, holm([step["p_value_smaller_better"] for step in tested])):
        step["p_value_holm"] = adjusted
    return steps


def holm(p_values) -> list[float]:
    """Holm's step-down adjustment: each p-value × (tests not yet passed), kept monotone, capped at 1.
    Rejecting where the adjusted value is below 0.05 keeps the chance of any false claim among the
    tests at 5% (the raw p-values of several steps do not)."""
    order = np.argsort(p_values, kind="stable")
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
