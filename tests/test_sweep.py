"""Sweep expansion, run names, sharding and run status."""

import json

import pytest

from patchscale import sweep
from patchscale.sweep import cost, runner
from patchscale.sweep import points as points_lib
from patchscale.errors import UserError
from patchscale.models import sizes
from patchscale.run_spec import RunSpec

EXPERIMENT = '''
from patchscale.defaults import base_config
from patchscale.sweep import product


def get_config(arg=None):
    c = base_config()
    c.model.size = "pico"
    return c


def get_sweep():
    return product(**{"model.mixer": ["attention", "mamba2"], "model.patch_size": [16, 8, 4], "seed": [0, 1]})
'''


@pytest.fixture
def experiment(tmp_path):
    path = tmp_path / "exp.py"
    path.write_text(EXPERIMENT)
    return str(path)


def test_product_is_the_cartesian_product():
    points = sweep.product(a=[1, 2], b=["x", "y", "z"])
    assert len(points) == 6 and {"a": 2, "b": "z"} in points


def test_expand_names_and_validates_every_point(experiment):
    points = sweep.expand(experiment)
    assert len(points) == 12
    names = [p.name for p in points]
    assert names[0] == "attention-pico-p16-s0" and "mamba2-pico-p4-s1" in names
    assert len(set(names)) == 12
    assert points[-1].config.model.mixer == "mamba2" and points[-1].config.seed == 1


def test_cli_overrides_apply_to_every_point(experiment):
    points = sweep.expand(experiment, ["train.epochs=0.5"])
    assert all(p.config.train.epochs == 0.5 for p in points)


