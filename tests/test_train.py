"""End-to-end training on a real MNIST subset: outputs, evaluation, resume after SIGKILL, NaN stop."""

import json

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from patchscale import config as config_lib
from patchscale import train
from tests.conftest import DEFAULT_EXPERIMENT, run_cli, run_in_process, small_overrides, train_until_then_kill
from tests.helpers import read_events


# The end-to-end run and its SIGKILL resume use the scanned block layout (stacked parameters in
# the checkpoints) and the names remat policy; the budget and sweep tests train unrolled.
SCANNED = {"model.scan_layers": True, "model.remat": "names"}


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished_run(mnist_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "vit"
    done = run_cli("train", DEFAULT_EXPERIMENT, *small_overrides(mnist_dir, **SCANNED), "--workdir", run_dir)
    assert done.returncode == 0, done.stderr
    return run_dir, done


def test_end_to_end_run_writes_config_metrics_summary_and_checkpoints(finished_run):
    run_dir, done = finished_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_examples"] == 1050 and summary["steps"] == 60
    assert summary["test_accuracy"] > 0.25  # 60 steps of a tiny ViT: well above chance (0.1).
    assert np.isfinite(summary["test_loss"]) and summary["tokens_per_image"] == 5
    assert summary["params"] == summary["params_embedding"] + summary["params_non_embedding"]
    for key in ("forward_flops_per_image", "wall_time_s", "device_kind", "device_count", "jax_version", "git_commit"):
        assert key in summary
    assert summary["wall_time_segments"] == 1
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [10, 20, 30, 40, 50, 60]
    for key in ("train_loss", "learning_rate", "grad_norm", "step_time_s", "images_per_s"):
        assert all(key in r for r in records)
    assert records[-1]["test_loss"] == summary["test_loss"]
    assert json.loads((run_dir / "config.json").read_text())["model"]["size"] == "pico"
    assert json.loads((run_dir / "config.json").read_text())["model"]["scan_layers"] is True
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()) == ["40", "60"]
    assert "[train] step 60/60 (100%)" in done.stdout and "ETA" in done.stdout
    assert_events_mirror_metrics(run_dir)


def assert_events_mirror_metrics(run_dir):
    """TensorBoard events: each logged step once per tag, with metrics.jsonl's values (float32)."""
    scalars = read_events(run_dir)
    records = read_metrics(run_dir)
    for key, tag in (("train_loss", "train/loss"), ("learning_rate", "train/learning_rate"),
                     ("test_loss", "test/loss")):
        logged = [(r["step"], r[key]) for r in records if key in r and "budget_steps" not in r]
        written = [(step, value) for t, step, value in scalars if t == tag]
        assert [s for s, _ in written] == [s for s, _ in logged], tag
        np.testing.assert_allclose([v for _, v in written], [v for _, v in logged], rtol=1e-6, err_msg=tag)


def test_finished_run_is_not_trained_again(finished_run, mnist_dir, capsys):
    run_dir, _ = finished_run
    before = (run_dir / "summary.json").read_text()
    again = run_in_process(capsys, "train", DEFAULT_EXPERIMENT, *small_overrides(mnist_dir, **SCANNED),
                           "--workdir", run_dir)
    assert again.returncode == 0 and "already finished" in again.stdout and "[train]" not in again.stdout
    assert (run_dir / "summary.json").read_text() == before


def test_other_config_in_an_existing_run_directory_is_refused(finished_run, mnist_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"seed": 123}))
    done = run_in_process(capsys, "train", DEFAULT_EXPERIMENT, *small_overrides(mnist_dir), "--workdir", run_dir)
    assert done.returncode == 2 and "different config" in done.stderr


