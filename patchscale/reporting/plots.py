"""`patchscale plot DIR`: every figure regenerated from stored results alone (no model is built).

* loss_vs_patch: the fitted metric (test loss or error, as in fit.json) vs patch size (log-log),
  runs as points, the chosen law with its 95% band (both laws, without bands, when the forms are
  not separable), one colour per group. Only what was identified is drawn: a law whose alpha or A
  is on a bound, or that the lack-of-fit test rejects, is named in the legend but not drawn, and
  the title says what the figure holds;
* accuracy_vs_patch: test accuracy vs patch size (mean ± spread over seeds);
* compute_<group>: the compute view per group (compute_plots.py): the metric vs patch size per
  budget, vs training FLOPs per patch size with the frontier of seed means, and p*(C);
* groups_vs_compute (two or more groups; across_groups.py): every group's cells against
  training FLOPs and parameters on shared axes.

Pixel baselines (linear, MLP) are drawn as horizontal reference lines; groups that fail the
convergence criterion are marked "budget-limited" in the legend. Each figure is written as PNG
and SVG next to fit.json (which is refitted if missing).
"""

from __future__ import annotations

import numpy as np
from etils import epath

from patchscale import results
from patchscale.analysis import collect, compute
from patchscale.analysis.fit import FIT_FILE, fit_results
from patchscale.analysis.laws import PREDICT
from patchscale.reporting import across_groups, compute_plots, figures


def _not_drawn(fit: dict) -> str | None:
    """Why a fitted law is left out of the figure (None: it is drawn). Only what was identified is
    drawn: not a law whose shape is not identified (alpha or A on a bound, where the curve is one of
    many that fit as well), nor one the lack-of-fit test rejects (it misses the means)."""
    identified = fit.get("identified")
    if identified is None:  # A fit.json from before `identified`: its bound notes say the same.
        identified = not any(n.startswith(("alpha is at its", "A is at its bound")) for n in fit["notes"])
    if not identified:
        return "not identified: " + next((n.split(":")[0] for n in fit["notes"] if "bound" in n.split(":")[0]),
                                         "a parameter on its bound")
    lack = fit.get("lack_of_fit")
    if lack is not None and lack["p_value"] < 0.05:
        return f"lack of fit, p = {lack['p_value']:.2g}"
    return None


def _loss_vs_patch(ax, grouped, fits, colors, metric="test_loss") -> dict:
    """Runs, the identified laws and their bands; returns what was drawn ({"curves", "bands"})."""
    drawn = {"curves": 0, "bands": 0}
    for group, members in sorted(grouped.items()):
        p = np.asarray([r.patch_size for r in members], float)
        entry = fits.get(group, {})
        limited = "" if entry.get("law_claim", True) else " (budget-limited)"
        ax.scatter(p, [r.metric(metric) for r in members], color=colors[group], s=18, alpha=0.8,
                   label=f"{group} runs{limited}")
        if "saturating" not in entry:
            continue
        grid = np.geomspace(p.min(), p.max(), 100)
        forms = [entry["chosen"]] if entry.get("chosen") else ["saturating", "power"]  # Not separable: both.
        left_out = {form: _not_drawn(entry[form]) for form in forms}
        for form in forms:
            if left_out[form]:
                ax.plot([], [], " ", label=f"{group}: {form} law not drawn ({left_out[form]})")
        forms = [form for form in forms if not left_out[form]]
        for form in forms:
            fit = entry[form]
            params = fit["params"]
            if form == "saturating":
                label = f"{group}: L = {params['E']:.3g} + {params['A']:.3g}·p^{params['alpha']:.2f}"
            else:
                sign = "+" if params["s"] >= 0 else "−"
                label = f"{group}: log L = {params['c']:.3g} {sign} {abs(params['s']):.2f}·log p"
            band = fit.get("band") is not None and len(forms) == 1  # Two overlapping bands would not read.
            label += " with its 95% band" if band else " (no band)"
            flags = [n.split(":")[0] for n in fit["notes"] if "bound" in n.split(":")[0]]
            if not entry.get("law_claim", True):
                flags.append("budget-limited: no claim about the law")
            label += "".join(f"\n  ({flag})" for flag in flags)
            ax.plot(grid, PREDICT[form](params, grid), color=colors[group], label=label,
                    linestyle="-" if form == "saturating" else "--")
            drawn["curves"] += 1
            if band:
                ax.fill_between(fit["band"]["p"], fit["band"]["lo"], fit["band"]["hi"], color=colors[group],
                                alpha=0.2, linewidth=0)
                drawn["bands"] += 1
    ax.set_yscale("log")
    ax.set_ylabel("test loss (cross-entropy)" if metric == "test_loss" else "test error (1 − top-1 accuracy)")
    what = ("runs, identified fits and their 95% bands" if drawn["bands"] == drawn["curves"] > 0 else
            "runs, identified fits (95% bands where drawn)" if drawn["bands"] else
            "runs and identified fits (no band)" if drawn["curves"] else "runs (no law identified)")
    ax.set_title(("Test loss" if metric == "test_loss" else "Test error") + f" vs patch size: {what}")
    return drawn