def test_invalid_point_is_reported_with_its_overrides(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text(EXPERIMENT.replace("[16, 8, 4]", "[16, 5]"))
    with pytest.raises(UserError, match="model.patch_size': 5.*does not divide"):
        sweep.expand(str(path))


def test_shards_partition_the_points_deterministically(experiment):
    points = sweep.expand(experiment)
    shards = [points_lib.shard(points, i, 5) for i in range(5)]
    names = [p.name for s in shards for p in s]
    assert sorted(names) == sorted(p.name for p in points)
    assert [p.name for p in points_lib.shard(sweep.expand(experiment), 2, 5)] == [p.name for p in shards[2]]


@pytest.mark.parametrize("text", ["3/3", "a/b", "1", "-1/2"])
def test_bad_shard_argument(text):
    with pytest.raises(UserError, match="--shard"):
        points_lib.parse_shard(text)


def tiny_experiment(tmp_path, mnist_dir):
    from tests.conftest import write_experiment

    settings = {"model.size": "pico", "data.data_dir": mnist_dir, "data.train_examples": 512,
                "data.eval_examples": 300, "train.batch_size": 64, "train.eval_batch_size": 100, "train.steps": 12,
                "train.log_every": 6, "train.checkpoint_every": 6}
    # The second point's learning rate makes its loss non-finite: it must fail alone.
    sweep_points = [{"model.patch_size": 16}, {"model.patch_size": 8, "train.learning_rate": 1e30,
                                               "train.grad_clip_norm": 1e30, "train.warmup_epochs": 0.0}]
    return write_experiment(tmp_path / "tiny.py", settings, sweep_points)


def test_dry_run_prints_costs_and_writes_nothing(tmp_path, mnist_dir, capsys):
    from tests.conftest import run_in_process

    exp = tiny_experiment(tmp_path, mnist_dir)
    done = run_in_process(capsys, "sweep", exp, "--dry-run", "--results", tmp_path / "res", "model.width=48")
    assert done.returncode == 0, done.stderr  # An override may follow the flags.
    assert "attention-pico-w48-p16-s0" not in done.stdout  # Not varying within the sweep: not in the name.
    assert "attention-pico-p16-s0" in done.stdout and "projected cost" in done.stdout
    assert "act. MiB/img" in done.stdout
    assert not (tmp_path / "res").exists()


def test_dry_run_says_where_each_run_stands_and_what_is_left(tmp_path, mnist_dir, capsys):
    from tests.conftest import run_in_process

    exp, res = tiny_experiment(tmp_path, mnist_dir), tmp_path / "res"
    (res / "runs" / "attention-pico-p16-s0").mkdir(parents=True)
    (res / "runs" / "attention-pico-p16-s0" / "summary.json").write_text(json.dumps({"wall_time_s": 60.0}))
    (res / "runs" / "attention-pico-p8-s0" / "checkpoints" / "6").mkdir(parents=True)  # Half of its 12 steps.
    done = run_in_process(capsys, "sweep", exp, "--dry-run", "--no-compile", "--results", res)
    assert done.returncode == 0, done.stderr
    states = {line.split()[0]: line.split("  ")[-1].strip() for line in done.stdout.splitlines()
              if line.startswith("attention-")}
    assert states == {"attention-pico-p16-s0": "finished", "attention-pico-p8-s0": "partial 6/12"}
    left = next(line for line in done.stdout.splitlines() if line.startswith(f"in {res},"))
    flops = {p.name: cost.describe_point(p, compile_memory=False)["train_flops_total"] for p in sweep.expand(str(exp))}
    assert left.startswith(f"in {res}, of these 2 runs: 1 finished, 1 partial;"
                           f" {flops['attention-pico-p8-s0'] / 2:.3g} of {sum(flops.values()):.3g} training FLOPs left")
    # One finished run: its 60 s are all fixed cost per run (cost.estimate_remaining), and one run is left.
    assert "about 1m00s one run at a time at the pace of the 1 finished runs" in left
    assert sorted(p.name for p in (res / "runs").iterdir()) == ["attention-pico-p16-s0", "attention-pico-p8-s0"]
    partial = sweep.expand(str(exp))[1]  # What the sweep's ETA charges it: the half left; in another directory, all.
    assert cost.cost_left(partial, res) == cost.run_cost(partial) / 2
    assert cost.cost_left(partial, tmp_path / "elsewhere") == cost.run_cost(partial)
    (res / "runs" / "attention-pico-p8-s0" / "failed.json").write_text("{}")  # Retried: resumes from step 6.
    assert cost.cost_left(partial, res) == cost.run_cost(partial) / 2


def test_only_keeps_the_named_runs_in_sweep_order(tmp_path, mnist_dir, capsys):
    from tests.conftest import run_in_process

    exp = tiny_experiment(tmp_path, mnist_dir)
    done = run_in_process(capsys, "sweep", exp, "--dry-run", "--no-compile", "--only", "attention-pico-p8-s0")
    assert done.returncode == 0, done.stderr
    rows = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("attention-")]
    assert rows == ["attention-pico-p8-s0"]
    names = [p.name for p in sweep.expand(str(exp))]
    assert [p.name for p in points_lib.only(sweep.expand(str(exp)), ",".join(reversed(names)))] == names


@pytest.mark.heavy  # CI time; run with -m heavy.
def test_sweep_records_failures_skips_finished_and_resumes_partial(tmp_path, mnist_dir):
    from tests.conftest import run_cli

    exp, res = tiny_experiment(tmp_path, mnist_dir), tmp_path / "res"
    first = run_cli("sweep", exp, "--results", res)
    assert first.returncode == 1  # One run failed; the sweep still finished the other.
    good = res / "runs" / "attention-pico-p16-s0"
    bad = res / "runs" / "attention-pico-p8-s0"
    assert (good / "summary.json").exists()
    failure = json.loads((bad / "failed.json").read_text())
    assert "training loss is nan" in failure["error"].lower() and failure["overrides"]["model.patch_size"] == 8
    assert json.loads((res / "sweep.json").read_text())["experiment"] == "tiny"
    assert "every run has ended (1 failed, left out)" in first.stdout  # So the sweep fitted what it could.
    fit = json.loads((res / "fit.json").read_text())
    assert "at least 3" in fit["fits"]["attention-pico-r32"]["error"]  # One finished run: no fit.
    page = (res / "report.html").read_text()  # The page comes with the fit, failures named.
    assert '<span id="run-count">1</span>' in page and "Failed: attention-pico-p8-s0" in page

    summary = (good / "summary.json").read_text()
    (good / "summary.json").unlink()  # Now a partial run: checkpoints but no summary.
    again = run_cli("sweep", exp, "--results", res)
    assert "attention-pico-p8-s0: failed, skipped" in again.stdout
    assert "resuming" in again.stdout
    resumed = json.loads((good / "summary.json").read_text())
    assert resumed["test_loss"] == json.loads(summary)["test_loss"]

    third = run_cli("sweep", exp, "--results", res, "--shard", "0/2")
    assert "attention-pico-p16-s0: finished, skipped" in third.stdout
    sweep_lines = [line for line in third.stdout.splitlines() if line.startswith("[sweep]")]
    assert not any("attention-pico-p8-s0" in line for line in sweep_lines)  # The other shard's run.


