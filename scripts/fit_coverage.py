"""Measured coverage of `patchscale fit`'s intervals at nominal 95%: the table of docs/statistics.md.

    python scripts/fit_coverage.py --reps 400 [--rows flat mnist_like ...] [--out results/statistics/fit_coverage.json]

Each row is a known law in patch size; every repetition draws a data set like a sweep's (p = 16, 8,
4, 2, 1, 3 seeds, multiplicative log-normal seed noise, repetition r seeded by the row's seed + r),
fits it with `fit_saturating` (and `fit_power` for the power-law row) and checks what the fit
prints against the truth:

* E: how often a two-sided interval is printed and how often it holds E; how often E is reported
  as not identified with a one-sided bound E < U instead, and how often that bound holds;
* alpha: how often an interval is printed and how often it holds alpha (not scored for the flat
  truth, where every alpha describes the law);
* band: how often it is computed, and how often it holds the true curve at each of its 50 patch
  sizes (the mean and the smallest of those 50 shares) and at all of them at once;
* slope s of the power law (power-law row only).

Shares are over the repetitions where the quantity is printed; how often it is withheld is
reported next to it. Writes a JSON file with the command, date, git commit and every number, and
prints the table in Markdown.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from patchscale import provenance  # noqa: E402
from patchscale.analysis import laws, means, saturating  # noqa: E402
from patchscale.analysis.stats import json_safe  # noqa: E402

SIZES = np.asarray([16, 8, 4, 2, 1], float)
SEEDS = 3
MNIST_NOISE = 0.042  # SD of log L between seeds in the committed MNIST studies.

# name: (description, E, A, alpha, noise: one SD of log L or one per patch size, seed, power-law row?)
ROWS = {
    "flat": ("flat: L = 0.2 at every p", 0.2, 0.0, 1.0, MNIST_NOISE, 11_000, False),
    "nearly_flat": ("nearly flat: E = 0.2, A = 0.0006, alpha = 1 (L(16) = 0.2096 … L(1) = 0.2006)",
                    0.2, 0.0006, 1.0, MNIST_NOISE, 12_000, False),
    "mnist_like": ("MNIST-like: E = 0.2, A = 0.004, alpha = 1 (L(16) = 0.264 … L(1) = 0.204)",
                   0.2, 0.004, 1.0, MNIST_NOISE, 13_000, False),
    "mnist_unequal": ("MNIST-like, unequal variances: SD of log L 0.15 at p = 2, 0.03 elsewhere",
                      0.2, 0.004, 1.0, (0.03, 0.03, 0.03, 0.15, 0.03), 14_000, False),
    "far_3": ("E = 0.05, A = 0.03, alpha = 1, 3% noise", 0.05, 0.03, 1.0, 0.03, 15_000, False),
    "far_10": ("E = 0.05, A = 0.03, alpha = 1, 10% noise", 0.05, 0.03, 1.0, 0.10, 16_000, False),
    "far_b3": ("E = 0.2, A = 0.1, alpha = 0.5, 3% noise", 0.2, 0.1, 0.5, 0.03, 17_000, False),
    "far_b10": ("E = 0.2, A = 0.1, alpha = 0.5, 10% noise", 0.2, 0.1, 0.5, 0.10, 18_000, False),
    "power": ("power law: log L = −0.7 + 0.45·log p (E = 0), 4.2% noise", 0.0, float(np.exp(-0.7)), 0.45,
              MNIST_NOISE, 19_000, True),
}


def draw(row, rep):
    """One data set of the row: (patch size, loss, seed) per run."""
    _, E, A, alpha, noise, seed, _ = ROWS[row]
    p = np.repeat(SIZES, SEEDS)
    sd = np.repeat(np.broadcast_to(np.asarray(noise, float), SIZES.shape), SEEDS)
    rng = np.random.default_rng(seed + rep)
    return p, (E + A * p**alpha) * np.exp(rng.normal(0.0, 1.0, p.size) * sd), np.tile(np.arange(SEEDS), SIZES.size)


def score(row, reps) -> dict:
    _, E, A, alpha, _, _, power_row = ROWS[row]
    counts = {k: 0 for k in ("e_two_sided", "e_two_sided_hit", "e_one_sided", "e_one_sided_hit", "alpha_printed",
                             "alpha_hit", "band", "per_size", "slope_hit")}
    band_hits, e_widths, per_size = [], [], {"fits": 0, "E": 0, "alpha": 0, "alpha_printed": 0, "band": []}
    start = time.perf_counter()
    for rep in range(reps):
        p, loss, seeds = draw(row, rep)
        sat = laws.fit_saturating(p, loss, seeds)
        unequal = sat.pure_error["model"] == "per_size"
        counts["per_size"] += unequal
        per_size["fits"] += unequal
        interval = sat.intervals["E"]
        if interval is not None:
            counts["e_two_sided"] += 1
            counts["e_two_sided_hit"] += interval[0] <= E <= interval[1]
            per_size["E"] += unequal and interval[0] <= E <= interval[1]
            e_widths.append(interval[1] - interval[0])
        elif sat.upper_bounds and "E" in sat.upper_bounds:
            counts["e_one_sided"] += 1
            counts["e_one_sided_hit"] += E <= sat.upper_bounds["E"]
            per_size["E"] += unequal and E <= sat.upper_bounds["E"]
        if A > 0 and sat.intervals["alpha"] is not None:
            hit = sat.intervals["alpha"][0] <= alpha <= sat.intervals["alpha"][1]
            counts["alpha_printed"] += 1
            counts["alpha_hit"] += hit
            per_size["alpha_printed"] += unequal
            per_size["alpha"] += unequal and hit
        if sat.band is not None:
            counts["band"] += 1
            grid = np.asarray(sat.band["p"])
            truth = E + A * grid**alpha
            band_hits.append((np.asarray(sat.band["lo"]) <= truth * (1 + 1e-9))
                             & (truth <= np.asarray(sat.band["hi"]) * (1 + 1e-9)))
            if unequal:
                per_size["band"].append(band_hits[-1])
        if power_row:
            s = laws.fit_power(p, loss, seeds).intervals["s"]
            counts["slope_hit"] += s[0] <= alpha <= s[1]
    hits = np.asarray(band_hits, float).reshape(-1, 50)

    def share(hit, of):
        return None if counts[of] == 0 else round(counts[hit] / counts[of], 3)

    return {
        "truth": ROWS[row][0], "law": {"E": E, "A": A, "alpha": alpha}, "noise": ROWS[row][4], "reps": reps,
        "per_size_variances": round(counts["per_size"] / reps, 3),
        # The same scores over the fits that used per-size variances alone (E: either statement).
        "per_size_subset": None if not per_size["fits"] else {
            "fits": per_size["fits"], "E": round(per_size["E"] / per_size["fits"], 3),
            "alpha": round(per_size["alpha"] / per_size["alpha_printed"], 3) if per_size["alpha_printed"] else None,
            "band_pointwise_mean": round(float(np.mean(per_size["band"])), 3) if per_size["band"] else None},
        "E_two_sided": {"printed": round(counts["e_two_sided"] / reps, 3), "coverage": share("e_two_sided_hit",
                                                                                           "e_two_sided"),
                        "median_width": float(np.median(e_widths)) if e_widths else None},
        "E_one_sided": {"reported": round(counts["e_one_sided"] / reps, 3),
                        "coverage": share("e_one_sided_hit", "e_one_sided")},
        "E_any": round((counts["e_two_sided_hit"] + counts["e_one_sided_hit"]) / reps, 3),
        "alpha": None if A == 0 else {"printed": round(counts["alpha_printed"] / reps, 3),
                                      "coverage": share("alpha_hit", "alpha_printed")},
        "band": {"computed": round(counts["band"] / reps, 3),
                 "pointwise_mean": round(float(hits.mean()), 3) if hits.size else None,
                 "pointwise_min": round(float(hits.mean(axis=0).min()), 3) if hits.size else None,
                 "simultaneous": round(float(hits.all(axis=1).mean()), 3) if hits.size else None},
        "power_slope_coverage": round(counts["slope_hit"] / reps, 3) if power_row else None,
        "seconds": round(time.perf_counter() - start, 1),
    }


def _cell(share, printed=None):
    if share is None:
        return "withheld (100%)" if printed == 0 else "–"
    return f"{share:.3f}" if printed is None or printed == 1 else f"{share:.3f} (printed {printed:.0%})"


def markdown(payload) -> str:
    lines = ["| truth | noise | E two-sided: coverage (printed) | E one-sided E < U: coverage (reported) |"
             " alpha | band pointwise: mean, worst p | band: all p at once | per-size variances used |",
             "|---|---|---|---|---|---|---|---|"]
    for row in payload["rows"].values():
        noise = row["noise"]
        noise = f"{noise:.1%}" if isinstance(noise, float) else "/".join(f"{n:.0%}" for n in noise)
        two, one, band = row["E_two_sided"], row["E_one_sided"], row["band"]
        alpha = "–" if row["alpha"] is None else _cell(row["alpha"]["coverage"], row["alpha"]["printed"])
        one_sided = "–" if one["reported"] == 0 else f"{one['coverage']:.3f} ({one['reported']:.0%})"
        pointwise = (f"withheld ({1 - band['computed']:.0%})" if band["pointwise_mean"] is None else
                     f"{band['pointwise_mean']:.3f}, {band['pointwise_min']:.3f}"
                     + (f" (computed {band['computed']:.0%})" if band["computed"] < 1 else ""))
        simultaneous = "–" if band["simultaneous"] is None else f"{band['simultaneous']:.3f}"
        lines.append(f"| {row['truth']} | {noise} | {_cell(two['coverage'], two['printed'])} | {one_sided} | {alpha}"
                     f" | {pointwise} | {simultaneous} | {row['per_size_variances']:.0%} |")
    slopes = [f"{r['power_slope_coverage']:.3f}" for r in payload["rows"].values() if r["power_slope_coverage"]]
    if slopes:
        lines.append("")
        lines.append(f"Power-law slope s on the power-law row: coverage {', '.join(slopes)}.")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=400,
                        help="repetitions per row (400, as in the docs: about 2.5 minutes in all on one core)")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "results" / "statistics" / "fit_coverage.json")
    args = parser.parse_args(argv)
    rows = {}
    for row in args.rows:
        rows[row] = score(row, args.reps)
        print(f"{row}: {json.dumps(rows[row])}", flush=True)
    payload = {"command": "python scripts/fit_coverage.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "git_commit": provenance.git_commit(), "environment": provenance.host(), "level": 0.95,
               "design": {"patch_sizes": SIZES.astype(int).tolist(), "seeds": SEEDS,
                          "noise": "multiplicative log-normal: log L + N(0, SD²)"},
               "settings": {"band_dimensions": saturating.BAND_DIMENSIONS, "equal_variance_level": means.EQUAL_VARIANCE_LEVEL},
               "rows": rows}
    payload["table"] = markdown(payload)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(json_safe(payload), indent=1) + "\n")
    print(payload["table"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
