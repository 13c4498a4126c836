"""The compute view: joint law recovery, p*(C) intervals, convergence verdicts, baselines, plots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from patchscale.analysis import baselines, compute, convergence, joint
from patchscale.analysis.cells import cells
from patchscale.analysis.optimal import optimal
from patchscale.analysis.collect import Budget, Run
from patchscale.reporting import compute_plots, compute_table

R, WIDTH, DEPTH = 8, 64, 4  # The 8×8 MNIST default: p = 8, 4, 2, 1 → 2…65 tokens.
BUDGETS = (18_750, 37_500, 75_000, 150_000)  # 1/8 … 1 of 3 epochs of 50,000 images.
TRUE = {"E": 0.05, "A": 0.05, "alpha": 1.2, "B": 0.15, "beta": 0.5}  # L = E + A p^α + B (D/1e5)^−β
D_UNIT = 1e5


def tokens(p):
    return (R // p) ** 2 + 1


def flops_per_image(p):
    t = tokens(p)
    return 3.0 * (DEPTH * (24 * t * WIDTH**2 + 4 * t * t * WIDTH) + 2 * R * R * WIDTH + 2 * WIDTH * 10)


def true_law(p, D):
    return TRUE["E"] + TRUE["A"] * p ** TRUE["alpha"] + TRUE["B"] * (np.asarray(D) / D_UNIT) ** -TRUE["beta"]


def make_runs(law=true_law, noise=0.03, rho=0.5, seeds=3, patch_sizes=(8, 4, 2, 1), budgets=BUDGETS, rng=0,
              error=lambda p, D: 0.05, val=True, mixer="vit"):
    """Runs with multiplicative log-normal noise; a seed's budgets share part of it (correlation rho),
    as cooldown branches of one run do."""
    rng = np.random.default_rng(rng)
    runs = []
    for p in patch_sizes:
        for s in range(seeds):
            shared = rng.standard_normal()
            entries = []
            for D in budgets:
                z = math.sqrt(rho) * shared + math.sqrt(1 - rho) * rng.standard_normal()
                loss = float(law(p, D)) * math.exp(noise * z)
                acc = 1 - error(p, D)
                entries.append(Budget(steps=D // 128, images_seen=D, train_flops=flops_per_image(p) * D, test_loss=loss,
                                      test_accuracy=acc, val_loss=loss if val else None,
                                      val_accuracy=acc if val else None))
            last = entries[-1]
            runs.append(Run(name=f"{mixer}-p{p}-s{s}", mixer=mixer, size="pico", image_size=R, patch_size=p, seed=s,
                            test_loss=last.test_loss, test_accuracy=last.test_accuracy, train_flops=last.train_flops,
                            tokens_per_image=tokens(p), params=1000, group_keys=(("model.mixer", mixer),),
                            budgets=tuple(entries)))
    return runs


def baseline_runs(error=0.10, seeds=3):
    return [Run(name=f"linear-s{s}", mixer="vit", size="pico", image_size=R, patch_size=R, seed=s, test_loss=0.4,
                test_accuracy=1 - error, train_flops=1e9, tokens_per_image=0, params=650,
                group_keys=(("model.baseline", "linear"),), baseline="linear",
                budgets=(Budget(100, 150_000, 1e9, 0.4 + 0.01 * s, 1 - error - 0.002 * (s - 1)),))
            for s in range(seeds)]


@pytest.fixture(scope="module")
def synthetic():
    runs = make_runs()
    return runs, compute.analyse(runs, n_draws=1000)


def _truth_in_reference_units(ref):
    """The true parameters as the fit reports them: L = E + A (p/p0)^α + B (D/D0)^−β."""
    return {"E": TRUE["E"], "A": TRUE["A"] * ref["p0"] ** TRUE["alpha"], "alpha": TRUE["alpha"],
            "B": TRUE["B"] * (ref["D0"] / D_UNIT) ** -TRUE["beta"], "beta": TRUE["beta"]}


def test_joint_law_recovered_with_intervals(synthetic):
    _, analysis = synthetic
    json.dumps(analysis, allow_nan=False)  # JSON-able, no NaN or inf.
    joint = analysis["groups"]["vit-pico-r8"]["joint"]
    assert joint["status"] == "fitted"
    assert "additive" in joint["candidates"]  # The true form is never rejected...
    assert "tokens" not in joint["candidates"]  # ...and the wrong interaction is.
    fit = joint["fits"]["additive"]
    truth = _truth_in_reference_units(joint["reference"])
    for name, value in truth.items():
        lo, hi = fit["intervals"][name]
        assert lo <= value <= hi, (name, value, lo, hi)
    est = fit["params"]
    assert abs(est["alpha"] - truth["alpha"]) < 0.15
    assert abs(est["beta"] - truth["beta"]) < 0.15
    assert abs(est["E"] - truth["E"]) < 0.04
    assert abs(math.log(est["A"] / truth["A"])) < 0.2
    assert abs(math.log(est["B"] / truth["B"])) < 0.2
    assert fit["lack_of_fit"]["p_value"] > 0.01


def _true_pstar(C, c):
    cand = c.patch_sizes
    discrete = int(cand[np.argmin(true_law(cand, C / c.f(cand)))])
    grid = np.geomspace(cand.min(), cand.max(), 4001)
    return discrete, float(grid[np.argmin(true_law(grid, C / c.f(grid)))])


def test_true_optimal_patch_size_within_interval(synthetic):
    runs, _ = synthetic
    c = cells(runs, "test_loss")
    law = joint.fit_joint(c)
    fit = law["fits"]["additive"]
    budgets = [1.5e11, 4e11, 9e11, 2.5e12]
    rows = optimal(c, fit, law["_ctx"], budgets, n_draws=1000)
    discrete_truth = []
    for C, row in zip(budgets, rows):
        discrete, continuous = _true_pstar(C, c)
        discrete_truth.append(discrete)
        assert discrete in row["patch_set"], (C, discrete, row["patch_set"])
        lo, hi = row["continuous"]["interval"]
        assert lo - 1e-9 <= continuous <= hi + 1e-9, (C, continuous, lo, hi)
        assert not row["extrapolated"]
        assert abs(sum(row["probability_optimal"].values()) + row["probability_tie"] - 1) < 1e-9
    assert len(set(discrete_truth)) > 1  # The budgets span a change of the optimum, or the check is empty.
    assert rows[0]["patch_size"] > rows[-1]["patch_size"]  # More compute → smaller patches.


def test_extrapolation_flag(synthetic):
    runs, _ = synthetic
    analysis = compute.analyse(runs, budget=1e15, n_draws=200)
    g = analysis["groups"]["vit-pico-r8"]
    rows = g["optimal"][g["joint"]["preferred"]]
    user = [r for r in rows if r["source"].startswith("requested")]
    assert len(user) == 1 and user[0]["extrapolated"] and not user[0]["in_covered_range"]
    assert user[0]["patch_size"] == 1
    inside = [r for r in rows if r["source"].startswith("largest budget at p=4")][0]
    assert not inside["extrapolated"] and inside["in_covered_range"]
    assert "EXTRAPOLATED" in compute_table.table(analysis)


# --------------------------------------------------------------------------- p*(C): refused, ties, clear winners

def _fit_one(runs, form="additive"):
    """One joint form fitted without its leave-one-out refits (one solve): fit, cells, context."""
    c = cells(runs, "test_loss")
    s2, df_pe, rho = joint._pure_error(c)
    ctx = joint._context(c)
    return joint.fit_form(c, joint.FORM[form], ctx, s2, df_pe, rho, loo=False), c, ctx


def test_pstar_refused_when_an_exponent_is_on_its_bound():
    tie = {"log": 0.01, "seeds": 3, "source": "test"}
    adequate = {"F": 0.9, "df": [11, 32], "p_value": 0.55}
    status = joint.pstar_status({"alpha": "lower"}, {}, adequate, tie)
    assert status["status"] == "refused" and "α at its lower bound" in status["reason"]
    status = joint.pstar_status({}, {"A": ["alpha"]}, adequate, tie)
    assert status["status"] == "refused" and "A ≈ 0 leaves α unidentified" in status["reason"]
    status = joint.pstar_status({"E": "lower"}, {}, adequate, tie)  # The floor alone on a bound is allowed.
    assert status["status"] == "identified" and status["reason"] is None
    assert "E at its lower bound" in status["notes"][0]
    # A fit that meets the bound: the loss falls with p at fixed D, which α ≥ 0.001 cannot follow.
    def law(p, D):
        return 0.05 + 0.2 * p ** -1.0 + 0.15 * (np.asarray(D) / D_UNIT) ** -0.5

    fit, _, _ = _fit_one(make_runs(law=law, patch_sizes=(8, 4, 2)))
    assert fit["pstar"]["status"] == "refused"
    assert any("α" in problem or "A ≈ 0" in problem for problem in fit["pstar"]["problems"]), fit["pstar"]
    json.dumps(fit["pstar"], allow_nan=False)


def test_a_vanished_term_is_named_as_vanished_never_as_on_a_bound():
    """Where a vanished term's scale and exponent land is arbitrary (an Intel and an AMD CPU put α on
    its bound and just off it), so the flags and p*'s reason must not depend on it."""
    def flat_in_p(p, D):
        return 0.1 + 0.15 * (np.asarray(D) / D_UNIT) ** -0.5 + 0.0 * p

    fit, _, _ = _fit_one(make_runs(law=flat_in_p, patch_sizes=(8, 4, 2), noise=0.01))
    assert fit["vanished"] == ["A"], fit["notes"]
    assert not {"A", "alpha"} & set(fit["on_bound"]), fit["on_bound"]
    assert {"A", "alpha"} <= set(fit["at_bound"])  # Still not identified.
    assert "A ≈ 0 leaves α unidentified" in fit["pstar"]["reason"]