def _accuracy_vs_patch(ax, grouped, colors):
    for group, members in sorted(grouped.items()):
        ps = sorted({r.patch_size for r in members}, reverse=True)
        acc = [[r.test_accuracy for r in members if r.patch_size == p] for p in ps]
        mean = np.asarray([np.mean(a) for a in acc])
        spread = np.asarray([[np.mean(a) - min(a), max(a) - np.mean(a)] for a in acc]).T
        ax.errorbar(ps, 100 * mean, yerr=100 * spread, color=colors[group], marker="o", capsize=3, label=group)
    ax.set_ylabel("test accuracy (%), mean and min–max over seeds")
    ax.set_title("Test accuracy vs patch size")


def _baselines(ax, baselines, value) -> None:
    """Horizontal reference lines: each pixel baseline's seed mean (same input, same trainer)."""
    for (label, members), style in zip(sorted(baselines.items()), (":", "-.", "--")):
        ax.axhline(np.mean([value(r) for r in members]), color="gray", linestyle=style, linewidth=1,
                   label=f"{label} (mean of {len(members)})")


def plot_results(results_dir) -> list[str]:
    plt = figures.pyplot()
    root = epath.Path(results_dir)
    runs, warnings = collect.load(results_dir)
    for warning in warnings:
        print(f"patchscale: warning: {warning}", flush=True)
    fit_file = root / FIT_FILE
    payload = results.read_json(fit_file) if fit_file.exists() else fit_results(results_dir)
    fits, metric = payload["fits"], payload.get("metric", "test_loss")
    # The runs stand for the same budgets as in the fit (fit.json's selection).
    runs, _ = collect.select(runs, "best_val" if any((payload.get("selected_steps") or {}).values()) else "final")
    grouped = collect.groups(runs)
    baselines = collect.baselines(runs)
    colors = dict(zip(sorted(grouped), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10))
    patch_sizes = {r.patch_size for members in grouped.values() for r in members}
    drawings = {
        "loss_vs_patch": lambda ax: (_loss_vs_patch(ax, grouped, fits, colors, metric),
                                     _baselines(ax, baselines, lambda r: r.metric(metric)),
                                     figures.patch_axis(ax, patch_sizes)),
        "accuracy_vs_patch": lambda ax: (_accuracy_vs_patch(ax, grouped, colors),
                                         _baselines(ax, baselines, lambda r: 100 * r.test_accuracy),
                                         figures.patch_axis(ax, patch_sizes)),
    }
    written = []
    for name, draw in drawings.items():
        fig, ax = plt.subplots(figsize=(7, 5))
        draw(ax)
        ax.legend(fontsize=7)
        written += figures.save(fig, root, name)
        plt.close(fig)
    analysis = payload.get("compute") or compute.analyse(runs, metric=metric, n_draws=1000)
    written += compute_plots.plot_compute(root, runs, analysis, colors)
    written += across_groups.plot(root, grouped, baselines, metric, colors)
    return written
