"""The convergence criterion: where each patch size's minimum over the budget grid lies (bracketed,
still falling, past optimum), judged against the seed noise; ranking flips with a noise allowance."""

from __future__ import annotations

import json
import math

import pytest

from patchscale.analysis import baselines, convergence
from patchscale.analysis.collect import Budget, Run

BUDGETS = (18_750, 37_500, 75_000, 150_000)  # Doublings: D/2 of the largest is on the grid.


def _run(p, seed, values, budgets=BUDGETS, baseline=None, val=True):
    entries = tuple(Budget(steps=D // 100, images_seen=D, train_flops=1e6 * D, test_loss=v, test_accuracy=0.9,
                           val_loss=v if val else None, val_accuracy=0.9 if val else None)
                    for D, v in zip(budgets, values))
    last = entries[-1]
    keys = (("model.baseline", baseline),) if baseline else (("model.mixer", "vit"),)
    return Run(name=f"{baseline or 'vit'}-p{p}-s{seed}", mixer="vit", size="pico", image_size=8, patch_size=p,
               seed=seed, test_loss=last.test_loss, test_accuracy=0.9, train_flops=last.train_flops,
               tokens_per_image=(8 // p) ** 2 + 1, params=1000, group_keys=keys, baseline=baseline, budgets=entries)


def runs(curves: dict, sigma: float = 0.02, budgets=BUDGETS, **kw):
    """Three seeds per patch size whose log values sit at −σ, 0, +σ around the curve (order permuted
    per budget): the seed SD of log loss is exactly σ and the seed means are proportional to the curve."""
    offsets = ((-1, 0, 1), (1, -1, 0), (0, 1, -1))
    out = []
    for p, curve in curves.items():
        for s in range(3):
            values = [m * math.exp(sigma * offsets[j % 3][s]) for j, m in enumerate(curve)]
            out.append(_run(p, s, values, budgets, **kw))
    return out


def se_diff(sigma, n=3):
    """Standard error of a difference of two n-seed means of log loss."""
    return sigma * math.sqrt(2 / n)


def by_p(result):
    return {e["patch_size"]: e for e in result["patch_sizes"]}


def test_rising_curve_is_past_optimum_not_converged():
    out = convergence.convergence(runs({8: [0.30, 0.33, 0.36, 0.40], 4: [0.40, 0.30, 0.32, 0.35]}))
    assert out["verdict"] == "past optimum" and out["converged"] is False
    assert out["reason"].startswith(convergence.PAST_OPTIMUM)
    assert "p = 8" in out["reason"] and "below the grid" in out["reason"]
    assert out["classification"]["past optimum"] == [8] and out["classification"]["bracketed"] == [4]
    e = by_p(out)[8]
    assert e["classification"] == "past optimum" and e["minimum"] == "smallest budget" and e["converged"] is False
    assert e["best_budget"] == BUDGETS[0]
    # The D/2 → D change, in percent and in standard errors (negative: the loss rose).
    assert abs(e["improvement_percent"] - 100 * (0.36 - 0.40) / 0.40) < 1e-6
    assert abs(e["improvement_se"] - math.log(0.36 / 0.40) / se_diff(0.02)) < 1e-6
    json.dumps(out, allow_nan=False)


def test_seeds_choosing_the_smallest_budget_are_reported():
    # Means 0.3067, 0.31, 0.36: the smallest budget is best; two of three seeds early-stop there.
    values = {0: [0.30, 0.31, 0.35], 1: [0.32, 0.30, 0.36], 2: [0.30, 0.32, 0.37]}
    group = [_run(8, s, v, BUDGETS[1:]) for s, v in values.items()]
    out = convergence.convergence(group)
    e = by_p(out)[8]
    assert e["classification"] == "past optimum"
    assert e["chosen_budgets"] == [{"seed": 0, "budget": 37_500}, {"seed": 1, "budget": 75_000},
                                   {"seed": 2, "budget": 37_500}]
    assert e["seeds_at_smallest"] == 2 and e["seeds_at_largest"] == 0
    assert "2 of 3 seeds chose it" in out["reason"]


def test_curve_still_falling_beyond_the_allowance_is_budget_limited():
    out = convergence.convergence(runs({8: [0.40, 0.34, 0.30, 0.25], 4: [0.40, 0.30, 0.32, 0.35]}))
    assert out["verdict"] == "budget-limited" and not out["converged"]
    assert out["reason"].startswith(convergence.BUDGET_LIMITED) and "p = 8" in out["reason"]
    assert out["classification"]["still falling"] == [8]
    e = by_p(out)[8]
    assert e["classification"] == "still falling" and e["minimum"] == "largest budget"
    assert e["improvement_se"] > 2 and abs(e["relative_improvement"] - 0.2) < 1e-6
    assert e["seeds_at_largest"] == 3


def test_fall_within_the_noise_allowance_is_flat_at_the_top():
    # 0.30 → 0.285 is 5.3% (above the 5% tolerance) but only ≈ 1.3 SE at σ = 0.05: flat, bracketed.
    out = convergence.convergence(runs({8: [0.40, 0.34, 0.30, 0.285], 4: [0.40, 0.30, 0.32, 0.35]}, sigma=0.05))
    e = by_p(out)[8]
    assert abs(e["improvement_se"] - math.log(0.30 / 0.285) / se_diff(0.05)) < 1e-6
    assert e["improvement_se"] < 2 and e["relative_improvement"] > convergence.TOLERANCE
    assert e["classification"] == "bracketed" and e["minimum"] == "largest budget, flat"
    assert out["verdict"] == "converged" and "flat at the largest budget" in out["reason"]

    # The same curve with a tenth of the noise: the fall is real and ≥ 5%, so the size still falls.
    out = convergence.convergence(runs({8: [0.40, 0.34, 0.30, 0.285], 4: [0.40, 0.30, 0.32, 0.35]}, sigma=0.005))
    assert by_p(out)[8]["classification"] == "still falling" and out["verdict"] == "budget-limited"


def test_flat_only_within_the_noise_while_every_seed_still_falls_is_said():
    # Each seed falls 11% (of its D value) from D/2 to D, but the seeds sit a factor e^±0.2 apart: 0.65 SE, so the
    # class is "flat" by the allowance; the reason must not let that pass for a minimum found.
    curve, sigma = [0.40, 0.34, 0.30, 0.27], 0.2
    group = [_run(8, s, [m * math.exp(sigma * (s - 1)) for m in curve]) for s in range(3)]
    group += [_run(4, s, [m * math.exp(0.01 * (s - 1)) for m in (0.40, 0.30, 0.32, 0.35)]) for s in range(3)]
    out = convergence.convergence(group)
    e = by_p(out)[8]
    assert e["minimum"] == "largest budget, flat" and e["seeds_at_largest"] == 3
    assert "flat only within the seed noise at p = 8 (D/2 → D fell by 11.1% (0.6 SE), 3 of 3 seeds" in out["reason"]
    assert "the minimum may lie above the grid" in out["reason"]

    # The same curve as a baseline says so in the baseline's words.
    members = [_run(8, s, [m * math.exp(sigma * (s - 1)) for m in curve], baseline="mlp") for s in range(3)]
    assert baselines._baseline_convergence(members).startswith(
        "converged: minimum bracketed at the top (flat only within the seed noise; every seed chose")

    # A fall below the tolerance is flat in its own right: nothing to add.
    flat = (0.40, 0.34, 0.30, 0.29)
    group = [_run(8, s, [m * math.exp(sigma * (s - 1)) for m in flat]) for s in range(3)]
    assert "within the seed noise" not in convergence.convergence(group)["reason"]
    members = [_run(8, s, [m * math.exp(sigma * (s - 1)) for m in flat], baseline="mlp") for s in range(3)]
    assert baselines._baseline_convergence(members).startswith("converged: minimum bracketed at the top (flat);")


def test_interior_minimum_is_converged():
    out = convergence.convergence(runs({8: [0.40, 0.30, 0.32, 0.35], 4: [0.35, 0.25, 0.26, 0.30]}))
    assert out["verdict"] == "converged" and out["converged"], out["reason"]
    assert out["reason"].startswith("converged") and "interior at p = 8, 4" in out["reason"]
    assert out["classification"] == {"bracketed": [8, 4], "still falling": [], "past optimum": [],
                                     "not checkable": []}
    for e in out["patch_sizes"]:
        assert e["minimum"] == "interior" and e["converged"] is True and e["best_budget"] == BUDGETS[1]
        assert [c["budget"] for c in e["curve"]] == list(BUDGETS)
    assert out["ranking"] == [4, 8] and out["ranking_half"] == [4, 8] and out["ranking_flips"] == []


def test_ranking_flip_within_two_standard_errors_does_not_count():
    # At D/2 p = 4 is better by 1.6%, at D p = 8 by 1.5%: about 1 SE each way at σ = 0.02.
    out = convergence.convergence(runs({8: [0.40, 0.30, 0.310, 0.330], 4: [0.42, 0.29, 0.305, 0.335]}))
    assert out["verdict"] == "converged", out["reason"]
    (flip,) = out["ranking_flips"]
    assert flip["patch_sizes"] == [8, 4] and flip["significant"] is False
    assert abs(flip["half_difference_se"] - math.log(0.310 / 0.305) / se_diff(0.02)) < 1e-6
    assert abs(flip["difference_se"] - math.log(0.330 / 0.335) / se_diff(0.02)) < 1e-6
    assert "1 within-noise flip(s) ignored" in out["reason"]


def test_large_ranking_flip_counts():
    out = convergence.convergence(runs({8: [0.40, 0.30, 0.31, 0.33], 4: [0.42, 0.25, 0.26, 0.40]}))
    assert out["classification"]["bracketed"] == [8, 4]  # Both minima interior: only the flip fails.
    (flip,) = out["ranking_flips"]
    assert flip["significant"] is True and abs(flip["half_difference_se"]) > 2 and abs(flip["difference_se"]) > 2
    assert out["verdict"] == "budget-limited" and "ranking" in out["reason"] and "p = 8 vs p = 4" in out["reason"]


def test_tolerance_and_allowance_stated_in_standard_errors():
    sigma = 0.03
    out = convergence.convergence(runs({8: [0.40, 0.30, 0.32, 0.35], 4: [0.35, 0.25, 0.26, 0.30]}, sigma=sigma))
    expected = math.log1p(0.05) / se_diff(sigma)  # ≈ 1.99
    assert out["allowance_se"] == convergence.ALLOWANCE_SE == 2.0
    assert out["tolerance"] == 0.05
    lo, hi = out["tolerance_se"]
    assert abs(lo - expected) < 1e-3 and abs(hi - expected) < 1e-3
    for e in out["patch_sizes"]:
        assert abs(e["tolerance_se"] - expected) < 1e-3
        assert abs(e["sd_log"] - sigma) < 1e-9 and abs(e["se_log"] - se_diff(sigma)) < 1e-9
    assert "tolerance 5% = 2.0 SE" in out["reason"] and "allowance 2 SE" in out["reason"]


def test_one_seed_no_allowance():
    group = [_run(8, 0, [0.40, 0.34, 0.30, 0.25]), _run(4, 0, [0.40, 0.30, 0.32, 0.35])]
    out = convergence.convergence(group)
    assert out["verdict"] == "budget-limited" and out["tolerance_se"] is None
    assert by_p(out)[8]["improvement_se"] is None and by_p(out)[8]["classification"] == "still falling"
    assert any("no noise allowance" in n for n in out["notes"])
    json.dumps(out, allow_nan=False)


def test_not_checkable_without_half_budget():
    out = convergence.convergence(runs({8: [0.50, 0.49], 4: [0.40, 0.39]}, budgets=(100_000, 150_000)))
    assert out["verdict"] == "not checkable" and out["classification"]["not checkable"] == [8, 4]
    assert by_p(out)[8]["relative_improvement"] is None and by_p(out)[8]["classification"] is None
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize("curve, words", [
    ([0.40, 0.30, 0.32, 0.35], "converged: minimum bracketed at an interior budget"),
    ([0.40, 0.34, 0.30, 0.25], "not converged: still falling"),
    ([0.30, 0.33, 0.36, 0.40], "not converged: past optimum"),
])
def test_baselines_are_one_patch_size(curve, words):
    members = runs({8: curve}, baseline="linear")
    assert baselines._baseline_convergence(members).startswith(words)
    single = runs({8: curve[-1:]}, budgets=BUDGETS[-1:], baseline="linear")
    assert "not checkable" in baselines._baseline_convergence(single)
    out = baselines.baseline_comparison({"vit-pico-r8": runs({8: [0.2, 0.1, 0.12, 0.13]})},
                                          {"baseline-linear-r8": members})
    assert out["baselines"]["baseline-linear-r8"]["convergence"].startswith(words)
    json.dumps(out, allow_nan=False)


def test_half_budget_rounded_up_by_a_step_is_still_d_over_2():
    """Budgets of ¼, ½ and all of 1,563 steps of 128 images: 50,048, 100,096 and 200,064 images. The
    ½ budget is a step above D/2 (100,032); it, not the ¼ budget, is the D/2 of the verdict."""
    grid = (50_048, 100_096, 200_064)
    out = convergence.convergence(runs({8: [0.30, 0.15, 0.09], 4: [0.33, 0.16, 0.09]}, budgets=grid))
    assert {e["half_budget"] for e in out["patch_sizes"]} == {100_096}
    assert "from 100,096 to 200,064 images" in out["reason"]


def test_every_run_is_checked_against_the_best_mlp_run():
    """The MLP is the bar of issue 27's default: a run that does not beat its best seed is named."""
    mlp = runs({8: [0.40, 0.30, 0.25, 0.20]}, baseline="mlp")  # Best seed ends at 0.20·e^−0.02 ≈ 0.196.
    group = runs({8: [0.30, 0.20, 0.15, 0.10], 4: [0.30, 0.25, 0.22, 0.197]})  # p = 4: 0.193, 0.197, 0.201.
    out = baselines.baseline_comparison({"vit-pico-r8": group}, {"baseline-mlp-r8": mlp})["mlp"]
    assert out["checked"] == 6 and out["not_beating"] == ["vit-p4-s1", "vit-p4-s2"]
    assert out["note"] == "2 of 6 checked run(s) do not beat the MLP baseline's best run in test loss"
    clear = baselines.baseline_comparison({"vit-pico-r8": group[:3]}, {"baseline-mlp-r8": mlp})["mlp"]
    assert clear["not_beating"] == [] and clear["note"].startswith("every checked run beats the MLP baseline's best run")
    assert "closest: vit-p8-s" in clear["note"]
    none = baselines.baseline_comparison({"vit-pico-r8": group}, {})["mlp"]
    assert none["checked"] == 0 and none["note"] == "no run was checked against an MLP baseline"
    assert none["notes"] == ["vit-pico-r8: no MLP baseline at input size 8: not checked against one"]
