"""Multi-stage training: position tables and patch kernels carried to a new grid and patch size."""

import json

import jax
import numpy as np
import pytest

from patchscale import config as config_lib
from patchscale import init_from, partitioning, sweep
from patchscale.sweep import runner
from patchscale.errors import UserError
from patchscale.program import Program
from patchscale.run_spec import RunSpec
from tests.conftest import DEFAULT_EXPERIMENT, run_in_process, small_overrides


def _smooth(grid: int, width: int = 6) -> np.ndarray:
    """Rows f(y, x) of smooth functions of the cell centres of a grid over [0, 1]²."""
    centres = (np.arange(grid) + 0.5) / grid
    y, x = np.meshgrid(centres, centres, indexing="ij")
    k = np.arange(1, width + 1)[None, None, :] / 2
    return (np.sin(2.0 * k * x[..., None]) * np.cos(1.5 * y[..., None])).reshape(grid * grid, width)


@pytest.mark.parametrize("before,after", [(1, 0), (0, 1), (0, 0)])
def test_interpolated_table_of_a_smooth_function_matches_the_function(before, after):
    cls = np.full((1, 6), 7.0)
    table = np.concatenate([cls] * before + [_smooth(8)] + [cls] * after)
    out = init_from.interpolate_posemb(table, 8, 16, before, after)
    assert out.shape == (before + 256 + after, 6)
    np.testing.assert_array_equal(out[:before], cls[:before])  # The class token stays itself…
    np.testing.assert_array_equal(out[len(out) - after:], cls[:after])  # …first or last.
    error = np.abs(out[before:before + 256] - _smooth(16)).reshape(16, 16, 6)
    # Bicubic on a smooth field: small inside, larger only where the border is extrapolated. The
    # released code's grid, shifted by one raster position, is off by 0.22 on average.
    assert error[2:-2, 2:-2].max() < 0.03 and error.mean() < 0.015


def test_pseudo_inverse_patch_resize_keeps_every_response_when_upsampling():
    rng = np.random.default_rng(0)
    channels, width = 3, 5
    kernel = rng.normal(size=(2 * 2 * channels, width)).astype(np.float32)
    resized = init_from.resample_patch_kernel(kernel, 2, 4, channels)
    assert resized.shape == (4 * 4 * channels, width)
    resize = init_from._resize_matrix(2, 4)  # (16, 4): a 2×2 plane → 4×4.
    for _ in range(5):
        patch = rng.normal(size=(4, channels)).astype(np.float32)  # 2×2 pixels × C, rows (y, x).
        bigger = (resize @ patch).reshape(-1)
        np.testing.assert_allclose(bigger @ resized, patch.reshape(-1) @ kernel, rtol=1e-4, atol=1e-4)


def _started(overrides):
    """The initial state of a run with `overrides`, started from its `train.init_from` as the trainer does."""
    c = config_lib.load_config(str(DEFAULT_EXPERIMENT), overrides)
    program = Program(RunSpec.from_config(c).with_steps(10, 0), partitioning.make_mesh(c.mesh))
    return init_from.start_from(program, program.init_state(), c.train.init_from, ".")


STAGED_SWEEP = """
import importlib.util
spec = importlib.util.spec_from_file_location("base", {experiment!r})
base = importlib.util.module_from_spec(spec)
spec.loader.exec_module(base)
get_config = base.get_config

def get_sweep():
    return [{{"model.patch_size": 8}},
            {{"model.patch_size": 4, "train.learning_rate": 1e-3, "train.init_from": {{"model.patch_size": 8}}}}]
"""


@pytest.mark.heavy  # Two trainings and three model inits (~65 s); run with -m heavy.
def test_a_staged_sweep_starts_each_stage_from_the_previous_runs_weights(mnist_dir, tmp_path):
    experiment = tmp_path / "staged.py"
    experiment.write_text(STAGED_SWEEP.format(experiment=str(DEFAULT_EXPERIMENT)))
    overrides = [o for o in small_overrides(mnist_dir, **{"train.steps": 4, "train.checkpoint_every": 4})
                 if not o.startswith("model.patch_size=")]  # The sweep sets it.
    outcome = runner.run(sweep.expand(str(experiment), overrides), tmp_path / "results", "staged")
    assert set(outcome.values()) == {"finished"}
    runs = tmp_path / "results" / "runs"
    first, second = sorted(runs.iterdir(), key=lambda d: "p4" in d.name)
    assert json.loads((second / "config.json").read_text())["train"]["init_from"] == "@" + first.name
    _, source = init_from.load_source(first)

    # The second stage began from the first's weights: its position table is the first's,
    # resized from a 4×4 to an 8×8 grid with the class token kept apart.
    started = _started([*overrides, "model.patch_size=4", f"train.init_from={first}"])
    started = dict(init_from._flatten(jax.device_get(started["params"])))
    src = dict(init_from._flatten(source))
    table = src[("posemb", "table")]
    np.testing.assert_array_equal(started[("posemb", "table")][0], table[0])
    np.testing.assert_allclose(started[("posemb", "table")][1:],
                               init_from.interpolate_posemb(table, 4, 8, 1, 0)[1:], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(started[("cls_token",)]), src[("cls_token",)])

    same = _started([*overrides, "model.patch_size=8", f"train.init_from={first}"])
    started = dict(init_from._flatten(jax.device_get(same["params"])))
    for path, value in init_from._flatten(source):
        np.testing.assert_array_equal(np.asarray(started[path]), value)

    with pytest.raises(UserError, match="has shape"):
        _started([*overrides, "model.width=48", "model.heads=2", f"train.init_from={first}"])