def test_eta_counts_a_fixed_overhead_plus_time_per_flop():
    # Runs of 0 and 100 FLOPs took 5 s and 15 s: 5 s overhead, 0.1 s per FLOP.
    assert cost.estimate_remaining([5.0, 15.0], [0.0, 100.0, 0.0, 200.0]) == pytest.approx(2 * 5.0 + 0.1 * 200.0)
    assert cost.estimate_remaining([3.0], [1.0, 1.0]) == pytest.approx(3.0)  # One run: overhead only.
    assert cost.estimate_remaining([2.0, 2.1], [1.0, 1.0, 1e6]) is None  # Only baselines so far: no rate.


def test_default_experiment_is_the_promised_sweep():
    from tests.conftest import REPO

    points = sweep.expand(str(REPO / "experiments" / "mnist_sweep.py"))
    models = [p for p in points if p.config.model.baseline == "none"]
    assert len(points) == 18 and len(models) == 12
    assert {(p.config.model.mixer, p.config.model.patch_size) for p in models} == {
        (mixer, ps) for mixer in ("attention", "mamba2") for ps in (8, 4)}
    assert {p.config.data.image_size for p in points} == {16}
    # No bottleneck at the largest patch: its p²·C pixels fit the width (the reason p = 16 is out).
    specs = [RunSpec.from_config(p.config) for p in models]
    assert all(sizes.resolve(s.config.model).width >= s.config.model.patch_size ** 2 * s.channels for s in specs)
    assert {(p.config.train.epochs, p.config.train.budgets, p.config.train.learning_rate) for p in models} == {
        (8.0, (0.25, 0.5), 3e-3)}
    assert {p.config.train.label_smoothing for p in points} == {0.0}
    assert {p.config.data.eval_examples for p in points} == {None}  # The whole test split.
    # Data-rich: every training image, shifted, so that no model memorises its data.
    assert {(p.config.data.train_examples, p.config.data.random_shift) for p in points} == {(None, 1)}
    assert {p.name for p in points[:6]} == {f"baseline-{k}-s{s}" for k in ("linear", "mlp") for s in range(3)}
    assert [p.config.seed for p in models[:4]] == [0] * 4  # Seed-major: a stopped sweep keeps whole curves.
    assert models[2].name == "mamba2-adv-mu-p8-s0" and models[2].config.model.norm == "rmsnorm"
    assert models[2].config.model.patch_embed_init == "lecun_normal"


def test_data_limited_contrast_keeps_its_recipe():
    """experiments/mnist_limited.py is the study behind results/mnist_limited_reference: unchanged."""
    from tests.conftest import REPO

    points = sweep.expand(str(REPO / "experiments" / "mnist_limited.py"))
    models = [p for p in points if p.config.model.baseline == "none"]
    assert len(points) == 21 and len(models) == 15
    assert {(p.config.model.mixer, p.config.model.patch_size) for p in models} == {
        ("attention", ps) for ps in (8, 4, 2)} | {("mamba2", ps) for ps in (8, 4)}
    assert {(p.config.data.train_examples, p.config.train.epochs, p.config.data.image_size) for p in points} == {
        (5000, 64.0, 8)}
    assert min(p.config.model.width or 64 for p in models) >= 8 * 8  # No bottleneck at the largest patch.


