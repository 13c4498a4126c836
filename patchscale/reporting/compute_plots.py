"""Figures of the compute view, one per group (`compute_<group>.png` / `.svg`), from `compute.analyse`'s output.

(a) the metric vs patch size, one curve per budget: seed means with 95% t-intervals, and as lines
    the first candidate joint law whose p*(C) is identified (none when every candidate is refused);
    a group without a law claim (budget-limited, past optimum) says so in its legend title, which also names the law drawn or why none;
(b) the metric vs training FLOPs, one curve per patch size (seed means), the group's own
    compute frontier through seed means, baselines at the same input size as horizontal lines,
    and dotted the same law as in (a);
(c) p*(C) vs C under that law with its 95% band and, lighter, the patch sizes predicted within the
    tie threshold of the best; dashed where extrapolated, measured patch sizes as ticks. A group
    whose p*(C) is refused (or has no joint law) gets no curve: the panel states the reason.
"""

from __future__ import annotations

import re
import textwrap

import numpy as np
from etils import epath

from patchscale.analysis import collect
from patchscale.analysis.cells import Cells
from patchscale.analysis.joint import Context, predict
from patchscale.analysis.optimal import frontier
from patchscale.reporting import figures


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)


def _err(cells):
    mean = np.asarray([c["mean"] for c in cells])
    lo = np.asarray([c["lo"] if c["lo"] is not None else c["mean"] for c in cells])
    hi = np.asarray([c["hi"] if c["hi"] is not None else c["mean"] for c in cells])
    return mean, np.stack([mean - lo, hi - mean])


def _law(g) -> str | None:
    """The joint law the figure draws: the first candidate form whose p*(C) is identified; None when
    there is none (no joint law, or p*(C) refused under every candidate). An analysis from before
    the p*(C) status existed falls back to the preferred form."""
    joint = g["joint"]
    if joint.get("status") != "fitted":
        return None
    if "pstar" not in g:
        return joint["preferred"]
    forms = g["pstar"].get("forms") or []
    return forms[0] if forms else None


def _why_no_law(g) -> str:
    """Why no law is drawn, in a few words."""
    if g["joint"].get("status") != "fitted":
        return "no joint law"
    return "no law drawn: p*(C) refused (lack of fit or a parameter on a bound)"


def _joint_line(g, p, D, name):
    """The joint law `name` at (p, D), recomputed from the stored parameters."""
    joint = g["joint"]
    fit = joint["fits"][name]
    prm = fit["params"]
    theta = [prm["E"], np.log(prm["A"]), prm["alpha"], np.log(prm["B"]), prm["beta"]] + (
        [prm["gamma"]] if "gamma" in prm else [])
    ps = np.asarray([e["patch_size"] for e in g["flops_per_image"]], np.float64)
    tok = np.asarray([e["tokens"] for e in g["flops_per_image"]], np.float64)
    holder = Cells(p=ps, D=ps, C=ps, n=ps, mean=ps, values=[], seeds=[], patch_sizes=ps, flops_per_image=tok,
                   tokens=np.maximum(tok, 1), notes=[])
    ctx = Context(p0=joint["reference"]["p0"], D0=joint["reference"]["D0"], tokens=holder)
    return predict(fit["form"], np.asarray(theta), p, D, ctx)


def _panel_patch(ax, g, metric, cmap):
    budgets = g["budgets"]
    law = _law(g)
    pg = np.geomspace(min(g["patch_sizes"]), max(g["patch_sizes"]), 60)
    for k, D in enumerate(budgets):
        color = cmap(k / max(len(budgets) - 1, 1))
        cells = sorted((c for c in g["cells"] if c["images_seen"] == D), key=lambda c: c["patch_size"])
        mean, err = _err(cells)
        ax.errorbar([c["patch_size"] for c in cells], mean, yerr=err, fmt="o", color=color, capsize=3, ms=4,
                    label=f"D = {D:,} images")
        if law:
            ax.plot(pg, _joint_line(g, pg, np.full_like(pg, D), law), color=color, lw=1)
    figures.patch_axis(ax, g["patch_sizes"])
    ax.set_yscale("log")
    ax.set_ylabel(f"{metric} (seed mean, 95% t-interval)")
    conv = g["convergence"]
    title = f"{conv['verdict']}" + (" — no claim about the law" if conv["verdict"] != "converged" else "")
    what = f"lines: {law} law" if law else _why_no_law(g)
    ax.legend(fontsize=7, title=f"{title}\n{what}", title_fontsize=7)
    ax.set_title("(a) loss vs patch size, one curve per budget", fontsize=9)


def _panel_flops(ax, g, metric, cmap, baselines, image_size, color):
    ps = sorted(g["patch_sizes"], reverse=True)
    law = _law(g)
    for k, p in enumerate(ps):
        c_p = sorted((c for c in g["cells"] if c["patch_size"] == p), key=lambda c: c["images_seen"])
        mean, err = _err(c_p)
        col = cmap(k / max(len(ps) - 1, 1))
        ax.errorbar([c["train_flops"] for c in c_p], mean, yerr=err, fmt="o-", color=col, capsize=3, ms=4, lw=1,
                    label=f"p = {p}")
        if law:
            D = np.geomspace(min(c["images_seen"] for c in c_p), max(c["images_seen"] for c in c_p), 30)
            f = next(e["train_flops"] for e in g["flops_per_image"] if e["patch_size"] == p)
            ax.plot(D * f, _joint_line(g, np.full_like(D, p), D, law), color=col, lw=0.8, ls=":")
    cost = [c["train_flops"] for c in g["cells"]]
    loss = [c["mean"] for c in g["cells"]]
    edge = frontier(cost, loss)
    ax.step([cost[i] for i in edge], [loss[i] for i in edge], where="post", color=color or "black", lw=1.5,
            label="frontier (seed means)")
    for label, b in baselines.items():
        if b["image_size"] == image_size and b["reference"] is not None:
            ax.axhline(b["reference"], color="grey", ls="--", lw=1)
            ax.text(0.01, b["reference"], f" {label}", fontsize=7, color="grey", va="bottom",
                    transform=ax.get_yaxis_transform())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training compute C (analytic FLOPs)")
    ax.set_ylabel(f"{metric} (seed mean)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("(b) loss vs compute, one curve per patch size"
                 + (f"; dotted: {law} law" if law else "; no law drawn"), fontsize=9)


