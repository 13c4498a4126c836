"""Training budgets from one run: WSD cooldown branches, their resume, pixel baselines, in-memory data."""

import json
import re

import numpy as np
import pytest

from patchscale import config as config_lib
from patchscale import optimizer
from tests.conftest import DEFAULT_EXPERIMENT, run_cli, run_in_process, small_overrides, train_until_then_kill

WSD = {"train.schedule": "wsd", "train.steps": 40, "train.budgets": "(0.5,)", "train.checkpoint_every": 8,
       "train.log_every": 8, "data.val_split": "validation", "data.eval_examples": 500, "model.drop_path": 0.0,
       "data.in_memory": True}


def overrides(data_dir, **extra):
    return small_overrides(data_dir, **{**WSD, **extra})


@pytest.fixture(scope="module")
def wsd_run(mnist_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("wsd") / "run"
    done = run_cli("train", DEFAULT_EXPERIMENT, *overrides(mnist_dir), "--workdir", run_dir)
    assert done.returncode == 0, done.stderr
    return run_dir, json.loads((run_dir / "summary.json").read_text())


def test_wsd_schedule_warms_up_holds_and_cools_down():
    c = config_lib.load_config(str(DEFAULT_EXPERIMENT), ["train.schedule=wsd", "train.cooldown_fraction=0.25",
                                                        "train.learning_rate=1.0", "train.end_learning_rate=0.0"])
    lr = optimizer.schedule(c.train, total_steps=100, warmup_steps=10)
    values = [float(lr(step, 100)) for step in (0, 5, 10, 74, 75, 85, 99)]
    np.testing.assert_allclose(values, [0.0, 0.5, 1.0, 1.0, 1.0, 0.6, 0.04], atol=1e-6)
    assert float(lr(30, 40)) == pytest.approx(1.0) and float(lr(35, 40)) == pytest.approx(0.5)  # A 40-step branch.


def test_cooldown_branch_equals_a_separate_run_of_that_budget(wsd_run, mnist_dir, tmp_path):
    run_dir, summary = wsd_run
    budgets = summary["budgets"]
    assert [b["steps"] for b in budgets] == [20, 40]
    assert budgets[-1]["test_loss"] == summary["test_loss"] and "val_loss" in budgets[0]
    assert budgets[0]["images_seen"] == 20 * 64 and budgets[1]["train_flops"] == pytest.approx(
        2 * budgets[0]["train_flops"])
    # The same recipe stopped at 20 steps, with its own 4-step cooldown: the branch must match it.
    short = run_cli("train", DEFAULT_EXPERIMENT, *overrides(mnist_dir, **{"train.steps": 20, "train.budgets": "()"}),
                    "--workdir", tmp_path / "short")
    assert short.returncode == 0, short.stderr
    alone = json.loads((tmp_path / "short" / "summary.json").read_text())
    np.testing.assert_allclose([budgets[0]["test_loss"], budgets[0]["val_loss"]],
                               [alone["test_loss"], alone["val_loss"]], rtol=1e-5)


@pytest.mark.heavy  # The default tier keeps the kill-during-the-branch case below.
def test_resume_after_the_branch_keeps_it_and_ends_identically(wsd_run, mnist_dir, tmp_path):
    reference_dir, expected = wsd_run
    run_dir = tmp_path / "killed"
    # Killed once the checkpoint after the branch (which starts at step 16) exists.
    train_until_then_kill(overrides(mnist_dir), run_dir, run_dir / "checkpoints" / "24")
    resumed = run_cli("train", DEFAULT_EXPERIMENT, *overrides(mnist_dir), "--workdir", run_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and "[train] budget" not in resumed.stdout  # Not trained twice.
    actual = json.loads((run_dir / "summary.json").read_text())
    assert actual["budgets"] == expected["budgets"]


def test_linear_baseline_trains_through_the_same_path(mnist_dir, tmp_path):
    done = run_cli("train", DEFAULT_EXPERIMENT, *overrides(mnist_dir, **{"model.baseline": "linear"}),
                   "--workdir", tmp_path / "linear")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "linear" / "summary.json").read_text())
    assert summary["params"] == 32 * 32 * 10 + 10 and summary["tokens_per_image"] == 0
    assert summary["forward_flops_per_image"] == 2 * 32 * 32 * 10
    assert summary["test_accuracy"] > 0.5  # 40 steps of softmax regression on MNIST.


@pytest.mark.parametrize("bad, message", [
    ({"train.budgets": "(0.5,)", "train.schedule": "cosine"}, "needs train.schedule=wsd"),
    ({"train.budgets": "(0.5, 0.25)"}, "increasing fractions"),
    ({"train.budgets": "(1.0,)"}, "increasing fractions"),
    ({"train.budgets": "(0.05,)"}, "inside the"),
    ({"train.cooldown_fraction": 0.0}, "train.cooldown_fraction=0.0"),
    ({"model.baseline": "cnn"}, "model.baseline='cnn'"),
    ({"data.val_split": "val"}, "data.val_split='val'"),
])
def test_bad_budget_settings_are_refused_before_any_work(mnist_dir, bad, message):
    from patchscale.errors import UserError

    with pytest.raises(UserError, match=re.escape(message)):
        config_lib.load_config(str(DEFAULT_EXPERIMENT), overrides(mnist_dir, **{"train.warmup_epochs": 0.5, **bad}))


def test_a_kill_during_the_branch_trains_it_exactly_once_on_resume(wsd_run, mnist_dir, tmp_path):
    from patchscale.results import read_metrics

    reference_dir, expected = wsd_run
    run_dir = tmp_path / "killed"
    # The checkpoint at step 16 is saved just before the branch starting there: kill right then.
    train_until_then_kill(overrides(mnist_dir), run_dir, run_dir / "checkpoints" / "16")
    recorded = any("budget_steps" in r for r in read_metrics(run_dir))
    resumed = run_cli("train", DEFAULT_EXPERIMENT, *overrides(mnist_dir), "--workdir", run_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert ("[train] budget 20/40" in resumed.stdout) != recorded  # Trained once in all: before or after.
    actual = json.loads((run_dir / "summary.json").read_text())
    assert actual["budgets"] == expected["budgets"]


def test_a_bad_budget_is_a_one_line_cli_error(mnist_dir, tmp_path, capsys):
    done = run_in_process(capsys, "train", DEFAULT_EXPERIMENT, *overrides(mnist_dir, **{"train.budgets": "(0.5, 0.25)"}),
                   "--workdir", tmp_path / "bad")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("patchscale: error: ") and not (tmp_path / "bad").exists()


def test_in_memory_data_gives_the_same_batches_as_streaming(mnist_dir):
    from patchscale.data import pipeline

    batches = {}
    for in_memory in (False, True):
        c = config_lib.load_config(str(DEFAULT_EXPERIMENT), small_overrides(
            mnist_dir, **{"data.in_memory": in_memory, "data.image_size": 8, "model.patch_size": 8}))
        it = pipeline.train_iterator(c.data, 8, 64, 3, seed=0)
        batches[in_memory] = [next(it) for _ in range(3)]
        evaluation = pipeline.EvalSplit(c.data, "test", 8, 200)
        batches[in_memory].append(next(evaluation.batches()))
    for streamed, cached in zip(batches[False], batches[True]):
        for key in streamed:
            np.testing.assert_array_equal(streamed[key], cached[key])
