""""By extending" (model.extend_tokens): the patch-embedding grid interpolated to more tokens, no new pixels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from patchscale.models import patchify
from patchscale.models.backbone import VisionBackbone
from patchscale.models import flops
from tests.test_models import model_config


def grid_tokens(field: np.ndarray) -> jnp.ndarray:
    """(g, g, D) → (1, g·g, D) in raster order, as the patch embedding emits them."""
    g, _, d = field.shape
    return jnp.asarray(field.reshape(1, g * g, d), jnp.float32)


def test_factor_one_is_the_identity():
    tokens = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 5)), jnp.float32)
    assert patchify.extend_grid(tokens, 1) is tokens


@pytest.mark.parametrize("factor", [2, 4])
def test_a_linear_field_is_reproduced_at_the_sub_cell_centres(factor):
    g = 4
    i, j = np.mgrid[:g, :g].astype(np.float64)
    field = np.stack([1.5 * i - 0.5 * j + 2.0, 0.25 * j], axis=-1)  # Two channels, linear in (row, col).
    out = np.asarray(patchify.extend_grid(grid_tokens(field), factor)).reshape(g * factor, g * factor, 2)
    centre = (np.arange(g * factor) + 0.5) / factor - 0.5  # New sample positions in old grid units.
    inside = (centre >= 0) & (centre <= g - 1)
    ci, cj = np.meshgrid(centre, centre, indexing="ij")
    expected = np.stack([1.5 * ci - 0.5 * cj + 2.0, 0.25 * cj], axis=-1)
    keep = inside[:, None] & inside[None, :]
    np.testing.assert_allclose(out[keep], expected[keep], rtol=1e-6, atol=1e-6)
    clamped = np.clip(centre, 0, g - 1)  # At the border the edge values are held.
    ci, cj = np.meshgrid(clamped, clamped, indexing="ij")
    np.testing.assert_allclose(out[..., 1], 0.25 * cj, atol=1e-6)


def test_a_smooth_grid_stays_smooth_and_within_its_range():
    g, factor = 6, 4
    i, j = np.mgrid[:g, :g] / (g - 1)
    field = np.sin(2.0 * i + 1.0)[..., None] * np.cos(1.5 * j)[..., None]
    out = np.asarray(patchify.extend_grid(grid_tokens(field), factor)).reshape(g * factor, g * factor)
    assert field.min() - 1e-6 <= out.min() and out.max() <= field.max() + 1e-6  # Convex combinations only.
    # Neighbouring new tokens differ by at most the largest step of the source grid over the factor.
    step = max(np.abs(np.diff(field[..., 0], axis=0)).max(), np.abs(np.diff(field[..., 0], axis=1)).max())
    assert np.abs(np.diff(out, axis=0)).max() <= step / factor + 1e-6
    assert np.abs(np.diff(out, axis=1)).max() <= step / factor + 1e-6


def test_an_extended_model_sees_the_sequence_of_the_smaller_patch():
    extended = model_config(patch_size=8, extend_tokens=2)
    scaled = model_config(patch_size=4)
    assert flops.tokens_per_image(extended, 32) == flops.tokens_per_image(scaled, 32) == 65
    model = VisionBackbone(extended, image_size=32, channels=1, num_classes=10, rngs=nnx.Rngs(0))
    assert model.posemb.table[...].shape == (65, 32)
    assert model.patch_embed.proj.kernel[...].shape == (64, 32)  # Still an 8×8 patch's pixels.
    images = jnp.asarray(np.random.default_rng(1).integers(0, 256, (2, 32, 32, 1)), jnp.uint8)
    assert model(images, jax.random.key(0)).shape == (2, 10)
    # The FLOP count includes the longer sequence (and the interpolation itself).
    native = flops.forward_flops_per_image(model_config(patch_size=8), 32, 1, 10)
    assert native < flops.forward_flops_per_image(extended, 32, 1, 10)
