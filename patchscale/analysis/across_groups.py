"""Where groups meet: every (group, patch size) cell's seed means against training FLOPs and parameters.

Patch size is one way to spend compute; a wider or deeper model and more S² scales are others,
each its own group in the fit. `cells` puts a group's patch sizes on those shared axes (the
study's Figure 3), which reporting/across_groups.py draws as groups_vs_compute.
"""

from __future__ import annotations

import numpy as np

from patchscale.analysis.stats import mean_interval


def cells(members, metric: str) -> list[dict]:
    """Per patch size (largest first): mean FLOPs and parameters, and the metric's and accuracy's mean interval."""
    out = []
    for p in sorted({r.patch_size for r in members}, reverse=True):
        runs = [r for r in members if r.patch_size == p]
        out.append({"patch_size": p, "train_flops": float(np.mean([r.train_flops for r in runs])),
                    "params": float(np.mean([r.params for r in runs])),
                    "metric": mean_interval([r.metric(metric) for r in runs]),
                    "accuracy": mean_interval([100 * r.test_accuracy for r in runs])})
    return out