def _panel_pstar(ax, g):
    ax.set_xscale("log")
    ax.set_yscale("log", base=2)
    ax.set_yticks(sorted(g["patch_sizes"]))
    ax.set_yticklabels([str(p) for p in sorted(g["patch_sizes"])])
    ax.set_xlabel("training compute C (analytic FLOPs)")
    ax.set_ylabel("p* (continuous, 95% band)")
    ax.grid(True, which="both", alpha=0.3)
    joint = g["joint"]
    name = _law(g)
    if name is None:  # Nothing identified: a note, no curve.
        refused = joint.get("status") == "fitted"
        reason = (g.get("pstar") or {}).get("reason") if refused else joint.get("reason", "no joint law")
        ax.text(0.5, 0.5, textwrap.fill(reason or "no joint law", 60), ha="center", va="center", fontsize=7,
                transform=ax.transAxes)
        if g.get("compute_range"):
            ax.set_xlim(g["compute_range"][0] / 4, g["compute_range"][1] * 4)
        ax.set_title("(c) p*(C) refused: nothing drawn" if refused else "(c) p*(C): no joint law, nothing drawn",
                     fontsize=9)
        return
    curve = g["pstar_curve"][name]
    C = np.asarray([r["compute"] for r in curve])
    p = np.asarray([r["patch_size"] for r in curve])
    lo = np.asarray([r["interval"][0] if r["interval"][0] is not None else r["patch_size"] for r in curve])
    hi = np.asarray([r["interval"][1] if r["interval"][1] is not None else r["patch_size"] for r in curve])
    extra = np.asarray([r["extrapolated"] for r in curve])
    near = [r.get("near_optimal") for r in curve]
    if all(n and n[0] is not None and n[1] is not None for n in near):
        ax.fill_between(C, [n[0] for n in near], [n[1] for n in near], color="C1", alpha=0.12, lw=0,
                        label="within the tie threshold of the best")
    ax.fill_between(C, lo, hi, color="C0", alpha=0.2, lw=0, label="95% interval")
    inside = np.where(extra, np.nan, p)
    outside = np.where(extra, p, np.nan)
    # Join the solid and dashed parts where they meet.
    for i in range(1, len(p)):
        if extra[i] != extra[i - 1]:
            outside[i - 1 if extra[i] else i] = p[i - 1 if extra[i] else i]
    ax.plot(C, inside, color="C0", lw=2, label=f"p*(C), {name} law")
    ax.plot(C, outside, color="C0", lw=1.5, ls="--", label="extrapolated")
    rows = g["optimal"][name]
    clear = [r for r in rows if len(r.get("tied_for_best") or [r["patch_size"]]) == 1]
    tied = [(r["compute"], q) for r in rows if len(r.get("tied_for_best") or [r["patch_size"]]) > 1
            for q in r["tied_for_best"]]
    ax.scatter([r["compute"] for r in clear], [r["patch_size"] for r in clear], color="black", s=18, zorder=3,
               label="p* among the sweep's sizes")
    if tied:
        ax.scatter([c for c, _ in tied], [q for _, q in tied], facecolors="none", edgecolors="black", s=22,
                   zorder=3, label="tied for best (within the tie threshold)")
    lo_c, hi_c = g["compute_range"]
    ax.axvspan(lo_c, hi_c, color="grey", alpha=0.08, label="compute covered by the data")
    notes = []
    if not joint["separable"]:
        notes.append("forms not separable")
    refused = (g.get("pstar") or {}).get("refused") or {}
    if refused:
        notes.append(f"refused under {', '.join(refused)}")
    ax.legend(fontsize=7)
    ax.set_title(f"(c) p*(C) under the {name} law" + (f" ({'; '.join(notes)})" if notes else ""), fontsize=9)


def plot_compute(results_dir_path, runs, analysis: dict, colors: dict | None = None) -> list[str]:
    """One three-panel figure per group; returns the written paths (PNG and SVG)."""
    plt = figures.pyplot()
    root = epath.Path(results_dir_path)
    cmap = plt.get_cmap("viridis")
    grouped = collect.groups(runs)
    written = []
    for label, g in analysis["groups"].items():
        if not g["cells"]:  # No run recorded its budgets (images seen): nothing to draw.
            continue
        members = grouped.get(label, [])
        image_size = members[0].image_size if members else None
        fig, axes = plt.subplots(1, 3, figsize=(18, 5), layout="constrained")  # Keeps (b)'s y label off (a).
        _panel_patch(axes[0], g, analysis["metric"], cmap)
        _panel_flops(axes[1], g, analysis["metric"], cmap, analysis["baselines"]["baselines"], image_size,
                     (colors or {}).get(label))
        _panel_pstar(axes[2], g)
        fig.suptitle(f"{label}: {analysis['metric']} over patch size and budget", fontsize=11)
        written += figures.save(fig, root, f"compute_{_slug(label)}", dpi=120)
        plt.close(fig)
    return written
