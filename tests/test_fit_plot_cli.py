"""`patchscale fit` and `patchscale plot` on a small synthetic results directory, and malformed results."""

import json

import numpy as np
import pytest

from patchscale.errors import UserError
from patchscale.analysis import across_groups, collect, compute
from patchscale.analysis import fit as fit_verb
from patchscale.analysis.optimal import frontier
from patchscale.analysis.stats import json_safe
from patchscale.reporting import fit_table, plots
from tests.conftest import run_in_process


def make_results(root, experiment="demo", mixers=("attention", "mamba2"), patches=(16, 8, 4, 2, 1), seeds=(0, 1, 2),
                 baseline=True, budget_term=0.02):
    """A results directory shaped like a sweep's: losses follow known saturating laws in p plus a
    budget term, every run has three budgets, and a linear baseline sits above every model."""
    rng = np.random.default_rng(0)
    (root / "runs").mkdir(parents=True)
    (root / "sweep.json").write_text(json.dumps({"experiment": experiment, "runs": []}))

    def write(name, config, summary):
        run = root / "runs" / name
        run.mkdir()
        (run / "point.json").write_text(json.dumps({"experiment": experiment, "name": name}))
        (run / "config.json").write_text(json.dumps(config))
        (run / "summary.json").write_text(json.dumps(summary))

    for mixer, (E, A, alpha) in zip(mixers, [(0.05, 0.02, 1.0), (0.04, 0.03, 0.8)]):
        for p in patches:
            for seed in seeds:
                tokens = (32 // p) ** 2 + 1
                noise = np.exp(rng.normal(0, 0.01))
                budgets = [{"steps": d // 100, "images_seen": d, "train_flops": 1e7 * tokens * d,
                            "test_loss": (E + A * p**alpha + budget_term * (d / 1e5) ** -0.5) * noise,
                            "val_loss": (E + A * p**alpha + budget_term * (d / 1e5) ** -0.5) * noise}
                           for d in (25_000, 50_000, 100_000)]
                for b in budgets:
                    b["test_accuracy"] = b["val_accuracy"] = 1 - b["test_loss"] / 2
                loss = budgets[-1]["test_loss"]
                write(f"{mixer}-pico-p{p}-s{seed}", {"seed": seed, "model": {"mixer": mixer, "size": "pico"}}, {
                    "test_loss": loss, "test_accuracy": 1 - loss / 2, "patch_size": p, "image_size": 32,
                    "tokens_per_image": tokens, "train_flops_total": 1e12 * tokens, "params": 1000,
                    "params_non_embedding": 900, "budgets": budgets})
    for seed in seeds if baseline else ():
        write(f"baseline-linear-s{seed}", {"seed": seed, "model": {"mixer": "attention", "size": "pico",
                                                                    "baseline": "linear"}}, {
            "test_loss": 0.9, "test_accuracy": 0.55, "patch_size": 4, "image_size": 32, "tokens_per_image": 0,
            "train_flops_total": 1e9, "params": 10250, "params_non_embedding": 10250})
    return root


def test_fit_writes_fit_json_and_prints_a_table(tmp_path, capsys):
    root = make_results(tmp_path / "demo")
    done = run_in_process(capsys, "fit", root, "--budget", "1e15")
    assert done.returncode == 0, done.stderr
    assert "attention-pico-r32" in done.stdout and "alpha" in done.stdout
    # The table says which keys define each group.
    assert "group keys: data.image_size=32, model.mixer=attention, model.size=pico" in done.stdout
    text = (root / "fit.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    payload = json.loads(text)
    assert payload["metric"] == "test_loss" and payload["budget"] == 1e15
    entry = payload["fits"]["attention-pico-r32"]
    sat = entry["saturating"]
    assert sat["params"]["alpha"] == pytest.approx(1.0, rel=0.2)
    lo, hi = sat["intervals"]["alpha"]
    assert lo < sat["params"]["alpha"] < hi
    assert sat["n_patch_sizes"] == 5 and sat["n_seeds"]["16"] == 3 and sat["lack_of_fit"]["df2"] == 10
    assert entry["chosen"] == "saturating" and entry["choice"].startswith("saturating law chosen: AIC lower by")
    assert [s["from"] for s in entry["steps"]] == [16, 8, 4, 2] and entry["steps"][0]["n_pairs"] == 3
    assert entry["group_keys"] == {"data.image_size": "32", "model.mixer": "attention", "model.size": "pico"}
    assert entry["tokens"]["1"] == 1025
    assert "  1025 tokens: attention-pico-r32 p=1: " in done.stdout  # Both mixers compared at equal length.


def test_groups_are_compared_only_at_token_counts_two_of_them_reach():
    mean = lambda m: {"mean": m, "lo": m - 0.01, "hi": m + 0.01}  # noqa: E731
    fits = {"extend2": {"tokens": {"8": 17}, "means": {"8": mean(0.30)}},
            "scale": {"tokens": {"8": 5, "4": 17}, "means": {"8": mean(0.40), "4": mean(0.25)}}}
    lines = fit_table.by_tokens(fits)
    assert lines[2:] == ["  17 tokens: extend2 p=8: 0.3 [0.29, 0.31]; scale p=4: 0.25 [0.24, 0.26]"]
    assert fit_table.by_tokens({"scale": fits["scale"]}) == []


def test_every_cell_of_every_group_meets_on_one_axis_of_training_flops(tmp_path):
    mean = lambda m: {"mean": m, "lo": m - 0.01, "hi": m + 0.01}  # noqa: E731
    fits = {"wide": {"flops": {"8": 4e9}, "params": {"8": 40_000}, "means": {"8": mean(0.30)}},
            "narrow": {"flops": {"8": 1e9, "4": 3e9}, "params": {"8": 10_000, "4": 10_000},
                       "means": {"8": mean(0.40), "4": mean(0.25)}}}
    lines = fit_table.by_flops(fits)
    assert [line.split()[3] for line in lines[2:]] == ["p=8:", "p=4:", "p=8:"]  # Cheapest first …
    assert lines[2].split()[2] == "narrow" and lines[4].split()[2] == "wide"  # … across groups.
    assert lines[3].split()[:2] == ["3e+09", "10,000"] and lines[3].endswith("0.25 [0.24, 0.26]")
    assert fit_table.by_flops({"wide": fits["wide"]}) == []  # One group: nothing to compare.
    # From runs: with early stopping the FLOPs are those of the budget each run stands for.
    root = make_results(tmp_path / "demo", mixers=("attention",), patches=(8, 4), seeds=(0, 1), baseline=False)
    _overfit_last_budget(root)  # Early stopping now picks the middle budget, 50,000 images.
    runs, _ = collect.select(collect.load(root)[0], "best_val")
    cells = across_groups.cells(collect.groups(runs)["attention-pico-r32"], "test_loss")
    assert [c["patch_size"] for c in cells] == [8, 4]
    assert cells[1]["train_flops"] == 1e7 * 65 * 50_000 and cells[1]["metric"]["n"] == 2


def test_fit_the_test_error(tmp_path, capsys):
    root = make_results(tmp_path / "demo")
    done = run_in_process(capsys, "fit", root, "--metric", "error")
    assert done.returncode == 0, done.stderr
    assert "metric: test error" in done.stdout
    payload = json.loads((root / "fit.json").read_text())
    assert payload["metric"] == "test_error"
    # make_results sets accuracy = 1 − loss/2, so the error is half the loss: same alpha, half of E.
    loss_fit = fit_verb.fit_results(root, compute_view=False)["fits"]["attention-pico-r32"]["saturating"]["params"]
    error_fit = payload["fits"]["attention-pico-r32"]["saturating"]["params"]
    assert error_fit["alpha"] == pytest.approx(loss_fit["alpha"], rel=1e-3)
    assert error_fit["E"] == pytest.approx(loss_fit["E"] / 2, rel=1e-3)


def test_an_error_of_exactly_zero_is_a_clear_message_not_a_crash(tmp_path, capsys):
    root = make_results(tmp_path / "demo", mixers=("attention",))
    path = root / "runs" / "attention-pico-p1-s0" / "summary.json"
    summary = json.loads(path.read_text())
    path.write_text(json.dumps({**summary, "test_accuracy": 1.0}))
    done = run_in_process(capsys, "fit", root, "--metric", "error")
    assert done.returncode == 0, done.stderr
    entry = json.loads((root / "fit.json").read_text())["fits"]["attention-pico-r32"]
    assert "test error of exactly 0" in entry["error"] and "not fitted" in done.stdout


def test_plot_regenerates_every_figure_from_stored_results(tmp_path):
    root = make_results(tmp_path / "demo")
    written = plots.plot_results(root)
    for name in ("loss_vs_patch", "accuracy_vs_patch", "compute_attention-pico-r32", "compute_mamba2-pico-r32",
                 "groups_vs_compute"):
        for ext in ("png", "svg"):
            path = root / f"{name}.{ext}"
            assert str(path) in written and path.stat().st_size > 1000
    assert (root / "fit.json").exists()  # Fitted on the way, since it was missing.


def test_frontier_keeps_only_runs_no_cheaper_run_beats():
    flops = np.asarray([1.0, 2.0, 3.0, 4.0])
    loss = np.asarray([0.5, 0.6, 0.3, 0.4])
    assert frontier(flops, loss) == [0, 2]


def test_failed_and_unfinished_runs_are_left_out_with_a_warning(tmp_path, capsys):
    root = make_results(tmp_path / "demo")
    failed = root / "runs" / "attention-pico-p1-s0"
    (failed / "summary.json").unlink()
    (failed / "failed.json").write_text(json.dumps({"error": "TrainingError: training loss is nan"}))
    unfinished = root / "runs" / "attention-pico-p2-s0"
    (unfinished / "summary.json").unlink()
    (unfinished / "checkpoints").mkdir()
    runs, warnings = collect.load(root)
    assert len(runs) == 31 and len([r for r in runs if r.baseline]) == 3
    assert any("attention-pico-p1-s0: failed (TrainingError" in w for w in warnings)
    assert any("attention-pico-p2-s0: partial" in w for w in warnings)
    done = run_in_process(capsys, "fit", root)
    assert done.returncode == 0 and "warning: attention-pico-p1-s0: failed" in done.stdout


def test_runs_the_sweep_lists_but_has_not_started_are_named_in_one_warning(tmp_path):
    root = make_results(tmp_path / "demo")
    names = sorted(p.name for p in (root / "runs").iterdir())
    (root / "sweep.json").write_text(json.dumps({"experiment": "demo", "runs": names + ["attention-pico-p1-s9"]}))
    runs, warnings = collect.load(root)
    assert len(runs) == len(names)
    assert warnings == [f"1 of the sweep's {len(names) + 1} runs not started (attention-pico-p1-s9); left out"]
    (root / "sweep.json").write_text(json.dumps({"experiment": "demo", "runs": names}))
    assert collect.load(root)[1] == []
    empty = tmp_path / "empty"
    (empty / "runs").mkdir(parents=True)
    (empty / "sweep.json").write_text(json.dumps({"experiment": "demo", "runs": ["a", "b", "c"]}))
    with pytest.raises(UserError, match=r"no finished runs to use \(3 left out\)"):
        collect.load(empty)


def corrupt_truncated(root):
    path = root / "runs" / "attention-pico-p4-s1" / "summary.json"
    path.write_text(path.read_text()[:40])
    return "attention-pico-p4-s1/summary.json is damaged: not valid JSON"


def corrupt_missing_metric(root):
    path = root / "runs" / "mamba2-pico-p8-s2" / "summary.json"
    summary = json.loads(path.read_text())
    del summary["test_loss"]
    path.write_text(json.dumps(summary))
    return "mamba2-pico-p8-s2/summary.json lacks test_loss"


def corrupt_foreign_run(root):
    other = make_results(root.parent / "other", experiment="other", mixers=("attention",), patches=(16,), seeds=(7,))
    (other / "runs" / "attention-pico-p16-s7").rename(root / "runs" / "attention-pico-p16-s7")
    return "belongs to experiment 'other', not 'demo'"


@pytest.mark.parametrize("corrupt", [corrupt_truncated, corrupt_missing_metric, corrupt_foreign_run])
@pytest.mark.parametrize("verb", ["fit", "plot"])
def test_malformed_results_are_one_line_errors(tmp_path, corrupt, verb, capsys):
    root = make_results(tmp_path / "demo")
    message = corrupt(root)
    done = run_in_process(capsys, verb, root)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("patchscale: error: ") and message in lines[0]
    assert not (root / "fit.json").exists() and not (root / "loss_vs_patch.png").exists()


def test_not_a_results_directory(tmp_path, capsys):
    done = run_in_process(capsys, "fit", tmp_path)
    assert done.returncode == 2 and "has no runs/ directory" in done.stderr


def test_table_marks_groups_that_cannot_be_fitted(tmp_path):
    root = make_results(tmp_path / "demo", mixers=("attention",), patches=(16, 8), seeds=(0, 1))
    payload = fit_verb.fit_results(root)
    assert "at least 3 distinct patch sizes" in payload["fits"]["attention-pico-r32"]["error"]
    assert "not fitted" in fit_table.table(payload)


@pytest.mark.parametrize("budget_term, verdict", [(0.2, "budget-limited: no claim about the law"), (1e-4, "converged")])
def test_fit_says_whether_the_runs_support_a_claim_about_the_law(tmp_path, budget_term, verdict):
    root = make_results(tmp_path / "demo", mixers=("attention",), budget_term=budget_term)
    payload = fit_verb.fit_results(root)
    entry = payload["fits"]["attention-pico-r32"]
    assert verdict in entry["convergence"] and entry["law_claim"] == (verdict == "converged")
    text = fit_table.table(payload)
    assert ("no claim about the law (convergence not established)" in text) == (verdict != "converged")


def _overfit_last_budget(root):
    """Every run's last budget: validation and test loss up by half (a run that overfits)."""
    for summary_file in (root / "runs").glob("*/summary.json"):
        summary = json.loads(summary_file.read_text())
        for b in summary.get("budgets", [])[-1:]:
            b["val_loss"] *= 1.5
            b["test_loss"] *= 1.5
            summary["test_loss"] = b["test_loss"]
        summary_file.write_text(json.dumps(summary))


def test_runs_are_early_stopped_on_validation_over_the_budget_grid(tmp_path):
    root = make_results(tmp_path / "r", baseline=False)
    _overfit_last_budget(root)
    best = fit_verb.fit_results(root, compute_view=False)  # Selection does not need the joint laws.
    assert "lowest validation loss" in best["selection"]
    assert set(best["selected_steps"].values()) == {500}  # The middle budget (50,000 images / 100).
    summary = json.loads((root / "runs" / "attention-pico-p4-s0" / "summary.json").read_text())
    assert best["fits"]["attention-pico-r32"]["means"]["4"]["mean"] != summary["test_loss"]

    final = fit_verb.fit_results(root, select="final", compute_view=False)
    assert "whole budget" in final["selection"] and set(final["selected_steps"].values()) == {None}
    assert final["fits"]["attention-pico-r32"]["means"]["4"]["mean"] > best["fits"]["attention-pico-r32"]["means"]["4"]["mean"]
    assert json.loads((root / "fit.json").read_text())["selection"] == final["selection"]

    make_results(tmp_path / "no_val", baseline=True)  # Its baselines have no validation losses.
    with pytest.raises(UserError, match="best_val selection needs validation losses"):
        fit_verb.fit_results(tmp_path / "no_val", select="best_val", compute_view=False)


def test_loss_vs_patch_draws_only_what_was_identified(tmp_path):
    """A law on a bound (alpha at its lower bound) or rejected by lack of fit is named in the legend
    but not drawn; a band is drawn only where one was computed; the title says what is there."""
    from patchscale.reporting import figures

    root = make_results(tmp_path / "demo", mixers=("attention",), baseline=False)
    payload = fit_verb.fit_results(root, compute_view=False)
    runs, _ = collect.select(collect.load(root)[0], "best_val")
    grouped = collect.groups(runs)
    plt = figures.pyplot()
    colors = {group: "C0" for group in grouped}

    def draw(entry):
        fig, ax = plt.subplots()
        drawn = plots._loss_vs_patch(ax, grouped, {"attention-pico-r32": entry}, colors)
        labels = [line.get_label() for line in ax.lines]
        title = ax.get_title()
        plt.close(fig)
        return drawn, labels, title

    entry = payload["fits"]["attention-pico-r32"]
    assert entry["chosen"] == "saturating" and entry["saturating"]["identified"]
    drawn, labels, title = draw(entry)
    assert drawn == {"curves": 1, "bands": 1} and title.endswith("runs, identified fits and their 95% bands")
    assert any("with its 95% band" in label for label in labels)

    unidentified = {**entry, "saturating": {**entry["saturating"], "identified": False, "notes": [
        "alpha is at its lower bound (0.0001): the metric does not fall as the patch shrinks"]}}
    drawn, labels, title = draw(unidentified)
    assert drawn == {"curves": 0, "bands": 0} and title.endswith("runs (no law identified)")
    assert any("saturating law not drawn (not identified: alpha is at its lower bound" in label for label in labels)

    no_band = {**entry, "saturating": {**entry["saturating"], "band": None}}
    drawn, labels, title = draw(no_band)
    assert drawn == {"curves": 1, "bands": 0} and title.endswith("runs and identified fits (no band)")

    both = {**entry, "chosen": None, "power": {**entry["power"], "lack_of_fit": {**entry["power"]["lack_of_fit"],
                                                                                   "p_value": 0.001}}}
    drawn, labels, title = draw(both)
    assert drawn["curves"] == 1 and any("power law not drawn (lack of fit" in label for label in labels)


def test_table_shows_holm_and_the_variance_of_the_seeds(tmp_path):
    payload = fit_verb.fit_results(make_results(tmp_path / "demo", mixers=("attention",), baseline=False),
                                 compute_view=False)
    text = fit_table.table(payload)
    assert compute.SKIPPED in text
    assert "(Holm over the group's steps: " in text
    assert "seed SD of log L pooled" in text or "seed SD of log L per size" in text


def test_skipping_the_compute_view_leaves_the_fits_and_verdicts_unchanged(tmp_path, capsys):
    root = make_results(tmp_path / "demo", mixers=("attention",), baseline=False)
    full = fit_verb.fit_results(root)
    done = run_in_process(capsys, "fit", root, "--no-compute-view")
    assert done.returncode == 0, done.stderr
    assert compute.SKIPPED in done.stdout
    quick = json.loads((root / "fit.json").read_text())
    assert json.dumps(quick["fits"], sort_keys=True) == json.dumps(json_safe(full["fits"]), sort_keys=True)
    group = "attention-pico-r32"
    assert quick["compute"]["groups"][group]["convergence"] == json_safe(full["compute"]["groups"][group]["convergence"])
    assert full["compute"]["groups"][group]["joint"]["status"] == "fitted"
    assert quick["compute"]["groups"][group]["joint"]["status"] == "skipped"
