"""Seed means per (patch size, budget) cell of one group: what the joint law and the convergence checks work on.

Every run has losses at several budgets D (training images seen, each after its own cooldown);
`cells` gathers the seed means of the (patch size p, budget D) cells of one group, with the
training FLOPs per image f(p) and tokens per image t(p) of each measured patch size (log-log
interpolation between them). docs/compute.md explains how they are used.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from patchscale.analysis.stats import json_mean_interval


@dataclasses.dataclass
class Cells:
    """Seed means per (patch size, budget) cell of one group, plus per-patch-size cost."""

    p: np.ndarray  # (m,) patch size per cell
    D: np.ndarray  # (m,) images seen
    C: np.ndarray  # (m,) mean training FLOPs
    n: np.ndarray  # (m,) seeds
    mean: np.ndarray  # (m,) seed mean of the metric
    values: list  # per cell, the seed values
    seeds: list  # per cell, the seeds behind them
    patch_sizes: np.ndarray  # sorted measured patch sizes
    flops_per_image: np.ndarray  # f(p) at patch_sizes
    tokens: np.ndarray  # tokens per image at patch_sizes
    notes: list

    def f(self, p) -> np.ndarray:
        """Training FLOPs per image, interpolated log-log between measured patch sizes."""
        return _loglog(self.patch_sizes, self.flops_per_image, p)

    def t(self, p) -> np.ndarray:
        """Tokens per image, interpolated like f."""
        return _loglog(self.patch_sizes, self.tokens, p)

    def d_range(self, p: float) -> tuple[float, float]:
        """Smallest and largest measured budget at patch size p: beyond them a prediction extrapolates."""
        sel = self.p == p
        return float(self.D[sel].min()), float(self.D[sel].max())

    def to_list(self) -> list[dict]:
        out = []
        for i in range(len(self.p)):
            out.append({"patch_size": int(self.p[i]), "images_seen": int(self.D[i]), "train_flops": float(self.C[i]),
                        **json_mean_interval(self.values[i])})
        return out


def _loglog(xs, ys, x) -> np.ndarray:
    """y at x from measured (xs, ys): piecewise linear in log-log, the end slopes beyond the ends."""
    lx, ly = np.log(np.asarray(xs, np.float64)), np.log(np.asarray(ys, np.float64))
    x = np.log(np.asarray(x, np.float64))
    if len(lx) == 1:
        return np.full_like(x, math.exp(ly[0]))
    order = np.argsort(lx)
    lx, ly = lx[order], ly[order]
    # Linear in log-log inside the range; the end segments' slopes outside it.
    slope_lo = (ly[1] - ly[0]) / (lx[1] - lx[0])
    slope_hi = (ly[-1] - ly[-2]) / (lx[-1] - lx[-2])
    y = np.interp(x, lx, ly)
    y = np.where(x < lx[0], ly[0] + slope_lo * (x - lx[0]), y)
    y = np.where(x > lx[-1], ly[-1] + slope_hi * (x - lx[-1]), y)
    return np.exp(y)


def cells(group_runs, metric: str = "test_loss") -> Cells:
    """Seed means per (p, D); budgets without images seen (old runs) are left out with a note."""
    notes = []
    table: dict[tuple[int, int], list[tuple[float, float, int]]] = {}
    ratio: dict[int, list[float]] = {}
    tokens: dict[int, int] = {}
    skipped = 0
    for run in group_runs:
        tokens[run.patch_size] = run.tokens_per_image
        for b in run.budgets:
            value = b.metric(metric)
            if b.images_seen <= 0 or value is None:
                skipped += 1
                continue
            table.setdefault((run.patch_size, b.images_seen), []).append((float(value), b.train_flops, run.seed))
            ratio.setdefault(run.patch_size, []).append(b.train_flops / b.images_seen)
    if skipped:
        notes.append(f"{skipped} budget(s) without images seen or without {metric} left out")
    keys = sorted(table, key=lambda k: (-k[0], k[1]))
    ps = np.asarray(sorted(ratio), np.float64)
    return Cells(
        p=np.asarray([k[0] for k in keys], np.float64), D=np.asarray([k[1] for k in keys], np.float64),
        C=np.asarray([np.mean([c for _, c, _ in table[k]]) for k in keys]),
        n=np.asarray([len(table[k]) for k in keys]),
        mean=np.asarray([np.mean([v for v, _, _ in table[k]]) for k in keys]),
        values=[[v for v, _, _ in table[k]] for k in keys], seeds=[[s for _, _, s in table[k]] for k in keys],
        patch_sizes=ps,
        flops_per_image=np.asarray([np.median(ratio[int(p)]) for p in ps]),
        tokens=np.asarray([max(tokens[int(p)], 1) for p in ps], np.float64), notes=notes)