def test_a_stage_must_name_exactly_one_earlier_point(tmp_path, capsys):
    experiment = tmp_path / "staged.py"
    experiment.write_text(STAGED_SWEEP.format(experiment=str(DEFAULT_EXPERIMENT)).replace(
        '"train.init_from": {"model.patch_size": 8}', '"train.init_from": {"model.patch_size": 2}'))
    done = run_in_process(capsys, "sweep", experiment, "--dry-run", "--no-compile")
    assert done.returncode == 2 and "matches no earlier point" in done.stderr and "Traceback" not in done.stderr


def test_a_dense_head_fine_tuned_from_a_classifier_keeps_its_own_init_and_takes_the_rest():
    from flax import nnx

    from patchscale.models.backbone import VisionBackbone
    from tests.test_models import model_config

    def params(**overrides):
        m = model_config(patch_size=4, pool="gap", **overrides)
        model = VisionBackbone(m, image_size=16, channels=1, num_classes=10, rngs=nnx.Rngs(len(overrides)))
        return m, nnx.to_pure_dict(nnx.state(model, nnx.Param))

    source_model, source = params()
    target_model, target = params(head="dense_linear")
    c = config_lib.load_module(str(DEFAULT_EXPERIMENT)).get_config()
    c.model = target_model
    source_config = {"model": source_model.to_dict(), "data": {"image_size": 16}}
    assert init_from.keeps_own_head(source_config["model"], target_model)
    assert not init_from.keeps_own_head(source_config["model"], source_model)
    adapted = init_from.adapt(jax.tree.map(np.asarray, source), source_config, target, c, 16, 1)
    # The head is a placeholder of the target's shape: init_from.start_from keeps the target's own.
    assert adapted["head"]["proj"]["kernel"].shape == target["head"]["proj"]["kernel"].shape
    np.testing.assert_array_equal(adapted["patch_embed"]["proj"]["kernel"], source["patch_embed"]["proj"]["kernel"])
    assert not np.array_equal(source["patch_embed"]["proj"]["kernel"], target["patch_embed"]["proj"]["kernel"])


def test_the_trainer_starts_a_stage_from_its_source_and_a_resume_keeps_its_own_weights(mnist_dir, tmp_path, capsys):
    """`train.init_from` is applied by the trainer before training, and never over a restored checkpoint."""
    quick = {"train.steps": 4, "train.checkpoint_every": 4, "data.eval_examples": 200, "model.drop_path": 0.0}
    source = tmp_path / "source"
    assert run_in_process(capsys, "train", DEFAULT_EXPERIMENT, *small_overrides(mnist_dir, **quick),
                          "--workdir", source).returncode == 0
    # At learning rate 0 the stage's last checkpoint holds exactly the weights it started from.
    frozen = [*small_overrides(mnist_dir, **quick, **{"train.learning_rate": 0.0}), "model.patch_size=8",
              f"train.init_from={source}"]
    assert run_in_process(capsys, "train", DEFAULT_EXPERIMENT, *frozen, "--workdir", tmp_path / "still").returncode == 0
    expected = dict(init_from._flatten(jax.device_get(_started(frozen)["params"])))
    for path, value in init_from._flatten(init_from.load_source(tmp_path / "still")[1]):
        np.testing.assert_array_equal(value, np.asarray(expected[path]), err_msg=str(path))

    # A stage that trained and is resumed after its last checkpoint keeps the trained weights.
    stage = [*small_overrides(mnist_dir, **quick), "model.patch_size=8", f"train.init_from={source}"]
    assert run_in_process(capsys, "train", DEFAULT_EXPERIMENT, *stage, "--workdir", tmp_path / "stage").returncode == 0
    trained = json.loads((tmp_path / "stage" / "summary.json").read_text())["test_loss"]
    (tmp_path / "stage" / "summary.json").unlink()
    again = run_in_process(capsys, "train", DEFAULT_EXPERIMENT, *stage, "--workdir", tmp_path / "stage")
    assert again.returncode == 0 and "resuming" in again.stdout
    assert json.loads((tmp_path / "stage" / "summary.json").read_text())["test_loss"] == trained