def test_resume_after_sigkill_ends_with_identical_metrics(finished_run, mnist_dir, tmp_path):
    reference_dir, _ = finished_run
    run_dir = tmp_path / "killed"
    train_until_then_kill(small_overrides(mnist_dir, **SCANNED), run_dir, run_dir / "checkpoints" / "20")
    assert not (run_dir / "summary.json").exists()
    first_segment = json.loads((run_dir / "checkpoint_index.json").read_text())

    resumed = run_cli("train", DEFAULT_EXPERIMENT, *small_overrides(mnist_dir, **SCANNED), "--workdir", run_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    resumed_from = int(resumed.stdout.split("from step ")[1].split()[0])
    assert 20 <= resumed_from < 60

    expected = json.loads((reference_dir / "summary.json").read_text())
    actual = json.loads((run_dir / "summary.json").read_text())
    assert (actual["test_loss"], actual["test_accuracy"]) == (expected["test_loss"], expected["test_accuracy"])
    before = first_segment[str(resumed_from)]  # The killed process's time up to the step resumed from counts.
    assert before["segments"] == 1 and actual["wall_time_segments"] == 2
    assert actual["wall_time_s"] > before["elapsed_s"] > 0
    strip = lambda rs: [(r["step"], r["train_loss"], r["grad_norm"], r.get("test_loss")) for r in rs]
    assert strip(read_metrics(run_dir)) == strip(read_metrics(reference_dir))
    assert_events_mirror_metrics(run_dir)  # Rewritten at the resume: no step twice.


def test_non_finite_loss_stops_the_run_with_a_clear_error(mnist_dir, tmp_path, capsys):
    overrides = small_overrides(mnist_dir, **{"train.learning_rate": 1e30, "train.grad_clip_norm": 1e30,
                                              "train.warmup_epochs": 0.0})
    done = run_in_process(capsys, "train", DEFAULT_EXPERIMENT, *overrides, "--workdir", tmp_path / "nan")
    assert done.returncode == 1, done.stderr
    assert "training loss is nan" in done.stderr.lower() and "Traceback" not in done.stderr
    assert not (tmp_path / "nan" / "summary.json").exists()


@pytest.mark.heavy  # CI time; run with -m heavy.
def test_evaluation_matches_one_pass_over_all_examples(mnist_dir, tmp_path):
    c = config_lib.load_config(str(DEFAULT_EXPERIMENT), small_overrides(mnist_dir))
    trainer = train.Trainer(c, tmp_path / "unused")
    state = trainer.program.init_state()
    trainer.steps = trainer.program.compile(state)
    batched = trainer.evaluate(state["params"])  # 1050 examples in batches of 200: a ragged last batch.

    batches = list(trainer.eval_splits["test"].batches())
    images = np.concatenate([b["image"] for b in batches])[:1050]
    labels = np.concatenate([b["label"] for b in batches])[:1050]
    logits = nnx.merge(trainer.program.graphdef, state["params"], trainer.program.frozen)(jnp.asarray(images))
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(labels)).mean()
    accuracy = (jnp.argmax(logits, -1) == labels).mean()
    assert batched["test_examples"] == 1050
    np.testing.assert_allclose(batched["test_loss"], float(loss), rtol=1e-5)
    np.testing.assert_allclose(batched["test_accuracy"], float(accuracy), rtol=1e-7)


def _train_step_hlo(seed: int) -> str:
    import jax

    from patchscale import partitioning
    from patchscale.program import Program
    from patchscale.run_spec import RunSpec

    c = config_lib.load_config(str(DEFAULT_EXPERIMENT), ["model.size=pico", "model.patch_size=16",
                                                         "model.drop_path=0.1", f"seed={seed}"])
    program = Program(RunSpec.from_config(c).with_steps(100, 10), partitioning.make_mesh(c.mesh))
    step = jax.jit(program._train_step)
    return step.lower(program.state_spec, program.frozen, program.batch_spec(c.train.batch_size)).as_text()


def test_every_seed_runs_the_same_compiled_train_step():
    """The seed is a value in the state (drop-path keys), so one executable serves every seed."""
    assert _train_step_hlo(0) == _train_step_hlo(7)


@pytest.mark.heavy  # A CLI training run (~25 s); run with -m heavy.
def test_compilation_cache_is_filled_by_a_run_and_can_be_turned_off(mnist_dir, tmp_path, monkeypatch):
    from patchscale import compile_cache

    monkeypatch.setenv(compile_cache.ENV, "off")
    assert compile_cache.directory() is None
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "cache"))
    assert compile_cache.directory() == tmp_path / "cache"

    overrides = small_overrides(mnist_dir, **{"train.steps": 5, "train.checkpoint_every": 5})
    done = run_cli("train", DEFAULT_EXPERIMENT, *overrides, "--workdir", tmp_path / "run",
                   env_extra={compile_cache.ENV: str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert any((tmp_path / "cache").iterdir()), "the train and eval steps were not written to the cache"


def test_the_tests_compile_into_a_cache_of_their_own_run():
    """conftest points the persistent compilation cache at this test run's directory (or the developer's
    PATCHSCALE_TEST_COMPILATION_CACHE), never at the user's default cache."""
    import os
    import pathlib

    from patchscale import compile_cache

    chosen = os.environ.get("PATCHSCALE_TEST_COMPILATION_CACHE")
    directory = compile_cache.directory()
    assert directory is not None
    assert directory == pathlib.Path(chosen) if chosen else directory.name.startswith("patchscale-test-xla-")
