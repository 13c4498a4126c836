"""RunSpec: the one derivation of a run's facts agrees with what finished runs recorded."""

import json
import pathlib

import ml_collections
import pytest

from patchscale import config as config_lib
from patchscale import optimizer
from patchscale.run_spec import RunSpec
from tests.conftest import DEFAULT_EXPERIMENT

REFERENCE_RUNS = pathlib.Path(__file__).parent.parent / "results" / "mnist_sweep_reference" / "runs"


@pytest.mark.parametrize("run", ["attention-mu-p8-s0", "mamba2-adv-mu-p4-s1", "baseline-mlp-s0"])
def test_spec_of_a_finished_run_matches_its_summary(run):
    """The spec from a committed run's config.json gives the numbers its trainer wrote into summary.json."""
    directory = REFERENCE_RUNS / run
    config = ml_collections.ConfigDict(json.loads((directory / "config.json").read_text()))
    summary = json.loads((directory / "summary.json").read_text())
    spec = RunSpec.from_config(config)
    assert (spec.total_steps, spec.train_examples, spec.image_size, spec.tokens_per_image) == (
        summary["steps"], summary["train_examples"], summary["image_size"], summary["tokens_per_image"])
    assert spec.train_flops_per_image == pytest.approx(summary["train_flops_per_image"], rel=1e-12)
    assert spec.train_flops_total == pytest.approx(summary["train_flops_total"], rel=1e-12)
    budget_ends = [b["steps"] for b in summary["budgets"][:-1]]
    assert [end for _, end in spec.branches] == budget_ends


def test_train_examples_come_from_the_config_then_the_split():
    c = config_lib.load_config(str(DEFAULT_EXPERIMENT), ["data.train_examples=1000", "train.epochs=2",
                                                          "train.batch_size=100", "train.warmup_epochs=0.5"])
    spec = RunSpec.from_config(c)
    assert (spec.train_examples, spec.total_steps, spec.warmup_steps) == (1000, 20, 5)
    assert spec.cooldown_branches == optimizer.cooldown_branches(c.train, 20)
    c.data.train_examples = None
    assert RunSpec.from_config(c).train_examples == 50000  # The embedded MNIST's train split.
    assert RunSpec.from_config(c, train_examples=123).train_examples == 123  # What the trainer opened.


def test_a_dense_head_predicts_pixel_classes():
    c = config_lib.load_config(str(DEFAULT_EXPERIMENT), ["model.head=dense_linear"])
    spec = RunSpec.from_config(c)
    assert spec.dense and spec.head_classes == spec.dataset.num_classes + 1  # Digits and background.


def test_with_steps_drops_the_branches_it_cannot_keep():
    c = config_lib.load_config(str(DEFAULT_EXPERIMENT), ["train.schedule=wsd"])
    c.train.budgets = (0.5,)
    spec = RunSpec.from_config(c)
    assert spec.branches == ((spec.total_steps // 2 - round(c.train.cooldown_fraction * spec.total_steps / 2),
                              round(spec.total_steps / 2)),)
    short = spec.with_steps(10, 1)
    assert (short.total_steps, short.warmup_steps, short.branches) == (10, 1, ())
    assert short.train_flops_per_image == spec.train_flops_per_image


def _experiment_spec(name):
    path = str(pathlib.Path(DEFAULT_EXPERIMENT).parent / f"{name}.py")
    return RunSpec.from_config(config_lib.experiment_config(config_lib.load_module(path), path))


def _assert_schedule_is_a_prefix(short, long):
    """`long` runs `short`'s schedule (same warm-up, same cooldown starts and ends) and goes on
    twice as far: its one extra branch is `short`'s own final decay."""
    assert long.total_steps == 2 * short.total_steps and long.warmup_steps == short.warmup_steps
    extra = {start: end for start, end in long.cooldown_branches.items() if start not in short.cooldown_branches}
    assert {s: long.cooldown_branches[s] for s in short.cooldown_branches} == short.cooldown_branches
    [(start, end)] = extra.items()  # The short run's own final decay.
    assert end == short.total_steps
    first_start, first_end = min(short.cooldown_branches.items())
    assert abs(start / end - first_start / first_end) < 1e-3  # Decays over the same fraction of its budget.


def test_the_32_epoch_study_repeats_the_16_epoch_schedule_up_to_16_epochs():
    _assert_schedule_is_a_prefix(_experiment_spec("mnist_rich_16"), _experiment_spec("mnist_rich_16_long"))


def test_the_default_retraces_the_16_epoch_study_up_to_8_epochs():
    """The default's docstring says each of its runs retraces the 16-epoch study's 8-epoch branch."""
    _assert_schedule_is_a_prefix(_experiment_spec("mnist_sweep"), _experiment_spec("mnist_rich_16"))