def test_flags_and_overrides_mix_but_stray_arguments_fail(capsys):
    from tests.conftest import run_in_process

    done = run_in_process(capsys, "sweep", "experiments/mnist_sweep.py", "--dry-run", "--bogus")
    assert done.returncode == 2 and "unrecognized arguments: --bogus" in done.stderr


@pytest.mark.parametrize("name, runs", [("paper_deit_b_64", 5), ("paper_adventurer_b", 15),
                                        ("paper_model_scaling", 40), ("paper_extend", 7),
                                        ("paper_input_size", 3), ("paper_s2", 4), ("paper_dense", 9)])
def test_paper_configs_validate(name, runs):
    from tests.conftest import REPO

    path = REPO / "experiments" / f"{name}.py"
    assert len(sweep.expand(str(path))) == runs  # Every point passes validation.
    assert "NOT RUN" in path.read_text()


def test_paper_config_dry_runs(tmp_path, capsys):
    from tests.conftest import REPO, run_in_process

    done = run_in_process(capsys, "sweep", REPO / "experiments" / "paper_deit_b_64.py", "--dry-run", "--no-compile",
                   "--results", tmp_path / "r")
    assert done.returncode == 0, done.stderr
    assert "attention-B-p1-s0" in done.stdout and "4097" in done.stdout and "projected cost" in done.stdout


def test_the_ade20k_stage_fine_tunes_each_classifier_with_the_reference_segmentation_recipe():
    from tests.conftest import REPO

    points = sweep.expand(str(REPO / "experiments" / "paper_dense.py"))
    by_name = {p.name: p for p in points}
    segmenters = [p for p in points if p.config.model.head != "classify"]
    assert len(segmenters) == 6
    for point in segmenters:
        c = point.config
        source = by_name[c.train.init_from[1:]].config
        assert source.model.head == "classify" and source.model.patch_size == c.model.patch_size
        assert (c.data.name, c.data.mask_feature, c.data.mask_classes, c.data.mask_offset) == \
            ("scene_parse150", "annotation", 150, -1)
        assert (c.train.learning_rate, c.train.weight_decay, c.train.batch_size, c.train.steps) == \
            (5e-5, 0.01, 16, 160_000)


def test_paper_configs_carry_the_reference_recipes():
    from tests.conftest import REPO

    deit = sweep.expand(str(REPO / "experiments" / "paper_deit_b_64.py"))
    for point in deit:
        c = point.config
        assert (c.augment.crop, c.augment.policy, c.augment.random_erasing, c.augment.repeats) == \
            ("random_resized", "rand-m9-mstd0.5-inc1", 0.25, 3)
        assert (c.augment.mixup_alpha, c.augment.cutmix_alpha, c.train.label_smoothing) == (0.8, 1.0, 0.1)
        assert c.train.grad_clip_norm == 0 and c.model.residual_dtype == "float32"
        assert c.data.eval_crop_ratio == 0.875  # One view along the 64² sweep (the study's advice for 64²).

    stages = sweep.expand(str(REPO / "experiments" / "paper_adventurer_b.py"))
    by_name = {p.name: p for p in stages}
    for first, second, third in zip(stages[0::3], stages[1::3], stages[2::3]):
        assert first.config.train.init_from is None
        assert by_name[second.config.train.init_from[1:]] is first  # Stage 2 starts from stage 1 …
        assert by_name[third.config.train.init_from[1:]] is second  # … and stage 3 from stage 2.
        assert [s.config.data.image_size for s in (first, second, third)] == [128, 224, 224]
        assert [s.config.model.drop_path for s in (first, second, third)] == [0.1, 0.4, 0.6]
        assert (third.config.train.learning_rate, third.config.augment.policy, third.config.augment.repeats) == \
            (1e-5, "rand-m9-mstd0.5-inc1", 1)
        assert first.config.augment.policy == "three_augment" and first.config.train.label_smoothing == 0.0
        assert {s.config.model.mamba2.flip for s in (first, second, third)} == {"released"}
        assert {s.config.train.grad_clip_norm for s in (first, second, third)} == {0.0}


