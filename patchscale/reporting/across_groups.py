"""The figure where groups meet: every (group, patch size) cell against training FLOPs and parameters.

Patch size is one way to spend compute; a wider or deeper model (experiments/mnist_patch_vs_params.py)
and more S² scales (experiments/mnist_s2.py) are others, and each is its own group in the fit.
`groups_vs_compute.png` / `.svg` puts them on shared axes (the study's Figure 3): the fitted
metric against training FLOPs and against parameters, and test accuracy against training FLOPs.
Each point is a seed mean with its 95% t-interval (analysis/across_groups.py), labelled with its
patch size; a group's points are joined from the largest patch to the smallest. Written by
`patchscale plot` when a results directory has two or more groups.
"""

from __future__ import annotations

import numpy as np

from patchscale.analysis.across_groups import cells
from patchscale.reporting import figures

PANELS = (("train_flops", "metric", "training FLOPs per run"),
          ("params", "metric", "parameters"),
          ("train_flops", "accuracy", "training FLOPs per run"))


def _panel(ax, by_group: dict, colors: dict, x_key: str, y_key: str) -> None:
    for group, rows in sorted(by_group.items()):
        x = [row[x_key] for row in rows]
        y = np.asarray([row[y_key]["mean"] for row in rows])
        lo = np.asarray([row[y_key]["lo"] if row[y_key]["lo"] is not None else row[y_key]["mean"] for row in rows])
        hi = np.asarray([row[y_key]["hi"] if row[y_key]["hi"] is not None else row[y_key]["mean"] for row in rows])
        ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="o-", color=colors[group], capsize=3, ms=4, lw=1, label=group)
        for row, xi, yi in zip(rows, x, y):
            ax.annotate(f"p{row['patch_size']}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=6,
                        color=colors[group])
    values = [row[x_key] for rows in by_group.values() for row in rows]
    if max(values) > 10 * min(values):  # A log axis only where the values span a decade.
        ax.set_xscale("log")
    else:
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    ax.grid(True, which="both", alpha=0.3)


def plot(out, grouped: dict, baselines: dict, metric: str, colors: dict) -> list[str]:
    """Write groups_vs_compute.{png,svg} into `out`; nothing when there are fewer than two groups."""
    if len(grouped) < 2:
        return []
    plt = figures.pyplot()
    by_group = {group: cells(members, metric) for group, members in grouped.items()}
    metric_label = "test loss" if metric == "test_loss" else "test error"
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    for ax, (x_key, y_key, x_label) in zip(axes, PANELS):
        _panel(ax, by_group, colors, x_key, y_key)
        value = (lambda r: r.metric(metric)) if y_key == "metric" else (lambda r: 100 * r.test_accuracy)
        for (label, members), style in zip(sorted(baselines.items()), (":", "-.", "--")):
            ax.axhline(np.mean([value(r) for r in members]), color="gray", linestyle=style, linewidth=1,
                       label=f"{label} (mean of {len(members)})")
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"{metric_label}, seed mean [95% t-interval]" if y_key == "metric"
                      else "test accuracy (%), seed mean [95% t-interval]")
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[0].set_title(f"{metric_label} vs training compute")
    axes[1].set_title(f"{metric_label} vs parameters")
    axes[2].set_title("test accuracy vs training compute")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    written = figures.save(fig, out, "groups_vs_compute")
    plt.close(fig)
    return written
