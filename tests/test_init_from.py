"""Multi-stage training: position tables and patch kernels carried to a new grid and patch size."""

import jax
import numpy as np
import pytest

from patchscale import config as config_lib
from patchscale import init_from, sharding
from patchscale.errors import UserError
from patchscale.program import Program
from tests.conftest import DEFAULT_EXPERIMENT, run_cli, small_overrides


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


def _program(overrides):
    c = config_lib.load_config(str(DEFAULT_EXPERIMENT), overrides)
    size = c.data.image_size or 32
    return Program(c, size, 1, 10, total_steps=10, warmup_steps=0, mesh=sharding.make_mesh(c.mesh))


def test_a_stage_starts_from_the_previous_runs_weights(mnist_dir, tmp_path):
    first = small_overrides(mnist_dir, **{"train.steps": 4, "train.checkpoint_every": 4, "model.patch_size": 8})
    done = run_cli("train", DEFAULT_EXPERIMENT, *first, "--workdir", tmp_path / "stage1")
    assert done.returncode == 0, done.stderr
    _, source = init_from.load_source(tmp_path / "stage1")

    same = _program([*first, f"train.init_from={tmp_path / 'stage1'}"]).init_state()
    started = dict(init_from._flatten(jax.device_get(same["params"])))
    assert started.keys() == dict(init_from._flatten(source)).keys()
    for path, value in init_from._flatten(source):
        np.testing.assert_array_equal(np.asarray(started[path]), value)

    finer = _program([*first, "model.patch_size=4", f"train.init_from={tmp_path / 'stage1'}"]).init_state()
    assert finer["params"]["posemb"]["table"].shape[0] == 1 + 8 * 8
    started = dict(init_from._flatten(jax.device_get(finer["params"])))
    np.testing.assert_array_equal(np.asarray(started[("cls_token",)]), dict(init_from._flatten(source))[("cls_token",)])

    wider = _program([*first, "model.width=48", "model.heads=2", f"train.init_from={tmp_path / 'stage1'}"])
    with pytest.raises(UserError, match="has shape"):
        wider.init_state()