def test_retry_failed_reruns_only_failed_points(tmp_path, monkeypatch, experiment):
    """A failed point is skipped until --retry-failed; then it runs again and its failed.json goes."""
    from patchscale import results, train

    points = sweep.expand(experiment)[:3]  # p16 seeds 0 and 1, then p8 seed 0.
    trained = []

    def fake_train(config, run_dir):
        trained.append(run_dir.name)
        if config.model.patch_size == 8 and not getattr(fake_train, "healed", False):
            raise FloatingPointError("boom")
        results.write_json_atomic(run_dir / results.SUMMARY, {"test_loss": 1.0})

    monkeypatch.setattr(train, "train_locked", fake_train)  # What the sweep calls under the run's lock.
    first = runner.run(points, tmp_path, "exp")
    assert list(first.values()) == ["finished", "finished", "failed"]
    failed_dir = tmp_path / "runs" / points[2].name
    assert "FloatingPointError: boom" in json.loads((failed_dir / "failed.json").read_text())["error"]
    trained.clear()
    assert runner.run(points, tmp_path, "exp")[points[2].name] == "failed" and trained == []
    fake_train.healed = True
    assert runner.run(points, tmp_path, "exp", retry_failed=True)[points[2].name] == "finished"
    assert trained == [points[2].name] and not (failed_dir / "failed.json").exists()


@pytest.mark.parametrize("name, runs, expected_names", [
    ("mnist_extend", 42, ["attention-mu-p16-extend_tokens=4-s0", "mamba2-adv-mu-p8-extend_tokens=2-s2", "baseline-mlp-s1"]),
    ("mnist_input_size", 27, ["attention-mu-r64-p16-s0", "baseline-linear-r32-s2"]),
    ("mnist_patch_vs_params", 42, ["attention-mu-w32-p16-s0", "attention-mu-w128-p2-s2"]),
    ("mnist_dense", 18, ["attention-mu-p2-head=dense_decoder-s1", "attention-mu-p8-head=dense_linear-s0"]),
    ("mnist_s2", 21, ["attention-mu-w64-r16-p4-s2_scales=1x2-s0", "attention-mu-w128-r8-p4-s2_scales=none-s0"]),
])
def test_study_miniatures_validate_with_readable_names(name, runs, expected_names):
    from tests.conftest import REPO

    points = sweep.expand(str(REPO / "experiments" / f"{name}.py"))  # Every point passes validation.
    names = [point.name for point in points]
    assert len(names) == runs == len(set(names))
    assert set(expected_names) <= set(names), sorted(names)


def test_the_readme_example_sweep_expands(tmp_path):
    import re

    from tests.conftest import REPO

    code = re.search(r"```python\n(# experiments/my_sweep.py\n.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    path = tmp_path / "my_sweep.py"
    path.write_text(code)
    points = sweep.expand(str(path))
    assert len(points) == 30 and points[0].config.train.budgets == (0.25, 0.5)


def test_runs_named_by_an_earlier_naming_scheme_keep_their_directories(experiment, tmp_path):
    points = sweep.expand(experiment)
    target = points[1]
    old = tmp_path / "res" / "runs" / "an-older-name"
    old.mkdir(parents=True)
    (old / "point.json").write_text(json.dumps({"experiment": "exp", "name": "an-older-name",
                                                "overrides": target.overrides}))
    kept = points_lib.keep_existing_names(points, tmp_path / "res")
    assert [p.name for p in kept] == [p.name if p is not target else "an-older-name" for p in points]
    assert points_lib.keep_existing_names(points, tmp_path / "elsewhere") == points