def _rising(p, D):
    """Monotone in p, but the loss rises past the second budget (overfitting): no joint form fits."""
    d = np.asarray(D) / D_UNIT
    return 0.1 + 0.05 * p + 0.15 * d ** -0.5 + 0.4 * d ** 2


def test_pstar_refused_when_lack_of_fit_is_rejected():
    fit, _, _ = _fit_one(make_runs(law=_rising, patch_sizes=(8, 4, 2)))
    assert fit["lack_of_fit"]["p_value"] < 1e-6
    assert fit["pstar"]["status"] == "refused"
    assert "lack of fit rejected" in fit["pstar"]["reason"] and "p = " in fit["pstar"]["reason"]
    # Through the whole view: no rows, no curve, no iso-FLOP curves, the reason in the table and the figure.
    analysis = compute.analyse(make_runs(law=_rising, patch_sizes=(8, 4, 2)), n_draws=100)
    json.dumps(analysis, allow_nan=False)
    g = analysis["groups"]["vit-pico-r8"]
    assert g["pstar"]["status"] == "refused" and g["pstar"]["forms"] == []
    assert set(g["pstar"]["refused"]) == set(g["joint"]["candidates"])
    assert g["optimal"] == {} and g["pstar_curve"] == {} and g["iso_flop"] == [] and g["iso_flop_form"] is None
    assert "p*(C) refused" in compute_table.table(analysis)
    plt = compute_plots.figures.pyplot()
    fig, axes = plt.subplots(1, 2)
    compute_plots._panel_pstar(axes[0], g)
    compute_plots._panel_patch(axes[1], g, "test_loss", plt.get_cmap("viridis"))
    assert "refused" in axes[0].get_title() and not axes[0].lines and not axes[0].collections
    assert all(line.get_linestyle() == "None" for line in axes[1].lines)  # Seed means only: no law lines...
    assert "no law drawn" in axes[1].get_legend().get_title().get_text()  # ...and the legend says why.
    plt.close(fig)


