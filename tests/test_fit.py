"""Scaling-law fits: recovery of known parameters from noisy synthetic data, and degenerate input."""

import numpy as np
import pytest

from patchscale.scaling.fit import FitError, choose, fit_power, fit_saturating

P = np.repeat([16, 8, 4, 2, 1], 4).astype(float)
SEEDS = np.tile(np.arange(4), 5)


def saturating(E, A, alpha, noise, seed=0):
    clean = E + A * P**alpha
    return clean * np.exp(np.random.default_rng(seed).normal(0, noise, P.size))


@pytest.mark.parametrize("E, A, alpha", [(0.5, 0.08, 0.7), (0.05, 0.2, 0.4), (1.2, 0.6, 1.1)])
def test_recovers_known_saturating_parameters(E, A, alpha):
    fit = fit_saturating(P, saturating(E, A, alpha, noise=0.005), SEEDS, n_boot=200)
    assert fit.params["E"] == pytest.approx(E, rel=0.1, abs=0.01)
    assert fit.params["alpha"] == pytest.approx(alpha, rel=0.15)
    assert fit.params["A"] == pytest.approx(A, rel=0.2)
    lo, hi = fit.intervals["alpha"]
    assert lo < fit.params["alpha"] < hi
    assert fit.extrapolation_error < 0.05


def test_bootstrap_intervals_cover_the_truth_most_of_the_time():
    covered = 0
    for seed in range(10):
        fit = fit_saturating(P, saturating(0.5, 0.08, 0.7, noise=0.01, seed=seed), SEEDS, n_boot=100, seed=seed)
        lo, hi = fit.intervals["alpha"]
        covered += lo <= 0.7 <= hi
    assert covered >= 7  # Nominal 95%; a percentile bootstrap over 4 seeds runs a little narrow.


def test_noise_free_fit_is_exact():
    fit = fit_saturating(P, saturating(0.3, 0.1, 0.8, noise=0.0))
    assert fit.params["E"] == pytest.approx(0.3, rel=1e-3)
    assert fit.params["alpha"] == pytest.approx(0.8, rel=1e-3)
    assert fit.intervals is None and "no intervals" in fit.notes[0]
    np.testing.assert_allclose(fit.predict([1, 16]), [0.4, 0.3 + 0.1 * 16**0.8], rtol=1e-3)


def test_pure_power_law_is_recovered_and_preferred():
    loss = np.exp(0.2 + 0.3 * np.log(P)) * np.exp(np.random.default_rng(1).normal(0, 0.005, P.size))
    power = fit_power(P, loss, SEEDS, n_boot=100)
    assert power.params["s"] == pytest.approx(0.3, abs=0.01)
    assert power.params["c"] == pytest.approx(0.2, abs=0.02)
    saturating_fit = fit_saturating(P, loss, SEEDS, n_boot=100)
    assert choose([saturating_fit, power]).form in ("power", "saturating")  # Both describe it; no crash.
    assert power.extrapolation_error < 0.02


def test_intervals_widen_with_noise():
    narrow = fit_saturating(P, saturating(0.5, 0.1, 0.7, 0.002), SEEDS, n_boot=200).intervals["alpha"]
    wide = fit_saturating(P, saturating(0.5, 0.1, 0.7, 0.05), SEEDS, n_boot=200).intervals["alpha"]
    assert wide[1] - wide[0] > narrow[1] - narrow[0]


@pytest.mark.parametrize("p, loss, message", [
    ([4, 4, 2, 2], [0.5, 0.6, 0.4, 0.45], "at least 3 distinct patch sizes"),
    ([4, 2, 1], [0.5, np.nan, 0.4], "non-finite"),
    ([4, 2, 1], [0.5, np.inf, 0.4], "non-finite"),
    ([4, 2, 1], [0.5, 0.5, 0.5], "all losses are equal"),
    ([4, 2, 1], [0.5, 0.4], "3 patch sizes but 2 losses"),
])
@pytest.mark.parametrize("fitter", [fit_saturating, fit_power])
def test_degenerate_input_gets_a_clear_message(fitter, p, loss, message):
    with pytest.raises(FitError, match=message):
        fitter(p, loss)


def test_three_patch_sizes_fit_but_cannot_check_extrapolation():
    fit = fit_saturating([4, 2, 1], [0.6, 0.5, 0.45])
    assert fit.extrapolation_error is None
    assert any("no extrapolation check" in note for note in fit.notes)


def test_rising_loss_is_called_out_instead_of_fitted_silently():
    p = np.repeat([16.0, 8.0, 4.0, 2.0, 1.0], 2)
    loss = 0.5 * p ** -0.4 * np.tile([1.0, 1.02], 5)  # Loss rises as the patch shrinks.
    saturating, power = fit_saturating(p, loss, np.tile([0, 1], 5)), fit_power(p, loss, np.tile([0, 1], 5))
    assert any("does not fall as the patch shrinks" in n for n in saturating.notes)
    assert any("rises as the patch shrinks" in n for n in power.notes)
    assert power.params["s"] == pytest.approx(-0.4, abs=0.02)