def test_negligible_differences_are_ties_not_certainty():
    c = cells(make_runs(), "test_loss")
    ctx = joint._context(c)
    # A law almost flat in p at fixed compute: predictions within 0.1% of one another.
    theta = np.array([0.3, math.log(1e-4), 1.0, math.log(1e-4), 0.5])
    fit = {"form": "additive", "_theta": theta, "_cov": np.diag([1e-6, 0.01, 0.01, 0.01, 0.01]), "_df": 30}
    budgets = [2e11, 1e12]
    for row in optimal(c, fit, ctx, budgets, n_draws=400, tie=0.01):
        assert row["tied_for_best"] == [1, 2, 4, 8]
        assert row["probability_tie"] > 0.99
        assert max(row["probability_optimal"].values()) < 0.01
        assert row["patch_set"] == [1, 2, 4, 8]
        assert row["continuous"]["near_optimal"] == [1.0, 8.0]
    # Without a tie threshold the same law would claim a winner in (almost) every draw.
    strict = optimal(c, fit, ctx, budgets, n_draws=400, tie=0.0)
    assert all(r["probability_tie"] < 0.01 and len(r["tied_for_best"]) == 1 for r in strict)


def test_clean_law_with_a_clear_winner_gives_pstar(synthetic):
    runs, analysis = synthetic
    g = analysis["groups"]["vit-pico-r8"]
    assert g["pstar"]["status"] == "identified" and g["pstar"]["forms"][0] == "additive"
    assert g["iso_flop_form"] == "additive" and g["iso_flop"]
    fit = g["joint"]["fits"]["additive"]
    assert fit["pstar"]["status"] == "identified" and fit["pstar"]["reason"] is None
    assert 0.005 < fit["pstar"]["tie_threshold"]["log"] < 0.05  # ≈ 3% noise / √3 seeds, shared in part.
    c = cells(runs, "test_loss")
    clear = 0
    for row in g["optimal"]["additive"]:
        assert abs(sum(row["probability_optimal"].values()) + row["probability_tie"] - 1) < 1e-9
        p = row["patch_size"]
        if row["in_covered_range"] and row["probability_optimal"][str(p)] >= 0.95:
            clear += 1
            assert row["tied_for_best"] == [p] and row["probability_tie"] < 0.05
            assert _true_pstar(row["compute"], c)[0] == p
    assert clear >= 3

def test_interaction_is_chosen_when_budget_effect_depends_on_patch_size():
    def law(p, D):  # Small patches learn slower per image: γ = −1.
        return 0.05 + 0.05 * p**1.2 + 0.15 * p**-1.0 * (D / D_UNIT) ** -0.5

    joint = compute.analyse(make_runs(law=law, rng=1), n_draws=100)["groups"]["vit-pico-r8"]["joint"]
    assert joint["chosen"] == "interaction", joint["reason"]
    lo, hi = joint["fits"]["interaction"]["intervals"]["gamma"]
    assert lo <= -1.0 <= hi and hi < 0


def _curve(values_by_p, budgets=(75_000, 150_000), **kw):
    """Runs whose metric at budget index j is values_by_p[p][j] (+ tiny seed noise)."""
    def law(p, D):
        return values_by_p[p][budgets.index(D)]
    return make_runs(law=law, noise=0.001, rho=0.0, patch_sizes=tuple(values_by_p), budgets=budgets, **kw)


def test_convergence_verdicts():
    converged = convergence.convergence(_curve({8: [0.50, 0.49], 4: [0.40, 0.39], 2: [0.30, 0.295]}))
    assert converged["verdict"] == "converged" and converged["converged"], converged["reason"]
    assert converged["metric"] == "val_loss"

    limited = convergence.convergence(_curve({8: [0.50, 0.49], 4: [0.40, 0.30], 2: [0.30, 0.29]}))
    assert limited["verdict"] == "budget-limited"
    assert "budget-limited: no claim about the law" in limited["reason"]
    by_p = {e["patch_size"]: e for e in limited["patch_sizes"]}
    assert by_p[4]["converged"] is False and by_p[8]["converged"] is True
    assert abs(by_p[4]["relative_improvement"] - 1 / 3) < 0.01

    flip = convergence.convergence(_curve({8: [0.300, 0.296], 4: [0.298, 0.299]}))  # Small changes, ranking flips.
    # p = 4's smallest budget is best (past optimum); the flip is far beyond the seed noise and is listed.
    assert flip["verdict"] == "past optimum" and "ranking" in flip["reason"]
    assert flip["ranking_flips"][0]["patch_sizes"] == [8, 4] and flip["ranking_flips"][0]["significant"]

    # Overfitting: the smallest budget is best, the minimum lies below the grid: not converged.
    rise = convergence.convergence(_curve({8: [0.50, 0.60], 4: [0.40, 0.48]}))
    assert rise["verdict"] == "past optimum" and not rise["converged"]

    unchecked = convergence.convergence(_curve({8: [0.50, 0.49], 4: [0.40, 0.39]}, budgets=(100_000, 150_000)))
    assert unchecked["verdict"] == "not checkable"
    assert unchecked["patch_sizes"][0]["relative_improvement"] is None
    json.dumps([converged, limited, flip, rise, unchecked], allow_nan=False)


def test_convergence_falls_back_to_test_loss():
    out = convergence.convergence(_curve({8: [0.50, 0.49], 4: [0.40, 0.39]}, val=False))
    assert out["metric"] == "test_loss" and "val_loss missing" in out["notes"][0]


def test_baselines_and_under_trained_runs():
    runs = make_runs(error=lambda p, D: 0.2 if p == 1 else 0.05) + baseline_runs(error=0.10)
    analysis = compute.analyse(runs, n_draws=100)
    base = analysis["baselines"]
    entry = base["baselines"]["baseline-linear-r8"]
    assert entry["test_error"]["n"] == 3 and entry["test_error"]["lo"] < 0.10 < entry["test_error"]["hi"]
    assert sorted(base["under_trained"]) == ["vit-p1-s0", "vit-p1-s1", "vit-p1-s2"]
    assert all(r["under_trained"] is False for r in base["runs"] if r["patch_size"] != 1)
    text = compute_table.table(analysis)
    assert "under-trained by definition" in text and "under-trained: vit-p1-s0" in text


def test_no_run_compared_with_a_linear_baseline_is_never_said_to_beat_it():
    only_baselines = compute.analyse(baseline_runs(error=0.10), n_draws=10)["baselines"]
    assert only_baselines["note"] == "no run was checked against a linear baseline"
    assert not only_baselines["runs"] and not only_baselines["under_trained"]


def test_too_few_budgets_for_a_joint_law():
    runs = make_runs(budgets=(75_000, 150_000))
    analysis = compute.analyse(runs, n_draws=100)
    joint = analysis["groups"]["vit-pico-r8"]["joint"]
    assert joint["status"] == "too few" and not joint["fits"]
    text = compute_table.table(analysis)
    assert "too few budgets/patch sizes for a joint law" in text
    assert "budget-limited: no claim about the law" in text  # 1/2 → 1 still improves by > 5%.


def test_plots_written(tmp_path, synthetic):
    runs, analysis = synthetic
    runs = runs + baseline_runs()
    analysis = dict(analysis, baselines=baselines.baseline_comparison(
        {"vit-pico-r8": runs[:-3]}, {"baseline-linear-r8": runs[-3:]}, "test_loss"))
    written = compute_plots.plot_compute(tmp_path, runs, analysis)
    assert sorted(p.rsplit(".", 1)[1] for p in written) == ["png", "svg"]
    for path in written:
        assert (tmp_path / path.rsplit("/", 1)[1]).stat().st_size > 1000
    assert not list(tmp_path.glob(".*tmp*"))  # Atomic: no temporary file left behind.


def test_a_fit_json_from_before_the_mlp_check_still_formats():
    """`patchscale report` formats a stored fit.json without refitting; older ones have no `mlp`."""
    runs = make_runs() + baseline_runs(error=0.10)
    analysis = compute.analyse(runs, n_draws=100)
    old = dict(analysis, baselines={k: v for k, v in analysis["baselines"].items() if k != "mlp"})
    assert "MLP baseline" not in compute_table.table(old)
    assert "no run was checked against an MLP baseline" in compute_table.table(analysis)
